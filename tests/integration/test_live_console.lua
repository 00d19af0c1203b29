-- test_live_console — the live console on a real pseudo-terminal: upgrun runs
-- the fixture scenario live.lua inside tmux (its own server socket, a fixed
-- window size) against outage_server.py (a real HTTP server that answers 503
-- for a scripted while), and the test reads the screen (tmux capture-pane):
-- the status block is redrawn in place (one copy of each line, the elapsed
-- time moving on), the probe shows DOWN and an OUTAGE line appears while the
-- outage lasts, OUTAGE END with its length and step once it ends, lines are
-- cut to the terminal width, colour follows --color/NO_COLOR. Without a
-- terminal the output stays plain lines (no escape sequences), the OUTAGE
-- lines among them.
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local time = require "upgrun.time"
local shell = require "upgrun.shell"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FIX = T.src("tests/integration/fixtures/scenarios/live.lua")
local SERVER = T.src("tests/integration/outage_server.py")
local TMP = T.tmpdir()
local SOCK = "upgrun-test-live-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e6))

local function tmux(...)
  local r = proc.run({ "tmux", "-L", SOCK, ... }, { timeout = 20 })
  return r
end

-- The screen of session `name` (with escape sequences when `escapes`).
local function screen(name, escapes)
  local r = escapes and tmux("capture-pane", "-p", "-e", "-t", name) or tmux("capture-pane", "-p", "-t", name)
  T.eq(r.status, 0, "capture-pane: " .. tostring(r.stderr))
  return r.stdout
end

-- Polls the screen every 0.1 s until pred(text) holds; fails after `timeout` s.
local function wait_screen(name, pred, timeout, what)
  local deadline = time.mono() + timeout * T.slack
  while true do
    local text = screen(name)
    if pred(text) then return text end
    if time.mono() > deadline then T.fail("timed out waiting for " .. what .. "; the screen:\n" .. text, 2) end
    time.sleep(0.1)
  end
end

local function count(text, needle)
  local n, i = 0, 1
  while true do
    local a, b = text:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

local function lines(text)
  local out = {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

-- Starts upgrun on the fixture in a new tmux session of cols x rows; `env` is
-- a prefix like "NO_COLOR=1"; the shell prints EXIT=<code> when it ends.
local function start(name, cols, rows, url, go, args, env)
  local argv = { BIN, FIX, "--set", "url=" .. url, "--set", "go=" .. go }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local cmd = (env and ("env " .. env .. " ") or "") .. shell.join(argv) .. "; echo EXIT=$?; sleep 120"
  local r = tmux("new-session", "-d", "-s", name, "-x", tostring(cols), "-y", tostring(rows), cmd)
  T.eq(r.status, 0, "tmux new-session: " .. tostring(r.stderr))
end

-- The outage server; its schedule starts when the fixture's step requests
-- /go (the step's first act, --set go=...), so offsets are from the step's start.
local function server(schedule)
  local srv = proc.spawn { argv = { "python3", SERVER, "--trigger", "/go", "--schedule", cjson.encode(schedule),
    "--length", "30", "--linger", "60" }, stdout = "capture", stderr = "inherit" }
  local port = (srv:read_line(10) or ""):match("^PORT (%d+)")
  T.ok(port, "outage_server started")
  local base = "http://127.0.0.1:" .. port .. "/"
  return srv, base, base .. "go"
end

local function check(name, fn)
  T.case(name, function()
    local ok, e = xpcall(fn, debug.traceback)
    tmux("kill-server")
    if not ok then error(e, 0) end
  end)
end

check("on a terminal: the status block redrawn in place, outage lines as they happen", function()
  T.ok(proc.run({ "tmux", "-V" }, { timeout = 10 }).status == 0, "tmux is installed (tests/setup)")
  -- 503 from 1.5 s to 4 s after the step "restart api" began
  local srv, url, go = server { { kind = "503", start = 1.5, ["end"] = 4 } }
  local out = TMP .. "/tty"
  start("live", 100, 30, url, go, { "-o", out, "--set", "wait=5.5" })
  local s1 = wait_screen("live", function(t) return t:find("> restart api", 1, true) and t:find(" UP ", 1, true) end,
                         15, "the status block with the running step and the probe UP")
  T.eq(count(s1, "> restart api"), 1, "one copy of the step's status line:\n" .. s1)
  T.eq(count(s1, "probe nova api"), 1, "one copy of the probe's status line:\n" .. s1)
  T.ok(s1:find("> roll", 1, true), "the outer step is shown too:\n" .. s1)
  T.ok(s1:find("req/s", 1, true) and s1:find("last ok %d+ ms"), "rate and latency:\n" .. s1)
  local e1 = tonumber(s1:match("> restart api  ([%d.]+) s"))
  T.ok(e1, "elapsed time of the step:\n" .. s1)
  -- the outage: the probe goes DOWN, and the OUTAGE line is already there
  local s2 = wait_screen("live", function(t) return t:find("probe nova api  DOWN", 1, true) end, 15,
                         "the probe DOWN")
  T.ok(s2:find("OUTAGE nova api down at [%d.]+ s during roll / restart api: status 503"),
       "the outage line, while the outage lasts:\n" .. s2)
  T.ok(not s2:find("OUTAGE END", 1, true), "not ended yet:\n" .. s2)
  T.eq(count(s2, "> restart api"), 1, "still one copy of the step line:\n" .. s2)
  local e2 = tonumber(s2:match("> restart api  ([%d.]+) s"))
  T.ok(e2 and e2 > e1, "the elapsed time moved on in place: " .. tostring(e1) .. " -> " .. tostring(e2))
  -- redrawn with colour: DOWN in red (tmux keeps the SGR codes with capture-pane -e)
  T.ok(screen("live", true):find("\27%[31mDOWN"), "DOWN in red")
  local s3 = wait_screen("live", function(t) return t:find("OUTAGE END", 1, true) end, 15, "the end of the outage")
  local len, unc = s3:match("OUTAGE END nova api up again at [%d.]+ s: down ([%d.]+) s ± ([%d.]+) during roll / "
                            .. "restart api")
  T.ok(len, "the end line names the length and the step:\n" .. s3)
  T.near(tonumber(len), 2.5, 0.3, "the outage lasted 2.5 s")
  T.ok(tonumber(unc) <= 0.2, "uncertainty about an interval: " .. unc)
  local s4 = wait_screen("live", function(t) return t:find("EXIT=", 1, true) end, 20, "the end of the run")
  T.ok(s4:find("EXIT=0", 1, true), "exit 0:\n" .. s4)
  T.ok(not s4:find("-- live ", 1, true) and not s4:find("> restart api", 1, true),
       "the status block is erased at the end:\n" .. s4)
  T.eq(count(s4, "OUTAGE nova api down"), 1, "one outage line:\n" .. s4)
  T.ok(s4:find("== live: PASSED", 1, true), "the summary follows:\n" .. s4)
  srv:kill("TERM"); srv:wait(5)
end)

check("a narrow terminal cuts the status lines; NO_COLOR: no colour, still in place", function()
  local srv, url, go = server {}
  start("narrow", 40, 20, url, go, { "-o", TMP .. "/narrow", "--set", "wait=2.5" }, "NO_COLOR=1")
  local s1 = wait_screen("narrow", function(t) return t:find("probe nova api  UP", 1, true) end, 15,
                         "the probe UP")
  for _, l in ipairs(lines(s1)) do
    if l:find("^%-%- live") or l:find("^   probe") or l:find("^ +> ") then
      T.ok(utf8.len(l) <= 39, "status line cut to the width - 1: '" .. l .. "'")
    end
  end
  local probe_line = s1:match("\n(   probe nova api[^\n]*)")
  T.eq(utf8.len(probe_line), 39, "the long probe line is cut at 39 columns: " .. probe_line)
  T.eq(count(s1, "probe nova api"), 1, "one copy:\n" .. s1)
  T.ok(not screen("narrow", true):find("\27%[3%dm"), "NO_COLOR: no colour codes")
  local s2 = wait_screen("narrow", function(t) return t:find("EXIT=", 1, true) end, 20, "the end of the run")
  T.ok(s2:find("EXIT=0", 1, true), s2)
  srv:kill("TERM"); srv:wait(5)
end)

T.case("not a terminal (a pipe, as in CI): plain lines, no escape sequences", function()
  local srv, url, go = server { { kind = "503", start = 0.5, ["end"] = 1 } }
  local r = proc.run({ BIN, FIX, "-o", TMP .. "/pipe", "--set", "url=" .. url, "--set", "go=" .. go, "--set",
    "wait=2" }, { timeout = 60 })
  srv:kill("TERM"); srv:wait(5)
  T.eq(r.status, 0, r.stdout)
  T.ok(not r.stdout:find("\27", 1, true), "no escape sequence:\n" .. r.stdout)
  T.ok(r.stdout:find("\n    restart api ok", 1, true) and not r.stdout:find("-- live", 1, true),
       "the plain lines, no status block:\n" .. r.stdout)
  -- the outage lines are plain lines too, in order with the steps
  local a = r.stdout:find("\nOUTAGE nova api down at [%d.]+ s during roll / restart api: status 503\n")
  local b = r.stdout:find("\nOUTAGE END nova api up again at [%d.]+ s: down [%d.]+ s ± [%d.]+ during roll / "
                          .. "restart api\n")
  local c = r.stdout:find("\n    restart api ok", 1, true)
  T.ok(a and b and a < b and b < c, "OUTAGE, OUTAGE END, then the step's end:\n" .. r.stdout)
end)

os.execute("rm -rf '" .. TMP .. "'")
return T.done()
