-- upgrun.outages — pure functions that turn probe samples into outages,
-- downtime per step, the worst latency ratio and budget verdicts (latency
-- per stage is kept online by upgrun.probe_stats).
-- No I/O, no clock: everything is computed from the tables passed in, so it is
-- unit-tested directly (tests/lua/test_outages.lua).
--
-- A sample is a table {t = send time (s, monotonic, relative to run start),
-- result = "ok"|"fail"|"unknown"|"skipped"|"cancelled", latency = s, stage = name}.
-- Only ok/fail/unknown samples carry information; skipped (max_in_flight was
-- reached, nothing was sent) and cancelled (the run was aborted) are ignored
-- here — the gap they leave shows up as uncertainty.
local M = {}

local INFORMATIVE = { ok = true, fail = true, unknown = true }

local function by_t(a, b) return a.t < b.t end

-- Returns the informative samples sorted by send time (a new array).
function M.sorted(samples)
  local s = {}
  for _, x in ipairs(samples) do
    if INFORMATIVE[x.result] then s[#s + 1] = x end
  end
  table.sort(s, by_t)
  return s
end

-- The outages in `samples`: maximal runs of non-ok samples ordered by send
-- time. Each outage is
--   {start = send time of the first non-ok sample,
--    ["end"] = send time of the first ok sample after it (or, when the run
--              ended inside the outage, of the last sample, with open = true),
--    duration = end - start,
--    start_uncertainty = gap between the last ok before and the first non-ok
--                        (0 when the probe began in the outage),
--    end_uncertainty = gap between the last non-ok and the first ok after,
--    uncertainty = max of the two (the duration is exact to ± this),
--    samples = number of non-ok samples, fail = n, unknown = n,
--    first_error = err kind/status of the first non-ok sample}
function M.find(samples)
  local tr = M.tracker()
  for _, x in ipairs(M.sorted(samples)) do tr:feed(x) end
  return tr:finish()
end

-- The online form of find(): feed(x) the samples in send order as they come
-- (non-informative ones are ignored), finish() closes an outage still open
-- and returns the list. Memory is O(outages). A sample may carry `t_end`
-- (an unknown sample cut by an abort): an open outage then lasts until it.
local Tracker = {}
Tracker.__index = Tracker

function M.tracker() return setmetatable({ list = {} }, Tracker) end

local function close(o)
  o.last_t = nil
  o.duration = o["end"] - o.start
  o.uncertainty = math.max(o.start_uncertainty, o.end_uncertainty)
end

function Tracker:feed(x)
  if not INFORMATIVE[x.result] then return end
  local cur = self.cur
  if x.result == "ok" then
    if cur then
      cur["end"] = x.t
      cur.end_uncertainty = x.t - self.last_t
      close(cur)
      self.list[#self.list + 1] = cur
      self.cur = nil
    end
    self.prev_ok_t = x.t
  else
    if not cur then
      cur = { start = x.t, samples = 0, fail = 0, unknown = 0,
              start_uncertainty = self.prev_ok_t and (x.t - self.prev_ok_t) or 0,
              first_error = x.err or x.status, stage = x.stage, last_t = x.t }
      self.cur = cur
    end
    cur.samples = cur.samples + 1
    cur[x.result] = cur[x.result] + 1
    local e = x.t_end or x.t
    if e > cur.last_t then cur.last_t = e end
  end
  self.last_t = x.t
end

-- Closes the outage still open (the run ended inside it) and returns every
-- outage. The tracker can be fed again afterwards only if nothing was open.
function Tracker:finish()
  local cur = self.cur
  if cur then
    cur["end"] = cur.last_t
    cur.end_uncertainty = 0
    cur.open = true
    close(cur)
    self.list[#self.list + 1] = cur
    self.cur = nil
  end
  return self.list
end

-- Sum of outage durations and the longest one.
function M.downtime(outages)
  local total, longest, unc = 0, 0, 0
  for _, o in ipairs(outages) do
    total = total + o.duration
    unc = unc + o.uncertainty
    if o.duration > longest then longest = o.duration end
  end
  return total, longest, unc
end

-- Length of the overlap of [a0, a1] and [b0, b1] (0 when disjoint).
function M.overlap(a0, a1, b0, b1)
  local lo, hi = math.max(a0, b0), math.min(a1, b1)
  return hi > lo and hi - lo or 0
end

-- Steps are {id =, name =, start =, ["end"] = (nil while running)}.
-- Returns the steps that were running at some point during [t0, t1]
-- (a step that ended exactly when the outage began does not count).
-- The paths of the innermost of the given steps: those none of whose
-- children is in the set (the report's "during" lists).
function M.innermost_paths(steps)
  local has_child = {}
  for _, st in ipairs(steps) do if st.parent then has_child[st.parent] = true end end
  local out = {}
  for _, st in ipairs(steps) do if not has_child[st.id] then out[#out + 1] = st.path end end
  return out
end

function M.steps_during(t0, t1, steps)
  local names = {}
  for _, st in ipairs(steps) do
    local e = st["end"] or math.huge
    if st.start <= t1 and e > t0 and (st.start < t1 or t0 == t1) then
      names[#names + 1] = st
    end
  end
  return names
end

-- What ran during [t0, t1], as the report lists it ("steps" of an outage or
-- window, "during" of a watch): the innermost steps' paths, then each site hook
-- that ran then as "hook NAME (of STEP)" (a hook runs outside its step, before
-- or after it). hooks: the run's hooks_run ({name =, step =, start =, ["end"] =}).
function M.during(t0, t1, steps, hooks)
  local out = M.innermost_paths(M.steps_during(t0, t1, steps))
  for _, h in ipairs(hooks or {}) do
    if h.start and h.start <= t1 and (h["end"] or math.huge) >= t0 then
      out[#out + 1] = string.format("hook %s (of %s)", h.name, tostring(h.step))
    end
  end
  return out
end

-- Downtime attributed to each step: for each step, the seconds of outage
-- overlapping its window. Returns {[step.id] = seconds} (only steps > 0).
function M.downtime_per_step(outages, steps, run_end)
  local per = {}
  for _, st in ipairs(steps) do
    local e = st["end"] or run_end or math.huge
    local sum = 0
    for _, o in ipairs(outages) do
      sum = sum + M.overlap(o.start, o["end"], st.start, e)
    end
    if sum > 0 then per[st.id] = sum end
  end
  return per
end

-- Merges windows ({start, end} tables, from several probes) into their union,
-- sorted by start: the time during which at least one API was out.
function M.union(windows)
  local w = {}
  for _, x in ipairs(windows) do w[#w + 1] = { start = x.start, ["end"] = x["end"] } end
  table.sort(w, function(a, b) return a.start < b.start end)
  local out = {}
  for _, x in ipairs(w) do
    local last = out[#out]
    if last and x.start <= last["end"] then
      if x["end"] > last["end"] then last["end"] = x["end"] end
    else
      out[#out + 1] = x
    end
  end
  for _, x in ipairs(out) do x.duration = x["end"] - x.start end
  return out
end

-- The worst ratio of a percentile over the non-baseline stages (nil when no
-- stage could be compared with the baseline).
function M.worst_ratio(by_stage, p)
  local worst, at = nil, nil
  for stage, st in pairs(by_stage) do
    local r = st[p .. "_ratio"]
    if r and (not worst or r > worst) then worst, at = r, stage end
  end
  return worst, at
end

-- Budget keys and how each is measured, in report order.
M.BUDGET_KEYS = {
  { key = "max_downtime", what = "total downtime", unit = "s" },
  { key = "max_outage", what = "longest outage", unit = "s" },
  { key = "max_p50_degradation", what = "p50 latency vs baseline", unit = "x" },
  { key = "max_p95_degradation", what = "p95 latency vs baseline", unit = "x" },
  { key = "max_p99_degradation", what = "p99 latency vs baseline", unit = "x" },
}

-- Evaluates a budget {max_downtime =, max_outage =, max_pXX_degradation =}
-- against measures {downtime =, longest =, p50_ratio =, p95_ratio =,
-- p99_ratio =}. Returns an array of
--   {key, limit, value, unit, status = "pass"|"fail"|"skipped", message}
-- A degradation that cannot be measured (no baseline samples) is "skipped".
function M.evaluate_budget(budget, m)
  local res = {}
  for _, b in ipairs(M.BUDGET_KEYS) do
    local limit = budget and budget[b.key]
    if limit then
      local value
      if b.key == "max_downtime" then value = m.downtime
      elseif b.key == "max_outage" then value = m.longest
      else value = m[b.key:match("^max_(p%d+)_") .. "_ratio"] end
      local r = { key = b.key, limit = limit, value = value, unit = b.unit }
      if value == nil then
        r.status = "skipped"
        r.message = b.what .. " could not be measured (no baseline samples)"
      elseif value <= limit then
        r.status = "pass"
        r.message = string.format("%s %.3f%s <= %g%s", b.what, value, b.unit, limit, b.unit)
      else
        r.status = "fail"
        r.message = string.format("%s %.3f%s > budget %g%s", b.what, value, b.unit, limit, b.unit)
      end
      res[#res + 1] = r
    end
  end
  return res
end

return M
