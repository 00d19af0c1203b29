-- upgrun.runner.run — the state of one run of a scenario: options and
-- parameters, the timeline, the records (stages, steps, checks, hooks run),
-- which steps run in which task, the probes' run state (started and stopped
-- per stage), the secrets to redact, the verdict. The executor (or the plan)
-- writes into it; the reports read it.
local task = require "upgrun.task"
local Timeline = require "upgrun.timeline"
local redact = require "upgrun.redact"
local errors = require "upgrun.errors"
local params = require "upgrun.runner.params"
local scenario = require "upgrun.scenario"

local M = {}
local Run = {}
Run.__index = Run
M.Run = Run

function M.new(s, opts, path)
  local run = setmetatable({
    s = s, opts = opts, path = path, params = opts.params, plan = opts.plan,
    steps = {}, checks = {}, hooks_run = {}, stage_results = {}, stage_by_name = {},
    running_list = {}, stacks = setmetatable({}, { __mode = "k" }), step_where = {},
    versions = { lua = _VERSION, upgrun = require("upgrun").version, libuv = require("upgrun").libuv },
    nfailed = 0, budget_failures = 0, secret_values = {}, scenario_errors = {},
  }, Run)
  for k, spec in pairs(s.params) do
    local v = opts.params[k]
    if spec.secret and type(v) == "string" and #v >= 3 then run.secret_values[#run.secret_values + 1] = v end
  end
  run.tl = Timeline.new()
  return run
end

-- Replaces every secret parameter value in a string by ***.
function Run:redact(s) return redact.string(s, self.secret_values) end

-- The step stack of the current task.
function Run:stack()
  local cur = task.current()
  local st = self.stacks[cur]
  if not st then st = {}; self.stacks[cur] = st end
  return st
end

-- Paths of the innermost steps running now (for attribution of samples:
-- every probe asks at every send, so the answer is kept until a step starts
-- or ends, when the executor clears run.current_step_cache).
function Run:current_step()
  local c = self.current_step_cache
  if c ~= nil then return c or nil end
  local names = {}
  for _, st in ipairs(self.running_list) do
    if st.active_children == 0 then names[#names + 1] = st.path end
  end
  c = #names > 0 and table.concat(names, " | ") or false
  self.current_step_cache = c
  return c or nil
end

-- Loads the -i inventory once; returns it or nil, message.
function Run:load_inventory()
  if self.inventory then return self.inventory end
  if not self.opts.inventory then return nil, "this scenario needs an inventory: pass -i FILE" end
  local ok, nodes = pcall(require, "upgrun.nodes")
  if not ok then return nil, "ctx.inventory: the nodes library is not available: " .. tostring(nodes) end
  local lok, inv, err = pcall(nodes.load, self.opts.inventory, { playbook_dir = self.opts.playbook_dir })
  if not lok then err, inv = inv, nil end
  if not inv then
    return nil, "cannot load inventory " .. params.inventory_names(self.opts) .. ": " .. errors.message(err)
  end
  self.inventory = inv
  return inv
end

-- An event of upgrun.nodes ({type, node, start, finish (monotonic), ok,
-- error_kind, command, ...}) as a "node" event on the timeline, at its start,
-- with its end and the step that was running.
function Run:node_event(e)
  local f = {}
  for k, v in pairs(e) do
    if type(v) ~= "function" and type(v) ~= "userdata" and type(v) ~= "table" then f[k] = self:redact(v) end
  end
  f.kind = nil
  if type(e.start) == "number" then f.t = self.tl:rel(e.start); f.start = nil end
  if type(e.finish) == "number" then f.t_end = self.tl:rel(e.finish); f.finish = nil end
  if type(e.wall_start) == "number" then f.wall = Timeline.iso(e.wall_start); f.wall_start = nil end
  if type(e.wall_end) == "number" then f.wall_end = Timeline.iso(e.wall_end) end
  f.step = f.step or self:current_step()
  self.tl:event("node", f)
end

-- The hooks that apply to step st at `when`.
function Run:matching_hooks(st, when)
  local hs = {}
  for _, h in ipairs(self.s.hooks) do
    if h.when == when and (h.point == "*" or h.point == st.name or (st.hook_point and h.point == st.hook_point)) then
      hs[#hs + 1] = h
    end
  end
  return hs
end

function Run:fail_in_stage(stage)
  self.nfailed = self.nfailed + 1
  local sr = self.stage_by_name[stage]
  if sr then sr.nfailed = (sr.nfailed or 0) + 1 end
end

-- A mistake in the scenario found while it runs (a duplicate step name):
-- the run ends with exit 2 whatever else happens.
function Run:scenario_error(msg)
  self.scenario_errors[#self.scenario_errors + 1] = msg
  self.tl:event("scenario_error", { message = msg })
end

-- Adds a check record (result "passed", "failed" or "skipped") to the run
-- and the timeline.
function Run:record_check(name, result, detail)
  local stack = self:stack()
  local st = stack[#stack]
  local rec = { name = name, ok = result ~= "failed", result = result,
                detail = detail ~= nil and self:redact(tostring(detail)) or nil,
                stage = self.cur_stage, step = st and st.path, t = self.tl:now(), wall = self.tl:wall() }
  self.checks[#self.checks + 1] = rec
  self.tl:event("check", { name = name, ok = rec.ok, result = result, detail = rec.detail, step = rec.step,
                           depth = #stack, t = rec.t, wall = rec.wall })
  return rec
end

-- The verdict and the exit code once everything is analysed.
function Run:verdict()
  local EXIT = scenario.EXIT
  if self.aborted then return "aborted", EXIT.aborted end
  if #self.scenario_errors > 0 then return "error", EXIT.usage end
  if self.nfailed > 0 or self.budget_failures > 0 then return "failed", EXIT.failed end
  return "passed", EXIT.passed
end

return M
