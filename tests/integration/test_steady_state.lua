-- test_steady_state.lua — the steady-state hypothesis against a real HTTP
-- server that follows a schedule of outages (outage_server.py): an API that
-- comes up 5 s late is waited for and the before stage sees no outage; one
-- that never comes up stops the run before any step (exit 1, "the cloud is
-- not steady"); one that stays down after the upgrade fails the end check.
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local time = require "upgrun.time"
local scenario = require "upgrun.scenario"

local SERVER = T.src("tests/integration/outage_server.py")

-- The server refuses connections during each {start, end} (s after t0).
local function start_server(t0, windows, length)
  local sched = {}
  for _, w in ipairs(windows) do sched[#sched + 1] = { kind = "refused", start = w[1], ["end"] = w[2] } end
  local p = proc.spawn { argv = { "python3", SERVER, "--t0", string.format("%.6f", t0), "--schedule",
    cjson.encode(sched), "--length", tostring(length), "--linger", "60" }, stdout = "capture", stderr = "inherit" }
  local line = p:read_line(10)
  local port = line and line:match("^PORT (%d+)")
  assert(port, "outage_server did not start: " .. tostring(line))
  return p, port
end

local function read_report(out)
  T.valid_report(out)
  local f = assert(io.open(out .. "/report.json"))
  local doc = cjson.decode(f:read("a"))
  f:close()
  return doc
end

-- A scenario: before (0.5 s), upgrade (until `upgrade_until` s after t0).
local function make(port, t0, upgrade_until)
  local s = scenario.new { name = "steady", steady = { settle = 1, deadline = 15 } }
  s:probe { name = "api", interval = 0.05, timeout = 0.5, http = { url = "http://127.0.0.1:" .. port .. "/" } }
  s:stage("before", function(ctx) ctx:step("look", function() time.sleep(0.5) end) end)
  s:stage("upgrade", function(ctx)
    ctx:step("upgrade", function()
      local left = t0 + (upgrade_until or 0) - time.mono()
      time.sleep(math.max(0.2, left))
    end)
  end)
  return s
end

local function tmpdir()
  local out = os.tmpname()
  os.remove(out)
  return out
end

T.case("an API that comes up 5 s late: the run waits, then the before stage has no outage", function()
  local t0 = time.mono() + 0.3
  local srv, port = start_server(t0, { { 0, 5 } }, 6)
  local out = tmpdir()
  local started = time.mono()
  local code = make(port, t0):run({ "-o", out, "-q" }, "steady")
  local took = time.mono() - started
  srv:kill("TERM"); srv:wait(5)
  T.eq(code, 0)
  local doc = read_report(out)
  T.eq(doc.steady_state.start.result, "steady")
  T.ok(doc.steady_state.start.duration >= 5, "waited for the API: " .. doc.steady_state.start.duration)
  T.ok(took >= 6, "the run waited: " .. took)
  local pr = doc.probes[1]
  T.eq(#pr.outages, 0, "no outage in the stages")
  T.ok(#pr.steady_state_outages >= 1, "the outage while waiting is reported apart")
  T.eq(pr.downtime, 0)
  T.ok(pr.latency_by_stage.before and pr.latency_by_stage.before.n > 0, "a baseline was taken")
  T.ok(pr.latency_by_stage.steady_start, "the settle window has its own latency")
  T.eq(doc.steps[1].stage, "before")
  T.ok(doc.steps[1].start > doc.steady_state.start["end"] - 0.01, "the first step starts once steady")
  os.execute("rm -rf '" .. out .. "'")
end)

T.case("an API that never comes up: exit 1, no step run, the report says why", function()
  local t0 = time.mono() + 0.3
  local srv, port = start_server(t0, { { 0, 60 } }, 60)
  local out = tmpdir()
  local s = make(port, t0)
  s:param("steady_deadline", { default = 3, type = "number" })
  local code = s:run({ "-o", out, "-q", "--set", "steady_deadline=2.5" }, "steady")
  srv:kill("TERM"); srv:wait(5)
  T.eq(code, 1)
  local doc = read_report(out)
  T.eq(doc.verdict, "failed")
  T.eq(#doc.steps, 0, "no step was run")
  T.eq(doc.steady_state.start.result, "not steady")
  T.ok(doc.steady_state.failure:find("^the cloud is not steady: api failing %(.*connect.*%)$"),
       doc.steady_state.failure)
  for _, st in ipairs(doc.stages) do T.eq(st.result, "skipped") end
  T.eq(doc.steady_state["end"], nil, "no end check after no upgrade")
  os.execute("rm -rf '" .. out .. "'")
end)

T.case("an API that stays down after the upgrade fails the end check", function()
  local t0 = time.mono() + 0.3
  -- up for the start check and the before stage, down from 4 s on
  local srv, port = start_server(t0, { { 4, 60 } }, 60)
  local out = tmpdir()
  local code = make(port, t0, 4.5):run({ "-o", out, "-q", "--set", "steady_deadline=2" }, "steady")
  srv:kill("TERM"); srv:wait(5)
  T.eq(code, 1)
  local doc = read_report(out)
  T.eq(doc.steady_state.start.result, "steady")
  T.eq(doc.steady_state["end"].result, "not steady")
  T.ok(doc.steady_state["end"].duration >= 2, "waited the deadline")
  T.ok(doc.steady_state.failure:find("not steady after the upgrade: api failing"), doc.steady_state.failure)
  for _, st in ipairs(doc.stages) do T.eq(st.result, "passed", st.name) end
  T.eq(doc.verdict, "failed")
  os.execute("rm -rf '" .. out .. "'")
end)

T.case("steady_settle=0 turns the check off", function()
  local t0 = time.mono() + 0.3
  local srv, port = start_server(t0, { { 0, 60 } }, 60)
  local out = tmpdir()
  local code = make(port, t0, 2):run({ "-o", out, "-q", "--set", "steady_settle=0" }, "steady")
  srv:kill("TERM"); srv:wait(5)
  local doc = read_report(out)
  T.eq(doc.steady_state.start.result, "off")
  T.eq(#doc.steps, 2, "the steps ran")
  T.eq(code, 0) -- no budget: the outage is reported, not judged
  T.ok(doc.probes[1].downtime > 0.5, "the outage counts as downtime")
  os.execute("rm -rf '" .. out .. "'")
end)

T.case("a probe turned off (stages = {}) is not waited for", function()
  local t0 = time.mono() + 0.3
  local srv, port = start_server(t0, {}, 1)
  local out = tmpdir()
  local s = make(port, t0)
  s:probe { name = "off", interval = 0.05, timeout = 0.5, stages = {}, http = { url = "http://127.0.0.1:1/" } }
  local code = s:run({ "-o", out, "-q", "--set", "steady_deadline=5" }, "steady")
  srv:kill("TERM"); srv:wait(5)
  T.eq(code, 0)
  local doc = read_report(out)
  T.eq(doc.steady_state.start.result, "steady")
  T.eq(doc.probes[2].sent, 0, "the probe turned off sent nothing")
  os.execute("rm -rf '" .. out .. "'")
end)

return T.done()
