-- test_tempest — the Nova scenario's Tempest step on the lab: a rolling
-- upgrade across the quick pair (zed -> zed-u5) with --set tempest=true, the
-- suite at checks_at=after only and a small test list; asserts on
-- report.json that each Tempest test became a check: the flavor list passed,
-- the SSH (validation) test and the live-migration test are skipped with
-- Tempest's own reasons (the lab has no validation network; the generated
-- tempest.conf disables live migration), each test is timed on the timeline
-- (a tempest_test event), and the generated tempest.conf is mode 600 with
-- the password in it but nowhere in the report. Failures with a traceback
-- are covered against real tempest in tests/integration/test_tempest.lua.
local T = require "testlib"
local proc = require "upgrun.proc"
local cjson = require "cjson"

local SRC = os.getenv("UPGRUN_SRC") or "../.."
local BIN = os.getenv("UPGRUN_BIN") or (SRC .. "/build/upgrun")
local LAB = os.getenv("UPGRUN_LAB_DIR") or "/var/lib/upgrun-lab"
local OUT = (os.getenv("UPGRUN_TEST_OUT") or (SRC .. "/build/lab-runs")) .. "/tempest"

local FLAVORS = "tempest.api.compute.flavors.test_flavors.FlavorsV2TestJSON.test_list_flavors"
local HOSTNAME = "tempest.api.compute.servers.test_create_server.ServersTestJSON.test_host_name_is_same_as_server_name"
local LIVE = "tempest.api.compute.admin.test_live_migration.LiveMigrationTest.test_live_block_migration"

local function read(path)
  local f = assert(io.open(path), "no " .. path)
  local s = f:read("a")
  f:close()
  return s
end

local function check_named(doc, pattern)
  for _, c in ipairs(doc.checks) do if c.name:find(pattern, 1, true) then return c end end
  local names = {}
  for _, c in ipairs(doc.checks) do if c.name:match("^tempest") then names[#names + 1] = c.name end end
  error("no check " .. pattern .. " among: " .. table.concat(names, ", "), 2)
end

T.case("the Nova scenario's Tempest step on the quick pair", function()
  local r = assert(proc.run({ SRC .. "/tests/lab/reset" }, { timeout = 600 }))
  assert(r.status == 0, "tests/lab/reset failed: " .. r.stdout .. r.stderr)
  assert(proc.run({ "rm", "-rf", OUT }, { timeout = 60 }))
  r = assert(proc.run({ BIN, SRC .. "/scenarios/nova_mitaka_newton.lua", "-i", LAB .. "/inventory.yml",
                        "--cloud", "upgrun-lab", "-o", OUT, "--set", "to_release=zed-u5",
                        "--set", "checks_at=after", "--set", "boot_interval=0", "--set", "tempest=true",
                        "--set", "tempest_tests=" .. table.concat({ FLAVORS, HOSTNAME, LIVE }, ",") },
                      { timeout = 900, env_add = { OS_CLIENT_CONFIG_FILE = LAB .. "/clouds.yaml" } }))
  io.write(r.stdout, r.stderr)
  local report = read(OUT .. "/report.json")
  local doc = cjson.decode(report)
  T.eq(r.status, 0, "exit code (verdict " .. tostring(doc.verdict) .. ")")
  local fl = check_named(doc, "tempest " .. FLAVORS)
  T.eq(fl.result, "passed", tostring(fl.detail))
  local hn = check_named(doc, "tempest " .. HOSTNAME)
  T.eq(hn.result, "skipped")
  T.eq(hn.detail, "Instance validation tests are disabled.")
  local lv = check_named(doc, "LiveMigrationTest")
  T.eq(lv.result, "skipped")
  T.ok(tostring(lv.detail):find("live-migration is not available", 1, true), tostring(lv.detail))
  -- each test is on the timeline with its own start and duration
  local timed = 0
  for _, e in ipairs(doc.timeline) do
    if e.kind == "tempest_test" then
      T.ok(e.t and e.t > 0 and e.duration and e.duration >= 0, cjson.encode(e))
      timed = timed + 1
    end
  end
  T.ok(timed >= 3, "a tempest_test event per test, got " .. timed)
  -- the conf: mode 600, the password inside, nowhere in the report
  local conf_path = OUT .. "/tempest-after/tempest.conf"
  local st = assert(proc.run({ "stat", "-c", "%a", conf_path }, { check = true }))
  T.eq(st.stdout, "600\n")
  local pw = read(conf_path):match("admin_password = ([^\n]+)")
  T.ok(pw and #pw > 3, "the conf has the admin password")
  T.ok(not report:find(pw, 1, true), "the password is not in report.json")
end)

return T.done()
