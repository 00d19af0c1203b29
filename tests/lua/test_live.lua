-- test_live — upgrun.runner.live on its own: the status block drawn from a
-- run's state (real probe runs whose aggregates are fed samples, real
-- timeline), what each redraw writes (erase the previous block, draw the
-- new one), the fit to a small terminal, colour on and off, and the outage
-- lines from upgrun.probe_stats' outage callback. The terminal itself is
-- tests/integration/test_live_console.lua (tmux).
local T = require "testlib"
local Timeline = require "upgrun.timeline"
local probe_run = require "upgrun.probe_run"
local live = require "upgrun.runner.live"

-- A run with `np` probes and `ns` running steps; `out` collects what is written.
local function setup(np, ns, cols, rows, color)
  local tl = Timeline.new()
  local runs = {}
  for i = 1, np do
    local pr = probe_run.new({ name = "probe number " .. i, interval = 0.1, timeout = 1, max_in_flight = 1 }, tl)
    pr.loop = true -- running (the status shows its state, not "idle")
    runs[i] = pr
  end
  local steps, running = {}, {}
  for i = 1, ns do
    local st = { id = i, name = "step " .. i, path = "step " .. i, depth = 0, start = 0, active_children = 0 }
    steps[i], running[i] = st, st
  end
  local run = { s = { name = "sc" }, tl = tl, running_list = running, steps = steps, probing = { runs = runs },
                redact = function(_, s) return s end }
  local out = {}
  local v = live.new(run, { color = color, write = function(s) out[#out + 1] = s end,
                            size = function() return cols, rows end })
  return v, run, out
end

-- The lines of one block write (after the erase sequence).
local function block_lines(text)
  local ls = {}
  for l in text:gsub("^\r\27%[%d+A\27%[J", ""):gmatch("([^\n]*)\n") do ls[#ls + 1] = (l:gsub("\27%[K$", "")) end
  return ls
end

T.case("the block: header, running steps, probes; the next redraw erases it first", function()
  local v, run, out = setup(2, 1, 100, 30, false)
  local pr = run.probing.runs[1]
  pr.stats:add(1, { t = 0.1, result = "ok", latency = 0.012, stage = "upgrade" })
  v:start()
  local ls = block_lines(out[1])
  T.eq(#ls, 4, "header, 1 step, 2 probes")
  T.ok(ls[1]:find("^%-%- sc  [%d.]+ s"), ls[1])
  T.ok(ls[2]:find("^  > step 1  [%d.]+ s$"), ls[2])
  T.ok(ls[3]:find("^   probe probe number 1  UP  [%d.]+ req/s  last ok 12 ms$"), ls[3])
  T.ok(ls[4]:find("probe number 2  starting", 1, true), ls[4])
  v:redraw()
  T.eq(out[2]:sub(1, 8), "\r\27[4A\27[J", "moves up over the 4 lines drawn and clears")
  T.ok(not out[2]:find("\27%[[%d;]*m"), "no colour when off")
  v:line("stage upgrade")
  T.ok(out[3]:find("^\r\27%[4A\27%[Jstage upgrade\n%-%- sc"), "a line goes above the block, then the block")
  v:stop()
  T.eq(out[#out], "\r\27[4A\27[J", "stop erases the block")
  v:line("after")
  T.eq(out[#out], "after\n", "after stop: plain lines")
end)

T.case("a small terminal: every line cut to the width, the block fits the height", function()
  local v, _, out = setup(10, 8, 30, 8, true)
  v:start()
  v:stop()
  local ls = block_lines(out[1])
  T.eq(#ls, 7, "rows - 1 lines")
  local more = 0
  for _, l in ipairs(ls) do
    local plain = l:gsub("\27%[[%d;]*m", "")
    T.ok(utf8.len(plain) <= 29, "cut to 29 columns: " .. plain)
    if plain:find("... and", 1, true) then more = more + 1 end
  end
  T.eq(more, 1, "says there is more")
  T.ok(out[1]:find("\27[33m", 1, true), "colour when on")
end)

T.case("outage lines as the samples show the outage start and end, with the steps", function()
  local v, run, out = setup(1, 1, 100, 30, false)
  local pr = run.probing.runs[1]
  pr.stats.on_outage = function(kind, o, s) v:outage(pr.name, kind, o, s) end
  run.steps[1].start = 0.5
  v:start()
  pr.stats:add(1, { t = 1.0, result = "ok", latency = 0.01, stage = "u" })
  pr.stats:add(3, { t = 1.2, result = "ok", latency = 0.01, stage = "u" }) -- out of order: waits for 2
  T.ok(not table.concat(out):find("OUTAGE", 1, true), "nothing yet")
  pr.stats:add(2, { t = 1.1, result = "fail", err = "status", status = 503, message = "status 503",
                    stage = "u", step = "step 1" })
  local text = table.concat(out)
  T.ok(text:find("OUTAGE probe number 1 down at 1.100 s during step 1: status 503", 1, true), text)
  T.ok(text:find("OUTAGE END probe number 1 up again at 1.200 s: down 0.100 s ± 0.100 during step 1", 1, true),
       text)
  v:stop()
end)

return T.done()
