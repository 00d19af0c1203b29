-- test_matrix — `upgrun matrix` and `upgrun merge` end to end: the matrix
-- fixture fixtures/matrix/http.yml (scenario http_api.lua probing the local
-- HTTP fault server, tests/integration/faultserver.py) listed, run as two
-- shards one after the other, then merged; the merged junit.xml is parsed
-- by Python's xml module, the HTML index's links are followed on disk.
-- Also the bad inputs: an unknown parameter, a bad --shard, a directory
-- that is not a run, a failing before_each, --fail-fast, a missing shard.
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local time = require "upgrun.time"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FIX = T.src("tests/integration/fixtures/matrix/")
local TMP = T.tmpdir()

local srv do
  local p = assert(proc.spawn {
    argv = { "python3", T.src("tests/integration/faultserver.py"), "--lifetime", "400" }, stderr = "inherit" })
  local line = p:read_line(10)
  local port, dead = (line or ""):match("^(%d+) (%d+) %d+$")
  assert(port, "faultserver did not start: " .. tostring(line))
  srv = { base = "http://127.0.0.1:" .. port, dead = "http://127.0.0.1:" .. dead, p = p }
end

local ENV = { FAULT_BASE = srv.base, FAULT_DEAD = srv.dead, MATRIX_LOG = TMP .. "/before_each.log" }

local function upgrun(args, timeout, extra_env)
  local argv = { BIN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local env = {}
  for k, v in pairs(ENV) do env[k] = v end
  for k, v in pairs(extra_env or {}) do env[k] = v end
  local r = assert(proc.run(argv, { timeout = timeout or 120, cwd = TMP, env_add = env }))
  return r.status, r.stdout or "", r.stderr or ""
end

local read = T.read

local function has(s, needle, what)
  T.ok(s and s:find(needle, 1, true), (what or "") .. " contains " .. needle .. ":\n" .. tostring(s))
end

-- junit.xml parsed by Python: {tests, failures, errors, skipped, suites = {name = {tests, failures, errors, skipped}}}
local function junit(path)
  local script = [[
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
out = {k: int(root.get(k)) for k in ("tests", "failures", "errors", "skipped")}
suites, n = {}, 0
for s in root.findall("testsuite"):
    cases = s.findall("testcase")
    n += len(cases)
    got = {"tests": len(cases), "failures": 0, "errors": 0, "skipped": 0}
    for c in cases:
        for kind, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            if c.find(kind) is not None:
                got[key] += 1
    for k in got:
        assert int(s.get(k)) == got[k], (s.get("name"), k)
    suites[s.get("name")] = got
assert n == out["tests"], (n, out["tests"])
out["suites"] = suites
print(json.dumps(out))
]]
  local r = proc.run({ "python3", "-c", script, path }, { timeout = 30 })
  T.eq(r.status, 0, "junit.xml parses: " .. tostring(r.stderr))
  return cjson.decode(r.stdout)
end

local ALL = { "503-0.2", "503-1.5-b_first", "drop-0.2", "refused-0.2" }

T.case("--list: the cells in matrix order with stable ids; shards split them", function()
  local code, so, se = upgrun { "matrix", FIX .. "http.yml", "--list" }
  T.eq(code, 0, se)
  local ids = {}
  for line in so:gmatch("[^\n]+") do ids[#ids + 1] = line:match("^%s*%d+%s+(%S+)") end
  T.eq(table.concat(ids, " "), "503-0.2 503-1.5-b_first drop-0.2 refused-0.2",
       "product (first axis slowest) minus exclude, include extends 503-1.5, adds refused-0.2")
  has(so, "order=b_first outage=1.5", "the include's extra key on its cell")
  local _, again = upgrun { "matrix", FIX .. "http.yml", "--list" }
  T.eq(again, so, "the same listing every time")
  local _, s1 = upgrun { "matrix", FIX .. "http.yml", "--list", "--shard", "1/2" }
  local _, s2 = upgrun { "matrix", "--shard", "2/2", FIX .. "http.yml", "--list" }
  has(s1, "503-0.2"); has(s1, "drop-0.2"); has(s2, "503-1.5-b_first"); has(s2, "refused-0.2")
  T.ok(not s1:find("refused", 1, true) and not s2:find("drop", 1, true), "disjoint")
end)

T.case("bad input: exit 2 naming the cell and parameter, the shard, the field", function()
  local code, _, se = upgrun { "matrix", FIX .. "unknown_param.yml", "--list" }
  T.eq(code, 2)
  has(se, 'cell drop-blue: "colour" is not a parameter of scenario http_api', "stderr")
  has(se, "unknown_param.yml", "stderr names the file")
  for _, bad in ipairs { "3/2", "0/1", "two" } do
    code, _, se = upgrun { "matrix", FIX .. "http.yml", "--shard", bad }
    T.eq(code, 2, bad)
    has(se, "--shard", "stderr")
  end
  local f = assert(io.open(TMP .. "/bad_exclude.yml", "w"))
  f:write("scenario: " .. FIX .. "http_api.lua\nmatrix:\n  fault: [drop]\n  exclude:\n    - colour: blue\n")
  f:close()
  code, _, se = upgrun { "matrix", TMP .. "/bad_exclude.yml", "--list" }
  T.eq(code, 2)
  has(se, 'matrix.exclude[1]: "colour" is not an axis', "stderr")
  f = assert(io.open(TMP .. "/typo.yml", "w"))
  f:write("scenario: " .. FIX .. "http_api.lua\nbefore_eahc: true\n")
  f:close()
  code, _, se = upgrun { "matrix", TMP .. "/typo.yml", "--list" }
  T.eq(code, 2)
  has(se, 'unknown key "before_eahc"', "stderr")
  code, _, se = upgrun { "matrix", FIX .. "http.yml", "--list" }
  T.eq(code, 0, se)
  code, _, se = upgrun { "matrix", FIX .. "nope.yml" }
  T.eq(code, 2)
  has(se, "nope.yml", "stderr")
end)

T.case("two shards one after the other, then merge: a suite per cell, summary, index, worst exit", function()
  os.remove(ENV.MATRIX_LOG)
  local code1, so1 = upgrun({ "matrix", FIX .. "http.yml", "--shard", "1/2", "-o", TMP .. "/shard1", "-q" }, 200)
  T.eq(code1, 0, "shard 1 holds two passing cells:\n" .. so1)
  local code2, so2 = upgrun({ "matrix", FIX .. "http.yml", "--shard", "2/2", "-o", TMP .. "/shard2", "-q" }, 200)
  T.eq(code2, 1, "shard 2 holds the cell over its budget:\n" .. so2)
  T.eq(read(ENV.MATRIX_LOG), "503-0.2\ndrop-0.2\n503-1.5-b_first\nrefused-0.2\n",
       "before_each ran before each cell, in order")
  local m2 = cjson.decode(read(TMP .. "/shard2/matrix.json"))
  T.eq(#m2.all_cells, 4); T.eq(m2.shard.index, 2); T.eq(m2.shard.count, 2)
  T.eq(m2.cells[1].id, "503-1.5-b_first"); T.eq(m2.cells[1].exit_code, 1); T.eq(m2.cells[1].verdict, "failed")
  T.eq(m2.cells[1].params.order, "b_first")
  local rep = cjson.decode(read(TMP .. "/shard2/refused-0.2/report.json"))
  T.valid_report(TMP .. "/shard2/refused-0.2")
  T.eq(rep.params.fault, "refused", "the cell ran with its parameters")
  T.near(rep.probes[1].downtime, 0.2, 0.1, "the refused port was seen as an outage")

  local notrun = TMP .. "/not_a_run"
  os.execute("mkdir -p '" .. notrun .. "'")
  local code, so, se = upgrun { "merge", TMP .. "/shard1", TMP .. "/shard2", notrun, "-o", TMP .. "/merged" }
  T.eq(code, 1, "the worst cell failed:\n" .. so .. se)
  has(se, notrun .. ": not a run", "stderr names the skipped directory")
  local md = read(TMP .. "/merged/summary.md")
  has(md, "FAILED (exit 1)"); has(md, "4 cell(s): 1 failed, 3 passed")
  has(md, "| API | 503-0.2 | 503-1.5-b\\_first | drop-0.2 | refused-0.2 |",
      "downtime side by side, cells in matrix order")
  has(md, "budget api max\\_downtime: total downtime 1.5")
  has(md, "| restart api | ", "downtime per step, side by side")
  T.ok(md:find("| restart api | 0%.[12]%d%d %(api%) | 1%.[45]%d%d %(api%) |"), "the step's longest API downtime")
  has(md, (notrun:gsub("_", "\\_")) .. ": not a run", "summary lists the skipped input (Markdown-escaped)")
  T.eq(so:sub(1, #md), md, "the summary is printed")
  local j = junit(TMP .. "/merged/junit.xml")
  for _, id in ipairs(ALL) do T.ok(j.suites[id], "a suite for " .. id) end
  T.eq(j.failures, 2, "two failures: the budget and its probe")
  T.eq(j.suites["503-1.5-b_first"].failures, 2)
  T.eq(j.suites["503-0.2"].failures + j.suites["503-0.2"].errors, 0)
  T.eq(j.suites["503-0.2"].tests, 7, "5 steps + 1 probe + 1 budget")
  -- the probe testcase lists the outage and its step; the classnames have no dot inside a segment
  local jc = proc.run({ io.open("/usr/bin/python3") and "/usr/bin/python3" or "python3",
                        T.src("tests/integration/junit_check.py"), TMP .. "/merged/junit.xml" }, { timeout = 30 })
  T.eq(jc.status, 0, "junit_check: " .. tostring(jc.stderr))
  local probe_case
  for _, c in ipairs(cjson.decode(jc.stdout).suites["503-1.5-b_first"].cases) do
    if c.classname == "503-1_5-b_first.probes" and c.name == "api" then probe_case = c end
  end
  T.ok(probe_case, "a testcase for the probe, classname with the cell id's dot mapped")
  T.eq(probe_case.result, "failure")
  T.ok(probe_case.message:find("during restart api", 1, true), probe_case.message)
  T.ok(probe_case.system_out:find("outage 1: at ", 1, true), probe_case.system_out)
  local html = read(TMP .. "/merged/index.html")
  local links = 0
  for href in html:gmatch('href="([^"]+)"') do
    links = links + 1
    T.ok(read(TMP .. "/merged/" .. href), "the link resolves: " .. href)
    T.ok(href:match("report%.html$"), href)
  end
  T.eq(links, 4, "one link per cell")
  T.ok(not html:find("src=\"http", 1, true), "no external assets")
  local merged = cjson.decode(read(TMP .. "/merged/merged.json"))
  T.eq(merged.exit_code, 1); T.eq(#merged.cells, 4); T.eq(#merged.skipped_inputs, 1)
  T.near(merged.cells[2].probes.api.downtime, 1.5, 0.1)

  -- plain run directories (no matrix.json): a cell each, named by the directory
  code, so = upgrun { "merge", TMP .. "/shard1/503-0.2", TMP .. "/shard2/503-1.5-b_first/", "-o", TMP .. "/runs" }
  T.eq(code, 1, so)
  j = junit(TMP .. "/runs/junit.xml")
  T.eq(j.suites["503-0.2"].failures, 0); T.eq(j.suites["503-1.5-b_first"].failures, 2)
  has(so, "Parameters of every cell: base=" .. srv.base, "the runs' common --set parameters")
  has(so, "| order=b\\_first outage=1.5 |", "the --set parameters that differ")
  -- one shard alone: the other shard's cells are missing, never passed
  code, so = upgrun { "merge", TMP .. "/shard1", "-o", TMP .. "/merged1" }
  T.eq(code, 2, "missing cells count as errors:\n" .. so)
  has(so, "503-1.5-b\\_first**: in matrix http but in none of the merged shards (1/2)")
  -- only directories that are not runs: nothing merged
  code, so, se = upgrun { "merge", notrun, TMP .. "/nope" }
  T.eq(code, 2, so)
  has(se, TMP .. "/nope: no such directory", "stderr")
end)

T.case("before_each fails: the cell is an error, its scenario never runs", function()
  local code, so = upgrun({ "matrix", FIX .. "bad_before.yml", "-o", TMP .. "/bad_before" }, 60)
  T.eq(code, 2, so)
  has(so, "before_each exited with 7")
  T.eq(read(TMP .. "/bad_before/0.2/report.json"), nil, "the scenario did not run")
  local m = cjson.decode(read(TMP .. "/bad_before/matrix.json"))
  T.eq(m.cells[1].verdict, "error")
  code, so = upgrun { "merge", TMP .. "/bad_before", "-o", TMP .. "/bad_before_merged" }
  T.eq(code, 2, so)
  local j = junit(TMP .. "/bad_before_merged/junit.xml")
  T.eq(j.errors, 1, "counted as an error, not a pass")
end)

T.case("--fail-fast stops after the first cell that does not pass; --keep-going is the default", function()
  local f = assert(io.open(TMP .. "/ff.yml", "w"))
  f:write("scenario: " .. FIX .. "http_api.lua\nset:\n  base: " .. srv.base .. "\nmatrix:\n  outage: [1.5, 0.1]\n")
  f:close()
  local code, so = upgrun({ "matrix", TMP .. "/ff.yml", "-o", TMP .. "/ff", "--fail-fast", "-q" }, 60)
  T.eq(code, 1, so)
  local m = cjson.decode(read(TMP .. "/ff/matrix.json"))
  T.eq(m.cells[1].verdict, "failed"); T.eq(m.cells[2].verdict, "not run")
  has(m.cells[2].reason, "--fail-fast")
  T.eq(read(TMP .. "/ff/0.1/report.json"), nil, "the second cell did not run")
  code, so = upgrun { "merge", TMP .. "/ff", "-o", TMP .. "/ff_merged" }
  T.eq(code, 1, so)
  local j = junit(TMP .. "/ff_merged/junit.xml")
  T.eq(j.suites["0.1"].skipped, 1, "the cell not run is a skipped testcase")
  code = upgrun({ "matrix", TMP .. "/ff.yml", "-o", TMP .. "/kg", "-q" }, 60)
  T.eq(code, 1)
  m = cjson.decode(read(TMP .. "/kg/matrix.json"))
  T.eq(m.cells[2].verdict, "passed", "keep-going ran the second cell")
end)

T.case("a cell that runs past the matrix's timeout is stopped and counts as aborted (exit 3)", function()
  local f = assert(io.open(TMP .. "/slow.yml", "w"))
  f:write("scenario: " .. FIX .. "http_api.lua\ntimeout: 1\nset:\n  base: " .. srv.base .. "\nmatrix:\n"
          .. "  outage: [5, 0.1]\n")
  f:close()
  local code, so = upgrun({ "matrix", TMP .. "/slow.yml", "-o", TMP .. "/slow", "-q" }, 60)
  T.eq(code, 3, so)
  has(so, "cell 5: aborted (exit 3): timed out after 1 s")
  local m = cjson.decode(read(TMP .. "/slow/matrix.json"))
  T.eq(m.cells[1].verdict, "aborted"); T.ok(m.cells[1].duration < 10, "stopped, not waited for")
  T.eq(m.cells[2].verdict, "passed", "the next cell still ran")
end)

T.case("SIGTERM to upgrun matrix: the running cell is stopped and counted as aborted, no further cell starts",
       function()
  local f = assert(io.open(TMP .. "/term.yml", "w"))
  f:write("scenario: " .. FIX .. "http_api.lua\nset:\n  base: " .. srv.base .. "\nmatrix:\n  outage: [20, 0.1]\n")
  f:close()
  local p = assert(proc.spawn { argv = { BIN, "matrix", TMP .. "/term.yml", "-o", TMP .. "/term", "-q" }, cwd = TMP,
                                stdout = "null", stderr = "null" })
  -- wait until the first cell's run has started (its samples file appears)
  local deadline = time.mono() + 20
  while not read(TMP .. "/term/20/samples.jsonl") and time.mono() < deadline do time.sleep(0.05) end
  T.ok(read(TMP .. "/term/20/samples.jsonl"), "the first cell started")
  p:kill("TERM")
  local r = p:wait(30)
  p:close()
  T.eq(r and r.status, 3, "exit 3 (aborted)")
  local m = cjson.decode(read(TMP .. "/term/matrix.json"))
  T.eq(m.cells[1].verdict, "aborted"); has(m.cells[1].reason, "the matrix was aborted")
  T.eq(m.cells[2].verdict, "not run"); T.eq(read(TMP .. "/term/0.1/samples.jsonl"), nil, "the second never started")
end)

T.case("a secret parameter: refused as a matrix value, masked when given in set:", function()
  local f = assert(io.open(TMP .. "/secret_axis.yml", "w"))
  f:write("scenario: " .. FIX .. "http_api.lua\nmatrix:\n  token: [a, b]\n")
  f:close()
  local code, _, se = upgrun { "matrix", TMP .. "/secret_axis.yml", "--list" }
  T.eq(code, 2)
  has(se, 'cell a: "token" is a secret parameter of scenario http_api', "stderr")
  local SECRET = "s3cr3t-matrix-value"
  f = assert(io.open(TMP .. "/secret_set.yml", "w"))
  f:write("scenario: " .. FIX .. "http_api.lua\nset:\n  base: ${FAULT_BASE}\n  token: ${SECRET_TOKEN}\n"
          .. "before_each: test -n \"${SECRET_TOKEN}\"\nmatrix:\n  outage: [0.1, 0.2]\n")
  f:close()
  local so
  code, so = upgrun({ "matrix", TMP .. "/secret_set.yml", "--list" }, 30, { SECRET_TOKEN = SECRET })
  T.eq(code, 0, so)
  has(so, "token=***", "--list")
  T.ok(not so:find(SECRET, 1, true), "--list never shows the secret")
  local so2
  code, so2 = upgrun({ "matrix", TMP .. "/secret_set.yml", "-o", TMP .. "/secret" }, 60, { SECRET_TOKEN = SECRET })
  T.eq(code, 0, so2)
  local mso
  code, mso = upgrun { "merge", TMP .. "/secret", "-o", TMP .. "/secret_merged" }
  T.eq(code, 0, mso)
  has(mso, "Parameters of every cell: base=" .. srv.base .. " token=\\*\\*\\*", "common parameters shown once")
  for _, text in ipairs { so2, mso, read(TMP .. "/secret/matrix.json"), read(TMP .. "/secret/0.1/report.json"),
                          read(TMP .. "/secret_merged/index.html"), read(TMP .. "/secret_merged/junit.xml"),
                          read(TMP .. "/secret_merged/merged.json") } do
    T.ok(not text:find(SECRET, 1, true), "the secret appears nowhere:\n" .. text:sub(1, 400))
  end
end)

srv.p:kill("TERM")
srv.p:wait(5)
srv.p:close()
os.execute("rm -rf '" .. TMP .. "'")
return T.done()
