-- upgrun.runner.context — the step context `ctx` a scenario's stages, steps,
-- hooks, setup and cleanup functions receive. It records through the run
-- (upgrun.runner.run) and runs steps through the run's executor (the real
-- one, or the plan's dry run), so a scenario reads the same in both.
--
--   ctx:step(name, [opts,] fn) | ctx:step{name =, fn =, hook_point =, nodes =, continue_on_error =, timeout =}
--   ctx:check(name, ok_or_fn, detail) -> ok      ctx:skip(name, reason)
--   ctx:log(fmt, ...)  ctx:event(kind, fields)  ctx:version(component, value)
--   ctx:intend(kind, id, fn, ...)  the watched resource changes on purpose while fn runs
--   ctx:sleep(s)  ctx:failed()  ctx:spawn(name, fn, ...)  ctx:parallel(items, fn, {max =})
--   ctx:ansible{playbook =, limit =, extra_vars =, tags =, timeout =, ...}  (upgrun.ansible.step)
--   ctx:tempest{tests = {...} | regex =, concurrency =, timeout =, ...}  (upgrun.tempest)
--   ctx.params, ctx.out, ctx.stage, ctx.plan, ctx.ledger, ctx.timeline, ctx.inventory, ctx.cloud
local task = require "upgrun.task"
local time = require "upgrun.time"
local errors = require "upgrun.errors"
local single_flight = require "upgrun.single_flight"

local M = {}
local Ctx = {}
M.Ctx = Ctx

local CLOUD_CONNECT_TIMEOUT = 120

local function connect_cloud(run)
  local ok, os_lib = pcall(require, "upgrun.openstack")
  if not ok then error("ctx.cloud: the OpenStack library is not available: " .. tostring(os_lib), 0) end
  local cok, conn, err = pcall(os_lib.connect, { cloud = run.opts.cloud })
  if not cok then error(conn, 0) end
  if not conn then
    error("ctx.cloud: cannot connect to cloud " .. tostring(run.opts.cloud or os.getenv("OS_CLOUD") or "(OS_*)")
          .. ": " .. errors.message(err), 0)
  end
  return conn
end

local function ctx_index(ctx, k)
  local m = Ctx[k]
  if m ~= nil then return m end
  local run = rawget(ctx, "_run")
  if k == "cloud" then
    if run.plan then error("ctx.cloud is not available in --plan (call the cloud inside steps)", 2) end
    if not run.cloud_conn then
      -- Several tasks (probe samples) may ask at once: one connects, the others wait.
      run.cloud_flight = run.cloud_flight or single_flight.new("connect cloud")
      local ok, conn = run.cloud_flight:run(function() return connect_cloud(run) end, CLOUD_CONNECT_TIMEOUT)
      if not ok then error(errors.message(conn), 0) end
      run.cloud_conn = run.cloud_conn or conn
    end
    return run.cloud_conn
  elseif k == "inventory" then
    if not run.inventory then
      local inv, err = run:load_inventory()
      if not inv then error(err, 2) end
    end
    return run.inventory
  end
  return nil
end

function M.new(run)
  return setmetatable({ _run = run, params = run.params, out = run.out, plan = run.plan,
                        ledger = run.ledger, timeline = run.tl, scenario = run.s.name },
                      { __index = ctx_index })
end

-- "file:line" of the caller `level` frames up (where a step is declared).
function M.where(level)
  local info = debug.getinfo(level, "Sl")
  return info and (info.short_src .. ":" .. tostring(info.currentline)) or "?"
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

-- Runs a step: before-hooks, the body (timed), after-hooks. Returns true,
-- results... on success; on failure raises the stop marker (the rest of the
-- stage is skipped) unless continue_on_error, in which case it returns
-- false, message.
function Ctx:step(a, b, c)
  local spec = step_spec(a, b, c)
  spec.where = M.where(3)
  return self._run.exec:run_step(self, spec)
end

-- Runs an Ansible playbook as a step (upgrun.ansible.step).
function Ctx:ansible(spec) return require("upgrun.ansible.step")(self, spec, M.where(3)) end

-- Records a named check. `cond` may be a value or a function returning
-- ok, detail. Returns ok.
function Ctx:check(name, cond, detail) return self._run.exec:check(name, cond, detail) end

-- Records a check as skipped, with the reason it cannot run on this cloud.
function Ctx:skip(name, reason)
  if not reason or reason == "" then error("ctx:skip " .. tostring(name) .. ": needs a reason", 2) end
  return self._run.exec:skip(name, reason)
end

function Ctx:log(fmt, ...)
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  self._run.tl:event("log", { message = self._run:redact(msg), step = self._run:current_step() })
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

-- Runs fn(...) and returns its results; changes a resource watch
-- (s:watch) sees on resource (kind, id) meanwhile, and up to one interval
-- after, are recorded as intended, not as unavailability (e.g. a check that
-- stops and starts a persistent server).
function Ctx:intend(kind, id, fn, ...)
  local w = self._run.watching
  if not w then return fn(...) end
  return w:intend(kind, id, fn, ...)
end

function Ctx.sleep(_, s) return time.sleep(s) end

-- Whether anything (step, check, hook) has failed so far in the run.
function Ctx:failed() return self._run.nfailed > 0 end

-- Runs Tempest; each test becomes a check (see upgrun.tempest).
function Ctx:tempest(opts) return require("upgrun.tempest").run(self, opts) end

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

return M
