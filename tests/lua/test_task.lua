-- test_task — the scheduler: spawn/join/cancel, with_timeout, yields from
-- nested Lua calls and pcall, errors reported, timers keep their schedule
-- while other tasks sleep.
local T = require "testlib"
local task = require "upgrun.task"
local time = require "upgrun.time"

T.case("spawn and join returns the results", function()
  local t = task.spawn(function(a, b) time.sleep(0.01); return a + b, "x" end, 2, 3)
  local ok, sum, x = t:join(1)
  T.eq(ok, true); T.eq(sum, 5); T.eq(x, "x")
  T.eq(t:status(), "done")
  ok, sum = t:join() -- joining a finished task again
  T.eq(ok, true)
  T.eq(sum, 5)
end)

T.case("spawn_unwatched: a task without the count hook, even when spawned from a watched one", function()
  local function hook_count() local _, _, count = debug.gethook(); return count end
  local watched = task.spawn(function()
    local inner = task.spawn_unwatched("inner", function(a) time.sleep(0.01); return a * 2, hook_count() end, 21)
    return hook_count(), inner:join(1)
  end)
  local ok, outer_count, iok, v, inner_count = watched:join(2)
  T.eq(ok, true)
  T.ok(math.type(outer_count) == "integer" and outer_count > 0, "a watched task has the count hook")
  T.eq(iok, true); T.eq(v, 42)
  T.eq(inner_count, nil, "no hook in the unwatched task, though its creator had one")
  local u = task.spawn_unwatched("named", function() end)
  T.eq(u.name, "named")
  T.raises("string expected", task.spawn_unwatched, function() end)
end)

T.case("join times out without killing the task", function()
  local t = task.spawn(function() time.sleep(0.2); return 1 end)
  T.err("timeout", t:join(0.02))
  local ok, v = t:join(1)
  T.ok(ok); T.eq(v, 1)
end)

T.case("a failing task gives nil, err with a traceback", function()
  local t = task.spawn(function() error("boom") end)
  local ok, err = t:join(1)
  T.eq(ok, nil); T.eq(err.kind, "error")
  T.ok(err.message:find("boom", 1, true)); T.ok(err.traceback)
  T.eq(t:status(), "failed")
end)

T.case("cancel stops a sleeping task and its sleep", function()
  local reached = false
  local t = task.spawn(function() time.sleep(5); reached = true end)
  T.wait_until(function() return t:status() == "waiting" end, 1, "the task to sleep")
  local t0 = time.mono()
  t:cancel()
  local ok, err = t:join(1)
  T.eq(ok, nil); T.eq(err.kind, "cancelled")
  T.ok(time.mono() - t0 < 0.5 * T.slack)
  T.eq(reached, false); T.eq(t:status(), "cancelled")
end)

T.case("a cancelled task that catches the cancellation raises at its next wait", function()
  local caught = 0
  local t = task.spawn(function()
    while true do
      local ok = pcall(time.sleep, 1)
      if not ok then caught = caught + 1; if caught > 3 then return "gave up" end end
    end
  end)
  T.wait_until(function() return t:status() == "waiting" end, 1, "the task to sleep")
  t:cancel()
  local ok = t:join(1)
  T.ok(ok, "the task ended")
  T.ok(caught >= 1)
end)

-- A "probe": a task ticking every 10 ms, counting its ticks.
local function ticker()
  local n = { ticks = 0 }
  n.task = task.spawn("ticker", function() while true do time.sleep(0.01); n.ticks = n.ticks + 1 end end)
  return n
end

T.case("cancellation is final: every later wait raises at once, queueing nothing", function()
  local results = {}
  local t = task.spawn(function()
    local ok, e = pcall(time.sleep, 5)
    results[1] = not ok and e.kind
    local t0 = time.mono()
    for i = 2, 5 do
      ok, e = pcall(time.sleep, 5)
      results[i] = not ok and e.kind
    end
    results.took = time.mono() - t0
    return "unwound"
  end)
  T.wait_until(function() return t:status() == "waiting" end, 1, "the task to sleep")
  t:cancel()
  local ok, v = t:join(1)
  T.eq(ok, true); T.eq(v, "unwound")
  for i = 1, 5 do T.eq(results[i], "cancelled", "wait " .. i) end
  T.ok(results.took < 0.05, string.format("later waits took %.3f s", results.took))
end)

T.case("a cancelled task that loops on pcall(time.sleep) is abandoned; probes go on; memory stays flat", function()
  local probe = ticker()
  collectgarbage(); collectgarbage()
  local kb0 = collectgarbage("count")
  local t = task.spawn("stubborn", function() while true do pcall(time.sleep, 1) end end)
  T.wait_until(function() return t:status() == "waiting" end, 1, "the task to sleep")
  local ticks0, t0 = probe.ticks, time.mono()
  t:cancel()
  local ok, err = t:join(2)
  T.eq(ok, nil); T.eq(err.kind, "cancelled"); T.eq(err.abandoned, true)
  T.ok(tostring(err.traceback):find("test_task.lua", 1, true), err.traceback)
  T.ok(time.mono() - t0 < 0.5 * T.slack, string.format("abandoned after %.3f s", time.mono() - t0))
  T.eq(t:status(), "cancelled")
  T.wait_until(function() return probe.ticks >= ticks0 + 5 end, 2, "the ticker to go on")
  probe.task:cancel()
  collectgarbage(); collectgarbage()
  T.ok(collectgarbage("count") - kb0 < 2048, string.format("Lua heap grew by %.0f KB", collectgarbage("count") - kb0))
end)

T.case("a step body `repeat pcall(...) until ok` under with_timeout ends at its timeout", function()
  local probe = ticker()
  local t0 = time.mono()
  local child
  local r, err = task.with_timeout(0.2, function()
    child = task.current()
    local ok
    repeat ok = pcall(time.sleep, 0.05) until ok and false
  end)
  T.eq(r, nil); T.eq(err.kind, "timeout")
  T.near(time.mono() - t0, 0.2, 0.15)
  local ok, cerr = child:join(1)
  T.eq(ok, nil); T.eq(cerr.kind, "cancelled"); T.eq(cerr.abandoned, true)
  local ticks0 = probe.ticks
  T.wait_until(function() return probe.ticks >= ticks0 + 3 end, 2, "the ticker to go on")
  probe.task:cancel()
end)

T.case("a cancelled task that keeps computing without waiting is abandoned at the spin limit", function()
  -- the limit is UPGRUN_SPIN_LIMIT, 60 s by default: checked in a child upgrun with 0.3 s
  local proc = require "upgrun.proc"
  local code = [[
    local task, time = require "upgrun.task", require "upgrun.time"
    local t = task.spawn(function()
      pcall(time.sleep, 5)
      local x = 0
      while true do pcall(function() for _ = 1, 1e6 do x = x + 1 end end) end
    end)
    time.sleep(0.05); t:cancel()
    local ok, err = t:join(5)
    print(ok, err.kind, err.abandoned)
  ]]
  local r = assert(proc.run({ os.getenv("UPGRUN_BIN") or "upgrun", "-e", code },
    { env_add = { UPGRUN_SPIN_LIMIT = "0.3" }, timeout = 10 * T.slack }))
  T.eq(r.stdout, "nil\tcancelled\ttrue\n", r.stderr)
  T.ok(r.stderr:find("abandoned", 1, true), r.stderr)
end)

T.case("with_timeout returns results or a timeout error", function()
  local a, b = task.with_timeout(1, function(x) time.sleep(0.01); return x, 2 end, 1)
  T.eq(a, 1); T.eq(b, 2)
  local t0 = time.mono()
  T.err("timeout", task.with_timeout(0.05, function() time.sleep(3) end))
  T.near(time.mono() - t0, 0.05, 0.04)
  T.raises("inner failure", task.with_timeout, 1, function() error("inner failure") end)
end)

T.case("infinite and NaN durations: sleep(math.huge) waits until cancelled, NaN is refused", function()
  local t = task.spawn(function() time.sleep(math.huge) end)
  T.wait_until(function() return t:status() == "waiting" end, 1, "the task to sleep")
  t:cancel()
  T.err("cancelled", t:join(1))
  T.eq(task.with_timeout(math.huge, function() return 7 end), 7)
  local waiter = task.spawn(function() time.sleep(0.01); return "late" end)
  local ok, v = waiter:join(math.huge)
  T.eq(ok, true); T.eq(v, "late")
  T.raises("must be >= 0", time.sleep, 0 / 0)
end)

T.case("waiting inside the script's own coroutine is refused clearly", function()
  local co = coroutine.wrap(function() return pcall(time.sleep, 0.01) end)
  local ok, e = co()
  T.eq(ok, false); T.ok(tostring(e):find("outside a task", 1, true))
end)

T.case("yield across pcall and nested calls", function()
  local function deep(n) if n == 0 then time.sleep(0.001); return "bottom" end return deep(n - 1) end
  local ok, v = pcall(deep, 50)
  T.ok(ok); T.eq(v, "bottom")
end)

T.case("timers keep their schedule while another task sleeps 2 s", function()
  local sleeper = task.spawn(function() time.sleep(2) end)
  local worst, t_prev = 0, time.mono()
  for _ = 1, 100 do
    time.sleep(0.02)
    local now = time.mono()
    worst = math.max(worst, math.abs((now - t_prev) - 0.02))
    t_prev = now
  end
  T.ok(sleeper:join(3))
  -- a loop blocked by the sleeper would show one ~2 s gap; the bound leaves room for the OS
  -- scheduler on a loaded 2-core machine (gaps of 16-27 ms seen under load 6), not for that
  T.ok(worst < 0.1 * T.slack, string.format("worst jitter %.1f ms", worst * 1000))
end)

T.case("sleep(s) never returns before s has passed on the monotonic clock", function()
  -- libuv's loop time is whole milliseconds, truncated: a timer of s ms set at
  -- X.9 ms fires at X+s ms, 0.9 ms early, unless the sleep adds the one it may lose
  local early, worst = 0, 0
  for i = 1, 1000 do
    local secs = (i % 3 + 1) / 1000 -- 1, 2, 3 ms: whole milliseconds, the case truncation cuts
    local t0 = time.mono()
    time.sleep(secs)
    local short = secs - (time.mono() - t0)
    if short > 0 then early = early + 1; worst = math.max(worst, short) end
  end
  T.eq(early, 0, string.format("sleeps that returned early (worst by %.3f ms)", worst * 1000))
end)

T.case("1000 tasks run concurrently", function()
  local tasks, t0 = {}, time.mono()
  for i = 1, 1000 do tasks[i] = task.spawn(function() time.sleep(0.1); return i end) end
  local sum = 0
  for i = 1, 1000 do local _, v = tasks[i]:join(5); sum = sum + v end
  T.eq(sum, 500500)
  T.ok(time.mono() - t0 < 1.0 * T.slack)
end)

T.case("task.yield lets others run; names and ids", function()
  local order = {}
  local t = task.spawn("worker", function() order[#order + 1] = "w" end)
  T.eq(t.name, "worker"); T.ok(t.id > 0)
  order[#order + 1] = "m1"
  task.yield()
  order[#order + 1] = "m2"
  T.eq(table.concat(order, ","), "m1,w,m2")
  T.ok(tostring(t):find("worker", 1, true))
end)

T.case("a task that only yields does not starve timers", function()
  local fired, spins = false, 0
  local spinner = task.spawn(function()
    while not fired and spins < 200000 do spins = spins + 1; task.yield() end
  end)
  local t0 = time.mono()
  time.sleep(0.02)
  fired = true
  T.ok(spinner:join(5))
  T.ok(spins < 200000, "the timer fired only after the spinner gave up")
  T.ok(time.mono() - t0 < 0.5 * T.slack, string.format("sleep(0.02) took %.3f s", time.mono() - t0))
end)

return T.done()
