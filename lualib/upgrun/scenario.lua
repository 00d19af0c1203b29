-- upgrun.scenario — the declaration model of a scenario. A scenario file
-- declares parameters, stages (run in declared order) made of named steps,
-- hooks, probes and budgets, and ends with `return s`; `upgrun FILE args...`
-- then calls s:run(args, path), which hands it to the runner
-- (upgrun.runner: command line, checks, execution or plan, reports).
--
--   local scenario = require "upgrun.scenario"
--   local s = scenario.new{name =, description =, params = {k = default | {default =, description =, secret =,
--                                                                     choices = {...}}},
--                          budget = {max_downtime =, max_outage =, max_p95_degradation =}}
--   s:stage(name, [opts,] fn(ctx))          opts: needs = {"before"}, description
--   s:probe{name =, fn = | http = {url =}, interval = | rate =, timeout =, max_in_flight =,
--           stages = {...}, expect = {...}, budget = {...}}
--   s:watch{kind = "server", every = 2, stages =, expect =, budget = {max_unavailable =}}
--                                            follows every ledger record of that kind (upgrun.watch)
--   s:hook(point, "before"|"after", fn(ctx, step), [opts])   point: a step name, a hook point, or "*"
--   s:cleanup(kind, fn(ctx, rec))            cleans persistent resources of that kind at the end
--   s:budget{...}                            the scenario-wide budget
--   s:setup(fn(ctx))                         runs once the params are known, before the first stage
--   s:probe_named(name)                      a declared probe (to adjust it in setup)
-- The step context (ctx:step, ctx:check, ...) is upgrun.runner.context.
local probe = require "upgrun.probe"
local watch = require "upgrun.watch"
local errors = require "upgrun.errors"
local redact = require "upgrun.redact"
local steady = require "upgrun.steady"

local M = {}
local Scenario = {}
Scenario.__index = Scenario
M.Scenario = Scenario

M.EXIT = { passed = 0, failed = 1, usage = 2, aborted = 3 }

-- Raises a usage error (a bad invocation or scenario: exit 2); its message
-- is printed as is.
function M.usage_error(msg) error(errors.new("usage", msg, { usage = true }), 0) end

-- Scenarios declared so far (weak): the command line tells a scenario file
-- that forgot `return s` from a plain script by it.
M.declared = setmetatable({}, { __mode = "k" })

-- "file:line" of the caller `level` levels up (for messages about typos).
local function where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info then return "?" end
  return info.short_src .. ":" .. tostring(info.currentline)
end
M.where = where

local function param_spec(name, v)
  local spec
  if type(v) == "table" and (v.default ~= nil or v.description or v.type or v.secret ~= nil or v.choices) then
    spec = { default = v.default, description = v.description, secret = v.secret, type = v.type,
             choices = v.choices }
  else
    spec = { default = v }
  end
  spec.name = name
  spec.type = spec.type or (spec.default ~= nil and type(spec.default)) or "string"
  if spec.type == "table" then spec.type = "list" end
  if spec.secret == nil then spec.secret = redact.is_secret_name(name) end
  if spec.choices ~= nil and (type(spec.choices) ~= "table" or #spec.choices == 0) then
    error("param " .. name .. ": choices must be a non-empty list of the allowed values", 3)
  end
  return spec
end

function M.new(spec)
  if type(spec) ~= "table" then error("scenario.new expects a table {name = ..., ...}", 2) end
  if type(spec.name) ~= "string" or not spec.name:match("^[%w_%-%.]+$") then
    error("scenario.new: name must be a word (letters, digits, _ - .), got " .. tostring(spec.name), 2)
  end
  local s = setmetatable({
    name = spec.name, description = spec.description or "",
    params = {}, param_order = {},
    stages = {}, probes = {}, watches = {}, hooks = {}, cleanups = {}, setups = {},
    scenario_budget = spec.budget, declared_at = where(2), probe_where = {}, probe_baseline_given = {},
  }, Scenario)
  s:declare_params(spec.params or {})
  steady.declare(s, spec.steady)
  M.declared[s] = true
  return s
end

-- Declares every parameter of a table {name = default or spec}, in name order,
-- each name with `prefix` in front (a project's parameters in a scenario of
-- several projects: s:declare_params(runbook.params(), "keystone_")).
function Scenario:declare_params(specs, prefix)
  local names = {}
  for k in pairs(specs) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do self:param((prefix or "") .. k, specs[k]) end
end

-- Declares a parameter: s:param(name, default) or s:param(name, {default =,
-- description =, secret = true, type = "string"|"number"|"boolean"|"list",
-- choices = {...}}). With choices, the value (each item of a list) must be one
-- of them: checked once after --set, before setup (a usage error otherwise).
function Scenario:param(name, v)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    error("param: bad parameter name " .. tostring(name), 2)
  end
  if not self.params[name] then self.param_order[#self.param_order + 1] = name end
  self.params[name] = param_spec(name, v)
  return self
end

-- s:stage(name, fn) or s:stage(name, {needs = {...}, description = ...}, fn)
function Scenario:stage(name, opts, fn)
  if type(opts) == "function" then opts, fn = {}, opts end
  if type(name) ~= "string" or name == "" then error("stage: needs a name", 2) end
  if type(fn) ~= "function" then error("stage " .. name .. ": needs a function(ctx)", 2) end
  for _, st in ipairs(self.stages) do
    if st.name == name then error("stage " .. name .. " is declared twice", 2) end
  end
  local needs = opts.needs
  if type(needs) == "string" then needs = { needs } end
  for _, n in ipairs(needs or {}) do
    local found = false
    for _, st in ipairs(self.stages) do if st.name == n then found = true end end
    if not found then error("stage " .. name .. " needs stage " .. n .. ", which is not declared before it", 2) end
  end
  self.stages[#self.stages + 1] = { name = name, fn = fn, needs = needs, description = opts.description,
                                    where = where(2) }
  return self
end

function Scenario:probe(spec)
  local p = probe.new(spec)
  for _, q in ipairs(self.probes) do
    if q.name == p.name then error("probe " .. p.name .. " is declared twice", 2) end
  end
  self.probes[#self.probes + 1] = p
  self.probe_where[p] = where(2)
  if spec.baseline ~= nil then self.probe_baseline_given[p] = true end
  return p
end

-- Declares a resource watch (upgrun.watch): every live ledger record of
-- `kind` is listed every `every` s during the stages it covers.
function Scenario:watch(spec)
  local w = watch.new(spec, where(2))
  for _, q in ipairs(self.watches) do
    if q.name == w.name then error("watch " .. w.name .. " is declared twice", 2) end
  end
  self.watches[#self.watches + 1] = w
  return w
end

-- s:hook(point, when, fn, opts): `point` is a step name, a named hook point
-- (steps declare hook_point = "db_migration"), or "*" (every step); `when` is
-- "before" or "after". opts.fatal: a failing before-hook fails the step
-- without running it. opts.source names where the hook comes from.
function Scenario:hook(point, when, fn, opts)
  if type(point) ~= "string" then error("hook: point must be a string", 2) end
  if when ~= "before" and when ~= "after" then error("hook " .. point .. ": when must be \"before\" or \"after\"",
    2) end
  if type(fn) ~= "function" then error("hook " .. point .. ": needs a function(ctx, step)", 2) end
  opts = opts or {}
  local info = debug.getinfo(fn, "S")
  self.hooks[#self.hooks + 1] = { point = point, when = when, fn = fn, fatal = opts.fatal,
    name = opts.name or (when .. " " .. point),
    source = opts.source or (info and (info.short_src .. ":" .. info.linedefined)) }
  return self
end

function Scenario:cleanup(kind, fn)
  if type(kind) ~= "string" or type(fn) ~= "function" then error("cleanup(kind, fn(ctx, rec))", 2) end
  self.cleanups[kind] = fn
  return self
end

-- Registers fn(ctx) to run once the parameters are known, before the first
-- stage and its probes start (also under --plan): the place to validate
-- parameters and to adjust probes from them (p.interval, p.budget, p.stages).
-- An error there is a bad invocation (exit 2).
function Scenario:setup(fn)
  if type(fn) ~= "function" then error("s:setup expects a function", 2) end
  self.setups[#self.setups + 1] = fn
end

-- The probe declared with that name (for setup functions).
function Scenario:probe_named(name)
  for _, p in ipairs(self.probes) do if p.name == name then return p end end
  error("no probe named " .. tostring(name), 2)
end

function Scenario:budget(b)
  self.scenario_budget = b
  self.budget_where = where(2)
  return self
end

-- The names of the declared stages, in order.
function Scenario:stage_names()
  local t = {}
  for i, st in ipairs(self.stages) do t[i] = st.name end
  return t
end

-- The entry point: `upgrun FILE args...` calls s:run(args, path).
function Scenario:run(args, path)
  return require("upgrun.runner").main(self, args or {}, path)
end

return M
