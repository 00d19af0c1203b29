-- test_glance_scenario — scenarios/glance_rolling.lua for real on the lab: two glance-api
-- behind their own HAProxy (tests/lab/glance-lb, sharing the lab's Glance database and file
-- store) upgraded from python3-glance ~deb12u3 (zed-u3) to ~deb12u5 (zed-u5) node by node,
-- with glance-manage db expand / migrate / contract. Asserts on report.json: passed; every
-- step of the runbook passed; both glance-api end on zed-u5 (the running processes); the
-- image uploaded before is still active with the same size and checksums and downloads with
-- the same sha512; the probes (image list, image download through the balancer) sampled
-- throughout within the downtime budget; the DB migration is a timed hook point. Also --plan
-- on the lab inventory, and a release the inventory does not offer refused (exit 2). Starts
-- with tests/lab/reset and glance-lb up (the pair's reset); ends with glance-lb down.
local T = require "testlib"
local proc = require "upgrun.proc"
local cjson = require "cjson"

local SRC = os.getenv("UPGRUN_SRC") or "../.."
local BIN = os.getenv("UPGRUN_BIN") or (SRC .. "/build/upgrun")
local LAB = os.getenv("UPGRUN_LAB_DIR") or "/var/lib/upgrun-lab"
local OUT = (os.getenv("UPGRUN_TEST_OUT") or (SRC .. "/build/lab-runs")) .. "/glance"
local GLB = SRC .. "/tests/lab/glance-lb"
local INV = LAB .. "/glance-lb/inventory.yml"
local SCENARIO = SRC .. "/scenarios/glance_rolling.lua"

local function sh(argv, timeout, env)
  local r, err = proc.run(argv, { timeout = timeout or 600, env_add = env })
  if not r then error(table.concat(argv, " ") .. ": " .. tostring(err), 2) end
  return r
end

local function by(list, key, value)
  for _, x in ipairs(list) do if x[key] == value then return x end end
end

local doc

T.case("the lab and the two glance-api are reset to zed-u3", function()
  local r = sh({ SRC .. "/tests/lab/reset" }, 600)
  T.eq(r.status, 0, "tests/lab/reset: " .. r.stdout .. r.stderr)
  r = sh({ GLB, "up", "zed-u3" }, 300)
  T.eq(r.status, 0, "glance-lb up: " .. r.stdout .. r.stderr)
end)

T.case("--plan on the lab inventory; a release not offered is refused", function()
  local r = sh({ BIN, SCENARIO, "-i", INV, "--plan" })
  T.eq(r.status, 0, r.stderr)
  for _, want in ipairs({ "step restart glance-api on ctl1", "glance-lb lb drain ctl2",
                          "glance-lb manage ctl1 db expand", "glance-lb manage ctl1 db contract",
                          "glance image download: every 0.5 s" }) do
    T.ok(r.stdout:find(want, 1, true), "plan shows " .. want .. ":\n" .. r.stdout)
  end
  r = sh({ BIN, SCENARIO, "-i", INV, "--plan", "--set", "to_release=zed-u9" })
  T.eq(r.status, 2)
  T.ok(r.stderr:find('no release "zed-u9" (offered: zed-u3, zed-u5)', 1, true), r.stderr)
end)

T.case("rolling upgrade zed-u3 -> zed-u5 behind the balancer", function()
  sh({ "rm", "-rf", OUT })
  local r = sh({ BIN, SCENARIO, "-i", INV, "--cloud", "upgrun-lab-glance", "-o", OUT },
               900, { OS_CLIENT_CONFIG_FILE = LAB .. "/glance-lb/clouds.yaml" })
  io.write(r.stdout, r.stderr)
  local f = assert(io.open(OUT .. "/report.json"), "no report.json")
  doc = cjson.decode(f:read("a"))
  f:close()
  T.eq(r.status, 0, "exit code (verdict " .. tostring(doc.verdict) .. ")")
  T.eq(doc.verdict, "passed")
  for _, c in ipairs(doc.checks) do
    if c.result == "failed" then T.fail("check failed: " .. c.name .. ": " .. tostring(c.detail)) end
  end
  for _, step in ipairs({ "1. code to zed-u5", "2. database expand", "3. database migrate",
                          "4. glance-api node by node / ctl1", "4. glance-api node by node / ctl2",
                          "5. database contract" }) do
    local st = by(doc.steps, "path", step)
    T.ok(st and st.result == "passed", "step " .. step .. ": " .. tostring(st and st.result))
  end
  for _, n in ipairs({ "ctl1", "ctl2" }) do
    T.eq(by(doc.checks, "name", "glance-api on " .. n .. " runs zed-u3").result, "passed")
    T.eq(by(doc.checks, "name", "glance-api on " .. n .. " runs zed-u5").result, "passed")
    T.eq(by(doc.checks, "name", n .. " code is on zed-u5").result, "passed")
  end
end)

T.case("the image uploaded before downloads with the same checksum after", function()
  assert(doc, "needs the run")
  local images, passed = 0, 0
  for _, res in ipairs(doc.resources) do if res.kind == "image" then images = images + 1 end end
  T.eq(images, 1)
  for _, c in ipairs(doc.checks) do
    if c.stage == "after" and c.result == "passed" and (c.name:match(" still exists$")
      or c.name:match(" same size and checksums$") or c.name:match(" downloads with the same sha512$")) then
      passed = passed + 1
    end
  end
  T.eq(passed, 3, "exists, same size and checksums, same sha512")
end)

T.case("the probes saw the upgrade through the balancer within budget", function()
  assert(doc, "needs the run")
  for _, name in ipairs({ "glance image list", "glance image download" }) do
    local p = by(doc.probes, "name", name)
    T.ok(p and p.sent > 20, name .. " sampled: " .. tostring(p and p.sent))
    T.ok(p.downtime <= 5, string.format("%s downtime %.3f s <= 5 s", name, p.downtime))
  end
  local db = doc.hook_points.db_migration
  T.ok(db and db.duration > 0, "db_migration timed")
end)

-- nothing of the pair stays running (updown and the other tests expect the lab's own set)
local r = sh({ GLB, "down" }, 120)
T.case("glance-lb down stops the pair", function() T.eq(r.status, 0, r.stdout .. r.stderr) end)

return T.done()
