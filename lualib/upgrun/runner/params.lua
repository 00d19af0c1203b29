-- upgrun.runner.params — a scenario's command line: the options (USAGE),
-- their parsing into opts, the parameters (defaults, then --set in order,
-- converted to the declared type), the parameter help and --hooks files.
-- Every mistake is a usage error (exit 2) that says what is wrong.
local scenario = require "upgrun.scenario"

local usage_error = scenario.usage_error
local M = {}

M.USAGE = [[
usage: upgrun [options] SCENARIO.lua [options] [--]
  -i, --inventory FILE   the nodes: an Ansible inventory (YAML, INI, JSON, a directory;
                         repeatable); checked before anything runs
      --playbook-dir DIR also read group_vars/ and host_vars/ in DIR, as Ansible
                         does beside a playbook (ansible-inventory --playbook-dir)
      --cloud NAME       the cloud in clouds.yaml (OS_CLIENT_CONFIG_FILE)
  -o, --output DIR       output directory; must be new or empty (default
                         out/<scenario>-<UTC time with ms>-<pid>)
      --force            write into a non-empty output directory (earlier
                         ledger records there are carried over, never dropped)
      --set KEY=VALUE    override a parameter (repeatable; see below)
      --hooks FILE       a Lua file of site hooks (repeatable)
      --ledger FILE      verify (and clean up) resources recorded by an earlier run
      --resume DIR       continue the run in DIR at its first top-level step that
                         did not pass, with its parameters and ledger (into a new
                         output directory); refused if the scenario file changed,
                         unless --force
      --from-step NAME   skip the top-level steps before the one named NAME
      --keep             keep persistent resources (no clean-up at the end)
      --plan             print stages, steps, hooks, probes and nodes; run nothing
                         (with -i: also the nodes of each step)
  -q, --quiet            print only the summary
  -v, --verbose          also print checks that pass, hooks and node commands
      --events FILE      every timeline event as a JSON line, as it happens
      --color[=WHEN]     colour the console: auto (default), always, never;
                         NO_COLOR in the environment means never
  -h, --help             this text and the scenario's parameters
      --                 ends the options
exit codes: 0 passed, 1 a check or budget failed, 2 bad invocation/config/scenario, 3 aborted]]

-- Options that take a value, and what the value is (for "-i needs a file").
M.VALUE = { ["-i"] = "a file", ["--inventory"] = "a file", ["--cloud"] = "a cloud name",
            ["-o"] = "a directory", ["--output"] = "a directory", ["--set"] = "KEY=VALUE",
            ["--hooks"] = "a file", ["--ledger"] = "a file", ["--events"] = "a file",
            ["--resume"] = "a run's output directory", ["--from-step"] = "a step name",
            ["--playbook-dir"] = "a directory" }

local function convert(spec, raw)
  local t = spec.type
  if t == "number" then
    local n = tonumber(raw)
    if not n then usage_error(string.format("--set %s: expects a number, got %q", spec.name, raw)) end
    return n
  elseif t == "boolean" then
    local l = raw:lower()
    if l == "true" or l == "yes" or l == "1" or l == "on" then return true end
    if l == "false" or l == "no" or l == "0" or l == "off" then return false end
    usage_error(string.format("--set %s: expects true or false, got %q", spec.name, raw))
  elseif t == "list" then
    local out = {}
    for item in raw:gmatch("[^,]+") do
      local v = item:match("^%s*(.-)%s*$")
      if v ~= "" then out[#out + 1] = v end
    end
    if #out == 0 then
      usage_error(string.format("--set %s: expects a comma-separated list of at least one item, got %q",
                                spec.name, raw))
    end
    return out
  end
  return raw
end
M.convert = convert

-- Raises a usage error when a parameter declared with `choices` has a value
-- (or, for a list, an item) that is not one of them.
function M.check_choices(spec, value)
  if not spec.choices then return end
  local items = spec.type == "list" and type(value) == "table" and value or { value }
  for _, v in ipairs(items) do
    local found = false
    for _, c in ipairs(spec.choices) do if c == v then found = true end end
    if not found then
      local all = {}
      for i, c in ipairs(spec.choices) do all[i] = tostring(c) end
      usage_error(string.format("--set %s: %s one of %s, got %q", spec.name,
        spec.type == "list" and "each must be" or "must be", table.concat(all, ", "), tostring(v)))
    end
  end
end

-- One line per declared parameter.
function M.help(s)
  local lines = {}
  for _, k in ipairs(s.param_order) do
    local p = s.params[k]
    local d = p.secret and "(secret)" or tostring(type(p.default) == "table" and table.concat(p.default,
      ",") or p.default)
    local choices = p.choices and (" (" .. table.concat(p.choices, " | ") .. ")") or ""
    lines[#lines + 1] = string.format("  %-22s %-8s default %s%s%s", k, p.type, d,
                                      p.description and ("  — " .. p.description) or "", choices)
  end
  return table.concat(lines, "\n")
end

-- The -i sources as one string (-i may be given several times).
function M.inventory_names(opts)
  local inv = opts.inventory
  return type(inv) == "table" and table.concat(inv, " ") or inv
end

-- Parses the command line of scenario s. Returns opts or raises a usage error.
function M.parse(s, args)
  local opts = { sets = {}, hooks = {}, color = "auto" }
  local i = 1
  local function value(flag, inline)
    if inline then return inline end
    i = i + 1
    local v = args[i]
    if v == nil or (v:sub(1, 1) == "-" and v ~= "-" and flag ~= "--set") then
      usage_error(flag .. " needs " .. M.VALUE[flag] .. (v and (", got option " .. v) or ""))
    end
    return v
  end
  while i <= #args do
    local a = args[i]
    local flag, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
    if flag then a = flag end
    if a == "--" then
      if args[i + 1] ~= nil then usage_error("unexpected argument " .. args[i + 1] .. " after --") end
    elseif a == "-i" or a == "--inventory" then -- repeatable: several sources, as ansible -i a -i b
      local v = value(a, inline)
      if v == "" then usage_error("-i needs a file") end
      if opts.inventory == nil then opts.inventory = v
      else
        if type(opts.inventory) ~= "table" then opts.inventory = { opts.inventory } end
        opts.inventory[#opts.inventory + 1] = v
      end
    elseif a == "--playbook-dir" then opts.playbook_dir = value(a, inline)
    elseif a == "--cloud" then opts.cloud = value(a, inline)
    elseif a == "-o" or a == "--output" then opts.output = value(a, inline)
    elseif a == "--set" then opts.sets[#opts.sets + 1] = value(a, inline)
    elseif a == "--hooks" then opts.hooks[#opts.hooks + 1] = value(a, inline)
    elseif a == "--ledger" then opts.ledger = value(a, inline)
    elseif a == "--events" then opts.events = value(a, inline)
    elseif a == "--resume" then opts.resume = value(a, inline)
    elseif a == "--from-step" then opts.from_step = value(a, inline)
    elseif a == "--keep" then opts.keep = true
    elseif a == "--force" then opts.force = true
    elseif a == "--plan" then opts.plan = true
    elseif a == "-q" or a == "--quiet" then opts.quiet = true
    elseif a == "-v" or a == "--verbose" then opts.verbose = true
    elseif a == "--color" or a == "--colour" then
      local w = inline or "always"
      if w ~= "auto" and w ~= "always" and w ~= "never" then
        usage_error("--color expects auto, always or never, got " .. w)
      end
      opts.color = w
    elseif a == "-h" or a == "--help" then opts.help = true
    elseif a:sub(1, 1) == "-" then usage_error("unknown option " .. a .. "\n" .. M.USAGE)
    else usage_error("unexpected argument " .. a .. " (options only; a value needs its option)\n" .. M.USAGE) end
    if a == "--" then break end
    i = i + 1
  end
  -- Parameters: defaults, then --set in order.
  local params = {}
  for _, k in ipairs(s.param_order) do params[k] = s.params[k].default end
  for _, kv in ipairs(opts.sets) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then usage_error("--set expects KEY=VALUE, got " .. kv) end
    local spec = s.params[k]
    if not spec then
      local names = table.concat(s.param_order, ", ")
      usage_error(string.format("unknown parameter %q for scenario %s; declared parameters: %s",
                                k, s.name, names ~= "" and names or "(none)"))
    end
    params[k] = convert(spec, v)
  end
  for _, k in ipairs(s.param_order) do M.check_choices(s.params[k], params[k]) end
  opts.params = params
  return opts
end

-- Loads a --hooks file: it calls hook(point, when, fn, opts) or returns
-- {point = {before = fn, after = fn}}.
function M.load_hooks_file(s, path)
  local env = setmetatable({}, { __index = _G })
  env.hook = function(point, when, fn, opts)
    opts = opts or {}
    opts.source = opts.source or path
    return s:hook(point, when, fn, opts)
  end
  local chunk, err = loadfile(path, "t", env)
  if not chunk then usage_error("--hooks: " .. tostring(err)) end
  local ok, res = pcall(chunk)
  if not ok then usage_error("--hooks " .. path .. ": " .. tostring(res)) end
  if type(res) == "table" then
    for point, whens in pairs(res) do
      for when, fn in pairs(whens) do s:hook(point, when, fn, { source = path }) end
    end
  end
end

return M
