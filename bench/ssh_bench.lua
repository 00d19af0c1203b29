-- bench/ssh_bench.lua — the upgrun side of bench/ssh_bench.sh.
--   upgrun bench/ssh_bench.lua start DIR N        start N sshd (sshd_harness),
--                                                write DIR/hosts, DIR/inventory.yml,
--                                                then keep them running until DIR/stop exists
--   upgrun bench/ssh_bench.lua fanout INV CMD      fresh fan-out of CMD to every node
--   upgrun bench/ssh_bench.lua warm INV            connected-node costs: one further
--                                                command (best/median of 20) and a
--                                                second fan-out to all nodes (median of 5)
local nodes = require "upgrun.nodes"
local time = require "upgrun.time"
local src = os.getenv("UPGRUN_SRC") or "."
package.path = src .. "/tests/integration/?.lua;" .. package.path

local mode = arg[1]

local function median(t)
  table.sort(t); return t[(#t + 1) // 2]
end

if mode == "start" then
  local H = require "sshd_harness"
  local dir, n = arg[2], tonumber(arg[3])
  local lab = H.new { dir = dir }
  local list = lab:start_many("n", n)
  local hosts = {}
  for _, nd in ipairs(list) do hosts[#hosts + 1] = "127.0.0.1:" .. nd.port end
  H.writefile(dir .. "/hosts", table.concat(hosts, "\n") .. "\n")
  H.writefile(dir .. "/inventory.yml", lab:inventory(list, "nodes"))
  -- ansible: plain INI with the same ports
  local ini = { "[nodes]" }
  for _, nd in ipairs(list) do
    ini[#ini + 1] = string.format("%s ansible_host=127.0.0.1 ansible_port=%d", nd.name, nd.port)
  end
  H.writefile(dir .. "/ansible_hosts", table.concat(ini, "\n") .. "\n")
  H.writefile(dir .. "/ready", "")
  while not io.open(dir .. "/stop") do time.sleep(0.2) end
  for _, nd in ipairs(list) do lab:stop(nd) end
  return 0
elseif mode == "fanout" then
  local inv = assert(nodes.load(arg[2]))
  local res = nodes.fanout(inv:hosts(), arg[3], { timeout = 60 })
  if not res.ok then io.stderr:write("failed: ", table.concat(res.failed, ","), "\n"); return 1 end
  return 0
elseif mode == "warm" then
  local inv = assert(nodes.load(arg[2]))
  local all = inv:hosts()
  assert(nodes.fanout(all, "true").ok)
  local one, fan = {}, {}
  for i = 1, 20 do
    local t0 = time.mono(); assert(all[1]:run("true")); one[i] = time.mono() - t0
  end
  for i = 1, 5 do
    local t0 = time.mono(); assert(nodes.fanout(all, "true").ok); fan[i] = time.mono() - t0
  end
  local best = math.huge
  for _, v in ipairs(one) do best = math.min(best, v) end
  print(string.format("one_cmd_median_ms=%.1f one_cmd_best_ms=%.1f fanout_%d_median_s=%.3f",
    median(one) * 1000, best * 1000, #all, median(fan)))
  return 0
end
io.stderr:write("usage: ssh_bench.lua start DIR N | fanout INV CMD | warm INV\n")
return 2
