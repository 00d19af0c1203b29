-- test_openstack — lualib/upgrun/openstack against the real lab (Keystone,
-- Nova behind HAProxy, Glance, fake-driver computes cmp1/cmp2): auth from the
-- generated clouds.yaml and from real OS_* variables (a child upgrun), the
-- services list, a server booted on each compute host and taken through
-- every action the fake driver supports (status asserted each time), a wrong
-- password, a revoked token renewed once, 404s with request ids, Glance
-- upload/find, paging, and the client's CPU cost per request. Every server
-- it creates is deleted (and waited for) at the end, pass or fail.
-- Starts with tests/lab/reset (the lab up, ready, on the old release); run with
-- -DUPGRUN_LAB=ON.
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local task = require "upgrun.task"
local time = require "upgrun.time"
local openstack = require "upgrun.openstack"

local LAB = os.getenv("UPGRUN_LAB_DIR") or "/var/lib/upgrun-lab"
local CLOUDS = LAB .. "/clouds.yaml"
local CLOUD = "upgrun-lab"
local PREFIX = "upgrun-ostest-" .. tostring(os.time())

local function must(v, err)
  if not v then T.fail("expected a result, got " .. tostring(err), 2) end
  return v
end

-- Start from the state this test needs, whatever ran before (an upgrade run, a failed or
-- aborted one): the lab up and ready, every node on the old release.
do
  local SRC = os.getenv("UPGRUN_SRC") or "../.."
  local r = assert(proc.run({ SRC .. "/tests/lab/reset" }, { timeout = 900 }))
  if r.status ~= 0 then
    io.write("tests/lab/reset failed: ", r.stdout, r.stderr, "\n")
    os.exit(1)
  end
end

do
  local f = io.open(CLOUDS)
  if not f then
    io.write("lab not up: no ", CLOUDS, " (run tests/lab/install and tests/lab/up)\n")
    os.exit(1)
  end
  f:close()
end

-- The password, read once to assert it never leaks (never printed).
local PASSWORD = must(require("upgrun.yaml").decode_file(CLOUDS)).clouds[CLOUD].auth.password

local function no_secret(v, what, token)
  local s = type(v) == "table" and cjson.encode((function()
    local c = {}
    for k, x in pairs(v) do if type(x) ~= "userdata" and type(x) ~= "function" then c[k] = x end end
    return c
  end)()) or tostring(v)
  if s:find(PASSWORD, 1, true) then T.fail((what or "text") .. " contains the password", 2) end
  if token and s:find(token, 1, true) then T.fail((what or "text") .. " contains the token", 2) end
end

local calls = {}
local function connect(extra)
  local o = { cloud = CLOUD, env = { OS_CLIENT_CONFIG_FILE = CLOUDS }, secure_files = {},
    on_request = function(rec) calls[#calls + 1] = rec end, timeout = 60 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return openstack.connect(o)
end

local conn
local created = {} -- server ids to clean up
local timings = {}

T.case("auth from the generated clouds.yaml (OS_CLIENT_CONFIG_FILE)", function()
  local t0 = time.mono()
  conn = must(connect())
  timings.auth = time.mono() - t0
  T.ok(#must(conn.identity:project_id()) >= 32)
  T.ok(must(conn.identity:endpoint("compute")):match("^http://127%.0%.0%.1:%d+/v2%.1$"))
  T.ok(must(conn.identity:endpoint("image")):match("^http://127%.0%.0%.1:"))
  T.ok(conn.compute:supports("2.74"), "the lab's nova speaks >= 2.74")
end)

T.case("auth from real OS_* variables in a child upgrun", function()
  local cfg = must(openstack.config.resolve({ cloud = CLOUD, env = { OS_CLIENT_CONFIG_FILE = CLOUDS },
    secure_files = {} }))
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local script = dir .. "/child.lua"
  local f = assert(io.open(script, "w"))
  f:write([[
local openstack = require "upgrun.openstack"
local conn, err = openstack.connect{}
if not conn then print("ERR " .. tostring(err)) return 1 end
local svcs, e2 = conn.compute:services()
if not svcs then print("ERR " .. tostring(e2)) return 1 end
print("CLOUD " .. conn.cloud .. " SERVICES " .. #svcs)
return 0
]])
  f:close()
  local a = cfg.auth
  local bin = os.getenv("UPGRUN_BIN") or "../../build/upgrun"
  local r = must(proc.run({ bin, script }, { timeout = 60, env_add = {
    OS_AUTH_URL = a.auth_url, OS_USERNAME = a.username, OS_PASSWORD = a.password,
    OS_PROJECT_NAME = a.project_name, OS_USER_DOMAIN_NAME = a.user_domain_name,
    OS_PROJECT_DOMAIN_NAME = a.project_domain_name, OS_REGION_NAME = cfg.region_name,
    OS_INTERFACE = "public", OS_CLOUD = "", OS_CLIENT_CONFIG_FILE = "",
  } }))
  os.execute("rm -rf " .. dir)
  no_secret(r.stdout, "child stdout"); no_secret(r.stderr, "child stderr")
  T.eq(r.status, 0, "child: " .. tostring(r.stdout) .. tostring(r.stderr))
  local n = tonumber((r.stdout or ""):match("CLOUD envvars SERVICES (%d+)"))
  T.ok(n and n >= 6, r.stdout)
end)

T.case("leftovers of earlier runs are deleted", function()
  for _, s in ipairs(must(conn.compute:list_servers({ name = "^upgrun-ostest-" }))) do
    if s.name:match("^upgrun%-ostest%-") then
      io.write("deleting leftover ", s.name, "\n")
      must(conn.compute:delete_server(s.id, { wait = true, timeout = 120 }))
    end
  end
end)

T.case("services: conductors, schedulers and both computes, up and enabled", function()
  local svcs = must(conn.compute:services())
  local seen = {}
  for _, s in ipairs(svcs) do
    T.ok(s.id and s.binary and s.host and s.status and s.state, cjson.encode(s))
    T.eq(type(s.forced_down), "boolean")
    seen[s.binary .. "@" .. s.host] = s
  end
  for _, k in ipairs({ "nova-compute@cmp1", "nova-compute@cmp2", "nova-conductor@ctl1", "nova-scheduler@ctl1" }) do
    T.ok(seen[k], "missing " .. k)
    T.eq(seen[k].state, "up", k)
  end
  T.ok(seen["nova-compute@cmp1"].updated_at)
  -- disable then enable (by service id at >= 2.53); leave it enabled
  local svc = seen["nova-compute@cmp1"]
  local ok, err = conn.compute:disable_service(svc, "upgrun test")
  T.ok(ok, tostring(err))
  local s2 = must(conn.compute:find_service("cmp1"))
  T.eq(s2.status, "disabled"); T.eq(s2.disabled_reason, "upgrun test")
  must(conn.compute:enable_service(svc))
  T.eq(must(conn.compute:find_service("cmp1")).status, "enabled")
  local hyps = must(conn.compute:hypervisors())
  T.ok(#hyps >= 2)
end)

-- Runs one action and waits for the status; records its duration.
local function step(id, name, fn, want, timeout)
  local t0 = time.mono()
  must(fn())
  local s = must(conn.compute:wait_status(id, want, timeout or 60))
  local wanted = type(want) == "table" and want or { want }
  local hit = false
  for _, w in ipairs(wanted) do hit = hit or s.status == w end
  T.ok(hit, name .. ": status " .. tostring(s.status))
  timings[name] = math.max(timings[name] or 0, time.mono() - t0)
  return s
end

local function exercise(host, image, flavor)
  local c = conn.compute
  local t0 = time.mono()
  local s = must(c:create_server({ name = PREFIX .. "-" .. host, image = image, flavor = flavor,
    networks = "none", host = host }))
  created[#created + 1] = s.id
  local srv = must(c:wait_status(s.id, "ACTIVE", 120))
  timings.boot = math.max(timings.boot or 0, time.mono() - t0)
  T.eq(must(c:server_host(srv)), host)
  local id = s.id
  step(id, "pause", function() return c:pause(id) end, "PAUSED")
  step(id, "unpause", function() return c:unpause(id) end, "ACTIVE")
  step(id, "suspend", function() return c:suspend(id) end, "SUSPENDED")
  step(id, "resume", function() return c:resume(id) end, "ACTIVE")
  step(id, "stop", function() return c:stop(id) end, "SHUTOFF")
  step(id, "start", function() return c:start(id) end, "ACTIVE")
  step(id, "reboot", function() return c:reboot(id) end, "ACTIVE")
  step(id, "reboot_hard", function() return c:reboot(id, true) end, "ACTIVE")
  step(id, "rescue", function() return c:rescue(id) end, "RESCUE")
  step(id, "unrescue", function() return c:unrescue(id) end, "ACTIVE")
  -- shelve: SHELVED, then offloaded (at once when shelved_offload_time = 0)
  local sh = step(id, "shelve", function() return c:shelve(id) end, { "SHELVED", "SHELVED_OFFLOADED" })
  if sh.status == "SHELVED" then
    step(id, "shelve_offload", function() return c:shelve_offload(id) end, "SHELVED_OFFLOADED")
  else
    -- already offloaded: shelve_offload is refused with a 409 carrying a request id
    local r, err = c:shelve_offload(id)
    T.eq(r, nil); T.eq(err.status, 409); T.ok(err.request_id)
  end
  step(id, "unshelve", function() return c:unshelve(id) end, "ACTIVE", 120)
  T.ok(must(c:server_host(id)), "unshelved onto a host")
  return id
end

T.case("a server on each compute host through every fake-driver action", function()
  local image = must(conn.image:find("lab-image"))
  local flavor = must(conn.compute:find_flavor("lab.tiny"))
  local tasks = {}
  for _, host in ipairs({ "cmp1", "cmp2" }) do
    tasks[#tasks + 1] = task.spawn("exercise-" .. host, exercise, host, image.id, flavor.id)
  end
  local failures = {}
  for _, t in ipairs(tasks) do -- join every task before judging, so none runs on
    local ok, res = t:join(900)
    if not ok then failures[#failures + 1] = t.name .. ": " .. tostring(res and res.message or res) end
  end
  T.ok(#failures == 0, table.concat(failures, "; "))
end)

T.case("security groups: add/remove on a server with a port (the lab network)", function()
  -- The lab's servers get ports on upgrun-lab-net (the inventory's nova_network; bound by the
  -- lab's ML2 driver labmech); UPGRUN_LAB_SG_NETWORK names another network. A port already has
  -- the project's "default" group (adding it again is a 400 "Duplicate items"), so a group of
  -- this run is added and removed, and checked on the Neutron port each time.
  local inv = must(require("upgrun.yaml").decode_file(LAB .. "/inventory.yml")).all.vars
  local net = os.getenv("UPGRUN_LAB_SG_NETWORK") or inv.nova_network
  if not net or net == "none" then
    -- the stub-Neutron lab (UPGRUN_LAB_NEUTRON=stub) refuses the call; the add/remove itself is
    -- not tested there, so the case is reported skipped, not passed
    local r, err = conn.compute:add_security_group(created[1], "default")
    T.eq(r, nil); T.eq(err.kind, "http"); T.ok(err.status >= 400 and err.status < 500, tostring(err))
    T.ok(err.request_id)
    T.skip("the lab runs without a network (Neutron stub): security groups apply to ports")
  end
  local function neutron(method, path, json)
    return conn.session:request({ service = "network", method = method, path = path, json = json })
  end
  local s = must(conn.compute:create_server({ name = PREFIX .. "-sg", image = "lab-image", flavor = "lab.tiny",
    networks = { { uuid = net } } }))
  created[#created + 1] = s.id
  must(conn.compute:wait_status(s.id, "ACTIVE", 120))
  local sg = must(neutron("POST", "/v2.0/security-groups", { security_group = { name = PREFIX .. "-sg" } }))
  sg = sg.security_group.id
  local function on_port()
    local port = must(neutron("GET", "/v2.0/ports?device_id=" .. s.id)).ports[1]
    for _, g in ipairs(port.security_groups) do if g == sg then return true end end
    return false
  end
  local ok, err = pcall(function()
    must(conn.compute:add_security_group(s.id, PREFIX .. "-sg"))
    T.eq(on_port(), true, "group on the port after add")
    must(conn.compute:remove_security_group(s.id, PREFIX .. "-sg"))
    T.eq(on_port(), false, "group still on the port after remove")
  end)
  neutron("DELETE", "/v2.0/security-groups/" .. sg)
  if not ok then error(err, 0) end
end)

T.case("list servers with paging (limit=1) finds ours", function()
  local mine = 0
  for _, s in ipairs(must(conn.compute:list_servers({ limit = 1 }))) do
    if s.name:sub(1, #PREFIX) == PREFIX then mine = mine + 1 end
  end
  T.eq(mine, #created)   -- one per compute host, and the security-group one
end)

T.case("a wrong password gives auth with no secret in the message", function()
  local c, err = connect({ auth = { password = PASSWORD .. "-wrong" } })
  T.eq(c, nil)
  T.eq(err.kind, "auth"); T.eq(err.status, 401)
  no_secret(tostring(err), "error"); no_secret(err, "error fields")
  T.ok(not tostring(err):find(PASSWORD .. "-wrong", 1, true))
end)

T.case("a revoked token is renewed once", function()
  local mine = {}
  local a = must(connect({ on_request = function(rec) mine[#mine + 1] = rec; calls[#calls + 1] = rec end }))
  local admin = must(connect())
  local tok = must(a.identity:get_token())
  T.ok(must(admin.identity:validate(tok)))
  must(admin.identity:revoke(tok))
  T.eq(must(a.identity:get_token()), tok, "the connection still holds the revoked token")
  local err = T.err("http", admin.identity:validate(tok))
  T.eq(err.status, 404); T.ok(err.request_id)
  no_secret(err, "validate error", tok)
  must(a.compute:microversion()) -- version discovery needs no token: do it first
  local before = a.session.auth_count
  local n0 = #mine
  must(a.compute:services())
  T.eq(a.session.auth_count, before + 1)
  -- exactly: a 401, one re-auth, one retry
  local seq = {}
  for i = n0 + 1, #mine do seq[#seq + 1] = mine[i].method .. " " .. mine[i].status end
  T.eq(table.concat(seq, ","), "GET 401,POST 201,GET 200")
  for _, rec in ipairs(calls) do no_secret(rec, "call record", tok) end
end)

T.case("404s carry the request id (nova, glance)", function()
  local err = T.err("http", conn.compute:get_server("00000000-0000-0000-0000-000000000000"))
  T.eq(err.status, 404); T.eq(err.fault, "itemNotFound")
  T.ok(err.request_id and err.request_id:match("^req%-"), tostring(err.request_id))
  err = T.err("http", conn.image:get("00000000-0000-0000-0000-000000000000"))
  T.eq(err.status, 404); T.ok(err.request_id and err.request_id:match("^req%-"))
end)

T.case("glance: upload a small image, find it by name, delete it", function()
  local name = PREFIX .. "-img"
  local t0 = time.mono()
  local im = must(conn.image:upload({ name = name, data = string.rep("\0", 65536) }))
  timings.image_upload = time.mono() - t0
  T.eq(im.status, "active"); T.eq(im.size, 65536)
  T.eq(must(conn.image:find(name)).id, im.id)
  must(conn.image:delete(im.id))
  T.err("not_found", conn.image:find(name))
end)

T.case("flavors: find or create", function()
  local name = PREFIX .. "-flv"
  local f = must(conn.compute:ensure_flavor({ name = name, ram = 64, vcpus = 1, disk = 0 }))
  T.eq(must(conn.compute:ensure_flavor({ name = name })).id, f.id)
  must(conn.compute:delete_flavor(f.id))
end)

T.case("client cost: CPU per request (token validation, version doc, server list)", function()
  local function measure(n, fn)
    local c0, w0 = os.clock(), time.mono()
    for _ = 1, n do must(fn()) end
    return (os.clock() - c0) / n * 1000, (time.mono() - w0) / n * 1000
  end
  local url = must(conn.compute:version_url())
  local http = require "upgrun.http"
  local cv, wv = measure(50, function() return conn.identity:validate() end)
  local cd, wd = measure(200, function() return http.request({ url = url, timeout = 10 }) end)
  local cl, wl = measure(30, function() return conn.compute:list_servers({ detail = false }) end)
  io.write(string.format("cpu/request: validate %.3f ms (wall %.1f ms), version doc %.3f ms (wall %.2f ms), "
    .. "server list %.3f ms (wall %.1f ms)\n", cv, wv, cd, wd, cl, wl))
  T.ok(cl < 2, "list costs " .. cl .. " ms of client CPU")
end)

-- cleanup, pass or fail; retried for a while if the API is briefly away
if not conn then return T.done() end
local t0 = time.mono()
for _, id in ipairs(created) do
  local ok, err
  for _ = 1, 30 do
    ok, err = conn.compute:delete_server(id, { wait = true, timeout = 120 })
    if ok or err.status == 404 then ok = true; break end
    if err.kind ~= "connect" and not (err.status and err.status >= 500) then break end
    time.sleep(2)
  end
  if not ok then io.write("cleanup of ", id, " failed: ", tostring(err), "\n") end
end
T.case("cleanup: every server created is gone", function()
  for _, id in ipairs(created) do
    local s, err = conn.compute:get_server(id)
    T.ok(s == nil, "still there: " .. id .. " " .. tostring(s and s.status) .. "/" ..
      tostring(s and s["OS-EXT-STS:task_state"]))
    T.eq(err.status, 404)
  end
end)
timings.cleanup = time.mono() - t0

local names = {}
for k in pairs(timings) do names[#names + 1] = k end
table.sort(names)
local parts = {}
for _, k in ipairs(names) do parts[#parts + 1] = string.format("%s %.2f s", k, timings[k]) end
io.write("timings (max over both hosts): ", table.concat(parts, ", "), "\n")
io.write("requests made: ", #calls, "\n")
return T.done()
