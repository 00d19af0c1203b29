-- upgrun.runner.validate — catches the typos that would otherwise give a
-- false PASS, before anything runs: a probe's stages, baseline or budget
-- keys, and the scenario budget's keys, that name nothing declared; a hook
-- attached to a stage name. Each message names the scenario file and line
-- and the known names. After a run, unused_hooks lists the hooks that
-- matched no step (a warning: the step may exist only under other params).
--
--   validate.scenario(s [, before_setup]) -> true | nil, message   (before_setup: names only;
--                                         setup functions may still change a probe's stages)
--   validate.unused_hooks(run) -> {message, ...}
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

function M.scenario(s, before_setup)
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
    elseif degradation and not before_setup and not p:runs_in(p.baseline) then
      problems[#problems + 1] = string.format("%s: probe %s: baseline stage %s is not among its stages, so its "
        .. "latency degradation budget could never be measured", where, p.name, p.baseline)
    end
    check_budget(p.budget, "probe " .. p.name, where, problems)
  end
  check_budget(s.scenario_budget, "scenario", s.budget_where or s.declared_at, problems)
  for _, w in ipairs(s.watches or {}) do
    for _, name in ipairs(type(w.stages) == "table" and w.stages or {}) do
      if not stages[name] then
        problems[#problems + 1] = string.format("%s: watch %s runs in stage %q, which is not declared (stages: %s)",
          w.where, w.name, tostring(name), known)
      end
    end
  end
  for _, h in ipairs(s.hooks) do
    if stages[h.point] then
      problems[#problems + 1] = string.format("%s: hook %q: %s is a stage; hooks attach to a step name, a step's "
        .. "hook_point or \"*\" (stages: %s)", tostring(h.source), h.name, h.point, known)
    end
  end
  if #problems > 0 then return nil, table.concat(problems, "\n") end
  return true
end

function M.unused_hooks(run)
  local used = {}
  for _, rec in ipairs(run.hooks_run) do used[rec.name .. "\0" .. tostring(rec.source)] = true end
  local points = {}
  for _, st in ipairs(run.steps) do if st.hook_point then points[st.hook_point] = true end end
  local out = {}
  for _, h in ipairs(run.s.hooks) do
    if not used[h.name .. "\0" .. tostring(h.source)] then
      out[#out + 1] = string.format("%s: hook %q never ran: no step named %s or with hook_point %s ran "
        .. "(hook points that ran: %s)", tostring(h.source), h.name, h.point, h.point,
        next(points) and table.concat(sorted_keys(points), ", ") or "none")
    end
  end
  return out
end

return M
