-- probe_scenario.lua — a scenario run on the real path (s:run: probes,
-- samples.jsonl, online aggregates, reports) for the probe benchmarks, driven
-- by bench/probe_bench.sh:
--   upgrun probe_scenario.lua URL SECONDS PROBES HZ OUTDIR
-- runs one stage of SECONDS with PROBES http probes at HZ each against URL,
-- records VmRSS every 10 s, and prints one line
--   "run SECONDS PROBES HZ SAMPLES CPU_S RSS_KB_SERIES(comma separated) ANALYSIS_MS STAGE_CPU_S"
-- where CPU_S is the process CPU time (os.clock: user+sys) of the whole
-- invocation, start-up and reports included, ANALYSIS_MS the time of the
-- end-of-run analysis and report writing, and STAGE_CPU_S the CPU time of the
-- stage alone (the probes run only then: STAGE_CPU_S / SAMPLES is the cost
-- per sample without start-up and reports).
local scenario = require "upgrun.scenario"
local time = require "upgrun.time"

local url, secs, nprobes, hz, out = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4]), arg[5]
assert(url and secs and nprobes and hz and out, "usage: probe_scenario.lua URL SECONDS PROBES HZ OUTDIR")

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local s = scenario.new { name = "probe_bench", steady = { settle = 0 } }
for i = 1, nprobes do
  s:probe { name = "api" .. i, rate = hz, timeout = 2, http = { url = url, expect = { 200 } } }
end
local rss = {}
local stage_cpu
s:stage("upgrade", function(ctx)
  ctx:step("wait", function()
    local c0 = os.clock()
    local t0 = time.mono()
    rss[#rss + 1] = rss_kb()
    while true do
      local left = secs - (time.mono() - t0)
      if left < 0.01 then break end
      time.sleep(math.min(10, left))
      rss[#rss + 1] = rss_kb()
    end
    stage_cpu = os.clock() - c0
  end)
end)
-- time the end of the run: from the end of the last step to the return
local t_end
local report = require "upgrun.report"
local analyse = report.analyse
report.analyse = function(run) t_end = time.mono(); return analyse(run) end
local code = s:run({ "-o", out, "-q" }, "probe_bench")
local analysis_ms = (time.mono() - t_end) * 1000
local n = 0
for _ in io.lines(out .. "/samples.jsonl") do n = n + 1 end
print(string.format("run %g %d %g %d %.3f %s %.1f %.4f", secs, nprobes, hz, n, os.clock(), table.concat(rss, ","),
  analysis_ms, stage_cpu))
os.exit(code == 0 and 0 or 1)
