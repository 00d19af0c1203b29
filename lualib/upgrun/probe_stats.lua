-- upgrun.probe_stats — the online aggregates of one probe in one run, fed
-- each sample as it completes and keeping nothing per sample: counts per
-- result, outages (upgrun.outages' tracker, fed in send order through a small
-- reorder buffer, since samples complete out of order), ok latency per stage
-- (upgrun.sketch, 1 %), the chart series (upgrun.series) and the current run
-- of ok answers (for the steady-state check). Memory is O(outages + stages +
-- chart columns + samples in flight).
--
--   local st = probe_stats.new()
--   st:add(seq, s)        s = {t, result, latency, stage, err, status, message, t_end}
--   st:finish() -> outages (closes an open one; call once, at the end)
--   st:latency_by_stage(baseline) -> {[stage] = stats + pXX_ratio}, baseline
--   st:latency() -> stats of every ok sample;  st:steady_for() -> seconds, last_error
--   st.on_outage = fn(kind, outage, sample)  called in send order when an
--       outage starts ("start": the outage open so far) and ends ("end": it
--       closed, with its duration and uncertainty); st.last = the latest
--       informative sample in send order; st.tracker.cur = the open outage
local outages = require "upgrun.outages"
local sketch = require "upgrun.sketch"
local series = require "upgrun.series"

local M = {}
local Stats = {}
Stats.__index = Stats

-- A sequence number that never arrives (a sample task that was abandoned)
-- must not hold the others back forever: past this many waiting, skip it.
local MAX_PENDING = 256

function M.new()
  return setmetatable({
    counts = { ok = 0, fail = 0, unknown = 0, skipped = 0, cancelled = 0 },
    tracker = outages.tracker(), stages = {}, stage_order = {}, series = series.new(),
    pending = {}, npending = 0, next_seq = 1,
  }, Stats)
end

-- In send order: outages and the current run of ok answers.
function Stats:feed(s)
  local was = self.tracker.cur
  self.tracker:feed(s)
  local r = s.result
  if r == "ok" or r == "fail" or r == "unknown" then self.last = s end
  local on = self.on_outage
  if on then
    local cur = self.tracker.cur
    if cur and not was then pcall(on, "start", cur, s)
    elseif was and not cur then pcall(on, "end", was, s) end
  end
  if r == "ok" then
    if not self.ok_since then self.ok_since = s.t end
    self.last_ok_t = s.t
  elseif r == "fail" or r == "unknown" then
    self.ok_since, self.last_ok_t = nil, nil
    self.last_error = s.message or s.err or r
  end
end

function Stats:add(seq, s)
  local r = s.result
  self.counts[r] = (self.counts[r] or 0) + 1
  if r == "ok" and s.latency and s.stage then
    local sk = self.stages[s.stage]
    if not sk then
      sk = sketch.new()
      self.stages[s.stage] = sk
      self.stage_order[#self.stage_order + 1] = s.stage
    end
    sk:add(s.latency)
  end
  self.series:add(s.t, r, s.latency)
  self:order(seq, s)
end

-- Feeds s when it is next in send order (and whatever waited for it), or
-- keeps it until the samples sent before it are in.
function Stats:order(seq, s)
  if seq == self.next_seq then
    self:feed(s)
    local n, pending = seq + 1, self.pending
    while pending[n] do
      self:feed(pending[n])
      pending[n] = nil
      self.npending = self.npending - 1
      n = n + 1
    end
    self.next_seq = n
  elseif seq > self.next_seq then
    self.pending[seq] = s
    self.npending = self.npending + 1
    if self.npending > MAX_PENDING then self:skip_gap() end
  end
end

-- Moves next_seq to the oldest waiting sample and feeds from there.
function Stats:skip_gap()
  local lo
  for k in pairs(self.pending) do if not lo or k < lo then lo = k end end
  if not lo then return end
  self.next_seq = lo
  local s = self.pending[lo]
  self.pending[lo] = nil
  self.npending = self.npending - 1
  self:order(lo, s)
end

-- Feeds what is still waiting (in order, over gaps) and closes the outages.
function Stats:finish()
  if self.outages then return self.outages end
  local ks = {}
  for k in pairs(self.pending) do ks[#ks + 1] = k end
  table.sort(ks)
  for _, k in ipairs(ks) do self:feed(self.pending[k]) end
  self.pending, self.npending = {}, 0
  self.outages = self.tracker:finish()
  return self.outages
end

-- Seconds of uninterrupted ok answers up to the latest one in send order
-- (nil when the latest informative answer was not ok), and the last error.
function Stats:steady_for()
  if not self.ok_since then return nil, self.last_error end
  return self.last_ok_t - self.ok_since, self.last_error
end

-- Latency of ok samples per stage, with each stage's ratio to the baseline
-- stage (the shape of upgrun.outages.latency_by_stage).
function Stats:latency_by_stage(baseline)
  baseline = baseline or "before"
  local out = {}
  for stage, sk in pairs(self.stages) do out[stage] = sk:stats() end
  local base = out[baseline]
  if base and base.n > 0 then
    for stage, st in pairs(out) do
      if stage ~= baseline and st.n > 0 then
        for _, p in ipairs { "p50", "p95", "p99" } do
          if base[p] > 0 then st[p .. "_ratio"] = st[p] / base[p] end
        end
      end
    end
  end
  return out, baseline
end

-- Latency of every ok sample (the stages' sketches merged), optionally
-- leaving out some stages (a set).
function Stats:latency(except)
  local all = sketch.new()
  for stage, sk in pairs(self.stages) do
    if not (except and except[stage]) then all:merge(sk) end
  end
  return all:stats()
end

return M
