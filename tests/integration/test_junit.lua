-- test_junit — junit.xml as CI reads it: upgrun runs fixture scenarios and
-- junit_check.py reads each junit.xml with junitparser (python3-junitparser)
-- after checking the structure the JUnit XSD of Jenkins asks for (and
-- xmllint that it is well-formed). Asserted: a testcase per probe listing
-- every outage with its start, length ± uncertainty and steps (failed only
-- when its budget fails), budgets naming their outages, <properties>
-- (parameters with secrets masked, versions, upgrun's version), times not
-- counted twice, classnames whose Jenkins split at the last dot keeps the
-- stage or step whole.
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local junit = require "upgrun.report.junit"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FIX = T.src("tests/integration/fixtures/scenarios/")
local CHECK = T.src("tests/integration/junit_check.py")
local TMP = T.tmpdir()
-- Debian's python3, where python3-junitparser installs (tests/setup)
local PY = io.open("/usr/bin/python3") and "/usr/bin/python3" or "python3"

local function run(fixture, out, args)
  local argv = { BIN, FIX .. fixture, "-o", out }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local r = proc.run(argv, { timeout = 60, cwd = TMP })
  local f = assert(io.open(out .. "/report.json"), "report.json of " .. fixture .. ": " .. tostring(r.stderr))
  local doc = cjson.decode(f:read("a"))
  f:close()
  return r.status, doc, r.stdout
end

local function read_junit(out)
  local r = proc.run({ PY, CHECK, out .. "/junit.xml" }, { timeout = 30 })
  T.eq(r.status, 0, "junit_check: " .. tostring(r.stderr))
  local x = proc.run({ "xmllint", "--noout", out .. "/junit.xml" }, { timeout = 30 })
  T.eq(x.status, 0, "xmllint: " .. tostring(x.stderr))
  return cjson.decode(r.stdout)
end

local function case_named(suite, name)
  for _, c in ipairs(suite.cases) do if c.name == name then return c end end
  T.fail("no testcase " .. name)
end

local function has(s, needle, what)
  T.ok(type(s) == "string" and s:find(needle, 1, true), (what or "") .. " contains " .. needle .. ":\n" .. tostring(s))
end

T.case("classname segments have no dot (Jenkins splits at the last one)", function()
  T.eq(junit.segment("2. change the codebase"), "2_ change the codebase")
  T.eq(junit.classname("nova.x", "upgrade", "a / b.c"), "nova_x.upgrade.a / b_c")
  T.eq(junit.segment(""), "_")
end)

T.case("probes, outages, budgets, properties, times, classnames", function()
  local out = TMP .. "/fix"
  local code, doc = run("junit.lua", out, { "--set", "password=hunter2-pw" })
  T.eq(code, 1, "the api budget fails")
  local j = read_junit(out)
  local text = T.read(out .. "/junit.xml")
  T.ok(not text:find("hunter2", 1, true), "the secret is not in junit.xml")
  T.ok(not text:find("tok-not-declared-secret", 1, true), "a *_token parameter is masked too")

  -- properties: the same in every suite
  for name, s in pairs(j.suites) do
    local p = s.properties
    T.eq(p["upgrun.version"], doc.versions.upgrun, name)
    T.eq(p["param.password"], "***"); T.eq(p["param.api_token"], "***")
    T.eq(p["param.from_release"], "mitaka"); T.eq(p["param.to_release"], "newton.1")
    T.eq(p["version.nova-api@ctl1"], "newton.1", "a version recorded by ctx:version")
    T.eq(p.scenario, "junit_fix"); T.eq(p.verdict, "failed")
  end

  -- steps: classnames split into package = scenario, class = the stage (dots mapped)
  local steps = j.suites["junit_fix.steps"]
  T.eq(steps.tests, 6)
  for _, c in ipairs(steps.cases) do
    T.eq(c.package, "junit_fix", c.classname); T.eq(c.class, "2_ upgrade", c.classname)
  end
  case_named(steps, "2. change the codebase / stop v1.2")
  -- times: the parent's own time only; the suite's time is the union of the steps
  local parent = case_named(steps, "2. change the codebase")
  T.ok(parent.time < 0.05, "the parent step's time outside its sub-steps: " .. parent.time)
  has(parent.system_out, "duration 0.5", "the parent's full duration")
  local top = 0
  for _, st in ipairs(doc.steps) do if st.depth == 0 then top = top + st.duration end end
  T.near(steps.time, top, 0.01, "steps suite time = the top-level steps, nested ones not again")
  local sum = 0
  for _, c in ipairs(steps.cases) do sum = sum + c.time end
  T.near(sum, steps.time, 0.05, "the testcases add up to the suite's time")
  T.near(j.time, doc.run.duration, 0.002, "<testsuites time> is the run's duration")
  T.ok(j.time < sum + 0.5, "not more than the run")

  -- checks: package = scenario.stage, class = the step (dots mapped)
  local chk = j.suites["junit_fix.checks"].cases[1]
  T.eq(chk.package, "junit_fix.2_ upgrade"); T.eq(chk.class, "3_ restart image_api"); T.eq(chk.name,
    "image.api answers")

  -- a testcase per probe, each listing its outages
  local probes = j.suites["junit_fix.probes"]
  T.eq(probes.tests, 2); T.eq(probes.failures, 1)
  local pr = doc.probes[1]
  T.eq(pr.name, "api")
  local o = pr.outages[1]
  local api = case_named(probes, "api")
  T.eq(api.result, "failure")
  T.eq(api.package, "junit_fix"); T.eq(api.class, "probes")
  local at = string.format("at %.3f s for %.3f s ± %.3f during 2. change the codebase / stop v1.2", o.start,
                           o.duration, o.uncertainty)
  has(api.message, "budget failed (max_downtime: total downtime", "message")
  has(api.message, at, "message")
  local wall = api.system_out:match(string.format("outage 1: at %.3f s %%((%%d+%%-%%d+%%-%%d+T[%%d:.]+Z)%%) for "
                                                  .. "%.3f s ± %.3f during 2%%. change the codebase / stop v1%%.2",
                                                  o.start, o.duration, o.uncertainty))
  T.ok(wall, "system-out: the outage with its UTC start:\n" .. tostring(api.system_out))
  -- the UTC start is the run's start (report.json run.started) + the outage's start
  local function sod(iso) -- seconds of the day
    local h, m, sec = iso:match("T(%d+):(%d+):([%d.]+)Z$")
    return h * 3600 + m * 60 + tonumber(sec)
  end
  T.near((sod(wall) - sod(doc.run.started)) % 86400, o.start, 0.002, "UTC start " .. wall)
  T.near(o.duration, 0.3, 0.05)
  local img = case_named(probes, "image.api")
  T.eq(img.result, "passed", "within its budget")
  local o2 = doc.probes[2].outages[1]
  has(img.system_out, string.format("outage 1: at %.3f s (", o2.start), "an outage shows without a failed budget")
  has(img.system_out, "during 3. restart image.api", "system-out")
  has(img.system_out, "budget max_downtime: pass", "system-out")

  -- budget items name their outages and steps
  local budgets = j.suites["junit_fix.budgets"]
  local b = budgets.cases[1]
  T.eq(b.classname, "junit_fix.budget.api"); T.eq(b.result, "failure")
  has(b.message, "total downtime", "budget message"); has(b.message, at, "budget message")
  T.eq(budgets.cases[2].classname, "junit_fix.budget.image_api")
end)

T.case("several reports read by junitparser and checked against the XSD's structure", function()
  local runs = {
    { "basic.lua", { "--set", "sleep=0.01", "--set", "password=hunter2-xyz", "--set", "fail_check=yes" }, 1 },
    { "budget.lua", {}, 1 },
    { "step_raises.lua", {}, 1 },
    { "hook_fails.lua", {}, 1 },
  }
  for i, r in ipairs(runs) do
    local out = TMP .. "/r" .. i
    local code, doc = run(r[1], out, r[2])
    T.eq(code, r[3], r[1])
    local j = read_junit(out)
    local total = 0
    for _, s in pairs(j.suites) do
      total = total + s.tests
      T.eq(s.properties.scenario, doc.scenario.name)
      for _, c in ipairs(s.cases) do
        T.ok(c.package == doc.scenario.name or c.package:sub(1, #doc.scenario.name + 1) == doc.scenario.name .. ".",
             r[1] .. ": the package starts with the scenario: " .. c.classname)
      end
    end
    T.ok(total > 0, r[1] .. ": testcases")
    T.ok(j.time <= doc.run.duration + 0.001, r[1] .. ": time is the run's")
    T.ok(not T.read(out .. "/junit.xml"):find("hunter2", 1, true), r[1] .. ": no secret")
    if r[1] == "budget.lua" then
      local api = j.suites["budget.probes"].cases[1]
      T.eq(api.result, "failure")
      has(api.message, "during restart api", "budget.lua probe message")
    end
  end
end)

os.execute("rm -rf '" .. TMP .. "'")
return T.done()
