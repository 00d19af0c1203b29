-- upgrun.runner.validate — catches the typos that would otherwise give a
-- false PASS, before anything runs: a probe's stages, baseline or budget
-- keys, and the scenario budget's keys, that name nothing declared. Each
-- message names the scenario file and line and the known names.
--
--   validate.scenario(s) -> true | nil, message
local M = {}

local function budget_keys()
  local ok, outages = pcall(require, "upgrun.outages")
  local keys = {}
  for _, b in ipairs(ok and outages.BUDGET_KEYS or {}) do keys[b.key] = true end
  return keys
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function check_budget(b, what, where, problems)
  if b == nil then return end
  if type(b) ~= "table" then
    problems[#problems + 1] = string.format("%s: %s budget must be a table, got %s", where, what, type(b))
    return
  end
  local known = budget_keys()
  if next(known) == nil then return end
  for k, v in pairs(b) do
    if not known[k] then
      problems[#problems + 1] = string.format("%s: %s budget has an unknown key %q (known: %s)", where, what,
        tostring(k), table.concat(sorted_keys(known), ", "))
    elseif type(v) ~= "number" then
      problems[#problems + 1] = string.format("%s: %s budget %s must be a number, got %s", where, what, k, type(v))
    end
  end
end

function M.scenario(s)
  local problems = {}
  local stages = {}
  for _, st in ipairs(s.stages) do stages[st.name] = true end
  local known = table.concat(s:stage_names(), ", ")
  for _, p in ipairs(s.probes) do
    local where = s.probe_where[p] or s.declared_at
    if p.stages ~= nil and type(p.stages) ~= "table" then
      problems[#problems + 1] = string.format("%s: probe %s: stages must be a list of stage names", where, p.name)
    end
    for _, name in ipairs(type(p.stages) == "table" and p.stages or {}) do
      if not stages[name] then
        problems[#problems + 1] = string.format("%s: probe %s runs in stage %q, which is not declared (stages: %s)",
          where, p.name, tostring(name), known)
      end
    end
    local degradation = false
    for k in pairs(type(p.budget) == "table" and p.budget or {}) do
      if tostring(k):match("degradation") then degradation = true end
    end
    local check_baseline = s.probe_baseline_given[p] or degradation
    if check_baseline and not stages[p.baseline] then
      problems[#problems + 1] = string.format("%s: probe %s: baseline %q is not a declared stage (stages: %s)",
        where, p.name, tostring(p.baseline), known)
    elseif degradation and not p:runs_in(p.baseline) then
      problems[#problems + 1] = string.format("%s: probe %s: baseline stage %s is not among its stages, so its "
        .. "latency degradation budget could never be measured", where, p.name, p.baseline)
    end
    check_budget(p.budget, "probe " .. p.name, where, problems)
  end
  check_budget(s.scenario_budget, "scenario", s.budget_where or s.declared_at, problems)
  if #problems > 0 then return nil, table.concat(problems, "\n") end
  return true
end

return M
