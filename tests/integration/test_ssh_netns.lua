-- test_ssh_netns — ssh.connect{netns=} against a real OpenSSH sshd running
-- inside a network namespace (as the lab's guests do): reachable with the
-- namespace's name, refused without it (nothing listens on that port in the
-- root namespace), a TCP connect bounded by connect_timeout, and a missing
-- namespace or a host name instead of an address named in the error. Needs
-- root (ip netns); skipped otherwise.
local T = require "testlib"
local H = require "sshd_harness"
local ssh = require "upgrun.ssh"

if ssh.local_account().user ~= "root" then
  T.case("netns needs root", function() T.skip("not root: ip netns cannot create a namespace") end)
  return T.done()
end

local NS = "upgrun-t-ssh-" .. tostring(math.random(100000, 999999))
H.netns_add(NS)
local lab = H.new()
local ok_start, n = pcall(lab.start, lab, "guest", { netns = NS })

local function opts(extra)
  local o = { host = "127.0.0.1", port = n.port, user = lab.user, key = lab.key,
              known_hosts = n.known_hosts, agent = false, timeout = 5 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

T.case("sshd started inside the namespace", function() T.ok(ok_start, tostring(n)) end)

T.case("reachable with netns: the command runs in the namespace", function()
  local s, err = ssh.connect(opts { netns = NS })
  T.ok(s, err and err.message)
  local r = assert(s:exec("ip netns identify $$"))
  T.eq(r.status, 0)
  T.eq(r.stdout, NS .. "\n")
  T.eq(s:info().netns, NS)
  s:close()
end)

T.case("not reachable without it (refused in the root namespace)", function()
  local err = T.err("connect", ssh.connect(opts()))
  T.ok(err.message:find("refused", 1, true), err.message)
end)

T.case("upgrun itself stays in the root namespace", function()
  -- a child inherits upgrun's namespace: `ip netns identify` (its own) names none
  local r = assert(require("upgrun.proc").run({ "ip", "netns", "identify" }, { timeout = 10 }))
  T.eq(r.status, 0)
  T.eq(r.stdout, "\n")
  -- and a second connection without netns still sees the root namespace: refused again
  T.err("connect", ssh.connect(opts()))
end)

T.case("a missing namespace is named", function()
  local err = T.err("connect", ssh.connect(opts { netns = NS .. "-missing" }))
  T.ok(err.message:find("netns " .. NS .. "-missing: cannot open /run/netns/", 1, true), err.message)
end)

T.case("misuse raises: a path, or a host name with netns", function()
  T.raises("netns", ssh.connect, opts { netns = "../x" })
  T.raises("must be an address with netns", ssh.connect, opts { netns = NS, host = "localhost" })
end)

T.case("connect_timeout bounds the TCP connect alone: an address nobody answers ARP for", function()
  -- a veth pair made inside the namespace: 10.203.0.1/24 on one end, nobody at .2, so a
  -- connect to .2 waits in ARP (Linux gives up after ~3 s) as one to a vanished guest does
  local time = require "upgrun.time"
  assert(os.execute("ip netns exec '" .. NS .. "' sh -c 'ip link add ua type veth peer name ub && "
    .. "ip addr add 10.203.0.1/24 dev ua && ip link set ua up && ip link set ub up'"))
  local t0 = time.mono()
  local err = T.err("timeout", ssh.connect(opts { netns = NS, host = "10.203.0.2", port = 22,
                                                  connect_timeout = 0.5, timeout = 5 }))
  local took = time.mono() - t0
  T.ok(err.message:find("timed out after 0.5s (in TCP connect)", 1, true), err.message)
  T.ok(took >= 0.45 and took < 2 * T.slack, string.format("gave up after %.3f s", took))
  -- connected in time, the rest (handshake, authentication) has what is left of `timeout`
  local s, e2 = ssh.connect(opts { netns = NS, connect_timeout = 0.5, timeout = 5 })
  T.ok(s, e2 and e2.message)
  s:close()
  T.raises("connect_timeout", ssh.connect, opts { connect_timeout = 0 })
end)

T.case("empty netns is the root namespace", function()
  T.err("connect", ssh.connect(opts { netns = "" }))
end)

lab:cleanup()
H.netns_del(NS)
return T.done()
