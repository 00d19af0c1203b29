-- test_long_run_rss.lua — a CI-sized long run: 4 http probes at 50 Hz against
-- a real local HTTP server (faultserver.py) for UPGRUN_LONGRUN_SECS (default
-- 90) seconds through the real scenario path (samples.jsonl, aggregates,
-- reports). The samples are streamed, not kept, so the resident set stays
-- flat: after a 20 s warm-up it may move by at most 4 MB (keeping the 18,000
-- samples of 90 s in memory, as runs did before, adds ~10 MB). Not a timing
-- assertion: the bound is on memory, and the sample count only has to show
-- the probes ran.
local T = require "testlib"
local proc = require "upgrun.proc"
local time = require "upgrun.time"
local scenario = require "upgrun.scenario"

local SECS = tonumber(os.getenv("UPGRUN_LONGRUN_SECS") or "") or 90
local WARMUP = 20
local LIMIT_KB = 4 * 1024

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

T.case(string.format("4 probes at 50 Hz for %d s: RSS flat within 4 MB after warm-up", SECS), function()
  local srv = proc.spawn { argv = { "python3", T.src("tests/integration/faultserver.py"), "--lifetime",
    tostring(SECS + 120) }, stdout = "capture", stderr = "inherit" }
  local port = (srv:read_line(10) or ""):match("^(%d+)")
  assert(port, "faultserver did not start")
  local out = os.tmpname()
  os.remove(out)
  local s = scenario.new { name = "long_run", steady = { settle = 0 } }
  for i = 1, 4 do
    s:probe { name = "api" .. i, rate = 50, timeout = 2,
              http = { url = "http://127.0.0.1:" .. port .. "/status/200", expect = { 200 } } }
  end
  local rss = {}
  s:stage("upgrade", function(ctx)
    ctx:step("long wait", function()
      local t0 = time.mono()
      while time.mono() - t0 < SECS do
        time.sleep(5)
        if time.mono() - t0 >= WARMUP then rss[#rss + 1] = rss_kb() end
      end
    end)
  end)
  local code = s:run({ "-o", out, "-q" }, "long_run")
  srv:kill("TERM"); srv:wait(5)
  T.eq(code, 0)
  local n = 0
  for _ in io.lines(out .. "/samples.jsonl") do n = n + 1 end
  T.ok(n >= 4 * 50 * SECS * 0.8, "the probes ran: " .. n .. " samples")
  local lo, hi = math.huge, 0
  for _, v in ipairs(rss) do lo = math.min(lo, v); hi = math.max(hi, v) end
  io.write(string.format("     %d samples; RSS after %d s: %.1f..%.1f MB (%s kB)\n", n, WARMUP, lo / 1024, hi / 1024,
    table.concat(rss, ",")))
  T.ok(#rss >= 3, "RSS measured")
  T.ok(hi - lo <= LIMIT_KB, string.format("RSS grew by %.1f MB", (hi - lo) / 1024))
  os.execute("rm -rf '" .. out .. "'")
end)

return T.done()
