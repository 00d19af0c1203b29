-- upgrun.inventory.yaml_format — the YAML inventory format read as
-- Ansible's yaml plugin reads it: top-level groups, each a mapping (or empty)
-- of hosts (name -> vars; a single name as a string), vars and children
-- (groups, recursively). Keys are taken in document order (upgrun.yaml's
-- positions), which is also the order host variables are set in, and every
-- error names the file and the line of the key at fault.
--
--   yaml_format.read(doc, pos, file, st)  -> nil or "file:line: message"
--   doc, pos: upgrun.yaml.decode(text, file, {positions = true})
local hostpattern = require "upgrun.inventory.hostpattern"

local M = {}

-- Keys of a decoded mapping in document order (keys the positions table does
-- not know, if any, follow sorted by their text).
local function ordered_keys(pos, map)
  local p = pos[map]
  if not p then
    local ks = {}
    for k in pairs(map) do ks[#ks + 1] = k end
    table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
    return ks, {}
  end
  return p.keys, p.lines
end

local function kind_of(v, null)
  if v == null then return "null" end
  if type(v) == "table" then return next(v) ~= nil and v[1] ~= nil and "list" or "mapping" end
  return type(v)
end

function M.read(doc, pos, file, st)
  local null = st.null
  local function at(line, fmt, ...)
    return string.format("%s:%s: " .. fmt, file, tostring(line or "?"), ...)
  end
  local visiting = {}
  local function group(name, body, line)
    if type(name) ~= "string" then
      return at(line, "group name %s is a %s: quote it to make it a name", tostring(name), kind_of(name, null))
    end
    if body ~= nil and body ~= null and type(body) ~= "table" then
      return at(line, "group '%s' must be a mapping (hosts, vars, children), got a %s", name, kind_of(body, null))
    end
    st:add_group(name, { file = file, line = line })
    if body == nil or body == null then return nil end
    if visiting[body] then
      return at(line, "group '%s' contains itself (a YAML alias loop)", name)
    end
    visiting[body] = true
    local keys, lines = ordered_keys(pos, body)
    for _, key in ipairs(keys) do
      local v, kl = body[key], lines[key] or line
      if key ~= "hosts" and key ~= "vars" and key ~= "children" then
        return at(kl, "group '%s': unknown key '%s' (expected hosts, vars, children)", name, tostring(key))
      end
      if type(v) == "string" then v = { [v] = null } end -- "hosts: web1"
      if v ~= null and type(v) ~= "table" then
        return at(kl, "group '%s': %s must be a mapping, got a %s", name, key, kind_of(v, null))
      end
      if type(v) == "table" and v[1] ~= nil then
        return at(kl, "group '%s': %s must be a mapping, got a list", name, key)
      end
      if v ~= null then
        local vkeys, vlines = ordered_keys(pos, v)
        for _, k in ipairs(vkeys) do
          local val, l = v[k], vlines[k] or kl
          if key == "vars" then
            if type(k) ~= "string" then
              return at(l, "group '%s': variable name %s is a %s, not a name", name, tostring(k), kind_of(k, null))
            end
            st:set_group_var(name, k, val, { file = file, line = l })
          elseif key == "children" then
            local e = group(k, val, l)
            if e then return e end
            e = st:add_child(name, k, { file = file, line = l })
            if e then return e end
          else
            if type(k) ~= "string" then
              return at(l, "host name %s in group '%s' is a %s: quote it to make it a name", tostring(k), name,
                kind_of(k, null))
            end
            if val ~= null and type(val) ~= "table" then
              return at(l, "host '%s' in group '%s' must be a mapping of variables, got a %s", k, name,
                kind_of(val, null))
            end
            local hosts, port = hostpattern.expand(k)
            if not hosts then return at(l, "host '%s': %s", k, port) end
            local hkeys, hlines = {}, {}
            if type(val) == "table" then hkeys, hlines = ordered_keys(pos, val) end
            for _, h in ipairs(hosts) do
              st:add_host(name, h, { file = file, line = l }, port)
              for _, hk in ipairs(hkeys) do
                if type(hk) ~= "string" then
                  return at(hlines[hk] or l, "host '%s': variable name %s is a %s, not a name", h, tostring(hk),
                    kind_of(hk, null))
                end
                st:set_host_var(h, hk, val[hk], { file = file, line = hlines[hk] or l, group = name })
              end
            end
          end
        end
      end
    end
    visiting[body] = nil
    return nil
  end
  local keys, lines = ordered_keys(pos, doc)
  for _, g in ipairs(keys) do
    local e = group(g, doc[g], lines[g])
    if e then return e end
  end
  return nil
end

return M
