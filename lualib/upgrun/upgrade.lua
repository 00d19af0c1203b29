-- upgrun.upgrade — the project-neutral layer of an upgrade scenario (the
-- shared part that keeps each scenario short, as sysbench's oltp_common does
-- for its tests). A project's scenario (Nova, Keystone, Glance, ...) is its
-- runbook on top of this; project specifics live in upgrun.<project>.*.
--
--   local upgrade = require "upgrun.upgrade"
--   local s = upgrade.scenario {
--     project = "keystone",                      -- prefix of its inventory variables
--     name =, description =,
--     releases = {from = "zed", to = "2023.1"},  -- when neither --set nor inventory var
--     strategies = {"rolling", "manual"},        -- the `strategy` param's choices (default: first)
--     params = {...},                            -- the scenario's own (choices = {...} allowed)
--   }
--   -- standard params: from_release, to_release, strategy, stop_grace, service_timeout;
--   -- after setup ctx.params.from_release/to_release are resolved and checked
--   -- against the inventory's upgrun_releases
--   upgrade.probe(s, {name =, fn =, rate = {param = "list_rate", default = 5},
--                     budget = function(P) return {max_downtime = 10} end, ...})
--
-- Several projects in one scenario (scenarios/cloud_upgrade.lua): each
-- project's parameters are declared with a prefix (keystone_group, ...):
--   upgrade.view(ctx, prefix)            P.x reads <prefix>x, else x (shared); "" is ctx.params
--   upgrade.release_params(project, releases, prefix)   the from/to release params
--   upgrade.resolve_releases(ctx, project, P, releases) P.from_release/to_release, checked
--                                        against <project>_releases, else upgrun_releases
-- Settings and code (per project, from inventory variables <project>_*):
--   upgrade.setting(ctx, project, name, default[, P])  --set value, else inventory var, else default
--   upgrade.switch_code(ctx, project, node, release, {how =, timeout =})  (upgrade.switchers[how])
--   upgrade.code_release(project, node)   upgrade.check_code(ctx, project, nodes, release)
--   upgrade.config(project, node, section, option, value|nil)
--   upgrade.skips_release(ctx, from, to)  the pair skips a release (upgrun_release_series)
-- Services (upgrun_services):
--   upgrade.has_service(node, svc)   upgrade.nodes_with(ctx, group, svc)
--   upgrade.stop / start / restart(ctx, node, svc, {grace =, timeout =})
--   upgrade.restart_step(ctx, node, svc, opts)      drain → stop → start → health → undrain, one step
--   upgrade.restart_phases(ctx, nodes, phases, opts)
--   upgrade.check_running_release(ctx, nodes, release, {only = {svc...} | "^pattern"})
-- Flow:
--   upgrade.parallel(ctx, nodes, fn, {max =})       raises with every node's error
--   upgrade.rolling(ctx, nodes, fn, {serial = n})   a step per node (or per n nodes at once)
--   upgrade.survived(ctx, kind, fn(rec, check))     checks on every ledger record of a kind
--   upgrade.tool(ctx, node, var, default, args, {timeout =, check =})  an inventory command prefix
--   upgrade.tail(text, n)   upgrade.wants(list, item)
local params = require "upgrun.upgrade.params"
local code = require "upgrun.upgrade.code"
local restart = require "upgrun.upgrade.restart"

local M = {}

M.scenario, M.probe, M.setting, M.inventory_vars = params.scenario, params.probe, params.setting,
  params.inventory_vars
M.view, M.resolve_releases, M.release_params = params.view, params.resolve_releases, params.release_params
M.switchers, M.switch_code, M.code_release, M.check_code, M.config = code.switchers, code.switch_code,
  code.code_release, code.check_code, code.config
M.has_service, M.nodes_with, M.stop, M.start, M.restart = restart.has_service, restart.nodes_with, restart.stop,
  restart.start, restart.restart
M.restart_step, M.restart_phases, M.check_running_release = restart.restart_step, restart.restart_phases,
  restart.check_running_release
M.selects = restart.selects

local function message(e)
  return tostring(type(e) == "table" and e.message or e)
end

-- ctx:parallel over nodes (or any items with .name); raises one error naming
-- every item that failed and why ("ctl1: ...; cmp2: ..."). Returns the results.
function M.parallel(ctx, items, fn, opts)
  local results = ctx:parallel(items, fn, opts)
  local errs = {}
  for i, r in ipairs(results) do
    if not r.ok then
      local msg, name = message(r.error), type(items[i]) == "table" and items[i].name
      if name and msg:sub(1, #name) ~= name then msg = name .. ": " .. msg end
      errs[#errs + 1] = msg
    end
  end
  if #errs > 0 then error(table.concat(errs, "; "), 0) end
  return results
end

-- Rolls over nodes: a step per node named after it (fn(node) inside), one
-- after the other; opts.serial = n runs n nodes at a time (a step per batch,
-- named "n1, n2", the batch in parallel; every node's error is raised).
function M.rolling(ctx, nodes, fn, opts)
  local serial = math.max(1, math.floor(opts and opts.serial or 1))
  for i = 1, #nodes, serial do
    local batch = { table.unpack(nodes, i, math.min(i + serial - 1, #nodes)) }
    local names = {}
    for j, n in ipairs(batch) do names[j] = n.name end
    ctx:step(table.concat(names, ", "), { nodes = batch }, function()
      if #batch == 1 then fn(batch[1]) else M.parallel(ctx, batch, fn) end
    end)
  end
end

-- Survival checks of persistent resources: for every ledger record of `kind`,
-- fn(rec, check) where check(what, ok_or_fn, detail) records a check named
-- "<record name> <what>". Returns the number of records.
function M.survived(ctx, kind, fn)
  local count = 0
  for rec in ctx.ledger:each(kind) do
    count = count + 1
    local name = rec.data and rec.data.name or rec.id
    fn(rec, function(what, ok, detail) return ctx:check(name .. " " .. what, ok, detail) end)
  end
  return count
end

-- The last n bytes of a command's output (a failing tool's reason is at its end).
function M.tail(text, n)
  text = tostring(text or ""):gsub("%s+$", "")
  if #text <= n then return text end
  return "..." .. text:sub(-n)
end

-- Runs "<prefix> <args>" on a node, the prefix being the node's inventory
-- variable `var` (e.g. nova_manage, keystone_manage) or `default`. Returns
-- the result; raises when it cannot run, and with opts.check when it exits
-- non-zero (naming the command, its exit and the tail of its output).
function M.tool(node, var, default, args, opts)
  opts = opts or {}
  local prefix = node.vars[var] or default
  local r, err = node:run(prefix .. " " .. args, { timeout = opts.timeout or 1800 })
  if not r then error(string.format("%s: %s %s: %s", node.name, default, args, tostring(err)), 0) end
  if opts.check and not r.ok then
    error(string.format("%s %s failed (exit %s): %s", default, args, tostring(r.status),
      M.tail(r.stdout .. r.stderr, 1500)), 0)
  end
  return r
end

-- Whether a list holds an item.
function M.wants(list, item)
  for _, v in ipairs(list or {}) do if v == item then return true end end
  return false
end

-- A release as a count of six-month releases, from the inventory's
-- upgrun_release_series ({release = "2025.1"}); nil when unknown.
local function series_index(ctx, release)
  local vars = params.inventory_vars(ctx)
  local series = vars and vars.upgrun_release_series
  local v = type(series) == "table" and series[release]
  local year, half = tostring(v or ""):match("^(%d%d%d%d)%.([12])$")
  return year and (tonumber(year) * 2 + tonumber(half)) or nil
end

-- Whether upgrading from → to skips at least one release (a fast-forward
-- upgrade); false when the inventory does not say.
function M.skips_release(ctx, from, to)
  local a, b = series_index(ctx, from), series_index(ctx, to)
  return a ~= nil and b ~= nil and b - a > 1
end

return M
