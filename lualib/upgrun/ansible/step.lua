-- upgrun.ansible.step — ctx:ansible{...}: an Ansible playbook as a scenario
-- step. It runs ansible-playbook (upgrun.ansible) with the inventory upgrun
-- was given (every -i source, in order), records each task on the timeline
-- (kind "ansible_task": its play, start and end, and per host ok / changed /
-- failed / skipped / unreachable with Ansible's msg) and a summary (kind
-- "ansible"), and fails the step naming each failed task, host and msg.
--
--   ctx:ansible {
--     playbook = "playbooks/site.yml",  -- relative paths: from the scenario file's directory
--     limit = "compute" | {"ctl1", ...}, tags =, skip_tags =, extra_vars = {...},
--     secret_vars = {"name", ...}, become_password =, check =, diff =, forks =,
--     verbosity =, args = {...}, env = {...}, timeout = 3600 (s), grace = 5 (s),
--     allow_no_hosts = false,           -- a play that matches no host fails the step
--     name =, nodes =, hook_point =, continue_on_error =, description =,   -- as ctx:step
--   } -> the result of upgrun.ansible.run (or false, message with continue_on_error)
--
-- Hosts whose upgrun SSH settings Ansible would not read (upgrun_known_hosts,
-- upgrun_host_key_policy) get the matching ansible_ssh_common_args from one
-- more inventory source upgrun writes to the output directory
-- (ansible-ssh.yml), unless the inventory sets ansible_ssh_common_args itself:
-- Ansible then checks the same host keys upgrun checks.
local ansible = require "upgrun.ansible"
local cjson = require "cjson"
local Timeline = require "upgrun.timeline"

local KNOWN = {}
for k in ([[playbook limit tags skip_tags extra_vars secret_vars become_password check diff forks verbosity
  args env timeout grace allow_no_hosts name nodes hook_point continue_on_error description]]):gmatch("%S+") do
  KNOWN[k] = true
end

local function basename(p) return p:match("[^/]+$") or p end

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

local function list(v)
  if v == nil then return {} end
  if type(v) == "table" then return v end
  return { v }
end

-- -o options for the upgrun SSH settings of a node, or nil.
local function ssh_args(node)
  local parts = {}
  if node.known_hosts then parts[#parts + 1] = "-o UserKnownHostsFile=" .. node.known_hosts end
  local policy = node.host_key_policy
  if policy == "accept-new" then parts[#parts + 1] = "-o StrictHostKeyChecking=accept-new"
  elseif policy == "strict" then parts[#parts + 1] = "-o StrictHostKeyChecking=yes" end
  if #parts == 0 then return nil end
  return table.concat(parts, " ")
end

-- The -i sources: the ones upgrun was given, then the SSH bridge (if any).
local function inventory_sources(run)
  local given = run.opts.inventory
  if given == nil then
    error("ctx:ansible needs the inventory upgrun runs with: pass -i (the same sources are given to "
          .. "ansible-playbook)", 0)
  end
  local sources = {}
  for i, s in ipairs(list(given)) do sources[i] = s end
  local inv, err = run:load_inventory()
  if not inv then error(err, 0) end
  local hosts, any = {}, false
  for _, n in ipairs(inv:hosts()) do
    local args = n.vars.ansible_ssh_common_args == nil and ssh_args(n)
    if args then hosts[n.name] = { ansible_ssh_common_args = args }; any = true end
  end
  if any and run.out and not run.plan then
    local path = run.out .. "/ansible-ssh.yml"
    local f = assert(io.open(path, "wb"))
    f:write("# written by upgrun: the SSH settings upgrun uses (upgrun_known_hosts, upgrun_host_key_policy)\n",
            (cjson.encode({ all = { hosts = hosts } }):gsub("\\/", "/")), "\n")
    f:close()
    sources[#sources + 1] = path
  end
  return sources
end

local function record_task(run, st, playbook, t)
  local hosts = {}
  for h, r in pairs(t.hosts) do
    hosts[h] = { status = r.status, ignored = r.ignored, msg = run:redact(r.msg), rc = r.rc,
                 stderr = r.status == "failed" and run:redact(r.stderr) or nil,
                 t = r.t and run.tl:rel(r.t) or nil }
  end
  -- recorded when the task ended: its wall times from its start and end
  local t0, t1 = run.tl:rel(t.start), run.tl:rel(t.finish)
  run.tl:event("ansible_task", { step = st.path, depth = st.depth + 1, playbook = playbook, play = t.play,
                                 task = t.name, action = t.action, path = t.path, handler = t.handler,
                                 t = t0, t_end = t1, wall = Timeline.iso(run.tl.t0_wall + t0),
                                 wall_end = Timeline.iso(run.tl.t0_wall + t1),
                                 duration = t.finish - t.start, hosts = hosts, counts = t.counts })
end

return function(ctx, spec, where)
  if type(spec) ~= "table" then error("ctx:ansible: needs a table {playbook = ...}", 3) end
  for k in pairs(spec) do
    if not KNOWN[k] then error(string.format("ctx:ansible: unknown field '%s'", tostring(k)), 3) end
  end
  if type(spec.playbook) ~= "string" or spec.playbook == "" then
    error("ctx:ansible: needs playbook = a path (relative to the scenario file)", 3)
  end
  local run = ctx._run
  local playbook = spec.playbook
  if playbook:sub(1, 1) ~= "/" then playbook = dirname(run.path or ".") .. "/" .. playbook end
  for _, sec in ipairs(ansible.secrets_of(spec)) do
    if #sec >= 3 then run.secret_values[#run.secret_values + 1] = sec end
  end
  local limit = spec.limit
  local opts = {}
  for k, v in pairs(spec) do opts[k] = v end
  opts.playbook = playbook
  local name = spec.name or ("ansible-playbook " .. basename(playbook))
  local function body(_, st)
    opts.inventories = inventory_sources(run)
    if run.plan then
      run.exec:say(string.rep("  ", st.depth + 3) .. "local: "
                   .. run:redact(ansible.command_line(ansible.argv(opts, spec.extra_vars and "EXTRA_VARS.json"))))
      return true
    end
    opts.on_task = function(t) record_task(run, st, basename(playbook), t) end
    local res, err = ansible.run(opts)
    local r = res or (type(err) == "table" and err.result) or {}
    run.tl:event("ansible", { step = st.path, playbook = playbook, result = res and "passed" or "failed",
                              command = r.argv and run:redact(ansible.command_line(r.argv)),
                              status = r.status, duration = r.duration, stats = r.stats,
                              error = err and run:redact(err.message) or nil })
    if not res then error(run:redact(err.message), 0) end
    return res
  end
  return run.exec:run_step(ctx, { name = name, fn = body, nodes = spec.nodes or (limit and list(limit)),
                                  hook_point = spec.hook_point, continue_on_error = spec.continue_on_error,
                                  description = spec.description, where = where })
end
