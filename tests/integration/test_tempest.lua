-- test_tempest — upgrun.tempest against Debian's real tempest (no cloud
-- needed): the generated tempest.conf (from a real clouds.yaml resolved by
-- upgrun.openstack.config) is one Tempest accepts; a real run of two tests
-- gives, through `tempest run --subunit` and subunit-2to1, a skip with
-- Tempest's own reason (live migration disabled in the conf) and a failure
-- with the traceback's tail (the cloud's Keystone is a closed port); the
-- subunit v1 parser reads Debian's subunit-output streams (success, fail
-- with a traceback, skip with a reason, times); a run over its timeout has
-- its whole process group (tempest and its stestr workers) stopped, and a
-- cancelled one has it killed.
local T = require "testlib"
local tempest = require "upgrun.tempest"
local config = require "upgrun.openstack.config"
local proc = require "upgrun.proc"

local function have(prog)
  local r = proc.run({ "sh", "-c", "command -v " .. prog }, { timeout = 10 })
  return r and r.status == 0
end

local TMP = assert(proc.run({ "mktemp", "-d", "/tmp/upgrun-tempest.XXXXXX" }, { check = true })).stdout:gsub("%s+$", "")
local function write(path, text)
  local f = assert(io.open(path, "w")); f:write(text); f:close()
end
local function read(path)
  local f = assert(io.open(path)); local s = f:read("a"); f:close(); return s
end

local SECRET = "s3cr3t-Pw"
write(TMP .. "/clouds.yaml", [[
clouds:
  closed:
    auth:
      auth_url: http://127.0.0.1:9/v3
      username: admin
      password: ]] .. SECRET .. [[

      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
]])
local CLOUD = assert(config.resolve { cloud = "closed", files = { TMP .. "/clouds.yaml" }, env = {} })

local LIVE = "tempest.api.compute.admin.test_live_migration.LiveMigrationTest.test_live_block_migration"
local FLAVORS = "tempest.api.compute.flavors.test_flavors.FlavorsV2TestJSON.test_list_flavors"

T.case("the subunit v1 parser reads Debian's subunit streams", function()
  if not have("subunit-output") then T.skip("python3-subunit is not installed") end
  write(TMP .. "/tb.txt", "Traceback (most recent call last):\n  File \"x.py\", line 1\nAssertionError: boom\n")
  write(TMP .. "/reason.txt", "no validation network")
  local r = assert(proc.run({ "sh", "-c", [[
    set -e; cd "$1"
    { subunit-output --inprogress t.a; subunit-output --success t.a
      subunit-output --inprogress t.b; subunit-output --fail t.b --attach-file tb.txt --file-name traceback
      subunit-output --skip t.c --attach-file reason.txt --file-name reason; } | subunit-2to1]], "sh", TMP },
    { timeout = 60, check = true }))
  local tests = tempest.parse_v1(r.stdout)
  T.eq(#tests, 3)
  T.eq(tests[1].id, "t.a"); T.eq(tests[1].result, "passed")
  T.ok(tests[1].start and tests[1].stop and tests[1].stop >= tests[1].start, "timed")
  T.ok(math.abs(tests[1].start - os.time()) < 120, "start is UTC epoch: " .. tostring(tests[1].start))
  T.eq(tests[2].result, "failed")
  T.eq(tempest.detail(tests[2]), "Traceback (most recent call last):\n  File \"x.py\", line 1\nAssertionError: boom")
  T.eq(tests[3].result, "skipped")
  T.eq(tempest.detail(tests[3]), "no validation network")
end)

T.case("a real tempest run: a skip with Tempest's reason, a failure with the traceback tail", function()
  if not have("tempest") then T.skip("Debian's tempest is not installed (apt-get install tempest)") end
  local dir = TMP .. "/run"
  local argv, conf = tempest.prepare(dir, CLOUD, { tests = { LIVE, FLAVORS }, image_id = "img-1", flavor_id = "fl-1",
                                                   network = "none", concurrency = 1 })
  T.eq(conf.identity.uri_v3, "http://127.0.0.1:9/v3")
  T.eq(conf.auth.admin_password, SECRET)
  local text = read(dir .. "/tempest.conf")
  T.ok(text:find("image_ref = img-1", 1, true), text)
  T.ok(text:find("live_migration = false", 1, true), text)
  -- ids are anchored (stestr searches each line as a regex: a bare id selects its prefixed siblings too)
  T.ok(read(dir .. "/include-list.txt"):find("^%^tempest\\%.api\\%.compute\\%.admin"), read(dir .. "/include-list.txt"))
  local st = assert(proc.run({ "stat", "-c", "%a", dir .. "/tempest.conf" }, { check = true }))
  T.eq(st.stdout, "600\n")
  local res, err, tests = tempest.execute(argv, dir, 240, function(s) return (s:gsub(SECRET, "***")) end)
  T.ok(res, tostring(err))
  local by = {}
  for _, t in ipairs(tests) do by[tempest.short_id(t.id)] = t end
  local ids = {}
  for id in pairs(by) do ids[#ids + 1] = id end
  -- the class-level skip is reported as the class's setUpClass or as the test
  local live = by[LIVE] or by["setUpClass (tempest.api.compute.admin.test_live_migration.LiveMigrationTest)"]
  T.ok(live, "a result for the live migration test among: " .. table.concat(ids, ", "))
  T.eq(live.result, "skipped")
  T.ok(tempest.detail(live):find("live-migration is not available", 1, true), tempest.detail(live))
  local fl = by[FLAVORS] or by["setUpClass (tempest.api.compute.flavors.test_flavors.FlavorsV2TestJSON)"]
  T.ok(fl, "a result for the flavors test among: " .. table.concat(ids, ", "))
  T.eq(fl.result, "failed")
  local d = tempest.detail(fl)
  T.ok(d:find("127.0.0.1", 1, true) or d:find("onnect", 1, true), d)
  T.ok(select(2, d:gsub("\n", "")) < tempest.TRACEBACK_LINES, "a tail, not the whole traceback")
  T.ok(fl.start and fl.stop, "the failure is timed")
  T.eq(#tests, 2, "exactly the two listed tests (or their classes) ran: " .. table.concat(ids, ", "))
  T.ok(not read(dir .. "/tempest.stderr"):find(SECRET, 1, true), "no password in the saved stderr")
  T.ok(#read(dir .. "/tempest.subunit") > 0, "the raw subunit stream is kept")
end)

T.case("on the timeout the whole process group is stopped", function()
  -- a real process tree in its own session: sh, and a sleep it forks
  local pidfile = TMP .. "/child.pid"
  local t0 = os.time()
  local res, err = tempest.run_group({ "setsid", "sh", "-c", "sleep 300 & echo $! > " .. pidfile .. "; wait" },
                                     { timeout = 1, grace = 1 })
  T.eq(res, nil)
  T.eq(err.kind, "timeout")
  T.ok(os.time() - t0 < 10, "stopped promptly")
  local child = tonumber(read(pidfile))
  T.ok(child, "the forked child wrote its pid")
  local deadline = os.time() + 5
  local alive = true
  while alive and os.time() <= deadline do
    alive = proc.kill(child, 0) and true or false
    if alive then require("upgrun.time").sleep(0.05) end
  end
  T.ok(not alive, "the grandchild (pid " .. tostring(child) .. ") is gone too")
end)

T.case("a cancelled run has its whole process group killed", function()
  local task = require "upgrun.task"
  local time = require "upgrun.time"
  local pidfile = TMP .. "/child2.pid"
  local t = task.spawn(function()
    return tempest.run_group({ "setsid", "sh", "-c", "sleep 300 & echo $! > " .. pidfile .. "; wait" },
                             { timeout = 600 })
  end)
  local deadline = time.mono() + 10
  local f
  repeat
    time.sleep(0.05)
    f = io.open(pidfile)
  until (f and f:read("a"):match("%d")) or time.mono() > deadline
  if f then f:close() end
  local child = tonumber(read(pidfile))
  T.ok(child and proc.kill(child, 0), "the grandchild runs before the cancel")
  t:cancel()
  local ok, err = t:join(10)
  T.eq(ok, nil)
  T.eq(err.kind, "cancelled")
  local alive = true
  deadline = time.mono() + 5
  while alive and time.mono() <= deadline do
    alive = proc.kill(child, 0) and true or false
    if alive then time.sleep(0.05) end
  end
  T.ok(not alive, "the grandchild (pid " .. tostring(child) .. ") is gone")
end)

proc.run({ "rm", "-rf", TMP }, { timeout = 30 })
return T.done()
