-- test_signals — how a run ends on signals and a closed stdout: upgrun is
-- started as a child process; SIGHUP is an abort like SIGTERM (exit 3, the
-- partial report written), a signal is honoured within a second even while
-- Lua computes without waiting, and a closed stdout (EPIPE) does not stop
-- the run from writing every output file.
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local time = require "upgrun.time"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FIX = T.src("tests/integration/fixtures/scenarios/")
local TMP = T.tmpdir()

local read = T.read

-- Reads stdout lines of p until one contains `marker`; true if seen.
local function wait_for_line(p, marker)
  for _ = 1, 100 do
    local line = p:read_line(10 * T.slack)
    if not line then return false end
    if line:find(marker, 1, true) then return true end
  end
  return false
end

T.case("SIGHUP during a step: exit 3 and the partial report, like SIGTERM", function()
  local out = TMP .. "/hup"
  local p = proc.spawn { argv = { BIN, FIX .. "interrupt.lua", "-o", out }, cwd = TMP }
  T.ok(wait_for_line(p, "LONG STEP RUNNING"), "the long step started")
  local t0 = time.mono()
  T.ok(p:kill("HUP"))
  local r = assert(p:wait(20 * T.slack))
  T.eq(r.status, 3, r.stderr)
  T.ok(time.mono() - t0 < 5 * T.slack, "stopped promptly")
  T.ok(r.stderr:find("SIGHUP", 1, true), r.stderr)
  local text = read(out .. "/report.json")
  T.ok(text, "report.json written")
  T.valid_report(out)
  local doc = cjson.decode(text)
  T.eq(doc.aborted, true); T.eq(doc.exit_code, 3)
end)

-- A script that computes for ever, catching every error but the abort.
local BUSY = [[
  local n, x = 0, 0
  io.stdout:write("BUSY\n"); io.stdout:flush()
  while true do
    local ok, e = pcall(function() for _ = 1, 1e9 do x = x + 1 end end)
    if not ok then
      n = n + 1
      if type(e) == "table" and e.kind == "cancelled" then
        io.stdout:write("caught ", e.kind, " aborted=", tostring(e.aborted), "\n")
        return 0
      end
    end
  end
]]

for _, sig in ipairs { "TERM", "INT", "HUP" } do
  T.case("SIG" .. sig .. " while Lua is busy is honoured within 1 s, as a cancellation the script can catch",
    function()
      local p = proc.spawn { argv = { BIN, "-e", BUSY }, cwd = TMP }
      T.ok(wait_for_line(p, "BUSY"), "the script runs")
      time.sleep(0.2) -- let it get deep into its loop (not synchronisation: it never waits)
      local t0 = time.mono()
      T.ok(p:kill(sig))
      local r = assert(p:wait(10 * T.slack))
      local took = time.mono() - t0
      T.ok(took < 1.0 * T.slack, string.format("exited %.3f s after the signal", took))
      T.eq(r.status, 3, r.stderr)
      T.ok(r.stdout:find("caught cancelled aborted=true", 1, true), r.stdout .. r.stderr)
    end)
end

T.case("SIGTERM while busy inside a coroutine of the script's own is honoured within 1 s", function()
  local code = [[
    local co = coroutine.wrap(function()
      io.stdout:write("BUSY\n"); io.stdout:flush()
      local x = 0
      while true do x = x + 1 end
    end)
    local ok, e = pcall(co)
    io.stdout:write("caught ", tostring(not ok and e.kind), " aborted=", tostring(e.aborted), "\n")
  ]]
  local p = proc.spawn { argv = { BIN, "-e", code }, cwd = TMP }
  T.ok(wait_for_line(p, "BUSY"), "the script runs")
  local t0 = time.mono()
  T.ok(p:kill("TERM"))
  local r = assert(p:wait(10 * T.slack))
  T.ok(time.mono() - t0 < 1.0 * T.slack, string.format("exited %.3f s after the signal", time.mono() - t0))
  T.eq(r.status, 3, r.stderr)
  T.ok(r.stdout:find("caught cancelled aborted=true", 1, true), r.stdout .. r.stderr)
end)

T.case("a closed stdout does not stop the run: every output file is written", function()
  local out = TMP .. "/closed-stdout"
  -- stdout is a pipe whose reading end is closed before upgrun starts (SIGPIPE restored to
  -- its default by Python for the child), so every write to stdout fails with EPIPE
  local r = assert(proc.run({ "python3", "-c",
    "import os, subprocess, sys\n" ..
    "r, w = os.pipe(); os.close(r)\n" ..
    "sys.exit(subprocess.call(sys.argv[1:], stdout=w))",
    BIN, FIX .. "basic.lua", "-o", out }, { timeout = 60 * T.slack, cwd = TMP }))
  T.eq(r.status, 0, r.stderr)
  for _, f in ipairs { "report.json", "junit.xml", "report.html", "samples.jsonl", "ledger.json" } do
    T.ok(read(out .. "/" .. f), f .. " written")
  end
  T.eq(cjson.decode(read(out .. "/report.json")).exit_code, 0)
  T.valid_report(out)
end)

T.case("`upgrun x.lua | head -1` still writes every output file", function()
  local out = TMP .. "/head"
  local r = assert(proc.run({ "sh", "-c", '"$0" "$1" -o "$2" | head -1', BIN, FIX .. "basic.lua", out },
    { timeout = 60 * T.slack, cwd = TMP }))
  T.eq(r.status, 0, r.stderr)
  for _, f in ipairs { "report.json", "junit.xml", "report.html", "samples.jsonl", "ledger.json" } do
    T.ok(read(out .. "/" .. f), f .. " written")
  end
end)

os.execute("rm -rf '" .. TMP .. "'")
return T.done()
