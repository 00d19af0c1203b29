-- upgrun.inventory.model — the inventory being read, as Ansible's
-- InventoryData holds it: groups (vars, direct hosts in order, children,
-- parents, depth, priority), hosts (their own vars, in the order variables
-- were set) and the order hosts were first seen. Every format reader (YAML,
-- INI, JSON) fills one model; upgrun.inventory turns it into nodes.
--
--   local st = model.new(null)        -- null: the sentinel kept for `x: ~`
--   st:add_group(name, where)         where = {file=, line=} for messages
--   st:add_host(group, host, where, port)
--   st:set_group_var(group, k, v, where)   st:set_host_var(host, k, v, where)
--   local err = st:add_child(parent, child, where)   -- "file:line: ..." on a cycle
--   st:reconcile()                    -- Ansible's "ungrouped" and all's children
local M = {}
local Model = {}
Model.__index = Model

function M.new(null)
  local st = setmetatable({ groups = {}, hosts = {}, host_order = {}, null = null }, Model)
  st:add_group("all")
  st:add_group("ungrouped")
  st:add_child("all", "ungrouped")
  return st
end

function Model:add_group(name, where)
  local g = self.groups[name]
  if not g then
    g = { name = name, vars = {}, var_where = {}, hosts = {}, host_set = {}, children = {}, child_set = {},
          parents = {}, depth = 0, priority = 1, where = where }
    self.groups[name] = g
  end
  return g
end

local function where_str(w)
  if not w or not w.file then return "inventory" end
  return w.file .. (w.line and (":" .. w.line) or "")
end

-- True when `target` is `g` or one of its descendants.
local function reaches(st, g, target, seen)
  if g == target then return true end
  seen = seen or {}
  if seen[g] then return false end
  seen[g] = true
  for _, c in ipairs(st.groups[g].children) do
    if reaches(st, c, target, seen) then return true end
  end
  return false
end

local function deepen(st, name, depth, seen)
  local g = st.groups[name]
  if depth <= g.depth or seen[name] then return end
  g.depth = depth
  seen[name] = true
  for _, c in ipairs(g.children) do deepen(st, c, depth + 1, seen) end
  seen[name] = nil
end

function Model:add_child(parent, child, where)
  local p, c = self:add_group(parent, where), self:add_group(child, where)
  if p.child_set[child] then return nil end
  if reaches(self, child, parent) then
    return string.format("%s: adding group '%s' as a child of '%s' makes a cycle (%s is already below %s)",
      where_str(where), child, parent, parent, child)
  end
  p.child_set[child] = true
  p.children[#p.children + 1] = child
  c.parents[#c.parents + 1] = parent
  deepen(self, child, p.depth + 1, {})
  return nil
end

function Model:add_host(group, host, where, port)
  local g = self:add_group(group, where)
  local h = self.hosts[host]
  local new = not h
  if new then
    h = { name = host, vars = {}, var_where = {}, where = where }
    self.hosts[host] = h
    self.host_order[#self.host_order + 1] = host
  end
  if not g.host_set[host] then
    g.host_set[host] = true
    g.hosts[#g.hosts + 1] = host
  end
  if port and new then -- as Ansible: a port only when the host is first seen
    h.vars.ansible_port = port
    h.var_where.ansible_port = { file = where and where.file, line = where and where.line, group = group }
  end
  return h
end

-- where = {file=, line=, group=} says where the variable was set (messages).
function Model:set_host_var(host, k, v, where)
  local h = self.hosts[host]
  h.vars[k] = v
  h.var_where[k] = where
end

function Model:set_group_var(group, k, v, where)
  local g = self:add_group(group, where)
  if k == "ansible_group_priority" then -- as Ansible: a setting, not a variable
    local n = tonumber(v)
    if n then g.priority = math.floor(n) end
    return
  end
  g.vars[k] = v
  g.var_where[k] = where
end

-- The groups a host is in: its direct groups and all their ancestors (a
-- shared list per set of direct groups: do not modify it).
function Model:host_groups(host)
  local direct = self:direct_groups(host)
  local key = table.concat(direct, "\0")
  self._closure = self._closure or {}
  local memo = self._closure[key]
  if memo then return memo end
  local out, seen = {}, {}
  local function up(name)
    if seen[name] then return end
    seen[name] = true
    out[#out + 1] = name
    for _, p in ipairs(self.groups[name].parents) do up(p) end
  end
  for _, g in ipairs(direct) do up(g) end
  if not seen.all then out[#out + 1] = "all" end
  self._closure[key] = out
  return out
end

-- Direct groups of every host, built once.
function Model:direct_groups(host)
  if not self._direct then
    local d = {}
    for name, g in pairs(self.groups) do
      for _, h in ipairs(g.hosts) do
        local l = d[h] or {}
        d[h] = l
        l[#l + 1] = name
      end
    end
    self._direct = d
    self._closure = nil
  end
  return self._direct[host] or {}
end

-- Ansible's reconcile_inventory: top-level groups become children of all;
-- a host in no group but all goes to ungrouped, one in another group leaves it.
function Model:reconcile()
  local names = {}
  for name in pairs(self.groups) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    if name ~= "all" and #self.groups[name].parents == 0 then self:add_child("all", name) end
  end
  self._direct = nil
  local ung = self.groups.ungrouped
  local keep = {}
  for _, h in ipairs(ung.hosts) do keep[h] = true end
  for _, h in ipairs(self.host_order) do
    local others = false
    for _, g in ipairs(self:direct_groups(h)) do
      if g ~= "all" and g ~= "ungrouped" then others = true; break end
    end
    keep[h] = not others
  end
  local list = {}
  for _, h in ipairs(self.host_order) do if keep[h] then list[#list + 1] = h end end
  ung.hosts, ung.host_set = list, {}
  for _, h in ipairs(list) do ung.host_set[h] = true end
  self._direct = nil
end

-- Groups sorted as Ansible merges their vars: depth, then priority, then name.
function Model:sorted(list)
  local gs = self.groups
  table.sort(list, function(a, b)
    local ga, gb = gs[a], gs[b]
    if ga.depth ~= gb.depth then return ga.depth < gb.depth end
    if ga.priority ~= gb.priority then return ga.priority < gb.priority end
    return a < b
  end)
  return list
end

return M
