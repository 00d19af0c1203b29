-- test_runner_cli — transcript tests of the scenario runner's command line:
-- upgrun is started as a child process on the fixtures under
-- fixtures/scenarios/, and each case checks the exit code, the message and
-- the reports (report.json, junit.xml parsed by Python's xml module,
-- report.html, samples.jsonl, ledger.json).
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local time = require "upgrun.time"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FIX = T.src("tests/integration/fixtures/scenarios/")
local TMP = T.tmpdir()

local function upgrun(args, timeout)
  local argv = { BIN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = proc.run(argv, { timeout = timeout or 60, cwd = TMP })
  return r.status, r.stdout or "", r.stderr or ""
end

local read = T.read

local function report(dir)
  local text = read(dir .. "/report.json")
  T.ok(text, "report.json in " .. dir)
  T.valid_report(dir)
  return cjson.decode(text)
end

local function step(doc, path)
  for _, st in ipairs(doc.steps) do if st.path == path then return st end end
end

local function has(s, needle, what) T.ok(s:find(needle, 1, true),
  (what or "") .. " contains " .. needle .. ":\n" .. s) end

-- Parses junit.xml with Python and returns {tests, failures, errors, skipped, cases = {name = status}}.
local function junit(dir)
  local script = [[
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
out = {k: int(root.get(k)) for k in ("tests", "failures", "errors", "skipped")}
cases = {}
n = 0
for suite in root.findall("testsuite"):
    for k in ("tests", "failures", "errors", "skipped"):
        int(suite.get(k))
    for c in suite.findall("testcase"):
        n += 1
        st = "passed"
        for kind in ("failure", "error", "skipped"):
            e = c.find(kind)
            if e is not None:
                st = kind + ": " + (e.get("message") or "")
        cases[c.get("classname") + "::" + c.get("name")] = st
assert n == out["tests"], (n, out["tests"])
out["cases"] = cases
print(json.dumps(out))
]]
  local r = proc.run({ "python3", "-c", script, dir .. "/junit.xml" }, { timeout = 30 })
  T.eq(r.status, 0, "junit.xml parses: " .. tostring(r.stderr))
  return cjson.decode(r.stdout)
end

T.case("a passing scenario: exit 0, every output written, junit parses", function()
  local out = TMP .. "/basic"
  local code, so = upgrun { FIX .. "basic.lua", "-o", out, "--set", "sleep=0.02" }
  T.eq(code, 0, so)
  has(so, "== basic: PASSED")
  has(so, "downtime per API:")
  local doc = report(out)
  T.eq(doc.verdict, "passed")
  T.eq(doc.params.sleep, 0.02)
  T.eq(doc.params.password, "***")
  T.eq(#doc.stages, 4, "before, upgrade, after, cleanup")
  T.eq(step(doc, "computes / compute 2").result, "passed")
  T.near(step(doc, "computes / compute 2").duration, 0.02, 0.015)
  T.eq(doc.hook_points.db_migration.steps[1].step, "db sync")
  T.eq(#doc.hooks, 2)
  T.eq(doc.resources[1].status, "cleaned")
  local node_ev
  for i, e in ipairs(doc.timeline) do
    if i > 1 then T.ok(e.t >= doc.timeline[i - 1].t, "timeline in time order") end
    if e.kind == "node" then node_ev = e end
  end
  T.ok(node_ev, "the node event is on the timeline")
  T.eq(node_ev.step, "services up"); T.eq(node_ev.node, "ctl1"); T.eq(node_ev.command, "systemctl is-active nova-api")
  T.ok(node_ev.t_end >= node_ev.t, "the node event's end follows its start")
  T.ok(node_ev.wall:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), node_ev.wall)
  local j = junit(out)
  T.eq(j.failures, 0)
  T.eq(j.cases["basic.before::services up"], "passed")
  T.eq(j.cases["basic.budget.local fn::max_downtime"], "passed")
  local html = read(out .. "/report.html")
  has(html, "<svg", "report.html"); has(html, "compute 2", "report.html")
  T.ok(not html:find("src=\"http", 1, true), "no external assets")
  local line = read(out .. "/samples.jsonl"):match("^[^\n]+")
  local smp = cjson.decode(line)
  T.eq(smp.probe, "local fn"); T.eq(smp.result, "ok"); T.ok(smp.t_send and smp.wall and smp.latency)
  local ledger = cjson.decode(read(out .. "/ledger.json"))
  T.eq(ledger.resources[1].id, "t-1")
end)

T.case("a probe budget that does not hold: exit 1, the outage names its step", function()
  local out = TMP .. "/budget"
  local code, so = upgrun { FIX .. "budget.lua", "-o", out }
  T.eq(code, 1, so)
  has(so, "budget api max_downtime: total downtime")
  local doc = report(out)
  local pr = doc.probes[1]
  T.eq(#pr.outages, 1)
  T.near(pr.outages[1].duration, 0.3, 0.03)
  T.eq(pr.outages[1].steps[1], "restart api")
  T.eq(pr.budget[1].key, "max_downtime"); T.eq(pr.budget[1].status, "fail")
  T.eq(pr.budget[2].key, "max_outage"); T.eq(pr.budget[2].status, "pass")
  T.eq(doc.overall.budget[1].status, "pass", "the scenario budget (5 s) holds")
  T.near(doc.downtime_per_step[1].probes.api, 0.3, 0.03)
  T.ok(pr.rate > 80 and pr.rate < 110, "about 100 samples/s: " .. pr.rate)
  local j = junit(out)
  has(j.cases["budget.budget.api::max_downtime"], "failure: total downtime")
end)

T.case("a syntax error: exit 2, the message names file:line", function()
  local code, _, se = upgrun { FIX .. "syntax_error.lua.broken", "-o", TMP .. "/syntax" }
  T.eq(code, 2)
  has(se, "syntax_error.lua.broken:7:", "stderr")
end)

T.case("an unknown --set parameter: exit 2, names it and lists the declared ones", function()
  local code, _, se = upgrun { FIX .. "basic.lua", "--set", "slepe=1", "-o", TMP .. "/unknown" }
  T.eq(code, 2)
  has(se, '"slepe"', "stderr"); has(se, "fail_check, password, sleep", "stderr")
  T.eq(read(TMP .. "/unknown/report.json"), nil, "nothing ran")
  code, _, se = upgrun { FIX .. "basic.lua", "--set", "sleep=soon" }
  T.eq(code, 2)
  has(se, "expects a number", "stderr")
  code, _, se = upgrun { FIX .. "basic.lua", "--bogus" }
  T.eq(code, 2)
  has(se, "unknown option --bogus", "stderr")
end)

T.case("a step that raises: exit 1, the report shows it, later stages still run", function()
  local out = TMP .. "/raises"
  local code, so = upgrun { FIX .. "step_raises.lua", "-o", out }
  T.eq(code, 1, so)
  has(so, "db sync FAILED"); has(so, "nova-manage db sync exited 1")
  local doc = report(out)
  T.eq(doc.verdict, "failed")
  local st = step(doc, "db sync")
  T.eq(st.result, "failed")
  has(st.error, "step_raises.lua:11: nova-manage db sync exited 1", "error")
  has(st.traceback, "stack traceback", "traceback")
  T.eq(step(doc, "tolerated").result, "failed")
  T.eq(step(doc, "never reached"), nil, "the stage stopped")
  local stages = {}
  for _, s in ipairs(doc.stages) do stages[s.name] = s end
  T.eq(stages.upgrade.result, "failed")
  T.eq(stages["verify upgrade"].result, "skipped")
  has(stages["verify upgrade"].reason, "needs stage upgrade")
  T.eq(stages.after.result, "passed")
  T.eq(step(doc, "collect evidence").result, "passed")
  local j = junit(out)
  T.eq(j.failures, 2)
  has(j.cases["step_raises.upgrade::db sync"], "failure: ")
  has(j.cases["step_raises.verify upgrade::stage verify upgrade"], "skipped")
end)

T.case("a hook that fails: exit 1, hook recorded with its error, the step ran", function()
  local out = TMP .. "/hook"
  local code, so = upgrun { FIX .. "hook_fails.lua", "-o", out }
  T.eq(code, 1, so)
  has(so, "HOOK FAILED before db_migration")
  local doc = report(out)
  T.eq(doc.hooks[1].result, "failed")
  has(doc.hooks[1].error, "site hook could not pause monitoring")
  T.eq(doc.hooks[2].result, "passed")
  T.eq(step(doc, "db sync").result, "passed")
  T.eq(step(doc, "restart").result, "passed")
  local j = junit(out)
  T.eq(j.failures, 1)
end)

T.case("a failed check: exit 1; secrets never reach the outputs", function()
  local out = TMP .. "/check"
  local code, so, se = upgrun { FIX .. "basic.lua", "-o", out, "--set", "fail_check=yes",
                                "--set", "password=hunter2-xyz", "--set", "sleep=0" }
  T.eq(code, 1, so)
  has(so, "CHECK FAILED resource t-1 exists")
  local doc = report(out)
  T.eq(doc.checks[#doc.checks].ok, false)
  T.eq(doc.checks[#doc.checks].detail, "password ***")
  for _, f in ipairs { "report.json", "junit.xml", "report.html", "samples.jsonl", "ledger.json" } do
    T.ok(not read(out .. "/" .. f):find("hunter2", 1, true), f .. " has no secret")
  end
  T.ok(not so:find("hunter2", 1, true) and not se:find("hunter2", 1, true), "console has no secret")
  local j = junit(out)
  has(j.cases["basic.after.verify resource::resource t-1 exists"], "failure: password ***")
end)

T.case("--plan prints stages, steps, nodes, hooks, probes and runs nothing", function()
  local code, so = upgrun { FIX .. "basic.lua", "--plan", "--hooks", FIX .. "site_hooks.lua", "-o", TMP .. "/plan" }
  T.eq(code, 0, so)
  has(so, "stage upgrade   [needs: before]")
  has(so, "step services up   [nodes: ctl1, cmp1]")
  has(so, "step db sync   [hook point: db_migration; hooks before: before db_migration")
  has(so, "site_hooks.lua")
  has(so, "local fn: every 0.02 s")
  T.ok(not so:find("compute 1", 1, true), "nested steps are not run in --plan")
  T.eq(read(TMP .. "/plan/report.json"), nil, "no output in --plan")
end)

T.case("--hooks FILE plugs site hooks into a hook point, with timings", function()
  local out = TMP .. "/sitehooks"
  local code, so = upgrun { FIX .. "basic.lua", "--hooks", FIX .. "site_hooks.lua", "-o", out, "-q" }
  T.eq(code, 0, so)
  T.ok(not so:find("stage before", 1, true), "-q prints only the summary")
  local doc = report(out)
  local site = {}
  for _, h in ipairs(doc.hooks) do if h.source:find("site_hooks.lua", 1, true) then site[#site + 1] = h end end
  T.eq(#site, 2)
  T.ok(site[1].duration >= 0.015, "the hook's own duration is timed")
  T.eq(site[1].step, "db sync")
end)

T.case("--keep then --ledger: a later run verifies the earlier run's resources", function()
  local out1, out2 = TMP .. "/keep1", TMP .. "/keep2"
  local code = upgrun { FIX .. "basic.lua", "-o", out1, "--keep", "-q" }
  T.eq(code, 0)
  local l1 = cjson.decode(read(out1 .. "/ledger.json"))
  T.eq(l1.resources[1].status, "kept")
  code = upgrun { FIX .. "basic.lua", "-o", out2, "--ledger", out1 .. "/ledger.json", "-q" }
  T.eq(code, 0)
  local doc = report(out2)
  local names = {}
  for _, c in ipairs(doc.checks) do names[#names + 1] = c.name end
  T.eq(#doc.resources, 2, "the imported and the new resource")
  T.eq(doc.resources[1].origin, out1 .. "/ledger.json")
  T.eq(doc.resources[1].status, "cleaned")
  T.eq(#names, 3, "all up + a check per resource: " .. table.concat(names, ", "))
end)

T.case("Ctrl-C during a step: exit 3, partial report, the step marked interrupted", function()
  local out = TMP .. "/interrupt"
  local p = proc.spawn { argv = { BIN, FIX .. "interrupt.lua", "-o", out }, cwd = TMP, stdout = "capture" }
  local seen
  for _ = 1, 50 do
    local line = p:read_line(10)
    if not line then break end
    if line:find("LONG STEP RUNNING", 1, true) then seen = true; break end
  end
  T.ok(seen, "the long step started")
  time.sleep(0.5)
  local t0 = time.mono()
  p:kill("INT")
  local r = p:wait(20)
  T.eq(r.status, 3)
  T.ok(time.mono() - t0 < 5, "stopped promptly")
  has(r.stdout, "aborted: the partial report was written")
  local doc = report(out)
  T.eq(doc.verdict, "aborted"); T.eq(doc.aborted, true); T.eq(doc.exit_code, 3)
  T.eq(step(doc, "quick one").result, "passed")
  T.eq(step(doc, "quick two").result, "passed")
  T.eq(step(doc, "long step").result, "interrupted")
  T.eq(step(doc, "after the long one"), nil)
  local stages = {}
  for _, s in ipairs(doc.stages) do stages[s.name] = s end
  T.eq(stages.upgrade.result, "interrupted"); T.eq(stages.after.result, "skipped")
  T.ok(doc.probes[1].sent > 5, "probe samples before the abort are kept")
  local ledger = cjson.decode(read(out .. "/ledger.json"))
  T.eq(ledger.resources[1].id, "vm-1")
  T.eq(ledger.resources[1].status, "kept", "not cleaned up on abort, left for --ledger")
  local j = junit(out)
  has(j.cases["interrupt.upgrade::long step"], "error: interrupted")
end)

-- ------------------------------------------------------------ refusing bad input

local function write(name, text)
  local p = TMP .. "/" .. name
  local f = assert(io.open(p, "w"))
  f:write(text)
  f:close()
  return p
end

local function exists(path) return os.execute("test -e '" .. path .. "'") == true end

-- A scenario file with one probe declared on line 4 (for the typo cases).
local function probe_scenario(name, probe_fields)
  return write(name .. ".lua", table.concat({
    "local scenario = require 'upgrun.scenario'",
    "local s = scenario.new { name = '" .. name .. "' }",
    "s:stage('before', function(ctx) ctx:step('a', function() end) end)",
    "s:probe { name = 'api', interval = 0.05, fn = function() return true end, " .. probe_fields .. " }",
    "s:stage('upgrade', function(ctx) ctx:step('b', function() end) end)",
    "return s", "" }, "\n"))
end

T.case("typos: an unknown probe stage, baseline or budget key is exit 2 naming file:line and the stages", function()
  local cases = {
    { "stage_typo", "stages = { 'upgarde' }", 'stage "upgarde", which is not declared (stages: before, upgrade)' },
    { "baseline_typo", "baseline = 'befor', budget = { max_p95_degradation = 2 }",
      'baseline "befor" is not a declared stage (stages: before, upgrade)' },
    { "budget_typo", "budget = { max_downtme = 1 }", 'unknown key "max_downtme" (known: max_downtime' },
  }
  for _, c in ipairs(cases) do
    local path = probe_scenario(c[1], c[2])
    local out = TMP .. "/" .. c[1]
    local code, so, se = upgrun { path, "-o", out }
    T.eq(code, 2, c[1] .. ": " .. so .. se)
    has(se, path .. ":4: probe api", c[1] .. " stderr")
    has(se, c[3], c[1] .. " stderr")
    T.ok(not exists(out), c[1] .. ": nothing ran, no output directory")
    code, so, se = upgrun { path, "--plan" }
    T.eq(code, 2, c[1] .. " --plan: " .. so)
    has(se, c[3], c[1] .. " --plan stderr")
  end
end)

T.case("a scenario file without `return s`, or returning a string: exit 2, says why", function()
  local code, so, se = upgrun { FIX .. "no_return.lua", "-o", TMP .. "/noret" }
  T.eq(code, 2, so)
  has(se, "declares scenario no_return (", "stderr")
  has(se, "no_return.lua:4)", "stderr")
  has(se, "return s", "stderr")
  local p = write("returns_string.lua", "return 'oops'\n")
  code, so, se = upgrun { p }
  T.eq(code, 2, so)
  has(se, "returns a string", "stderr")
  p = write("plain.lua", "io.write('plain script ran\\n')\n")
  code, so = upgrun { p }
  T.eq(code, 0, "a plain script returning nothing still exits 0")
  has(so, "plain script ran")
end)

T.case("a duplicate step name: exit 2 with both places; other steps still recorded", function()
  local out = TMP .. "/dup"
  local code, so, se = upgrun { FIX .. "typos.lua", "-o", out, "--set", "dup=true" }
  T.eq(code, 2, so)
  has(se, 'typos.lua:10: step "restart" is declared twice in stage upgrade (first at ', "stderr")
  has(se, "typos.lua:9)", "stderr")
  local doc = report(out)
  T.eq(doc.exit_code, 2, "the report agrees with the exit code")
  code = upgrun { FIX .. "typos.lua", "-o", TMP .. "/nodup" }
  T.eq(code, 0, "without the duplicate the same scenario passes")
  code, so, se = upgrun { FIX .. "typos.lua", "--plan", "--set", "dup=true" }
  T.eq(code, 2, so)
  has(se, 'step "restart" is declared twice', "--plan stderr")
end)

T.case("--set of an empty list, -i without a file, a missing -i file: exit 2 before anything runs", function()
  local code, _, se = upgrun { FIX .. "typos.lua", "--set", "names=", "-o", TMP .. "/emptylist" }
  T.eq(code, 2)
  has(se, "--set names: expects a comma-separated list of at least one item", "stderr")
  T.ok(not exists(TMP .. "/emptylist"), "no output directory")
  code, _, se = upgrun { FIX .. "typos.lua", "-i", "-o", TMP .. "/noinv" }
  T.eq(code, 2)
  has(se, "-i needs a file", "stderr")
  T.ok(not se:find("unknown option", 1, true), se)
  code, _, se = upgrun { FIX .. "typos.lua", "-i", TMP .. "/no-such-inventory.yml", "-o", TMP .. "/missinv" }
  T.eq(code, 2)
  has(se, "-i " .. TMP .. "/no-such-inventory.yml: no such file", "stderr")
  T.ok(not exists(TMP .. "/missinv"), "checked before the output directory is made")
  local inv = write("bad-inventory.yml", "all:\n  hosts: [\n")
  code, _, se = upgrun { FIX .. "typos.lua", "-i", inv, "-o", TMP .. "/badinv" }
  T.eq(code, 2, se)
  has(se, "bad-inventory.yml", "stderr")
  T.ok(not exists(TMP .. "/badinv"), "a run that did not start leaves no directory it made")
end)

T.case("a reused -o directory is refused (exit 2, named) unless --force, which keeps the earlier ledger records",
  function()
  local out = TMP .. "/reused"
  local code = upgrun { FIX .. "basic.lua", "-o", out, "--keep", "-q", "--set", "sleep=0" }
  T.eq(code, 0)
  local first = read(out .. "/report.json")
  local so, se
  code, so, se = upgrun { FIX .. "basic.lua", "-o", out, "-q", "--set", "sleep=0" }
  T.eq(code, 2, so)
  has(se, "output directory " .. out .. " is not empty", "stderr")
  has(se, "--force", "stderr")
  T.eq(read(out .. "/report.json"), first, "the first run's report is untouched")
  code = upgrun { FIX .. "basic.lua", "-o", out, "-q", "--set", "sleep=0", "--force", "--keep" }
  T.eq(code, 0)
  local l = cjson.decode(read(out .. "/ledger.json"))
  T.eq(#l.resources, 2, "the earlier run's kept record and the new one")
  T.eq(l.resources[1].id, "t-1"); T.eq(l.resources[1].status, "kept")
  has(l.resources[1].origin, "earlier run", "origin")
end)

T.case("default output directories are unique for runs started together", function()
  local cwd = TMP .. "/defaults"
  os.execute("mkdir -p '" .. cwd .. "'")
  local ps = {}
  for i = 1, 3 do
    ps[i] = proc.spawn { argv = { BIN, FIX .. "basic.lua", "-q", "--set", "sleep=0" }, cwd = cwd }
  end
  for i = 1, 3 do T.eq(ps[i]:wait(60).status, 0) end
  local dirs = {}
  local ls = io.popen("ls '" .. cwd .. "/out'")
  for l in ls:lines() do dirs[#dirs + 1] = l end
  ls:close()
  T.eq(#dirs, 3, "three directories: " .. table.concat(dirs, " "))
  for _, d in ipairs(dirs) do
    T.ok(d:match("^basic%-%d+T%d+%.%d%d%dZ%-%d+"), "name has milliseconds and the pid: " .. d)
    T.ok(read(cwd .. "/out/" .. d .. "/report.json"), d .. " has its own report")
  end
end)

-- ------------------------------------------------------------ CLI conventions

T.case("options before and after the script; -- ends them", function()
  local code, so = upgrun { "--plan", FIX .. "basic.lua" }
  T.eq(code, 0, so)
  has(so, "stage upgrade   [needs: before]")
  code, so = upgrun { "--set", "sleep=0.5", FIX .. "basic.lua", "--plan" }
  T.eq(code, 0, so)
  has(so, "sleep = 0.5")
  code, so = upgrun { "--plan", "--", FIX .. "basic.lua" }
  T.eq(code, 0, so)
  local se
  code, so, se = upgrun { FIX .. "basic.lua", "--", "--plan" }
  T.eq(code, 2, so)
  has(se, "unexpected argument --plan after --", "stderr")
  code, so, se = upgrun { "--bogus", FIX .. "basic.lua" }
  T.eq(code, 2, so)
  has(se, "unknown option --bogus", "stderr")
end)

T.case("top-level --help lists every option and subcommand", function()
  for _, args in ipairs { { "--help" }, { "-h" } } do
    local code, so = upgrun(args)
    T.eq(code, 0)
    for _, w in ipairs { "--inventory", "--cloud", "--output", "--force", "--set", "--hooks", "--ledger", "--keep",
                         "--plan", "--quiet", "--verbose", "--color", "compare", "-e", "--version", "Exit codes",
                         "NO_COLOR" } do
      has(so, w, "--help")
    end
  end
  local code, _, se = upgrun {}
  T.eq(code, 2)
  has(se, "--ledger", "usage on stderr")
end)

T.case("--plan without -i shows steps with symbolic node groups; with -i the nodes", function()
  local code, so = upgrun { FIX .. "inventory_plan.lua", "--plan" }
  T.eq(code, 0, so)
  has(so, "nodes are shown as <group>")
  has(so, "step migrate on <controllers>   [nodes: <controllers>]")
  has(so, "step restart <computes>")
  has(so, "step all computes   [nodes: computes]")
  code, so = upgrun { FIX .. "inventory_plan.lua", "--plan", "-i", FIX .. "inventory_plan.yml" }
  T.eq(code, 0, so)
  has(so, "step migrate on ctl1   [nodes: ctl1]")
  has(so, "step restart cmp1"); has(so, "step restart cmp2")
  has(so, "step all computes   [nodes: cmp1, cmp2]")
end)

T.case("-v, --color and NO_COLOR", function()
  local code, so = upgrun { FIX .. "basic.lua", "-o", TMP .. "/verbose", "-v", "--set", "sleep=0" }
  T.eq(code, 0, so)
  has(so, "check all up ok", "-v prints passing checks")
  code, so = upgrun { FIX .. "basic.lua", "-o", TMP .. "/quiet-v", "--set", "sleep=0" }
  T.eq(code, 0)
  T.ok(not so:find("check all up ok", 1, true), "without -v passing checks are not printed")
  T.ok(not so:find("\27[", 1, true), "no colour on a pipe by default")
  code, so = upgrun { FIX .. "basic.lua", "-o", TMP .. "/color", "--set", "sleep=0", "--color=always" }
  T.eq(code, 0)
  has(so, "\27[32mok\27[0m", "--color=always")
  local r = proc.run({ "env", "NO_COLOR=1", "script", "-qec", BIN .. " " .. FIX .. "basic.lua -o " .. TMP
    .. "/nocolor --set sleep=0", "/dev/null" }, { timeout = 60, cwd = TMP })
  -- script(1) (util-linux) gives upgrun a terminal
  T.eq(r.status, 0, tostring(r.stderr))
  has(r.stdout, "stage before", "under script(1)")
  -- (the live status block moves the cursor with other escape sequences)
  T.ok(not r.stdout:find("\27%[[%d;]*m"), "NO_COLOR on a terminal: no colour (SGR) sequence")
  r = proc.run({ "script", "-qec", BIN .. " " .. FIX .. "basic.lua -o " .. TMP .. "/tty --set sleep=0",
                 "/dev/null" }, { timeout = 60, cwd = TMP })
  has(r.stdout or "", "\27[32mok", "a terminal gets colour by default")
  local se
  code, so, se = upgrun { FIX .. "basic.lua", "--color=sometimes" }
  T.eq(code, 2, so)
  has(se, "--color expects auto, always or never", "stderr")
end)

T.case("--plan -i lists each sub-step and the commands it would run on each node; runs nothing", function()
  local marker = TMP .. "/plan-marker"
  local r = proc.run({ BIN, "--plan", FIX .. "plan_commands.lua", "-i", FIX .. "inventory_plan.yml" },
                     { timeout = 60, cwd = TMP, env_add = { PLAN_MARKER = marker } })
  local so = r.stdout
  T.eq(r.status, 0, so .. tostring(r.stderr))
  has(so, "    step upgrade cmp1   [nodes: cmp1]\n      step stop\n        $ cmp1: systemctl stop nova-compute\n"
    .. "      step switch code\n        $ cmp1: ln -sfn '/opt/nova new' /opt/nova\n      step start\n"
    .. "        $ cmp1: systemctl start nova-compute\n")
  has(so, "$ cmp2: systemctl start nova-compute")
  has(so, "      $ ctl1: cat /var/run/ready\n      (not planned further: ")
  has(so, "plan_commands.lua:20: it waits for a state a dry run does not reach)")
  has(so, "    step local command\n", "the plan goes on after a step it could not follow")
  has(so, "--plan does not run local commands")
  T.ok(not exists(marker), "the local command did not run")
  -- without -i the bodies are not run
  local code
  code, so = upgrun { "--plan", FIX .. "plan_commands.lua" }
  T.eq(code, 0, so)
  has(so, "step upgrade <computes>   [nodes: <computes>]")
  T.ok(not so:find("$ ", 1, true), "no commands without -i")
end)

T.case("a hook attached to a stage name is exit 2; a hook that never ran is a warning", function()
  local p = write("stage_hook.lua", table.concat({
    "local scenario = require 'upgrun.scenario'",
    "local s = scenario.new { name = 'stage_hook' }",
    "s:stage('upgrade', function(ctx) ctx:step('a', function() end) end)",
    "s:hook('upgrade', 'before', function() end)",
    "return s", "" }, "\n"))
  local code, so, se = upgrun { p, "-o", TMP .. "/stagehook" }
  T.eq(code, 2, so)
  has(se, 'stage_hook.lua:4: hook "before upgrade": upgrade is a stage', "stderr")
  p = write("unused_hook.lua", table.concat({
    "local scenario = require 'upgrun.scenario'",
    "local s = scenario.new { name = 'unused_hook' }",
    "s:stage('upgrade', function(ctx) ctx:step('a', function() end) end)",
    "s:hook('db_migraton', 'before', function() end)",
    "return s", "" }, "\n"))
  code, so, se = upgrun { p, "-o", TMP .. "/unusedhook" }
  T.eq(code, 0, so)
  has(se, 'unused_hook.lua:4: hook "before db_migraton" never ran', "stderr")
end)

T.case("--events FILE: every timeline event as a JSON line, secrets redacted (a second listener)", function()
  local out, ev = TMP .. "/events", TMP .. "/events.jsonl"
  local code, so = upgrun { FIX .. "basic.lua", "-o", out, "--events", ev, "--set", "sleep=0",
                            "--set", "password=hunter2-xyz", "--set", "fail_check=yes" }
  T.eq(code, 1, so)
  local text = read(ev)
  T.ok(text and not text:find("hunter2", 1, true), "no secret in the event log")
  local kinds, n = {}, 0
  for line in text:gmatch("[^\n]+") do
    local e = cjson.decode(line)
    n = n + 1
    kinds[e.kind] = (kinds[e.kind] or 0) + 1
    if e.kind == "step_end" and e.step == "computes / compute 2" then T.eq(e.result, "passed") end
    if e.kind == "check" and e.result == "failed" then T.eq(e.detail, "password ***") end
  end
  local doc = report(out)
  T.eq(n, #doc.timeline, "one line per timeline event")
  T.eq(kinds.stage_start, 4, "before, upgrade, after, cleanup")
  T.eq(kinds.step_start, kinds.step_end)
  local se
  code, so, se = upgrun { FIX .. "basic.lua", "-o", TMP .. "/events2", "--events", TMP .. "/no/such/dir/ev" }
  T.eq(code, 2, so)
  has(se, "--events: cannot write", "stderr")
end)

T.case("OS_* without a password: the step error says which settings and what is missing", function()
  local p = write("cloud_nopw.lua", table.concat({
    "local scenario = require 'upgrun.scenario'",
    "local s = scenario.new { name = 'cloud_nopw' }",
    "s:stage('before', function(ctx) ctx:step('connect', function() return ctx.cloud end) end)",
    "return s", "" }, "\n"))
  local r = proc.run({ BIN, p, "-o", TMP .. "/nopw" }, { timeout = 60, cwd = TMP,
    env = { PATH = os.getenv("PATH"), HOME = TMP, OS_AUTH_URL = "http://127.0.0.1:9/v3", OS_USERNAME = "admin",
            OS_PROJECT_NAME = "admin" } })
  T.eq(r.status, 1, r.stdout .. r.stderr)
  has(r.stdout, "cannot connect to cloud (OS_*)", "stdout")
  has(r.stdout, "password", "stdout")
  T.ok(not r.stdout:find("cloud nil", 1, true), r.stdout)
end)

os.execute("rm -rf '" .. TMP .. "'")
return T.done()
