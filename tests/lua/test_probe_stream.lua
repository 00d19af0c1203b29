-- test_probe_stream.lua — the online aggregates a run keeps instead of its
-- samples: the log-bucket sketch (error <= 1 % on p50/p95/p99 against the
-- exact order statistics, mergeable), the fixed-size chart series, the
-- reorder buffer that feeds outages in send order (same outages as the batch
-- analysis whatever the completion order), the abort rule for samples in
-- flight, and probe error messages.
local T = require "testlib"
local sketch = require "upgrun.sketch"
local series = require "upgrun.series"
local outages = require "upgrun.outages"
local probe_stats = require "upgrun.probe_stats"
local probe = require "upgrun.probe"

-- A deterministic generator (tests must not depend on math.random's seed).
local function lcg(seed)
  local x = seed
  return function()
    x = (x * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
    return (x >> 11) / (1 << 52)
  end
end

local function exact(sorted, q) return sorted[math.floor(q * (#sorted - 1)) + 1] end

local function check_accuracy(name, values)
  local sk = sketch.new()
  for _, v in ipairs(values) do sk:add(v) end
  local sorted = {}
  for i, v in ipairs(values) do sorted[i] = v end
  table.sort(sorted)
  local st = sk:stats()
  T.eq(st.n, #values)
  T.eq(st.min, sorted[1])
  T.eq(st.max, sorted[#sorted])
  for _, q in ipairs { 0.5, 0.95, 0.99, 0.999, 0.01 } do
    local want, got = exact(sorted, q), sk:quantile(q)
    local err = math.abs(got - want) / want
    T.ok(err <= 0.01 + 1e-12, string.format("%s q%g: %g vs exact %g (%.3f %%)", name, q, got, want, err * 100))
  end
  return sk
end

T.case("sketch: p50/p95/p99 within 1 % of the exact order statistic", function()
  local r = lcg(7)
  local lognormal, uniform, bimodal = {}, {}, {}
  for i = 1, 50000 do
    -- Box-Muller: a log-normal latency around 2 ms
    local u1, u2 = r() + 1e-12, r()
    local z = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
    lognormal[i] = 0.002 * math.exp(0.6 * z)
    uniform[i] = 0.001 + r() * 0.009
    bimodal[i] = (r() < 0.9) and (0.001 + r() * 0.0005) or (1 + r() * 4)
  end
  check_accuracy("log-normal", lognormal)
  check_accuracy("uniform", uniform)
  check_accuracy("bimodal", bimodal)
end)

T.case("sketch: merging two sketches equals one sketch of both", function()
  local r = lcg(11)
  local a, b, both = sketch.new(), sketch.new(), sketch.new()
  for _ = 1, 5000 do local v = r() * 0.1 + 1e-4; a:add(v); both:add(v) end
  for _ = 1, 3000 do local v = r() * 2 + 1e-4; b:add(v); both:add(v) end
  a:merge(b)
  local sa, sb = a:stats(), both:stats()
  for _, k in ipairs { "n", "min", "max", "p50", "p95", "p99" } do T.eq(sa[k], sb[k], k) end
  T.near(sa.mean, sb.mean, 1e-12)
  T.eq(sketch.new():stats().n, 0)
end)

T.case("sketch: memory is per bucket, not per value", function()
  local sk = sketch.new()
  local r = lcg(3)
  for _ = 1, 200000 do sk:add(1e-4 + r() * 10) end
  local nb = 0
  for _ in pairs(sk.b) do nb = nb + 1 end
  T.ok(nb < 600, "buckets: " .. nb)
end)

T.case("series: a fixed number of columns whatever the run length", function()
  local sr = series.new(64, 0.01)
  for i = 0, 99999 do sr:add(i * 0.05, (i % 1000 == 0) and "fail" or "ok", 0.001 + (i % 7) * 0.001) end
  local cols = sr:columns()
  T.ok(#cols <= 64 and #cols >= 32, "columns: " .. #cols)
  local ok, bad = 0, 0
  for _, c in ipairs(cols) do
    ok, bad = ok + c.ok, bad + c.bad
    T.ok(c.min <= c.p50 and c.p50 <= c.p95 * 1.0001 and c.p95 <= c.max, "min <= p50 <= p95 <= max")
  end
  T.eq(ok + bad, 100000)
  T.eq(bad, 100)
  T.ok(cols[#cols].t1 >= 99999 * 0.05, "the last column covers the last sample")
end)

T.case("series: each column's p50 and p95 within 5 % of the exact order statistics, after merges", function()
  local sr = series.new(32, 0.01)
  local r = lcg(11)
  local raw = {}
  for i = 0, 19999 do
    -- latencies from 10 µs to ~30 s, log-uniform, in random order: a column's
    -- range grows both ways (its counts shift), then columns merge 6 times
    local t, x = i * 0.01, math.exp(math.log(1e-5) + r() * math.log(3e6))
    raw[#raw + 1] = { t = t, x = x }
    sr:add(t, "ok", x)
  end
  local cols = sr:columns()
  T.ok(#cols <= 32 and #cols >= 16, "columns: " .. #cols)
  local n = 0
  for _, c in ipairs(cols) do
    local xs = {}
    for _, s in ipairs(raw) do
      if s.t >= c.t0 - 1e-9 and s.t < c.t1 - 1e-9 then xs[#xs + 1] = s.x end
    end
    table.sort(xs)
    T.eq(c.ok, #xs, "column " .. c.t0 .. ": its samples")
    n = n + #xs
    T.eq(c.min, xs[1])
    T.eq(c.max, xs[#xs])
    for q, got in pairs { [0.5] = c.p50, [0.95] = c.p95 } do
      local want = xs[math.floor(q * (#xs - 1)) + 1]
      T.ok(math.abs(got - want) <= 0.05 * want * (1 + 1e-9),
           string.format("column %g p%d: %g, exact %g", c.t0, q * 100, got, want))
    end
  end
  T.eq(n, #raw, "every sample in a column")
end)

-- Samples from a pattern ("." ok, "x" fail, "?" unknown, "s" skipped), one per 0.1 s.
local function samples(pattern)
  local out = {}
  for i = 1, #pattern do
    local c = pattern:sub(i, i)
    out[i] = { t = (i - 1) * 0.1, latency = 0.01, stage = "s",
               result = ({ ["."] = "ok", x = "fail", ["?"] = "unknown", s = "skipped" })[c] }
  end
  return out
end

local function same_outages(a, b)
  T.eq(#a, #b, "number of outages")
  for i = 1, #a do
    for _, k in ipairs { "start", "end", "duration", "uncertainty", "samples", "fail", "unknown" } do
      T.near(a[i][k], b[i][k], 1e-9, "outage " .. i .. " " .. k)
    end
    T.eq(a[i].open, b[i].open)
  end
end

T.case("probe_stats: outages found online equal the batch analysis, whatever the completion order", function()
  local pat = "...xx?x....s..x..??....xxx"
  local want = outages.find(samples(pat))
  T.eq(#want, 4)
  local r = lcg(5)
  for _ = 1, 20 do
    local ss = samples(pat)
    local order = {}
    for i = 1, #ss do order[i] = i end
    -- complete out of order, but never more than 8 apart (max_in_flight)
    for i = 1, #order - 1 do
      local j = i + math.floor(r() * math.min(8, #order - i + 1))
      order[i], order[j] = order[j], order[i]
    end
    local st = probe_stats.new()
    for _, i in ipairs(order) do st:add(i, ss[i]) end
    same_outages(st:finish(), want)
    T.eq(st.counts.ok + st.counts.fail + st.counts.unknown + st.counts.skipped, #pat)
  end
end)

T.case("probe_stats: a sample cut by an abort extends an open outage to the abort", function()
  local ss = samples("....??")
  ss[5].t_end, ss[6].t_end = 3.0, 3.0
  local st = probe_stats.new()
  for i, s in ipairs(ss) do st:add(i, s) end
  local o = st:finish()
  T.eq(#o, 1)
  T.ok(o[1].open)
  T.near(o[1].duration, 3.0 - 0.4, 1e-9)
end)

T.case("probe_stats: latency per stage and ratios to the baseline", function()
  local st = probe_stats.new()
  for i = 1, 100 do st:add(i, { t = i, result = "ok", latency = 0.01, stage = "before" }) end
  for i = 101, 200 do st:add(i, { t = i, result = "ok", latency = 0.03, stage = "upgrade" }) end
  local by = st:latency_by_stage("before")
  T.near(by.before.p50, 0.01, 0.0001)
  T.near(by.upgrade.p95_ratio, 3, 0.06)
  T.eq(by.before.p50_ratio, nil)
  T.eq(st:latency().n, 200)
  T.eq(st:latency({ upgrade = true }).n, 100)
end)

T.case("probe_stats: steady_for counts the current run of ok answers in send order", function()
  local st = probe_stats.new()
  local ss = samples("xx.....")
  ss[2].message = "connection refused"
  for i, s in ipairs(ss) do st:add(i, s) end
  local d = st:steady_for()
  T.near(d, 0.4, 1e-9)
  st:add(8, { t = 0.7, result = "fail", message = "503" })
  local d2, err = st:steady_for()
  T.eq(d2, nil)
  T.eq(err, "503")
end)

T.case("probe: an error table gives its message, never table: 0x...", function()
  T.eq(probe.message({ message = "boom", kind = "x" }), "boom")
  T.eq(probe.message({ kind = "refused" }), "refused")
  T.eq(probe.message(setmetatable({}, { __tostring = function() return "custom" end })), "custom")
  T.eq(probe.message({ code = 5 }), "{code=5}")
  T.ok(not probe.message({}):find("table: 0x"), "an empty table")
  local _, _, _, msg = probe.classify(nil, { detail = "no route" })
  T.eq(msg, "{detail=no route}")
end)

return T.done()
