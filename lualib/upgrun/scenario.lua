-- upgrun.scenario — the scenario runner. A scenario file declares parameters,
-- stages (run in declared order) made of named steps, hooks, probes and
-- budgets, and ends with `return s`; `upgrun FILE args...` then calls
-- s:run(args, path), which parses the command line, runs the stages with the
-- probes around them, and writes the reports (see docs/scenarios.md).
--
--   local scenario = require "upgrun.scenario"
--   local s = scenario.new{name =, description =, params = {k = default | {default =, description =, secret =}},
--                          budget = {max_downtime =, max_outage =, max_p95_degradation =}}
--   s:stage(name, [opts,] fn(ctx))          opts: needs = {"before"}, description
--   s:probe{name =, fn = | http = {url =}, interval = | rate =, timeout =, max_in_flight =,
--           stages = {...}, expect = {...}, budget = {...}}
--   s:hook(point, "before"|"after", fn(ctx, step), [opts])   point: a step name, a hook point, or "*"
--   s:cleanup(kind, fn(ctx, rec))            cleans persistent resources of that kind at the end
--   s:budget{...}                            the scenario-wide budget
--   s:setup(fn(ctx))                         runs once the params are known, before the first stage
--   s:probe_named(name)                      a declared probe (to adjust it in setup)
--   ctx:step(name, [opts,] fn) | ctx:step{name =, fn =, hook_point =, nodes =, continue_on_error =, timeout =}
--   ctx:check(name, ok_or_fn, detail) -> ok
--   ctx.params, ctx.out, ctx.stage, ctx.plan, ctx.ledger, ctx.timeline, ctx.inventory, ctx.cloud
local task = require "upgrun.task"
local time = require "upgrun.time"
local Timeline = require "upgrun.timeline"
local probe = require "upgrun.probe"
local ledger = require "upgrun.ledger"
local probing = require "upgrun.probing"
local sample_log = require "upgrun.sample_log"
local steady = require "upgrun.steady"

local M = {}
local Scenario = {}
Scenario.__index = Scenario
M.Scenario = Scenario

M.EXIT = { passed = 0, failed = 1, usage = 2, aborted = 3 }

-- An error raised by the runner to tell the caller about a bad invocation or
-- scenario (exit 2); `message` is printed as is.
local UsageError = { __tostring = function(e) return e.message end }
local function usage_error(msg) error(setmetatable({ message = msg, usage = true }, UsageError), 0) end
M.usage_error = usage_error

-- Raised by ctx:step after a step failed (without continue_on_error) to stop
-- the rest of the stage (or of the enclosing step).
local STOP = setmetatable({ stop = true }, { __tostring = function() return "stage stopped" end })

local function is_cancel(e) return type(e) == "table" and e.kind == "cancelled" end

local SECRET_NAME = { "password", "passwd", "secret", "token", "key", "credential" }

-- ---------------------------------------------------------------- declaring

local function param_spec(name, v)
  local spec
  if type(v) == "table" and (v.default ~= nil or v.description or v.type or v.secret ~= nil) then
    spec = { default = v.default, description = v.description, secret = v.secret, type = v.type }
  else
    spec = { default = v }
  end
  spec.name = name
  spec.type = spec.type or (spec.default ~= nil and type(spec.default)) or "string"
  if spec.type == "table" then spec.type = "list" end
  if spec.secret == nil then
    local lname = name:lower()
    for _, w in ipairs(SECRET_NAME) do if lname:find(w, 1, true) then spec.secret = true end end
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
    stages = {}, probes = {}, hooks = {}, cleanups = {}, setups = {},
    scenario_budget = spec.budget,
  }, Scenario)
  local names = {}
  for k in pairs(spec.params or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do s:param(k, spec.params[k]) end
  steady.declare(s, spec.steady)
  return s
end

-- Declares a parameter: s:param(name, default) or s:param(name, {default =,
-- description =, secret = true, type = "string"|"number"|"boolean"|"list"}).
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
  self.stages[#self.stages + 1] = { name = name, fn = fn, needs = needs, description = opts.description }
  return self
end

function Scenario:probe(spec)
  local p = probe.new(spec)
  for _, q in ipairs(self.probes) do
    if q.name == p.name then error("probe " .. p.name .. " is declared twice", 2) end
  end
  self.probes[#self.probes + 1] = p
  return p
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
  return self
end

-- ------------------------------------------------------------- the context

local Ctx = {}

local function ctx_index(ctx, k)
  local m = Ctx[k]
  if m ~= nil then return m end
  local run = rawget(ctx, "_run")
  if k == "cloud" then
    if run.plan then error("ctx.cloud is not available in --plan (call the cloud inside steps)", 2) end
    -- Several tasks (probe samples) may ask at once: one connects, the others wait.
    local deadline = time.mono() + 120
    while run.cloud_connecting and time.mono() < deadline do time.sleep(0.01) end
    if not run.cloud_conn then
      run.cloud_connecting = true
      local ok, os_lib = pcall(require, "upgrun.openstack")
      if not ok then
        run.cloud_connecting = nil
        error("ctx.cloud: the OpenStack library is not available: " .. tostring(os_lib), 2)
      end
      local cok, conn, err = pcall(os_lib.connect, { cloud = run.opts.cloud })
      run.cloud_connecting = nil
      if not cok then error(conn, 0) end
      if not conn then
        error("ctx.cloud: cannot connect to cloud " .. tostring(run.opts.cloud) .. ": " .. tostring(err), 2)
      end
      run.cloud_conn = conn
    end
    return run.cloud_conn
  elseif k == "inventory" then
    if not run.inventory then
      if not run.opts.inventory then error("this scenario needs an inventory: pass -i FILE", 2) end
      local ok, nodes = pcall(require, "upgrun.nodes")
      if not ok then error("ctx.inventory: the nodes library is not available: " .. tostring(nodes), 2) end
      local lok, inv, err = pcall(nodes.load, run.opts.inventory)
      if not lok then err, inv = inv, nil end
      if not inv then error("cannot load inventory " .. run.opts.inventory .. ": " .. tostring(err), 2) end
      run.inventory = inv
    end
    return run.inventory
  end
  return nil
end

local function new_ctx(run)
  return setmetatable({ _run = run, params = run.params, out = run.out, plan = run.plan,
                        ledger = run.ledger, timeline = run.tl, scenario = run.s.name },
                      { __index = ctx_index })
end

-- Normalises the three forms of ctx:step.
local function step_spec(a, b, c)
  local spec
  if type(a) == "table" then
    spec = {}
    for k, v in pairs(a) do spec[k] = v end
    spec.fn = spec.fn or b
  elseif type(b) == "function" then
    spec = { name = a, fn = b }
  elseif type(b) == "table" then
    spec = {}
    for k, v in pairs(b) do spec[k] = v end
    spec.name, spec.fn = a, spec.fn or c
  else
    spec = { name = a }
  end
  if type(spec.name) ~= "string" or spec.name == "" then error("ctx:step: needs a name", 3) end
  if type(spec.fn) ~= "function" then error("ctx:step " .. spec.name .. ": needs a function", 3) end
  spec.hook_point = spec.hook_point or spec.hooks
  return spec
end

local function error_handler(e)
  if is_cancel(e) or e == STOP or (type(e) == "table" and e.usage) then return e end
  local msg
  if type(e) == "table" and getmetatable(e) and getmetatable(e).__tostring then msg = tostring(e)
  elseif type(e) == "table" then msg = tostring(e.message or e.kind or e)
  else msg = tostring(e) end
  return { message = msg, traceback = debug.traceback(msg, 2), value = e }
end

-- Runs a step: before-hooks, the body (timed), after-hooks. Returns true,
-- results... on success; on failure raises STOP (the rest of the stage is
-- skipped) unless continue_on_error, in which case it returns false, message.
function Ctx:step(a, b, c)
  local spec = step_spec(a, b, c)
  return self._run:run_step(self, spec)
end

-- Records a named check. `cond` may be a value or a function returning
-- ok, detail. Returns ok.
function Ctx:check(name, cond, detail)
  return self._run:check(name, cond, detail)
end

-- Records a check as skipped, with the reason it cannot run on this cloud.
function Ctx:skip(name, reason)
  return self._run:skip(name, reason)
end

function Ctx:log(fmt, ...)
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  self._run.tl:event("log", { message = self._run:redact(msg), step = self._run:current_step() })
  self._run:say("    " .. self._run:redact(msg))
end

-- Records a custom event on the timeline.
function Ctx:event(kind, fields)
  local f = {}
  for k, v in pairs(fields or {}) do f[k] = v end
  f.step = f.step or self._run:current_step()
  return self._run.tl:event(kind, f)
end

-- Records a component version in the report (e.g. ctx:version("nova", "13.1.0")).
function Ctx:version(component, value)
  self._run.versions[component] = value
  self._run.tl:event("version", { component = component, value = value })
end

function Ctx.sleep(_, s) return time.sleep(s) end

-- Whether anything (step, check, hook) has failed so far in the run.
function Ctx:failed() return self._run.nfailed > 0 end

-- Spawns a task that inherits the current step (so steps it runs nest under it).
function Ctx:spawn(name, fn, ...)
  local run = self._run
  local parent = run:stack()
  local inherited = {}
  for i, st in ipairs(parent) do inherited[i] = st end
  return task.spawn(name, function(...)
    run.stacks[task.current()] = inherited
    return fn(...)
  end, ...)
end

-- Runs fn(item) for every item, at most opts.max at once (default all), each
-- in its own task under the current step; waits for all. Returns an array
-- of {ok =, result = | error =} in the items' order.
function Ctx:parallel(items, fn, opts)
  local max = (opts and opts.max) or #items
  local results, next_i, running = {}, 1, {}
  local function start(i)
    running[i] = self:spawn("parallel " .. i, function() return fn(items[i]) end)
  end
  while next_i <= #items and next_i <= max do start(next_i); next_i = next_i + 1 end
  for i = 1, #items do
    while not running[i] do
      start(next_i); next_i = next_i + 1
    end
    local ok, r = running[i]:join()
    results[i] = ok and { ok = true, result = r } or { ok = false, error = r }
    if next_i <= #items then start(next_i); next_i = next_i + 1 end
  end
  return results
end

M.Ctx = Ctx

-- ------------------------------------------------------------- the run

local Run = {}
Run.__index = Run

function Run:say(line)
  if not self.opts.quiet then io.stdout:write(line, "\n"); io.stdout:flush() end
end

-- Replaces every secret parameter value in a string by ***.
function Run:redact(s)
  if type(s) ~= "string" then return s end
  for _, v in ipairs(self.secret_values) do
    s = s:gsub(v:gsub("%p", "%%%0"), "***")
  end
  return s
end

function Run:stack()
  local cur = task.current()
  local st = self.stacks[cur]
  if not st then st = {}; self.stacks[cur] = st end
  return st
end

-- Paths of the innermost steps running now (for attribution of samples).
function Run:current_step()
  local names = {}
  for _, st in ipairs(self.running_list) do
    if st.active_children == 0 then names[#names + 1] = st.path end
  end
  if #names == 0 then return nil end
  return table.concat(names, " | ")
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

function Run:matching_hooks(st, when)
  local hs = {}
  for _, h in ipairs(self.s.hooks) do
    if h.when == when and (h.point == "*" or h.point == st.name or (st.hook_point and h.point == st.hook_point)) then
      hs[#hs + 1] = h
    end
  end
  return hs
end

-- Runs the hooks of a step; returns false when a fatal hook failed.
function Run:run_hooks(ctx, st, when)
  local all_ok = true
  for _, h in ipairs(self:matching_hooks(st, when)) do
    local rec = { name = h.name, point = h.point, when = when, step = st.path, step_id = st.id,
                  hook_point = st.hook_point, source = h.source, stage = ctx.stage }
    self.hooks_run[#self.hooks_run + 1] = rec
    rec.start, rec.wall_start = self.tl:now(), self.tl:wall()
    local ok, e = xpcall(h.fn, error_handler, ctx, st)
    rec["end"], rec.wall_end = self.tl:now(), self.tl:wall()
    rec.duration = rec["end"] - rec.start
    if ok then
      rec.result = "passed"
    elseif is_cancel(e) then
      rec.result = "interrupted"
      self.tl:event("hook", { name = rec.name, step = st.path, result = rec.result, duration = rec.duration })
      error(e, 0)
    else
      rec.result = "failed"
      rec.error = self:redact(e.message or tostring(e))
      rec.traceback = self:redact(e.traceback)
      self:fail_in_stage(ctx.stage)
      if h.fatal and when == "before" then all_ok = false end
      self:say(string.format("  HOOK FAILED %s (step %s): %s", rec.name, st.path, rec.error))
    end
    self.tl:event("hook", { name = rec.name, step = st.path, result = rec.result, duration = rec.duration,
                            t = rec["end"] })
  end
  return all_ok
end

function Run:fail_in_stage(stage)
  self.nfailed = self.nfailed + 1
  local sr = self.stage_by_name[stage]
  if sr then sr.nfailed = (sr.nfailed or 0) + 1 end
end

local function node_names(run, nodes)
  if nodes == nil then return nil end
  if type(nodes) == "string" then nodes = { nodes } end
  local out = {}
  for _, n in ipairs(nodes) do
    if type(n) == "table" then out[#out + 1] = n.name or tostring(n)
    else
      -- A group name resolves to its nodes when an inventory is loaded.
      local inv = run.inventory
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

function Run:run_step(ctx, spec)
  local stack = self:stack()
  local parent = stack[#stack]
  local st = { id = #self.steps + 1, name = spec.name, stage = ctx.stage,
               parent = parent and parent.id, depth = #stack,
               path = parent and (parent.path .. " / " .. spec.name) or spec.name,
               hook_point = spec.hook_point, nodes = node_names(self, spec.nodes),
               continue_on_error = spec.continue_on_error and true or nil,
               description = spec.description, active_children = 0 }
  self.steps[#self.steps + 1] = st
  if self.plan then
    st.result = "planned"
    local extra = {}
    if st.nodes then extra[#extra + 1] = "nodes: " .. table.concat(st.nodes, ", ") end
    if st.hook_point then extra[#extra + 1] = "hook point: " .. st.hook_point end
    for _, when in ipairs { "before", "after" } do
      local hs = self:matching_hooks(st, when)
      if #hs > 0 then
        local n = {}
        for i, h in ipairs(hs) do n[i] = h.name .. " (" .. tostring(h.source) .. ")" end
        extra[#extra + 1] = "hooks " .. when .. ": " .. table.concat(n, ", ")
      end
    end
    if spec.continue_on_error then extra[#extra + 1] = "continue on error" end
    self:say(string.rep("  ", st.depth + 2) .. "step " .. st.name ..
             (#extra > 0 and ("   [" .. table.concat(extra, "; ") .. "]") or ""))
    return true
  end
  if task.aborted() then
    st.result = "skipped"; st.reason = "aborted"
    error({ kind = "cancelled", aborted = true, message = "aborted" }, 0)
  end

  local hooks_ok = self:run_hooks(ctx, st, "before")

  st.start, st.wall_start = self.tl:now(), self.tl:wall()
  st.running = true
  if parent then parent.active_children = parent.active_children + 1 end
  self.running_list[#self.running_list + 1] = st
  self.tl:event("step_start", { step = st.path, id = st.id, stage = st.stage, t = st.start, wall = st.wall_start })
  self:say(string.format("%s%s ...", string.rep("  ", st.depth + 1), st.name))
  stack[#stack + 1] = st

  local packed
  local ok, e
  if not hooks_ok then
    ok, e = false, { message = "a fatal before-hook failed; the step was not run" }
  elseif spec.timeout then
    local inherited = {}
    for i, x in ipairs(stack) do inherited[i] = x end
    ok, e = xpcall(function()
      local r = table.pack(task.with_timeout(spec.timeout, function()
        self.stacks[task.current()] = inherited
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

  stack[#stack] = nil
  st["end"], st.wall_end = self.tl:now(), self.tl:wall()
  st.duration = st["end"] - st.start
  st.running = nil
  if parent then parent.active_children = parent.active_children - 1 end
  for i, x in ipairs(self.running_list) do if x == st then table.remove(self.running_list, i); break end end

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
    st.error = self:redact(e.message)
    st.traceback = self:redact(e.traceback)
  end
  if st.result == "failed" and e ~= STOP and ok == false then self:fail_in_stage(ctx.stage) end
  self.tl:event("step_end", { step = st.path, id = st.id, stage = st.stage, result = st.result,
                              duration = st.duration, t = st["end"], wall = st.wall_end })
  self:say(string.format("%s%s %s (%.3f s)%s", string.rep("  ", st.depth + 1), st.name,
                         st.result == "passed" and "ok" or st.result:upper(), st.duration,
                         (st.error and (ok == false) and e ~= STOP) and (": " .. st.error) or ""))
  if st.result == "interrupted" then error(e, 0) end

  if st.result ~= "interrupted" then self:run_hooks(ctx, st, "after") end

  if ok then
    if st.result == "failed" then return false, st.error end -- failed checks do not stop the stage
    return true, table.unpack(packed, 1, packed.n)
  end
  if spec.continue_on_error then return false, st.error end
  error(STOP, 0)
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
                           t = rec.t, wall = rec.wall })
  return rec
end

-- Records a check that could not run here, with the reason: never a pass.
function Run:skip(name, reason)
  if not reason or reason == "" then error("ctx:skip " .. tostring(name) .. ": needs a reason", 3) end
  self:record_check(name, "skipped", reason)
  local depth = #self:stack() + 1
  self:say(string.format("%sskipped %s: %s", string.rep("  ", depth), name, self:redact(reason)))
end

function Run:check(name, cond, detail)
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
  local rec = self:record_check(name, ok and "passed" or "failed", detail)
  if self.plan then rec.planned = true; return true end
  if not ok then
    local stack = self:stack()
    self:fail_in_stage(self.cur_stage)
    for _, x in ipairs(stack) do x.nfailed_checks = (x.nfailed_checks or 0) + 1 end
    self:say(string.format("%sCHECK FAILED %s%s", string.rep("  ", #stack + 1), name,
                           rec.detail and (": " .. rec.detail) or ""))
  end
  return ok
end

-- ------------------------------------------------------------- command line

M.USAGE = [[
usage: upgrun SCENARIO.lua [options]
  -i, --inventory FILE   the nodes (YAML inventory)
      --cloud NAME       the cloud in clouds.yaml (OS_CLIENT_CONFIG_FILE)
  -o, --output DIR       output directory (default out/<scenario>-<UTC timestamp>)
      --set KEY=VALUE    override a parameter (repeatable; see below)
      --hooks FILE       a Lua file of site hooks (repeatable)
      --ledger FILE      verify (and clean up) resources recorded by an earlier run
      --keep             keep persistent resources (no clean-up at the end)
      --plan             print stages, steps, hooks, probes and nodes; run nothing
  -q, --quiet            print only the summary
  -h, --help             this text and the scenario's parameters
exit codes: 0 passed, 1 a check or budget failed, 2 bad invocation/config/scenario, 3 aborted]]

local function convert(spec, raw)
  local t = spec.type
  if t == "number" then
    local n = tonumber(raw)
    if not n then usage_error(string.format("--set %s: expects a number, got %q", spec.name, raw)) end
    return n
  elseif t == "boolean" then
    local l = raw:lower()
    if l == "true" or l == "yes" or l == "1" or l == "on" then return true end
    if l == "false" or l == "no" or l == "0" or l == "off" then return false end
    usage_error(string.format("--set %s: expects true or false, got %q", spec.name, raw))
  elseif t == "list" then
    local out = {}
    for item in raw:gmatch("[^,]+") do out[#out + 1] = item:match("^%s*(.-)%s*$") end
    return out
  end
  return raw
end

function Scenario:params_help()
  local lines = {}
  for _, k in ipairs(self.param_order) do
    local p = self.params[k]
    local d = p.secret and "(secret)" or tostring(type(p.default) == "table" and table.concat(p.default,
      ",") or p.default)
    lines[#lines + 1] = string.format("  %-22s %-8s default %s%s", k, p.type, d,
                                      p.description and ("  — " .. p.description) or "")
  end
  return table.concat(lines, "\n")
end

-- Parses the command line. Returns opts or raises a usage error.
function Scenario:parse_args(args)
  local opts = { sets = {}, hooks = {} }
  local i = 1
  local function value(flag)
    i = i + 1
    local v = args[i]
    if v == nil then usage_error(flag .. " needs a value") end
    return v
  end
  while i <= #args do
    local a = args[i]
    local flag, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
    if flag then a = flag end
    local function val() if inline then return inline end return value(a) end
    if a == "-i" or a == "--inventory" then opts.inventory = val()
    elseif a == "--cloud" then opts.cloud = val()
    elseif a == "-o" or a == "--output" then opts.output = val()
    elseif a == "--set" then opts.sets[#opts.sets + 1] = val()
    elseif a == "--hooks" then opts.hooks[#opts.hooks + 1] = val()
    elseif a == "--ledger" then opts.ledger = val()
    elseif a == "--keep" then opts.keep = true
    elseif a == "--plan" then opts.plan = true
    elseif a == "-q" or a == "--quiet" then opts.quiet = true
    elseif a == "-h" or a == "--help" then opts.help = true
    else usage_error("unknown option " .. a .. "\n" .. M.USAGE) end
    i = i + 1
  end
  -- Parameters: defaults, then --set in order.
  local params = {}
  for _, k in ipairs(self.param_order) do params[k] = self.params[k].default end
  for _, kv in ipairs(opts.sets) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then usage_error("--set expects KEY=VALUE, got " .. kv) end
    local spec = self.params[k]
    if not spec then
      local names = table.concat(self.param_order, ", ")
      usage_error(string.format("unknown parameter %q for scenario %s; declared parameters: %s",
                                k, self.name, names ~= "" and names or "(none)"))
    end
    params[k] = convert(spec, v)
  end
  opts.params = params
  return opts
end

-- ------------------------------------------------------------- run

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function mkdir_p(dir)
  local ok = os.execute("mkdir -p " .. shell_quote(dir))
  if not ok then return nil, "cannot create output directory " .. dir end
  local f = io.open(dir .. "/.upgrun-write-test", "w")
  if not f then return nil, "output directory " .. dir .. " is not writable" end
  f:close()
  os.remove(dir .. "/.upgrun-write-test")
  return true
end

function Scenario:load_hooks_file(path)
  local env = setmetatable({}, { __index = _G })
  env.hook = function(point, when, fn, opts)
    opts = opts or {}
    opts.source = opts.source or path
    return self:hook(point, when, fn, opts)
  end
  local chunk, err = loadfile(path, "t", env)
  if not chunk then usage_error("--hooks: " .. tostring(err)) end
  local ok, res = pcall(chunk)
  if not ok then usage_error("--hooks " .. path .. ": " .. tostring(res)) end
  if type(res) == "table" then
    for point, whens in pairs(res) do
      for when, fn in pairs(whens) do self:hook(point, when, fn, { source = path }) end
    end
  end
end

-- The verdict and the exit code once everything is analysed.
local function verdict(run)
  if run.aborted then return "aborted", M.EXIT.aborted end
  if run.nfailed > 0 or run.budget_failures > 0 then return "failed", M.EXIT.failed end
  return "passed", M.EXIT.passed
end

function Scenario:new_run(opts, path)
  local run = setmetatable({
    s = self, opts = opts, path = path, params = opts.params, plan = opts.plan,
    steps = {}, checks = {}, hooks_run = {}, stage_results = {}, stage_by_name = {},
    running_list = {}, stacks = setmetatable({}, { __mode = "k" }),
    versions = { lua = _VERSION, upgrun = require("upgrun").version, libuv = require("upgrun").libuv },
    nfailed = 0, budget_failures = 0, secret_values = {},
  }, Run)
  for k, spec in pairs(self.params) do
    local v = opts.params[k]
    if spec.secret and type(v) == "string" and #v >= 3 then run.secret_values[#run.secret_values + 1] = v end
  end
  return run
end

function Run:run_stage(ctx, stage)
  local sr = { name = stage.name, needs = stage.needs, nfailed = 0 }
  self.stage_results[#self.stage_results + 1] = sr
  self.stage_by_name[stage.name] = sr
  if self.aborted then sr.result = "skipped"; sr.reason = "aborted"; return end
  for _, n in ipairs(self.plan and {} or stage.needs or {}) do
    local dep = self.stage_by_name[n]
    if not dep or dep.result ~= "passed" then
      sr.result = "skipped"
      sr.reason = "needs stage " .. n .. " to pass (it " .. (dep and dep.result or "did not run") .. ")"
      self:say(string.format("stage %s: SKIPPED (%s)", stage.name, sr.reason))
      self.tl:event("stage_skipped", { stage = stage.name, reason = sr.reason })
      return
    end
  end
  ctx.stage = stage.name
  self.cur_stage = stage.name
  if self.plan then
    self:say(string.format("  stage %s%s", stage.name,
      stage.needs and ("   [needs: " .. table.concat(stage.needs, ", ") .. "]") or ""))
    local ok, e = xpcall(stage.fn, error_handler, ctx)
    if not ok then
      sr.result = "error"
      sr.error = e.message or tostring(e)
      self.plan_errors = (self.plan_errors or 0) + 1
      self:say("    cannot plan the rest of this stage: " .. sr.error)
    else
      sr.result = "planned"
    end
    return
  end
  sr.start, sr.wall_start = self.tl:now(), self.tl:wall()
  self.tl:event("stage_start", { stage = stage.name, t = sr.start, wall = sr.wall_start })
  self:say("stage " .. stage.name)
  self.probing:enter_stage(ctx, stage.name, function() return self:current_step() end)
  local ok, e = xpcall(stage.fn, error_handler, ctx)
  sr["end"], sr.wall_end = self.tl:now(), self.tl:wall()
  sr.duration = sr["end"] - sr.start
  if ok then
    sr.result = sr.nfailed > 0 and "failed" or "passed"
  elseif is_cancel(e) then
    sr.result = "interrupted"
    self.aborted = true
  elseif e == STOP then
    sr.result = "failed"
    sr.reason = "stopped after a failed step"
  else
    sr.result = "failed"
    sr.error = self:redact(e.message)
    sr.traceback = self:redact(e.traceback)
    self:fail_in_stage(stage.name)
    self:say(string.format("stage %s: ERROR %s", stage.name, sr.error))
  end
  if task.aborted() then self.aborted = true end
  self.tl:event("stage_end", { stage = stage.name, result = sr.result, duration = sr.duration })
  self:say(string.format("stage %s: %s (%.3f s)", stage.name, sr.result, sr.duration))
  if self.sample_log then self.sample_log:flush() end
end

-- Cleans up live ledger records whose kind has a cleanup function.
function Run:cleanup(ctx)
  local todo = {}
  for rec in self.ledger:each() do todo[#todo + 1] = rec end
  if #todo == 0 then return end
  if self.opts.keep or self.aborted then
    for _, rec in ipairs(todo) do
      self.ledger:mark(rec, "kept", self.aborted and "run aborted" or "--keep", self.tl:now())
    end
    return
  end
  local sr = { name = "cleanup", nfailed = 0 }
  self.stage_results[#self.stage_results + 1] = sr
  self.stage_by_name.cleanup = sr
  ctx.stage = "cleanup"
  self.cur_stage = "cleanup"
  sr.start = self.tl:now()
  self:say("stage cleanup")
  for _, rec in ipairs(todo) do
    local fn = self.s.cleanups[rec.kind]
    if fn then
      local ok = pcall(ctx.step, ctx, { name = "clean up " .. rec.kind .. " " .. rec.id, continue_on_error = true,
        fn = function() return fn(ctx, rec) end })
      local last = self.steps[#self.steps]
      if ok and last.result == "passed" then self.ledger:mark(rec, "cleaned", nil, self.tl:now())
      else self.ledger:mark(rec, "cleanup_failed", last.error, self.tl:now()) end
      if task.aborted() then self.aborted = true; break end
    else
      self.ledger:mark(rec, "kept", "no cleanup declared for kind " .. rec.kind, self.tl:now())
    end
  end
  sr["end"] = self.tl:now()
  sr.duration = sr["end"] - sr.start
  sr.result = sr.nfailed > 0 and "failed" or "passed"
end

local function timestamp() return os.date("!%Y%m%dT%H%M%SZ") end

function Scenario:plan_run(run)
  local ctx = new_ctx(run)
  run:say(string.format("scenario %s%s", self.name, self.description ~= "" and (" — " .. self.description) or ""))
  run:say("parameters:")
  for _, k in ipairs(self.param_order) do
    local v = run.params[k]
    if self.params[k].secret then v = "***" elseif type(v) == "table" then v = table.concat(v, ",") end
    run:say(string.format("  %s = %s", k, tostring(v)))
  end
  if self.opts_inventory_error then run:say("inventory: " .. self.opts_inventory_error) end
  run:say("stages:")
  for _, stage in ipairs(self.stages) do run:run_stage(ctx, stage) end
  run:say("probes:")
  for _, p in ipairs(self.probes) do
    local b = {}
    for k, v in pairs(p.budget or {}) do b[#b + 1] = k .. "=" .. tostring(v) end
    table.sort(b)
    run:say(string.format("  %s: every %g s (%.4g/s), timeout %g s, max in flight %d, stages: %s%s",
      p.name, p.interval, 1 / p.interval, p.timeout, p.max_in_flight,
      p.stages and table.concat(p.stages, ", ") or "all",
      #b > 0 and ("; budget " .. table.concat(b, ", ")) or ""))
  end
  run:say("hooks:")
  for _, h in ipairs(self.hooks) do run:say(string.format("  %s (%s)", h.name, tostring(h.source))) end
  local kinds = {}
  for k in pairs(self.cleanups) do kinds[#kinds + 1] = k end
  table.sort(kinds)
  if #kinds > 0 then run:say("cleanup of persistent resources: " .. table.concat(kinds, ", ")) end
  if self.scenario_budget then
    local b = {}
    for k, v in pairs(self.scenario_budget) do b[#b + 1] = k .. "=" .. tostring(v) end
    table.sort(b)
    run:say("scenario budget: " .. table.concat(b, ", "))
  end
  if run.plan_errors then return M.EXIT.usage end
  return M.EXIT.passed
end

-- The entry point: `upgrun FILE args...` calls s:run(args, path).
local function run_setups(run, ctx)
  for _, fn in ipairs(run.s.setups) do
    local ok, e = xpcall(fn, error_handler, ctx)
    if not ok then
      io.stderr:write("upgrun: ", run.s.name, ": ", tostring(e.message or e), "\n")
      return false
    end
  end
  return true
end

function Scenario:run(args, path)
  local ok, opts = pcall(self.parse_args, self, args or {})
  if not ok then
    io.stderr:write("upgrun: ", tostring(opts), "\n")
    return M.EXIT.usage
  end
  if opts.help then
    io.stdout:write(M.USAGE, "\n\nparameters of ", self.name, ":\n", self:params_help(), "\n")
    return M.EXIT.passed
  end
  for _, hf in ipairs(opts.hooks) do
    local hok, e = pcall(self.load_hooks_file, self, hf)
    if not hok then io.stderr:write("upgrun: ", tostring(e), "\n"); return M.EXIT.usage end
  end
  if #self.stages == 0 then
    io.stderr:write("upgrun: scenario ", self.name, " declares no stages\n")
    return M.EXIT.usage
  end
  local run = self:new_run(opts, path)
  run.tl = Timeline.new()

  if opts.plan then
    run.ledger = ledger.new(nil)
    if opts.inventory then
      local iok, e = pcall(function() return new_ctx(run).inventory end)
      if not iok then self.opts_inventory_error = tostring(e) end
    end
    if not run_setups(run, new_ctx(run)) then return M.EXIT.usage end
    return self:plan_run(run)
  end

  run.out = opts.output or ("out/" .. self.name .. "-" .. timestamp())
  local dok, derr = mkdir_p(run.out)
  if not dok then io.stderr:write("upgrun: ", derr, "\n"); return M.EXIT.usage end
  run.ledger = ledger.new(run.out .. "/ledger.json", { scenario = self.name, started = run.tl:wall(),
                                                      output = run.out })
  if opts.ledger then
    local doc, lerr = ledger.read(opts.ledger)
    if not doc then io.stderr:write("upgrun: --ledger: ", lerr, "\n"); return M.EXIT.usage end
    local n = run.ledger:import(doc, opts.ledger)
    run.tl:event("ledger_import", { file = opts.ledger, resources = n })
  end
  local serr
  run.sample_log, serr = sample_log.open(run.out .. "/samples.jsonl", function(m) return run:redact(m) end)
  if not run.sample_log then io.stderr:write("upgrun: ", serr, "\n"); return M.EXIT.usage end
  run.probing = probing.new(self.probes, run.tl, { log = run.sample_log,
    on_event = function(kind, fields) run.tl:event(kind, fields) end })
  local report = require "upgrun.report"

  -- Node commands and service actions (upgrun.nodes' event log) go on the
  -- timeline, when that library is there.
  local nok, nodes = pcall(require, "upgrun.nodes")
  local unsubscribe
  if nok and type(nodes) == "table" and type(nodes.on_event) == "function" then
    unsubscribe = nodes.on_event(function(e) run:node_event(e) end)
  end

  local ctx = new_ctx(run)
  if not run_setups(run, ctx) then
    if type(unsubscribe) == "function" then unsubscribe() end
    run.sample_log:close()
    return M.EXIT.usage
  end
  run:say(string.format("upgrun: scenario %s -> %s", self.name, run.out))
  local is_steady = steady.check(run, ctx, "start")
  for _, stage in ipairs(self.stages) do
    if is_steady then
      run:run_stage(ctx, stage)
    else
      run.stage_results[#run.stage_results + 1] = { name = stage.name, result = "skipped",
                                                    reason = "the cloud is not steady" }
    end
    if task.aborted() then run.aborted = true end
  end
  if is_steady and not run.aborted then steady.check(run, ctx, "end") end
  run.probing:stop_all()
  run:cleanup(ctx) -- on abort: only marks the resources kept (nothing can wait)
  if not run.aborted then
    -- samples still in flight finish within their timeout
    run.probing:drain()
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
  if type(unsubscribe) == "function" then unsubscribe() end
  run.run_end = run.tl:now()
  run.probing:finish() -- samples still in flight are cut at the run's end
  report.analyse(run)
  run.verdict, run.exit_code = verdict(run)
  local wok, werr = pcall(report.write_all, run)
  if not wok then werr = { tostring(werr) } end
  for _, e in ipairs(werr) do io.stderr:write("upgrun: output not written: ", e, "\n") end
  if #werr > 0 and run.exit_code == 0 then run.exit_code = M.EXIT.failed end
  if task.aborted() and not run.aborted then
    -- A signal came while the reports were written: the process exits 3, so
    -- the report must say aborted too.
    run.aborted = true
    run.verdict, run.exit_code = verdict(run)
    pcall(report.write_all, run)
  end
  if opts.quiet then run.opts.quiet = false end
  report.console(run)
  return run.exit_code
end

return M
