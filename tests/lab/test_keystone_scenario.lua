-- test_keystone_scenario — scenarios/keystone_rolling.lua for real on the lab: two
-- Keystones behind their own HAProxy (tests/lab/keystone-lb, sharing the lab's Keystone
-- database and keys) upgraded from python3-keystone ~deb12u3 (zed-u3) to ~deb12u6
-- (zed-u6) node by node, with db_sync --expand / --migrate / --contract. Asserts on
-- report.json: passed; every step of the runbook passed; both Keystones end on zed-u6
-- (the running processes); the tokens issued before validate after each node and at the
-- end; every user, project and role of the ledger survived and each user still
-- authenticates; the probes (token issue, validation, version document through the
-- balancer) sampled throughout, the token probes down <= 5 s (see the run for why the lab
-- runs them lighter); the DB migration is
-- a timed hook point. Also: --plan on the lab inventory, and a release the inventory does
-- not offer refused (exit 2). Starts with tests/lab/reset and keystone-lb up (the pair's
-- reset); ends with keystone-lb down, so nothing of it stays running.
local T = require "testlib"
local proc = require "upgrun.proc"
local cjson = require "cjson"

local SRC = os.getenv("UPGRUN_SRC") or "../.."
local BIN = os.getenv("UPGRUN_BIN") or (SRC .. "/build/upgrun")
local LAB = os.getenv("UPGRUN_LAB_DIR") or "/var/lib/upgrun-lab"
local OUT = (os.getenv("UPGRUN_TEST_OUT") or (SRC .. "/build/lab-runs")) .. "/keystone"
local KLB = SRC .. "/tests/lab/keystone-lb"
local INV = LAB .. "/keystone/inventory.yml"
local SCENARIO = SRC .. "/scenarios/keystone_rolling.lua"

local function sh(argv, timeout, env)
  local r, err = proc.run(argv, { timeout = timeout or 600, env_add = env })
  if not r then error(table.concat(argv, " ") .. ": " .. tostring(err), 2) end
  return r
end

local function by(list, key, value)
  for _, x in ipairs(list) do if x[key] == value then return x end end
end

local doc

T.case("the lab and the two Keystones are reset to zed-u3", function()
  local r = sh({ SRC .. "/tests/lab/reset" }, 600)
  T.eq(r.status, 0, "tests/lab/reset: " .. r.stdout .. r.stderr)
  r = sh({ KLB, "up", "zed-u3" }, 300)
  T.eq(r.status, 0, "keystone-lb up: " .. r.stdout .. r.stderr)
end)

T.case("--plan on the lab inventory; a release not offered is refused", function()
  local r = sh({ BIN, SCENARIO, "-i", INV, "--plan" })
  T.eq(r.status, 0, r.stderr)
  for _, want in ipairs({ "step restart keystone on ctl1", "keystone-lb lb drain ctl2",
                          "keystone-lb manage ctl1 db_sync --expand", "db_sync --contract",
                          "keystone token issue: every 0.5 s" }) do
    T.ok(r.stdout:find(want, 1, true), "plan shows " .. want .. ":\n" .. r.stdout)
  end
  r = sh({ BIN, SCENARIO, "-i", INV, "--plan", "--set", "to_release=zed-u9" })
  T.eq(r.status, 2)
  T.ok(r.stderr:find('no release "zed-u9" (offered: zed-u3, zed-u6)', 1, true), r.stderr)
end)

T.case("rolling upgrade zed-u3 -> zed-u6 behind the balancer", function()
  sh({ "rm", "-rf", OUT })
  -- the lab's pair is 2 single-threaded workers per node on a shared 2-core machine: while one
  -- node restarts, the other carries every probe and answers some requests late (measured on
  -- 2026-12-02: the version document at 10/s "down" 3.3 s with a 2 s timeout, 12.5 s with 5 s,
  -- all of it answers later than the timeout, while token issue and validation saw 0 s). So the
  -- lab runs lighter probes and a wider budget; the token probes are held to 5 s below.
  local r = sh({ BIN, SCENARIO, "-i", INV, "--cloud", "upgrun-lab-keystone", "-o", OUT,
                 "--set", "issue_rate=1", "--set", "validate_rate=5", "--set", "version_rate=5",
                 "--set", "api_downtime_budget=30" },
               900, { OS_CLIENT_CONFIG_FILE = LAB .. "/keystone/clouds.yaml" })
  io.write(r.stdout, r.stderr)
  local f = assert(io.open(OUT .. "/report.json"), "no report.json")
  doc = cjson.decode(f:read("a"))
  f:close()
  T.eq(r.status, 0, "exit code (verdict " .. tostring(doc.verdict) .. ")")
  T.eq(doc.verdict, "passed")
  for _, c in ipairs(doc.checks) do
    if c.result == "failed" then T.fail("check failed: " .. c.name .. ": " .. tostring(c.detail)) end
  end
  for _, step in ipairs({ "1. code to zed-u6", "2. database expand", "3. database migrate",
                          "4. keystone node by node", "4. keystone node by node / ctl1",
                          "4. keystone node by node / ctl2", "5. database contract" }) do
    local st = by(doc.steps, "path", step)
    T.ok(st and st.result == "passed", "step " .. step .. ": " .. tostring(st and st.result))
  end
  for _, n in ipairs({ "ctl1", "ctl2" }) do
    T.eq(by(doc.checks, "name", "keystone on " .. n .. " runs zed-u3").result, "passed")
    T.eq(by(doc.checks, "name", "keystone on " .. n .. " runs zed-u6").result, "passed")
    T.eq(by(doc.checks, "name", n .. " code is on zed-u6").result, "passed")
  end
end)

T.case("tokens issued before validate through the upgrade; the ledger survived", function()
  assert(doc, "needs the run")
  local counts = {}
  for _, c in ipairs(doc.checks) do
    if c.result == "passed" then
      local when = c.name:match("^token issued before the upgrade %(.-%) validates (.*)$")
      if when then counts[when] = (counts[when] or 0) + 1 end
    end
  end
  -- 2 ledger users + admin, before, after each node, and at the end
  for _, when in ipairs({ "before the upgrade", "with ctl1 on zed-u6", "with ctl2 on zed-u6", "after the upgrade" }) do
    T.eq(counts[when], 3, "tokens validate " .. when)
  end
  local kinds = {}
  for _, res in ipairs(doc.resources) do kinds[res.kind] = (kinds[res.kind] or 0) + 1 end
  T.eq(kinds.user, 2); T.eq(kinds.project, 2); T.eq(kinds.role, 2)
  local survived = 0
  for _, c in ipairs(doc.checks) do
    if c.stage == "after" and c.result == "passed" and (c.name:match(" still exists$")
      or c.name:match(" keeps its role on its project$") or c.name:match(" still authenticates$")) then
      survived = survived + 1
    end
  end
  T.eq(survived, 2 * 3 + 2 + 2, "users (exists, role, authenticates), projects, roles")
end)

T.case("the probes saw the upgrade through the balancer within budget", function()
  assert(doc, "needs the run")
  for _, name in ipairs({ "keystone token issue", "keystone token validation", "keystone version document" }) do
    local p = by(doc.probes, "name", name)
    T.ok(p and p.sent > 20, name .. " sampled: " .. tostring(p and p.sent))
    local max = name == "keystone version document" and 30 or 5
    T.ok(p.downtime <= max, string.format("%s downtime %.3f s <= %d s", name, p.downtime, max))
    io.write(string.format("%s: downtime %.3f s, %d sent\n", name, p.downtime, p.sent))
  end
  local db = doc.hook_points.db_migration
  T.ok(db and db.duration > 0, "db_migration timed")
end)

-- nothing of the Keystone pair stays running (updown and the other tests expect the lab's own set)
local r = sh({ KLB, "down" }, 120)
T.case("keystone-lb down stops the pair", function() T.eq(r.status, 0, r.stdout .. r.stderr) end)

return T.done()
