-- upgrun.runner.plan — `--plan`: a dry-run executor with the executor's
-- methods. Stage functions run with ctx.plan = true; each ctx:step is listed
-- (nodes, hook point, the hooks that would run around it); checks are
-- recorded as planned. Without -i, step bodies are not run and ctx.inventory
-- is a symbolic inventory whose groups are one placeholder node named
-- <group>, so stages that pick nodes still list their steps. With -i, step
-- bodies run too, on dry nodes: each command is listed with its node and
-- answers status 0 with no output, uploads are listed, nothing connects;
-- local commands, HTTP and the cloud refuse; a sleep (a poll for a state a
-- dry run never reaches) stops the listing of that step, and a top-level step
-- is planned for at most BODY_LIMIT seconds (any other wait).
local task = require "upgrun.task"
local time = require "upgrun.time"
local executor = require "upgrun.runner.executor"
local params = require "upgrun.runner.params"
local scenario = require "upgrun.scenario"

local M = {}
local Plan = {}
Plan.__index = Plan

M.BODY_LIMIT = 0.5

function M.new(run, out)
  return setmetatable({ run = run, out = out or function(line) io.stdout:write(line, "\n") end,
                        real_sleep = time.sleep }, Plan)
end

-- Prints a line; a command line printed again right after itself is counted,
-- not repeated (a polling loop).
function Plan:say(line, collapsible)
  if collapsible and line == self.last then
    self.repeats = (self.repeats or 0) + 1
    return
  end
  if (self.repeats or 0) > 0 then
    self.out(string.format("%s(the line above %d more time%s)", self.last:match("^%s*"), self.repeats,
                           self.repeats == 1 and "" or "s"))
  end
  self.last, self.repeats = line, 0
  self.out(line)
end

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

-- A node whose commands are listed, not run (-i under --plan).
local function dry_node(plan, node)
  local dry = {}
  local function say(what)
    plan:say(string.rep("  ", #plan.run:stack() + 2) .. "$ " .. node.name .. ": " .. what, true)
  end
  function dry.run(_, cmd, opts)
    plan.real_sleep(0) -- a cancellation point: a cancelled listing stops here
    say((opts and opts.display) or cmd)
    return { status = 0, ok = true, stdout = "", stderr = "", duration = 0, dry = true }
  end
  function dry.run_argv(self, argv, opts) return dry.run(self, require("upgrun.shell").join(argv), opts) end
  function dry.upload(_, _, remote_path) say("upload " .. tostring(remote_path)); return true end
  function dry.session() return nil, require("upgrun.errors").new("usage", "--plan: no SSH session in a dry run") end
  function dry.close() end
  function dry.service(self, name) return require("upgrun.services").get(self, name) end
  return setmetatable(dry, { __index = node, __tostring = function() return "node " .. node.name end })
end

-- The -i inventory with dry nodes.
function M.dry_inventory(plan, inv)
  local cache = {}
  local function wrap(n)
    if type(n) ~= "table" then return n end
    cache[n] = cache[n] or dry_node(plan, n)
    return cache[n]
  end
  local function wrap_list(list)
    local out = {}
    for i, n in ipairs(list) do out[i] = wrap(n) end
    return out
  end
  return setmetatable({ dry = true }, { __index = function(_, k)
    local v = inv[k]
    if k == "group" or k == "hosts" then return function(_, ...) return wrap_list(v(inv, ...)) end end
    if k == "host" then return function(_, ...) return wrap(v(inv, ...)) end end
    if type(v) == "function" then return function(_, ...) return v(inv, ...) end end
    return v
  end })
end

-- While fn runs, local commands and HTTP requests refuse (a plan runs nothing)
-- and a sleep stops the step it is in.
local function without_side_effects(fn)
  local saved = { { time, "sleep", time.sleep } }
  time.sleep = function() error("it waits for a state a dry run does not reach", 2) end
  local function refuse(mod, what)
    local m = require(mod)
    for k, f in pairs(m) do
      if type(f) == "function" and (mod ~= "upgrun.proc" or k == "run" or k == "spawn") then
        saved[#saved + 1] = { m, k, f }
        m[k] = function() error("--plan does not run " .. what, 2) end
      end
    end
  end
  refuse("upgrun.proc", "local commands")
  refuse("upgrun.http", "HTTP requests")
  local r = table.pack(pcall(fn))
  for _, x in ipairs(saved) do x[1][x[2]] = x[3] end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end
M.without_side_effects = without_side_effects

-- Runs a step body on dry nodes (with -i), listing its sub-steps and commands.
function Plan:dry_body(ctx, spec, st)
  local run = self.run
  local stack = run:stack()
  stack[#stack + 1] = st
  local inherited = {}
  for i, x in ipairs(stack) do inherited[i] = x end
  local ok, e = xpcall(function()
    if st.depth > 0 then return spec.fn(ctx, st) end -- within the top-level step's limit
    local r, err = task.with_timeout(M.BODY_LIMIT, function()
      run.stacks[task.current()] = inherited
      spec.fn(ctx, st)
      return true
    end)
    if r == nil and type(err) == "table" and err.kind == "timeout" then
      error("it waits for a state a dry run does not reach", 0)
    end
  end, executor.error_handler)
  stack[#stack] = nil
  if not ok and executor.is_cancel(e) then error(e, 0) end -- the listing was stopped above: unwind
  if not ok and e ~= executor.STOP then
    self:say(string.format("%s(not planned further: %s)", string.rep("  ", st.depth + 3),
                           (e.message or tostring(e)):gsub("\n.*", "")))
  end
end

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
  if run.inventory and run.inventory.dry then self:dry_body(ctx, spec, st) end
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
    self:say("inventory: " .. params.inventory_names(run.opts))
  end
  self:say("stages:")
  without_side_effects(function()
    for _, stage in ipairs(s.stages) do self:run_stage(ctx, stage) end
  end)
  self:say("probes:")
  for _, p in ipairs(s.probes) do
    local b = budget_text(p.budget)
    self:say(string.format("  %s: every %g s (%.4g/s), timeout %g s, max in flight %d, stages: %s%s",
      p.name, p.interval, 1 / p.interval, p.timeout, p.max_in_flight,
      p.stages and (#p.stages > 0 and table.concat(p.stages, ", ") or "(none: off)") or "all",
      b ~= "" and ("; budget " .. b) or ""))
  end
  for _, w in ipairs(s.watches or {}) do
    self:say(string.format("watch %s: every live ledger record of kind %s, listed every %g s, stages: %s%s", w.name,
      w.kind, w.every, w.stages and (#w.stages > 0 and table.concat(w.stages, ", ") or "(none: off)") or "all",
      w.budget and w.budget.max_unavailable and ("; budget max_unavailable=" .. w.budget.max_unavailable) or ""))
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
