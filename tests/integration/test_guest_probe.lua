-- test_guest_probe — the data-plane probe kind "ssh" (upgrun.probe_ssh) against
-- a real OpenSSH sshd running inside a network namespace, reached through
-- ssh.connect{netns=} as the lab's guests are: no outage while the guest is up;
-- the guest's sshd killed for a measured time and restarted gives one outage of
-- that length (± the probe interval + slack), attributed to the step during which
-- it happened, with the sample errors named (refused); then the failure kinds one
-- by one (refused, auth, exec, a host key that changes mid-run, no target).
-- Needs root (ip netns); skipped otherwise.
local T = require "testlib"
local H = require "sshd_harness"
local cjson = require "cjson"
local ssh = require "upgrun.ssh"
local time = require "upgrun.time"
local probe = require "upgrun.probe"

if ssh.local_account().user ~= "root" then
  T.case("guest probe needs root", function() T.skip("not root: ip netns cannot create a namespace") end)
  return T.done()
end

local NS = "upgrun-t-guest-" .. tostring(math.random(100000, 999999))
H.netns_add(NS)
local lab = H.new()
local guest = lab:start("guest", { netns = NS, host_key = "new" })
local INTERVAL = 0.2
local SLACK = 0.15 * T.slack

local function ssh_spec(extra)
  local sp = { target = { host = "127.0.0.1", port = guest.port, netns = NS }, user = lab.user, key = lab.key }
  for k, v in pairs(extra or {}) do sp[k] = v end
  return sp
end

local function report(out)
  T.valid_report(out)
  return cjson.decode(T.read(out .. "/report.json"))
end

local function samples(out)
  local list = {}
  for line in T.read(out .. "/samples.jsonl"):gmatch("[^\n]+") do list[#list + 1] = cjson.decode(line) end
  return list
end

T.case("a guest that stays up: no outage, ok latency reported", function()
  local scenario = require "upgrun.scenario"
  local out = T.tmpdir()
  local s = scenario.new { name = "guest-up", steady = { settle = 0 } }
  s:probe { name = "guest ssh", interval = INTERVAL, timeout = 2, ssh = ssh_spec() }
  s:stage("upgrade", function(ctx) ctx:step("idle", function() time.sleep(2) end) end)
  T.eq(s:run({ "-o", out, "-q" }, "guest-up"), 0)
  local doc = report(out)
  local pr = doc.probes[1]
  T.eq(pr.kind, "ssh")
  T.eq(pr.service, "guests")
  T.ok(pr.url:find("netns " .. NS, 1, true), pr.url)
  T.eq(#pr.outages, 0, "outages")
  T.ok(pr.counts.ok >= 9, "ok samples: " .. tostring(pr.counts.ok))
  T.eq(pr.counts.fail, 0)
  local lat = pr.latency
  io.stderr:write(string.format("  fresh SSH login + `true` per sample: p50 %.1f ms, p95 %.1f ms over %d samples\n",
    lat.p50 * 1000, lat.p95 * 1000, pr.counts.ok))
  -- the run-scoped known_hosts holds the guest's key after the first sample
  T.ok(T.read(out .. "/known_hosts.guests"):find("[127.0.0.1]:" .. guest.port, 1, true))
  os.execute("rm -rf '" .. out .. "'")
end)

T.case("the guest's sshd down for a measured time: one outage of that length, in that step", function()
  local scenario = require "upgrun.scenario"
  local out = T.tmpdir()
  local truth = {}
  local s = scenario.new { name = "guest-outage", steady = { settle = 0 } }
  s:probe { name = "guest ssh", interval = INTERVAL, timeout = 2, ssh = ssh_spec() }
  s:stage("upgrade", function(ctx)
    ctx:step("idle", function() time.sleep(1.5) end)
    ctx:step("guest down", function()
      truth.start = ctx.timeline:now()
      lab:kill_all(guest, "KILL")
      time.sleep(1.5)
      lab:restart(guest)
      truth["end"] = ctx.timeline:now()
    end)
    ctx:step("settle", function() time.sleep(1.5) end)
  end)
  T.eq(s:run({ "-o", out, "-q" }, "guest-outage"), 0)
  local doc = report(out)
  local pr = doc.probes[1]
  T.eq(#pr.outages, 1, "outages")
  local o = pr.outages[1]
  local len = truth["end"] - truth.start
  io.stderr:write(string.format("  sshd down %.3f s; reported outage %.3f s (± %.3f), steps %s\n",
    len, o.duration, o.uncertainty or -1, table.concat(o.steps, ", ")))
  T.near(o.duration, len, INTERVAL + SLACK, "outage duration")
  T.near(o.start, truth.start, INTERVAL + SLACK, "outage start")
  -- the outage is the step's: its end (the first ok sample after the restart) may fall
  -- into the next step by less than one interval
  T.eq(o.steps[1], "guest down")
  local per = {}
  for _, d in ipairs(pr.downtime_per_step) do per[d.step] = d.seconds end
  T.near(per["guest down"], len, INTERVAL + SLACK)
  T.ok((per["settle"] or 0) <= INTERVAL + SLACK, "settle's share " .. tostring(per["settle"]))
  T.eq(per["idle"], nil)
  -- the failed samples say why: the TCP connection was refused
  local kinds = {}
  for _, sm in ipairs(samples(out)) do if sm.result ~= "ok" then kinds[sm.err or "?"] = true end end
  T.ok(kinds.refused, "sample errors: " .. cjson.encode(kinds))
  os.execute("rm -rf '" .. out .. "'")
end)

T.case("steady = \"end\": a guest the scenario creates does not block the start", function()
  local scenario = require "upgrun.scenario"
  local out = T.tmpdir()
  local exists = false
  local s = scenario.new { name = "guest-steady", steady = { settle = 0.6, deadline = 5 } }
  s:probe { name = "api", interval = 0.1, fn = function() return true end }
  s:probe { name = "guest ssh", interval = INTERVAL, timeout = 2, steady = "end",
            ssh = ssh_spec { target = function()
              if not exists then return nil, "no server yet" end
              return { host = "127.0.0.1", port = guest.port, netns = NS }
            end } }
  s:stage("upgrade", function(ctx) ctx:step("create", function() exists = true; time.sleep(1) end) end)
  T.eq(s:run({ "-o", out, "-q" }, "guest-steady"), 0)
  local doc = report(out)
  T.eq(doc.steady_state.start.result, "steady")
  T.eq(doc.steady_state["end"].result, "steady")
  local g = doc.probes[2]
  T.eq(g.name, "guest ssh")
  T.ok(g.counts.ok >= 3, "guest ok samples " .. tostring(g.counts.ok))
  T.eq(#g.outages, 0, "no outage: the guest was not probed before it existed")
  os.execute("rm -rf '" .. out .. "'")
end)

-- One sample of an ssh probe, called directly: ok, err.
local function sample(spec, ctx, timeout)
  local p = probe.new { name = "one", interval = 1, timeout = timeout or 3, ssh = spec }
  return p.fn(ctx or { out = lab.dir }, p)
end

T.case("failure kinds: refused, auth, exec, no target", function()
  T.ok(sample(ssh_spec()))
  T.err("refused", sample(ssh_spec { target = { host = "127.0.0.1", port = guest.port + 1, netns = NS } }))
  local other = H.keygen(lab.dir .. "/other_key")
  T.err("auth", sample(ssh_spec { key = other }))
  local e = T.err("exec", sample(ssh_spec { command = "exit 3" }))
  T.ok(e.message:find("exited 3", 1, true), e.message)
  e = T.err("no_target", sample(ssh_spec { target = function() return nil, "server gone" end }))
  T.eq(e.message, "server gone")
  -- a TCP connect that gets no answer: unknown (timeout) naming the phase
  local ok, err = sample(ssh_spec { target = { host = "10.255.255.1", netns = NS } }, nil, 1)
  T.eq(ok, nil)
  T.ok(err.kind == "unreachable" or err.kind == "timeout", tostring(err))
  local res = probe.classify(nil, { kind = "timeout" })
  T.eq(res, "unknown")
end)

T.case("a host key that changes mid-run is a failure, named", function()
  local kh = lab.dir .. "/kh.run"
  H.writefile(kh, "")
  local spec = ssh_spec { known_hosts = kh }
  T.ok(sample(spec))                -- first contact: accept-new records the key
  T.ok(sample(spec))
  lab:kill_all(guest, "KILL")
  -- the same guest address comes back with another host key
  local cfg = H.readfile(guest.dir .. "/sshd_config")
  local newkey = H.keygen(guest.dir .. "/ssh_host_ed25519_key2")
  H.writefile(guest.dir .. "/sshd_config", (cfg:gsub("HostKey [^\n]+", "HostKey " .. newkey)))
  lab:restart(guest)
  local e = T.err("hostkey", sample(spec))
  T.ok(e.message ~= "", e.message)
end)

lab:cleanup()
H.netns_del(NS)
return T.done()
