-- test_services — upgrun.services against real processes on real sshd nodes,
-- with an inventory in the lab's shape (all.vars + controller/compute groups,
-- upgrun_services with backend "command"): start waits for running and
-- healthy, stop with TERM, a process ignoring SIGTERM is escalated to KILL,
-- wait_stopped / wait_running time out correctly, pidfile and pgrep pattern,
-- running_release, signal, restart, and the service events.
local T = require "testlib"
local H = require "sshd_harness"
local nodes = require "upgrun.nodes"
local time = require "upgrun.time"

local lab = H.new()
local ctl1, cmp1 = lab:start("ctl1"), lab:start("cmp1")
local FAKE = T.src("tests/integration/fixtures/ssh_fakesvc.sh")
local D = lab.dir

local function svc(name, mode, how)
  local find = how == "pattern" and ("pattern: \"upgrun-fakesvc-" .. name .. "\"")
    or ("pidfile: \"" .. D .. "/" .. name .. ".pid\"")
  return string.format([[
            %s:
              backend: command
              start: "%s start %s %s %s"
              %s
              running_release: "%s release %s %s"
              health: "%s health %s %s"]], name, FAKE, D, name, mode, find, FAKE, D, name, FAKE, D, name)
end

local inv_text = table.concat({
  "all:",
  "  vars: {ansible_user: " .. lab.user .. ", ansible_ssh_private_key_file: " .. lab.key
    .. ", upgrun_known_hosts: " .. lab.known_hosts
    .. ", nova_code_switch: \"switch {node} {release}\", nova_code_current: \"current {node}\"}",
  "  children:",
  "    controller:",
  "      hosts:",
  "        ctl1:",
  "          ansible_host: 127.0.0.1",
  "          ansible_port: " .. ctl1.port,
  "          upgrun_services:",
  svc("nova-api", "normal"),
  svc("nova-conductor", "stubborn", "pattern"),
  svc("nova-scheduler", "slowhealth"),
  svc("nova-broken", "failstart"),
  "    compute:",
  "      hosts:",
  "        cmp1: {ansible_host: 127.0.0.1, ansible_port: " .. cmp1.port
    .. ", upgrun_services: {nova-compute: {backend: command, start: \"" .. FAKE .. " start " .. D
    .. " nova-compute\", pidfile: \"" .. D .. "/nova-compute.pid\"}}}",
}, "\n") .. "\n"
local invpath = D .. "/inventory.yml"
H.writefile(invpath, inv_text)
local inv = assert(nodes.load(invpath))
local node = inv:host("ctl1")

T.case("the lab-shaped inventory loads", function()
  T.eq(#inv:group("controller"), 1); T.eq(#inv:group("compute"), 1)
  T.eq(node.vars.nova_code_switch, "switch {node} {release}")
  T.eq(node.vars.upgrun_services["nova-api"].backend, "command")
  T.raises("no service 'nova-nope'", node.service, node, "nova-nope")
end)

T.case("start waits until running and healthy; pid and running_release", function()
  local api = node:service("nova-api")
  T.eq(api:pid(), false)
  H.writefile(D .. "/release", "mitaka\n")
  local t0 = time.mono()
  local r = assert(api:start { timeout = 10 })
  T.ok(r.pid > 1); T.eq(r.healthy, true)
  T.ok(time.mono() - t0 >= 0.3, "returned before the health check passed")
  T.eq(api:pid(), r.pid)
  T.eq(api:running_release(), "mitaka")
  T.eq(api:is_running(), true)
  local again = assert(api:start())
  T.eq(again.already, true); T.eq(again.pid, r.pid)
end)

T.case("stop with TERM, no escalation", function()
  local api = node:service("nova-api")
  local pid = api:pid()
  local r = assert(api:stop { grace = 5, timeout = 10 })
  T.eq(r.stopped, true); T.eq(r.escalated, false); T.eq(r.pid, pid)
  T.ok(r.duration < 2, "took " .. r.duration)
  T.eq(api:pid(), false)
  local r2 = assert(api:stop())
  T.eq(r2.was_running, false)
end)

T.case("a process ignoring SIGTERM is escalated to SIGKILL after the grace", function()
  local cond = node:service("nova-conductor") -- found by pgrep -f pattern
  local s = assert(cond:start { timeout = 10 })
  T.eq(cond:pid(), s.pid)
  -- TERM is ignored: wait_stopped times out, correctly
  assert(cond:signal("TERM"))
  local t0 = time.mono()
  local ok, err = cond:wait_stopped(0.6)
  T.err("timeout", ok, err)
  T.near(time.mono() - t0, 0.6, 0.3)
  T.eq(cond:pid(), s.pid, "still running")
  t0 = time.mono()
  local r = assert(cond:stop { signal = "TERM", grace = 1, timeout = 10 })
  T.eq(r.escalated, true); T.eq(r.stopped, true)
  T.near(time.mono() - t0, 1.0, 0.5)
  T.eq(cond:pid(), false)
end)

T.case("wait_running times out for a service that is not started", function()
  local sched = node:service("nova-scheduler")
  local t0 = time.mono()
  local pid, err = sched:wait_running(0.5)
  T.err("timeout", pid, err)
  T.near(time.mono() - t0, 0.5, 0.3)
  -- started, but its health check passes only after 2 s: a 1 s start times out
  t0 = time.mono()
  local r
  r, err = sched:start { timeout = 1 }
  T.err("timeout", r, err)
  T.ok(err.message:find("healthy", 1, true), err.message)
  T.near(time.mono() - t0, 1.0, 0.4)
  -- it does become healthy
  T.ok(sched:wait_running(5))
  T.eq(sched:healthy(), true)
  assert(sched:stop { grace = 5 })
end)

T.case("a start command that fails is an exit error with its stderr", function()
  local r, err = node:service("nova-broken"):start { timeout = 5 }
  T.err("exit", r, err)
  T.ok(err.message:find("config error", 1, true), err.message)
end)

T.case("restart gives a new pid; signal reaches the process", function()
  local comp = inv:host("cmp1"):service("nova-compute")
  local a = assert(comp:start { timeout = 10 })
  T.eq(a.healthy, nil) -- no health command for this one
  local r = assert(comp:restart { grace = 5, timeout = 10 })
  T.ok(r.pid ~= a.pid); T.eq(r.stop.pid, a.pid)
  assert(comp:signal("KILL"))
  T.ok(comp:wait_stopped(5))
  T.err("not_running", comp:signal("TERM"))
end)

T.case("every service action is on the event log", function()
  local acts = {}
  for _, ev in ipairs(nodes.events) do
    if ev.type == "service" then acts[#acts + 1] = ev.node .. ":" .. ev.service .. ":" .. ev.action end
  end
  local all = table.concat(acts, " ")
  T.ok(all:find("ctl1:nova-api:start", 1, true), all)
  T.ok(all:find("ctl1:nova-conductor:stop", 1, true), all)
  T.ok(all:find("cmp1:nova-compute:signal", 1, true), all)
  local esc
  for _, ev in ipairs(nodes.events) do
    if ev.type == "service" and ev.action == "stop" and ev.escalated then esc = ev end
  end
  T.ok(esc and esc.finish > esc.start and esc.service == "nova-conductor")
end)

-- leave nothing running
for _, n in ipairs(inv:hosts()) do
  for _, s in ipairs(require("upgrun.services").of(n)) do pcall(s.stop, s, { signal = "KILL", grace = 2 }) end
end
inv:close()
lab:cleanup()
return T.done()
