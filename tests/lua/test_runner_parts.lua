-- test_runner_parts — the runner's parts on their own: the console as a
-- timeline listener, the one copy of each shared concern (errors, redaction,
-- shell quoting, single flight, ms conversion), the typo checks, the plan's
-- symbolic inventory and the output directory rules.
local T = require "testlib"
local task = require "upgrun.task"
local time = require "upgrun.time"
local Timeline = require "upgrun.timeline"
local console = require "upgrun.runner.console"
local errors = require "upgrun.errors"
local redact = require "upgrun.redact"
local shell = require "upgrun.shell"
local single_flight = require "upgrun.single_flight"
local units = require "upgrun.units"
local scenario = require "upgrun.scenario"
local validate = require "upgrun.runner.validate"
local plan = require "upgrun.runner.plan"
local outdir = require "upgrun.runner.outdir"
local params = require "upgrun.runner.params"

T.case("the console is a timeline listener: each event kind prints its line", function()
  local lines = {}
  local tl = Timeline.new()
  tl:listen(console.listener { write = function(l) lines[#lines + 1] = l end })
  tl:event("stage_start", { stage = "upgrade" })
  tl:event("step_start", { name = "db sync", depth = 0 })
  tl:event("check", { name = "migrated", result = "failed", detail = "3 rows left", depth = 1 })
  tl:event("check", { name = "fine", result = "passed", depth = 1 })
  tl:event("step_end", { name = "db sync", depth = 0, result = "failed", duration = 0.25, error = "boom" })
  tl:event("hook", { name = "before db", step = "db sync", result = "failed", error = "no pause" })
  tl:event("log", { message = "hello" })
  tl:event("stage_end", { stage = "upgrade", result = "failed", duration = 1.5 })
  T.eq(table.concat(lines, "\n"), table.concat({
    "stage upgrade",
    "  db sync ...",
    "    CHECK FAILED migrated: 3 rows left",
    "  db sync FAILED (0.250 s): boom",
    "  HOOK FAILED before db (step db sync): no pause",
    "    hello",
    "stage upgrade: failed (1.500 s)" }, "\n"))
  -- a second listener (verbose, coloured) sees the same events
  local v = {}
  local tl2 = Timeline.new()
  tl2:listen(console.listener { write = function(l) v[#v + 1] = l end, verbose = true, color = true })
  tl2:event("check", { name = "fine", result = "passed", depth = 0 })
  T.eq(v[1], "  check fine \27[32mok\27[0m")
  T.eq(console.use_color("never"), false); T.eq(console.use_color("always"), true)
end)

T.case("errors: one constructor, printed as kind: message, kinds listed once", function()
  local e = errors.new("timeout", "took too long", { step = "x" })
  T.eq(tostring(e), "timeout: took too long"); T.eq(e.step, "x")
  T.eq(errors.message(e), "took too long"); T.eq(errors.message("plain"), "plain")
  T.eq(tostring(errors.newf("exit", "%s exited %d", "ls", 2)), "exit: ls exited 2")
  T.ok(errors.is(e, "timeout")); T.ok(not errors.is("timeout", "timeout"))
  for _, k in ipairs { "timeout", "cancelled", "exit", "inventory", "usage", "config", "too_large" } do
    T.ok(errors.KINDS[k], "kind " .. k .. " is listed")
  end
  -- the libraries use it
  local nodes = require "upgrun.nodes"
  T.eq(getmetatable(nodes._mkerr("exit", "x")), errors.MT)
  T.eq(getmetatable(require("upgrun.openstack.errors").new("http", "x")), errors.MT)
  local _, ierr = require("upgrun.inventory").parse("all: [1", "bad.yml")
  if ierr then T.eq(getmetatable(ierr), errors.MT, "inventory errors") end
end)

T.case("redact, shell quoting and ms conversion: one copy each", function()
  T.eq(redact.string("pw hunter2 and hunter2", { "hunter2" }), "pw *** and ***")
  T.eq(redact.string("a.b", { "a.b" }), "***", "patterns are escaped")
  T.eq(redact.string("X-Auth-Token: abc123", {}), "X-Auth-Token: ***")
  T.eq(redact.string('{"password": "p"}', {}), '{"password": "***"}')
  T.eq(redact.string("ab", { "ab" }), "ab", "too short to redact")
  T.ok(redact.is_secret_name("os_password")); T.ok(not redact.is_secret_name("sleep"))
  T.ok(redact.is_secret_name("api_key")); T.ok(redact.is_secret_name("keystone_password"))
  T.ok(not redact.is_secret_name("keystone_rate"), "keystone is a service, not a key")
  T.eq(require("upgrun.openstack.errors").scrub("tok abcd1234", { "abcd1234" }), "tok ***")
  T.eq(shell.quote("plain-word_1.0"), "plain-word_1.0")
  T.eq(shell.quote("it's"), "'it'\\''s'")
  T.eq(shell.quote(""), "''")
  T.eq(shell.join { "echo", "a b", "$HOME" }, "echo 'a b' '$HOME'")
  T.eq(require("upgrun.nodes").quote, shell.quote)
  T.eq(units.ms(1.2344), 1234); T.eq(units.ms(0.0005), 1); T.eq(units.ms(nil), nil)
  T.eq(units.ms(math.huge), math.tointeger(2 ^ 53)); T.eq(units.ms(-1), 0); T.eq(units.ms(0 / 0), 0)
  T.eq(units.ms_string(0.01234), "12.3")
  local s, ms = units.split_ms(10.9996)
  T.eq(s, 11); T.eq(ms, 0)
end)

T.case("single flight: concurrent callers share one call; a later call runs again", function()
  local sf = single_flight.new("test")
  local calls = 0
  local function connect()
    calls = calls + 1
    time.sleep(0.05)
    return "conn" .. calls
  end
  local ts = {}
  for i = 1, 5 do ts[i] = task.spawn(function() return sf:run(connect, 5) end) end
  for i = 1, 5 do
    local ok, jok, v = ts[i]:join(5)
    T.ok(ok and jok, "caller " .. i); T.eq(v, "conn1")
  end
  T.eq(calls, 1, "one connection for five callers")
  T.ok(not sf:busy())
  local ok, v = sf:run(connect, 5)
  T.ok(ok); T.eq(v, "conn2")
  local eok, err = sf:run(function() error("refused", 0) end, 5)
  T.eq(eok, nil); T.eq(errors.message(err), "refused")
end)

local function typo_scenario(probe_spec)
  local s = scenario.new { name = "v" }
  s:stage("before", function() end)
  s:stage("upgrade", function() end)
  s:probe(probe_spec)
  return s
end

T.case("validate: probe stages, baselines and budget keys must name declared things", function()
  local fn = function() return true end
  T.ok(validate.scenario(typo_scenario { name = "p", fn = fn, stages = { "upgrade" } }))
  T.ok(validate.scenario(typo_scenario { name = "p", fn = fn, budget = { max_p95_degradation = 2 } }))
  local ok, err = validate.scenario(typo_scenario { name = "p", fn = fn, stages = { "upgarde" } })
  T.eq(ok, nil)
  T.ok(err:find('test_runner_parts.lua:%d+: probe p runs in stage "upgarde", which is not declared %(stages: '
    .. 'before, upgrade%)'), err)
  ok, err = validate.scenario(typo_scenario { name = "p", fn = fn, baseline = "befor" })
  T.eq(ok, nil); T.ok(err:find('baseline "befor"', 1, true), err)
  ok, err = validate.scenario(typo_scenario { name = "p", fn = fn, stages = { "upgrade" },
                                              budget = { max_p95_degradation = 2 } })
  T.eq(ok, nil); T.ok(err:find("baseline stage before is not among its stages", 1, true), err)
  ok, err = validate.scenario(typo_scenario { name = "p", fn = fn, budget = { max_downtime = "1s" } })
  T.eq(ok, nil); T.ok(err:find("max_downtime must be a number", 1, true), err)
end)

T.case("params: an empty list and a value-less option are usage errors", function()
  local s = scenario.new { name = "p", params = { names = { "a" } } }
  local ok, e = pcall(params.parse, s, { "--set", "names=" })
  T.eq(ok, false); T.ok(errors.message(e):find("at least one item", 1, true), errors.message(e))
  ok, e = pcall(params.parse, s, { "--set", "names= a , ,b" })
  T.ok(ok); T.eq(table.concat(e.params.names, "|"), "a|b")
  ok, e = pcall(params.parse, s, { "-i", "-o", "out" })
  T.eq(ok, false); T.eq(errors.message(e), "-i needs a file, got option -o")
  ok, e = pcall(params.parse, s, { "-o" })
  T.eq(ok, false); T.eq(errors.message(e), "-o needs a directory")
end)

T.case("plan: the symbolic inventory names groups instead of nodes", function()
  local inv = plan.symbolic_inventory()
  local g = inv:group("computes")
  T.eq(#g, 1); T.eq(g[1].name, "<computes>"); T.eq(tostring(g[1]), "node <computes>")
  T.eq(next(g[1].vars), nil)
end)

T.case("plan: a command repeated right after itself is counted, a repeated step is not", function()
  local lines = {}
  local pl = plan.new({}, function(l) lines[#lines + 1] = l end)
  pl:say("    $ n1: poll", true); pl:say("    $ n1: poll", true); pl:say("    $ n1: poll", true)
  pl:say("  step a"); pl:say("  step a")
  T.eq(table.concat(lines, "\n"), "    $ n1: poll\n    (the line above 2 more times)\n  step a\n  step a")
end)

T.case("outdir: refuses a non-empty directory without --force; default names are new", function()
  local base = os.tmpname()
  os.remove(base)
  os.execute("mkdir -p '" .. base .. "/full' && touch '" .. base .. "/full/report.json'")
  local dir, err = outdir.prepare({ output = base .. "/full" }, "x")
  T.eq(dir, nil); T.ok(err:find(base .. "/full is not empty", 1, true), err)
  dir = outdir.prepare({ output = base .. "/full", force = true }, "x")
  T.eq(dir, base .. "/full")
  dir = outdir.prepare({ output = base .. "/new" }, "x")
  T.eq(dir, base .. "/new")
  T.ok(outdir.stamp(0):match("^19700101T000000%.000Z$"), outdir.stamp(0))
  T.ok(outdir.default_name("s"):match("^out/s%-%d+T%d+%.%d%d%dZ%-%d+$"), outdir.default_name("s"))
  os.execute("rm -rf '" .. base .. "'")
end)

T.case("params: choices are checked after --set, each item of a list; --help lists them", function()
  local s = scenario.new { name = "ch", params = {
    mode = { default = "a", choices = { "a", "b" } },
    where = { type = "list", default = { "x" }, choices = { "x", "y" } },
  } }
  T.eq(params.parse(s, { "--set", "mode=b", "--set", "where=y,x" }).params.mode, "b")
  local ok, err = pcall(params.parse, s, { "--set", "mode=c" })
  T.ok(not ok and tostring(err.message):find('--set mode: must be one of a, b, got "c"', 1, true), tostring(err))
  ok, err = pcall(params.parse, s, { "--set", "where=x,z" })
  T.ok(not ok and tostring(err.message):find('--set where: each must be one of x, y, got "z"', 1, true), tostring(err))
  T.ok(params.help(s):find("(a | b)", 1, true), params.help(s))
  T.raises("choices must be a non-empty list", scenario.new, { name = "bad", params = { m = { choices = {} } } })
end)

return T.done()
