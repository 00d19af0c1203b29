-- test_abort_in_flight.lua — an API that hangs, then Ctrl-C: the samples in
-- flight longer than the probe's interval count as `unknown` up to the abort,
-- so the hang shows as downtime (not 0 s), and the report says aborted with
-- exit 3 (against a real HTTP server that stops answering: outage_server.py).
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local time = require "upgrun.time"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FIX = T.src("tests/integration/fixtures/scenarios/")
local SERVER = T.src("tests/integration/outage_server.py")

T.case("a hung API at Ctrl-C counts as out until the abort", function()
  -- answers for 1 s, then reads requests and never answers
  local t0 = time.mono() + 0.3
  local srv = proc.spawn { argv = { "python3", SERVER, "--t0", string.format("%.6f", t0), "--schedule",
    cjson.encode { { kind = "hang", start = 1, ["end"] = 100 } }, "--length", "100", "--hold", "60" },
    stdout = "capture", stderr = "inherit" }
  local port = (srv:read_line(10) or ""):match("^PORT (%d+)")
  assert(port, "outage_server did not start")
  local out = os.tmpname()
  os.remove(out)
  local p = proc.spawn { argv = { BIN, FIX .. "probe_hang.lua", "-o", out, "--set", "url=http://127.0.0.1:" .. port
    .. "/" }, stdout = "capture", stderr = "capture" }
  local seen
  for _ = 1, 20 do
    local line = p:read_line(10)
    if not line then break end
    if line:find("WAITING", 1, true) then seen = true; break end
  end
  T.ok(seen, "the scenario runs")
  -- wait until the server has hung for 3 s
  while time.mono() < t0 + 4 do time.sleep(0.05) end
  p:kill("INT")
  local r = p:wait(20)
  srv:kill("TERM"); srv:wait(5)
  T.eq(r.status, 3)
  T.valid_report(out)
  local f = assert(io.open(out .. "/report.json"))
  local doc = cjson.decode(f:read("a"))
  f:close()
  T.eq(doc.verdict, "aborted")
  T.eq(doc.exit_code, 3)
  local pr = doc.probes[1]
  T.eq(#pr.outages, 1, "one outage")
  local o = pr.outages[1]
  T.ok(o.open, "still out at the abort")
  -- hung from ~1 s after t0 to the abort ~3 s later (± an interval each end)
  T.ok(o.duration >= 2.7 and o.duration <= 3.6, "outage lasts until the abort: " .. o.duration)
  T.ok(pr.counts.unknown >= 10, "in-flight samples count as unknown: " .. tostring(pr.counts.unknown))
  local lines = 0
  for line in io.lines(out .. "/samples.jsonl") do
    local s = cjson.decode(line)
    if s.result == "unknown" then
      T.eq(s.err, "aborted")
      T.ok(s.latency > 0.1, "older than the interval")
    end
    lines = lines + 1
  end
  T.ok(lines >= 30, "samples streamed: " .. lines)
  os.execute("rm -rf '" .. out .. "'")
end)

return T.done()
