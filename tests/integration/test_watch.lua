-- test_watch — the resource watch (s:watch, upgrun.watch_run) against a real
-- HTTP server the test starts (tests/lua/os_fixture_server.py: Keystone and
-- Nova with servers whose fields the test changes through /_control):
-- each change of a watched field is one transition stamped with the step
-- running, time outside the expected state is unavailability, a vanished
-- server is confirmed by a GET and reported once, 1,000 servers cost one
-- list request (limit/marker pages beyond), intended changes are not
-- unavailability; then whole runs of the binary: a run with a stop, an
-- intended restart and a deletion from an after-hook of the "db_migration"
-- step (report.json "watch", budget, junit, HTML, console, exit 1), and a
-- clean run (0 transitions, exit 0).
local T = require "testlib"
local proc = require "upgrun.proc"
local http = require "upgrun.http"
local cjson = require "cjson"
local openstack = require "upgrun.openstack"
local Timeline = require "upgrun.timeline"
local ledger_mod = require "upgrun.ledger"
local watch = require "upgrun.watch"
local watch_run = require "upgrun.watch_run"
local time = require "upgrun.time"

local BIN = os.getenv("UPGRUN_BIN") or "../../build/upgrun"
local TMP = T.tmpdir()

local server = assert(proc.spawn { argv = { "python3", T.src("tests/lua/os_fixture_server.py"), "300" },
  stderr = "inherit" })
local first = assert(server:read_line(10))
local PORT = assert(first:match("^PORT (%d+)$"), first)
local BASE = "http://127.0.0.1:" .. PORT

local function control(t)
  local r = assert(http.request { method = "POST", url = BASE .. "/_control", body = cjson.encode(t), timeout = 10 })
  T.eq(r.status, 200)
  return cjson.decode(r.body)
end
local function list_requests(clear)
  local r = assert(http.request { method = clear and "DELETE" or "GET", url = BASE .. "/_requests", timeout = 5 })
  local n, paths = 0, {}
  for _, q in ipairs(cjson.decode(r.body).requests) do
    if q.path:match("/servers/detail") then n = n + 1; paths[#paths + 1] = q.path end
  end
  return n, paths
end

local CLOUDS = TMP .. "/clouds.yaml"
do
  local f = assert(io.open(CLOUDS, "w"))
  f:write(string.format([[
clouds:
  fixture:
    auth:
      auth_url: %s/identity/v3
      username: admin
      password: fixture-pw
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
]], BASE))
  f:close()
end

local conn = assert(openstack.connect { cloud = "fixture", files = { CLOUDS }, secure_files = {}, env = {},
                                        timeout = 10 })
local ctx = { cloud = conn }

-- A watch run over a fresh in-memory ledger; `step` is what current_step() says.
local function new_run(spec)
  local tl = Timeline.new()
  local led = ledger_mod.new(nil)
  local h = { tl = tl, ledger = led, step = nil, vanished = {} }
  h.wr = watch_run.new(watch.new(spec or { kind = "server", every = 1 }), {
    tl = tl, ledger = led, current_step = function() return h.step end,
    event = function(kind, fields) tl:event(kind, fields) end,
    on_vanish = function(res) h.vanished[#h.vanished + 1] = res.id end,
  })
  return h
end

local function events(tl, kind)
  local out = {}
  for _, e in ipairs(tl.events) do if e.kind == kind then out[#out + 1] = e end end
  return out
end

T.case("s:watch: an unknown kind or a bad field is refused naming the declaring line", function()
  T.raises("unknown kind \"volumes\"", watch.new, { kind = "volumes" }, "x.lua:3")
  T.raises("x.lua:4: s:watch server: every must be > 0", watch.new, { kind = "server", every = 0 }, "x.lua:4")
  T.raises("unknown budget key max_downtime", watch.new, { kind = "server", budget = { max_downtime = 1 } }, "x")
end)

T.case("each change of a watched field is a transition with the step running; off-state time is unavailability",
  function()
  local ids = control({ servers_add = { n = 3, prefix = "tr-" } }).added
  local h = new_run()
  h.ledger:record("server", ids[1], { name = "tr-0" })
  h.ledger:record("server", ids[2], { name = "tr-1" }) -- ids[3] is not recorded: not watched
  assert(h.wr:poll(ctx))
  T.eq(#h.wr.resources, 2)
  T.eq(h.wr.resources[1].expected.status, "ACTIVE"); T.eq(h.wr.resources[1].expected.host, "cmp1")
  control({ servers_set = { [ids[1]] = { status = "SHUTOFF", ["OS-EXT-STS:power_state"] = 4 },
                            [ids[3]] = { status = "ERROR" } } })
  h.step = "stop it"
  local t_bad = h.tl:now()
  assert(h.wr:poll(ctx))
  assert(h.wr:poll(ctx)) -- no change: no transition
  time.sleep(0.3)
  control({ servers_set = { [ids[1]] = { status = "ACTIVE", ["OS-EXT-STS:power_state"] = 1 } } })
  h.step = "start it"
  local t_good = h.tl:now()
  assert(h.wr:poll(ctx))
  local ch = events(h.tl, "watch_change")
  T.eq(#ch, 2, "stop and start")
  T.eq(ch[1].changes, "status ACTIVE -> SHUTOFF, power_state 1 -> 4")
  T.eq(ch[1].step, "stop it"); T.eq(ch[1].name, "tr-0")
  T.eq(ch[2].changes, "status SHUTOFF -> ACTIVE, power_state 4 -> 1"); T.eq(ch[2].step, "start it")
  local win = h.wr.resources[1].windows
  T.eq(#win, 1)
  T.ok(win[1].start >= t_bad and win[1]["end"] >= t_good, "window stamped with the polls' send times")
  T.near(win[1].duration, t_good - t_bad, 0.1, "unavailable from the poll that saw SHUTOFF to the one that saw ACTIVE")
  T.eq(win[1].state, "status SHUTOFF (expected ACTIVE)")
  T.eq(#h.wr.resources[2].transitions, 0)
  T.eq(#h.vanished, 0)
end)

T.case("a host change is outside the expected state (same host); a scenario's expect overrides it", function()
  local ids = control({ servers_add = { n = 1, prefix = "mv-" } }).added
  local h = new_run()
  h.ledger:record("server", ids[1], { name = "mv-0" })
  assert(h.wr:poll(ctx))
  control({ servers_set = { [ids[1]] = { ["OS-EXT-SRV-ATTR:host"] = "cmp2" } } })
  assert(h.wr:poll(ctx))
  h.wr:finish(h.tl:now())
  local w = h.wr.resources[1].windows
  T.eq(#w, 1); T.eq(w[1].state, "host cmp2 (expected cmp1)"); T.eq(w[1].open, true)
  -- expect = {status = "ACTIVE"}: a move is a change, not unavailability
  local h2 = new_run({ kind = "server", every = 1, expect = { status = "ACTIVE" } })
  h2.ledger:record("server", ids[1], { name = "mv-0" })
  assert(h2.wr:poll(ctx))
  control({ servers_set = { [ids[1]] = { ["OS-EXT-SRV-ATTR:host"] = "cmp3" } } })
  assert(h2.wr:poll(ctx))
  T.eq(#h2.wr.resources[1].transitions, 1); T.eq(#h2.wr.resources[1].windows, 0)
end)

T.case("a vanished server is confirmed by a GET, reported once with the step, unavailable to the end", function()
  local ids = control({ servers_add = { n = 2, prefix = "gone-" } }).added
  local h = new_run()
  h.ledger:record("server", ids[1], { name = "gone-0" })
  h.ledger:record("server", ids[2], { name = "gone-1" })
  assert(h.wr:poll(ctx))
  control({ servers_remove = { ids[1] } })
  h.step = "3. DB expansion"
  local before = h.wr.requests
  assert(h.wr:poll(ctx))
  T.eq(h.wr.requests - before, 2, "the list call and one GET to confirm")
  assert(h.wr:poll(ctx))
  T.eq(#h.vanished, 1, "reported once"); T.eq(h.vanished[1], ids[1])
  local v = events(h.tl, "watch_vanished")
  T.eq(#v, 1); T.eq(v[1].step, "3. DB expansion"); T.eq(v[1].name, "gone-0")
  h.wr:finish(h.tl:now() + 5)
  local w = h.wr.resources[1].windows
  T.eq(#w, 1); T.eq(w[1].vanished, true); T.eq(w[1].open, true)
  T.ok(w[1].duration >= 5, "unavailable until the end")
  T.eq(h.wr.resources[2].vanished, nil)
end)

T.case("1,000 servers cost one list request; more are paged with limit/marker", function()
  control({ servers = {} })
  local ids = control({ servers_add = { n = 1000, prefix = "many-" } }).added
  local h = new_run()
  for i = 1, 1000, 7 do h.ledger:record("server", ids[i], { name = "many-" .. i }) end
  list_requests(true)
  assert(h.wr:poll(ctx))
  local n, paths = list_requests(true)
  T.eq(n, 1, "one request for 1,000 servers")
  T.ok(paths[1]:find("all_tenants=True", 1, true) and paths[1]:find("limit=1000", 1, true), paths[1])
  control({ servers_add = { n = 1500, prefix = "more-" } })
  assert(h.wr:poll(ctx))
  n, paths = list_requests(true)
  T.eq(n, 3, "2,500 servers: three pages of 1,000")
  T.ok(paths[2]:find("marker=", 1, true), paths[2])
  T.eq(h.wr.requests, 2, "no GET: every recorded server was on some page")
  for _, res in ipairs(h.wr.resources) do T.eq(res.vanished, nil); T.eq(#res.transitions, 0) end
  control({ servers = {} })
end)

T.case("intended changes (ctx:intend) are recorded as such and are not unavailability", function()
  local ids = control({ servers_add = { n = 1, prefix = "int-" } }).added
  local h = new_run()
  h.ledger:record("server", ids[1], { name = "int-0" })
  assert(h.wr:poll(ctx))
  h.wr:intend(ids[1], function()
    control({ servers_set = { [ids[1]] = { status = "SHUTOFF" } } })
    assert(h.wr:poll(ctx))
    control({ servers_set = { [ids[1]] = { status = "ACTIVE" } } })
  end)
  assert(h.wr:poll(ctx))
  local res = h.wr.resources[1]
  T.eq(#res.transitions, 2); T.eq(res.transitions[1].intended, true); T.eq(res.transitions[2].intended, true)
  T.eq(#res.windows, 0)
end)

T.case("a failed list call concludes nothing and is reported once per streak", function()
  local fails = true
  local ids = control({ servers_add = { n = 1, prefix = "err-" } }).added
  local h = new_run({ kind = "server", every = 1, fields = watch.KINDS.server.fields,
    list = function(c, w)
      if fails then return nil, { kind = "http", status = 503, message = "503 Service Unavailable" } end
      return watch.KINDS.server.list(c, w)
    end })
  h.ledger:record("server", ids[1], { name = "err-0" })
  T.eq(h.wr:poll(ctx), nil)
  T.eq(h.wr:poll(ctx), nil)
  T.eq(h.wr.list_errors, 2); T.eq(#events(h.tl, "watch_error"), 1)
  T.eq(#h.vanished, 0); T.eq(#h.wr.resources, 0)
  fails = false
  assert(h.wr:poll(ctx))
  T.eq(#h.wr.resources, 1); T.eq(h.wr.polls, 1)
end)

-- ---- whole runs of the binary ------------------------------------------------

local SCENARIO = TMP .. "/watch_e2e.lua"
do
  local f = assert(io.open(SCENARIO, "w"))
  f:write([=[
local scenario = require "upgrun.scenario"
local http = require "upgrun.http"
local cjson = require "cjson"
local s = scenario.new { name = "watch_e2e", params = { base = "", mode = "faults" } }
s:watch { kind = "server", every = 0.25, budget = { max_unavailable = 1 } }
local ids
local function control(ctx, t)
  local r = assert(http.request { method = "POST", url = ctx.params.base .. "/_control", body = cjson.encode(t),
                                  timeout = 5 })
  return cjson.decode(r.body)
end
local function set(ctx, id, status) control(ctx, { servers_set = { [id] = { status = status } } }) end
s:stage("before", function(ctx)
  ctx:step("persistent servers", function()
    ids = control(ctx, { servers_add = { n = 3, prefix = "persist-" } }).added
    for i, id in ipairs(ids) do ctx.ledger:record("server", id, { name = "persist-" .. i }) end
    ctx:sleep(0.6)
  end)
end)
s:stage("upgrade", function(ctx)
  if ctx.params.mode == "faults" then
    ctx:step("stop persist-1 for 1.5 s", function()
      set(ctx, ids[1], "SHUTOFF"); ctx:sleep(1.5); set(ctx, ids[1], "ACTIVE"); ctx:sleep(0.6)
    end)
    ctx:step("restart persist-2 on purpose", function()
      ctx:intend("server", ids[2], function()
        set(ctx, ids[2], "SHUTOFF"); ctx:sleep(0.6); set(ctx, ids[2], "ACTIVE")
      end)
      ctx:sleep(0.6)
    end)
  end
  ctx:step { name = "3. DB expansion", hook_point = "db_migration", fn = function() ctx:sleep(0.3) end }
  ctx:step("4. controllers", function() ctx:sleep(0.6) end)
end)
s:hook("db_migration", "after", function(ctx)
  if ctx.params.mode == "faults" then control(ctx, { servers_remove = { ids[3] } }); ctx:sleep(0.8) end
end)
return s
]=])
  f:close()
end

local function run_scenario(mode)
  local out = TMP .. "/out-" .. mode
  local r = assert(proc.run({ BIN, SCENARIO, "--cloud", "fixture", "-o", out, "--set", "base=" .. BASE,
                              "--set", "mode=" .. mode },
                            { timeout = 120, env_add = { OS_CLIENT_CONFIG_FILE = CLOUDS } }))
  local f = assert(io.open(out .. "/report.json"), "no report.json: " .. r.stdout .. r.stderr)
  local doc = cjson.decode(f:read("a"))
  f:close()
  T.valid_report(out)
  return r, doc, out
end

local function by_name(w, name)
  for _, res in ipairs(w.resources) do if res.name == name then return res end end
  error("no resource " .. name)
end

T.case("a run: stop, intended restart, deletion in an after-hook -> report.json watch, budget, junit, html, exit 1",
  function()
  local r, doc, out = run_scenario("faults")
  io.write(r.stdout:match("\n(== .*)$") or r.stdout)
  T.eq(r.status, 1, "a vanished server fails the run: " .. r.stdout .. r.stderr)
  local w = doc.watch[1]
  T.eq(w.kind, "server"); T.eq(#w.resources, 3)
  T.ok(w.polls > 10, "polled every 0.25 s: " .. w.polls)
  local p1 = by_name(w, "persist-1")
  T.eq(#p1.transitions, 2); T.eq(p1.transitions[1].step, "stop persist-1 for 1.5 s")
  T.eq(p1.transitions[1].intended, nil)
  T.eq(#p1.windows, 1)
  T.near(p1.unavailable, 1.5, 0.25 + 0.15, "1.5 s ± the interval")
  T.eq(p1.windows[1].during[1], "stop persist-1 for 1.5 s")
  T.eq(p1.unavailable_per_step[1].step, "stop persist-1 for 1.5 s")
  local p2 = by_name(w, "persist-2")
  T.eq(#p2.transitions, 2); T.eq(p2.transitions[1].intended, true); T.eq(p2.unavailable, 0)
  local p3 = by_name(w, "persist-3")
  T.ok(p3.vanished, "persist-3 vanished")
  local during = table.concat(p3.vanished.during, "; ")
  T.ok(during:find("hook after db_migration (of 3. DB expansion)", 1, true), during)
  T.eq(p3.vanished.step, "hook after db_migration (of 3. DB expansion)", "seen gone while the hook ran")
  T.eq(w.vanished, 1); T.eq(w.unexpected_transitions, 2); T.eq(w.intended_transitions, 2)
  -- budget max_unavailable = 1 s: persist-1 (1.5 s) fails it, persist-2 passes
  local fails = {}
  for _, b in ipairs(doc.budgets) do
    if b.key == "max_unavailable" and b.status == "fail" then fails[#fails + 1] = b.probe end
  end
  T.ok(table.concat(fails, ","):find("watch server persist-1", 1, true), table.concat(fails, ","))
  local kinds = {}
  for _, e in ipairs(doc.timeline) do kinds[e.kind] = (kinds[e.kind] or 0) + 1 end
  T.eq(kinds.watch_change, 4); T.eq(kinds.watch_vanished, 1)
  local junit = T.read(out .. "/junit.xml")
  T.ok(junit:find('classname="watch_e2e.watch" name="watch server', 1, true), "a testcase per watched kind")
  T.ok(junit:find("persist-3 (" .. p3.id .. ") vanished", 1, true), "the failure names the vanished server")
  local html = T.read(out .. "/report.html")
  T.ok(html:find(">watch server</text>", 1, true), "a lane per watched kind")
  T.ok(html:find("Watched resources", 1, true))
  T.ok(r.stdout:find("watched resources:", 1, true) and r.stdout:find("watch: server persist-3", 1, true), r.stdout)
end)

T.case("a clean run: 0 transitions, nothing unavailable, exit 0", function()
  local r, doc = run_scenario("clean")
  T.eq(r.status, 0, r.stdout .. r.stderr)
  local w = doc.watch[1]
  T.eq(#w.resources, 3); T.eq(w.transitions, 0); T.eq(w.unavailable, 0); T.eq(w.vanished, 0)
  T.eq(w.list_errors, 0)
end)

server:kill("TERM")
server:wait(5)
os.execute("rm -rf '" .. TMP .. "'")
return T.done()
