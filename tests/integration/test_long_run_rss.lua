-- test_long_run_rss.lua — a CI-sized long run: 4 http probes at 50 Hz against
-- a real local HTTP server (faultserver.py) for UPGRUN_LONGRUN_SECS (default
-- 90) seconds through the real scenario path (samples.jsonl, aggregates,
-- reports). The samples are streamed, not kept, so the resident set stays
-- flat: after a 20 s warm-up it may move by at most 4 MB (keeping the 18,000
-- samples of 90 s in memory, as runs did before, adds ~10 MB). Not a timing
-- assertion: the bound is on memory, and the sample count only has to show
-- the probes ran. The Lua heap is held to the same bound. Under AddressSanitizer
-- (whose quarantine keeps freed memory resident by design) the RSS bound
-- cannot hold and only the Lua heap is checked; the output says so.
local T = require "testlib"
local proc = require "upgrun.proc"
local time = require "upgrun.time"
local scenario = require "upgrun.scenario"

local SECS = tonumber(os.getenv("UPGRUN_LONGRUN_SECS") or "") or 90
local WARMUP = 20
local LIMIT_KB = 4 * 1024

-- Whether this process runs under AddressSanitizer.
local function under_asan()
  local f = io.open("/proc/self/maps")
  if not f then return false end
  local maps = f:read("a")
  f:close()
  return maps:find("libasan", 1, true) ~= nil or (os.getenv("ASAN_OPTIONS") or "") ~= ""
end

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
  local rss, heap = {}, {}
  s:stage("upgrade", function(ctx)
    ctx:step("long wait", function()
      local t0 = time.mono()
      while time.mono() - t0 < SECS do
        time.sleep(5)
        if time.mono() - t0 >= WARMUP then
          rss[#rss + 1] = rss_kb()
          collectgarbage("collect") -- live data only: what the run keeps
          heap[#heap + 1] = math.floor(collectgarbage("count"))
        end
      end
    end)
  end)
  local code = s:run({ "-o", out, "-q" }, "long_run")
  srv:kill("TERM"); srv:wait(5)
  T.eq(code, 0)
  local n = 0
  for _ in io.lines(out .. "/samples.jsonl") do n = n + 1 end
  T.ok(n >= 4 * 50 * SECS * 0.8, "the probes ran: " .. n .. " samples")
  local function range(xs)
    local lo, hi = math.huge, 0
    for _, v in ipairs(xs) do lo = math.min(lo, v); hi = math.max(hi, v) end
    return lo, hi
  end
  local lo, hi = range(rss)
  local hlo, hhi = range(heap)
  io.write(string.format("     %d samples; after %d s: RSS %.1f..%.1f MB, Lua heap %.1f..%.1f MB (RSS kB: %s)\n", n,
    WARMUP, lo / 1024, hi / 1024, hlo / 1024, hhi / 1024, table.concat(rss, ",")))
  T.ok(#rss >= 3, "RSS measured")
  T.ok(hhi - hlo <= LIMIT_KB, string.format("the Lua heap grew by %.1f MB", (hhi - hlo) / 1024))
  if under_asan() then
    io.write("     RSS bound not checked under AddressSanitizer (its quarantine keeps freed memory); the Lua heap is\n")
  else
    T.ok(hi - lo <= LIMIT_KB, string.format("RSS grew by %.1f MB", (hi - lo) / 1024))
  end
  os.execute("rm -rf '" .. out .. "'")
end)

return T.done()
