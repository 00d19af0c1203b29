-- test_inventory_formats — upgrun.inventory's formats and merge rules on
-- named examples (the oracle test compares generated ones with Ansible):
-- host ranges and host:port, a kolla-ansible style INI inventory,
-- group_vars/host_vars files and directories, an inventory directory and
-- several sources, ansible_group_priority, null overrides, node.groups, a
-- big YAML inventory loading in linear time.
local T = require "testlib"
local inventory = require "upgrun.inventory"

local dir = os.tmpname()
os.remove(dir)

local function write(rel, text)
  local p = dir .. "/" .. rel
  assert(os.execute("mkdir -p '" .. p:match("^(.*)/[^/]*$") .. "'"))
  local f = assert(io.open(p, "w"))
  f:write(text)
  f:close()
  return p
end

local function names(list)
  local t = {}
  for i, n in ipairs(list) do t[i] = n.name end
  return table.concat(t, ",")
end

T.case("host ranges, letters, steps and host:port", function()
  local inv = assert(inventory.parse("all:\n  hosts:\n    web[01:03]:\n    db-[a:c]:2222:\n    n[1:7:3]:\n"
    .. "    '[::1]:2200':\n    x[1:2]y[a:b]:\n", "r.yml"))
  T.eq(names(inv:hosts()), "web01,web02,web03,db-a,db-b,db-c,n1,n4,n7,::1,x1ya,x1yb,x2ya,x2yb")
  T.eq(inv:host("db-b").port, 2222); T.eq(inv:host("::1").port, 2200); T.eq(inv:host("web02").port, 22)
end)

T.case("a kolla-ansible style INI inventory", function()
  local inv = assert(inventory.parse([[
localhost ansible_connection=local

[control]
ctl[1:2] ansible_user=ops api_interface="eth 1"

[compute]
cmp1:2201 nova_count=4 enabled=True ratio=1.5 none=None
; a comment line
cmp2 # a comment after a host

[openstack:children]
control
compute

[compute:vars]
nova_release=newton
]], "multinode"))
  T.eq(names(inv:group("openstack")), "ctl1,ctl2,cmp1,cmp2")
  T.eq(names(inv:group("ungrouped")), "localhost")
  local c = inv:host("cmp1")
  T.eq(c.port, 2201); T.eq(c.vars.nova_count, 4); T.eq(c.vars.enabled, true); T.eq(c.vars.ratio, 1.5)
  T.eq(c.vars.none, nil); T.eq(c.vars.nova_release, "newton")
  T.eq(inv:host("ctl2").vars.api_interface, "eth 1"); T.eq(inv:host("ctl2").user, "ops")
  T.eq(table.concat(c.groups, ","), "all,openstack,compute")
end)

T.case("group_vars/ and host_vars/ beside the inventory; priority, then name; null overrides", function()
  local p = write("a/hosts.yml", [[
all:
  vars: {x: all, keep: 1}
  children:
    zeta:
      vars: {x: zeta, n: 1}
      hosts: {h1: , h2: }
    alpha:
      vars: {x: alpha, n: ~}
      hosts: {h1: }
    pri:
      vars: {x: pri, ansible_group_priority: 5}
      hosts: {h2: {hv: host}}
]])
  write("a/group_vars/all.yml", "fromall: 1\nkeep: 2\n")
  write("a/group_vars/zeta/10.yml", "gz: 1\nx: gv-zeta\n")
  write("a/group_vars/zeta/20.yaml", "gz: 2\n")
  write("a/host_vars/h2", "hv: file\n")
  local inv = assert(inventory.load(p))
  local h1, h2 = inv:host("h1"), inv:host("h2")
  -- alpha < zeta by name at the same depth and priority: zeta wins; its group_vars win over it
  T.eq(h1.vars.x, "gv-zeta"); T.eq(h1.vars.gz, 2); T.eq(h1.vars.keep, 2); T.eq(h1.vars.fromall, 1)
  T.eq(h1.vars.n, 1) -- zeta (n: 1) comes after alpha (n: ~)
  -- pri has priority 5: after zeta (priority 1) although 'pri' < 'zeta'
  T.eq(h2.vars.x, "gv-zeta"); T.eq(h2.vars.hv, "file"); T.eq(h2.vars.ansible_group_priority, nil)
  T.eq(table.concat(h1.groups, ","), "all,alpha,zeta")
  T.eq(table.concat(h2.groups, ","), "all,zeta,pri")
  local q = assert(inventory.parse("all:\n  vars: {x: 1}\n  children:\n    g:\n      vars: {x: ~}\n"
    .. "      hosts: {h: }\n", "n.yml"))
  T.eq(q:host("h").vars.x, nil) -- a child's null overrides the parent's value
end)

T.case("an inventory directory and several sources", function()
  write("d/01-base.yml", "web:\n  hosts: {w1: , w2: }\n")
  write("d/02-more", "[db]\nd1\n[web]\nw3\n")
  write("d/README.md", "not an inventory\n")
  write("d/old.ini", "[ignored]\nnope\n")
  write("d/group_vars/web.yml", "tier: front\n")
  local inv = assert(inventory.load(dir .. "/d"))
  T.eq(names(inv:group("web")), "w1,w2,w3"); T.eq(inv:host("w3").vars.tier, "front")
  T.ok(not inv:has_host("nope"))
  local extra = write("e/extra.ini", "[db]\nd2\n")
  inv = assert(inventory.load({ dir .. "/d", extra }))
  T.eq(names(inv:group("db")), "d1,d2")
  inv = assert(inventory.load("h1,h2"))
  T.eq(names(inv:hosts()), "h1,h2")
end)

T.case("10,000 hosts load in linear time", function()
  local lines = { "all:", "  children:", "    compute:", "      hosts:" }
  for i = 1, 10000 do
    lines[#lines + 1] = string.format("        n%05d: {ansible_host: 10.0.%d.%d}", i, i // 256, i % 256)
  end
  local text = table.concat(lines, "\n") .. "\n"
  local c0 = os.clock()
  local inv = assert(inventory.parse(text, "big.yml"))
  local cpu = os.clock() - c0
  T.eq(#inv:group("compute"), 10000)
  -- the quadratic loader took minutes here; bench/ measures the real speed
  T.ok(cpu < 10 * T.slack, "10,000 hosts took " .. cpu .. " s of CPU")
end)

os.execute("rm -rf '" .. dir .. "'")
return T.done()
