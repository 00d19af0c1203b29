-- test_proc — upgrun.proc against real child processes: capture of stdout and
-- stderr, stdin, env/cwd, exit codes and signals, run()'s SIGTERM -> SIGKILL
-- escalation, wait/read_line timeouts, cancellation and <close>/__gc leaving
-- no process behind, group = true (signals reach the whole process group),
-- 50 children at once, a 20 MB stdout.
local T = require "testlib"
local proc = require "upgrun.proc"
local task = require "upgrun.task"
local time = require "upgrun.time"

-- True once pid no longer exists (reaped), polling for up to `within` s.
local function gone(pid, within)
  local deadline = time.mono() + (within or 2) * T.slack
  repeat
    local ok, err = proc.kill(pid, 0)
    if not ok then
      T.eq(err.kind, "exited", err.message)
      return true
    end
    time.sleep(0.01)
  until time.mono() > deadline
  return false
end

-- `kill -0 pid` run by a shell, as an outsider would check.
local function shell_sees(pid)
  local r = assert(proc.run({ "sh", "-c", "kill -0 " .. pid .. " 2>/dev/null" }, { timeout = 5 }))
  return r.status == 0
end

T.case("run captures stdout and stderr separately, with the exit status", function()
  local r = assert(proc.run({ "sh", "-c", "echo out; echo err >&2; exit 3" }))
  T.eq(r.status, 3); T.eq(r.signal, nil)
  T.eq(r.stdout, "out\n"); T.eq(r.stderr, "err\n")
  T.ok(r.pid > 0); T.ok(r.duration >= 0 and r.duration < 5)
end)

T.case("argv is passed as is (no shell), numbers become strings", function()
  local r = assert(proc.run({ "printf", "[%s][%s]", "a b", 42 }))
  T.eq(r.stdout, "[a b][42]"); T.eq(r.status, 0)
end)

T.case("a string argv runs through /bin/sh -c", function()
  local r = assert(proc.run("echo $((6 * 7))"))
  T.eq(r.stdout, "42\n")
end)

T.case("check=true turns a non-zero exit and a signal into errors", function()
  local err = T.err("exit", proc.run({ "sh", "-c", "echo bad >&2; exit 4" }, { check = true }))
  T.eq(err.status, 4); T.eq(err.stderr, "bad\n")
  T.ok(err.message:find("status 4", 1, true), err.message)
  err = T.err("signal", proc.run({ "sh", "-c", "kill -USR1 $$" }, { check = true }))
  T.eq(err.signal, "SIGUSR1")
  T.ok(assert(proc.run({ "true" }, { check = true })))
end)

T.case("stdin is written then closed", function()
  local r = assert(proc.run({ "cat" }, { stdin = "line 1\nline 2\n" }))
  T.eq(r.stdout, "line 1\nline 2\n")
  local big = string.rep("0123456789abcdef", 1 << 16) -- 1 MiB, more than a pipe holds
  r = assert(proc.run({ "wc", "-c" }, { stdin = big }))
  T.eq(tonumber(r.stdout), #big)
  r = assert(proc.run({ "cat" }, { stdin = "" }))
  T.eq(r.stdout, "")
  -- without stdin the child reads /dev/null, it never waits on our terminal
  r = assert(proc.run({ "cat" }, { timeout = 5 }))
  T.eq(r.stdout, ""); T.eq(r.status, 0)
end)

T.case("a child that exits without reading stdin does not hurt us", function()
  local r = assert(proc.run({ "true" }, { stdin = string.rep("x", 1 << 20) }))
  T.eq(r.status, 0)
end)

T.case("env replaces the environment, env_add extends it, cwd is honoured", function()
  local r = assert(proc.run({ "/usr/bin/env" }, { env = { ONLY = "1", B = "two words" } }))
  local lines = {}
  for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
  table.sort(lines)
  T.eq(table.concat(lines, ","), "B=two words,ONLY=1")
  r = assert(proc.run({ "sh", "-c", 'echo "$UPGRUN_T_X:$HOME"' }, { env_add = { UPGRUN_T_X = "added" } }))
  T.eq(r.stdout, "added:" .. os.getenv("HOME") .. "\n")
  r = assert(proc.run({ "sh", "-c", 'echo "$HOME"' }, { env_add = { HOME = "/override" } }))
  T.eq(r.stdout, "/override\n")
  r = assert(proc.run({ "pwd" }, { cwd = "/tmp" }))
  T.eq(r.stdout, "/tmp\n")
end)

T.case("a program that does not exist is a spawn error naming it", function()
  local err = T.err("spawn", proc.run({ "upgrun-no-such-program", "x" }))
  T.ok(err.message:find("upgrun-no-such-program", 1, true), err.message)
  err = T.err("spawn", proc.spawn { argv = { "/nonexistent/bin/tool" } })
  T.ok(err.message:find("/nonexistent/bin/tool", 1, true), err.message)
  err = T.err("spawn", proc.run({ "true" }, { cwd = "/nonexistent-dir" }))
  T.ok(err.message:find("/nonexistent-dir", 1, true), err.message)
end)

T.case("misuse raises", function()
  T.raises("argv", proc.run, {})
  T.raises("argv", proc.spawn, { argv = { {} } })
  T.raises("stdout", proc.run, { "true" }, { stdout = "file" })
  T.raises("env", proc.run, { "true" }, { env = { ["A=B"] = "x" } })
  T.raises("unknown signal", proc.kill, 1, "NOPE")
  T.raises("timeout", proc.run, { "true" }, { timeout = "soon" })
end)

T.case("run's timeout escalates SIGTERM to SIGKILL for a child that ignores TERM", function()
  local t0 = time.mono()
  local err = T.err("timeout", proc.run({ "sh", "-c", "trap '' TERM; echo started; exec sleep 30" },
    { timeout = 0.3, grace = 0.3 }))
  local took = time.mono() - t0
  T.eq(err.signal, "SIGKILL"); T.eq(err.status, nil)
  T.eq(err.stdout, "started\n") -- what was captured before the kill
  T.ok(err.message:find("SIGKILL", 1, true), err.message)
  T.ok(took >= 0.55 and took < 2.5, "took " .. took)
  T.ok(gone(err.pid), "the child was reaped")
end)

T.case("run's timeout: a child that honours SIGTERM dies of it", function()
  local t0 = time.mono()
  local err = T.err("timeout", proc.run({ "sleep", "30" }, { timeout = 0.2, grace = 5 }))
  T.eq(err.signal, "SIGTERM")
  T.ok(time.mono() - t0 < 2)
end)

T.case("wait with a timeout: the child keeps running; kill by name and number", function()
  local p = assert(proc.spawn { argv = { "sleep", "30" } })
  T.ok(math.type(p.pid) == "integer" and p.pid > 0)
  local t0 = time.mono()
  T.err("timeout", p:wait(0.1))
  T.near(time.mono() - t0, 0.1, 0.08)
  T.ok(shell_sees(p.pid), "still running after the wait timed out")
  T.eq(p:kill("TERM"), true)
  local r = assert(p:wait(5))
  T.eq(r.signal, "SIGTERM"); T.eq(r.status, nil)
  local again = assert(p:wait()) -- a finished child answers at once
  T.eq(again.signal, "SIGTERM")
  T.err("exited", p:kill("KILL"))
  p:close()
  T.raises("closed", p.wait, p)

  for _, sig in ipairs { "SIGKILL", "kill", 9 } do
    local q = assert(proc.spawn { argv = { "sleep", "30" } })
    T.eq(q:kill(sig), true)
    T.eq(assert(q:wait(5)).signal, "SIGKILL")
    q:close()
  end
end)

T.case("upgrun.proc.kill(pid, sig) signals any process", function()
  local p = assert(proc.spawn { argv = { "sleep", "30" } })
  T.eq(proc.kill(p.pid, "SIGINT"), true)
  T.eq(assert(p:wait(5)).signal, "SIGINT")
  local err = T.err("exited", proc.kill(p.pid, 0))
  T.eq(err.code, "ESRCH")
end)

T.case("upgrun.proc.kill(-pgid, sig) signals a process group; 0 and -1 are refused", function()
  local p = assert(proc.spawn { argv = { "setsid", "sleep", "30" } })
  -- the group exists once setsid has run in the child
  local deadline = time.mono() + 5
  while not proc.kill(-p.pid, 0) and time.mono() < deadline do time.sleep(0.01) end
  T.eq(proc.kill(-p.pid, "TERM"), true)
  T.eq(assert(p:wait(5)).signal, "SIGTERM")
  T.err("exited", proc.kill(-p.pid, 0))
  T.raises("pid must be > 0", proc.kill, 0, 0)
  T.raises("pid must be > 0", proc.kill, -1, 0)
end)

T.case("cancelling a task that waits on a child kills and reaps it", function()
  local pid
  local t = task.spawn(function()
    local p = assert(proc.spawn { argv = { "sleep", "30" } })
    pid = p.pid
    return p:wait(60)
  end)
  T.wait_until(function() return t:status() == "waiting" end, 5, "the task to wait on its child")
  T.ok(pid and shell_sees(pid), "the child runs")
  t:cancel()
  T.err("cancelled", t:join(1))
  T.ok(gone(pid), "no process left")
  T.eq(shell_sees(pid), false)

  -- the same for run(): the child writes its pid to a file we read
  local pidfile = os.tmpname()
  local t2 = task.spawn(function()
    return proc.run({ "sh", "-c", 'echo $$ > "$0"; exec sleep 30', pidfile }, { timeout = 60 })
  end)
  local pids = {}
  pids[1] = T.wait_until(function()
    local f = io.open(pidfile)
    local n = f and tonumber(f:read("a"))
    if f then f:close() end
    return n
  end, 5, "the run() child to write its pid")
  os.remove(pidfile)
  T.ok(#pids == 1 and shell_sees(pids[1]), "found the run() child")
  t2:cancel()
  T.err("cancelled", t2:join(1))
  for _, n in ipairs(pids) do T.ok(gone(n), "run() child " .. n .. " gone") end
end)

T.case("with_timeout around wait kills the child", function()
  local p = assert(proc.spawn { argv = { "sleep", "30" } })
  local res, err = task.with_timeout(0.1, function() return p:wait() end)
  T.eq(res, nil); T.eq(err.kind, "timeout")
  T.ok(gone(p.pid))
  local r = assert(p:wait(1)) -- the child was reaped; its end is known
  T.eq(r.signal, "SIGKILL")
end)

T.case("<close> and garbage collection kill a child still running", function()
  local pid
  do
    local p <close> = assert(proc.spawn { argv = { "sleep", "30" } })
    pid = p.pid
    T.ok(shell_sees(pid))
  end
  T.ok(gone(pid), "closed -> killed and reaped")

  local q = assert(proc.spawn { argv = { "sleep", "30" } })
  pid = q.pid
  q = nil -- luacheck: ignore 311
  collectgarbage(); collectgarbage()
  T.ok(gone(pid), "collected -> killed and reaped")
end)

T.case("read_line returns stdout line by line (a server printing its port)", function()
  local server = [[
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print("listening", s.getsockname()[1], flush=True)
c, _ = s.accept(); c.sendall(b"hello\n"); c.close()
print("done\r", flush=True)
time.sleep(30)
]]
  local p <close> = assert(proc.spawn { argv = { "python3", "-c", server } })
  local line = assert(p:read_line(10))
  local port = tonumber(line:match("^listening (%d+)$"))
  T.ok(port, line)
  local client = "import socket; s = socket.create_connection(('127.0.0.1', %d)); print(s.recv(100).decode(), end='')"
  local r = assert(proc.run({ "python3", "-c", client:format(port) }, { timeout = 10 }))
  T.eq(r.stdout, "hello\n")
  T.eq(p:read_line(10), "done") -- "\r\n" stripped
  local t0 = time.mono()
  T.err("timeout", p:read_line(0.1))
  T.near(time.mono() - t0, 0.1, 0.08)
  T.eq(p:kill(), true)
  T.err("closed", p:read_line(5))
  T.eq(assert(p:wait(5)).signal, "SIGTERM")
end)

T.case("read_line at the end of output gives the last partial line, then closed", function()
  local p <close> = assert(proc.spawn { argv = { "printf", "a\nb\n\nlast" } })
  T.eq(p:read_line(5), "a"); T.eq(p:read_line(5), "b"); T.eq(p:read_line(5), "")
  T.eq(p:read_line(5), "last")
  T.err("closed", p:read_line(5))
  local r = assert(p:wait(5))
  T.eq(r.stdout, "a\nb\n\nlast") -- wait still returns the whole output
end)

T.case("stdout/stderr = null or inherit are not captured", function()
  local r = assert(proc.run({ "sh", "-c", "echo x; echo y >&2" }, { stdout = "null", stderr = "null" }))
  T.eq(r.stdout, nil); T.eq(r.stderr, nil); T.eq(r.status, 0)
  r = assert(proc.run({ "true" }, { stdout = "inherit" }))
  T.eq(r.stdout, nil); T.eq(r.stderr, "")
  local p <close> = assert(proc.spawn { argv = { "true" }, stdout = "null" })
  T.raises("capture", p.read_line, p, 1)
end)

T.case("a grandchild holding the pipes does not hold up the result", function()
  local t0 = time.mono()
  local r = assert(proc.run({ "sh", "-c", "sleep 3 & echo parent done" }, { timeout = 10 }))
  T.eq(r.stdout, "parent done\n"); T.eq(r.status, 0)
  T.ok(time.mono() - t0 < 1.5, "returned after the parent's exit")
end)

-- True once pid is gone or a zombie (a grandchild whose parent died first is
-- reaped by whatever adopts it, not by upgrun), polling for 2 s.
local function dead(pid)
  local deadline = time.mono() + 2 * T.slack
  repeat
    local f = io.open("/proc/" .. pid .. "/stat")
    local st = f and f:read("a"); if f then f:close() end
    if not st or st:match("^%d+ %b() (%a)") == "Z" then return true end
    time.sleep(0.01)
  until time.mono() > deadline
  return false
end

-- The grandchild's pid, printed by `sh -c 'sleep N & echo $!; wait'`.
local function spawn_with_grandchild(group)
  local p = assert(proc.spawn { argv = { "sh", "-c", "sleep 300 & echo $!; wait" }, group = group })
  return p, tonumber(assert(p:read_line(5 * T.slack)))
end

T.case("group = true: the child leads its own process group; kill, timeout and cancel reach the grandchild", function()
  local p, grandchild = spawn_with_grandchild(true)
  local r = assert(proc.run({ "ps", "-o", "pgid=,sid=", "-p", tostring(grandchild) }, { timeout = 5 }))
  local pgid, sid = r.stdout:match("(%d+)%s+(%d+)")
  T.eq(tonumber(pgid), p.pid, "the grandchild is in the child's group"); T.eq(tonumber(sid), p.pid)
  T.ok(p:kill("TERM"))
  T.ok(dead(grandchild), "TERM to the group reached the grandchild")
  T.eq(assert(p:wait(5)).signal, "SIGTERM")
  p:close()
  -- run()'s timeout (TERM to the group)
  local t = task.spawn(function()
    return proc.run({ "sh", "-c", "sleep 300 & echo $! >&2; wait" }, { timeout = 0.5, group = true })
  end)
  local _, res, err = t:join(10)
  T.eq(res, nil); T.eq(err.kind, "timeout")
  T.ok(dead(tonumber(err.stderr:match("%d+"))), "the timeout stopped the grandchild")
  -- a cancelled wait (SIGKILL to the group)
  local p2, g2 = spawn_with_grandchild(true)
  local w = task.spawn(function() return p2:wait() end)
  time.sleep(0.05)
  w:cancel()
  T.ok(dead(g2), "the cancel killed the grandchild")
  p2:close()
  -- without group only the child is signalled: its grandchild lives on
  local p3, g3 = spawn_with_grandchild(false)
  T.ok(p3:kill("KILL")); p3:wait(5); p3:close()
  T.ok(shell_sees(g3), "the grandchild of a plain child survives")
  proc.kill(g3, "KILL")
end)

T.case("50 processes at once", function()
  local t0 = time.mono()
  local tasks = {}
  for i = 1, 50 do
    tasks[i] = task.spawn(function()
      return proc.run({ "sh", "-c", 'sleep 0.2; echo "$0"', tostring(i) }, { timeout = 20 })
    end)
  end
  for i = 1, 50 do
    local ok, r = tasks[i]:join(30)
    T.ok(ok); T.eq(r.stdout, i .. "\n"); T.eq(r.status, 0)
  end
  local took = time.mono() - t0
  io.write(string.format("     50 x (sh -c 'sleep 0.2; echo') in parallel: %.2f s\n", took))
  T.ok(took < 5, "in parallel, not one after the other: " .. took)
end)

T.case("a 20 MB stdout is captured whole; max_output truncates", function()
  if T.valgrind then T.skip("tens of MB under valgrind") end
  local n = 20 * 1024 * 1024
  local t0 = time.mono()
  local r = assert(proc.run({ "head", "-c", tostring(n), "/dev/zero" }, { timeout = 30 }))
  local took = time.mono() - t0
  T.eq(#r.stdout, n); T.eq(r.stdout_truncated, nil); T.eq(r.status, 0)
  T.eq(r.stdout:sub(1, 4), "\0\0\0\0")
  io.write(string.format("     20 MiB of stdout captured in %.3f s\n", took))
  r = assert(proc.run({ "head", "-c", tostring(n), "/dev/zero" }, { max_output = 1000, timeout = 30 }))
  T.eq(#r.stdout, 1000); T.eq(r.stdout_truncated, true); T.eq(r.status, 0)
end)

return T.done()
