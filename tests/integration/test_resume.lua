-- test_resume — `--resume DIR` and `--from-step NAME`: upgrun is started as a
-- child process on fixtures/scenarios/resume.lua (step 3 fails while a flag
-- file exists; each step body writes its name to a log file), and each case
-- checks which bodies ran, the exit code, the console and the reports
-- (report.json, junit.xml parsed by Python's xml module, checkpoint.json).
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FIX = T.src("tests/integration/fixtures/scenarios/")
local TMP = os.tmpname()
os.remove(TMP)
os.execute("mkdir -p '" .. TMP .. "'")

local function upgrun(args)
  local argv = { BIN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = proc.run(argv, { timeout = 60, cwd = TMP })
  return r.status, r.stdout or "", r.stderr or ""
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function has(s, needle, what)
  T.ok(s:find(needle, 1, true), (what or "") .. " contains " .. needle .. ":\n" .. s)
end

local function lines(path)
  local out = {}
  for l in (read(path) or ""):gmatch("[^\n]+") do out[#out + 1] = l end
  return table.concat(out, ",")
end

local function report(dir)
  local doc = cjson.decode((assert(read(dir .. "/report.json"), "report.json in " .. dir)))
  T.valid_report(dir)
  return doc
end

local function step(doc, path)
  for _, st in ipairs(doc.steps) do if st.path == path then return st end end
end

-- Every file of a directory with its content (to see that a run left it alone).
local function snapshot(dir)
  local p = io.popen("cd '" .. dir .. "' && find . -type f | sort")
  local out = {}
  for f in p:lines() do out[#out + 1] = f .. "\n" .. (read(dir .. "/" .. f) or "?") end
  p:close()
  return table.concat(out, "\n--\n")
end

-- junit.xml cases as {"classname::name" = "passed" | "skipped: msg" | ...}.
local function junit_cases(dir)
  local script = [[
import json, sys, xml.etree.ElementTree as ET
cases = {}
for c in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    st = "passed"
    for kind in ("failure", "error", "skipped"):
        e = c.find(kind)
        if e is not None:
            st = kind + ": " + (e.get("message") or "")
    cases[c.get("classname") + "::" + c.get("name")] = st
print(json.dumps(cases))
]]
  local r = proc.run({ "python3", "-c", script, dir .. "/junit.xml" }, { timeout = 30 })
  T.eq(r.status, 0, "junit.xml parses: " .. tostring(r.stderr))
  return cjson.decode(r.stdout)
end

-- A first run that fails at step 3 (the flag file exists), with --keep so
-- its resource carries over. Returns its directory, the log and the flag.
local function failed_first_run(name, scenario_file)
  local dir, log, flag = TMP .. "/" .. name, TMP .. "/" .. name .. ".log", TMP .. "/" .. name .. ".flag"
  write(flag, "fail\n")
  local code, so = upgrun { scenario_file or (FIX .. "resume.lua"), "-o", dir, "--keep", "--set", "log=" .. log,
                            "--set", "fail_flag=" .. flag, "--set", "mode=manual", "--set", "password=hunter2-xyz",
                            "--cloud", "lab-cloud" }
  T.eq(code, 1, so)
  has(so, "controller 1 did not come back", "stdout")
  T.eq(lines(log), "create thing,prepare,upgrade controllers", "the first run stopped in step 3")
  return dir, log, flag
end

T.case("step 3 fails, then --resume runs steps 3 and 4 only, with the same params and ledger", function()
  local first, log, flag = failed_first_run("first")
  local cp = cjson.decode(read(first .. "/checkpoint.json"))
  T.eq(cp.format, "upgrun-checkpoint/1")
  T.eq(#cp.steps, 3, "three top-level steps recorded")
  T.eq(cp.steps[1].name, "create thing"); T.eq(cp.steps[1].result, "passed")
  T.eq(cp.steps[3].name, "upgrade controllers"); T.eq(cp.steps[3].result, "failed")
  T.eq(cp.params.mode, "manual")
  T.eq(cp.params.password, nil, "a secret parameter is not recorded")
  T.ok(not read(first .. "/checkpoint.json"):find("hunter2", 1, true), "no secret in the checkpoint")
  local before = snapshot(first)

  os.remove(flag)
  local out = TMP .. "/resumed"
  write(log, "")
  local code, so, se = upgrun { FIX .. "resume.lua", "--resume", first, "-o", out }
  T.eq(code, 0, so .. se)
  T.eq(lines(log), "upgrade controllers,controller 2,verify,clean up thing",
       "only steps 3 and 4 (and the clean-up) ran")
  has(so, "resuming run " .. first, "stdout")
  has(so, "create thing passed earlier (in run " .. first .. ")", "stdout")
  has(so, "prepare passed earlier", "stdout")
  T.eq(snapshot(first), before, "the earlier run's directory is not modified")

  local doc = report(out)
  T.eq(doc.verdict, "passed")
  T.eq(doc.resumed.from, first)
  T.eq(doc.resumed.passed_earlier, 2)
  T.eq(doc.params.mode, "manual", "the earlier run's parameter")
  T.eq(doc.run.cloud, "lab-cloud", "the earlier run's --cloud")
  T.eq(step(doc, "create thing").result, "passed earlier")
  T.eq(step(doc, "prepare").result, "passed earlier")
  T.eq(step(doc, "upgrade controllers").result, "passed")
  T.eq(step(doc, "upgrade controllers / controller 1").result, "passed")
  T.eq(step(doc, "verify").result, "passed")
  T.eq(doc.resources[1].id, "t-1")
  T.eq(doc.resources[1].status, "cleaned", "the imported resource is cleaned up by the resumed run")
  has(doc.resources[1].origin, first .. "/ledger.json", "origin")
  T.ok((read(out .. "/samples.jsonl") or ""):find("local fn", 1, true), "the resumed run's own samples")
  local cases = junit_cases(out)
  T.eq(cases["resume.before::create thing (passed earlier)"], "passed")
  T.eq(cases["resume.upgrade::upgrade controllers"], "passed")
  local cp2 = cjson.decode(read(out .. "/checkpoint.json"))
  T.eq(cp2.resumes, first)
  T.eq(cp2.steps[1].result, "passed earlier")
  T.eq(#cp2.steps, 4)
end)

T.case("--resume: a --set that contradicts the earlier run is exit 2 naming the param; -o DIR itself refused",
       function()
  local first, _, flag = failed_first_run("contra")
  os.remove(flag)
  local out = TMP .. "/contra-resumed"
  local code, _, se = upgrun { FIX .. "resume.lua", "--resume", first, "-o", out, "--set", "mode=rolling" }
  T.eq(code, 2, se)
  has(se, "--set mode=rolling contradicts the resumed run", "stderr")
  has(se, "mode=manual", "stderr")
  T.eq(read(out .. "/report.json"), nil, "nothing ran")
  local before = snapshot(first)
  code, _, se = upgrun { FIX .. "resume.lua", "--resume", first .. "/", "-o", first, "--force" }
  T.eq(code, 2, se)
  has(se, "-o names the same directory", "stderr")
  T.eq(snapshot(first), before, "the earlier run's directory is not modified")
end)

T.case("--resume of a changed scenario is refused (exit 2), --force resumes it", function()
  local copy = TMP .. "/changed.lua"
  write(copy, read(FIX .. "resume.lua"))
  local first, log, flag = failed_first_run("changed", copy)
  os.remove(flag)
  write(copy, read(copy) .. "-- changed since\n")
  write(log, "")
  local code, _, se = upgrun { copy, "--resume", first, "-o", TMP .. "/changed-refused" }
  T.eq(code, 2, se)
  has(se, "scenario file " .. copy .. " changed since that run", "stderr")
  has(se, "--force", "stderr")
  T.eq(lines(log), "", "nothing ran")
  local so
  code, so, se = upgrun { copy, "--resume", first, "--force", "-o", TMP .. "/changed-forced" }
  T.eq(code, 0, so .. se)
  T.eq(report(TMP .. "/changed-forced").resumed.scenario_changed, true)
  T.eq(lines(log), "upgrade controllers,controller 2,verify,clean up thing")
end)

T.case("--from-step: the top-level steps before it are skipped (--from-step)", function()
  local log = TMP .. "/from.log"
  local out = TMP .. "/from"
  local code, so = upgrun { FIX .. "resume.lua", "-o", out, "--from-step", "verify", "--set", "log=" .. log,
                            "--set", "mode=manual" }
  T.eq(code, 0, so)
  T.eq(lines(log), "verify", "only the named step and what follows ran")
  has(so, "create thing skipped (--from-step verify)", "stdout")
  has(so, "upgrade controllers skipped (--from-step verify)", "stdout")
  local doc = report(out)
  T.eq(step(doc, "prepare").result, "skipped")
  T.eq(step(doc, "prepare").reason, "--from-step verify")
  T.eq(step(doc, "verify").result, "passed")
  T.eq(doc.resumed.from_step, "verify")
  T.eq(junit_cases(out)["resume.before::prepare"], "skipped: --from-step verify")
end)

T.case("--from-step with an unknown name: exit 2 listing the step names, nothing run", function()
  local log = TMP .. "/unknown.log"
  local code, so, se = upgrun { FIX .. "resume.lua", "-o", TMP .. "/unknown", "--from-step", "verfiy",
                                "--set", "log=" .. log }
  T.eq(code, 2, so .. se)
  has(se, "--from-step verfiy: no top-level step", "stderr")
  has(se, "create thing, prepare, upgrade controllers, verify", "stderr")
  T.eq(read(log), nil, "no step body ran")
  T.eq(read(TMP .. "/unknown/report.json"), nil, "no report")
end)

T.case("--resume of a directory that is not a run: exit 2 naming it", function()
  os.execute("mkdir -p '" .. TMP .. "/notarun'")
  local code, _, se = upgrun { FIX .. "resume.lua", "--resume", TMP .. "/notarun", "-o", TMP .. "/x" }
  T.eq(code, 2, se)
  has(se, "--resume " .. TMP .. "/notarun: no checkpoint.json there", "stderr")
  code, _, se = upgrun { FIX .. "resume.lua", "--resume", TMP .. "/nosuch" }
  T.eq(code, 2, se)
  has(se, "no such directory", "stderr")
end)

os.execute("rm -rf '" .. TMP .. "'")
return T.done()
