-- upgrun.upgrade.restart — services on nodes during an upgrade: which nodes
-- run a service, a graceful stop (drain out of the load balancer, SIGTERM,
-- wait, SIGKILL after a grace), a start that waits until the service runs and
-- passes its health command (then undrain), the two as one step, restarts in
-- phases over a group, and checks that every service runs a release (the
-- running process, not just the code on disk). The services and their
-- drain/undrain/health commands come from the inventory's upgrun_services
-- (docs/nodes.md). Used through upgrun.upgrade.
local services = require "upgrun.services"

local M = {}

function M.has_service(node, name)
  local svcs = node.vars.upgrun_services
  return type(svcs) == "table" and svcs[name] ~= nil
end

-- Nodes of a group that run a service.
function M.nodes_with(ctx, group, service)
  local out = {}
  for _, n in ipairs(ctx.inventory:group(group)) do
    if M.has_service(n, service) then out[#out + 1] = n end
  end
  return out
end

-- Runs a service's `drain` / `undrain` command from the inventory, if it has
-- one (e.g. take an API out of its load balancer before a restart, so no
-- request is sent to a process that is going away), as a timed step.
local function lb(ctx, node, service, which)
  local spec = (node.vars.upgrun_services or {})[service]
  local cmd = type(spec) == "table" and spec[which]
  if type(cmd) ~= "string" then return end
  ctx:step(string.format("%s %s on %s", which, service, node.name), function()
    assert(node:run(cmd:gsub("{node}", node.name):gsub("{service}", service), { timeout = 120, check = true }))
  end)
end

-- Stops a service gracefully (SIGTERM, wait, SIGKILL after opts.grace),
-- after draining it when the inventory says how.
function M.stop(ctx, node, service, opts)
  opts = opts or {}
  lb(ctx, node, service, "drain")
  local grace = opts.grace or 30
  local r = assert(node:service(service):stop { signal = "TERM", grace = grace, timeout = grace + 30 })
  if r.escalated then ctx:log("%s on %s ignored SIGTERM for %ss: killed", service, node.name, grace) end
  return r
end

-- Starts a service, waits until it runs and passes its health command
-- (opts.timeout), records the release it runs, then undrains it.
function M.start(ctx, node, service, opts)
  opts = opts or {}
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

-- drain → stop → start → health → undrain as one step "restart <service> on <node>".
function M.restart_step(ctx, node, service, opts)
  ctx:step(string.format("restart %s on %s", service, node.name), { nodes = { node } }, function()
    M.restart(ctx, node, service, opts)
  end)
end

-- Restarts services over nodes in phases: each phase (a list of services)
-- goes node by node, restarting the phase's services the node runs, in the
-- phase's order. {{"a"}, {"b", "c"}}: every a first, then b and c node by
-- node; {{"a", "b", "c"}}: node by node.
function M.restart_phases(ctx, nodes, phases, opts)
  for _, phase in ipairs(phases) do
    for _, n in ipairs(nodes) do
      for _, svc in ipairs(phase) do
        if M.has_service(n, svc) then M.restart_step(ctx, n, svc, opts) end
      end
    end
  end
end

-- Whether a service name is one of a project's: `only` is nil (every
-- service), a list of names, or a Lua pattern ("^nova%-").
function M.selects(only, name)
  if only == nil then return true end
  if type(only) == "string" then return name:match(only) ~= nil end
  for _, v in ipairs(only) do if v == name then return true end end
  return false
end

-- Checks that every service on the nodes (opts.only: those M.selects; a node
-- may run other projects' services too) runs `release`; a service whose
-- inventory gives no running_release command is recorded as skipped.
function M.check_running_release(ctx, nodes, release, opts)
  local only = opts and opts.only
  for _, n in ipairs(nodes) do
    for _, svc in ipairs(services.of(n)) do
      if M.selects(only, svc.name) then
        local rel, err = svc:running_release()
        local name = string.format("%s on %s runs %s", svc.name, n.name, release)
        if rel == nil and err and err.kind == "config" then
          ctx:skip(name, "the inventory gives no running_release command for it")
        else
          ctx:check(name, rel == release, rel and ("runs " .. rel) or tostring(err))
        end
      end
    end
  end
end

return M
