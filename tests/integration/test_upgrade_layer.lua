-- test_upgrade_layer — upgrun.upgrade (the project-neutral upgrade layer) in a
-- real run: a scenario written on the layer is run by upgrun against three real
-- sshd nodes whose service is a real process (fixtures/ssh_fakesvc.sh). Asserts
-- the order drain → start (health) → undrain node by node and in batches
-- (serial = 2), the code switch and release checks per node, project-prefixed
-- settings (--set over inventory var over default), choices and offered
-- releases refused with exit 2, a probe rate parameter driving the probe (0:
-- off), survival checks over ledger records, and upgrade.parallel raising with
-- every node's error (the failing function there fails on purpose).
local T = require "testlib"
local H = require "sshd_harness"
local proc = require "upgrun.proc"
local cjson = require "cjson"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FAKE = T.src("tests/integration/fixtures/ssh_fakesvc.sh")
local lab = H.new()
local nodes = { lab:start("n1"), lab:start("n2"), lab:start("n3") }
local D = lab.dir

-- Each node keeps its code release and its service's files in D/<node>/; the
-- drain/undrain/start commands append to D/events.log.
local host_lines = {}
for _, n in ipairs(nodes) do
  H.sh(string.format("mkdir -p '%s/%s' && echo r1 > '%s/%s/release'", D, n.name, D, n.name))
  host_lines[#host_lines + 1] = string.format([[
        %s:
          ansible_host: 127.0.0.1
          ansible_port: %d
          upgrun_services:
            app-api:
              backend: command
              start: "echo start {node} >> %s/events.log; %s start %s/{node} app-api"
              pidfile: "%s/{node}/app-api.pid"
              health: "%s health %s/{node} app-api"
              running_release: "%s release %s/{node} app-api"
              drain: "echo drain {node} >> %s/events.log"
              undrain: "echo undrain {node} >> %s/events.log"]], n.name, n.port, D, FAKE, D, D, FAKE, D, FAKE, D, D, D)
end
local INV = D .. "/inventory.yml"
H.writefile(INV, table.concat({
  "all:",
  "  vars:",
  "    ansible_user: " .. lab.user,
  "    ansible_ssh_private_key_file: " .. lab.key,
  "    upgrun_known_hosts: " .. lab.known_hosts,
  "    upgrun_releases: [r1, r2]",
  "    app_from_release: r1",
  "    app_to_release: r2",
  "    app_color: blue",
  "    app_code_switch: \"echo {release} > " .. D .. "/{node}/release\"",
  "    app_code_current: \"cat " .. D .. "/{node}/release\"",
  "  children:",
  "    app:",
  "      hosts:",
  table.concat(host_lines, "\n"),
}, "\n") .. "\n")

local SCENARIO = D .. "/layer_scenario.lua"
H.writefile(SCENARIO, [[
local upgrade = require "upgrun.upgrade"
local s = upgrade.scenario {
  project = "app", name = "layer_test", releases = { from = "r0", to = "r9" },
  strategies = { "rolling", "manual" },
  params = { serial = 1, color = "", mode = { default = "a", choices = { "a", "b" } } },
}
upgrade.probe(s, { name = "liveness", fn = function() return true end,
                   rate = { param = "live_rate", default = 4 }, stages = { "upgrade" } })
local P
s:setup(function(ctx) P = ctx.params; P.color = upgrade.setting(ctx, "app", "color", "red") end)
s:stage("before", function(ctx)
  local all = ctx.inventory:group("app")
  ctx:step("start", function()
    for _, n in ipairs(all) do upgrade.start(ctx, n, "app-api", { timeout = 20 }) end
  end)
  ctx:step("record", function()
    for _, n in ipairs(all) do ctx.ledger:record("thing", "id-" .. n.name, { name = "thing-" .. n.name }) end
    upgrade.check_code(ctx, "app", all, P.from_release)
  end)
  ctx:check("color is " .. P.color, true)
end)
s:stage("upgrade", function(ctx)
  local all = ctx.inventory:group("app")
  ctx:step("every node's error", { continue_on_error = true }, function()
    upgrade.parallel(ctx, all, function(n) if n.name ~= "n1" then error("failing on purpose", 0) end end)
  end)
  ctx:step("switch", function()
    upgrade.parallel(ctx, all, function(n) upgrade.switch_code(ctx, "app", n, P.to_release) end)
  end)
  ctx:step("roll", function()
    upgrade.rolling(ctx, all, function(n) upgrade.restart_step(ctx, n, "app-api", { grace = 5, timeout = 20 }) end,
      { serial = P.serial })
  end)
end)
s:stage("after", function(ctx)
  local all = ctx.inventory:group("app")
  upgrade.check_running_release(ctx, all, P.to_release)
  upgrade.check_code(ctx, "app", all, P.to_release)
  upgrade.survived(ctx, "thing", function(rec, check) check("survived", rec.id:match("^id%-") ~= nil, rec.id) end)
  for _, n in ipairs(all) do upgrade.stop(ctx, n, "app-api", { grace = 5 }) end
end)
return s
]])

local function run(name, ...)
  local out = D .. "/out-" .. name
  local argv = { BIN, SCENARIO, "-i", INV, "-o", out, "-q", "--set", "steady_settle=0", ... }
  local r = assert(proc.run(argv, { timeout = 180 }))
  local f = io.open(out .. "/report.json")
  local doc = f and cjson.decode(f:read("a"))
  if f then f:close() end
  return r, doc
end

local function events()
  local f = io.open(D .. "/events.log")
  local lines = {}
  if f then for l in f:lines() do lines[#lines + 1] = l end; f:close() end
  os.remove(D .. "/events.log")
  return table.concat(lines, ",")
end

local function result_of(doc, kind, name)
  local seen = {}
  for _, c in ipairs(doc[kind]) do
    local key = kind == "steps" and c.path or c.name
    if key == name then return c end
    seen[#seen + 1] = key
  end
  T.fail(string.format("no %s %q in the report (%s)", kind, name, table.concat(seen, " | ")), 2)
end

local function reset_releases()
  for _, n in ipairs(nodes) do H.sh(string.format("echo r1 > '%s/%s/release'", D, n.name)) end
end

T.case("node by node: drain, start until healthy, undrain; releases, settings, survival", function()
  reset_releases(); events()
  local r, doc = run("serial1")
  T.ok(doc, "report written: " .. r.stderr)
  T.eq(r.status, 1, "the on-purpose error fails the run")
  local ev = events()
  T.eq(ev, "start n1,undrain n1,start n2,undrain n2,start n3,undrain n3,"
    .. "drain n1,start n1,undrain n1,drain n2,start n2,undrain n2,drain n3,start n3,undrain n3,"
    .. "drain n1,drain n2,drain n3", "events")
  local failed = {}
  for _, c in ipairs(doc.checks) do if c.result ~= "passed" then failed[#failed + 1] = c.name end end
  T.eq(#failed, 0, "every check passed: " .. table.concat(failed, ", "))
  for _, n in ipairs({ "n1", "n2", "n3" }) do
    T.eq(result_of(doc, "checks", "app-api on " .. n .. " runs r2").result, "passed")
    T.eq(result_of(doc, "checks", n .. " code is on r1").stage, "before")
    T.eq(result_of(doc, "checks", n .. " code is on r2").result, "passed")
    T.eq(result_of(doc, "checks", "thing-" .. n .. " survived").result, "passed")
    T.eq(result_of(doc, "steps", "roll / " .. n .. " / restart app-api on " .. n).result, "passed")
  end
  result_of(doc, "checks", "color is blue") -- the inventory var app_color
  T.eq(doc.params.from_release, "r1"); T.eq(doc.params.to_release, "r2")
  local e = result_of(doc, "steps", "every node's error")
  T.eq(e.result, "failed")
  T.eq(e.error, "n2: failing on purpose; n3: failing on purpose")
  local live = doc.probes[1]
  T.eq(live.interval, 0.25, "live_rate 4/s")
  T.ok(live.sent > 0, "the probe ran during the upgrade stage")
end)

T.case("serial = 2: nodes in batches, a batch at once", function()
  reset_releases(); events()
  local r, doc = run("serial2", "--set", "serial=2", "--set", "color=green", "--set", "live_rate=0")
  T.eq(r.status, 1, r.stderr)
  T.eq(result_of(doc, "steps", "roll / n1, n2").result, "passed")
  T.eq(result_of(doc, "steps", "roll / n3").result, "passed")
  local ev = events()
  -- n1 and n2 restart together: both drained before either is started again
  local roll = {}
  for e in ev:match("undrain n3,(.*)$"):gmatch("[^,]+") do roll[#roll + 1] = e end
  local function pair(a, b) local t = { roll[a], roll[b] }; table.sort(t); return table.concat(t, ",") end
  T.eq(pair(1, 2), "drain n1,drain n2", "both drained before either restarts: " .. ev)
  local mid = { table.unpack(roll, 3, 6) }
  table.sort(mid)
  T.eq(table.concat(mid, ","), "start n1,start n2,undrain n1,undrain n2", ev)
  local pos = {}
  for i, e in ipairs(roll) do pos[e] = pos[e] or i end
  T.ok(pos["start n1"] < pos["undrain n1"] and pos["start n2"] < pos["undrain n2"], "start before undrain: " .. ev)
  T.eq(table.concat(roll, ",", 7, 9), "drain n3,start n3,undrain n3", "n3 after the first batch: " .. ev)
  result_of(doc, "checks", "color is green") -- --set wins over the inventory
  T.eq(doc.probes[1].sent, 0, "live_rate=0: the probe is off")
end)

T.case("choices and offered releases are checked before anything runs (exit 2)", function()
  local r = run("badmode", "--set", "mode=c")
  T.eq(r.status, 2)
  T.ok(r.stderr:find('--set mode: must be one of a, b, got "c"', 1, true), r.stderr)
  r = run("badstrategy", "--set", "strategy=fast")
  T.eq(r.status, 2)
  T.ok(r.stderr:find('--set strategy: must be one of rolling, manual, got "fast"', 1, true), r.stderr)
  r = run("badrel", "--set", "to_release=r3")
  T.eq(r.status, 2)
  T.ok(r.stderr:find('no release "r3" (offered: r1, r2)', 1, true), r.stderr)
  T.eq(events(), "", "nothing ran")
end)

T.case("scenarios/template.lua plans on a real inventory", function()
  local r = assert(proc.run({ BIN, T.src("scenarios/template.lua"), "-i", INV, "--plan", "--set", "from_release=r1",
                              "--set", "to_release=r2", "--set", "api_group=app", "--set", "api_service=app-api",
                              "--set", "other_services=app-worker" }, { timeout = 60 }))
  T.eq(r.status, 0, r.stderr)
  for _, want in ipairs({ "step 3. app-api node by node", "step restart app-api on n2", "drain n3",
                          "cinder volume list: every 0.2 s" }) do
    T.ok(r.stdout:find(want, 1, true), "plan shows " .. want .. ":\n" .. r.stdout)
  end
end)

lab:cleanup()
return T.done()
