-- test_openstack_unit — lualib/upgrun/openstack without the lab: config
-- resolution (clouds.yaml / secure.yaml / OS_* / errors naming file, line and
-- field), Keystone auth bodies and catalog selection, microversion
-- negotiation, and the clients against os_fixture_server.py, a real local
-- HTTP server replaying responses recorded from the lab (errors with request
-- ids, paging, re-authentication once, secret scrubbing, the call log).
local T = require "testlib"
local cjson = require "cjson"
local http = require "upgrun.http"
local proc = require "upgrun.proc"
local task = require "upgrun.task"
local time = require "upgrun.time"
local openstack = require "upgrun.openstack"
local config = require "upgrun.openstack.config"
local keystone = require "upgrun.openstack.keystone"
local nova = require "upgrun.openstack.nova"
local E = require "upgrun.openstack.errors"

local PASSWORD = "fixture-pw"

-- ---- helpers -----------------------------------------------------------------

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p " .. TMP .. "/cwd " .. TMP .. "/home/.config/openstack " .. TMP .. "/other"))

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- T.ok for `value, err` results: the failure message is the error.
local function must(v, err)
  if not v then T.fail("expected a result, got " .. tostring(err), 2) end
  return v
end

local function no_secret(s, what)
  s = tostring(s)
  T.ok(not s:find(PASSWORD, 1, true), (what or "text") .. " contains the password: " .. s)
  T.ok(not s:find("fixture%-token%-"), (what or "text") .. " contains a token: " .. s)
  T.ok(not s:find("fixture-app-secret", 1, true), (what or "text") .. " contains the app secret")
end

local function opts_for(extra)
  local o = { cwd = TMP .. "/cwd", home = TMP .. "/home", env = {},
    dirs = { TMP .. "/cwd", TMP .. "/home/.config/openstack" } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- ---- config ------------------------------------------------------------------

write(TMP .. "/home/.config/openstack/clouds.yaml", [[
clouds:
  home-cloud:
    auth:
      auth_url: http://127.0.0.1:1/v3
      username: homeuser
      password: homepw
      project_name: p
]])

T.case("config: clouds.yaml from the home dir, the only cloud is the default", function()
  local c = must(config.resolve(opts_for()))
  T.eq(c.name, "home-cloud")
  T.eq(c.auth.username, "homeuser")
  T.eq(c.interface, "public"); T.eq(c.verify, true); T.eq(c.auth_type, "password")
  T.eq(c.clouds_file, TMP .. "/home/.config/openstack/clouds.yaml")
end)

write(TMP .. "/cwd/clouds.yaml", [[
clouds:
  lab:
    auth:
      auth_url: http://127.0.0.1:5000
      username: admin
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: internalURL
  other:
    auth_type: v3applicationcredential
    auth:
      auth_url: http://127.0.0.1:5000/v3
      application_credential_id: abc
    insecure: true
]])
write(TMP .. "/home/.config/openstack/secure.yaml", [[
clouds:
  lab:
    auth:
      password: from-secure
  other:
    auth:
      application_credential_secret: app-s3cret
]])

T.case("config: the current directory wins, secure.yaml is merged in", function()
  local c = must(config.resolve(opts_for({ cloud = "lab" })))
  T.eq(c.auth.password, "from-secure")
  T.eq(c.auth.username, "admin")
  T.eq(c.interface, "internal")
  T.eq(c.region_name, "RegionOne")
  T.eq(c.clouds_file, TMP .. "/cwd/clouds.yaml")
  T.eq(c.secure_file, TMP .. "/home/.config/openstack/secure.yaml")
  local o = must(config.resolve(opts_for({ cloud = "other" })))
  T.eq(o.auth_type, "application_credential"); T.eq(o.verify, false)
  T.eq(o.auth.application_credential_secret, "app-s3cret")
end)

T.case("config: several clouds and no choice, OS_CLOUD, unknown cloud lists the known ones", function()
  local err = T.err("config", config.resolve(opts_for()))
  T.ok(err.message:find("lab, other", 1, true), err.message)
  local c = must(config.resolve(opts_for({ env = { OS_CLOUD = "other" } })))
  T.eq(c.name, "other")
  err = T.err("config", config.resolve(opts_for({ cloud = "nope" })))
  T.ok(err.message:find('"nope"', 1, true) and err.message:find("known clouds: lab, other", 1, true), err.message)
end)

T.case("config: OS_CLIENT_CONFIG_FILE comes first; explicit overrides beat the file", function()
  local f = write(TMP .. "/other/my.yaml", "clouds:\n  mine:\n    auth:\n      auth_url: http://x/v3\n"
    .. "      username: u\n      password: pw\n    region_name: R1\n")
  -- (secure.yaml's clouds count too, as in openstacksdk: name the cloud)
  local c = must(config.resolve(opts_for({ env = { OS_CLIENT_CONFIG_FILE = f, OS_REGION_NAME = "R9" },
    region_name = "R2", verify = false, cloud = "mine" })))
  T.eq(c.name, "mine"); T.eq(c.region_name, "R2"); T.eq(c.verify, false)
  c = must(config.resolve(opts_for({ env = { OS_CLIENT_CONFIG_FILE = f }, cloud = "mine" })))
  T.eq(c.region_name, "R1")
end)

T.case("config: OS_* variables make the envvars cloud", function()
  local env = {
    OS_AUTH_URL = "http://127.0.0.1:5000/v3", OS_USERNAME = "u", OS_PASSWORD = "p",
    OS_PROJECT_NAME = "proj", OS_USER_DOMAIN_NAME = "D1", OS_PROJECT_DOMAIN_NAME = "D2",
    OS_REGION_NAME = "RegionX", OS_INTERFACE = "admin", OS_CACERT = "/tmp/ca.pem",
  }
  local c = must(config.resolve(opts_for({ env = env })))
  T.eq(c.name, "envvars"); T.eq(c.auth.project_name, "proj"); T.eq(c.region_name, "RegionX")
  T.eq(c.interface, "admin"); T.eq(c.cacert, "/tmp/ca.pem"); T.eq(c.auth.user_domain_name, "D1")
  local ac = must(config.resolve(opts_for({ env = { OS_AUTH_URL = "http://k/v3",
    OS_APPLICATION_CREDENTIAL_ID = "id1", OS_APPLICATION_CREDENTIAL_SECRET = "sec" } })))
  T.eq(ac.auth_type, "application_credential")
  -- OS_CLOUD still picks a named cloud over the envvars one
  c = must(config.resolve(opts_for({ env = { OS_CLOUD = "lab", OS_AUTH_URL = "http://k/v3" } })))
  T.eq(c.name, "lab")
  local err = T.err("config", config.resolve(opts_for({ env = { OS_AUTH_URL = "http://k/v3", OS_USERNAME = "u" } })))
  T.ok(err.message:find("password", 1, true), err.message)
end)

T.case("config: a YAML syntax error names file, line and column", function()
  local f = write(TMP .. "/other/bad.yaml", "clouds:\n  lab:\n    auth: [\n      x: y\n  oops\n")
  local err = T.err("config", config.resolve(opts_for({ files = { f } })))
  T.ok(err.message:find(f, 1, true), err.message)
  T.ok(type(err.line) == "number", "line: " .. tostring(err.line))
end)

T.case("config: a bad field names file, line and field", function()
  local f = write(TMP .. "/other/field.yaml", table.concat({
    "clouds:", "  ok:", "    auth: {auth_url: http://a/v3, username: u, password: p}",
    "  lab:", "    auth:", "      auth_url: http://a/v3", "      username: u", "      password: p",
    "    verify: 3", "    region_name: R", "" }, "\n"))
  local err = T.err("config", config.resolve(opts_for({ files = { f }, cloud = "lab" })))
  T.eq(err.line, 9); T.eq(err.field, "clouds.lab.verify")
  T.ok(err.message:find(f .. ":9: clouds.lab.verify", 1, true), err.message)
  local f2 = write(TMP .. "/other/iface.yaml", "clouds:\n  lab:\n    auth:\n      auth_url: http://a/v3\n"
    .. "      username: u\n      password: p\n    interface: pubic\n")
  err = T.err("config", config.resolve(opts_for({ files = { f2 }, cloud = "lab" })))
  T.eq(err.line, 7); T.ok(err.message:find("pubic", 1, true))
  local f3 = write(TMP .. "/other/noauth.yaml", "clouds:\n  lab:\n    auth:\n      username: u\n")
  err = T.err("config", config.resolve(opts_for({ files = { f3 }, cloud = "lab" })))
  T.eq(err.field, "clouds.lab.auth.auth_url")
end)

T.case("config: no clouds.yaml and no OS_* is a clear error", function()
  local err = T.err("config", config.resolve({ env = {}, dirs = { TMP .. "/other/none" } }))
  T.ok(err.message:find("no clouds.yaml found", 1, true), err.message)
end)

-- ---- keystone / catalog / microversions ---------------------------------------

T.case("keystone: auth bodies for password, domain scope and application credentials", function()
  local b = keystone.auth_body({ auth_type = "password", auth = { username = "u", password = "p",
    user_domain_name = "UD", project_name = "pr", project_domain_id = "pd" } })
  T.eq(b.auth.identity.methods[1], "password")
  T.eq(b.auth.identity.password.user.domain.name, "UD")
  T.eq(b.auth.scope.project.name, "pr"); T.eq(b.auth.scope.project.domain.id, "pd")
  b = keystone.auth_body({ auth_type = "password", auth = { user_id = "uid", password = "p", domain_name = "dom" } })
  T.eq(b.auth.identity.password.user.id, "uid"); T.eq(b.auth.scope.domain.name, "dom")
  b = keystone.auth_body({ auth_type = "application_credential",
    auth = { application_credential_id = "a", application_credential_secret = "s" } })
  T.eq(b.auth.identity.application_credential.id, "a"); T.eq(b.auth.scope, nil)
  T.eq(keystone.v3_url("http://k:5000/"), "http://k:5000/v3")
  T.eq(keystone.v3_url("http://k:5000/v3/"), "http://k:5000/v3")
end)

T.case("keystone: expires_at parses as UTC whatever the local zone", function()
  T.eq(keystone.parse_time("1970-01-02T00:00:00.000000Z"), 86400)
  T.eq(keystone.parse_time("2024-02-29T12:00:00Z"), 1709208000)
  T.eq(keystone.parse_time("2024-02-29T13:00:00+01:00"), 1709208000)
end)

T.case("catalog: endpoint by type, interface and region; ambiguity and absence are errors", function()
  local f = assert(io.open(T.src("tests/lua/os_fixtures/token.json")))
  local cat = cjson.decode(f:read("a")).token.catalog
  f:close()
  table.insert(cat[1].endpoints, { interface = "public", region_id = "RegionTwo", url = "http://r2/x/" })
  local ctype = cat[1].type
  must(keystone.select_endpoint(cat, ctype, { region = "RegionOne" }):match("^http://127"))
  T.eq(keystone.select_endpoint(cat, ctype, { region = "RegionTwo" }), "http://r2/x")
  T.err("catalog", keystone.select_endpoint(cat, ctype, {}))
  T.eq(keystone.select_endpoint(cat, "compute", { interface = "internalURL" }), "http://127.0.0.1:18774/v2.1")
  local err = T.err("catalog", keystone.select_endpoint(cat, "volumev3", {}))
  T.ok(err.message:find("compute", 1, true), err.message)
  T.err("catalog", keystone.select_endpoint(cat, "compute", { region = "Nowhere" }))
end)

T.case("microversions: min(wanted, server max), legacy and too-old servers", function()
  T.eq(nova.negotiate("2.1", "2.93", "2.60"), "2.60")
  T.eq(nova.negotiate("2.1", "2.38", "2.93"), "2.38")
  T.eq(nova.negotiate("2.1", "2.93"), nova.DEFAULT_MAX_MICROVERSION)
  T.eq(nova.negotiate("", ""), nil)
  T.err("version", nova.negotiate("2.1", "2.25", "2.93", "2.53"))
  T.ok(nova.compare("2.10", "2.9") > 0)
end)

T.case("errors: OpenStack bodies decode, text bodies do not crash, secrets are scrubbed", function()
  local function resp(status, body, rid)
    return { status = status, body = body, headers = { ["x-openstack-request-id"] = rid } }
  end
  local e = E.from_response(resp(404, '{"itemNotFound": {"code": 404, "message": "Instance x could not be found."}}',
    "req-1"), "GET", "http://h/v2.1/servers/x", { path = "/v2.1/servers/x" })
  T.eq(e.kind, "http"); T.eq(e.status, 404); T.eq(e.request_id, "req-1"); T.eq(e.fault, "itemNotFound")
  T.ok(tostring(e):find("http: GET /v2.1/servers/x: 404 Instance x could not be found.", 1, true), tostring(e))
  e = E.from_response(resp(401, '{"error":{"code":401,"message":"The request you have made requires authentication.",'
    .. '"title":"Unauthorized"}}'), "POST", "u", { auth_kind = true })
  T.eq(e.kind, "auth")
  e = E.from_response(resp(502, '{"servers": [{"id": "ab'), "GET", "u")
  T.eq(e.kind, "http"); T.eq(e.body_format, "text")
  e = E.from_response(resp(400, '{"NeutronError": {"type": "BadRequest", "message": "bad port", "detail": ""}}'),
    "PUT", "u")
  T.eq(e.fault, "BadRequest"); T.eq(e.server_message, "bad port")
  T.eq(E.scrub("password=hunter22 and X-Auth-Token: abcdef", { "hunter22" }), "password=*** and X-Auth-Token: ***")
  T.eq(E.scrub('{"password": "x1y2"}'), '{"password": "***"}')
end)

-- ---- against the fixture server ----------------------------------------------

local server = assert(proc.spawn { argv = { "python3", T.src("tests/lua/os_fixture_server.py"), "300" },
  stderr = "inherit" })
local first = assert(server:read_line(10))
local PORT = assert(first:match("^PORT (%d+)$"), first)
local BASE = "http://127.0.0.1:" .. PORT

local function control(t)
  local r = assert(http.request { method = "POST", url = BASE .. "/_control", body = cjson.encode(t), timeout = 5 })
  T.eq(r.status, 200)
end
local function requests(clear)
  local r = assert(http.request { method = clear and "DELETE" or "GET", url = BASE .. "/_requests", timeout = 5 })
  return cjson.decode(r.body)
end

local CLOUDS = write(TMP .. "/other/fixture.yaml", string.format([[
clouds:
  fixture:
    auth:
      auth_url: %s/identity/v3
      username: admin
      password: %s
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: %s/identity
      application_credential_id: 0123
      application_credential_secret: fixture-app-secret
    region_name: RegionOne
  wrongpw:
    auth:
      auth_url: %s/identity/v3
      username: admin
      password: %s-wrong
      project_name: admin
    region_name: RegionOne
  tworegions:
    auth:
      auth_url: %s/identity/v3
      username: admin
      password: %s
      project_name: admin
]], BASE, PASSWORD, BASE, BASE, PASSWORD, BASE, PASSWORD))

local calls = {}
local conn
local function connect(cloud, extra)
  local o = { files = { CLOUDS }, secure_files = {}, env = {}, cloud = cloud,
    on_request = function(rec) calls[#calls + 1] = rec end, timeout = 10 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return openstack.connect(o)
end

T.case("connect: password auth, project scope, catalog endpoints", function()
  local err
  conn, err = connect("fixture")
  T.ok(conn, tostring(err))
  T.eq(conn.compute.session:endpoint("compute"), BASE .. "/compute/v2.1")
  T.eq(conn.identity:endpoint("image"), BASE .. "/image")
  T.eq(conn.identity:project_id(), "009c743477064bffa3c04d0e43210afd")
  local reqs = requests().requests
  local auth = reqs[#reqs]
  T.eq(auth.path, "/identity/v3/auth/tokens")
  T.eq(auth.body.auth.scope.project.domain.name, "Default")
  -- no region: compute exists in two regions
  local c2 = must(connect("tworegions"))
  local err2 = T.err("catalog", c2.compute:services())
  T.ok(err2.message:find("RegionOne, RegionTwo", 1, true), err2.message)
end)

T.case("connect: application credential auth", function()
  local c = must(connect("appcred"))
  local reqs = requests().requests
  T.eq(reqs[#reqs].body.auth.identity.methods[1], "application_credential")
  must(c.compute:services())
end)

T.case("connect: a wrong password is an auth error with no secret in it", function()
  local c, err = connect("wrongpw")
  T.eq(c, nil)
  T.err("auth", c, err)
  T.eq(err.status, 401)
  T.ok(err.request_id and err.request_id:match("^req%-fixture"), tostring(err.request_id))
  no_secret(tostring(err), "error")
  for _, v in pairs(err) do no_secret(v, "error field") end
end)

T.case("nova: microversion negotiated once and sent on every request; services", function()
  requests(true)
  local svcs = must(conn.compute:services())
  T.ok(#svcs >= 4)
  local s1 = svcs[1]
  T.ok(s1.binary and s1.host and s1.status and s1.state and s1.updated_at)
  T.eq(s1.forced_down, false)
  T.eq(conn.compute:microversion(), "2.93")
  local reqs = requests().requests
  T.eq(reqs[#reqs].headers["openstack-api-version"], "compute 2.93")
  local cmp = must(conn.compute:find_service("cmp1"))
  T.eq(cmp.binary, "nova-compute")
  local upd = must(conn.compute:disable_service(cmp, "upgrade"))
  T.eq(upd.status, "disabled")
  reqs = requests().requests
  T.eq(reqs[#reqs].method, "PUT"); T.eq(reqs[#reqs].path, "/compute/v2.1/os-services/" .. cmp.id)
  T.eq(reqs[#reqs].body.disabled_reason, "upgrade")
  must(conn.compute:enable_service("cmp1"))
  T.ok(#must(conn.compute:hypervisors()) == 2)
  T.eq(must(conn.compute:find_flavor("lab.tiny")).id, "lab-tiny")
end)

T.case("nova: an old server gets its max microversion and the legacy forms", function()
  control({ nova_max = "2.40" })
  local c = must(connect("fixture", { microversion = "2.93" }))
  requests(true)
  T.eq(c.compute:microversion(), "2.40")
  local _ = c.compute:disable_service({ host = "cmp1", binary = "nova-compute" })
  local reqs = requests().requests
  T.eq(reqs[#reqs].path, "/compute/v2.1/os-services/disable")
  T.eq(reqs[#reqs].body.host, "cmp1")
  local s = must(c.compute:create_server({ name = "old", image = "d49023c2-27bf-4926-8a35-5fb32b64cd2d",
    flavor = "lab-tiny", networks = "none", host = "cmp2" }))
  reqs = requests().requests
  local body = reqs[#reqs].body.server
  T.eq(body.availability_zone, "nova:cmp2"); T.eq(body.host, nil); T.eq(body.networks, "none")
  T.eq(reqs[#reqs].headers["openstack-api-version"], "compute 2.40")
  must(c.compute:delete_server(s.id, { wait = true, timeout = 5 }))
  control({ nova_max = "2.93" })
end)

T.case("nova: a delete waits past status DELETED for the 404, within a bounded grace", function()
  local function gets_of(id)
    local n = 0
    for _, r in ipairs(requests().requests) do
      if r.method == "GET" and r.path:find(id, 1, true) then n = n + 1 end
    end
    return n
  end
  local function new_server(name)
    return must(conn.compute:create_server({ name = name, image = "d49023c2-27bf-4926-8a35-5fb32b64cd2d",
      flavor = "lab-tiny", networks = "none" }))
  end
  local grace = conn.compute.deleted_grace
  conn.compute.deleted_grace = 0.6
  control({ deleted_gets = 2 })
  local s = new_server("del-window")
  requests(true)
  must(conn.compute:delete_server(s.id, { wait = true, timeout = 5 }))
  T.eq(gets_of(s.id), 3) -- DELETED, DELETED, 404
  local _, err = conn.compute:get_server(s.id)
  T.eq(err.status, 404)
  control({ deleted_gets = -1 })
  s = new_server("del-stays")
  local t0 = time.mono()
  must(conn.compute:delete_server(s.id, { wait = true, timeout = 5 }))
  local waited = time.mono() - t0
  T.ok(waited >= 0.6 and waited < 4, "a record left DELETED ends the wait after the grace: " .. waited)
  control({ deleted_gets = 0, servers_remove = { s.id } })
  conn.compute.deleted_grace = grace
end)

local created = {}
T.case("nova: create (host, hints, networks none, image by name), wait ACTIVE, host of server", function()
  requests(true)
  local s = must(conn.compute:create_server({ name = "u1", image = "lab-image", flavor = "lab.tiny",
    networks = "none", host = "cmp2", hints = { _nova_probe = "1" } }))
  created[#created + 1] = s.id
  T.eq(s.adminPass, nil)
  local reqs = requests().requests
  local post = reqs[#reqs]
  T.eq(post.body.server.host, "cmp2"); T.eq(post.body.server.imageRef, "d49023c2-27bf-4926-8a35-5fb32b64cd2d")
  T.eq(post.body.server.flavorRef, "lab-tiny")
  T.eq(post.body["os:scheduler_hints"]._nova_probe, "1")
  local srv = must(conn.compute:wait_status(s.id, "ACTIVE", 10))
  T.eq(srv.status, "ACTIVE")
  T.eq(conn.compute:server_host(srv), "cmp2")
  T.eq(conn.compute:server_host(s.id), "cmp2")
  must(conn.compute:pause(s.id))
  T.eq(must(conn.compute:wait_status(s.id, "PAUSED", 5)).status, "PAUSED")
  reqs = requests().requests
  T.ok(cjson.encode(reqs[#reqs - 1].body) == '{"pause":null}', cjson.encode(reqs[#reqs - 1].body))
end)

T.case("nova: wait_status fails fast on ERROR with the fault message, and times out", function()
  local s = must(conn.compute:create_server({ name = "doomed", image = "d49023c2-27bf-4926-8a35-5fb32b64cd2d",
    flavor = "lab-tiny", networks = "none" }))
  created[#created + 1] = s.id
  local t0 = os.time()
  local err = T.err("fault", conn.compute:wait_status(s.id, "ACTIVE", 30))
  T.ok(os.time() - t0 < 5)
  T.ok(err.message:find("No valid host", 1, true), err.message)
  err = T.err("timeout", conn.compute:wait_status(created[1], "SHELVED", 0.3))
  T.eq(err.status, "PAUSED")
end)

T.case("nova: list follows servers_links on our own endpoint", function()
  for i = 1, 4 do
    created[#created + 1] = must(conn.compute:create_server({ name = "page" .. i,
      image = "d49023c2-27bf-4926-8a35-5fb32b64cd2d", flavor = "lab-tiny", networks = "none" })).id
  end
  requests(true)
  local all = must(conn.compute:list_servers({ limit = 2 }))
  T.eq(#all, #created)
  local reqs = requests().requests
  T.eq(#reqs, math.ceil(#created / 2))
  T.ok(reqs[2].path:find("marker=", 1, true), reqs[2].path)
  T.eq(#must(conn.compute:list_servers({ limit = 2, max = 3 })), 3)
end)

T.case("nova: 404 and other errors carry status, message and request id", function()
  local err = T.err("http", conn.compute:get_server("00000000-0000-0000-0000-00000000dead"))
  T.eq(err.status, 404); T.eq(err.fault, "itemNotFound")
  T.ok(err.request_id:match("^req%-fixture%-%d+$"), err.request_id)
  T.ok(err.message:find("could not be found", 1, true))
  T.eq(err.method, "GET")
  err = T.err("protocol", conn.compute:request("GET", "/broken/truncated"))
  T.ok(err.request_id)
  err = T.err("http", conn.compute:request("GET", "/broken/html503"))
  T.eq(err.status, 503); T.ok(err.message:find("503 Service Unavailable", 1, true), err.message)
  err = T.err("http", conn.compute:request("GET", "/broken/neutron"))
  T.eq(err.fault, "PortNotFound")
  err = T.err("http", conn.compute:request("GET", "/broken/conflict"))
  T.eq(err.status, 409); T.eq(err.fault, "conflictingRequest")
  err = T.err("http", conn.compute:request("GET", "/broken/forbidden"))
  T.eq(err.status, 403); T.eq(err.fault, "forbidden")
  err = T.err("http", conn.image:get("00000000-0000-0000-0000-000000000000"))
  T.eq(err.status, 404); T.ok(err.request_id)
  T.eq(err.server_message, "No image found with ID 00000000-0000-0000-0000-000000000000")
end)

T.case("keystone: a revoked token is renewed once; concurrent tasks share one re-auth", function()
  local before = requests().auths
  control({ revoke_all = true })
  must(conn.compute:services())
  T.eq(requests().auths, before + 1)
  control({ revoke_all = true })
  local tasks = {}
  for i = 1, 5 do tasks[i] = task.spawn(function() return conn.compute:services() end) end
  for i = 1, 5 do local ok, v = tasks[i]:join(10); T.ok(ok and v) end
  T.eq(requests().auths, before + 2)
end)

T.case("keystone: refused after re-auth is an auth error, not a loop", function()
  control({ revoke_all = true, refuse_auth = true })
  requests(true)
  local err = T.err("auth", conn.compute:services())
  local reqs = requests().requests
  T.ok(#reqs <= 2, "requests: " .. #reqs)
  no_secret(tostring(err))
  control({ refuse_auth = false })
  must(conn.compute:services())
end)

T.case("keystone: a token near expiry is renewed before use; validate and revoke", function()
  -- expires_at has whole seconds (as Keystone's fernet tokens): a 10 s token
  -- lives 9-10 s; 6 s on is within its margin (half its life), and the
  -- renewed one, 3-4 s from expiry on the same clock, is not
  control({ token_ttl = 10 })
  local skew = 0 -- the session's clock runs `skew` seconds ahead: the token ages without waiting
  local c = must(connect("fixture", { clock = function() return time.now() + skew end }))
  local before = requests().auths
  must(c.compute:services())
  T.eq(requests().auths, before, "a fresh token is reused")
  skew = 6
  requests(true)
  must(c.compute:services())
  T.eq(requests().auths, before + 1, "renewed before use")
  for _, r in ipairs(requests().requests) do T.ok(r.path:find("auth/tokens") or r.path:find("os%-services")) end
  control({ token_ttl = 3600 })
  local v = must(conn.identity:validate())
  T.ok(v.expires_at > os.time())
  local err = T.err("http", conn.identity:validate("fixture-token-bogus"))
  T.eq(err.status, 404)
  no_secret(tostring(err))
  local other = must(connect("fixture"))
  must(conn.identity:revoke(must(other.identity:get_token())))
  before = requests().auths
  must(other.compute:services())
  T.eq(requests().auths, before + 1)
end)

T.case("glance: find by name, upload a small image, not found", function()
  local im = must(conn.image:find("lab-image"))
  T.eq(im.id, "d49023c2-27bf-4926-8a35-5fb32b64cd2d")
  T.err("not_found", conn.image:find("no-such-image"))
  local up = must(conn.image:upload({ name = "tiny", data = string.rep("x", 4096) }))
  T.eq(up.status, "active"); T.eq(up.size, 4096)
  local reqs = requests().requests
  T.eq(reqs[#reqs - 1].method, "PUT")
  T.eq(reqs[#reqs - 1].headers["content-type"], "application/octet-stream")
  must(conn.image:delete(up.id))
end)

T.case("call log: method, path, status, duration, request id, never the token", function()
  T.ok(#calls > 10)
  local seen_auth, seen_404 = false, false
  for _, rec in ipairs(calls) do
    T.ok(rec.method and rec.path and rec.duration and rec.duration >= 0)
    if rec.path == "/identity/v3/auth/tokens" then seen_auth = true end
    if rec.status == 404 then seen_404 = true; T.ok(rec.request_id) end
    for _, v in pairs(rec) do no_secret(v, "call record") end
  end
  T.ok(seen_auth and seen_404)
  no_secret(cjson.encode(conn:describe()), "describe()")
end)

T.case("delete and wait until gone", function()
  for _, id in ipairs(created) do must(conn.compute:delete_server(id, { wait = true, timeout = 5 })) end
  T.eq(#must(conn.compute:list_servers()), 0)
end)

server:kill("TERM")
server:wait(5)
os.execute("rm -rf " .. TMP)
return T.done()
