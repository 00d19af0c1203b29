-- test_inventory_oracle — upgrun.inventory against the real Ansible: 40
-- generated inventories (YAML and INI, nested children, host ranges,
-- host:port, group priorities, null overrides, conflicting host vars, YAML
-- 1.1 scalars (sexagesimal, octal, hex, yes/no/on/off, exponents),
-- group_vars/ and host_vars/ files and directories, inventory directories
-- and several sources, group_vars/ and host_vars/ beside a playbook given as
-- --playbook-dir) are each read by `ansible-inventory --list` and by
-- upgrun, and every host's variables and every group's members must be the
-- same. The generator is seeded (UPGRUN_ORACLE_SEED, default 15) so a
-- failure can be replayed; the failing case's files are kept and named.
local T = require "testlib"
local inventory = require "upgrun.inventory"
local proc = require "upgrun.proc"
local cjson = require "cjson"
local dir = require "upgrun.dir"

local CASES = tonumber(os.getenv("UPGRUN_ORACLE_CASES") or "") or 40
local seed = tonumber(os.getenv("UPGRUN_ORACLE_SEED") or "") or 15
local keep = false
local root = T.tmpdir()

local rnd, pick, chance = T.rng(seed, 1)

local function writefile(path, text)
  local d = path:match("^(.*)/[^/]*$")
  assert(os.execute("mkdir -p '" .. d .. "'"))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- ---- the abstract inventory ------------------------------------------------

local VAR_NAMES = { "v1", "v2", "v3", "role", "release", "ansible_host", "ansible_port" }

local function gen_value(name, ini)
  if name == "ansible_port" then return rnd(60000) + 1 end
  if name == "ansible_host" then return "10.0." .. rnd(250) .. "." .. rnd(250) end
  local r = rnd(ini and 5 or 10)
  if r >= 9 then -- a plain YAML scalar as YAML 1.1 (PyYAML) types it
    return "!" .. pick({ "1:30", "0x1F", "1_000", "+5", ".5", "1e3", "Yes", "NO", "on", "0755", "1:30.5",
      "0b101", "-0", "1.0e+3", "09", "y", "Off", "~", "2001:db8::1", "0o17", "-.5", "1.0e3", "190:20:30",
      "11:22:33:44:55:66", "null", "1.5E-2", "012" })
  end
  if r == 1 then return rnd(1000) end
  if r == 2 then return pick({ true, false }) end
  if r == 3 then return "s" .. rnd(99) end
  if r == 4 then return "two words " .. rnd(9) end
  if r == 5 then return "NULL" end -- a null: `~` in YAML, None in INI
  if r == 6 then return { rnd(9), "x" .. rnd(9) } end
  if r == 7 then return { k = "m" .. rnd(9), n = rnd(9) } end
  return rnd(100) + 0.5
end

local function gen_vars(ini, n)
  local vars, order = {}, {}
  for _ = 1, n do
    local k = pick(VAR_NAMES)
    if vars[k] == nil then order[#order + 1] = k end
    vars[k] = gen_value(k, ini)
  end
  return vars, order
end

local function gen_case(i)
  local ini = i % 3 == 0
  local c = { ini = ini, groups = {}, order = {}, hosts_top = {} }
  local ngroups = 2 + rnd(5)
  for g = 1, ngroups do
    local name = "g" .. g
    local gv, go = gen_vars(ini, rnd(4) - 1)
    local grp = { name = name, vars = gv, vorder = go, hosts = {}, children = {} }
    if chance(0.3) then
      grp.vars.ansible_group_priority = rnd(3)
      go[#go + 1] = "ansible_group_priority"
    end
    c.groups[name] = grp
    c.order[#c.order + 1] = name
  end
  -- children: only to later groups, so there is no cycle
  for g = 1, ngroups - 1 do
    if chance(0.5) then
      local child = "g" .. (g + rnd(ngroups - g))
      table.insert(c.groups["g" .. g].children, child)
    end
  end
  -- hosts: plain names, ranges, host:port
  local nhosts = 2 + rnd(6)
  for h = 1, nhosts do
    local r = rnd(10)
    local name
    if r == 1 then name = "web[0" .. rnd(3) .. ":0" .. (4 + rnd(5)) .. "]"
    elseif r == 2 then name = "db-[a:" .. pick({ "b", "c", "d" }) .. "]"
    elseif r == 3 then name = "h" .. h .. ":" .. (2000 + rnd(999))
    elseif r == 4 then name = "n[1:" .. (2 + rnd(6)) .. ":2]"
    else name = "h" .. h end
    local ngrp = rnd(3)
    for _ = 1, ngrp do
      local g = c.groups[pick(c.order)]
      local hv, ho = gen_vars(ini, rnd(3) - 1)
      g.hosts[#g.hosts + 1] = { name = name, vars = hv, vorder = ho }
    end
    if chance(0.15) then c.hosts_top[#c.hosts_top + 1] = { name = "t" .. h, vars = {}, vorder = {} } end
  end
  -- group_vars / host_vars
  c.files = {}
  if chance(0.5) then c.files["group_vars/all.yml"] = { gen_vars(false, 2) } end
  for _, g in ipairs(c.order) do
    if chance(0.3) then
      if chance(0.5) then c.files["group_vars/" .. g .. ".yml"] = { gen_vars(false, 2) }
      else
        c.files["group_vars/" .. g .. "/a.yml"] = { gen_vars(false, 2) }
        c.files["group_vars/" .. g .. "/b.yaml"] = { gen_vars(false, 2) }
      end
    end
  end
  if chance(0.4) then c.files["host_vars/h1.yml"] = { gen_vars(false, 2) } end
  c.layout = pick({ "one", "one", "dir", "two" })
  -- group_vars / host_vars beside a playbook (--playbook-dir), over the inventory's
  if chance(0.4) then
    c.pb_files = {}
    if chance(0.6) then c.pb_files["group_vars/all.yml"] = { gen_vars(false, 2) } end
    for _, g in ipairs(c.order) do
      if chance(0.3) then c.pb_files["group_vars/" .. g .. ".yml"] = { gen_vars(false, 2) } end
    end
    if chance(0.5) then c.pb_files["host_vars/h1.yml"] = { gen_vars(false, 2) } end
  end
  return c
end

-- ---- writing it as YAML or INI -----------------------------------------------

local function yaml_scalar(v)
  if v == "NULL" then return "~" end
  if type(v) == "string" and v:sub(1, 1) == "!" then return v:sub(2) end
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then
    if v[1] ~= nil then
      local t = {}
      for i, x in ipairs(v) do t[i] = yaml_scalar(x) end
      return "[" .. table.concat(t, ", ") .. "]"
    end
    return string.format("{k: %s, n: %s}", yaml_scalar(v.k), yaml_scalar(v.n))
  end
  return tostring(v)
end

local function ini_scalar(v)
  if v == "NULL" then return "None" end
  if v == true then return "True" end
  if v == false then return "False" end
  if type(v) == "string" then return v:find(" ") and ('"' .. v .. '"') or v end
  return tostring(v)
end

local function yaml_vars(vars, order, indent)
  local out = {}
  for _, k in ipairs(order) do out[#out + 1] = indent .. k .. ": " .. yaml_scalar(vars[k]) end
  return table.concat(out, "\n")
end

local function emit_yaml(c, names)
  local out = {}
  if #c.hosts_top > 0 and names == c.order then
    out[#out + 1] = "all:\n  hosts:"
    for _, h in ipairs(c.hosts_top) do out[#out + 1] = "    " .. h.name .. ":" end
  end
  for _, name in ipairs(names) do
    local g = c.groups[name]
    out[#out + 1] = name .. ":"
    local sections = { "hosts", "vars", "children" }
    if chance(0.5) then sections = { "vars", "children", "hosts" } end
    for _, s in ipairs(sections) do
      if s == "hosts" and #g.hosts > 0 then
        out[#out + 1] = "  hosts:"
        for _, h in ipairs(g.hosts) do
          if #h.vorder == 0 then out[#out + 1] = "    " .. h.name .. ":"
          else out[#out + 1] = "    " .. h.name .. ":\n" .. yaml_vars(h.vars, h.vorder, "      ") end
        end
      elseif s == "vars" and #g.vorder > 0 then
        out[#out + 1] = "  vars:\n" .. yaml_vars(g.vars, g.vorder, "    ")
      elseif s == "children" and #g.children > 0 then
        out[#out + 1] = "  children:"
        for _, ch in ipairs(g.children) do out[#out + 1] = "    " .. ch .. ":" end
      end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

local function emit_ini(c, names)
  local out = {}
  if names == c.order then
    for _, h in ipairs(c.hosts_top) do out[#out + 1] = h.name end
  end
  for _, name in ipairs(names) do
    local g = c.groups[name]
    out[#out + 1] = "[" .. name .. "]"
    for _, h in ipairs(g.hosts) do
      local line = { h.name }
      for _, k in ipairs(h.vorder) do
        local v = h.vars[k]
        line[#line + 1] = k .. "=" .. ((type(v) == "string" and v:find(" ")) and ("'" .. v .. "'") or ini_scalar(v))
      end
      out[#out + 1] = table.concat(line, " ")
    end
    if #g.vorder > 0 then
      out[#out + 1] = "[" .. name .. ":vars]"
      for _, k in ipairs(g.vorder) do out[#out + 1] = k .. "=" .. ini_scalar(g.vars[k]) end
    end
    if #g.children > 0 then
      out[#out + 1] = "[" .. name .. ":children]"
      for _, ch in ipairs(g.children) do out[#out + 1] = ch end
    end
  end
  -- a child defined in another file is declared here too (INI needs it)
  local here = {}
  for _, name in ipairs(names) do here[name] = true end
  for _, name in ipairs(names) do
    for _, ch in ipairs(c.groups[name].children) do
      if not here[ch] then here[ch] = true; out[#out + 1] = "[" .. ch .. "]" end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

local function write_case(c, d)
  local ext = c.ini and ".ini" or ".yml"
  local emit = c.ini and emit_ini or emit_yaml
  local sources
  if c.layout == "one" then
    writefile(d .. "/hosts" .. ext, emit(c, c.order))
    sources = { d .. "/hosts" .. ext }
  else
    -- split the groups over two files; a group's children are declared in the file defining it
    local a, b = {}, {}
    for i, g in ipairs(c.order) do if i % 2 == 1 then a[#a + 1] = g else b[#b + 1] = g end end
    local inv = d .. "/inv"
    -- in a directory, Ansible skips *.ini: give INI files no extension there
    local e1 = c.ini and (c.layout == "dir" and "" or ".ini") or ".yml"
    writefile(inv .. "/01-first" .. e1, emit(c, c.order == a and a or a))
    writefile(inv .. "/02-second" .. e1, emit(c, b))
    if #c.hosts_top > 0 then writefile(inv .. "/00-top" .. e1, c.ini and (c.hosts_top[1].name .. "\n")
      or ("all:\n  hosts:\n    " .. c.hosts_top[1].name .. ":\n")) end
    if c.layout == "dir" then sources = { inv }
    else
      sources = { inv .. "/01-first" .. e1, inv .. "/02-second" .. e1 }
      if #c.hosts_top > 0 then table.insert(sources, 1, inv .. "/00-top" .. e1) end
    end
    d = inv
  end
  local function write_vars(base, files)
    for rel, v in pairs(files) do
      local vars, order = v[1], v[2]
      writefile(base .. "/" .. rel, #order > 0 and (yaml_vars(vars, order, "") .. "\n") or "")
    end
  end
  write_vars(d, c.files)
  local pb
  if c.pb_files then
    pb = d .. "/playbooks"
    assert(os.execute("mkdir -p '" .. pb .. "'"))
    write_vars(pb, c.pb_files)
  end
  return sources, pb
end

-- ---- comparing -----------------------------------------------------------------

local function same(a, b)
  if a == cjson.null then a = nil end
  if b == cjson.null then b = nil end
  if type(a) == "table" and type(b) == "table" then
    for k, v in pairs(a) do if not same(v, b[k]) then return false end end
    for k, v in pairs(b) do if a[k] == nil and v ~= cjson.null then return false end end
    return true
  end
  return a == b
end

local function show(v)
  if type(v) == "table" then
    local ok, s = pcall(cjson.encode, v)
    return ok and s or tostring(v)
  end
  return tostring(v)
end

local function ansible(sources, playbook_dir)
  local argv = { "ansible-inventory" }
  for _, s in ipairs(sources) do argv[#argv + 1] = "-i"; argv[#argv + 1] = s end
  if playbook_dir then argv[#argv + 1] = "--playbook-dir"; argv[#argv + 1] = playbook_dir end
  argv[#argv + 1] = "--list"
  local r, err = proc.run(argv, { timeout = 120, env_add = { ANSIBLE_LOCALHOST_WARNING = "False",
    ANSIBLE_INVENTORY_UNPARSED_WARNING = "False", ANSIBLE_NOCOLOR = "1" } })
  assert(r, tostring(err and err.message or err))
  assert(r.status == 0, "ansible-inventory failed: " .. tostring(r.stderr))
  return cjson.decode(r.stdout)
end

-- Ansible's answer: host -> vars, group -> set of every member host.
local function expected(j)
  local hostvars = j._meta and j._meta.hostvars or {}
  local members = {}
  local function collect(g, seen)
    if seen[g] then return {} end
    seen[g] = true
    local set = {}
    local body = j[g] or {}
    for _, h in ipairs(body.hosts or {}) do set[h] = true end
    for _, c in ipairs(body.children or {}) do
      for h in pairs(collect(c, seen)) do set[h] = true end
    end
    return set
  end
  for g in pairs(j) do if g ~= "_meta" then members[g] = collect(g, {}) end end
  local hosts = {}
  for h in pairs(members.all or {}) do hosts[h] = hostvars[h] or {} end
  return hosts, members
end

local function compare(inv, j)
  local hosts, members = expected(j)
  local problems = {}
  local n = 0
  for h, want in pairs(hosts) do
    n = n + 1
    if not inv:has_host(h) then problems[#problems + 1] = "host " .. h .. " missing"
    else
      local node = inv:host(h)
      for k, v in pairs(want) do
        if not same(node.vars[k], v) then
          problems[#problems + 1] = string.format("%s.%s: ansible %s, upgrun %s", h, k, show(v), show(node.vars[k]))
        end
      end
      for k, v in pairs(node.vars) do
        if want[k] == nil then problems[#problems + 1] = string.format("%s.%s: only upgrun has %s", h, k, show(v)) end
      end
      local seen = {}
      for _, g in ipairs(node.groups) do
        if seen[g] then problems[#problems + 1] = h .. ": group " .. g .. " listed twice" end
        seen[g] = true
      end
    end
  end
  if #inv:hosts() ~= n then problems[#problems + 1] = string.format("%d hosts, ansible %d", #inv:hosts(), n) end
  for g, set in pairs(members) do
    if g ~= "ungrouped" or next(set) then
      local got = {}
      for _, node in ipairs(inv:group(g)) do got[node.name] = true end
      if not same(got, set) then
        problems[#problems + 1] = string.format("group %s: ansible %s, upgrun %s", g, show(set), show(got))
      end
    end
  end
  return problems
end

T.case("ansible-inventory is installed (the oracle)", function()
  local found = false
  for d in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if dir.kind(d .. "/ansible-inventory") then found = true end
  end
  T.ok(found, "ansible-inventory not found: tests/setup installs Debian's ansible-core")
end)

T.case(CASES .. " generated inventories resolve as ansible-inventory --list resolves them", function()
  local failed = {}
  local kinds = {}
  for i = 1, CASES do
    local c = gen_case(i)
    local d = root .. "/case" .. i
    local sources, pb = write_case(c, d)
    local k = (c.ini and "ini" or "yaml") .. "/" .. c.layout
    kinds[k] = (kinds[k] or 0) + 1
    if pb then kinds["playbook-dir"] = (kinds["playbook-dir"] or 0) + 1 end
    local j = ansible(sources, pb)
    local inv, err = inventory.load(#sources == 1 and sources[1] or sources, { playbook_dir = pb })
    if not inv then
      failed[#failed + 1] = string.format("case %d (%s): upgrun failed: %s", i, d, tostring(err))
    else
      local problems = compare(inv, j)
      if #problems > 0 then
        failed[#failed + 1] = string.format("case %d (%s): %s", i, d, table.concat(problems, "; "))
      end
    end
  end
  local summary = {}
  for k, n in pairs(kinds) do summary[#summary + 1] = k .. "=" .. n end
  table.sort(summary)
  io.write("     cases: ", table.concat(summary, " "), "\n")
  if #failed > 0 then
    keep = true -- the cases' files stay for a replay
    T.fail(#failed .. " disagreement(s):\n" .. table.concat(failed, "\n"))
  end
end)

T.case("a dynamic inventory script is read through ansible-inventory --list", function()
  local path = root .. "/dyn/inventory.sh"
  writefile(path, "#!/bin/sh\n"
    .. "if [ \"$1\" = --list ]; then\n"
    .. "  echo '{\"web\": {\"hosts\": [\"w1\", \"w2\"], \"vars\": {\"tier\": \"front\"}},"
    .. " \"_meta\": {\"hostvars\": {\"w1\": {\"ansible_port\": 2201}}}}'\n"
    .. "else echo '{}'; fi\n")
  assert(os.execute("chmod +x '" .. path .. "'"))
  local inv = assert(inventory.load(path))
  local w1, w2 = inv:host("w1"), inv:host("w2")
  T.eq(w1.port, 2201); T.eq(w1.vars.tier, "front"); T.eq(w2.vars.tier, "front")
  T.eq(#inv:group("web"), 2)
  local problems = compare(inv, ansible({ path }))
  T.eq(#problems, 0, table.concat(problems, "; "))
end)

if not keep then os.execute("rm -rf '" .. root .. "'") end
return T.done()
