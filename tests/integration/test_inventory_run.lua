-- test_inventory_run — inventories through the scenario runner's command
-- line (upgrun started as a child process): several -i sources (an INI file
-- and a YAML directory) are one inventory; a missing or broken -i stops the
-- run at once with exit 2 naming the file and line, before any stage runs
-- (the inventory is loaded before any probe starts); --playbook-dir adds
-- the group_vars/ and host_vars/ beside a playbook.
local T = require "testlib"
local proc = require "upgrun.proc"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p '" .. TMP .. "/inv'"))

local function write(rel, text)
  local f = assert(io.open(TMP .. "/" .. rel, "w"))
  f:write(text)
  f:close()
  return TMP .. "/" .. rel
end

local function upgrun(args)
  local argv = { BIN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = assert(proc.run(argv, { timeout = 60, cwd = TMP, env_add = { STAGE_MARK = TMP .. "/stage-ran" } }))
  return r.status, r.stdout or "", r.stderr or ""
end

-- A scenario whose one step prints the hosts of each group it is asked about.
local scenario = write("show.lua", [[
local scenario = require "upgrun.scenario"
local s = scenario.new { name = "show", description = "prints the hosts of two groups" }
s:stage("only", function(ctx)
  ctx:step("show groups", function()
    for _, g in ipairs({ "web", "db" }) do
      local names = {}
      for _, n in ipairs(ctx.inventory:group(g)) do names[#names + 1] = n.name .. ":" .. n.port end
      print("GROUP " .. g .. " " .. table.concat(names, ","))
    end
    local f = io.open(os.getenv("STAGE_MARK"), "w"); f:write("yes"); f:close()
  end)
end)
return s
]])

T.case("several -i sources (INI file and YAML directory) make one inventory", function()
  local ini = write("hosts.ini", "[web]\nw[1:2]:2201\n[db]\nd1\n")
  write("inv/extra.yml", "db:\n  hosts:\n    d2:\n      ansible_port: 2202\n")
  local status, out, err = upgrun({ scenario, "-i", ini, "-i", TMP .. "/inv", "-o", TMP .. "/out1" })
  T.eq(status, 0, err .. out)
  T.ok(out:find("GROUP web w1:2201,w2:2201", 1, true), out)
  T.ok(out:find("GROUP db d1:22,d2:2202", 1, true), out)
end)

T.case("a broken -i stops the run before any stage, naming the file and line", function()
  os.remove(TMP .. "/stage-ran")
  local bad = write("bad.yml", "all:\n  children:\n    web:\n      hosts:\n        w1:\n          ansible_port: x\n")
  local status, out, err = upgrun({ scenario, "-i", bad, "-o", TMP .. "/out2" })
  T.eq(status, 2, out .. err)
  T.ok(err:find(bad .. ":6: host 'w1' in group 'web': ansible_port must be", 1, true), err)
  T.eq(io.open(TMP .. "/stage-ran"), nil, "no stage ran")
  status, out, err = upgrun({ scenario, "-i", TMP .. "/missing.ini", "-o", TMP .. "/out3" })
  T.eq(status, 2, out .. err)
  T.ok(err:find("missing.ini", 1, true), err)
end)

T.case("--playbook-dir: group_vars/ and host_vars/ beside a playbook override the inventory's", function()
  local inv = write("pbinv.yml", "all:\n  vars:\n    where: inventory\n  children:\n    web:\n      hosts:\n"
    .. "        w1:\n        w2:\n    db:\n      hosts:\n        d1:\n")
  assert(os.execute("mkdir -p '" .. TMP .. "/site/group_vars' '" .. TMP .. "/site/host_vars'"))
  write("site/group_vars/web.yml", "ansible_port: 2300\n")
  write("site/host_vars/w2.yml", "ansible_port: 2302\n")
  local args = { scenario, "-i", inv, "--playbook-dir", TMP .. "/site", "-o", TMP .. "/out4" }
  local status, out, err = upgrun(args)
  T.eq(status, 0, err .. out)
  T.ok(out:find("GROUP web w1:2300,w2:2302", 1, true), out)
  status, out, err = upgrun({ scenario, "-i", inv, "-o", TMP .. "/out5" })
  T.eq(status, 0, err .. out)
  T.ok(out:find("GROUP web w1:22,w2:22", 1, true), "without it, not read: " .. out)
  status, out, err = upgrun({ scenario, "-i", inv, "--playbook-dir", TMP .. "/nodir", "-o", TMP .. "/out6" })
  T.eq(status, 2, out)
  T.ok(err:find("playbook_dir " .. TMP .. "/nodir is not a directory", 1, true), err)
end)

os.execute("rm -rf '" .. TMP .. "'")
return T.done()
