-- upgrun.probe — open-loop probes. A probe calls its function every
-- `interval` seconds, each call in its own task, whether or not earlier calls
-- have answered, so the end of a hang is resolved to the interval rather than
-- to the timeout. At most `max_in_flight` samples are outstanding: when the
-- bound is reached the slot is recorded as `skipped` (nothing is sent; the
-- outage analysis ignores it and the gap it leaves shows in the uncertainty).
--
-- A sample is stamped when it is sent and its result is
--   ok       the function returned a true value / an expected HTTP status
--   fail     an error (refused, reset, 5xx, 4xx other than expected; 401 always)
--   unknown  no answer within `timeout`
-- The probe function is fn(ctx, probe) -> value | nil, err (err.kind
-- "timeout" -> unknown) or an HTTP response {status=} classified by `expect`.
local task = require "upgrun.task"
local time = require "upgrun.time"

local M = {}
local Probe = {}
Probe.__index = Probe
M.Probe = Probe

local function status_set(expect)
  if expect == nil then return nil end
  if type(expect) == "number" then expect = { expect } end
  local s = {}
  for _, v in ipairs(expect) do s[v] = true end
  return s
end

-- Classifies what a probe function returned. Returns result, status, err_kind,
-- message.
function M.classify(res, err, expect_set)
  if res == nil or res == false then
    if type(err) == "table" then
      local kind = err.kind or "error"
      return (kind == "timeout") and "unknown" or "fail", err.status, kind, err.message
    end
    return "fail", nil, "error", err and tostring(err) or "the probe returned false"
  end
  if type(res) == "table" and math.type(res.status) == "integer" then
    local st = res.status
    if st == 401 then return "fail", st, "http", "401 Unauthorized is never ok" end
    if expect_set then
      if expect_set[st] then return "ok", st end
      return "fail", st, "http", "unexpected status " .. st
    end
    if st >= 200 and st < 400 then return "ok", st end
    return "fail", st, "http", "status " .. st
  end
  return "ok"
end

-- A probe function for one HTTP request (upgrun.http):
--   probe.http{url =, method = "GET", headers =, body =, expect = {200, ...},
--              timeout =}
-- Without `expect`, 2xx/3xx are ok. Headers may be a function(ctx) returning
-- the headers (e.g. a fresh token).
function M.http(spec)
  assert(type(spec) == "table" and type(spec.url) == "string", "probe.http needs {url = ...}")
  return function(ctx, p)
    local http = require "upgrun.http"
    local headers = spec.headers
    if type(headers) == "function" then headers = headers(ctx) end
    return http.request { method = spec.method or "GET", url = spec.url, headers = headers,
                          body = spec.body, timeout = spec.timeout or p.timeout }
  end
end

-- Creates a probe from its declaration (see docs/scenarios.md):
--   name, fn | http = {...}, interval (s) | rate (Hz), timeout (s, default
--   min(5, 10 * interval) but at least 1), max_in_flight (default
--   ceil(timeout / interval) + 1, at most 16), expect, stages, budget, baseline.
function M.new(spec)
  if type(spec) ~= "table" then error("probe: expects a table", 3) end
  if type(spec.name) ~= "string" or spec.name == "" then error("probe: needs a name", 3) end
  local p = setmetatable({}, Probe)
  p.name = spec.name
  p.fn = spec.fn
  if spec.http then p.fn = M.http(spec.http); p.expect = p.expect or spec.http.expect end
  if type(p.fn) ~= "function" then error("probe " .. p.name .. ": needs fn or http", 3) end
  p.interval = spec.interval or (spec.rate and 1 / spec.rate) or 1
  if type(p.interval) ~= "number" or p.interval <= 0 then
    error("probe " .. p.name .. ": interval must be > 0", 3)
  end
  p.timeout = spec.timeout or math.max(1, math.min(5, 10 * p.interval))
  p.max_in_flight = spec.max_in_flight or math.min(16, math.ceil(p.timeout / p.interval) + 1)
  p.expect = spec.expect or p.expect
  p.expect_set = status_set(p.expect)
  p.stages = spec.stages
  p.budget = spec.budget
  p.baseline = spec.baseline or "before"
  p.description = spec.description
  p.samples = {}
  p.in_flight = 0
  p.sent = 0
  p.skipped = 0
  p.windows = {}      -- {start, end} (relative) while the probe was running
  p.outstanding = {}  -- sample tasks not finished yet
  return p
end

-- Whether the probe runs during `stage` (no `stages` = every stage).
function Probe:runs_in(stage)
  if not self.stages then return true end
  for _, s in ipairs(self.stages) do if s == stage then return true end end
  return false
end

-- Records a sample (and passes it to the on_sample callback).
function Probe:record(s)
  self.samples[#self.samples + 1] = s
  if self.on_sample then pcall(self.on_sample, s) end
end

local function is_cancel(e) return type(e) == "table" and e.kind == "cancelled" end

-- One sample, in its own task.
function Probe:sample(ctx, tl, stage, step)
  local t_send = time.mono()
  local s = { probe = self.name, t = tl:rel(t_send), wall = tl:wall(), stage = stage, step = step }
  local ok, res, err = pcall(task.with_timeout, self.timeout, self.fn, ctx, self)
  local t_done = time.mono()
  s.latency = t_done - t_send
  if not ok then
    if is_cancel(res) then
      s.result, s.err = "cancelled", "cancelled"
    else
      s.result, s.err, s.message = "fail", "error", tostring(type(res) == "table" and (res.message or res.kind) or res)
    end
  else
    local result, status, kind, msg = M.classify(res, err, self.expect_set)
    s.result, s.status, s.err, s.message = result, status, kind, msg
  end
  self.in_flight = self.in_flight - 1
  self:record(s)
end

-- Starts sampling (no-op when running). `current_step()` names the step(s)
-- running now; `stage` is the current stage name.
function Probe:start(ctx, tl, stage, current_step)
  if self.loop then self.stage = stage; return end
  self.stage = stage
  self.current_step = current_step
  self.running = true
  local start_mono = time.mono()
  self.windows[#self.windows + 1] = { start = tl:rel(start_mono) }
  self.loop = task.spawn("probe " .. self.name, function()
    local k = 0
    while self.running do
      -- Sleep until the slot is due (a timer may fire a little early when
      -- the loop's cached time is stale, hence the loop).
      local due = start_mono + k * self.interval
      local now = time.mono()
      while due > now and self.running do
        if not pcall(time.sleep, due - now) then self.running = false end
        now = time.mono()
      end
      if not self.running then break end
      local step = self.current_step and self.current_step() or nil
      if self.in_flight >= self.max_in_flight then
        self.skipped = self.skipped + 1
        self:record { probe = self.name, t = tl:now(), wall = tl:wall(), stage = self.stage, step = step,
                      result = "skipped", err = "max_in_flight" }
      else
        self.in_flight = self.in_flight + 1
        self.sent = self.sent + 1
        local st
        st = task.spawn("sample " .. self.name, function()
          self:sample(ctx, tl, self.stage, step)
          if st then self.outstanding[st] = nil end
        end)
        self.outstanding[st] = true
      end
      k = k + 1
      -- Fell behind (the loop was starved)? Resynchronise instead of bursting.
      local late = time.mono() - (start_mono + k * self.interval)
      if late > self.interval then k = k + math.floor(late / self.interval) end
    end
  end)
end

-- Stops sending new samples; samples in flight finish on their own (each is
-- bounded by the timeout; drain() waits for them).
function Probe:stop(tl)
  if not self.loop then return end
  self.running = false
  self.loop:cancel()
  self.loop = nil
  local w = self.windows[#self.windows]
  if w and not w["end"] then w["end"] = tl:now() end
end

-- Waits (at most `timeout` s) for the samples still in flight.
function Probe:drain(timeout)
  local deadline = time.mono() + (timeout or self.timeout + 1)
  for t in pairs(self.outstanding) do
    local left = deadline - time.mono()
    if left <= 0 then break end
    t:join(left)
  end
end

-- Seconds the probe was running (sum of its windows; an open window ends at `now`).
function Probe:active_time(now)
  local sum = 0
  for _, w in ipairs(self.windows) do sum = sum + ((w["end"] or now) - w.start) end
  return sum
end

return M
