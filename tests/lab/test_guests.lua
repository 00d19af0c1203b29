-- test_guests — the lab's guests (tests/lab/labvirt.py, labmech.py, persistfake.py) as the
-- Nova scenario sees them: a server booted with a keypair on the lab network (the inventory's
-- nova_network) gets an address and a port ACTIVE and bound to its host; OpenSSH from the
-- validation namespace (ip netns exec upgrun-lab-guests ssh -i KEY root@IP) reaches a guest
-- whose hostname is Nova's hostname and whose nproc is the flavor's vCPUs; a security group
-- is added and removed (Nova API, checked on the Neutron port); the guest answers while its
-- nova-compute is stopped and after it started again, and Nova can still stop (guest gone)
-- and start it (back); pause freezes it, unpause thaws it; shelve-offload removes it and
-- unshelve brings it back; a cold migration (confirmed) and a live migration move it to the
-- other host (labvirt's owner and the port's binding follow); delete removes its namespace
-- and its port. Starts with tests/lab/reset; everything it creates is deleted at the end,
-- pass or fail.
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local time = require "upgrun.time"
local openstack = require "upgrun.openstack"
local yaml = require "upgrun.yaml"

local LAB = os.getenv("UPGRUN_LAB_DIR") or "/var/lib/upgrun-lab"
local CLOUDS = LAB .. "/clouds.yaml"
local PREFIX = "upgrun-guests-" .. tostring(os.time())
local SVC = LAB .. "/bin/svc"

local function must(v, err)
  if not v then T.fail("expected a result, got " .. tostring(err), 2) end
  return v
end

do
  local SRC = os.getenv("UPGRUN_SRC") or "../.."
  local r = assert(proc.run({ SRC .. "/tests/lab/reset" }, { timeout = 900 }))
  if r.status ~= 0 then
    io.write("tests/lab/reset failed: ", r.stdout, r.stderr, "\n")
    os.exit(1)
  end
end

local vars = must(yaml.decode_file(LAB .. "/inventory.yml")).all.vars
local NET, KEY, NETNS = vars.nova_network, vars.nova_validation_key, vars.nova_validation_netns
local conn = must(openstack.connect({ cloud = "upgrun-lab", env = { OS_CLIENT_CONFIG_FILE = CLOUDS },
  secure_files = {}, timeout = 60 }))
local c = conn.compute
local timings = {}
local created, keypair, sgroup, flavor_made = {}, nil, nil, nil

local function neutron(method, path, json)
  return conn.session:request({ service = "network", method = method, path = path, json = json })
end

local function ports_of(id)
  local doc = must(neutron("GET", "/v2.0/ports?device_id=" .. id))
  return doc.ports
end

local function ssh(ip, cmd)
  return must(proc.run({ "ip", "netns", "exec", NETNS, "ssh", "-i", KEY, "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=3", "root@" .. ip, cmd }, { timeout = 20 }))
end

-- polls ssh until it answers (want true) or fails (want false), up to `timeout` seconds
local function ssh_until(ip, want, timeout)
  local end_ = time.mono() + (timeout or 20)
  local r
  repeat
    r = ssh(ip, "hostname")
    if (r.status == 0) == want then return r end
    time.sleep(0.5)
  until time.mono() > end_
  T.fail(string.format("ssh root@%s: still %s after %s s (%s%s)", ip, want and "failing" or "answering",
    timeout or 20, r.stdout, r.stderr), 2)
end

local function netns_exists(id)
  local f = io.open("/run/netns/ugst-" .. id)
  if f then f:close() end
  return f ~= nil
end

local function step(id, name, fn, want, timeout)
  local t0 = time.mono()
  must(fn())
  local s = must(c:wait_status(id, want, timeout or 90))
  timings[name] = time.mono() - t0
  return s
end

local function lab_ip(s)
  for _, addrs in pairs(s.addresses or {}) do
    for _, a in ipairs(addrs) do
      if tostring(a.addr):match("^10%.99%.0%.%d+$") then return a.addr end
    end
  end
end

local id, ip, host

T.case("the inventory names the lab network and the validation namespace", function()
  T.ok(type(NET) == "string" and #NET == 36, "nova_network: " .. tostring(NET))
  T.eq(vars.nova_validation, true)
  T.eq(NETNS, "upgrun-lab-guests")
  T.eq(vars.nova_validation_user, "root")
  local f = io.open(KEY .. ".pub")
  T.ok(f, "no " .. KEY .. ".pub"); if f then f:close() end
  local doc = must(neutron("GET", "/v2.0/networks/" .. NET)).network
  T.eq(doc.name, "upgrun-lab-net"); T.eq(doc["provider:physical_network"], "lab"); T.eq(doc.shared, true)
end)

T.case("a server with a key on the lab network: address, bound ACTIVE port, guest", function()
  local f = assert(io.open(KEY .. ".pub")); local pub = f:read("a"); f:close()
  keypair = PREFIX .. "-key"
  must(c:request("POST", "/os-keypairs", { keypair = { name = keypair, public_key = pub } }))
  -- 2 vCPUs (this machine's count; nproc inside must say 2, the lab's default flavor has 1)
  local fl = c:find_flavor("upgrun.guests2")
  if not fl then
    fl = must(c:create_flavor({ name = "upgrun.guests2", ram = 64, vcpus = 2, disk = 1 })); flavor_made = fl.id
  end
  local t0 = time.mono()
  local s = must(c:create_server({ name = PREFIX .. "-Srv_A", image = "lab-image", flavor = fl.id,
    networks = { { uuid = NET } }, key_name = keypair }))
  id = s.id; created[#created + 1] = id
  s = must(c:wait_status(id, "ACTIVE", 120))
  timings.boot = time.mono() - t0
  ip = lab_ip(s)
  T.ok(ip, "no 10.99.0.x address in " .. cjson.encode(s.addresses))
  host = must(c:server_host(s))
  local ports = ports_of(id)
  T.eq(#ports, 1)
  T.eq(ports[1].status, "ACTIVE"); T.eq(ports[1]["binding:host_id"], host)
  T.eq(ports[1]["binding:vif_type"], "other"); T.eq(ports[1].fixed_ips[1].ip_address, ip)
  T.ok(netns_exists(id), "no namespace ugst-" .. id)
end)

T.case("ssh into the guest: hostname = Nova's hostname, nproc = the flavor's vCPUs", function()
  local s = must(c:get_server(id))
  local want = s["OS-EXT-SRV-ATTR:hostname"] or (PREFIX .. "-srv-a")
  T.eq(want, (PREFIX .. "-srv-a"), "Nova sanitizes the name")
  local t0 = time.mono()
  local r = ssh(ip, 'hostname; nproc; cat /sys/class/net/eth0/address; echo "$HOME"; ls -A "$HOME" | wc -l')
  timings.ssh = time.mono() - t0
  T.eq(r.status, 0, r.stderr)
  local h, n, mac, home, nfiles = r.stdout:match("^(%S+)\n(%d+)\n(%S+)\n(%S+)\n%s*(%d+)")
  T.eq(h, want); T.eq(tonumber(n), 2)
  T.eq(mac, ports_of(id)[1].mac_address)
  -- root's home is the guest's own and empty: the host's dotfiles (its ~/.bashrc) never run there
  T.eq(home, LAB .. "/guests/" .. id .. "/home"); T.eq(tonumber(nfiles), 0)
  -- the wrong key is refused
  local r2 = must(proc.run({ "ip", "netns", "exec", NETNS, "ssh", "-i", "/dev/null", "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3",
    "-o", "IdentitiesOnly=yes", "root@" .. ip, "true" }, { timeout = 20 }))
  T.ok(r2.status ~= 0, "ssh without the key was let in")
end)

T.case("add and remove a security group (Nova API, seen on the Neutron port)", function()
  local doc = must(neutron("POST", "/v2.0/security-groups", { security_group = { name = PREFIX .. "-sg" } }))
  sgroup = doc.security_group.id
  local function groups()
    local set = {}
    for _, g in ipairs(ports_of(id)[1].security_groups) do set[g] = true end
    return set
  end
  must(c:add_security_group(id, PREFIX .. "-sg"))
  T.ok(groups()[sgroup], "group not on the port after add")
  must(c:remove_security_group(id, PREFIX .. "-sg"))
  T.ok(not groups()[sgroup], "group still on the port after remove")
end)

T.case("the guest outlives its nova-compute; Nova stops and starts it afterwards", function()
  local r = must(proc.run({ SVC, "stop", host, "nova-compute" }, { timeout = 90 }))
  T.eq(r.status, 0, r.stderr)
  local ok = ssh(ip, "hostname")
  must(proc.run({ SVC, "start", host, "nova-compute" }, { timeout = 90 }))
  T.eq(ok.status, 0, "guest unreachable while nova-compute was stopped: " .. ok.stderr)
  local t0 = time.mono()
  repeat time.sleep(1) until must(proc.run({ SVC, "health", host, "nova-compute" }, { timeout = 30 })).status == 0
    or time.mono() - t0 > 120
  timings.compute_restart = time.mono() - t0
  T.eq(ssh(ip, "hostname").status, 0, "guest unreachable after nova-compute started again")
  step(id, "stop", function() return c:stop(id) end, "SHUTOFF")
  T.ok(not netns_exists(id), "namespace left after stop")
  ssh_until(ip, false, 10)
  step(id, "start", function() return c:start(id) end, "ACTIVE")
  ssh_until(ip, true, 20)
end)

T.case("pause makes the guest unreachable, unpause brings it back", function()
  step(id, "pause", function() return c:pause(id) end, "PAUSED")
  ssh_until(ip, false, 10)
  step(id, "unpause", function() return c:unpause(id) end, "ACTIVE")
  ssh_until(ip, true, 20)
end)

T.case("shelve-offload removes the guest, unshelve brings it back", function()
  local s = step(id, "shelve", function() return c:shelve(id) end, { "SHELVED", "SHELVED_OFFLOADED" }, 120)
  if s.status == "SHELVED" then
    step(id, "shelve_offload", function() return c:shelve_offload(id) end, "SHELVED_OFFLOADED", 120)
  end
  local t0 = time.mono()
  repeat time.sleep(0.5) until not netns_exists(id) or time.mono() - t0 > 30
  T.ok(not netns_exists(id), "namespace left after shelve-offload")
  ssh_until(ip, false, 10)
  s = step(id, "unshelve", function() return c:unshelve(id) end, "ACTIVE", 120)
  host = must(c:server_host(s))
  local ports = ports_of(id)
  T.eq(#ports, 1); T.eq(ports[1]["binding:host_id"], host); T.eq(ports[1].status, "ACTIVE")
  T.eq(lab_ip(s), ip, "the port (and address) is kept across shelve")
  local r = ssh_until(ip, true, 20)
  T.eq(r.stdout, PREFIX .. "-srv-a\n")
  io.write("unshelved onto ", host, "\n")
end)

-- labvirt's record of the guest: host, running
local function guest_record()
  local r = must(proc.run({ "/usr/bin/python3", LAB .. "/bin/labvirt.py", "call", "list" }, { timeout = 30 }))
  for _, g in ipairs(cjson.decode(r.stdout).guests) do if g.uuid == id then return g end end
end

-- waits until the server is on `want_host` with no task running
local function settled_on(want_host, status)
  local end_ = time.mono() + 90
  local s
  repeat
    s = must(c:get_server(id))
    if s.status == status and s["OS-EXT-STS:task_state"] == cjson.null and c:server_host(s) == want_host then
      return s
    end
    time.sleep(0.5)
  until time.mono() > end_
  T.fail(string.format("not %s on %s after 90 s: %s on %s, task %s", status, want_host, s.status,
    tostring(c:server_host(s)), tostring(s["OS-EXT-STS:task_state"])), 2)
end

T.case("cold migration + confirm and live migration move the guest's owner, it keeps answering", function()
  local other = host == "cmp1" and "cmp2" or "cmp1"
  local t0 = time.mono()
  must(c:migrate(id, other))
  settled_on(other, "VERIFY_RESIZE")
  must(c:confirm_resize(id))
  settled_on(other, "ACTIVE")
  timings.migrate_confirm = time.mono() - t0
  T.eq(guest_record().host, other); T.eq(guest_record().running, true)
  T.eq(ssh_until(ip, true, 20).stdout, PREFIX .. "-srv-a\n")
  T.eq(ports_of(id)[1]["binding:host_id"], other)
  t0 = time.mono()
  must(c:live_migrate(id, host))
  settled_on(host, "ACTIVE")
  timings.live_migrate = time.mono() - t0
  T.eq(guest_record().host, host)
  T.eq(ssh_until(ip, true, 20).stdout, PREFIX .. "-srv-a\n")
  T.eq(ports_of(id)[1]["binding:host_id"], host)
end)

T.case("delete removes the guest's namespace and its port", function()
  local t0 = time.mono()
  must(c:delete_server(id, { wait = true, timeout = 120 }))
  timings.delete = time.mono() - t0
  T.ok(not netns_exists(id), "namespace left after delete")
  T.eq(#ports_of(id), 0, "port left after delete")
  local r = must(proc.run({ "/usr/bin/python3", LAB .. "/bin/labvirt.py", "call", "list" }, { timeout = 30 }))
  T.ok(not r.stdout:find(id, 1, true), "labvirt still lists the guest: " .. r.stdout)
  created = {}
end)

-- cleanup, pass or fail
for _, sid in ipairs(created) do
  local ok, err = c:delete_server(sid, { wait = true, timeout = 120 })
  if not ok and err.status ~= 404 then io.write("cleanup of ", sid, " failed: ", tostring(err), "\n") end
end
if keypair then c:request("DELETE", "/os-keypairs/" .. keypair) end
if sgroup then neutron("DELETE", "/v2.0/security-groups/" .. sgroup) end
if flavor_made then c:delete_flavor(flavor_made) end

local names = {}
for k in pairs(timings) do names[#names + 1] = k end
table.sort(names)
local parts = {}
for _, k in ipairs(names) do parts[#parts + 1] = string.format("%s %.2f s", k, timings[k]) end
io.write("timings: ", table.concat(parts, ", "), "\n")
return T.done()
