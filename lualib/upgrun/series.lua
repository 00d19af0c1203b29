-- upgrun.series — a probe's time series in fixed memory, for the report's
-- latency chart: at most `ncols` time buckets; when a sample falls past the
-- last one, neighbouring buckets are merged in pairs and the bucket width
-- doubles. Each bucket keeps the count of ok and of failed/unknown samples
-- and a coarse log-bucket histogram (5 %, upgrun.sketch's scheme) of the ok
-- latencies, so a chart column can show min / p50 / p95 / max however long
-- the run was.
--
-- Memory: a column is one table — ok, bad, min, max, lo and, in its array
-- part, the histogram's counts for the contiguous bucket range lo .. lo + #c - 1
-- (a few dozen for a column's latencies; zeros fill the gaps) — not a sketch
-- object with a hash of buckets: ~0.8 KB a column instead of ~1.4 KB (4 probes
-- of a 6 h run: 1.3 MB instead of 2.4, bench/RESULTS.md 2026-12-03).
--
--   local sr = series.new([ncols], [width])   sr:add(t, result, latency)
--   sr:columns() -> array of {t0, t1, ok, bad, min, p50, p95, max}
local sketch = require "upgrun.sketch"

local M = {}
local Series = {}
Series.__index = Series

local floor, move = math.floor, table.move
local SCHEME = sketch.scheme(0.05) -- 5 %: enough for a chart column
local TINY = sketch.TINY -- latencies at or below this count in the bucket of TINY

function M.new(ncols, width)
  return setmetatable({ ncols = ncols or 512, width = width or 0.05, cols = {} }, Series)
end

-- Adds `cnt` to histogram bucket k of column c (extending its range).
local function add_count(c, k, cnt)
  local lo = c.lo
  if not lo then
    c.lo, c[1] = k, cnt
    return
  end
  local j, w = k - lo + 1, #c
  if j < 1 then -- below the range: shift the counts up
    local sh = 1 - j
    move(c, 1, w, 1 + sh)
    for q = 2, sh do c[q] = 0 end
    c[1], c.lo = cnt, k
  elseif j > w then
    for q = w + 1, j - 1 do c[q] = 0 end
    c[j] = cnt
  else
    c[j] = c[j] + cnt
  end
end

local function merge_into(d, c)
  d.ok, d.bad = d.ok + c.ok, d.bad + c.bad
  if c.lo then
    if not d.min or c.min < d.min then d.min = c.min end
    if not d.max or c.max > d.max then d.max = c.max end
    local lo = c.lo - 1
    for j = 1, #c do
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
      if not c.min or latency < c.min then c.min = latency end
      if not c.max or latency > c.max then c.max = latency end
      add_count(c, sketch.index(SCHEME, latency > TINY and latency or TINY), 1)
    end
  elseif result == "fail" or result == "unknown" then
    c.bad = c.bad + 1
  end
end

-- The order statistics at ranks floor(q * (n - 1)) for ascending qs, read
-- back as the middle of their bucket (as upgrun.sketch does), within [min, max].
local function quantiles(c, qs)
  local w, n = #c, 0
  for j = 1, w do n = n + c[j] end
  local out, seen, j = {}, 0, 0
  for qi, q in ipairs(qs) do
    local rank = floor(q * (n - 1))
    while seen <= rank and j < w do
      j = j + 1
      seen = seen + c[j]
    end
    local v = sketch.value(SCHEME, c.lo + j - 1)
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
