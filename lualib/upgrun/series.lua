-- upgrun.series — a probe's time series in fixed memory, for the report's
-- latency chart: at most `ncols` time buckets; when a sample falls past the
-- last one, neighbouring buckets are merged in pairs and the bucket width
-- doubles. Each bucket keeps the count of ok and of failed/unknown samples
-- and a coarse sketch (5 %) of the ok latencies, so a chart column can show
-- min / p50 / p95 / max however long the run was.
--
--   local sr = series.new([ncols], [width])   sr:add(t, result, latency)
--   sr:columns() -> array of {t0, t1, ok, bad, min, p50, p95, max}
local sketch = require "upgrun.sketch"

local M = {}
local Series = {}
Series.__index = Series

local floor = math.floor
local COL_ACCURACY = 0.05

function M.new(ncols, width)
  return setmetatable({ ncols = ncols or 512, width = width or 0.05, cols = {} }, Series)
end

local function merge_into(dst, c)
  dst.ok = dst.ok + c.ok
  dst.bad = dst.bad + c.bad
  if c.sk then
    if dst.sk then dst.sk:merge(c.sk) else dst.sk = c.sk end
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
      local sk = c.sk
      if not sk then sk = sketch.new(COL_ACCURACY); c.sk = sk end
      sk:add(latency)
    end
  elseif result == "fail" or result == "unknown" then
    c.bad = c.bad + 1
  end
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
    if c.sk and c.sk.n > 0 then
      local q = c.sk:quantiles(QS)
      col.min, col.p50, col.p95, col.max = c.sk.min, q[1], q[2], c.sk.max
    end
    out[#out + 1] = col
  end
  return out
end

return M
