-- http_bench.lua — upgrun.http load and probe-cost measurements, driven by
-- bench/http_bench.sh.
--   upgrun http_bench.lua rate URL SECONDS TASKS   -> "rate TASKS REQ_PER_S CPU_MS_PER_REQ ERRORS"
--   upgrun http_bench.lua probe URL SECONDS HZ     -> "probe HZ SAMPLES CPU_PCT CPU_MS_PER_SAMPLE MAX_RSS_KB LATE"
-- "rate": TASKS tasks each loop request-after-request for SECONDS.
-- "probe": one probe firing every 1/HZ s (open loop: each sample in its own
-- task, so a slow answer never delays the next send), CPU measured with
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
  assert(http.request { url = url, timeout = 5 })
  local interval = 1 / n
  local samples, fails, late = 0, 0, 0
  local inflight = {}
  local cpu0, t0 = os.clock(), time.mono()
  local next_t = t0
  while next_t < t0 + secs do
    local now = time.mono()
    if now < next_t then time.sleep(next_t - now) end
    if time.mono() - next_t > interval then late = late + 1 end
    samples = samples + 1
    inflight[#inflight + 1] = task.spawn(function()
      local r = http.request { url = url, timeout = 2 }
      if not (r and r.status == 200) then fails = fails + 1 end
    end)
    if #inflight > 64 then -- reap finished sample tasks
      local keep = {}
      for _, t in ipairs(inflight) do if t:status() ~= "done" then keep[#keep + 1] = t end end
      inflight = keep
    end
    next_t = next_t + interval
  end
  for _, t in ipairs(inflight) do t:join(5) end
  local wall, cpu = time.mono() - t0, os.clock() - cpu0
  print(string.format("probe %d %d %.2f %.4f %d %d %d", n, samples, cpu / wall * 100,
    cpu * 1000 / samples, max_rss_kb(), late, fails))
else
  error("unknown mode " .. tostring(mode))
end
