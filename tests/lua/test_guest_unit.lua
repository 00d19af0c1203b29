-- test_guest_unit — the pure parts of the guest checks and the ssh probe:
-- a server's address, Tempest's hostname and server-details comparisons
-- (upgrun.nova.guest), the ssh probe's error kinds (upgrun.probe_ssh) and a
-- probe function's NOT_SENT (recorded as skipped, ignored by outages).
local T = require "testlib"
local guest = require "upgrun.nova.guest"
local probe_ssh = require "upgrun.probe_ssh"
local probe = require "upgrun.probe"
local errors = require "upgrun.errors"

T.case("address: the first fixed IPv4, else any", function()
  T.eq(guest.address { addresses = { ["upgrun-lab-net"] = {
    { addr = "fd00::5", version = 6 }, { addr = "10.99.0.12", version = 4, ["OS-EXT-IPS:type"] = "fixed" } } } },
    "10.99.0.12")
  T.eq(guest.address { addresses = { n = { { addr = "fd00::5", version = 6 } } } }, "fd00::5")
  T.eq(guest.address { addresses = {} }, nil)
  T.eq(guest.address {}, nil)
  local t = guest.target({ addresses = { n = { { addr = "10.99.0.7", version = 4 } } } }, { netns = "ns1" })
  T.eq(t.host, "10.99.0.7"); T.eq(t.port, 22); T.eq(t.netns, "ns1")
  T.eq(guest.target({ addresses = { n = { { addr = "10.99.0.7", version = 4 } } } }, { netns = "" }).netns, nil)
end)

T.case("hostname as Tempest compares it: lower-cased name, hostname up to its first dot", function()
  T.ok(guest.hostname_matches("upgrun-lifecycle-before-1", "upgrun-lifecycle-before-1\n"))
  T.ok(guest.hostname_matches("Upgrun-X", "upgrun-x.novalocal"))
  T.ok(not guest.hostname_matches("upgrun-x", "upgrun-y"))
  T.ok(not guest.hostname_matches("upgrun-x", ""))
end)

T.case("server details as test_verify_server_details checks them", function()
  local srv = { name = "s1", accessIPv4 = "1.1.1.1", accessIPv6 = "::babe:dc0c:1602", image = { id = "img" },
                flavor = { original_name = "upgrun.tiny", vcpus = 1 }, metadata = { hello = "world" } }
  local expect = { name = "s1", image_id = "img", flavor_name = "upgrun.tiny", flavor_id = "f1" }
  T.ok(guest.details(srv, expect))
  srv.metadata = { hello = "world", extra = "x" }
  local ok, detail = guest.details(srv, expect)
  T.eq(ok, false); T.ok(detail:find("metadata", 1, true), detail)
  srv.metadata = { hello = "world" }
  srv.flavor = { id = "f1" } -- below microversion 2.47: a link with the id
  T.ok(guest.details(srv, expect))
  srv.accessIPv6 = guest.ACCESS_IPV6 -- not canonical: Tempest compares the RFC 5952 form
  T.eq((guest.details(srv, expect)), false)
end)

T.case("ssh probe error kinds", function()
  T.eq(probe_ssh.connect_error(errors.new("connect", "connect to 10.0.0.1:22: Connection refused")).kind, "refused")
  T.eq(probe_ssh.connect_error(errors.new("connect", "connect to 10.0.0.1:22: No route to host")).kind,
       "unreachable")
  T.eq(probe_ssh.connect_error(errors.new("connect", "SSH handshake with x failed")).kind, "connect")
  T.eq(probe_ssh.connect_error(errors.new("timeout", "connecting ... (in TCP connect)")).kind, "timeout")
  T.eq(probe_ssh.connect_error(errors.new("hostkey", "changed")).kind, "hostkey")
  T.eq(probe_ssh.connect_error(errors.new("auth", "refused")).kind, "auth")
  T.eq(probe_ssh.connect_error(errors.new("closed", "lost")).kind, "connect")
  T.eq(probe_ssh.exec_error("true", { status = 0 }), nil)
  T.eq(probe_ssh.exec_error("true", { status = 1, stderr = "" }).kind, "exec")
  T.ok(probe_ssh.exec_error("true", { signal = "KILL" }).message:find("SIGKILL", 1, true))
  T.eq(probe_ssh.exec_error("true", nil, errors.new("timeout", "x")).kind, "timeout")
  T.eq(probe_ssh.exec_error("true", nil, errors.new("channel", "x")).kind, "exec")
  -- timeouts are unknown, the others fail
  T.eq((probe.classify(nil, errors.new("timeout", "x"))), "unknown")
  T.eq((probe.classify(nil, errors.new("refused", "x"))), "fail")
end)

T.case("a probe declared with ssh = {...}: kind, service, url, self-timed", function()
  local p = probe.new { name = "g", interval = 1, timeout = 3,
                        ssh = { target = { host = "10.99.0.3", netns = "ns" }, user = "root", key = "/k" } }
  T.eq(p.kind, "ssh"); T.eq(p.service, "guests"); T.eq(p.self_timed, true)
  T.eq(p.url, "ssh root@10.99.0.3:22 true (netns ns)")
  T.raises("steady must be", probe.new, { name = "x", fn = function() end, steady = "start" })
end)

T.case("NOT_SENT is a skipped sample with its reason", function()
  local r, st, kind, msg = probe.classify(probe.NOT_SENT, "no server yet")
  T.eq(r, "skipped"); T.eq(st, nil); T.eq(kind, "not_sent"); T.eq(msg, "no server yet")
end)

T.case("Tempest validates only guests it can reach (no validation namespace)", function()
  local ts = require "upgrun.nova.tempest_suite"
  T.eq(ts.tempest_validation { validation = true, validation_netns = "" }, true)
  T.eq(ts.tempest_validation { validation = true, validation_netns = "upgrun-lab-guests" }, false)
  T.eq(ts.tempest_validation { validation = false, validation_netns = "" }, false)
end)

return T.done()
