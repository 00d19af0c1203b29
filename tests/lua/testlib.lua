-- testlib — the small assertion library of upgrun's Lua tests. A test file:
--   local T = require "testlib"
--   T.case("sleep yields", function() ... T.eq(a, b) ... end)
--   return T.done()      -- prints "N passed, N failed, N skipped", returns the exit code
-- Each case runs in the main task under pcall, so waiting primitives work.
-- T.skip(reason) ends a case as skipped: it is reported, never counted as passed.
-- T.wait_until(fn, timeout, what) waits for a condition instead of sleeping.
local T = { passed = 0, failed = 0, skipped = 0 }
local SKIP = setmetatable({}, { __tostring = function() return "skipped" end })

-- Timing tolerances are multiplied by UPGRUN_TEST_SLACK (default 1): the valgrind run sets it,
-- where every instruction costs ~20x and only memory errors are under test.
T.slack = tonumber(os.getenv("UPGRUN_TEST_SLACK") or "") or 1

-- True under valgrind (tests/run sets UPGRUN_VALGRIND=1): cases moving tens of MB skip
-- themselves there (T.skip, reported), since memory errors, not throughput, are under test.
T.valgrind = os.getenv("UPGRUN_VALGRIND") == "1"

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function T.fail(msg, level) error(msg, (level or 1) + 1) end

function T.ok(v, msg)
  if not v then T.fail("expected a true value" .. (msg and (": " .. msg) or ""), 2) end
  return v
end

function T.eq(got, want, msg)
  if got ~= want then
    T.fail(string.format("%sexpected %s, got %s", msg and (msg .. ": ") or "", fmt(want), fmt(got)), 2)
  end
end

function T.near(got, want, tol, msg)
  tol = tol * T.slack
  if type(got) ~= "number" or math.abs(got - want) > tol then
    T.fail(string.format("%sexpected %s ± %s, got %s", msg and (msg .. ": ") or "", want, tol, fmt(got)), 2)
  end
end

-- Asserts that `res, err` is a failure of the given kind; returns err.
function T.err(kind, res, err)
  if res ~= nil then T.fail("expected an error of kind " .. kind .. ", got a result", 2) end
  if type(err) ~= "table" then T.fail("expected an error table, got " .. fmt(err), 2) end
  if err.kind ~= kind then
    T.fail(string.format("expected error kind %s, got %s (%s)", kind, fmt(err.kind), fmt(err.message)), 2)
  end
  return err
end

-- Asserts that fn(...) raises an error whose message contains `pattern`.
function T.raises(pattern, fn, ...)
  local ok, e = pcall(fn, ...)
  if ok then T.fail("expected an error matching " .. fmt(pattern), 2) end
  if not tostring(e):find(pattern, 1, true) then
    T.fail("error " .. fmt(tostring(e)) .. " does not contain " .. fmt(pattern), 2)
  end
  return e
end

-- Ends the current case as skipped (printed with the reason, counted apart).
function T.skip(reason)
  T.skip_reason = reason
  error(SKIP, 0)
end

-- Polls fn() every 10 ms (sleeping, so other tasks run) until it returns a true value, which
-- is returned; fails after `timeout` seconds (default 5, times T.slack) naming `what`.
function T.wait_until(fn, timeout, what)
  local time = require "upgrun.time"
  local deadline = time.mono() + (timeout or 5) * T.slack
  while true do
    local v = fn()
    if v then return v end
    if time.mono() > deadline then
      T.fail(string.format("timed out after %g s waiting for %s", (timeout or 5) * T.slack, what or "a condition"), 2)
    end
    time.sleep(0.01)
  end
end

function T.case(name, fn)
  local t0 = os.clock()
  local ok, e = xpcall(fn, function(err)
    if err == SKIP then return SKIP end
    return debug.traceback(err, 2)
  end)
  if not ok and e == SKIP then
    T.skipped = T.skipped + 1
    io.write(string.format("skip %s (%s)\n", name, tostring(T.skip_reason)))
  elseif ok then
    T.passed = T.passed + 1
    io.write(string.format("ok   %s (%.0f ms cpu)\n", name, (os.clock() - t0) * 1000))
  else
    T.failed = T.failed + 1
    io.write(string.format("FAIL %s\n     %s\n", name, tostring(e):gsub("\n", "\n     ")))
  end
  io.flush()
end

function T.done()
  io.write(string.format("%d passed, %d failed, %d skipped\n", T.passed, T.failed, T.skipped))
  return (T.failed == 0 and T.passed > 0) and 0 or 1
end

-- The length of the union of intervals {start =, ["end"] =} (sorts the list): an oracle the
-- tests compute on their own from the probes' outages, to check upgrun's downtime unions.
function T.union_length(outs)
  table.sort(outs, function(a, b) return a.start < b.start end)
  local total, s, e = 0, nil, nil
  for _, o in ipairs(outs) do
    if e and o.start <= e then
      if o["end"] > e then e = o["end"] end
    else
      if e then total = total + (e - s) end
      s, e = o.start, o["end"]
    end
  end
  if e then total = total + (e - s) end
  return total
end

-- Path of a file in the source tree.
function T.src(rel) return (os.getenv("UPGRUN_SRC") or "../..") .. "/" .. rel end

-- The whole content of a file, or nil when it cannot be read.
function T.read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- A small deterministic generator (xorshift, independent of math.random) for
-- generated test cases: returns rnd(n) -> 1..n, pick(list), chance(p).
function T.rng(seed, salt)
  local state = seed * 2654435761 % 4294967296 + (salt or 1)
  local function rnd(n)
    state = state ~ ((state << 13) & 0xffffffff)
    state = state ~ (state >> 17)
    state = state ~ ((state << 5) & 0xffffffff)
    return state % n + 1
  end
  return rnd, function(t) return t[rnd(#t)] end, function(p) return rnd(1000) <= p * 1000 end
end

-- Asserts that each report.json (or directory holding one) validates against
-- docs/report.schema.json (tests/validate_report.py, python3-jsonschema).
function T.valid_report(...)
  local argv = { "/usr/bin/python3", T.src("tests/validate_report.py"), ... } -- Debian's, with python3-jsonschema
  local r = require("upgrun.proc").run(argv, { timeout = 60 })
  if r.status ~= 0 then
    T.fail("report.json does not validate against docs/report.schema.json:\n" .. tostring(r.stderr)
      .. tostring(r.stdout), 2)
  end
end

-- A new empty directory under /tmp (left for inspection after a failure).
function T.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"), "cannot create " .. dir)
  return dir
end

return T
