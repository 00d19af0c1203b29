-- upgrun.sketch — a mergeable log-bucket histogram of positive numbers (the
-- DDSketch scheme): a value x goes to bucket ceil(log(x) / log(gamma)), with
-- gamma = (1 + a) / (1 - a), and a quantile is read back as the middle of its
-- bucket, so every quantile is within a relative error `a` (default 1 %) of
-- the true order statistic, whatever the number of values. Memory is one
-- counter per occupied bucket (at most ~1,000 for 1 µs..1,000 s at 1 %).
-- n, sum, min and max are exact. Two sketches with the same `a` merge by
-- adding their counters (per stage -> per probe).
--
--   local sk = sketch.new([a])   sk:add(x)   sk:merge(other)
--   sk:quantile(q) -> value (q in [0, 1]; nil when empty)
--   sk:stats() -> {n, min, max, mean, p50, p95, p99} ({n = 0} when empty)
-- The bucket scheme alone, for a histogram kept in another shape (upgrun.series):
--   local sc = sketch.scheme(a)   sketch.index(sc, x) -> i   sketch.value(sc, i) -> x
local M = {}
local Sketch = {}
Sketch.__index = Sketch
M.Sketch = Sketch

local log, ceil, floor = math.log, math.ceil, math.floor
local TINY = 1e-9 -- values at or below this count in the zero bucket
M.TINY = TINY

function M.scheme(a)
  local gamma = (1 + a) / (1 - a)
  return { a = a, gamma = gamma, inv_log_gamma = 1 / log(gamma) }
end

-- The bucket of x > TINY, and the value read back for bucket i (the point
-- whose relative error to both ends of the bucket is `a`).
function M.index(sc, x) return ceil(log(x) * sc.inv_log_gamma) end
function M.value(sc, i) return 2 * sc.gamma ^ i / (sc.gamma + 1) end

function M.new(a)
  local sk = M.scheme(a or 0.01)
  sk.n, sk.sum, sk.zero, sk.b = 0, 0, 0, {}
  return setmetatable(sk, Sketch)
end

function Sketch:add(x)
  self.n = self.n + 1
  self.sum = self.sum + x
  if not self.min or x < self.min then self.min = x end
  if not self.max or x > self.max then self.max = x end
  if x <= TINY then
    self.zero = self.zero + 1
  else
    local i = M.index(self, x)
    local b = self.b
    b[i] = (b[i] or 0) + 1
  end
end

function Sketch:merge(o)
  if o.n == 0 then return self end
  assert(o.a == self.a, "sketch:merge: different accuracies")
  self.n = self.n + o.n
  self.sum = self.sum + o.sum
  if not self.min or o.min < self.min then self.min = o.min end
  if not self.max or o.max > self.max then self.max = o.max end
  self.zero = self.zero + o.zero
  local b = self.b
  for i, c in pairs(o.b) do b[i] = (b[i] or 0) + c end
  return self
end


-- The sorted occupied bucket indexes (O(buckets), not O(values)).
local function keys(b)
  local ks = {}
  for i in pairs(b) do ks[#ks + 1] = i end
  table.sort(ks)
  return ks
end

-- Quantiles for several q at once (ascending qs); returns an array of values.
function Sketch:quantiles(qs)
  local out = {}
  if self.n == 0 then return out end
  local ks = keys(self.b)
  local seen = self.zero
  local k = 0
  for qi, q in ipairs(qs) do
    local rank = floor(q * (self.n - 1)) -- 0-based order statistic
    local v
    if rank < self.zero then
      v = self.min
    else
      while seen <= rank and k < #ks do
        k = k + 1
        seen = seen + self.b[ks[k]]
      end
      v = M.value(self, ks[k])
    end
    if v < self.min then v = self.min end
    if v > self.max then v = self.max end
    out[qi] = v
  end
  return out
end

function Sketch:quantile(q) return self:quantiles({ q })[1] end

local QS = { 0.5, 0.95, 0.99 }

function Sketch:stats()
  if self.n == 0 then return { n = 0 } end
  local q = self:quantiles(QS)
  return { n = self.n, min = self.min, max = self.max, mean = self.sum / self.n, p50 = q[1], p95 = q[2], p99 = q[3] }
end

return M
