-- live_bench — CPU of one redraw of the live console's status block
-- (upgrun.runner.live) for PROBES probes and STEPS running steps, written to
-- a discarding sink; at 4 redraws a second, the console costs 4x that per
-- second of run.   upgrun bench/live_bench.lua [PROBES] [STEPS] [N]
local Timeline = require "upgrun.timeline"
local probe_run = require "upgrun.probe_run"
local live = require "upgrun.runner.live"

local np, ns, n = tonumber(arg[1]) or 8, tonumber(arg[2]) or 10, tonumber(arg[3]) or 20000
local tl = Timeline.new()
local runs, steps = {}, {}
for i = 1, np do
  local pr = probe_run.new({ name = "probe " .. i, interval = 0.05, timeout = 1, max_in_flight = 2 }, tl)
  pr.loop = true
  pr.stats:add(1, { t = 0.1, result = i % 3 == 0 and "fail" or "ok", latency = 0.01, stage = "u", err = "status",
                    message = "status 503" })
  runs[i] = pr
end
for i = 1, ns do steps[i] = { id = i, name = "step number " .. i, path = "s" .. i, depth = i % 3, start = 0 } end
local run = { s = { name = "bench" }, tl = tl, running_list = steps, steps = steps, probing = { runs = runs } }
local bytes = 0
local v = live.new(run, { color = true, write = function(s) bytes = bytes + #s end,
                          size = function() return 120, 40 end })
v.started = true
local c0 = os.clock()
for _ = 1, n do v:redraw() end
local per = (os.clock() - c0) / n
print(string.format("%d probes, %d steps: %.1f us CPU per redraw, %d bytes per redraw; at 4 Hz %.3f %% of a core",
                    np, ns, per * 1e6, bytes // n, per * 4 * 100))
