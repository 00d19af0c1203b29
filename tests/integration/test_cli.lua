-- test_cli — the upgrun command line as a user meets it: --version/--help,
-- -e, exit codes, file:line on syntax and runtime errors, a script's own
-- exit code, SIGINT/SIGTERM cancelling every task (exit 3, cleanup ran).
local T = require "testlib"

local BIN = os.getenv("UPGRUN_BIN") or "../../build/upgrun"
local TMP = os.tmpname()
os.remove(TMP)
os.execute("mkdir -p " .. TMP)

-- Runs a shell command line; returns exit code, stdout, stderr.
local function sh(cmd)
  local out, err = TMP .. "/out", TMP .. "/err"
  local ok, how, code = os.execute(cmd .. " >" .. out .. " 2>" .. err)
  local function slurp(p) local f = io.open(p); local s = f:read("a"); f:close(); return s end
  if how == "signal" then code = 128 + code end
  return ok and 0 or code, slurp(out), slurp(err)
end

local function write(name, text)
  local p = TMP .. "/" .. name
  local f = assert(io.open(p, "w")); f:write(text); f:close()
  return p
end

T.case("--version and --help", function()
  local code, out = sh(BIN .. " --version")
  T.eq(code, 0); T.ok(out:match("^upgrun %d+%.%d+%.%d+"), out)
  code, out = sh(BIN .. " --help")
  T.eq(code, 0); T.ok(out:find("Exit codes", 1, true))
  code = sh(BIN)
  T.eq(code, 2)
  code = sh(BIN .. " --bogus")
  T.eq(code, 2)
end)

T.case("-e runs code with arguments", function()
  local code, out = sh(BIN .. [[ -e 'print(select("#", ...), ...)' a b]])
  T.eq(code, 0); T.eq(out, "2\ta\tb\n")
end)

T.case("a syntax error names file:line and exits 2", function()
  local p = write("syntax.lua", "local x = 1\nlocal = 2\n")
  local code, _, err = sh(BIN .. " " .. p)
  T.eq(code, 2); T.ok(err:find(p .. ":2:", 1, true), err)
end)

T.case("a runtime error prints file:line and a traceback, exits 2", function()
  local p = write("runtime.lua", "local function f()\n  error('went wrong')\nend\nf()\n")
  local code, _, err = sh(BIN .. " " .. p)
  T.eq(code, 2)
  T.ok(err:find(p .. ":2: went wrong", 1, true), err)
  T.ok(err:find("stack traceback", 1, true), err)
end)

T.case("a missing script is a clear error", function()
  local code, _, err = sh(BIN .. " " .. TMP .. "/nope.lua")
  T.eq(code, 2); T.ok(err:find("nope.lua", 1, true), err)
end)

T.case("the script's integer result is the exit code; arg is set", function()
  local p = write("code.lua", "assert(arg[1] == 'x' and arg[0]:find('code.lua')); return 1\n")
  T.eq((sh(BIN .. " " .. p .. " x")), 1)
end)

T.case("bytecode is refused", function()
  local p = write("bc.lua", string.dump(function() end))
  local code, _, err = sh(BIN .. " " .. p)
  T.eq(code, 2); T.ok(err:find("binary", 1, true) or err:find("attempt to load", 1, true), err)
end)

for _, sig in ipairs({ "INT", "TERM" }) do
  T.case("SIG" .. sig .. " cancels every task, runs cleanup, exits 3", function()
    local mark = TMP .. "/closed-" .. sig
    local p = write("sleep.lua", string.format([[
local task, time = require "upgrun.task", require "upgrun.time"
local other = task.spawn(function()
  local guard <close> = setmetatable({}, { __close = function() io.open(%q, "w"):close() end })
  time.sleep(30)
end)
io.stdout:write("ready\n"); io.stdout:flush()
time.sleep(30)
other:join()
]], mark))
    local t0 = os.time()
    local code, _, err = sh("timeout --preserve-status -s " .. sig .. " 0.5 " .. BIN .. " " .. p)
    T.eq(code, 3, err)
    T.ok(os.time() - t0 < 10)
    T.ok(err:find("aborted", 1, true), err)
    T.ok(io.open(mark), "the other task's <close> handler ran")
  end)
end

T.case("a task error with nobody joining is printed, the script goes on", function()
  local p = write("bg.lua", [[
local task, time = require "upgrun.task", require "upgrun.time"
task.spawn("background", function() error("bg failure") end)
time.sleep(0.05)
print("still here")
]])
  local code, out, err = sh(BIN .. " " .. p)
  T.eq(code, 0); T.eq(out, "still here\n")
  T.ok(err:find("task %d+ %(background%) failed: .*bg failure"), err)
end)

T.case("a main task waiting on nothing is a deadlock, not a hang", function()
  local p = write("dead.lua", [[
local task = require "upgrun.task"
local main = task.current()
local a = task.spawn(function() return main:join() end)
return a:join()
]])
  local code, _, err = sh("timeout 10 " .. BIN .. " " .. p)
  T.eq(code, 2, err); T.ok(err:find("deadlock", 1, true), err)
end)

T.case("a task that never yields is stopped at the spin limit", function()
  local p = write("spin.lua", [[
local task, time = require "upgrun.task", require "upgrun.time"
local ticks = 0
local ticker = task.spawn(function() while true do time.sleep(0.01); ticks = ticks + 1 end end)
local spinner = task.spawn(function() while true do end end)
local ok, err = spinner:join(5)
time.sleep(0.1)
ticker:cancel()
print(ok, err and err.kind, err and err.message:match("without yielding") ~= nil, ticks > 0)
]])
  local code, out = sh("UPGRUN_SPIN_LIMIT=0.3 timeout 20 " .. BIN .. " " .. p)
  T.eq(code, 0); T.eq(out, "nil\terror\ttrue\ttrue\n")
end)

os.execute("rm -rf " .. TMP)
return T.done()
