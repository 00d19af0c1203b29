-- upgrun.inventory — Ansible inventories, read as `ansible-inventory --list`
-- reads them: YAML and INI files, inventory directories, several sources,
-- host ranges (web[01:10]) and host:port names, group_vars/ and host_vars/
-- beside each source, the JSON of `ansible-inventory --list` or of a dynamic
-- inventory script (an executable file). What is not read natively (inventory
-- plugin configs such as openstack.cloud, vault-encrypted files or values)
-- goes through `ansible-inventory --list` when it is installed, and is an
-- error naming the file and the feature when it is not.
--
-- Variables merge as Ansible merges them: all < groups (by depth, then
-- ansible_group_priority, then name) < group_vars/all (inventory's, then the
-- playbook dir's) < group_vars/<group> (same order; inventory's, then the
-- playbook dir's) < the host's inventory vars (in file order) <
-- host_vars/<host> (inventory's, then the playbook dir's).
-- A null (`x: ~`) is a value and overrides; it reads as nil in node.vars.
--
--   local inventory = require "upgrun.inventory"
--   local inv, err = inventory.load("inventory.yml")      -- or {"a.ini", "dir/"}
--   inventory.load(paths, {playbook_dir = "site/"})       -- + group_vars/, host_vars/ beside a playbook
--   inv:host("ctl1") -> node        inv:group("compute") -> {node, ...}
--   inv:hosts() -> every node       inv:groups() -> sorted group names
--   inv:has_host(name), inv:has_group(name), inv.vars (the `all` vars)
--
-- Load errors: nil, {kind="inventory", message="file:line: ...", file, line}.
-- Asking for an unknown host or group raises an error naming the inventory
-- and the known names.
local yaml = require "upgrun.yaml"
local cjson = require "cjson"
local nodes = require "upgrun.nodes"
local dir = require "upgrun.dir"
local model = require "upgrun.inventory.model"
local ini = require "upgrun.inventory.ini"
local yaml_format = require "upgrun.inventory.yaml_format"
local check = require "upgrun.inventory.check"

local M = {}
local Inventory = {}
Inventory.__index = Inventory

local NULL = yaml.null
local list_format -- defined below

local function inv_error(msg, file)
  local f, line = msg:match("^([^:]+):(%d+): ")
  return require("upgrun.errors").new("inventory", msg, { file = f or file, line = tonumber(line) })
end

local function read_text(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, path .. ": cannot read: " .. tostring(err) end
  local text, rerr = f:read("a")
  f:close()
  if not text then return nil, path .. ": cannot read: " .. tostring(rerr) end
  return text
end

local function json_null_to_yaml(v)
  if v == cjson.null then return NULL end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = json_null_to_yaml(x) end
  end
  return v
end

-- The JSON of `ansible-inventory --list` or of a dynamic inventory script.
local function read_json(doc, file, st)
  if type(doc) ~= "table" then return file .. ":1: inventory JSON must be an object of groups" end
  local meta = type(doc._meta) == "table" and type(doc._meta.hostvars) == "table" and doc._meta.hostvars or {}
  local names = {}
  for g in pairs(doc) do if g ~= "_meta" then names[#names + 1] = g end end
  table.sort(names)
  local children = {}
  for _, g in ipairs(names) do
    local body = doc[g]
    if type(body) == "table" and body[1] ~= nil then body = { hosts = body } end -- old style: a list
    if type(body) ~= "table" then return string.format("%s: group '%s' must be an object", file, g) end
    st:add_group(g, { file = file })
    for k, v in pairs(type(body.vars) == "table" and body.vars or {}) do
      st:set_group_var(g, k, json_null_to_yaml(v))
    end
    for _, h in ipairs(type(body.hosts) == "table" and body.hosts or {}) do
      if type(h) ~= "string" then return string.format("%s: group '%s': host names must be strings", file, g) end
      st:add_host(g, h, { file = file })
    end
    for _, c in ipairs(type(body.children) == "table" and body.children or {}) do
      children[#children + 1] = { g, c }
    end
  end
  for _, pc in ipairs(children) do
    local e = st:add_child(pc[1], pc[2], { file = file })
    if e then return e end
  end
  local hosts = {}
  for h in pairs(meta) do hosts[#hosts + 1] = h end
  table.sort(hosts)
  for _, h in ipairs(hosts) do
    if not st.hosts[h] then st:add_host("all", h, { file = file }) end
    for k, v in pairs(type(meta[h]) == "table" and meta[h] or {}) do
      st:set_host_var(h, k, json_null_to_yaml(v), { file = file, group = "all" })
    end
  end
end

-- True for the JSON of `ansible-inventory --list` / a script (hosts and
-- children as lists, _meta); JSON in the YAML inventory format (hosts as a
-- mapping) is read as YAML, as Ansible's yaml plugin reads .json files.
list_format = function(doc)
  if type(doc) ~= "table" then return false end
  if doc._meta ~= nil then return true end
  for _, body in pairs(doc) do
    if type(body) == "table" and (body[1] ~= nil or (type(body.hosts) == "table" and body.hosts[1] ~= nil)
        or (type(body.children) == "table" and body.children[1] ~= nil)) then
      return true
    end
  end
  return false
end

-- Why a file cannot be read natively, or nil.
local function needs_ansible(text, doc)
  if text:match("^%$ANSIBLE_VAULT;") then return "a vault-encrypted inventory" end
  if type(doc) == "table" and type(doc.plugin) == "string" then
    return "the inventory plugin '" .. doc.plugin .. "'"
  end
  if text:find("!vault", 1, true) or text:find("$ANSIBLE_VAULT;", 1, true) then
    return "vault-encrypted values"
  end
end

local function run_ansible_inventory(path, why)
  local ok, proc = pcall(require, "upgrun.proc")
  local exe
  for d in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
    if dir.kind(d .. "/ansible-inventory") == "file" then exe = d .. "/ansible-inventory"; break end
  end
  if not ok or not exe then
    return nil, string.format("%s: %s needs ansible-inventory (Debian package ansible-core), which is not installed",
      path, why)
  end
  local r, err = proc.run({ exe, "-i", path, "--list" }, { timeout = M.ansible_timeout })
  if not r then
    return nil, string.format("%s: ansible-inventory --list failed: %s", path, tostring(err and err.message or err))
  end
  if r.status ~= 0 then
    return nil, string.format("%s: ansible-inventory --list exited %s: %s", path, tostring(r.status),
      (r.stderr or ""):sub(1, 500))
  end
  local dok, doc = pcall(cjson.decode, r.stdout or "")
  if not dok then return nil, path .. ": ansible-inventory --list printed invalid JSON: " .. tostring(doc) end
  return doc
end

local YAML_EXT = { yml = true, yaml = true, json = true }

-- "file:line: problem" from an upgrun.yaml error.
local function yaml_message(err, file)
  local msg = err.message:gsub("^" .. file:gsub("%p", "%%%0") .. ":%d+:%d+: ", "")
  return string.format("%s:%d: %s", file, err.line or 1, msg)
end

-- Reads one inventory file into st; returns nil or an error message.
local function read_file(path, st, exec)
  local ext = path:match("%.([^./]+)$")
  if exec and not YAML_EXT[ext] then -- a dynamic inventory script
    local doc, err = run_ansible_inventory(path, "a dynamic inventory script")
    if not doc then return err end
    return read_json(doc, path, st)
  end
  local text, err = read_text(path)
  if not text then return err end
  if text:match("^%s*{") then
    local ok, doc = pcall(cjson.decode, text)
    if ok and list_format(doc) then return read_json(doc, path, st) end
    if not ok and ext == "json" then return path .. ":1: invalid JSON: " .. tostring(doc) end
  end
  local doc, pos_or_err
  if ext == nil or YAML_EXT[ext] then
    doc, pos_or_err = yaml.decode(text, path, { positions = true })
  end
  local why = needs_ansible(text, doc)
  if why then
    local jdoc, jerr = run_ansible_inventory(path, why)
    if not jdoc then return jerr end
    return read_json(jdoc, path, st)
  end
  if type(doc) == "table" and doc[1] == nil then return yaml_format.read(doc, pos_or_err, path, st) end
  if YAML_EXT[ext] then
    if doc == nil and pos_or_err then return yaml_message(pos_or_err, path) end
    return path .. ":1: a YAML inventory must be a mapping of groups (e.g. all:)"
  end
  return ini.parse(text, path, st)
end

local IGNORED_EXT = { pyc = 1, pyo = 1, swp = 1, bak = 1, rpm = 1, md = 1, txt = 1, rst = 1, orig = 1, ini = 1,
  cfg = 1, retry = 1 }

-- Reads a source (file, directory, or "h1,h2" host list); returns nil or an error.
local function read_source(path, st)
  local kind = dir.kind(path)
  if kind == "dir" then
    local list, err = dir.list(path)
    if not list then return err.message end
    for _, e in ipairs(list) do
      local n = e.name
      local ext = n:match("%.([^.]+)$")
      if not (n:match("^%.") or n == "host_vars" or n == "group_vars" or n == "vars_plugins" or n:match("~$")
              or (ext and IGNORED_EXT[ext])) then
        local e2 = read_source(path .. "/" .. n, st)
        if e2 then return e2 end
      end
    end
    return nil
  elseif kind == "file" then
    local list = dir.list(path:match("^(.*)/[^/]*$") or ".") or {}
    local exec = false
    local base = path:match("([^/]*)$")
    for _, e in ipairs(list) do if e.name == base then exec = e.exec end end
    return read_file(path, st, exec)
  elseif kind == nil and path:find(",", 1, true) then -- Ansible's host list: "h1,h2"
    for h in path:gmatch("[^,]+") do
      h = h:match("^%s*(.-)%s*$")
      if h ~= "" then st:add_host("ungrouped", h, { file = "host list" }) end
    end
    return nil
  elseif kind == nil then
    return path .. ": no such inventory file or directory"
  end
  return path .. ": not a file or directory"
end

-- group_vars/<name> or host_vars/<name> files as Ansible's host_group_vars
-- finds them: the first of name, name.yml, name.yaml, name.json; a directory
-- gives every file in it (sorted, recursively). Returns the list of paths.
local VARS_EXT = { "", ".yml", ".yaml", ".json" }
local function vars_dir_files(path, out)
  for _, e in ipairs(dir.list(path) or {}) do
    local ext = e.name:match("(%.[^.]+)$")
    if not e.name:match("^%.") and not e.name:match("~$") then
      if e.kind == "dir" and not ext then vars_dir_files(path .. "/" .. e.name, out)
      elseif e.kind == "file" and (not ext or ext == ".yml" or ext == ".yaml" or ext == ".json") then
        out[#out + 1] = path .. "/" .. e.name
      end
    end
  end
  return out
end

local function vars_files(base, name)
  for _, ext in ipairs(VARS_EXT) do
    local p = base .. "/" .. name .. ext
    local k = dir.kind(p)
    if k == "dir" then return vars_dir_files(p, {}) end
    if k == "file" then return { p } end
  end
  return {}
end

-- Loads a vars file into a table (nil when empty), or nil, error message.
local vars_cache = {}
local function load_vars_file(p)
  local c = vars_cache[p]
  if c then return c.v, c.err end
  local text, err = read_text(p)
  local v
  if text then
    if text:match("^%$ANSIBLE_VAULT;") or text:find("!vault", 1, true) then
      err = p .. ": vault-encrypted variables are not read natively; give upgrun the JSON of "
        .. "`ansible-inventory --list` (which decrypts them) as its inventory"
    else
      local doc, derr = yaml.decode(text, p)
      if derr then err = yaml_message(derr, p)
      elseif doc ~= nil and (type(doc) ~= "table" or doc[1] ~= nil) then
        err = p .. ":1: a variables file must be a mapping"
      else v = doc end
    end
  end
  vars_cache[p] = { v = v, err = err }
  return v, err
end

local function merge(dst, src)
  for k, v in pairs(src) do dst[k] = v end
end

local function source_bases(sources)
  local bases = {}
  for _, s in ipairs(sources) do
    local k = dir.kind(s)
    if k == "dir" then bases[#bases + 1] = s
    elseif k == "file" then bases[#bases + 1] = s:match("^(.*)/[^/]*$") or "." end
  end
  return bases
end

-- Every host's merged variables, in Ansible's order (its default
-- VARIABLE_PRECEDENCE: all, groups, inventory group_vars/all, playbook
-- group_vars/all, inventory group_vars/<group>, playbook group_vars/<group>;
-- then the host, inventory host_vars, playbook host_vars); returns vars_of or nil, err.
local function merge_vars(st, sources, playbook_dir)
  local bases = source_bases(sources)
  local gv, hv = {}, {}
  local function vars_dir(p) return dir.kind(p) == "dir" and p or false end
  for _, b in ipairs(bases) do
    gv[#gv + 1] = vars_dir(b .. "/group_vars")
    hv[#hv + 1] = vars_dir(b .. "/host_vars")
  end
  local pgv = playbook_dir and vars_dir(playbook_dir .. "/group_vars")
  local phv = playbook_dir and vars_dir(playbook_dir .. "/host_vars")
  local function from_files(vars, roots, name)
    for _, r in ipairs(roots) do
      if r then
        for _, p in ipairs(vars_files(r, name)) do
          local v, err = load_vars_file(p)
          if err then return err end
          if v then merge(vars, v) end
        end
      end
    end
  end
  local out, sorted_memo = {}, {}
  for _, h in ipairs(st.host_order) do
    local all_groups = st:host_groups(h)
    local groups = sorted_memo[all_groups]
    if not groups then
      groups = {}
      for _, g in ipairs(all_groups) do if g ~= "all" then groups[#groups + 1] = g end end
      st:sorted(groups)
      sorted_memo[all_groups] = groups
    end
    local vars = {}
    merge(vars, st.groups.all.vars)
    for _, g in ipairs(groups) do merge(vars, st.groups[g].vars) end
    local err = from_files(vars, gv, "all") or from_files(vars, { pgv }, "all")
    for _, root in ipairs(gv) do -- every source's group_vars, each in group order
      for _, g in ipairs(groups) do err = err or from_files(vars, { root }, g) end
    end
    for _, g in ipairs(groups) do err = err or from_files(vars, { pgv }, g) end
    if err then return nil, err end
    merge(vars, st.hosts[h].vars)
    err = from_files(vars, hv, h) or from_files(vars, { phv }, h)
    if err then return nil, err end
    local groups_out = { "all" }
    table.move(groups, 1, #groups, 2, groups_out)
    out[h] = { vars = vars, groups = groups_out }
  end
  vars_cache = {}
  return out
end

-- Where a bad variable of host h was set: "file:line: host 'h' in group 'g'"
-- or "file:line: group 'g' vars (for host 'h')", and that line.
local function var_origin(st, h, field, groups)
  local function place(w)
    if not w or not w.file then return "inventory", nil end
    return w.file .. (w.line and (":" .. w.line) or ""), w.line
  end
  local w = st.hosts[h].var_where[field]
  if w then
    local at, line = place(w)
    return string.format("%s: host '%s'%s", at, h, w.group and (" in group '" .. w.group .. "'") or ""), line
  end
  for i = #groups, 1, -1 do
    local g = st.groups[groups[i]]
    if g.vars[field] ~= nil then
      local at, line = place(g.var_where[field] or g.where)
      return string.format("%s: group '%s' vars (for host '%s')", at, g.name, h), line
    end
  end
  local hw = st.hosts[h].where
  return string.format("%s: host '%s' (group_vars/host_vars files)", hw and hw.file or "inventory", h), nil
end

local function strip_nulls(vars)
  for k, v in pairs(vars) do if v == NULL or v == cjson.null then vars[k] = nil end end
  return vars
end

local function build(st, sources, name, playbook_dir)
  st:reconcile()
  local merged, err = merge_vars(st, sources, playbook_dir)
  if not merged then return nil, inv_error(err, name) end
  local self = setmetatable({ file = name, sources = sources, _groups = st.groups, _nodes = {},
    _host_order = st.host_order }, Inventory)
  for _, h in ipairs(st.host_order) do
    local m = merged[h]
    local vars = strip_nulls(m.vars)
    local e = check.vars(vars, function(field, msg)
      local at = var_origin(st, h, field, m.groups)
      local ie = inv_error(at .. ": " .. msg, name)
      ie.field = field
      return ie
    end)
    if e then return nil, e end
    local node = nodes.new(h, vars, { inventory = self })
    node.groups = m.groups
    self._nodes[h] = node
  end
  -- members: every host of a group, children included
  local members = {}
  for _, h in ipairs(st.host_order) do
    for _, g in ipairs(st:host_groups(h)) do
      members[g] = members[g] or {}
      members[g][h] = true
    end
  end
  self._members = members
  self.vars = {}
  merge(self.vars, st.groups.all.vars)
  strip_nulls(self.vars)
  return self
end

-- Parses inventory text (YAML, INI or JSON); `file` names it in errors.
-- group_vars/host_vars are not looked for (there is no directory).
function M.parse(text, file)
  file = file or "inventory"
  if type(text) ~= "string" then return nil, inv_error(file .. ": inventory text must be a string", file) end
  local st = model.new(NULL)
  local err
  local ok, e = pcall(function()
    if text:match("^%s*{") then
      local jok, doc = pcall(cjson.decode, text)
      if jok and list_format(doc) then err = read_json(doc, file, st); return end
    end
    local doc, pos = yaml.decode(text, file, { positions = true })
    local why = needs_ansible(text, doc)
    if why then
      err = file .. ": " .. why .. " needs ansible-inventory: load the file with inventory.load"
    elseif type(doc) == "table" and doc[1] == nil then err = yaml_format.read(doc, pos, file, st)
    elseif doc == nil and pos and not text:match("^%s*%[") and not text:find("\n%s*%[") then
      err = yaml_message(pos, file)
    else err = ini.parse(text, file, st) end -- as Ansible: what is not a YAML mapping is INI
  end)
  if not ok then return nil, inv_error(file .. ": " .. tostring(e), file) end
  if err then return nil, inv_error(err, file) end
  return build(st, {}, file)
end

-- Loads an inventory: a file or directory path, a list of them (like several
-- -i), or an "h1,h2" host list. opts.playbook_dir: also read group_vars/ and
-- host_vars/ there, as Ansible does beside a playbook (ansible-inventory
-- --playbook-dir).
function M.load(paths, opts)
  if type(paths) == "string" then paths = { paths } end
  if type(paths) ~= "table" or #paths == 0 then
    return nil, inv_error("inventory: expected a path or a list of paths, got " .. type(paths))
  end
  local st = model.new(NULL)
  local err
  local ok, e = pcall(function()
    for _, p in ipairs(paths) do
      if type(p) ~= "string" then err = "inventory: paths must be strings, got " .. type(p); return end
      err = read_source(p, st)
      if err then return end
    end
  end)
  local name = table.concat(paths, ",")
  if not ok then return nil, inv_error(name .. ": " .. tostring(e), name) end
  if err then
    local io_err = err:match(": no such inventory file or directory$") or err:match(": cannot read: ")
    local ie = inv_error(err, name)
    if io_err and #paths == 1 then ie.kind = "io" end
    return nil, ie
  end
  local pb = opts and opts.playbook_dir
  if pb ~= nil and (type(pb) ~= "string" or dir.kind(pb) ~= "dir") then
    return nil, inv_error("inventory: playbook_dir " .. tostring(pb) .. " is not a directory")
  end
  return build(st, paths, name, pb)
end

local function known(list)
  local t = {}
  for k in pairs(list) do t[#t + 1] = k end
  table.sort(t)
  return table.concat(t, ", ")
end

function Inventory:has_host(name) return self._nodes[name] ~= nil end
function Inventory:has_group(name) return self._groups[name] ~= nil end

function Inventory:host(name)
  local n = self._nodes[name]
  if not n then
    error(string.format("%s: no host '%s' in the inventory (hosts: %s)", self.file, tostring(name),
      known(self._nodes)), 2)
  end
  return n
end

-- The nodes of a group (children included), in inventory order. A pattern
-- "a:b" is the union of groups/hosts a and b (Ansible's syntax).
function Inventory:group(name)
  local out, seen = {}, {}
  for part in tostring(name):gmatch("[^:,]+") do
    local m = self._members[part]
    if not m and self._nodes[part] then m = { [part] = true } end
    if not m and part ~= "all" and not self._groups[part] then
      error(string.format("%s: no group '%s' in the inventory (groups: %s)", self.file, part,
        known(self._groups)), 2)
    end
    for _, h in ipairs(self._host_order) do
      if (part == "all" or (m and m[h])) and not seen[h] then
        seen[h] = true
        out[#out + 1] = self._nodes[h]
      end
    end
  end
  return out
end

function Inventory:hosts() return self:group("all") end

function Inventory:groups()
  local t = {}
  for g in pairs(self._groups) do t[#t + 1] = g end
  table.sort(t)
  return t
end

-- Closes every node's SSH session.
function Inventory:close()
  for _, n in pairs(self._nodes) do n:close() end
end

M.ansible_timeout = 120
return M
