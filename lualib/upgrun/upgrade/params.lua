-- upgrun.upgrade.params — the parameters every upgrade scenario has, and the
-- plumbing that turns them into settings: the standard parameters (from/to
-- release, strategy, stop grace, service timeout), project-prefixed settings
-- (a --set value, else the inventory variable <project>_<name>, else a
-- default), the release pair checked against the inventory's upgrun_releases,
-- and probes whose rate, interval and budget are parameters applied once in
-- setup. Used through upgrun.upgrade (see there for the API).
local scenario = require "upgrun.scenario"

local M = {}

-- The inventory's all-vars, or nil (no inventory: --plan without -i).
function M.inventory_vars(ctx)
  local ok, inv = pcall(function() return ctx.inventory end)
  return ok and inv and inv.vars or nil
end

-- A parameter, or the inventory variable <project>_<name>, or a default:
-- site facts may live in either place. An empty string or empty list counts
-- as unset. P: where the parameter is read (default ctx.params; a project's
-- view, M.view, in a scenario of several projects).
function M.setting(ctx, project, name, default, P)
  local v = (P or ctx.params)[name]
  if v ~= nil and v ~= "" and not (type(v) == "table" and #v == 0) then return v end
  local vars = M.inventory_vars(ctx)
  local iv = vars and vars[project .. "_" .. name]
  if iv ~= nil then return iv end
  return default
end

-- The parameters of one project in a scenario that upgrades several: the
-- project's own parameters are declared prefixed (keystone_group,
-- nova_list_rate, ...); P.group reads ctx.params[prefix .. "group"], else the
-- unprefixed one (shared: strategy, stop_grace, service_timeout); P.x = v
-- writes ctx.params[prefix .. "x"]. An empty prefix is ctx.params itself.
function M.view(ctx, prefix)
  local params = ctx.params
  if not prefix or prefix == "" then return params end
  return setmetatable({}, {
    __index = function(_, k)
      local v = params[prefix .. k]
      if v == nil then v = params[k] end
      return v
    end,
    __newindex = function(_, k, v) params[prefix .. k] = v end,
  })
end

-- Resolves a project's release pair into P.from_release / P.to_release (a
-- parameter, else the inventory's <project>_from_release / _to_release, else
-- releases.from / .to) and checks each against the releases the inventory
-- offers for the project (<project>_releases, else upgrun_releases). Raises
-- (exit 2) naming the parameter; under --plan without -i a release is named,
-- not known.
function M.resolve_releases(ctx, project, P, releases)
  local rel = releases or {}
  P.from_release = M.setting(ctx, project, "from_release", rel.from, P)
  P.to_release = M.setting(ctx, project, "to_release", rel.to, P)
  local vars = M.inventory_vars(ctx)
  local offered = vars and (vars[project .. "_releases"] or vars.upgrun_releases)
  for _, name in ipairs({ "from_release", "to_release" }) do
    local shown = rawequal(P, ctx.params) and name or (project .. "_" .. name)
    if (P[name] == nil or P[name] == "") and ctx.plan then
      P[name] = "<" .. project .. "_" .. name .. ">" -- a plan without -i: named, not known
    elseif P[name] == nil or P[name] == "" then
      error(string.format("--set %s: no release given and the inventory has no %s_%s", shown, project, name), 0)
    elseif type(offered) == "table" then
      local found = false
      for _, r in ipairs(offered) do if r == P[name] then found = true end end
      if not found then
        error(string.format("--set %s: the inventory offers no release %q (offered: %s)", shown, P[name],
          table.concat(offered, ", ")), 0)
      end
    end
  end
end

-- The release pair's parameters of a project (from_release, to_release;
-- with a prefix, <prefix>from_release ...), for scenario.new's params.
function M.release_params(project, releases, prefix)
  local rel, pre = releases or {}, prefix or ""
  return {
    [pre .. "from_release"] = { default = "", description = "release the cloud runs before; default: inventory var "
                                  .. project .. "_from_release" .. (rel.from and (", else " .. rel.from) or "") },
    [pre .. "to_release"] = { default = "", description = "release to upgrade to; default: inventory var "
                                .. project .. "_to_release" .. (rel.to and (", else " .. rel.to) or "") },
  }
end

-- The standard parameters; a scenario's own params override them by name.
local function standard(project, opts)
  local strategies = opts.strategies or { "rolling" }
  local out = M.release_params(project, opts.releases)
  out.strategy = { default = strategies[1], choices = strategies, description = opts.strategy_description
                     or "how the services change release" }
  out.stop_grace = { default = 30, description = "seconds a service gets after SIGTERM before SIGKILL" }
  out.service_timeout = { default = 180, description = "seconds to wait for a service to be up (and healthy)" }
  return out
end

-- A scenario with the standard parameters, its own, and a setup that
-- resolves the releases (ctx.params.from_release / to_release are then set)
-- and checks them against the inventory's upgrun_releases.
function M.scenario(spec)
  if type(spec) ~= "table" or type(spec.project) ~= "string" or not spec.project:match("^[%a_][%w_]*$") then
    error("upgrade.scenario: project must be a word (the inventory variables' prefix)", 2)
  end
  local params = standard(spec.project, spec)
  for k, v in pairs(spec.params or {}) do params[k] = v end
  local s = scenario.new { name = spec.name, description = spec.description, params = params,
                           budget = spec.budget, steady = spec.steady }
  s.upgrade_project = spec.project
  s:setup(function(ctx) M.resolve_releases(ctx, spec.project, ctx.params, spec.releases) end)
  return s
end

-- A parameter reference in a probe spec: {param = "list_rate", default = 5,
-- description = ...}; declares the parameter and returns its name.
local function declare(s, ref, what, probe_name)
  if type(ref) ~= "table" then return nil end
  if type(ref.param) ~= "string" then error("upgrade.probe " .. probe_name .. ": " .. what .. " needs param =", 3) end
  local text = what == "rate" and (probe_name .. " probes per second (0: off)")
    or ("seconds between " .. probe_name .. " samples (0: off)")
  s:param(ref.param, { default = ref.default, secret = false, type = "number", description = ref.description or text })
  return ref.param
end

-- s:probe with parameters: rate = {param =, default =} (per second) or
-- interval = {param =, default =} (seconds) declare a parameter that sets the
-- probe's pace once in setup (0 turns the probe off); budget = fn(params)
-- returns the probe's budget (or nil) once the parameters are known.
function M.probe(s, spec)
  local rate_p = declare(s, spec.rate, "rate", spec.name)
  local interval_p = declare(s, spec.interval, "interval", spec.name)
  local budget = type(spec.budget) == "function" and spec.budget or nil
  local decl = {}
  for k, v in pairs(spec) do decl[k] = v end
  if rate_p then decl.rate = spec.rate.default end
  if interval_p then decl.interval = spec.interval.default end
  if budget then decl.budget = nil end
  if (rate_p and decl.rate == 0) or (interval_p and decl.interval == 0) then decl.rate, decl.interval = 1, nil end
  local p = s:probe(decl)
  if rate_p or interval_p or budget then
    s:setup(function(ctx)
      local P = ctx.params
      local pace = rate_p and P[rate_p] or (interval_p and P[interval_p])
      if pace ~= nil then
        if pace < 0 then error(string.format("--set %s: must be 0 (off) or more, got %s", rate_p or interval_p,
          tostring(pace)), 0) end
        if pace == 0 then p.stages = {}
        elseif rate_p then p.interval = 1 / pace
        else p.interval = pace end
      end
      if budget then p.budget = budget(P) end
    end)
  end
  return p
end

return M
