-- upgrun.nova.upgrade — the building blocks of a Nova upgrade scenario, kept
-- out of the scenario file so it reads like the runbook: which services the
-- cloud should list and on which hosts, waiting until they report up,
-- switching a node's code, running nova-manage / nova-status on a
-- controller, restarting a service gracefully (SIGTERM, wait, start on the
-- new code) and checking which release every service runs.
--
-- Site facts come from the inventory (host/group vars), never from here:
--   nova_code_switch   shell command switching a node's code; {node} and
--                      {release} are replaced (git checkout + pip, apt, a
--                      venv or tree switch: whatever the site does)
--   nova_code_current  optional: prints the release a node's code is on
--   nova_manage        command prefix for nova-manage on a controller
--                      (default "nova-manage"); nova_status likewise
--   nova_host          the node's host name in Nova (default: inventory name)
--   nova_config_set    shell command setting a nova.conf option on a node, read
--                      at each service's next start; {node} {section} {option}
--                      {value} are replaced; nova_config_unset likewise without
--                      {value}
--   upgrun_services    the services on the node (see docs/nodes.md); a
--                      service's optional `drain` / `undrain` commands run
--                      around its restart (load balancer out / back in)
local time = require "upgrun.time"

local M = {}

-- A parameter, or the inventory variable of the same name (prefixed nova_),
-- or a default — site facts may live in either place.
function M.setting(ctx, name, default)
  local v = ctx.params[name]
  if v ~= nil and v ~= "" and not (type(v) == "table" and #v == 0) then return v end
  local ok, inv = pcall(function() return ctx.inventory end) -- none under --plan without -i
  local iv = ok and inv.vars and inv.vars["nova_" .. name] or nil
  if iv ~= nil then return iv end
  return default
end

function M.nova_host(node) return node.vars.nova_host or node.name end

local function has_service(node, name)
  local svcs = node.vars.upgrun_services
  return type(svcs) == "table" and svcs[name] ~= nil
end
M.has_service = has_service

-- Nodes of a group that run a service.
function M.nodes_with(ctx, group, service)
  local out = {}
  for _, n in ipairs(ctx.inventory:group(group)) do
    if has_service(n, service) then out[#out + 1] = n end
  end
  return out
end

-- The {host, binary} pairs `compute service list` should show: a binary on
-- every node whose upgrun_services has it; a binary no node declares (e.g.
-- nova-consoleauth on a Mitaka site) on every controller.
function M.expected_services(ctx, binaries, controller_group, compute_group)
  local all = ctx.inventory:group(controller_group .. ":" .. compute_group)
  local out = {}
  for _, b in ipairs(binaries) do
    local where = {}
    for _, n in ipairs(all) do if has_service(n, b) then where[#where + 1] = n end end
    if #where == 0 then where = ctx.inventory:group(controller_group) end
    for _, n in ipairs(where) do out[#out + 1] = { host = M.nova_host(n), binary = b } end
  end
  return out
end

local function iso_utc(epoch) return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(epoch)) end

-- Polls `compute service list` until every expected service is up and
-- enabled (opts.enabled = false: enabled or not) and, with opts.since (wall
-- time), has reported after it; then
-- records one check per service. Returns true when all are up.
function M.wait_services_up(ctx, expected, opts)
  opts = opts or {}
  local compute = ctx.cloud.compute
  local deadline = time.mono() + (opts.timeout or 120)
  local since = opts.since and iso_utc(opts.since)
  -- up: state up, enabled (unless opts.enabled == false: a compute disabled
  -- for its restart), and reported after `since`
  local function up(s)
    return s ~= nil and s.state == "up" and (opts.enabled == false or s.status == "enabled")
      and (not since or tostring(s.updated_at):sub(1, 19) >= since)
  end
  local state
  repeat
    state = {}
    local list, err = compute:services()
    if list then
      for _, s in ipairs(list) do state[s.host .. "/" .. s.binary] = s end
    end
    local all = list ~= nil
    for _, e in ipairs(expected) do
      local s = state[e.host .. "/" .. e.binary]
      if not up(s) then all = false end
    end
    if all then break end
    if time.mono() >= deadline then
      if not list then ctx:log("compute service list failed: %s", tostring(err)) end
      break
    end
    time.sleep(opts.interval or 2)
  until false
  local all_ok = true
  for _, e in ipairs(expected) do
    local s = state[e.host .. "/" .. e.binary]
    local ok = up(s)
    all_ok = all_ok and ok
    ctx:check(string.format("%s on %s is up%s", e.binary, e.host, opts.label or ""), ok,
      s and string.format("state %s, status %s, updated_at %s", s.state, s.status, tostring(s.updated_at))
        or "not in compute service list")
  end
  return all_ok
end

-- Expands {node}/{release} in an inventory command template.
local function expand(tmpl, node, release)
  return (tmpl:gsub("{node}", node.name):gsub("{release}", release or ""))
end

-- Switches a node's code to `release` with the inventory's nova_code_switch
-- and verifies it with nova_code_current when the site has one.
function M.switch_code(ctx, node, release, timeout)
  local tmpl = node.vars.nova_code_switch
  if type(tmpl) ~= "string" then
    error(node.name .. ": the inventory has no nova_code_switch (how this site switches Nova's code)", 0)
  end
  assert(node:run(expand(tmpl, node, release), { timeout = timeout or 600, check = true }))
  if type(node.vars.nova_code_current) == "string" then
    local r = assert(node:run(expand(node.vars.nova_code_current, node), { timeout = 60, check = true }))
    local now = r.stdout:match("^%s*(.-)%s*$")
    ctx:check(node.name .. " code is on " .. release, now == release, "code is on " .. now)
  end
end

-- The release a node's code is on (nova_code_current), or nil.
function M.code_release(node)
  if type(node.vars.nova_code_current) ~= "string" then return nil end
  local r = node:run(expand(node.vars.nova_code_current, node), { timeout = 60 })
  return r and r.ok and r.stdout:match("^%s*(.-)%s*$") or nil
end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Sets (value) or unsets (value nil) a nova.conf option on a node with the
-- inventory's nova_config_set / nova_config_unset; raises with the output on failure.
function M.config(node, section, option, value)
  local var = value == nil and "nova_config_unset" or "nova_config_set"
  local tmpl = node.vars[var]
  if type(tmpl) ~= "string" then
    error(node.name .. ": the inventory has no " .. var .. " (how this site sets a nova.conf option)", 0)
  end
  local cmd = tmpl:gsub("{node}", node.name):gsub("{section}", shq(section)):gsub("{option}", shq(option))
    :gsub("{value}", value == nil and "" or shq(value))
  local r, err = node:run(cmd, { timeout = 120 })
  if not r or not r.ok then
    error(string.format("%s: setting [%s] %s failed: %s", node.name, section, option,
      r and (r.stdout .. r.stderr) or tostring(err)), 0)
  end
end

-- The last n bytes of a command's output (a failing nova-manage's reason is at its end).
function M.tail(text, n)
  text = tostring(text or ""):gsub("%s+$", "")
  if #text <= n then return text end
  return "..." .. text:sub(-n)
end

-- Rows a `nova-manage db online_data_migrations` run migrated: the sum of its
-- table's "Completed" column (| Migration | Total Needed | Completed |).
function M.migrated_rows(output)
  local rows = 0
  for needed, done in tostring(output):gmatch("\n|[^|\n]+|%s*(%d+)%s*|%s*(%d+)%s*|") do
    local _ = needed
    rows = rows + tonumber(done)
  end
  return rows
end

-- Runs `nova-manage db online_data_migrations --max-count batch` until it
-- reports nothing left (exit 0), an error (exit 2+), or `max` runs; logs the
-- rows each run migrated. Returns the runs: {status =, rows =, output =}.
function M.online_data_migrations(ctx, node, max, batch)
  local passes = {}
  local args = "db online_data_migrations" .. (batch and (" --max-count " .. math.floor(batch)) or "")
  repeat
    local r = M.manage(node, "nova_manage", args)
    local out = r.stdout .. r.stderr
    passes[#passes + 1] = { status = r.status, rows = M.migrated_rows(r.stdout), output = out }
    ctx:log("online_data_migrations pass %d: %d rows migrated (exit %s)", #passes, passes[#passes].rows,
      tostring(r.status))
  until r.status ~= 1 or #passes >= (max or 20)
  return passes
end

-- Runs `{nova_manage} args` (or nova_status) on a controller; raises with
-- the output on failure; returns the result.
function M.manage(node, tool, args, timeout)
  local prefix = node.vars[tool] or tool:gsub("_", "-")
  local r, err = node:run(prefix .. " " .. args, { timeout = timeout or 1800 })
  if not r then error(string.format("%s: %s %s: %s", node.name, tool, args, tostring(err)), 0) end
  return r
end

-- Runs a service's `drain` / `undrain` command from the inventory, if it has
-- one (e.g. take a nova-api out of its load balancer before a restart, so no
-- request is sent to a process that is going away), as a timed step.
local function lb(ctx, node, service, which)
  local spec = (node.vars.upgrun_services or {})[service]
  local cmd = type(spec) == "table" and spec[which]
  if type(cmd) ~= "string" then return end
  ctx:step(string.format("%s %s on %s", which, service, node.name), function()
    assert(node:run(cmd:gsub("{node}", node.name):gsub("{service}", service), { timeout = 120, check = true }))
  end)
end

-- Stops a service gracefully (SIGTERM, wait, SIGKILL after `grace`), after
-- draining it when the inventory says how.
function M.stop(ctx, node, service, opts)
  lb(ctx, node, service, "drain")
  local svc = node:service(service)
  local r = assert(svc:stop { signal = "TERM", grace = opts.grace or 30, timeout = (opts.grace or 30) + 30 })
  if r.escalated then ctx:log("%s on %s ignored SIGTERM for %ss: killed", service, node.name, opts.grace) end
  return r
end

-- Starts a service and waits until it runs (and passes its health command).
function M.start(ctx, node, service, opts)
  local svc = node:service(service)
  local r = assert(svc:start { timeout = opts.timeout or 120 })
  local rel = svc:running_release()
  if rel then ctx:version(service .. "@" .. node.name, rel) end
  lb(ctx, node, service, "undrain")
  return r
end

function M.restart(ctx, node, service, opts)
  M.stop(ctx, node, service, opts)
  return M.start(ctx, node, service, opts)
end

-- Checks that every service on the nodes runs `release` (the running
-- process, not just the code on disk).
function M.check_running_release(ctx, list, release)
  for _, n in ipairs(list) do
    for _, svc in ipairs(require("upgrun.services").of(n)) do
      local rel, err = svc:running_release()
      if rel == nil and err and err.kind == "config" then
        ctx:skip(string.format("%s on %s runs %s", svc.name, n.name, release),
          "the inventory gives no running_release command for it")
      else
        ctx:check(string.format("%s on %s runs %s", svc.name, n.name, release), rel == release,
          rel and ("runs " .. rel) or tostring(err))
      end
    end
  end
end

return M
