-- upgrun.matrix.file — reads a matrix file (YAML, see docs/ci.md) into a
-- checked plan: the cells with their scenario, inventory, cloud, parameters
-- and id; the common settings (before_each, timeout, env, output, fail_fast).
-- Every problem is raised as a string naming the file and the field or cell:
-- unknown keys, a cell key that is not a declared parameter of its scenario,
-- two cells with the same id, an unset ${VAR}.
local yaml = require "upgrun.yaml"
local expand = require "upgrun.matrix.expand"

local M = {}

local TOP = { scenario = true, inventory = true, cloud = true, set = true, env = true, before_each = true,
              timeout = true, output = true, fail_fast = true, matrix = true, name = true }
-- cell keys that are options of the run, not parameters of the scenario
local RUN_KEYS = { scenario = true, inventory = true, cloud = true }

-- "${NAME}" and "${NAME:-default}" from the environment; an unset NAME
-- without a default is an error naming `where`.
function M.subst(s, where)
  if type(s) ~= "string" then return s end
  return (s:gsub("%${([%w_]+)(:?%-?)([^}]*)}", function(name, op, default)
    local v = os.getenv(name)
    if (v == nil or v == "") and op == ":-" then return default end
    if v == nil then error(string.format("%s: ${%s} is not set", where, name), 0) end
    return v
  end))
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

local function resolve(dir, p)
  if p == nil or p:sub(1, 1) == "/" then return p end
  return dir .. "/" .. p
end

-- The axes in the order they are written in the file (the decoder's tables
-- have no order): each axis by the position of its first "name:" after the
-- `matrix:` key; anything not found sorts after, by name.
local function axis_order(text, decl)
  local names = {}
  for k in pairs(decl) do if k ~= "include" and k ~= "exclude" then names[#names + 1] = k end end
  local start = text:find("\nmatrix%s*:") or text:find("^matrix%s*:") or 1
  local pos = {}
  for _, k in ipairs(names) do
    local quoted = k:gsub("%p", "%%%0")
    pos[k] = text:find("[%s{,\"']" .. quoted .. "[\"']?%s*:", start) or math.huge
  end
  table.sort(names, function(a, b)
    if pos[a] ~= pos[b] then return pos[a] < pos[b] end
    return a < b
  end)
  return names
end

-- Declared parameters of a scenario file: loads it as upgrun does (its own
-- environment, its directory on package.path) and reads the scenario's params.
-- Returns {name = {secret = bool}}, sorted names, scenario name; raises on a broken file.
local scenario_cache = {}
local function declared_params(path)
  if scenario_cache[path] then return table.unpack(scenario_cache[path]) end
  local env = setmetatable({}, { __index = _G })
  local saved = package.path
  package.path = dirname(path) .. "/?.lua;" .. package.path
  local chunk, err = loadfile(path, "t", env)
  if not chunk then package.path = saved; error(err, 0) end
  local ok, s = pcall(chunk)
  package.path = saved
  if not ok then error(path .. ": " .. tostring(s), 0) end
  if type(s) ~= "table" or type(s.params) ~= "table" then
    error(path .. ": does not return a scenario (upgrun.scenario.new{...})", 0)
  end
  local set, names = {}, {}
  for k, spec in pairs(s.params) do
    set[k] = { secret = type(spec) == "table" and spec.secret == true }
    names[#names + 1] = k
  end
  table.sort(names)
  scenario_cache[path] = { set, names, s.name }
  return set, names, s.name
end

local function read(path)
  local f, err = io.open(path)
  if not f then error("cannot read " .. tostring(err), 0) end
  local text = f:read("a")
  f:close()
  return text
end

-- Loads and checks a matrix file. Returns the plan:
-- {path, dir, name, cells = {{id, index, values, keys, scenario, inventory, cloud, params = {k = text}}},
--  before_each, timeout, env, output, fail_fast}. Raises "FILE: problem".
function M.load(path)
  local ok, plan = pcall(function()
    local text = read(path)
    local doc, err = yaml.decode(text, path)
    if not doc then error(type(err) == "table" and err.message or tostring(err), 0) end
    if type(doc) ~= "table" or #doc > 0 then error("expects a mapping at the top", 0) end
    for k in pairs(doc) do
      if not TOP[k] then
        local known = {}
        for n in pairs(TOP) do known[#known + 1] = n end
        table.sort(known)
        error(string.format("unknown key %q (known: %s)", tostring(k), table.concat(known, ", ")), 0)
      end
    end
    local dir = dirname(path)
    local p = { path = path, dir = dir, name = doc.name or path:match("([^/]+)$"):gsub("%.ya?ml$", "") }
    p.timeout = doc.timeout or 3600
    if type(p.timeout) ~= "number" or p.timeout <= 0 then error("timeout: expects seconds (a positive number)", 0) end
    if doc.before_each ~= nil and type(doc.before_each) ~= "string" then
      error("before_each: expects a shell command (a string)", 0)
    end
    p.before_each = M.subst(doc.before_each, "before_each")
    p.before_each_text = doc.before_each -- as written: printed, never the expanded ${...}
    if doc.fail_fast ~= nil and type(doc.fail_fast) ~= "boolean" then error("fail_fast: expects true or false", 0) end
    p.fail_fast = doc.fail_fast == true
    p.output = resolve(dir, M.subst(doc.output, "output"))
    p.env = {}
    if doc.env ~= nil then
      if type(doc.env) ~= "table" or #doc.env > 0 then error("env: expects a mapping NAME: value", 0) end
      for k, v in pairs(doc.env) do
        if type(k) ~= "string" or not (type(v) == "string" or type(v) == "number" or type(v) == "boolean") then
          error("env." .. tostring(k) .. ": expects a string", 0)
        end
        p.env[k] = M.subst(expand.text(v), "env." .. k)
      end
    end
    local common = {}
    if doc.set ~= nil then
      if type(doc.set) ~= "table" or #doc.set > 0 then error("set: expects a mapping param: value", 0) end
      for k, v in pairs(doc.set) do
        if type(v) == "table" then error("set." .. tostring(k) .. ": expects a string, number or boolean", 0) end
        common[k] = v
      end
    end
    local decl = doc.matrix
    if decl == nil then decl = {} end
    local cells = expand.expand(decl, axis_order(text, decl))
    if #cells == 0 then cells = { { values = {}, keys = {}, origin = "product" } } end
    local seen = {}
    for i, c in ipairs(cells) do
      c.index = i
      c.id = expand.cell_id(c)
      if seen[c.id] then
        error(string.format("cells %d and %d have the same id %q: give them distinct values", seen[c.id], i, c.id), 0)
      end
      seen[c.id] = i
      local where = "cell " .. c.id
      c.scenario = resolve(dir, M.subst(c.values.scenario or doc.scenario, where .. ": scenario"))
      if type(c.scenario) ~= "string" then error(where .. ": no scenario (top-level `scenario:` or an axis)", 0) end
      c.inventory = resolve(dir, M.subst(c.values.inventory or doc.inventory, where .. ": inventory"))
      c.cloud = M.subst(c.values.cloud or doc.cloud, where .. ": cloud")
      local params, names = {}, {}
      for k, v in pairs(common) do params[k] = v end
      for _, k in ipairs(c.keys) do if not RUN_KEYS[k] then params[k] = c.values[k] end end
      local ok_load, declared, declared_names, sname = pcall(declared_params, c.scenario)
      if not ok_load then error(where .. ": scenario " .. tostring(declared), 0) end
      for _, k in ipairs(c.keys) do
        if declared[k] and declared[k].secret then
          error(string.format("%s: %q is a secret parameter of scenario %s: give it in `set:` (its value "
                              .. "from the environment: ${NAME}), not as a matrix value (cell ids are made of "
                              .. "the values)", where, k, sname), 0)
        end
      end
      for k in pairs(params) do names[#names + 1] = k end
      table.sort(names)
      c.scenario_name = sname
      c.params = {}
      for _, k in ipairs(names) do
        if not declared[k] then
          error(string.format("%s: %q is not a parameter of scenario %s (declared: %s)", where, k, sname,
                              table.concat(declared_names, ", ")), 0)
        end
        c.params[#c.params + 1] = { name = k, value = M.subst(expand.text(params[k]), where .. ": " .. k),
                                    secret = declared[k].secret }
      end
    end
    p.cells = cells
    return p
  end)
  if not ok then error(path .. ": " .. tostring(plan), 0) end
  return plan
end

return M
