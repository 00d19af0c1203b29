-- upgrun.series — a probe's time series in fixed memory, for the report's
-- latency chart: at most `ncols` time buckets; when a sample falls past the
-- last one, neighbouring buckets are merged in pairs and the bucket width
-- doubles. Each bucket keeps the count of ok and of failed/unknown samples
-- and a coarse log-bucket histogram (5 %, upgrun.sketch's scheme) of the ok
-- latencies, so a chart column can show min / p50 / p95 / max however long
-- the run was.
--
-- Memory: a column is one table — its counters and, in its array part, the
-- histogram's counts for the contiguous bucket range lo .. lo + w - 1 (a few
-- dozen for a column's latencies) — not a sketch object with a hash of
-- buckets: ~0.6 KB a column instead of ~1.4 KB (4 probes: ~0.9 MB at most).
--
--   local sr = series.new([ncols], [width])   sr:add(t, result, latency)
--   sr:columns() -> array of {t0, t1, ok, bad, min, p50, p95, max}
local M = {}
local Series = {}
Series.__index = Series

local floor, ceil, log, move = math.floor, math.ceil, math.log, table.move
local COL_ACCURACY = 0.05
local GAMMA = (1 + COL_ACCURACY) / (1 - COL_ACCURACY)
local INV_LOG_GAMMA = 1 / log(GAMMA)
local TINY = 1e-9 -- latencies at or below this count in the bucket of TINY

function M.new(ncols, width)
  return setmetatable({ ncols = ncols or 512, width = width or 0.05, cols = {} }, Series)
end

-- Adds `cnt` to histogram bucket k of column c (extending its range).
local function add_count(c, k, cnt)
  local lo = c.lo
  if not lo then
    c.lo, c.w, c[1] = k, 1, cnt
    return
  end
  local j = k - lo + 1
  if j < 1 then -- below the range: shift the counts up
    local sh = 1 - j
    move(c, 1, c.w, 1 + sh)
    for q = 2, sh do c[q] = 0 end
    c[1], c.lo, c.w = cnt, k, c.w + sh
  elseif j > c.w then
    for q = c.w + 1, j - 1 do c[q] = 0 end
    c[j], c.w = cnt, j
  else
    c[j] = c[j] + cnt
  end
end

local function merge_into(d, c)
  d.ok, d.bad = d.ok + c.ok, d.bad + c.bad
  if c.lo then
    if not d.min or c.min < d.min then d.min = c.min end
    if not d.max or c.max > d.max then d.max = c.max end
    d.n = (d.n or 0) + c.n
    local lo = c.lo - 1
    for j = 1, c.w do
      local cnt = c[j]
      if cnt > 0 then add_count(d, lo + j, cnt) end
    end
  end
end

-- Halves the resolution (merges buckets 2i and 2i+1).
function Series:compact()
  local new = {}
  for i, c in pairs(self.cols) do
    local j = i // 2
    local d = new[j]
    if not d then new[j] = c else merge_into(d, c) end
  end
  self.cols = new
  self.width = self.width * 2
end

function Series:add(t, result, latency)
  if t < 0 then t = 0 end
  local i = floor(t / self.width)
  while i >= self.ncols do
    self:compact()
    i = floor(t / self.width)
  end
  local c = self.cols[i]
  if not c then c = { ok = 0, bad = 0 }; self.cols[i] = c end
  if result == "ok" then
    c.ok = c.ok + 1
    if latency then
      local x = latency > TINY and latency or TINY
      if not c.min or latency < c.min then c.min = latency end
      if not c.max or latency > c.max then c.max = latency end
      c.n = (c.n or 0) + 1
      add_count(c, ceil(log(x) * INV_LOG_GAMMA), 1)
    end
  elseif result == "fail" or result == "unknown" then
    c.bad = c.bad + 1
  end
end

-- The order statistics at ranks floor(q * (n - 1)) for ascending qs, read
-- back as the middle of their bucket (as upgrun.sketch does), within [min, max].
local function quantiles(c, qs)
  local out, seen, j = {}, 0, 0
  for qi, q in ipairs(qs) do
    local rank = floor(q * (c.n - 1))
    while seen <= rank and j < c.w do
      j = j + 1
      seen = seen + c[j]
    end
    local v = 2 * GAMMA ^ (c.lo + j - 1) / (GAMMA + 1)
    out[qi] = v < c.min and c.min or v > c.max and c.max or v
  end
  return out
end

local QS = { 0.5, 0.95 }

function Series:columns()
  local idx = {}
  for i in pairs(self.cols) do idx[#idx + 1] = i end
  table.sort(idx)
  local out = {}
  for _, i in ipairs(idx) do
    local c = self.cols[i]
    local col = { t0 = i * self.width, t1 = (i + 1) * self.width, ok = c.ok, bad = c.bad }
    if c.lo then
      local q = quantiles(c, QS)
      col.min, col.p50, col.p95, col.max = c.min, q[1], q[2], c.max
    end
    out[#out + 1] = col
  end
  return out
end

return M
