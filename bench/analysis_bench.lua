-- analysis_bench.lua — the end-of-run analysis cost against the run length:
--   upgrun analysis_bench.lua SAMPLES_PER_PROBE [PROBES]
-- builds a real run (scenario, run object, probes' online aggregates) whose
-- PROBES (default 4) probes each received SAMPLES_PER_PROBE samples (1 % of
-- them failing in 20 outages, over 30 steps), then times report.analyse plus
-- report.write_all (report.json, junit.xml, report.html). Prints
--   "analysis SAMPLES_TOTAL FEED_S ANALYSE_MS WRITE_MS"
-- FEED_S is the time the samples took to go through the aggregates (paid
-- during the run, one sample at a time), not part of the analysis.
local scenario = require "upgrun.scenario"
local probing = require "upgrun.probing"
local ledger = require "upgrun.ledger"
local Timeline = require "upgrun.timeline"
local report = require "upgrun.report"
local time = require "upgrun.time"

local per, nprobes = tonumber(arg[1]), tonumber(arg[2] or "4")
assert(per, "usage: analysis_bench.lua SAMPLES_PER_PROBE [PROBES]")

local s = scenario.new { name = "analysis_bench", steady = { settle = 0 } }
for i = 1, nprobes do s:probe { name = "api" .. i, rate = 20, fn = function() return true end } end
s:stage("upgrade", function() end)
local opts = { sets = {}, hooks = {}, params = { steady_settle = 0, steady_deadline = 120 } }
local run = s:new_run(opts, "analysis_bench.lua")
run.tl = Timeline.new()
run.ledger = ledger.new(nil)
run.out = os.tmpname()
os.remove(run.out)
os.execute("mkdir -p " .. run.out)
run.probing = probing.new(s.probes, run.tl)
local dur = per * 0.05 -- 20 Hz
local nsteps = 30
for i = 1, nsteps do
  local st = { id = i, name = "step " .. i, path = "step " .. i, stage = "upgrade", depth = 0,
               start = (i - 1) * dur / nsteps, result = "passed" }
  st["end"] = i * dur / nsteps
  st.duration = st["end"] - st.start
  run.steps[i] = st
end
run.stage_results[1] = { name = "upgrade", result = "passed", start = 0, ["end"] = dur, duration = dur }
local t0 = time.mono()
local every = per // 20
for _, pr in ipairs(run.probing.runs) do
  for k = 1, per do
    local r = k % every
    local bad = r >= 1 and r <= every // 100 -- 20 outages, 1 % of the samples
    pr.stats:add(k, { t = k * 0.05, stage = k < per // 10 and "before" or "upgrade",
                      result = bad and "fail" or "ok", latency = 0.001 + (k % 97) * 1e-5, err = bad and "http" or nil })
  end
  pr.sent = per
  pr.windows[1] = { start = 0, ["end"] = dur }
end
local feed = time.mono() - t0
run.run_end = dur
run.verdict, run.exit_code = "passed", 0
collectgarbage("collect") -- the garbage of the feeding is not the analysis's
local t1 = time.mono()
report.analyse(run)
local t2 = time.mono()
local failed = report.write_all(run)
local t3 = time.mono()
assert(#failed == 0, table.concat(failed, "; "))
assert(#run.probe_reports[1].outages == 20, "20 outages per probe: " .. #run.probe_reports[1].outages)
os.execute("rm -rf " .. run.out)
print(string.format("analysis %d %.2f %.1f %.1f", per * nprobes, feed, (t2 - t1) * 1000, (t3 - t2) * 1000))
