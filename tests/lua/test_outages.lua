-- test_outages — the pure outage/percentile/budget functions of
-- upgrun.outages, and the probe result classification of upgrun.probe.
local T = require "testlib"
local outages = require "upgrun.outages"
local probe = require "upgrun.probe"

-- Samples every `gap` s from 0, with the given results ("." ok, "x" fail, "?" unknown, "s" skipped).
local function samples(pattern, gap, stage)
  local out = {}
  for i = 1, #pattern do
    local c = pattern:sub(i, i)
    local r = ({ ["."] = "ok", x = "fail", ["?"] = "unknown", s = "skipped" })[c]
    out[#out + 1] = { t = (i - 1) * gap, result = r, latency = 0.01, stage = stage }
  end
  return out
end

T.case("no failures, no outage", function()
  T.eq(#outages.find(samples("..........", 0.1)), 0)
  T.eq(#outages.find({}), 0)
end)

T.case("an outage runs from the first failure to the first success after it", function()
  local o = outages.find(samples("...xx?x....", 0.1))
  T.eq(#o, 1)
  T.near(o[1].start, 0.3, 1e-9)
  T.near(o[1]["end"], 0.7, 1e-9)
  T.near(o[1].duration, 0.4, 1e-9)
  T.near(o[1].uncertainty, 0.1, 1e-9)
  T.eq(o[1].samples, 4); T.eq(o[1].fail, 3); T.eq(o[1].unknown, 1)
  T.eq(o[1].open, nil)
end)

T.case("samples are ordered by send time, not by arrival", function()
  local s = samples("..xx...", 0.1)
  local shuffled = { s[5], s[3], s[1], s[7], s[4], s[2], s[6] }
  local o = outages.find(shuffled)
  T.eq(#o, 1); T.near(o[1].start, 0.2, 1e-9); T.near(o[1]["end"], 0.4, 1e-9)
end)

T.case("two outages, one at the very start and one still open at the end", function()
  local o = outages.find(samples("xx...x..xx", 0.1))
  T.eq(#o, 3)
  T.near(o[1].start, 0, 1e-9); T.eq(o[1].start_uncertainty, 0)
  T.near(o[2].duration, 0.1, 1e-9)
  T.eq(o[3].open, true); T.near(o[3].start, 0.8, 1e-9); T.near(o[3]["end"], 0.9, 1e-9)
end)

T.case("skipped samples are ignored; the gap they leave is the uncertainty", function()
  local o = outages.find(samples("..x??sss.", 0.1))
  T.eq(#o, 1)
  T.near(o[1].start, 0.2, 1e-9)
  T.near(o[1]["end"], 0.8, 1e-9)
  T.near(o[1].end_uncertainty, 0.4, 1e-9)
  T.near(o[1].uncertainty, 0.4, 1e-9)
end)

T.case("downtime sums outages; union merges overlapping windows of several probes", function()
  local o = outages.find(samples("..xx..xxx..", 0.1))
  local total, longest = outages.downtime(o)
  T.near(total, 0.2 + 0.3, 1e-9); T.near(longest, 0.3, 1e-9)
  local u = outages.union { { start = 1, ["end"] = 2 }, { start = 1.5, ["end"] = 3 }, { start = 4, ["end"] = 4.5 } }
  T.eq(#u, 2); T.eq(u[1].start, 1); T.eq(u[1]["end"], 3); T.eq(u[2].duration, 0.5)
end)

T.case("outages name the steps running during them; downtime per step", function()
  local steps = {
    { id = 1, path = "a", start = 0, ["end"] = 1 },
    { id = 2, path = "b", start = 1, ["end"] = 2 },
    { id = 3, path = "b / inner", parent = 2, start = 1.2, ["end"] = 1.4 },
    { id = 4, path = "c", start = 2 }, -- still running
  }
  local during = outages.steps_during(1.1, 1.3, steps)
  T.eq(#during, 2); T.eq(during[1].path, "b"); T.eq(during[2].path, "b / inner")
  T.eq(#outages.steps_during(1.0, 1.05, steps), 1, "a step that ended when the outage began does not count")
  T.eq(outages.steps_during(5, 6, steps)[1].path, "c")
  local per = outages.downtime_per_step({ { start = 0.5, ["end"] = 1.3 }, { start = 3, ["end"] = 3.5 } }, steps, 4)
  T.near(per[1], 0.5, 1e-9); T.near(per[2], 0.3, 1e-9); T.near(per[3], 0.1, 1e-9); T.near(per[4], 0.5, 1e-9)
end)

T.case("the worst latency ratio over the non-baseline stages", function()
  local by = { before = { n = 20, p95 = 0.010 }, upgrade = { n = 20, p95 = 0.030, p95_ratio = 3 },
               after = { n = 20, p95 = 0.012, p95_ratio = 1.2 } }
  local worst, at = outages.worst_ratio(by, "p95")
  T.near(worst, 3, 1e-9); T.eq(at, "upgrade")
  T.eq(outages.worst_ratio({ before = { n = 20, p95 = 0.01 } }, "p95"), nil)
end)

T.case("budgets pass, fail, or are skipped when they cannot be measured", function()
  local r = outages.evaluate_budget({ max_downtime = 10, max_outage = 5, max_p95_degradation = 3.0 },
                                    { downtime = 12, longest = 4, p95_ratio = 2.5 })
  T.eq(#r, 3)
  T.eq(r[1].key, "max_downtime"); T.eq(r[1].status, "fail"); T.ok(r[1].message:find("12.000s > budget 10s", 1, true))
  T.eq(r[2].status, "pass"); T.eq(r[3].status, "pass")
  r = outages.evaluate_budget({ max_p95_degradation = 2 }, { downtime = 0, longest = 0 })
  T.eq(r[1].status, "skipped")
  T.eq(#outages.evaluate_budget(nil, { downtime = 1 }), 0)
end)

T.case("during: the innermost steps, then the hooks that ran (a hook runs between steps)", function()
  local steps = { { id = 1, path = "4. controllers", start = 10, ["end"] = 30 },
                  { id = 2, parent = 1, path = "4. controllers / restart a", start = 11, ["end"] = 20 },
                  { id = 3, path = "5. computes", start = 40 } }
  local hooks = { { name = "before", step = "4. controllers", start = 5, ["end"] = 9.5 },
                  { name = "after", step = "4. controllers", start = 30, ["end"] = 39 } }
  T.eq(table.concat(outages.during(6, 8, steps, hooks), "; "), "hook before (of 4. controllers)")
  T.eq(table.concat(outages.during(8, 12, steps, hooks), "; "),
    "4. controllers / restart a; hook before (of 4. controllers)")
  T.eq(table.concat(outages.during(25, 45, steps, hooks), "; "),
    "4. controllers; 5. computes; hook after (of 4. controllers)")
  T.eq(#outages.during(8, 12, steps), 1, "without hooks: the steps alone")
end)

T.case("probe results: 401 is never ok, 5xx/4xx fail, timeouts are unknown", function()
  local function c(res, err, expect)
    local set
    if expect then set = {}; for _, v in ipairs(expect) do set[v] = true end end
    return (probe.classify(res, err, set))
  end
  T.eq(c({ status = 200 }), "ok")
  T.eq(c({ status = 401 }, nil, { 401 }), "fail")
  T.eq(c({ status = 503 }), "fail")
  T.eq(c({ status = 404 }), "fail")
  T.eq(c({ status = 404 }, nil, { 404 }), "ok")
  T.eq(c({ status = 200 }, nil, { 204 }), "fail")
  T.eq(c(nil, { kind = "timeout" }), "unknown")
  T.eq(c(nil, { kind = "connect" }), "fail")
  T.eq(c(nil, { kind = "closed" }), "fail")
  T.eq(c(true), "ok")
  T.eq(c(false), "fail")
  T.eq(c({ 1, 2, 3 }), "ok", "a list returned by a client call is ok")
end)

return T.done()
