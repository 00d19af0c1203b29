-- upgrun.inventory.ini — the INI inventory format (kolla-ansible and
-- OpenStack-Ansible style) read as Ansible's ini plugin reads it:
--
--   host0                           # before any section: group "ungrouped"
--   [control]
--   ctl[1:3] ansible_user=ops       # ranges, host:port, key=value host vars
--   [compute:vars]
--   nova_release="newton"
--   [openstack:children]
--   control
--
-- Values are typed like Python's ast.literal_eval: 5 -> integer, 1.5 -> float,
-- True/False -> booleans, None -> null, '...' and "..." -> strings; anything
-- else stays the text. Python list/dict literals ([..], {..}) are an error
-- naming the line (convert the file to YAML). Comments: # and ; lines, and
-- a # outside quotes on a host line.
--
--   ini.parse(text, file, st)   fills the inventory state st (see
--   upgrun.inventory); returns nil or an error message "file:line: ...".
local hostpattern = require "upgrun.inventory.hostpattern"

local M = {}

local function unquote(v)
  local q = v:sub(1, 1)
  if (q == '"' or q == "'") and #v >= 2 and v:sub(-1) == q then
    return (v:sub(2, -2):gsub("\\(.)", { n = "\n", t = "\t", ["\\"] = "\\", ["'"] = "'", ['"'] = '"' }))
  end
end

-- Python literal typing of a value; returns value or nil, message.
function M.value(v)
  if v == "True" then return true end
  if v == "False" then return false end
  if v == "None" then return M.null end
  if v:match("^[-+]?%d+$") then
    local n = math.tointeger(tonumber(v))
    if n and math.abs(n) <= 2 ^ 53 then return n end
    return v
  end
  if v:match("^[-+]?%d*%.%d*$") and v:match("%d") then return tonumber(v) end
  if v:match("^[-+]?%d*%.?%d*[eE][-+]?%d+$") and v:match("^[-+]?%.?%d") then return tonumber(v) end
  local s = unquote(v)
  if s then return s end
  local c = v:sub(1, 1)
  if (c == "[" and v:sub(-1) == "]") or (c == "{" and v:sub(-1) == "}") or (c == "(" and v:sub(-1) == ")") then
    return nil, "Python list/dict values are not read natively (value " .. v .. "); write this inventory as YAML"
  end
  return v
end

-- Splits a host line into words like shlex (quotes, backslashes, # comments).
local function words(line)
  local out, cur, i, n, quote, have = {}, {}, 1, #line, nil, false
  while i <= n do
    local c = line:sub(i, i)
    if quote then
      if c == quote then quote = nil
      elseif c == "\\" and quote == '"' and i < n and line:sub(i + 1, i + 1):match('["\\]') then
        i = i + 1; cur[#cur + 1] = line:sub(i, i)
      else cur[#cur + 1] = c end
    elseif c == "'" or c == '"' then quote = c; have = true
    elseif c == "\\" and i < n then i = i + 1; cur[#cur + 1] = line:sub(i, i); have = true
    elseif c == "#" then break
    elseif c:match("%s") then
      if have or #cur > 0 then out[#out + 1] = table.concat(cur); cur, have = {}, false end
    else cur[#cur + 1] = c end
    i = i + 1
  end
  if quote then return nil, "no closing quotation" end
  if have or #cur > 0 then out[#out + 1] = table.concat(cur) end
  return out
end

function M.parse(text, file, st)
  M.null = st.null
  local group, state = "ungrouped", "hosts"
  local pending = {} -- group -> {line=, state=, parents={...}}
  local lineno = 0
  local function fail(msg, ...) return string.format("%s:%d: " .. msg, file, lineno, ...) end
  for raw in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    local line = raw:gsub("\r$", ""):match("^%s*(.-)%s*$")
    local first = line:sub(1, 1)
    if line ~= "" and first ~= "#" and first ~= ";" then
      local g, kind = line:match("^%[([^:%]%s]+)%]%s*$")
      if not g then g, kind = line:match("^%[([^:%]%s]+):([%w_]+)%]%s*$") end
      if not g and line:match("^%[") then
        g, kind = line:match("^%[([^:%]%s]+)%]%s*#.*$")
        if not g then g, kind = line:match("^%[([^:%]%s]+):([%w_]+)%]%s*#.*$") end
      end
      if g then
        state = kind or "hosts"
        if state ~= "hosts" and state ~= "children" and state ~= "vars" then
          return fail("section [%s:%s] has unknown type %s (hosts, children or vars)", g, state, state)
        end
        group = g
        if not st.groups[g] then
          if state == "vars" and not pending[g] then pending[g] = { line = lineno, state = "vars" } end
          st:add_group(g, { file = file, line = lineno })
        end
        if pending[g] and state ~= "vars" then
          local p = pending[g]
          pending[g] = nil
          for _, parent in ipairs(p.parents or {}) do
            local e = st:add_child(parent, g, { file = file, line = p.line })
            if e then return e end
          end
        end
      elseif first == "[" and line:sub(-1) == "]" then
        return fail("invalid section entry '%s' (no spaces are allowed in a section name)", line)
      elseif state == "hosts" then
        local w, err = words(line)
        if not w then return fail("host definition '%s': %s", line, err) end
        local names, port = hostpattern.expand(w[1])
        if not names then return fail("host '%s': %s", w[1], port) end
        if w[1]:sub(-1) == ":" and not port then
          return fail("invalid host pattern '%s': a trailing ':' is reserved for a port", w[1])
        end
        local vars = {}
        for i = 2, #w do
          local k, v = w[i]:match("^([^=]*)=(.*)$")
          if not k then return fail("expected key=value host variable assignment, got: %s", w[i]) end
          local val, verr = M.value(v)
          if verr then return fail("%s: %s", k, verr) end
          vars[#vars + 1] = { k, val }
        end
        for _, h in ipairs(names) do
          st:add_host(group, h, { file = file, line = lineno }, port)
          for _, kv in ipairs(vars) do
            st:set_host_var(h, kv[1], kv[2], { file = file, line = lineno, group = group })
          end
        end
      elseif state == "vars" then
        local k, v = line:match("^([^=]-)%s*=%s*(.-)$")
        if not k then return fail("expected key=value, got: %s", line) end
        local val, verr = M.value(v)
        if verr then return fail("%s: %s", k, verr) end
        st:set_group_var(group, k, val, { file = file, line = lineno })
      else -- children
        local child = line:match("^([^:%]%s]+)%s*$") or line:match("^([^:%]%s]+)%s*#.*$")
        if not child then return fail("expected a group name, got: %s", line) end
        if st.groups[child] then
          local e = st:add_child(group, child, { file = file, line = lineno })
          if e then return e end
        else
          pending[child] = pending[child] or { line = lineno, state = "children", parents = {} }
          local p = pending[child].parents
          p[#p + 1] = group
        end
      end
    end
  end
  local names = {}
  for g in pairs(pending) do names[#names + 1] = g end
  table.sort(names, function(a, b) return pending[a].line < pending[b].line end)
  if names[1] then
    local g, p = names[1], pending[names[1]]
    lineno = p.line
    if p.state == "vars" then return fail("section [%s:vars] is for a group that is defined nowhere", g) end
    return fail("section [%s:children] includes undefined group %s", p.parents[#p.parents], g)
  end
end

return M
