-- test_ssh — upgrun.ssh against real OpenSSH sshd instances (sshd_harness):
-- authentication (key, passphrase, refused password, wrong key), host key
-- policies (strict, changed key, accept-new then pinned), exec results (exit
-- codes, signals, separate stderr, stdin, env, 50 MB stdout), timeouts,
-- concurrency on one session, a server killed mid-command, cancellation,
-- uploads.
local T = require "testlib"
local H = require "sshd_harness"
local ssh = require "upgrun.ssh"
local task = require "upgrun.task"
local time = require "upgrun.time"
local proc = require "upgrun.proc"
local shell = require "upgrun.shell"
local ssh_identity = require "upgrun.ssh_identity"

local lab = H.new()
local n1 = lab:start("n1")

local function opts(n, extra)
  local o = { host = "127.0.0.1", port = n.port, user = lab.user, key = lab.key,
    known_hosts = n.known_hosts, agent = false, timeout = 10 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local S -- a session shared by the exec cases

T.case("key authentication and a first command", function()
  local s, err = ssh.connect(opts(n1))
  T.ok(s, tostring(err))
  local r = assert(s:exec("echo hello; id -un"))
  T.eq(r.status, 0)
  T.eq(r.stdout, "hello\n" .. lab.user .. "\n")
  T.eq(r.stderr, "")
  T.ok(r.duration > 0 and r.duration < 5)
  local info = s:info()
  T.eq(info.open, true); T.eq(info.port, n1.port)
  T.ok(info.fingerprint:match("^SHA256:[%w+/]+$"), info.fingerprint)
  T.eq(info.identity, "key " .. lab.key)
  S = s
end)

T.case("exit codes, signals and stderr kept apart", function()
  local r = assert(S:exec("echo out; echo err >&2; exit 7"))
  T.eq(r.status, 7); T.eq(r.signal, nil)
  T.eq(r.stdout, "out\n"); T.eq(r.stderr, "err\n")
  r = assert(S:exec("kill -KILL $$"))
  T.eq(r.status, nil); T.eq(r.signal, "KILL")
  r = assert(S:exec("sh -c 'kill -TERM $$'; echo $?"))
  T.eq(r.status, 0); T.eq(r.stdout, "143\n")
  r = assert(S:exec("exec sh -c 'kill -TERM $$'"))
  T.eq(r.signal, "TERM")
end)

T.case("stdin and env", function()
  local input = string.rep("abcdefgh", 200000) -- 1.6 MB, larger than the window
  local cmd = shell.env_prefix({ A = "x y", B = "it's" }) .. "wc -c; echo \"$A|$B\""
  T.eq(cmd:sub(1, 36), "export A='x y'; export B='it'\\''s'; ")
  local r = assert(S:exec(cmd, { stdin = input }))
  T.eq(r.stdout, tostring(#input) .. "\nx y|it's\n")
  T.raises("env", shell.env_prefix, { ["A;rm"] = "x" })
  T.raises("env", shell.env_prefix, { A = {} })
  -- the environment is part of the command, not an exec option (policy in Lua)
  T.raises("env", S.exec, S, "true", { env = { A = "x" } })
end)

T.case("a 50 MB stdout arrives whole", function()
  if T.valgrind then T.skip("tens of MB under valgrind") end
  local t0 = time.mono()
  local r = assert(S:exec("head -c 52428800 /dev/zero | tr '\\0' 'x'; echo done >&2", { timeout = 60 }))
  T.eq(r.status, 0)
  T.eq(#r.stdout, 52428800)
  T.eq(r.stdout:sub(-3), "xxx")
  T.eq(r.stderr, "done\n")
  io.write(string.format("     50 MB in %.2f s\n", time.mono() - t0))
end)

T.case("output past max_output: too_large with the tail, the command run to its end", function()
  local r, err = S:exec("head -c 3000000 /dev/zero | tr '\\0' a; printf END; echo e >&2; exit 4",
    { max_output = 1000000 })
  err = T.err("too_large", r, err)
  T.eq(#err.stdout, 1000000)
  T.eq(err.stdout:sub(-4), "aEND", "the tail is kept")
  T.eq(err.stderr, "e\n"); T.eq(err.status, 4); T.eq(err.stdout_truncated, true)
  T.ok(err.message:find("3000003 bytes on stdout", 1, true), err.message)
  -- the same on stderr; the session goes on
  r, err = S:exec("head -c 200000 /dev/zero >&2; echo out", { max_output = 65536 })
  err = T.err("too_large", r, err)
  T.eq(#err.stderr, 65536); T.eq(err.stdout, "out\n"); T.eq(err.stderr_truncated, true)
  T.eq(assert(S:exec("echo still")).stdout, "still\n")
  T.raises("max_output", S.exec, S, "true", { max_output = 0 })
end)

T.case("the default cap is 64 MiB: 70 MB of stdout fails too_large instead of exhausting memory", function()
  if T.valgrind then T.skip("tens of MB under valgrind") end
  local r, err = S:exec("head -c 70000000 /dev/zero", { timeout = 60 })
  err = T.err("too_large", r, err)
  T.eq(#err.stdout, 64 * 1024 * 1024)
  T.eq(err.status, 0)
end)

T.case("a command past its timeout is reported and its channel closed", function()
  local t0 = time.mono()
  local r, err = S:exec("echo started; sleep 1.5", { timeout = 0.5 })
  T.err("timeout", r, err)
  T.near(time.mono() - t0, 0.5, 0.3)
  T.ok(err.message:find("timed out", 1, true))
  T.eq(err.stdout, "started\n")
  -- OpenSSH (no pty) keeps a closed channel until its process exits: the
  -- silent `sleep` holds it ~1 s more, then it is freed.
  time.sleep(1.5)
  T.eq(S:info().channels, 0, "the timed-out channel was closed and freed")
  -- a process that writes gets SIGPIPE once the channel is closed
  T.err("timeout", S:exec("yes", { timeout = 0.3 }))
  time.sleep(0.3)
  T.eq(S:info().channels, 0, "yes died of SIGPIPE")
  local r2 = assert(S:exec("echo still-works"))
  T.eq(r2.stdout, "still-works\n")
end)

T.case("several commands at once on one session", function()
  local tasks, t0 = {}, time.mono()
  for i = 1, 20 do
    tasks[i] = task.spawn(function() return S:exec("sleep 0.5; echo " .. i) end)
  end
  for i = 1, 20 do
    local ok, r = tasks[i]:join(10)
    T.ok(ok); T.eq(r.stdout, i .. "\n")
  end
  local el = time.mono() - t0
  T.ok(el < 2.0, "20 concurrent 0.5 s commands took " .. el)
end)

T.case("a further command costs one channel, not a handshake", function()
  local best = math.huge
  for _ = 1, 10 do
    local t0 = time.mono()
    assert(S:exec("true"))
    best = math.min(best, time.mono() - t0)
  end
  io.write(string.format("     best of 10: %.1f ms\n", best * 1000))
  T.ok(best < 0.05, "took " .. best)
end)

T.case("cancelling a waiting task closes its channel", function()
  local t = task.spawn(function() return S:exec("while :; do echo x; sleep 0.05; done") end)
  time.sleep(0.2)
  T.eq(S:info().channels, 1)
  t:cancel()
  local ok, err = t:join(2)
  T.eq(ok, nil); T.eq(err.kind, "cancelled")
  time.sleep(0.3)
  T.eq(S:info().channels, 0)
  T.eq(assert(S:exec("echo ok")).stdout, "ok\n")
end)

T.case("upload data and a file, with a mode", function()
  local dst = n1.dir .. "/uploaded.txt"
  T.eq(S:upload("line1\nline2\n", dst, tonumber("640", 8)), true)
  T.eq(H.readfile(dst), "line1\nline2\n")
  local r = assert(S:exec("stat -c %a " .. dst))
  T.eq(r.stdout, "640\n")
  local big = string.rep("0123456789", 300000)
  H.writefile(lab.dir .. "/big.bin", big)
  T.eq(S:upload({ path = lab.dir .. "/big.bin" }, n1.dir .. "/big.bin"), true)
  T.eq(H.readfile(n1.dir .. "/big.bin"), big)
  T.err("channel", S:upload("x", "/nonexistent-dir/x"))
  T.err("io", S:upload({ path = "/nonexistent-file" }, n1.dir .. "/x"))
end)

T.case("keepalive on an idle session keeps it usable", function()
  local s = assert(ssh.connect(opts(n1, { keepalive = 1 })))
  time.sleep(2.2) -- two keepalives, replies left for the next read
  T.eq(assert(s:exec("echo k")).stdout, "k\n")
  time.sleep(1.1)
  T.eq(assert(s:exec("echo k2")).stdout, "k2\n")
  s:close()
end)

T.case("close, then use gives closed; __close works", function()
  do
    local s <close> = assert(ssh.connect(opts(n1)))
    T.eq(assert(s:exec("echo a")).stdout, "a\n")
  end
  S:close()
  T.err("closed", S:exec("true"))
  T.eq(S:is_open(), false)
  S:close() -- twice is fine
end)

T.case("a passphrase-protected key; a wrong passphrase never shows up", function()
  local k = H.keygen(lab.dir .. "/id_pass", { passphrase = "s3cret-pass" })
  local f = assert(io.open(lab.dir .. "/authorized_keys", "ab"))
  f:write(H.readfile(k .. ".pub")); f:close()
  local s = assert(ssh.connect(opts(n1, { key = k, passphrase = "s3cret-pass" })))
  T.eq(assert(s:exec("echo p")).stdout, "p\n")
  s:close()
  local r, err = ssh.connect(opts(n1, { key = k, passphrase = "wrong-pass-xyz" }))
  T.err("auth", r, err)
  T.ok(not err.message:find("wrong-pass-xyz", 1, true), err.message)
end)

T.case("a key the server does not know -> auth", function()
  local k = H.keygen(lab.dir .. "/id_other")
  local r, err = ssh.connect(opts(n1, { key = k }))
  T.err("auth", r, err)
  T.ok(err.message:find(k, 1, true), err.message)
  T.err("auth", ssh.connect(opts(n1, { key = lab.dir .. "/missing_key" })))
end)

T.case("password refused when the server disables it; never echoed", function()
  local o = opts(n1); o.key = nil; o.password = "hunter2-secret"
  local r, err = ssh.connect(o)
  T.err("auth", r, err)
  T.ok(err.message:find("password", 1, true), err.message)
  T.ok(not err.message:find("hunter2", 1, true), err.message)
end)

T.case("password auth enabled: a wrong password -> auth", function()
  local np = lab:start("npw", { password_auth = true })
  local o = opts(np); o.key = nil; o.password = "not-the-password-123"
  local r, err = ssh.connect(o)
  T.err("auth", r, err)
  T.ok(not err.message:find("not-the-password", 1, true))
  lab:stop(np)
end)

T.case("unknown host key refused under strict; accept-new pins it", function()
  local kh = lab.dir .. "/kh_empty"
  H.writefile(kh, "# a comment\n")
  local r, err = ssh.connect(opts(n1, { known_hosts = kh }))
  err = T.err("hostkey", r, err)
  T.ok(err.message:find("SHA256:", 1, true), err.message)
  T.ok(err.message:find("strict", 1, true))
  local s = assert(ssh.connect(opts(n1, { known_hosts = kh, host_key_policy = "accept-new" })))
  s:close()
  local text = H.readfile(kh)
  T.ok(text:find("[127.0.0.1]:" .. n1.port .. " ssh-ed25519 ", 1, true), text)
  -- now pinned: strict accepts it, and adding again does not duplicate
  s = assert(ssh.connect(opts(n1, { known_hosts = kh })))
  s:close()
  s = assert(ssh.connect(opts(n1, { known_hosts = kh, host_key_policy = "accept-new" })))
  s:close()
  local _, count = H.readfile(kh):gsub("ssh%-ed25519", "")
  T.eq(count, 1)
end)

T.case("a changed host key is refused with fingerprint and file:line", function()
  local n2 = lab:start("n2", { host_key = "new" })
  local kh = lab.dir .. "/kh_changed"
  -- line 3 claims n2's address has the lab's shared host key
  H.writefile(kh, "# known hosts\n\n" .. H.known_line(n2.port, lab.host_key .. ".pub"))
  local r, err = ssh.connect(opts(n2, { known_hosts = kh }))
  err = T.err("hostkey", r, err)
  T.ok(err.message:find(kh .. ":3", 1, true), err.message)
  T.ok(err.message:find("SHA256:", 1, true), err.message)
  -- accept-new never overrides a changed key
  T.err("hostkey", ssh.connect(opts(n2, { known_hosts = kh, host_key_policy = "accept-new" })))
  -- the right key works
  local s = assert(ssh.connect(opts(n2)))
  s:close()
  lab:stop(n2)
end)

T.case("nothing listening -> connect; a silent server -> timeout", function()
  local port = lab.next_port; lab.next_port = port + 1
  local r, err = ssh.connect(opts({ port = port, known_hosts = n1.known_hosts }))
  T.err("connect", r, err)
  T.ok(err.message:find("refused", 1, true), err.message)
  -- a TCP listener that never speaks SSH
  local py = proc.spawn { argv = { "python3", "-c", [[
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(5); print(s.getsockname()[1], flush=True)
c, _ = s.accept(); time.sleep(30)
]] } }
  local p = tonumber(py:read_line(5))
  local t0 = time.mono()
  r, err = ssh.connect(opts({ port = p, known_hosts = n1.known_hosts }, { timeout = 0.5 }))
  T.err("timeout", r, err)
  T.near(time.mono() - t0, 0.5, 0.3)
  py:kill("KILL"); py:wait(5); py:close()
  T.raises("host_key_policy", ssh.connect, opts(n1, { host_key_policy = "yolo" }))
  T.raises("host", ssh.connect, { port = 22 })
end)

T.case("the server killed mid-command -> closed", function()
  local n3 = lab:start("n3")
  local s = assert(ssh.connect(opts(n3)))
  local t = task.spawn(function() return s:exec("echo before; sleep 5") end)
  local other = task.spawn(function() return s:exec("sleep 5") end)
  time.sleep(0.3)
  lab:kill_all(n3)
  local ok, r, err = t:join(5)
  T.ok(ok); T.err("closed", r, err)
  ok, r, err = other:join(5)
  T.ok(ok); T.err("closed", r, err)
  T.eq(s:is_open(), false)
  T.err("closed", s:exec("true"))
  s:close()
end)

T.case("sessions to 10 nodes from 10 tasks at once", function()
  local nodes = lab:start_many("p", 10)
  local t0 = time.mono()
  local ts = {}
  for i, n in ipairs(nodes) do
    ts[i] = task.spawn(function()
      local s = assert(ssh.connect(opts(n)))
      local r = assert(s:exec("echo " .. n.name))
      s:close()
      return r.stdout
    end)
  end
  for i, t in ipairs(ts) do
    local ok, out = t:join(20)
    T.ok(ok, tostring(out)); T.eq(out, nodes[i].name .. "\n")
  end
  io.write(string.format("     10 fresh connections + command: %.2f s\n", time.mono() - t0))
  for _, n in ipairs(nodes) do lab:stop(n) end
end)

-- ---- identity discovery (upgrun.ssh_identity: policy in Lua) -------------
-- Each case runs upgrun in a child process with HOME pointed at a temp dir
-- and SSH_AUTH_SOCK set or not, as a user's shell would have them.
local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local probe_script = lab.dir .. "/identity_probe.lua"
H.writefile(probe_script, [[
local ident = require "upgrun.ssh_identity"
local s, err = ident.connect { host = "127.0.0.1", port = tonumber(arg[1]), timeout = 10 }
if not s then io.stdout:write("ERR ", err.kind, ": ", err.message, "\n"); os.exit(1) end
local r = assert(s:exec("id -un"))
io.stdout:write("OK ", s:info().user, " | ", s:info().identity, " | ", r.stdout)
s:close()
]])

-- A HOME with .ssh/known_hosts pinning n1 (and whatever keys are put there).
local function fake_home(name)
  local home = lab.dir .. "/" .. name
  H.sh(string.format("mkdir -p '%s/.ssh' && chmod 700 '%s/.ssh'", home, home))
  H.writefile(home .. "/.ssh/known_hosts", H.readfile(n1.known_hosts))
  return home
end

local function run_probe(env)
  env.PATH = os.getenv("PATH")
  local r = assert(proc.run({ BIN, probe_script, tostring(n1.port) }, { env = env, timeout = 30 }))
  return r.stdout .. r.stderr, r.status
end

T.case("discovery: ~/.ssh/id_ed25519 and ~/.ssh/known_hosts of HOME, the local user", function()
  local home = fake_home("home_key")
  local k = H.keygen(home .. "/.ssh/id_ed25519")
  local f = assert(io.open(lab.dir .. "/authorized_keys", "ab"))
  f:write(H.readfile(k .. ".pub")); f:close()
  local out, status = run_probe({ HOME = home })
  T.eq(status, 0, out)
  T.eq(out, "OK " .. lab.user .. " | key " .. k .. " | " .. lab.user .. "\n")
  -- the same HOME without the host's line in known_hosts: the default path is the one read
  H.writefile(home .. "/.ssh/known_hosts", "")
  out, status = run_probe({ HOME = home })
  T.eq(status, 1, out)
  T.ok(out:find("^ERR hostkey: ") and out:find(home .. "/.ssh/known_hosts", 1, true), out)
end)

T.case("discovery: an ssh-agent started here (SSH_AUTH_SOCK), no key files", function()
  local home = fake_home("home_agent")
  local k = H.keygen(lab.dir .. "/id_agent")
  local f = assert(io.open(lab.dir .. "/authorized_keys", "ab"))
  f:write(H.readfile(k .. ".pub")); f:close()
  local sock = lab.dir .. "/agent.sock"
  local started = H.sh(string.format("ssh-agent -s -a '%s'", sock))
  local pid = tonumber(started:match("SSH_AGENT_PID=(%d+)"))
  T.ok(pid, started)
  local ok, err = pcall(function()
    H.sh(string.format("SSH_AUTH_SOCK='%s' ssh-add -q '%s' 2>&1", sock, k))
    local out, status = run_probe({ HOME = home, SSH_AUTH_SOCK = sock })
    T.eq(status, 0, out)
    T.eq(out, "OK " .. lab.user .. " | agent " .. sock .. " | " .. lab.user .. "\n")
    -- the agent without keys: named in the error, with the default files tried after it
    H.sh(string.format("SSH_AUTH_SOCK='%s' ssh-add -q -D 2>&1", sock))
    out, status = run_probe({ HOME = home, SSH_AUTH_SOCK = sock })
    T.eq(status, 1, out)
    T.ok(out:find("^ERR auth: ") and out:find("agent at " .. sock .. " has no keys", 1, true), out)
  end)
  proc.run({ "kill", tostring(pid) }, { timeout = 5 })
  if not ok then error(err, 0) end
end)

T.case("discovery: no agent and no key file -> auth error naming what was tried", function()
  local home = fake_home("home_empty")
  local out, status = run_probe({ HOME = home })
  T.eq(status, 1, out)
  T.ok(out:find("^ERR auth: no SSH identity for " .. lab.user .. "@127.0.0.1:" .. n1.port), out)
  T.ok(out:find("the agent (SSH_AUTH_SOCK not set)", 1, true), out)
  for _, name in ipairs { "id_ed25519", "id_ecdsa", "id_rsa" } do
    T.ok(out:find(home .. "/.ssh/" .. name .. " (not readable)", 1, true), out)
  end
end)

T.case("resolve: defaults filled from the environment, explicit fields kept", function()
  local env = { home = "/h", user = "alice", agent = "/run/agent.sock" }
  local p = assert(ssh_identity.resolve({ host = "x" }, env))
  T.eq(p.user, "alice"); T.eq(p.known_hosts, "/h/.ssh/known_hosts"); T.eq(p.agent, "/run/agent.sock")
  T.eq(p.keys, nil) -- no /h/.ssh/id_* on this machine
  p = assert(ssh_identity.resolve({ host = "x", user = "bob", key = "/k", known_hosts = "/kh" }, env))
  T.eq(p.user, "bob"); T.eq(p.known_hosts, "/kh"); T.eq(p.agent, nil); T.eq(p.key, "/k")
  p = assert(ssh_identity.resolve({ host = "x", password = "pw", agent = true }, env))
  T.eq(p.agent, "/run/agent.sock"); T.eq(p.keys, nil)
  T.err("auth", ssh_identity.resolve({ host = "x", agent = false }, env))
  -- ssh.connect itself discovers nothing
  T.raises("user", ssh.connect, { host = "127.0.0.1", port = n1.port, known_hosts = n1.known_hosts, key = lab.key })
  T.raises("known_hosts", ssh.connect, { host = "127.0.0.1", port = n1.port, user = lab.user, key = lab.key })
  T.raises("agent", ssh.connect, { host = "127.0.0.1", port = n1.port, user = lab.user,
    known_hosts = n1.known_hosts, agent = true })
end)

lab:cleanup()
return T.done()
