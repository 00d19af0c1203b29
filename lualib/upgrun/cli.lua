-- upgrun.cli — the command line after the C host: `upgrun [options] SCRIPT
-- [options] [--] [args...]`, `upgrun compare A B`, `upgrun --help`.
-- Options may come before and after the script; `--` ends them. SCRIPT is
-- loaded as text in its own environment and run with the arguments after it.
-- A script that returns a scenario (a table with a `run` method) is run by it
-- with every option (before and after); one that returns an integer exits
-- with it; one that declares a scenario but returns something else is an
-- error (exit 2: "end the file with `return s`").
local M = {}

M.HELP = [[
usage: upgrun [options] SCENARIO.lua [options] [--]   run a scenario
       upgrun SCRIPT.lua [args...]                    run a Lua script (a test, a tool)
       upgrun compare RUN_A RUN_B [--html FILE]       compare the downtime of two runs
       upgrun matrix MATRIX.yml [options]             run a scenario matrix (docs/ci.md)
       upgrun merge DIR... [-o OUT]                   merge runs and matrix shards
       upgrun -e 'lua code' [args...]                 run a string of Lua
       upgrun --version | --help

Scenario options (before or after the scenario file; -- ends them):
  -i, --inventory FILE   the nodes (YAML inventory); checked before anything runs
      --cloud NAME       the cloud in clouds.yaml (OS_CLIENT_CONFIG_FILE)
  -o, --output DIR       output directory; must be new or empty (default
                         out/<scenario>-<UTC time with ms>-<pid>)
      --force            write into a non-empty output directory (earlier
                         ledger records there are carried over, never dropped)
      --set KEY=VALUE    override a parameter (repeatable; SCENARIO --help lists them)
      --hooks FILE       a Lua file of site hooks (repeatable)
      --ledger FILE      verify (and clean up) resources recorded by an earlier run
      --resume DIR       continue the run in DIR at its first top-level step that
                         did not pass (its parameters and ledger; a new output
                         directory); refused if the scenario changed, unless --force
      --from-step NAME   skip the top-level steps before the one named NAME
      --keep             keep persistent resources (no clean-up at the end)
      --plan             print stages, steps, hooks, probes and nodes; run nothing
  -q, --quiet            print only the summary
  -v, --verbose          also print passing checks, hooks and node commands
      --events FILE      every timeline event as a JSON line, as it happens
      --color[=WHEN]     auto (default), always, never; NO_COLOR=1 means never
  -h, --help             this text (after a scenario: its parameters too)

Subcommands:
  compare RUN_A RUN_B    downtime per step of two runs (output dirs or report.json);
                         --html FILE: a page with their timelines on one time scale
  matrix MATRIX.yml      run the cells of a scenario matrix (--list, --shard I/N,
                         --fail-fast; see upgrun-matrix(1), docs/ci.md)
  merge DIR... [-o OUT]  one junit.xml, summary.md and index.html for many runs

Exit codes: 0 passed, 1 a check or budget failed, 2 bad invocation,
config or script, 3 aborted by a signal.
Environment: UPGRUN_LUALIB=DIR loads lualib/ from DIR instead of the copy
built into the binary; NO_COLOR disables colour. See docs/scenarios.md.]]

-- Options that take a separate value (the rest are flags).
local FLAGS = { ["--keep"] = true, ["--force"] = true, ["--plan"] = true, ["-q"] = true, ["--quiet"] = true,
                ["-v"] = true, ["--verbose"] = true, ["--color"] = true, ["--colour"] = true, ["-h"] = true,
                ["--help"] = true }
local TAKES_VALUE = { ["-i"] = true, ["--inventory"] = true, ["--cloud"] = true, ["-o"] = true,
                      ["--output"] = true, ["--set"] = true, ["--hooks"] = true, ["--ledger"] = true,
                      ["--events"] = true }

local function usage(msg)
  io.stderr:write("upgrun: ", msg, "\n(upgrun --help lists the options)\n")
  return 2
end

-- Splits argv into the options before the script, the script and the rest.
local function split(argv)
  local before, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then i = i + 1; break end
    if a:sub(1, 1) ~= "-" or a == "-" then break end
    local name = a:match("^(%-%-[%w%-]+)=") or a
    if not FLAGS[name] and not TAKES_VALUE[name] then return nil, "unknown option " .. a end
    before[#before + 1] = a
    if TAKES_VALUE[a] then
      local v = argv[i + 1]
      if v == nil then return nil, a .. " needs a value" end
      before[#before + 1] = v
      i = i + 1
    end
    i = i + 1
  end
  local rest = {}
  for j = i + 1, #argv do rest[#rest + 1] = argv[j] end
  return before, argv[i], rest
end

-- Whether the script declared a scenario (it forgot `return s` if so).
local function declared_scenario()
  local ok, scenario = pcall(require, "upgrun.scenario")
  if not ok then return nil end
  return next(scenario.declared)
end

function M.main(...)
  local argv = table.pack(...)
  if argv.n == 0 then io.stderr:write(M.HELP, "\n"); return 2 end
  local before, path, rest = split(argv)
  if not before then return usage(path) end
  if path == nil then
    for _, a in ipairs(before) do
      if a == "-h" or a == "--help" then io.stdout:write(M.HELP, "\n"); return 0 end
    end
    local given = #before > 0 and (" (options: " .. table.concat(before, " ") .. ")") or ""
    return usage("no scenario or script given" .. given)
  end
  if path == "compare" then return require("upgrun.compare").main(table.unpack(rest)) end
  if path == "matrix" then return require("upgrun.matrix").main(table.unpack(rest)) end
  if path == "merge" then return require("upgrun.merge").main(table.unpack(rest)) end
  local env = setmetatable({}, { __index = _G })
  local dir = path:match("^(.*)/[^/]*$") or "."
  package.path = dir .. "/?.lua;" .. package.path
  _G.arg = table.pack(table.unpack(rest))
  _G.arg[0] = path
  local chunk, err = loadfile(path, "t", env)
  if not chunk then
    io.stderr:write("upgrun: ", err, "\n")
    return 2
  end
  local result = chunk(table.unpack(rest))
  if type(result) == "table" and type(result.run) == "function" then
    local args = {}
    for _, a in ipairs(before) do args[#args + 1] = a end
    for _, a in ipairs(rest) do args[#args + 1] = a end
    return result:run(args, path)
  end
  if math.type(result) == "integer" then return result end
  local s = declared_scenario()
  if s then
    io.stderr:write(string.format("upgrun: %s declares scenario %s (%s) but returns %s: end the file with "
      .. "`return s` (s being the scenario)\n", path, s.name, s.declared_at,
      result == nil and "nothing" or ("a " .. type(result))))
    return 2
  end
  if result ~= nil then
    io.stderr:write(string.format("upgrun: %s returns a %s; a script returns a scenario, an integer exit "
      .. "code or nothing\n", path, type(result)))
    return 2
  end
  if #before > 0 then return usage("options " .. table.concat(before, " ") .. " are for scenarios; " .. path
    .. " is not one (it returns no scenario)") end
  return 0
end

return M
