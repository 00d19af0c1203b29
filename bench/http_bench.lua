-- http_bench.lua — upgrun.http load and probe-cost measurements, driven by
-- bench/http_bench.sh.
--   upgrun http_bench.lua rate URL SECONDS TASKS   -> "rate TASKS REQ_PER_S CPU_MS_PER_REQ ERRORS"
--   upgrun http_bench.lua probe URL SECONDS HZ     -> "probe HZ SAMPLES CPU_PCT CPU_MS_PER_SAMPLE MAX_RSS_KB LATE"
-- "rate": TASKS tasks each loop request-after-request for SECONDS.
-- "probe": an upgrun.probe firing every 1/HZ s (open loop: each sample in its
-- own task, so a slow answer never delays the next send), CPU measured with
-- os.clock() (process CPU time) over the whole run.
local http = require "upgrun.http"
local task = require "upgrun.task"
local time = require "upgrun.time"

local mode, url, secs, n = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
assert(mode and url and secs and n, "usage: http_bench.lua rate|probe URL SECONDS TASKS|HZ")

local function max_rss_kb()
  local f = io.open("/proc/self/status")
  if not f then return -1 end
  local s = f:read("a"); f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) or -1
end

if mode == "rate" then
  assert(http.request { url = url, timeout = 5 }) -- warm: connection + DNS
  local count, errors = 0, 0
  local stop = time.mono() + secs
  local cpu0, t0 = os.clock(), time.mono()
  local tasks = {}
  for i = 1, n do
    tasks[i] = task.spawn(function()
      while time.mono() < stop do
        local r = http.request { url = url, timeout = 5 }
        if r and r.status == 200 then count = count + 1 else errors = errors + 1 end
      end
    end)
  end
  for i = 1, n do assert(tasks[i]:join(secs + 30)) end
  local wall, cpu = time.mono() - t0, os.clock() - cpu0
  print(string.format("rate %d %.0f %.4f %d", n, count / wall, cpu * 1000 / count, errors))
elseif mode == "probe" then
  -- the probe the scenarios use (upgrun.probe, shaped like the Nova scenario's
  -- version-document probe), not a hand-rolled loop
  local probe = require "upgrun.probe"
  local timeline = require "upgrun.timeline"
  assert(http.request { url = url, timeout = 5 })
  local probe_run = require "upgrun.probe_run"
  local p = probe.new { name = "bench", rate = n, timeout = 2, max_in_flight = 8, expect = { 200 },
                        fn = function() return http.request { url = url, timeout = 2 } end }
  local tl = timeline.new()
  -- the samples are not kept by the probe: count them as they complete
  local count, fails, late, last_t = 0, 0, 0, nil
  local pr = probe_run.new(p, tl, { sink = function(smp)
    count = count + 1
    if smp.result ~= "ok" then fails = fails + 1 end
    -- late: sent more than 1.5 intervals after the sample before it
    if last_t and smp.t - last_t > 1.5 / n then late = late + 1 end
    last_t = smp.t
  end })
  local cpu0, t0 = os.clock(), time.mono()
  pr:start({}, "bench")
  time.sleep(secs)
  pr:stop()
  pr:drain(5)
  local wall, cpu = time.mono() - t0, os.clock() - cpu0
  print(string.format("probe %d %d %.2f %.4f %d %d %d", n, count, cpu / wall * 100,
    cpu * 1000 / count, max_rss_kb(), late, fails))
else
  error("unknown mode " .. tostring(mode))
end
