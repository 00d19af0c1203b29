-- upgrun.runner.executor — runs a scenario for real: each stage with its
-- probes around it, each step with its hooks, timed and recorded on the run
-- (upgrun.runner.run) and its timeline, then the clean-up of persistent
-- resources. It prints nothing: the console and any other view are timeline
-- listeners (upgrun.runner.console). upgrun.runner.plan is the dry-run
-- counterpart with the same methods.
local task = require "upgrun.task"
local errors = require "upgrun.errors"
local resume = require "upgrun.runner.resume"
local steady = require "upgrun.steady"

local M = {}
local Exec = {}
Exec.__index = Exec

-- Raised by ctx:step after a step failed (without continue_on_error) to stop
-- the rest of the stage (or of the enclosing step).
M.STOP = setmetatable({ stop = true }, { __tostring = function() return "stage stopped" end })
local STOP = M.STOP

local function is_cancel(e) return type(e) == "table" and e.kind == "cancelled" end
M.is_cancel = is_cancel

-- xpcall handler: keeps cancellation, STOP and usage errors as they are;
-- anything else becomes {message, traceback, value}.
function M.error_handler(e)
  if is_cancel(e) or e == STOP or (type(e) == "table" and e.usage) then return e end
  local msg = errors.message(e)
  return { message = msg, traceback = debug.traceback(msg, 2), value = e }
end
local error_handler = M.error_handler

function M.new(run) return setmetatable({ run = run }, Exec) end

-- A step path seen twice in a stage is a mistake in the scenario (two steps
-- would share a record): it is reported with both places and the run exits 2.
local function check_duplicate(run, st, spec)
  if st.stage == "cleanup" then return end -- the runner's own steps (one per ledger record)
  local key = tostring(st.stage) .. "\0" .. st.path
  local first = run.step_where[key]
  if first then
    run:scenario_error(string.format("%s: step %q is declared twice in stage %s (first at %s)",
                                     spec.where, st.path, tostring(st.stage), first.where))
  else
    run.step_where[key] = { where = spec.where }
  end
end
M.check_duplicate = check_duplicate

local function node_names(run, nodes)
  if nodes == nil then return nil end
  if type(nodes) == "string" then nodes = { nodes } end
  local out = {}
  for _, n in ipairs(nodes) do
    if type(n) == "table" then out[#out + 1] = n.name or tostring(n)
    else
      -- A group name resolves to its nodes when an inventory is loaded.
      local inv = run.inventory
      if inv and inv.symbolic then inv = nil end -- --plan without -i: groups stay symbolic
      local members = inv and type(inv.group) == "function" and select(2, pcall(inv.group, inv, n))
      if type(members) == "table" and #members > 0 then
        for _, m in ipairs(members) do out[#out + 1] = type(m) == "table" and (m.name or tostring(m)) or tostring(m) end
      else
        out[#out + 1] = tostring(n)
      end
    end
  end
  return out
end
M.node_names = node_names

-- A new step record under the current step of this task.
function M.new_step(run, ctx, spec)
  local stack = run:stack()
  local parent = stack[#stack]
  local st = { id = #run.steps + 1, name = spec.name, stage = ctx.stage,
               parent = parent and parent.id, depth = #stack,
               path = parent and (parent.path .. " / " .. spec.name) or spec.name,
               hook_point = spec.hook_point, nodes = node_names(run, spec.nodes),
               continue_on_error = spec.continue_on_error and true or nil,
               description = spec.description, active_children = 0 }
  run.steps[#run.steps + 1] = st
  check_duplicate(run, st, spec)
  return st, stack, parent
end

-- Runs the hooks of a step; returns false when a fatal hook failed.
function Exec:run_hooks(ctx, st, when)
  local run = self.run
  local all_ok = true
  for _, h in ipairs(run:matching_hooks(st, when)) do
    local rec = { name = h.name, point = h.point, when = when, step = st.path, step_id = st.id,
                  hook_point = st.hook_point, source = h.source, stage = ctx.stage }
    run.hooks_run[#run.hooks_run + 1] = rec
    rec.start, rec.wall_start = run.tl:now(), run.tl:wall()
    local ok, e = xpcall(h.fn, error_handler, ctx, st)
    rec["end"], rec.wall_end = run.tl:now(), run.tl:wall()
    rec.duration = rec["end"] - rec.start
    if ok then
      rec.result = "passed"
    elseif is_cancel(e) then
      rec.result = "interrupted"
      run.tl:event("hook", { name = rec.name, step = st.path, result = rec.result, duration = rec.duration })
      error(e, 0)
    else
      rec.result = "failed"
      rec.error = run:redact(e.message or tostring(e))
      rec.traceback = run:redact(e.traceback)
      run:fail_in_stage(ctx.stage)
      if h.fatal and when == "before" then all_ok = false end
    end
    run.tl:event("hook", { name = rec.name, step = st.path, result = rec.result, duration = rec.duration,
                           error = rec.error, t = rec["end"] })
  end
  return all_ok
end

-- Runs the body of a step (with its timeout); returns ok, err, packed results.
local function run_body(run, ctx, st, spec, stack)
  local packed
  local ok, e
  if spec.timeout then
    local inherited = {}
    for i, x in ipairs(stack) do inherited[i] = x end
    ok, e = xpcall(function()
      local r = table.pack(task.with_timeout(spec.timeout, function()
        run.stacks[task.current()] = inherited
        return table.pack(spec.fn(ctx, st))
      end))
      if r[1] == nil and type(r[2]) == "table" and r[2].kind == "timeout" then
        error(string.format("step timed out after %g s", spec.timeout), 0)
      end
      packed = r[1]
    end, error_handler)
  else
    ok, e = xpcall(function() packed = table.pack(spec.fn(ctx, st)) end, error_handler)
  end
  return ok, e, packed
end

function Exec:run_step(ctx, spec)
  local run = self.run
  local st, stack, parent = M.new_step(run, ctx, spec)
  if task.aborted() then
    st.result = "skipped"; st.reason = "aborted"
    error({ kind = "cancelled", aborted = true, message = "aborted" }, 0)
  end
  -- --resume / --from-step: a top-level step before the point to go on from is not run
  local skip, reason
  if not parent and run.resume_gate and st.stage ~= "cleanup" then skip, reason = run.resume_gate:skip(st) end
  if skip then
    st.result, st.reason = skip, reason
    st.start, st.wall_start = run.tl:now(), run.tl:wall()
    st["end"], st.wall_end, st.duration = st.start, st.wall_start, 0
    run.tl:event("step_skipped", { step = st.path, id = st.id, stage = st.stage, name = st.name, depth = st.depth,
                                   result = skip, reason = reason, t = st.start, wall = st.wall_start })
    resume.step_done(run, st)
    return true
  end

  local hooks_ok = self:run_hooks(ctx, st, "before")

  st.start, st.wall_start = run.tl:now(), run.tl:wall()
  st.running = true
  if parent then parent.active_children = parent.active_children + 1 end
  run.running_list[#run.running_list + 1] = st
  run.current_step_cache = nil
  run.tl:event("step_start", { step = st.path, id = st.id, stage = st.stage, name = st.name, depth = st.depth,
                               t = st.start, wall = st.wall_start })
  stack[#stack + 1] = st

  local ok, e, packed
  if not hooks_ok then
    ok, e = false, { message = "a fatal before-hook failed; the step was not run" }
  else
    ok, e, packed = run_body(run, ctx, st, spec, stack)
  end

  stack[#stack] = nil
  st["end"], st.wall_end = run.tl:now(), run.tl:wall()
  st.duration = st["end"] - st.start
  st.running = nil
  if parent then parent.active_children = parent.active_children - 1 end
  for i, x in ipairs(run.running_list) do if x == st then table.remove(run.running_list, i); break end end
  run.current_step_cache = nil

  if ok then
    st.result = "passed"
    if (st.nfailed_checks or 0) > 0 then st.result = "failed"; st.error = "a check failed" end
  elseif is_cancel(e) then
    st.result = "interrupted"
    st.error = "interrupted (" .. tostring(e.message or "cancelled") .. ")"
  elseif e == STOP then
    st.result = "failed"
    st.error = "a sub-step failed"
  else
    st.result = "failed"
    st.error = run:redact(e.message)
    st.traceback = run:redact(e.traceback)
  end
  if st.result == "failed" and e ~= STOP and ok == false then run:fail_in_stage(ctx.stage) end
  run.tl:event("step_end", { step = st.path, id = st.id, stage = st.stage, name = st.name, depth = st.depth,
                             result = st.result, duration = st.duration,
                             error = (ok == false and e ~= STOP) and st.error or nil,
                             t = st["end"], wall = st.wall_end })
  if not parent then resume.step_done(run, st) end
  if st.result == "interrupted" then error(e, 0) end

  self:run_hooks(ctx, st, "after")

  if ok then
    if st.result == "failed" then return false, st.error end -- failed checks do not stop the stage
    return true, table.unpack(packed, 1, packed.n)
  end
  if spec.continue_on_error then return false, st.error end
  error(STOP, 0)
end

function Exec:check(name, cond, detail)
  local run = self.run
  local ok = cond
  if type(cond) == "function" then
    local pok, r, d = xpcall(cond, error_handler)
    if not pok then
      if is_cancel(r) then error(r, 0) end
      ok, detail = false, "raised: " .. tostring(r.message)
    else
      ok, detail = r, d or detail
    end
  end
  ok = ok and true or false
  run:record_check(name, ok and "passed" or "failed", detail)
  if not ok then
    local stack = run:stack()
    run:fail_in_stage(run.cur_stage)
    for _, x in ipairs(stack) do x.nfailed_checks = (x.nfailed_checks or 0) + 1 end
  end
  return ok
end

-- Records a check that could not run here, with the reason: never a pass.
function Exec:skip(name, reason) self.run:record_check(name, "skipped", reason) end

function Exec:run_stage(ctx, stage)
  local run = self.run
  local sr = { name = stage.name, needs = stage.needs, nfailed = 0 }
  run.stage_results[#run.stage_results + 1] = sr
  run.stage_by_name[stage.name] = sr
  if run.aborted then sr.result = "skipped"; sr.reason = "aborted"; return end
  for _, n in ipairs(stage.needs or {}) do
    local dep = run.stage_by_name[n]
    if not dep or dep.result ~= "passed" then
      sr.result = "skipped"
      sr.reason = "needs stage " .. n .. " to pass (it " .. (dep and dep.result or "did not run") .. ")"
      run.tl:event("stage_skipped", { stage = stage.name, reason = sr.reason })
      return
    end
  end
  ctx.stage = stage.name
  run.cur_stage = stage.name
  sr.start, sr.wall_start = run.tl:now(), run.tl:wall()
  run.tl:event("stage_start", { stage = stage.name, t = sr.start, wall = sr.wall_start })
  run.probing:enter_stage(ctx, stage.name, function() return run:current_step() end)
  if run.watching then run.watching:enter_stage(ctx, stage.name) end
  local ok, e = xpcall(stage.fn, error_handler, ctx)
  sr["end"], sr.wall_end = run.tl:now(), run.tl:wall()
  sr.duration = sr["end"] - sr.start
  if ok then
    sr.result = sr.nfailed > 0 and "failed" or "passed"
  elseif is_cancel(e) then
    sr.result = "interrupted"
    run.aborted = true
  elseif e == STOP then
    sr.result = "failed"
    sr.reason = "stopped after a failed step"
  else
    sr.result = "failed"
    sr.error = run:redact(e.message)
    sr.traceback = run:redact(e.traceback)
    run:fail_in_stage(stage.name)
  end
  if task.aborted() then run.aborted = true end
  run.tl:event("stage_end", { stage = stage.name, result = sr.result, duration = sr.duration, error = sr.error })
  if run.sample_log then run.sample_log:flush() end
end

-- Cleans up live ledger records whose kind has a cleanup function.
function Exec:cleanup(ctx)
  local run = self.run
  local todo = {}
  for rec in run.ledger:each() do todo[#todo + 1] = rec end
  if #todo == 0 then return end
  local unmatched = run.resume_gate and run.resume_gate:missing() -- --from-step NAME matched no step
  if run.opts.keep or run.aborted or unmatched then
    for _, rec in ipairs(todo) do
      run.ledger:mark(rec, "kept", run.aborted and "run aborted" or unmatched and "--from-step matched no step"
        or "--keep", run.tl:now())
    end
    return
  end
  local sr = { name = "cleanup", nfailed = 0 }
  run.stage_results[#run.stage_results + 1] = sr
  run.stage_by_name.cleanup = sr
  ctx.stage = "cleanup"
  run.cur_stage = "cleanup"
  sr.start = run.tl:now()
  run.tl:event("stage_start", { stage = "cleanup", t = sr.start })
  for _, rec in ipairs(todo) do
    local fn = run.s.cleanups[rec.kind]
    if fn then
      local ok = pcall(ctx.step, ctx, { name = "clean up " .. rec.kind .. " " .. rec.id, continue_on_error = true,
        fn = function() return fn(ctx, rec) end })
      local last = run.steps[#run.steps]
      if ok and last.result == "passed" then run.ledger:mark(rec, "cleaned", nil, run.tl:now())
      else run.ledger:mark(rec, "cleanup_failed", last.error, run.tl:now()) end
      if task.aborted() then run.aborted = true; break end
    else
      run.ledger:mark(rec, "kept", "no cleanup declared for kind " .. rec.kind, run.tl:now())
    end
  end
  sr["end"] = run.tl:now()
  sr.duration = sr["end"] - sr.start
  sr.result = sr.nfailed > 0 and "failed" or "passed"
end

-- Runs the setup functions; returns true or false, message.
function M.run_setups(run, ctx)
  for _, fn in ipairs(run.s.setups) do
    local ok, e = xpcall(fn, error_handler, ctx)
    if not ok then return false, errors.message(e) end
  end
  return true
end

-- Runs every stage between the two steady-state checks, stops the probes,
-- cleans up; leaves the run ready for the analysis (run.run_end set,
-- interrupted steps marked). A cloud that is not steady at the start runs
-- no stage.
function Exec:execute(ctx)
  local run = self.run
  local is_steady = steady.check(run, ctx, "start")
  for _, stage in ipairs(run.s.stages) do
    if is_steady then
      self:run_stage(ctx, stage)
    else
      run.stage_results[#run.stage_results + 1] = { name = stage.name, result = "skipped",
                                                    reason = "the cloud is not steady" }
    end
    if task.aborted() then run.aborted = true end
  end
  if is_steady and not run.aborted then steady.check(run, ctx, "end") end
  run.probing:stop_all()
  if run.watching then run.watching:stop_all() end
  self:cleanup(ctx) -- on abort: only marks the resources kept (nothing can wait)
  if not run.aborted then
    run.probing:drain() -- samples still in flight finish within their timeout
  end
  if task.aborted() then run.aborted = true end
  if run.aborted then
    -- Steps still marked running (in other tasks) were interrupted.
    for _, st in ipairs(run.steps) do
      if st.running then
        st.result = "interrupted"; st["end"] = run.tl:now(); st.duration = st["end"] - st.start
        st.running = nil
      end
    end
  end
  run.run_end = run.tl:now()
end

return M
