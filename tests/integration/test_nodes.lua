-- test_nodes — upgrun.inventory and upgrun.nodes: Ansible YAML inventories
-- (precedence, errors naming file/line/field), the JSON of a real
-- `ansible-inventory --list`, nodes running commands over one reused session
-- against real sshd (sshd_harness), quoting, become, timeouts, fan-out to 50
-- nodes with concurrency/serial/stop_on_error, and the event log.
local T = require "testlib"
local H = require "sshd_harness"
local inventory = require "upgrun.inventory"
local nodes = require "upgrun.nodes"
local task = require "upgrun.task"
local time = require "upgrun.time"
local proc = require "upgrun.proc"

local lab = H.new()

local PRECEDENCE = [[
all:
  vars:
    level: all
    only_all: a
    ansible_user: root
  children:
    openstack:
      vars:
        level: openstack
        only_parent: p
      children:
        compute:
          vars:
            level: compute
          hosts:
            cmp1:
            cmp2:
              level: host
              ansible_port: 2222
        controller:
          hosts:
            ctl1: {ansible_host: 10.0.0.1, ansible_become: true}
    other:
      hosts:
        cmp1:
          extra: yes
]]

T.case("YAML inventory: groups, children and variable precedence", function()
  local inv = assert(inventory.parse(PRECEDENCE, "prec.yml"))
  local c1, c2, k1 = inv:host("cmp1"), inv:host("cmp2"), inv:host("ctl1")
  T.eq(c1.vars.level, "compute"); T.eq(c1.vars.only_all, "a"); T.eq(c1.vars.only_parent, "p")
  T.eq(c1.vars.extra, true)
  T.eq(c2.vars.level, "host"); T.eq(c2.port, 2222); T.eq(c2.host, "cmp2")
  T.eq(k1.vars.level, "openstack"); T.eq(k1.host, "10.0.0.1"); T.eq(k1.become, true)
  T.eq(k1.user, "root")
  local names = {}
  for _, n in ipairs(inv:group("openstack")) do names[#names + 1] = n.name end
  T.eq(table.concat(names, ","), "cmp1,cmp2,ctl1")
  T.eq(#inv:group("compute"), 2); T.eq(#inv:group("other"), 1); T.eq(#inv:hosts(), 3)
  T.eq(#inv:group("controller:other"), 2)
  T.raises("no group 'computes'", inv.group, inv, "computes")
  T.raises("no host 'cmp9'", inv.host, inv, "cmp9")
  T.raises("groups: all, compute, controller, openstack, other", inv.group, inv, "nope")
end)

T.case("the JSON of a real ansible-inventory --list", function()
  local path = lab.dir .. "/prec.yml"
  H.writefile(path, PRECEDENCE)
  local r = proc.run({ "ansible-inventory", "-i", path, "--list" }, { timeout = 60,
    env_add = { ANSIBLE_LOCALHOST_WARNING = "False", ANSIBLE_INVENTORY_UNPARSED_WARNING = "False" } })
  if not (r and r.status == 0) then
    io.write("     (ansible-inventory unavailable: ", tostring(r and r.stderr), ")\n")
    return
  end
  local inv = assert(inventory.parse(r.stdout, "list.json"))
  T.eq(inv:host("cmp1").vars.level, "compute")
  T.eq(inv:host("cmp2").vars.level, "host")
  T.eq(inv:host("cmp2").port, 2222)
  T.eq(inv:host("ctl1").host, "10.0.0.1")
  T.eq(#inv:group("openstack"), 3)
  T.eq(#inv:group("compute"), 2)
end)

T.case("inventory errors name the file, the line and the field", function()
  local bad_yaml = "all:\n  children:\n    compute:\n      hosts:\n        cmp1: {ansible_port: 22\n"
  local inv, err = inventory.parse(bad_yaml, "broken.yml")
  T.eq(inv, nil); T.eq(err.kind, "inventory")
  T.ok(err.message:match("^broken%.yml:%d+: "), err.message)
  T.ok(err.line and err.line >= 5, tostring(err.line))

  local bad_port = [[
all:
  children:
    compute:
      hosts:
        cmp1:
          ansible_port: 22
        cmp3:
          ansible_host: 127.0.0.1
          ansible_port: twenty-two
]]
  inv, err = inventory.parse(bad_port, "inventory.yml")
  T.eq(inv, nil)
  T.eq(err.message, "inventory.yml:9: host 'cmp3' in group 'compute': ansible_port must be a number (1-65535), "
    .. "got \"twenty-two\"")
  T.eq(err.line, 9); T.eq(err.field, "ansible_port")

  inv, err = inventory.parse("all:\n  vars:\n    ansible_become: maybe\n  hosts:\n    h1:\n", "v.yml")
  T.eq(inv, nil); T.eq(err.line, 3); T.eq(err.field, "ansible_become")
  T.ok(err.message:find("group 'all' vars", 1, true), err.message)

  inv, err = inventory.parse("all:\n  hosts:\n    h1:\n      upgrun_services:\n"
    .. "        api: {backend: command}\n", "s.yml")
  T.eq(inv, nil); T.ok(err.message:find("needs start", 1, true), err.message)

  inv, err = inventory.parse("all:\n  childs:\n    x: {}\n", "k.yml")
  T.eq(inv, nil); T.eq(err.line, 2); T.ok(err.message:find("unknown key 'childs'", 1, true), err.message)

  inv, err = inventory.parse('{"all": {"children": ["compute"]}, '
    .. '"_meta": {"hostvars": {"h": {"ansible_port": "x"}}}}', "l.json")
  T.eq(inv, nil); T.ok(err.message:find("l.json: host 'h' in group 'all': ansible_port must be", 1, true), err.message)

  inv, err = inventory.load(lab.dir .. "/missing.yml")
  T.eq(inv, nil); T.eq(err.kind, "io"); T.ok(err.message:find("missing.yml", 1, true))
end)

T.case("quote and join never let arguments become shell", function()
  T.eq(nodes.quote("plain-word_1.2/x:y"), "plain-word_1.2/x:y")
  T.eq(nodes.quote(""), "''")
  T.eq(nodes.quote("it's"), "'it'\\''s'")
  T.eq(nodes.join({ "echo", "a b", "$(x)" }), "echo 'a b' '$(x)'")
end)

-- ---- against real sshd --------------------------------------------------------

local N = 50
local started = time.mono()
local list = lab:start_many("node", N)
io.write(string.format("     (%d sshd started in %.1f s)\n", N, time.mono() - started))
local invpath = lab.dir .. "/inventory.yml"
H.writefile(invpath, lab:inventory(list, "compute", function(n)
  return n.name == "node2" and "ansible_become: true\nupgrun_ssh_timeout: 5" or ""
end))
local inv = assert(nodes.load(invpath))

T.case("a node runs commands over one reused session", function()
  nodes.clear_events()
  local n = inv:host("node1")
  local r = assert(n:run("echo $((6*7))"))
  T.eq(r.stdout, "42\n"); T.eq(r.ok, true)
  for _ = 1, 5 do assert(n:run("true")) end
  local t0 = time.mono()
  assert(n:run("true"))
  T.ok(time.mono() - t0 < 0.05, "a further command took " .. (time.mono() - t0))
  local connects = 0
  for _, ev in ipairs(nodes.events) do if ev.type == "connect" then connects = connects + 1 end end
  T.eq(connects, 1)
  r = assert(n:run("exit 3"))
  T.eq(r.status, 3); T.eq(r.ok, false)
  local _, err = n:run("echo out; exit 4", { check = true })
  T.eq(err.kind, "exit"); T.eq(err.status, 4); T.eq(err.stdout, "out\n")
  -- concurrent commands on one node share the connection attempt
  local n5 = inv:host("node5")
  local ts = {}
  for i = 1, 5 do ts[i] = task.spawn(function() return n5:run("echo " .. i) end) end
  for i = 1, 5 do local ok, rr = ts[i]:join(10); T.ok(ok); T.eq(rr.stdout, i .. "\n") end
  connects = 0
  for _, ev in ipairs(nodes.events) do
    if ev.type == "connect" and ev.node == "node5" then connects = connects + 1 end
  end
  T.eq(connects, 1)
end)

T.case("run_argv quotes every argument", function()
  local n = inv:host("node1")
  local marker = lab.dir .. "/pwned"
  local r = assert(n:run_argv({ "printf", "%s|", "a b", "$(touch " .. marker .. ")", "it's", "; rm -rf /x" }))
  T.eq(r.stdout, "a b|$(touch " .. marker .. ")|it's|; rm -rf /x|")
  T.eq(io.open(marker), nil)
end)

T.case("become runs through sudo -n", function()
  if lab.user ~= "root" then T.skip("needs root for sudo -n") end
  -- node2 has ansible_become: true in the inventory: its commands' parent is sudo
  local r = assert(inv:host("node2"):run("id -u; ps -o args= -p $PPID"))
  T.eq(r.stdout:match("^(%d+)"), "0")
  T.ok(r.stdout:find("sudo -n", 1, true), "sudo from the inventory's become: " .. r.stdout)
  -- become = false overrides it: the parent is sshd's shell, never sudo
  local r3 = assert(inv:host("node2"):run("ps -o args= -p $PPID", { become = false }))
  T.eq(r3.stdout:find("sudo", 1, true), nil, "no sudo with become = false: " .. r3.stdout)
  local r2 = assert(inv:host("node2"):run("ps -o args= -p $PPID", { become = true }))
  T.ok(r2.stdout:find("sudo", 1, true), r2.stdout)
end)

T.case("a command past its timeout: timeout error, killed on the node too", function()
  local n = inv:host("node3")
  local flag = lab.dir .. "/late-flag"
  local t0 = time.mono()
  local r, err = n:run("sleep 2.5; touch " .. flag, { timeout = 0.5 })
  T.err("timeout", r, err)
  T.near(time.mono() - t0, 0.5, 0.3)
  -- the remote command (sleep 2.5, then touch) is gone: killed, or it finished and touched
  T.wait_until(function() return proc.run({ "pgrep", "-f", flag }).status == 1 end, 10,
    "the remote command to end")
  T.eq(io.open(flag), nil, "the remote command was killed")
  T.eq(assert(n:run("echo alive")).stdout, "alive\n")
end)

T.case("a node whose server died reconnects for the next command", function()
  local extra = lab:start("revive")
  local n = nodes.new("revive", { ansible_host = "127.0.0.1", ansible_port = extra.port,
    ansible_ssh_private_key_file = lab.key, upgrun_known_hosts = lab.known_hosts })
  assert(n:run("true"))
  local t = task.spawn(function() return n:run("sleep 5; : revive-marker") end)
  T.wait_until(function() return proc.run({ "pgrep", "-f", "revive-marker" }).status == 0 end, 5,
    "the command to run on the node")
  -- kill only the per-connection sshd: the listener stays
  for _, c in ipairs(H.children(extra.pid)) do proc.kill(c, "KILL") end
  local ok, r, err = t:join(5)
  T.ok(ok); T.err("closed", r, err)
  r = assert(n:run("echo again"))
  T.eq(r.stdout, "again\n")
  local last
  for _, ev in ipairs(nodes.events) do if ev.type == "connect" and ev.node == "revive" then last = ev end end
  T.eq(last.reconnect, true)
  n:close(); lab:stop(extra)
end)

T.case("fan-out to 50 nodes, every result returned", function()
  local nl = inv:group("compute")
  T.eq(#nl, N)
  local t0 = time.mono()
  local res = nodes.fanout(nl, "echo $(hostname) ok", { timeout = 20 })
  local first = time.mono() - t0
  T.eq(res.ok, true); T.eq(#res, N)
  for i, r in ipairs(res) do T.eq(r.name, nl[i].name); T.ok(r.result.stdout:find("ok", 1, true)) end
  t0 = time.mono()
  res = nodes.fanout(nl, "true", { timeout = 20 })
  local second = time.mono() - t0
  T.eq(res.ok, true)
  io.write(string.format("     50 nodes: first fan-out (connect) %.2f s, second %.3f s\n", first, second))
  T.ok(second < 0.5, "second fan-out to connected nodes took " .. second)
end)

T.case("fan-out failures do not stop the others; stop_on_error does", function()
  local nl = { table.unpack(inv:group("compute"), 1, 10) }
  local res = nodes.fanout(nl, function(n)
    if n.name == "node3" then error("boom on node3") end
    return n:run(n.name == "node4" and "exit 9" or "echo fine")
  end)
  T.eq(res.ok, false)
  T.eq(table.concat(res.failed, ","), "node3,node4")
  T.ok(res.by_name.node3.err.message:find("boom", 1, true))
  T.eq(res.by_name.node4.result.status, 9)
  T.eq(res.by_name.node10.ok, true)

  res = nodes.fanout(nl, function(n) return n:run(n.name == "node2" and "exit 1" or "true") end,
    { concurrency = 1, stop_on_error = true })
  T.eq(res.by_name.node1.ok, true); T.eq(res.by_name.node2.ok, false)
  T.eq(res.by_name.node3.skipped, true); T.eq(#res, 10)
end)

T.case("concurrency bound and serial batches", function()
  local nl = { table.unpack(inv:group("compute"), 1, 12) }
  local running, peak, order = 0, 0, {}
  local function probe(n)
    running = running + 1; peak = math.max(peak, running)
    order[#order + 1] = n.name
    local r = n:run("sleep 0.2")
    running = running - 1
    return r
  end
  local t0 = time.mono()
  local res = nodes.fanout(nl, probe, { concurrency = 3 })
  T.eq(res.ok, true); T.eq(peak, 3)
  T.near(time.mono() - t0, 0.8, 0.4)
  peak = 0
  local batches = {}
  res = nodes.fanout(nl, function(n)
    batches[#batches + 1] = { n.name, time.mono() }
    return probe(n)
  end, { serial = 5 })
  T.eq(res.ok, true); T.eq(peak, 5)
  -- node6 (second batch) starts only after the first batch finished
  T.ok(batches[6][2] - batches[5][2] >= 0.19, "serial batches overlap")
end)

T.case("events: start/end, node, command, result; secrets hidden", function()
  nodes.clear_events()
  local seen = {}
  local off = nodes.on_event(function(ev) seen[#seen + 1] = ev end)
  local n = inv:host("node7")
  assert(n:run("echo token=SECRET-123 >/dev/null", { display = "echo token=*** >/dev/null" }))
  n:run("exit 2")
  off()
  n:run("true")
  T.eq(#seen, 2)
  local ev = seen[1]
  T.eq(ev.type, "command"); T.eq(ev.node, "node7"); T.eq(ev.ok, true); T.eq(ev.status, 0)
  T.ok(ev.start <= ev.finish and ev.wall_start > 1e9 and ev.duration >= 0)
  T.eq(ev.command, "echo token=*** >/dev/null")
  T.eq(seen[2].ok, false); T.eq(seen[2].status, 2)
  for _, e in ipairs(nodes.events) do
    for _, v in pairs(e) do T.ok(not tostring(v):find("SECRET-123", 1, true)) end
  end
  T.eq(#nodes.events, 3)
end)

T.case("an unreachable node and a bad key give errors, not exceptions", function()
  local dead = nodes.new("dead", { ansible_host = "127.0.0.1", ansible_port = 1,
    ansible_ssh_private_key_file = lab.key, upgrun_known_hosts = lab.known_hosts })
  T.err("connect", dead:run("true"))
  local n1 = list[1]
  local wrong = nodes.new("wrong", { ansible_host = "127.0.0.1", ansible_port = n1.port,
    ansible_ssh_private_key_file = H.keygen(lab.dir .. "/id_wrong"), upgrun_known_hosts = lab.known_hosts })
  T.err("auth", wrong:run("true"))
  local res = nodes.fanout({ dead, inv:host("node1") }, "true")
  T.eq(res.by_name.dead.err.kind, "connect"); T.eq(res.by_name.node1.ok, true)
end)

inv:close()
lab:cleanup()
return T.done()
