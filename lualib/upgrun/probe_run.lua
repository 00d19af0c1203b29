-- upgrun.probe_run — one probe's state in one run (the declaration in
-- upgrun.probe stays untouched, so a scenario can be run twice). It sends
-- the samples (open loop: every `interval` seconds, each sample in its own
-- task, at most `max_in_flight` outstanding, else the slot is `skipped`),
-- hands each completed sample to `sink` (samples.jsonl) and to its online
-- aggregates (upgrun.probe_stats), and keeps no sample.
--
--   local pr = probe_run.new(p, tl, {sink = fn(s)})
--   pr:start(ctx, stage, current_step)   (again: only the stage changes)
--   pr:stop()   pr:drain([timeout])   pr:finish(aborted) -> outages
--   pr.stats (upgrun.probe_stats), pr.sent, pr.skipped, pr:active_time(now)
--
-- A sample is {probe, t (send time, s since the run start), wall, stage,
-- step, result, latency, status, err, message}. At an abort, a sample in
-- flight for longer than the probe's interval counts as `unknown` up to the
-- abort time (an API that hangs is out); a younger one as `cancelled`.
--
-- An http probe whose request is the same every time (probe.request_of: fixed
-- headers, its own function) is sampled in C (upgrun.http.sampler): no task
-- per sample; the finished samples are taken in batches (every BATCH s at
-- most), so they reach the aggregates, samples.jsonl and the live OUTAGE
-- lines up to BATCH s later. The stage and step of a sample are those at its
-- send: a "mark" the sampler records, renewed at each stage change and at the
-- timeline's step_start/step_end (the runner clears its current-step cache
-- just before each). Any other probe runs a task per sample (below).
local task = require "upgrun.task"
local time = require "upgrun.time"
local probe = require "upgrun.probe"
local Timeline = require "upgrun.timeline"

local M = {}
local EARLY = 0.001 -- seconds: see ProbeRun:start
local BATCH = 0.1   -- seconds: see the top
local TAKE_WAIT = 1 -- seconds: the collector's longest wait for a batch
local MAX_SAMPLED_IN_FLIGHT = 1024 -- upgrun.http.sampler's limit
local ProbeRun = {}
ProbeRun.__index = ProbeRun
M.ProbeRun = ProbeRun

function M.new(p, tl, opts)
  opts = opts or {}
  return setmetatable({
    probe = p, name = p.name, tl = tl, sink = opts.sink, stats = require("upgrun.probe_stats").new(),
    in_flight = 0, sent = 0, skipped = 0, seq = 0,
    self_timed_fn = p.self_timed and p.fn or nil, -- (a setup that replaces p.fn loses it)
    windows = {},     -- {start, end} (relative) while the probe was running
    outstanding = {}, -- sample task -> {seq, t_send (mono), stage, step}
  }, ProbeRun)
end

-- Hands a completed sample to the aggregates and the sink (once per seq).
function ProbeRun:record(seq, s)
  if self.finished then return end
  self.stats:add(seq, s)
  if self.sink then
    local ok, err = pcall(self.sink, s)
    if not ok and not self.sink_error then self.sink_error = tostring(err) end
  end
end

local function is_cancel(e) return type(e) == "table" and e.kind == "cancelled" end

-- The sample of a request cut by an abort (or by the end of the run).
function ProbeRun:cut(job, t_cut)
  local p = self.probe
  local t = self.tl:rel(job.t_send)
  local s = { probe = self.name, t = t, wall = job.wall or Timeline.iso(self.tl.t0_wall + t), stage = job.stage,
              step = job.step, latency = t_cut - job.t_send }
  if s.latency > p.interval then
    s.result, s.err, s.message = "unknown", "aborted", "no answer before the abort"
    s.t_end = self.tl:rel(t_cut)
  else
    s.result, s.err = "cancelled", "cancelled"
  end
  return s
end

-- One sample, in its own task.
function ProbeRun:sample(ctx, job)
  local p = self.probe
  job.t_send, job.wall = time.mono(), self.tl:wall()
  local ok, res, err
  if p.self_timed and p.fn == self.self_timed_fn then
    ok, res, err = pcall(p.fn, ctx, p) -- an upgrun.http request bounded by p.timeout
  else
    ok, res, err = pcall(task.with_timeout, p.timeout, p.fn, ctx, p)
  end
  local t_done = time.mono()
  self.in_flight = self.in_flight - 1
  job.done = true
  local s
  if not ok and is_cancel(res) then
    s = self:cut(job, t_done)
  else
    s = { probe = self.name, t = self.tl:rel(job.t_send), wall = job.wall, stage = job.stage, step = job.step,
          latency = t_done - job.t_send }
    if not ok then
      s.result, s.err, s.message = "fail", "error", probe.message(res)
    else
      s.result, s.status, s.err, s.message = probe.classify(res, err, p.expect_set)
    end
  end
  self:record(job.seq, s)
end

-- The body of a sample's task.
local function run_sample(self, ctx, job)
  self:sample(ctx, job)
  self.outstanding[job.task] = nil
end

-- Starts sampling (when running: only the stage changes). `current_step()`
-- names the step(s) running now.
function ProbeRun:start(ctx, stage, current_step)
  local p = self.probe
  if self.sampler or self:sampled_request() then return self:start_sampled(stage, current_step) end
  self.stage = stage
  if self.loop then return end
  local tl = self.tl
  self.current_step = current_step
  self.running = true
  local start_mono = time.mono()
  self.windows[#self.windows + 1] = { start = tl:rel(start_mono) }
  local sample_name = "sample " .. self.name
  -- The loop runs only this library's code, briefly between waits: no count
  -- hook on its task (task.spawn_unwatched). The samples run the scenario's
  -- code: task.spawn.
  self.loop = task.spawn_unwatched("probe " .. self.name, function()
    local k = 0
    while self.running do
      -- Sleep until the slot is due. time.sleep counts whole milliseconds
      -- (rounded up, plus the one the loop's coarse clock may lose): a slot
      -- less than EARLY away is due (sleeping again for that would cost
      -- wake-ups for nothing; the sample is stamped when it is sent).
      local due = start_mono + k * p.interval
      local now = time.mono()
      while due - now > EARLY and self.running do
        if not pcall(time.sleep, due - now) then self.running = false end
        now = time.mono()
      end
      if not self.running then break end
      local step = self.current_step and self.current_step() or nil
      self.seq = self.seq + 1
      if self.in_flight >= p.max_in_flight then
        self.skipped = self.skipped + 1
        self:record(self.seq, { probe = self.name, t = tl:now(), wall = tl:wall(), stage = self.stage, step = step,
                                result = "skipped", err = "max_in_flight" })
      else
        self.in_flight = self.in_flight + 1
        self.sent = self.sent + 1
        -- t_send is stamped again (with wall) when the sample task runs: the
        -- request goes out then; this one holds if it never runs.
        local job = { seq = self.seq, t_send = time.mono(), stage = self.stage, step = step }
        local st = task.spawn(sample_name, run_sample, self, ctx, job)
        job.task = st -- set before the task first runs
        if not job.done then self.outstanding[st] = job end
      end
      k = k + 1
      -- Fell behind (the loop was starved)? Resynchronise instead of bursting.
      local late = time.mono() - (start_mono + k * p.interval)
      if late > p.interval then k = k + math.floor(late / p.interval) end
    end
  end)
end

-- ---- sampled in C ----------------------------------------------------

-- Renews the mark when the stage or step changed: samples sent from now on
-- carry it.
function ProbeRun:remark()
  local step = self.current_step and self.current_step() or nil
  local m = self.marks[self.mark]
  if m and m.stage == self.stage and m.step == step then return end
  self.mark = self.mark + 1
  self.marks[self.mark] = { stage = self.stage, step = step }
  self.sampler:mark(self.mark)
end

-- The samples of the sampler's last take.
function ProbeRun:record_taken(n)
  local sp, marks, tl, p = self.sampler, self.marks, self.tl, self.probe
  for i = 1, n do
    local seq, mark, t_send, wall, t_end, status, kind, message = sp:get(i)
    local m = marks[mark]
    local s = { probe = self.name, t = tl:rel(t_send), wall = Timeline.iso(wall), stage = m.stage, step = m.step }
    if kind == "skipped" then
      self.skipped = self.skipped + 1
      s.result, s.err = "skipped", "max_in_flight"
    else
      self.sent = self.sent + 1
      s.latency = t_end - t_send
      if kind then
        s.result, s.err, s.message = kind == "timeout" and "unknown" or "fail", kind, message
      else
        s.result, s.status, s.err, s.message = probe.classify_status(status, p.expect_set)
      end
    end
    self:record(seq, s)
  end
end

-- Collects the sampler's samples until it can send no more (stopped,
-- nothing in flight) and no start came meanwhile.
function ProbeRun:collect()
  local sp = self.sampler
  while true do
    local n = sp:take(TAKE_WAIT)
    self:record_taken(n)
    if n == 0 and not self.running and sp:in_flight() == 0 then break end
  end
  self.collector = nil
end

-- The request to sample in C, if this probe's function is probe.http's
-- with fixed headers (whoever made it: a setup may replace p.fn) and its
-- request is bounded by the probe's timeout.
function ProbeRun:sampled_request()
  local p = self.probe
  local req = probe.request_of(p.fn)
  if req and (not req.timeout or req.timeout <= p.timeout) and p.max_in_flight <= MAX_SAMPLED_IN_FLIGHT then
    return req
  end
end

function ProbeRun:start_sampled(stage, current_step)
  local p = self.probe
  self.stage = stage
  if not self.sampler then
    local req = self:sampled_request()
    self.sampler = require("upgrun.http").sampler {
      method = req.method, url = req.url, headers = req.headers, body = req.body, status_only = true,
      timeout = req.timeout or p.timeout, interval = p.interval, max_in_flight = p.max_in_flight, batch = BATCH,
    }
    self.marks, self.mark = {}, 0
    self.tl:listen(function(e)
      if self.running and (e.kind == "step_start" or e.kind == "step_end") then self:remark() end
    end)
  end
  self.current_step = current_step
  self:remark()
  if self.running then return end
  self.running = true
  self.windows[#self.windows + 1] = { start = self.tl:now() }
  self.sampler:start(self.mark)
  self.loop = true -- (running; live.lua and Probing look at it)
  if not self.collector then
    self.collector = task.spawn_unwatched("probe " .. self.name, function() self:collect() end)
  end
end

-- Stops sending new samples; samples in flight finish on their own (each is
-- bounded by the timeout; drain() waits for them).
function ProbeRun:stop()
  if not self.loop then return end
  self.running = false
  if self.sampler then
    self.sampler:stop()
  else
    self.loop:cancel()
  end
  self.loop = nil
  local w = self.windows[#self.windows]
  if w and not w["end"] then w["end"] = self.tl:now() end
end

-- Waits (at most `timeout` s) for the samples still in flight.
function ProbeRun:drain(timeout)
  local deadline = time.mono() + (timeout or self.probe.timeout + 1)
  if self.collector then self.collector:join(deadline - time.mono()) end
  for t in pairs(self.outstanding) do
    local left = deadline - time.mono()
    if left <= 0 then break end
    t:join(left)
  end
end

-- Ends the run of this probe: samples still in flight are recorded as cut
-- now (unknown when older than the interval, else cancelled), later answers
-- are ignored, and the outages are closed. Returns the outages.
function ProbeRun:finish()
  self:stop()
  if not self.finished then
    local now = time.mono()
    local jobs = {}
    local sp = self.sampler
    if sp then -- what is ready, then what is in flight (cut now)
      self:record_taken(sp:take(0))
      for _, c in ipairs(sp:cut()) do
        local m = self.marks[c[2]]
        self.sent = self.sent + 1
        jobs[#jobs + 1] = { seq = c[1], t_send = c[3], wall = Timeline.iso(c[4]), stage = m.stage, step = m.step }
      end
      if self.collector then self.collector:cancel() end
      sp:close()
    end
    for _, job in pairs(self.outstanding) do if not job.done then jobs[#jobs + 1] = job end end
    table.sort(jobs, function(a, b) return a.seq < b.seq end)
    for _, job in ipairs(jobs) do self:record(job.seq, self:cut(job, now)) end
    self.outstanding = {}
    self.finished = true
  end
  return self.stats:finish()
end

-- Seconds the probe was running (sum of its windows; an open window ends at `now`).
function ProbeRun:active_time(now)
  local sum = 0
  for _, w in ipairs(self.windows) do sum = sum + ((w["end"] or now) - w.start) end
  return sum
end

return M
