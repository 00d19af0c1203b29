-- upgrun.runner.plan — `--plan`: a dry-run executor with the executor's
-- methods. Stage functions run with ctx.plan = true; each ctx:step is listed
-- (nodes, hook point, the hooks that would run around it) and its body is not
-- run; checks are recorded as planned. Without -i, ctx.inventory is a
-- symbolic inventory whose groups are one placeholder node named <group>,
-- so stages that pick nodes still list their steps.
local executor = require "upgrun.runner.executor"
local scenario = require "upgrun.scenario"

local M = {}
local Plan = {}
Plan.__index = Plan

function M.new(run, out)
  return setmetatable({ run = run, out = out or function(line) io.stdout:write(line, "\n") end }, Plan)
end

function Plan:say(line) self.out(line) end

-- A placeholder for the nodes of a group when no inventory is given.
local Symbolic = {}
Symbolic.__index = Symbolic
function Symbolic:group(pattern)
  self.seen[#self.seen + 1] = pattern
  return { setmetatable({ name = "<" .. tostring(pattern) .. ">", vars = {}, groups = { pattern }, symbolic = true },
    { __tostring = function(n) return "node " .. n.name end }) }
end
function Symbolic:host(name) return self:group(name)[1] end
function Symbolic:hosts() return self:group("all") end
function Symbolic.has_host() return true end
function Symbolic.has_group() return true end
function Symbolic.groups() return {} end
function Symbolic.close() end
function M.symbolic_inventory() return setmetatable({ vars = {}, seen = {}, symbolic = true }, Symbolic) end

function Plan:run_step(ctx, spec)
  local run = self.run
  local st = executor.new_step(run, ctx, spec)
  st.result = "planned"
  local extra = {}
  if st.nodes then extra[#extra + 1] = "nodes: " .. table.concat(st.nodes, ", ") end
  if st.hook_point then extra[#extra + 1] = "hook point: " .. st.hook_point end
  for _, when in ipairs { "before", "after" } do
    local hs = run:matching_hooks(st, when)
    if #hs > 0 then
      local n = {}
      for i, h in ipairs(hs) do n[i] = h.name .. " (" .. tostring(h.source) .. ")" end
      extra[#extra + 1] = "hooks " .. when .. ": " .. table.concat(n, ", ")
    end
  end
  if spec.continue_on_error then extra[#extra + 1] = "continue on error" end
  if spec.timeout then extra[#extra + 1] = string.format("timeout %g s", spec.timeout) end
  self:say(string.rep("  ", st.depth + 2) .. "step " .. st.name ..
           (#extra > 0 and ("   [" .. table.concat(extra, "; ") .. "]") or ""))
  return true
end

function Plan:check(name)
  local rec = self.run:record_check(name, "passed")
  rec.planned = true
  return true
end

function Plan:skip(name, reason) self.run:record_check(name, "skipped", reason) end

function Plan:run_stage(ctx, stage)
  local run = self.run
  local sr = { name = stage.name, needs = stage.needs, nfailed = 0 }
  run.stage_results[#run.stage_results + 1] = sr
  run.stage_by_name[stage.name] = sr
  ctx.stage = stage.name
  run.cur_stage = stage.name
  self:say(string.format("  stage %s%s", stage.name,
    stage.needs and ("   [needs: " .. table.concat(stage.needs, ", ") .. "]") or ""))
  local ok, e = xpcall(stage.fn, executor.error_handler, ctx)
  if not ok then
    sr.result = "error"
    sr.error = e.message or tostring(e)
    self.errors = (self.errors or 0) + 1
    self:say("    cannot plan the rest of this stage: " .. sr.error)
  else
    sr.result = "planned"
  end
end

local function budget_text(b)
  local t = {}
  for k, v in pairs(b or {}) do t[#t + 1] = k .. "=" .. tostring(v) end
  table.sort(t)
  return table.concat(t, ", ")
end

-- Prints the whole plan; returns the exit code (2 when a stage could not be planned).
function Plan:execute(ctx)
  local run, s = self.run, self.run.s
  self:say(string.format("scenario %s%s", s.name, s.description ~= "" and (" — " .. s.description) or ""))
  self:say("parameters:")
  for _, k in ipairs(s.param_order) do
    local v = run.params[k]
    if s.params[k].secret then v = "***" elseif type(v) == "table" then v = table.concat(v, ",") end
    self:say(string.format("  %s = %s", k, tostring(v)))
  end
  if run.inventory and run.inventory.symbolic then
    self:say("inventory: none (-i not given): nodes are shown as <group>")
  elseif run.opts.inventory then
    self:say("inventory: " .. run.opts.inventory)
  end
  self:say("stages:")
  for _, stage in ipairs(s.stages) do self:run_stage(ctx, stage) end
  self:say("probes:")
  for _, p in ipairs(s.probes) do
    local b = budget_text(p.budget)
    self:say(string.format("  %s: every %g s (%.4g/s), timeout %g s, max in flight %d, stages: %s%s",
      p.name, p.interval, 1 / p.interval, p.timeout, p.max_in_flight,
      p.stages and (#p.stages > 0 and table.concat(p.stages, ", ") or "(none: off)") or "all",
      b ~= "" and ("; budget " .. b) or ""))
  end
  self:say("hooks:")
  for _, h in ipairs(s.hooks) do self:say(string.format("  %s (%s)", h.name, tostring(h.source))) end
  local kinds = {}
  for k in pairs(s.cleanups) do kinds[#kinds + 1] = k end
  table.sort(kinds)
  if #kinds > 0 then self:say("cleanup of persistent resources: " .. table.concat(kinds, ", ")) end
  if s.scenario_budget then self:say("scenario budget: " .. budget_text(s.scenario_budget)) end
  for _, msg in ipairs(run.scenario_errors) do io.stderr:write("upgrun: ", msg, "\n") end
  if self.errors or #run.scenario_errors > 0 then return scenario.EXIT.usage end
  return scenario.EXIT.passed
end

return M
