-- test_inventory_errors — the `nil, err` contract of the inventory and
-- clouds.yaml entry points: named cases (numeric/boolean group, host and
-- cloud names, a cyclic YAML alias, a group cycle, bad INI, OS_* without a
-- password), then a fuzz of inventory.parse/load and config.resolve over
-- mutated YAML, INI, JSON and clouds.yaml texts: every call returns a result
-- or nil plus an error table with a message naming the file; none raises.
-- UPGRUN_FUZZ_ITERATIONS (default 1500 per entry point), seed UPGRUN_FUZZ_SEED.
local T = require "testlib"
local inventory = require "upgrun.inventory"
local config = require "upgrun.openstack.config"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))

local function write(name, text)
  local f = assert(io.open(dir .. "/" .. name, "w"))
  f:write(text)
  f:close()
  return dir .. "/" .. name
end

local function inv_err(text, name)
  local inv, err = inventory.parse(text, name or "inv.yml")
  T.eq(inv, nil, "expected an error for: " .. text)
  T.eq(type(err), "table")
  T.eq(err.kind, "inventory")
  return err
end

T.case("numeric and boolean group and host names: file and line, no raw Lua error", function()
  local e = inv_err("all:\n  children:\n    123:\n      hosts:\n        h1:\n")
  T.ok(e.message:find("^inv%.yml:3: group name 123 is a number"), e.message); T.eq(e.line, 3)
  e = inv_err("all:\n  hosts:\n    true:\n")
  T.ok(e.message:find("^inv%.yml:3: host name true in group 'all' is a boolean"), e.message)
  e = inv_err("all:\n  hosts:\n    h1:\n      5: x\n")
  T.ok(e.message:find("^inv%.yml:4: host 'h1': variable name 5"), e.message)
  e = inv_err("yes:\n  hosts: {h: }\n")
  T.ok(e.message:find("^inv%.yml:1: group name true"), e.message)
end)

T.case("a cyclic YAML alias is an error naming the line, not a stack overflow", function()
  local e = inv_err("all:\n  children:\n    a: &loop\n      children:\n        b: *loop\n")
  T.ok(e.message:find("alias loop", 1, true) or e.message:find("cycle", 1, true), e.message)
  T.ok(e.line ~= nil, "line")
end)

T.case("a group cycle names the line that closes it", function()
  -- (as Ansible, a child's own children are read first: the cycle closes at line 3)
  local e = inv_err("a:\n  children:\n    b:\n      children:\n        a:\n")
  T.ok(e.message:find("^inv%.yml:3: adding group 'b' as a child of 'a' makes a cycle"), e.message)
  e = inv_err("[a:children]\nb\n[b:children]\na\n", "inv.ini")
  T.ok(e.message:find("^inv%.ini:4: adding group 'a' as a child of 'b' makes a cycle"), e.message)
end)

T.case("INI errors name the file and line", function()
  local e = inv_err("[web]\nh1 x\n", "hosts.ini")
  T.ok(e.message:find("^hosts%.ini:2: expected key=value"), e.message)
  e = inv_err("[web:vars]\nx=1\n", "hosts.ini")
  T.ok(e.message:find("^hosts%.ini:1: section %[web:vars%] is for a group that is defined nowhere"), e.message)
  e = inv_err("[web]\nh[1:x]\n", "hosts.ini")
  T.ok(e.message:find("^hosts%.ini:2: host 'h%[1:x%]'"), e.message)
  e = inv_err("[web]\nh1 v=[1,2]\n", "hosts.ini")
  T.ok(e.message:find("Python list/dict", 1, true), e.message)
  e = inv_err("[web :vars]\n", "hosts.ini")
  T.ok(e.message:find("^hosts%.ini:1: invalid section"), e.message)
end)

T.case("a missing -i source and a plugin config without ansible are clear", function()
  local inv, err = inventory.load(dir .. "/nope.yml")
  T.eq(inv, nil); T.eq(err.kind, "io"); T.ok(err.message:find("nope.yml", 1, true))
  local f = write("os.yml", "plugin: openstack.cloud.openstack\n")
  inv, err = inventory.load(f)
  if inv == nil then -- with ansible-core installed, ansible-inventory reads it (and fails for want of a cloud)
    T.ok(err.message:find("os.yml", 1, true) and (err.message:find("openstack.cloud.openstack", 1, true)
      or err.message:find("ansible-inventory", 1, true)), err.message)
  end
end)

T.case("clouds: numeric cloud names and OS_* without a password say what is wrong", function()
  local f = write("clouds.yaml", "clouds:\n  42:\n    auth: {auth_url: http://k/v3}\n")
  local c, err = config.resolve { files = { f }, secure_files = {}, env = {} }
  T.eq(c, nil); T.eq(err.kind, "config")
  T.ok(err.message:find(f .. ":2: clouds.42: a cloud name must be a string", 1, true), err.message)
  c, err = config.resolve { files = {}, secure_files = {},
    env = { OS_AUTH_URL = "http://k/v3", OS_USERNAME = "u" } }
  T.eq(c, nil)
  T.ok(err.message:find("OS_PASSWORD is not set", 1, true), err.message)
  T.ok(not err.message:find("nil", 1, true), err.message)
  f = write("loop.yaml", "clouds:\n  c: &c\n    auth: {auth_url: http://k/v3}\n    again: *c\n")
  c, err = config.resolve { files = { f }, secure_files = {}, env = {} }
  T.eq(c, nil); T.ok(err.message:find(f .. ":2: clouds.c: contains itself", 1, true), err.message)
  f = write("p.yaml", "clouds:\n  v:\n    profile: vexxhost\n")
  c, err = config.resolve { files = { f }, secure_files = {}, env = {} }
  T.eq(c, nil)
  T.ok(err.message:find(f .. ":3: clouds.v.profile: vendor profiles are not supported", 1, true), err.message)
end)

-- ---- fuzz ---------------------------------------------------------------------

local ITER = tonumber(os.getenv("UPGRUN_FUZZ_ITERATIONS") or "") or 1500
local seed = tonumber(os.getenv("UPGRUN_FUZZ_SEED") or "") or 10
local rnd = T.rng(seed, 3)

local SEEDS = {
  "all:\n  vars: {x: 1}\n  children:\n    web:\n      hosts:\n        w[1:3]:\n          ansible_port: 22\n"
    .. "    db:\n      hosts: db1\n      children: {web: }\n",
  "top\n[web]\nw[01:03] a=1 b='x y'\n[web:vars]\nv=True\n[all:children]\nweb\n",
  '{"all": {"children": ["g"]}, "g": {"hosts": ["h1"], "vars": {"a": 1}}, "_meta": {"hostvars": {"h1": {"x": 2}}}}',
  "a: &x\n  hosts: {h: }\n  vars: {<<: {k: 1}}\nb: *x\nc:\n  children:\n    a:\n",
}
local CLOUD_SEEDS = {
  "clouds:\n  c:\n    auth:\n      auth-url: http://k/v3\n      username: u\n      password: p\n"
    .. "    regions: [r1, {name: r2, values: {interface: internal}}]\n    verify: no\n",
  "clouds:\n  c: &c\n    auth: {auth_url: http://k/v3, token: t}\n    auth_type: token\n  d:\n    <<: *c\n",
}
local TOKENS = { "&a ", "*a", "&c ", "*c", " *c\n",
  "<<: ", "~", "[", "]", "{", "}", ":", ": ", "\t", "\n", "- ", "123", "true",
  "'", '"', "#", ",", "=", "[1:", ":2]", "\0", "\255", "!!int ", "!vault ", "children:", "hosts:", "vars:",
  "clouds:", "auth:", "  ", "1e999", "99999999999999999999999", "-", "..." }

local function mutate(text)
  local n = rnd(4)
  for _ = 1, n do
    local pos = rnd(#text + 1)
    local r = rnd(4)
    if r == 1 then text = text:sub(1, pos - 1) .. TOKENS[rnd(#TOKENS)] .. text:sub(pos)
    elseif r == 2 then text = text:sub(1, pos - 1) .. text:sub(pos + rnd(8))
    elseif r == 3 then text = text:sub(1, pos)
    else text = text:sub(1, pos - 1) .. string.char(rnd(256) - 1) .. text:sub(pos + 1) end
  end
  return text
end

local function check_contract(what, ok, res, err, name)
  if not ok then T.fail(what .. " raised: " .. tostring(res)) end
  if res == nil then
    if type(err) ~= "table" or type(err.message) ~= "string" or type(err.kind) ~= "string" then
      T.fail(what .. " returned nil without an error table: " .. tostring(err))
    end
    if name and not err.message:find(name, 1, true) then
      T.fail(what .. ": the error does not name the file " .. name .. ": " .. err.message)
    end
  end
end

T.case("fuzz: inventory.parse and inventory.load never raise", function()
  local oks, errs = 0, 0
  for i = 1, ITER do
    local text = mutate(SEEDS[rnd(#SEEDS)])
    local ok, inv, err = pcall(inventory.parse, text, "fuzz.yml")
    check_contract("inventory.parse (case " .. i .. ", text " .. string.format("%q", text) .. ")", ok, inv, err,
      "fuzz.yml")
    if inv then oks = oks + 1 else errs = errs + 1 end
    if i % 10 == 0 then
      local p = write(i % 20 == 0 and "f.ini" or "f", text)
      ok, inv, err = pcall(inventory.load, p)
      check_contract("inventory.load (case " .. i .. ", text " .. string.format("%q", text) .. ")", ok, inv, err, p)
    end
  end
  io.write("     ", oks, " loaded, ", errs, " refused\n")
  T.ok(oks > 0 and errs > 0, "the fuzz exercises both outcomes")
end)

T.case("fuzz: config.resolve never raises", function()
  local oks, errs = 0, 0
  for i = 1, ITER do
    local text = mutate(CLOUD_SEEDS[rnd(#CLOUD_SEEDS)])
    local p = write("clouds.yaml", text)
    local ok, c, err = pcall(config.resolve, { files = { p }, secure_files = {}, env = {},
      cloud = rnd(2) == 1 and "c" or nil })
    check_contract("config.resolve (case " .. i .. ", text " .. string.format("%q", text) .. ")", ok, c, err)
    if c then oks = oks + 1 else errs = errs + 1 end
  end
  io.write("     ", oks, " resolved, ", errs, " refused\n")
  T.ok(oks > 0 and errs > 0, "the fuzz exercises both outcomes")
end)

os.execute("rm -rf '" .. dir .. "'")
return T.done()
