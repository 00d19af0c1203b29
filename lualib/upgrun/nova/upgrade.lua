-- upgrun.nova.upgrade — what a Nova upgrade needs beyond the project-neutral
-- layer (upgrun.upgrade: settings, code switch, restarts, release checks):
-- which services `compute service list` should show and on which hosts,
-- waiting until they report up, and nova-manage / nova-status on a
-- controller (online data migrations run until nothing is left).
--
-- Site facts come from the inventory (host/group vars), never from here:
--   nova_manage        command prefix for nova-manage on a controller
--                      (default "nova-manage"); nova_status likewise
--   nova_host          the node's host name in Nova (default: inventory name)
-- and the layer's nova_code_switch, nova_code_current, nova_config_set,
-- nova_config_unset, upgrun_services (see upgrun.upgrade, docs/nodes.md).
local time = require "upgrun.time"
local upgrade = require "upgrun.upgrade"

local M = {}

function M.nova_host(node) return node.vars.nova_host or node.name end

-- The {host, binary} pairs `compute service list` should show: a binary on
-- every node whose upgrun_services has it; a binary no node declares (e.g.
-- nova-consoleauth on a Mitaka site) on every controller.
function M.expected_services(ctx, binaries, controller_group, compute_group)
  local all = ctx.inventory:group(controller_group .. ":" .. compute_group)
  local out = {}
  for _, b in ipairs(binaries) do
    local where = {}
    for _, n in ipairs(all) do if upgrade.has_service(n, b) then where[#where + 1] = n end end
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

-- Runs `{nova_manage} args` (or nova_status) on a controller; raises when it
-- cannot run; returns the result (check r.ok / r.status).
function M.manage(node, tool, args, timeout)
  return upgrade.tool(node, tool, (tool:gsub("_", "-")), args, { timeout = timeout })
end

return M
