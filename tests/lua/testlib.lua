-- testlib — the small assertion library of upgrun's Lua tests. A test file:
--   local T = require "testlib"
--   T.case("sleep yields", function() ... T.eq(a, b) ... end)
--   return T.done()      -- prints "N passed, N failed", returns the exit code
-- Each case runs in the main task under pcall, so waiting primitives work.
local T = { passed = 0, failed = 0 }

-- Timing tolerances are multiplied by UPGRUN_TEST_SLACK (default 1): the valgrind run sets it,
-- where every instruction costs ~20x and only memory errors are under test.
T.slack = tonumber(os.getenv("UPGRUN_TEST_SLACK") or "") or 1

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

function T.case(name, fn)
  local t0 = os.clock()
  local ok, e = xpcall(fn, debug.traceback)
  if ok then
    T.passed = T.passed + 1
    io.write(string.format("ok   %s (%.0f ms cpu)\n", name, (os.clock() - t0) * 1000))
  else
    T.failed = T.failed + 1
    io.write(string.format("FAIL %s\n     %s\n", name, tostring(e):gsub("\n", "\n     ")))
  end
  io.flush()
end

function T.done()
  io.write(string.format("%d passed, %d failed\n", T.passed, T.failed))
  return (T.failed == 0 and T.passed > 0) and 0 or 1
end

-- Path of a file in the source tree.
function T.src(rel) return (os.getenv("UPGRUN_SRC") or "../..") .. "/" .. rel end

return T
