-- upgrun.inventory — Ansible inventories: the YAML format (groups, hosts,
-- vars, children) and the JSON of `ansible-inventory --list`. Hosts become
-- upgrun.nodes objects; variables are merged with Ansible's precedence:
-- all < parent group < child group < host (groups of equal depth by name).
--
--   local inventory = require "upgrun.inventory"
--   local inv, err = inventory.load("inventory.yml")   -- or .json
--   inv:host("ctl1") -> node        inv:group("compute") -> {node, ...}
--   inv:hosts() -> every node       inv:groups() -> sorted group names
--   inv:has_host(name), inv:has_group(name), inv.vars (the `all` vars)
--
-- Load errors: nil, {kind="inventory", message="file:line: ...", file, line,
-- field}. Asking for an unknown host or group raises an error naming the
-- inventory and the known names.
local yaml = require "upgrun.yaml"
local cjson = require "cjson"
local nodes = require "upgrun.nodes"

local M = {}
local Inventory = {}
Inventory.__index = Inventory

local function is_null(v) return v == nil or v == yaml.null or v == cjson.null end

local function inv_error(file, line, field, fmt, ...)
  local msg = string.format(fmt, ...)
  local where = file .. (line and (":" .. line) or "")
  return require("upgrun.errors").new("inventory", where .. ": " .. msg, { file = file, line = line, field = field })
end

-- Best-effort line of a YAML path (e.g. {"compute", "hosts", "cmp3",
-- "ansible_port"}): each key is searched after the previous one's line,
-- as a block key or inside a flow mapping on a line.
local function locate(lines, path)
  if not lines then return nil end
  local from, found = 1, nil
  for _, key in ipairs(path) do
    local k = tostring(key):gsub("%p", "%%%0")
    local hit
    for i = from, #lines do
      local l = lines[i]
      if l:find("^%s*[\"']?" .. k .. "[\"']?%s*:") or l:find("[{,]%s*[\"']?" .. k .. "[\"']?%s*:") then
        hit = i; break
      end
    end
    if not hit then break end
    found, from = hit, hit
  end
  return found
end

local known_vars = {
  ansible_port = "port", ansible_ssh_port = "port",
  ansible_host = "string", ansible_ssh_host = "string", ansible_user = "string",
  ansible_ssh_user = "string", ansible_ssh_private_key_file = "string",
  ansible_private_key_file = "string", upgrun_known_hosts = "string",
  upgrun_host_key_policy = "policy", ansible_become = "bool", ansible_become_user = "string",
  upgrun_ssh_timeout = "number", upgrun_ssh_keepalive = "number", upgrun_services = "services",
}

local function check_services(v, fail)
  if type(v) ~= "table" then
    return fail("upgrun_services", "upgrun_services must be a mapping of service name -> spec")
  end
  for name, spec in pairs(v) do
    if type(spec) ~= "table" then
      return fail("upgrun_services", "upgrun_services." .. tostring(name) .. " must be a mapping")
    end
    local b = spec.backend or "command"
    if b ~= "command" and b ~= "systemd" then
      return fail("backend", string.format("upgrun_services.%s.backend must be \"command\" or \"systemd\", not %q",
        name, tostring(b)))
    end
    for _, f in ipairs({ "start", "stop", "pidfile", "pattern", "health", "running_release", "unit",
                          "drain", "undrain" }) do
      if not is_null(spec[f]) and type(spec[f]) ~= "string" then
        return fail(f, string.format("upgrun_services.%s.%s must be a string", name, f))
      end
    end
    if b == "command" then
      if type(spec.start) ~= "string" then
        return fail("start", string.format("upgrun_services.%s: backend \"command\" needs start", name))
      end
      if type(spec.pidfile) ~= "string" and type(spec.pattern) ~= "string" then
        return fail("pidfile", string.format("upgrun_services.%s: backend \"command\" needs pidfile or pattern", name))
      end
    end
  end
end

-- Validates the variables upgrun interprets; fail(field, msg) returns an error.
local function check_vars(vars, fail)
  for k, kind in pairs(known_vars) do
    local v = vars[k]
    if not is_null(v) then
      if kind == "port" then
        local n = tonumber(v)
        if not n or n ~= math.floor(n) or n < 1 or n > 65535 then
          return fail(k, k .. " must be a number (1-65535), got " .. string.format("%q", tostring(v)))
        end
      elseif kind == "string" then
        if type(v) ~= "string" and type(v) ~= "number" then return fail(k, k .. " must be a string") end
      elseif kind == "number" then
        if not tonumber(v) then return fail(k, k .. " must be a number") end
      elseif kind == "bool" then
        local ok = type(v) == "boolean" or (type(v) == "string" and ({ ["true"] = 1, ["false"] = 1,
          yes = 1, no = 1 })[v:lower()])
        if not ok then return fail(k, k .. " must be true or false") end
      elseif kind == "policy" then
        if v ~= "strict" and v ~= "accept-new" then return fail(k, k .. " must be \"strict\" or \"accept-new\"") end
      elseif kind == "services" then
        local e = check_services(v, fail)
        if e then return e end
      end
    end
  end
end

local function copy_into(dst, src)
  if type(src) ~= "table" then return end
  for k, v in pairs(src) do
    if v == yaml.null or v == cjson.null then v = nil end
    dst[k] = v
  end
end

-- Builds the inventory from a normalized description:
-- groups[name] = {vars=, hosts={name=vars}, children={name...}, order=n}
local function build(file, groups, host_order, lines)
  local self = setmetatable({ file = file, _groups = groups, _nodes = {}, _host_order = host_order }, Inventory)
  local all = groups.all
  -- parents, depths
  local parents = {}
  for g, def in pairs(groups) do
    for _, c in ipairs(def.children) do
      if not groups[c] then
        return nil, inv_error(file, locate(lines, { g, "children", c }), "children",
          "group '%s' lists unknown child group '%s'", g, c)
      end
      parents[c] = parents[c] or {}
      parents[c][#parents[c] + 1] = g
    end
  end
  for g in pairs(groups) do
    if g ~= "all" and not parents[g] then
      parents[g] = { "all" }
      all.children[#all.children + 1] = g
    end
  end
  local depth = {}
  local function depth_of(g, seen)
    if depth[g] then return depth[g] end
    if g == "all" then return 0 end
    seen = seen or {}
    if seen[g] then error(inv_error(file, nil, "children", "group '%s' is its own ancestor", g)) end
    seen[g] = true
    local d = 0
    for _, p in ipairs(parents[g] or {}) do d = math.max(d, depth_of(p, seen) + 1) end
    seen[g] = nil
    depth[g] = d
    return d
  end
  local ok, e = pcall(function() for g in pairs(groups) do depth_of(g) end end)
  if not ok then return nil, e end
  -- every group a host belongs to, directly or through children
  local host_groups, members = {}, {}
  local function add_member(g, h, seen)
    seen = seen or {}
    if seen[g] then return end
    seen[g] = true
    members[g] = members[g] or {}
    if not members[g][h] then members[g][h] = true end
    host_groups[h] = host_groups[h] or {}
    host_groups[h][g] = true
    for _, p in ipairs(parents[g] or {}) do add_member(p, h, seen) end
  end
  for g, def in pairs(groups) do
    for h in pairs(def.hosts) do add_member(g, h) end
  end
  self._members = members
  -- merge vars per host
  for _, h in ipairs(host_order) do
    local gl = {}
    for g in pairs(host_groups[h] or { all = true }) do gl[#gl + 1] = g end
    gl[#gl + 1] = "all"
    table.sort(gl, function(a, b)
      if depth[a] ~= depth[b] then return (depth[a] or 0) < (depth[b] or 0) end
      return a < b
    end)
    local vars, hv, seen = {}, {}, {}
    for _, g in ipairs(gl) do
      if not seen[g] then
        seen[g] = true
        copy_into(vars, groups[g].vars)
        if groups[g].hosts[h] then copy_into(hv, groups[g].hosts[h]) end
      end
    end
    copy_into(vars, hv)
    local err = check_vars(vars, function(field, msg)
      -- find where the bad value is: in the host entry, else in a group's vars
      local line, where
      for _, g in ipairs(gl) do
        local hvars = groups[g].hosts[h]
        if type(hvars) == "table" and not is_null(hvars[field]) then
          line = locate(lines, { g, h, field }); where = string.format("host '%s' in group '%s'", h, g)
        end
      end
      if not where then
        for i = #gl, 1, -1 do
          local g = gl[i]
          if type(groups[g].vars) == "table" and not is_null(groups[g].vars[field]) then
            line = locate(lines, { g, "vars", field })
            where = string.format("group '%s' vars (for host '%s')", g, h)
            break
          end
        end
      end
      return inv_error(file, line, field, "%s: %s", where or ("host '" .. h .. "'"), msg)
    end)
    if err then return nil, err end
    local node = nodes.new(h, vars, { inventory = self })
    node.groups = gl
    self._nodes[h] = node
  end
  self.vars = {}
  copy_into(self.vars, all.vars)
  return self
end

-- Normalizes a YAML group body: {hosts=, vars=, children=}.
local function yaml_group(file, lines, name, body, groups, host_order, seen_hosts)
  if is_null(body) then body = {} end
  if type(body) ~= "table" then
    return inv_error(file, locate(lines, { name }), name, "group '%s' must be a mapping", name)
  end
  local def = groups[name] or { vars = {}, hosts = {}, children = {} }
  groups[name] = def
  for k in pairs(body) do
    if k ~= "hosts" and k ~= "vars" and k ~= "children" then
      return inv_error(file, locate(lines, { name, k }), k,
        "group '%s': unknown key '%s' (expected hosts, vars, children)", name, tostring(k))
    end
  end
  if not is_null(body.vars) then
    if type(body.vars) ~= "table" then
      return inv_error(file, locate(lines, { name, "vars" }), "vars", "group '%s': vars must be a mapping", name)
    end
    copy_into(def.vars, body.vars)
  end
  if not is_null(body.hosts) then
    if type(body.hosts) ~= "table" then
      return inv_error(file, locate(lines, { name, "hosts" }), "hosts", "group '%s': hosts must be a mapping", name)
    end
    local hl = {}
    for h in pairs(body.hosts) do hl[#hl + 1] = h end
    table.sort(hl, function(a, b)
      return (locate(lines, { name, "hosts", a }) or 0) < (locate(lines, { name, "hosts", b }) or 0)
    end)
    for _, h in ipairs(hl) do
      local hv = body.hosts[h]
      if is_null(hv) then hv = {} end
      if type(hv) ~= "table" then
        return inv_error(file, locate(lines, { name, "hosts", h }), h,
          "host '%s' in group '%s' must be a mapping of variables", h, name)
      end
      def.hosts[h] = hv
      if not seen_hosts[h] then seen_hosts[h] = true; host_order[#host_order + 1] = h end
    end
  end
  if not is_null(body.children) then
    if type(body.children) ~= "table" then
      return inv_error(file, locate(lines, { name, "children" }), "children",
        "group '%s': children must be a mapping", name)
    end
    local cl = {}
    for c in pairs(body.children) do cl[#cl + 1] = c end
    table.sort(cl, function(a, b)
      return (locate(lines, { name, "children", a }) or 0) < (locate(lines, { name, "children", b }) or 0)
    end)
    for _, c in ipairs(cl) do
      def.children[#def.children + 1] = c
      local e = yaml_group(file, lines, c, body.children[c], groups, host_order, seen_hosts)
      if e then return e end
    end
  end
end

local function split_lines(text)
  local lines = {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  return lines
end

local function parse_yaml(text, file)
  local doc, err = yaml.decode(text, file)
  if doc == nil and err then
    local msg = err.message:gsub("^" .. file:gsub("%p", "%%%0") .. ":%d+:%d+: ", "")
    return nil, inv_error(file, err.line, nil, "%s", msg)
  end
  if type(doc) ~= "table" then
    return nil, inv_error(file, 1, nil, "an inventory must be a mapping of groups (e.g. all:)")
  end
  local lines = split_lines(text)
  local groups, host_order, seen = { all = { vars = {}, hosts = {}, children = {} } }, {}, {}
  local top = {}
  for g in pairs(doc) do top[#top + 1] = g end
  table.sort(top, function(a, b) return (locate(lines, { a }) or 0) < (locate(lines, { b }) or 0) end)
  for _, g in ipairs(top) do
    local e = yaml_group(file, lines, g, doc[g], groups, host_order, seen)
    if e then return nil, e end
  end
  return build(file, groups, host_order, lines)
end

local function parse_json(text, file)
  local ok, doc = pcall(cjson.decode, text)
  if not ok then return nil, inv_error(file, nil, nil, "invalid JSON: %s", tostring(doc)) end
  if type(doc) ~= "table" then return nil, inv_error(file, nil, nil, "invalid inventory JSON") end
  local meta = type(doc._meta) == "table" and doc._meta.hostvars or {}
  local groups, host_order, seen = { all = { vars = {}, hosts = {}, children = {} } }, {}, {}
  local names = {}
  for g in pairs(doc) do if g ~= "_meta" then names[#names + 1] = g end end
  table.sort(names)
  for _, g in ipairs(names) do
    local body = doc[g]
    local def = groups[g] or { vars = {}, hosts = {}, children = {} }
    groups[g] = def
    if type(body) == "table" and body[1] ~= nil then body = { hosts = body } end -- old style: a list
    if type(body) ~= "table" then return nil, inv_error(file, nil, g, "group '%s' must be an object", g) end
    copy_into(def.vars, body.vars)
    for _, h in ipairs(type(body.hosts) == "table" and body.hosts or {}) do
      def.hosts[h] = {}
      if not seen[h] then seen[h] = true; host_order[#host_order + 1] = h end
    end
    for _, c in ipairs(type(body.children) == "table" and body.children or {}) do
      def.children[#def.children + 1] = c
    end
  end
  -- ansible-inventory leaves empty groups out but still names them as
  -- children (e.g. "ungrouped"): they are empty groups
  for _, g in ipairs(names) do
    for _, c in ipairs(groups[g].children) do
      groups[c] = groups[c] or { vars = {}, hosts = {}, children = {} }
    end
  end
  for h, hv in pairs(meta) do
    if not seen[h] then seen[h] = true; host_order[#host_order + 1] = h end
    groups.all.hosts[h] = groups.all.hosts[h] or {}
    copy_into(groups.all.hosts[h], hv)
  end
  -- hostvars from --list are already merged: they win over group vars
  for _, def in pairs(groups) do
    for h in pairs(def.hosts) do
      if meta[h] then def.hosts[h] = meta[h] end
    end
  end
  return build(file, groups, host_order, nil)
end

-- Parses inventory text; `file` names it in errors.
function M.parse(text, file)
  file = file or "inventory"
  if text:match("^%s*{") then return parse_json(text, file) end
  return parse_yaml(text, file)
end

-- Loads an inventory file (YAML, or JSON from ansible-inventory --list).
function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then
    return nil, setmetatable({ kind = "io", message = "cannot read inventory: " .. tostring(err), file = path },
      { __tostring = function(e) return "io: " .. e.message end })
  end
  local text = f:read("a")
  f:close()
  return M.parse(text, path)
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

return M
