-- test_cloud_tls_proxy — a cloud's client certificate and proxies reach
-- libcurl: clouds.yaml cert/key (and OS_CERT/OS_KEY) make upgrun present a
-- client certificate to a real HTTPS server that requires one (mutual TLS),
-- and https_proxy/http_proxy/no_proxy from the environment route (or do not
-- route) the cloud's requests through a real HTTP proxy. The peers are
-- tests/integration/tls_proxy_server.py (certificates made with openssl).
local T = require "testlib"
local proc = require "upgrun.proc"
local http = require "upgrun.http"
local cjson = require "cjson"
local config = require "upgrun.openstack.config"
local session = require "upgrun.openstack.session"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir .. "/cwd"))

local p = assert(proc.spawn {
  argv = { "python3", T.src("tests/integration/tls_proxy_server.py"), dir, "--lifetime", "240" },
  stderr = "inherit",
})
local line, lerr = p:read_line(60)
local tls_port, proxy_port = (line or ""):match("^(%d+) (%d+)$")
assert(tls_port, "tls_proxy_server did not start: " .. tostring(line or lerr))
local url = "https://127.0.0.1:" .. tls_port .. "/"

local function clouds_yaml(extra)
  local f = assert(io.open(dir .. "/cwd/clouds.yaml", "w"))
  f:write("clouds:\n  c:\n    auth: {auth_url: 'http://127.0.0.1:9/v3', username: u, password: p,\n"
    .. "           user_domain_name: D, project_name: P, project_domain_name: D}\n"
    .. "    cacert: " .. dir .. "/ca.pem\n" .. (extra or ""))
  f:close()
end

T.case("without a client certificate the server refuses the TLS handshake", function()
  local r, err = http.request { url = url, cacert = dir .. "/ca.pem", timeout = 10 }
  T.eq(r, nil)
  -- the handshake fails (not the connection): the server is up and asks for a certificate
  T.ok(err and (err.kind == "tls" or err.kind == "closed"), tostring(err and err.kind) .. ": "
    .. tostring(err and err.message))
end)

T.case("clouds.yaml cert/key: the session presents the client certificate", function()
  clouds_yaml("    cert: " .. dir .. "/client.pem\n    key: " .. dir .. "/client.key\n")
  local c = assert(config.resolve { cloud = "c", cwd = dir .. "/cwd", env = { HOME = dir } })
  T.eq(c.cert, dir .. "/client.pem"); T.eq(c.key, dir .. "/client.key")
  local s = session.new(c)
  local r = assert(s:send("GET", url, {}, nil, 10))
  T.eq(r.status, 200)
  T.eq(cjson.decode(r.body).client, "upgrun-client")
end)

T.case("OS_CERT / OS_KEY do the same for the OS_* cloud", function()
  local c = assert(config.resolve { cwd = dir, env = { HOME = dir, OS_AUTH_URL = "http://127.0.0.1:9/v3",
    OS_USERNAME = "u", OS_PASSWORD = "p", OS_USER_DOMAIN_NAME = "D", OS_CACERT = dir .. "/ca.pem",
    OS_CERT = dir .. "/client.pem", OS_KEY = dir .. "/client.key" } })
  local r = assert(session.new(c):send("GET", url, {}, nil, 10))
  T.eq(cjson.decode(r.body).client, "upgrun-client")
end)

T.case("https_proxy/http_proxy carry the cloud's requests; no_proxy bypasses them", function()
  clouds_yaml()
  local target = "http://127.0.0.2:9/v3/probe" -- nothing listens there: only the proxy can answer
  local env = { HOME = dir, http_proxy = "http://127.0.0.1:" .. proxy_port }
  local c = assert(config.resolve { cloud = "c", cwd = dir .. "/cwd", env = env })
  T.eq(c.proxy.http, "http://127.0.0.1:" .. proxy_port)
  local r = assert(session.new(c):send("GET", target, {}, nil, 10))
  local body = cjson.decode(r.body)
  T.eq(body.via, "proxy"); T.eq(body.target, target)
  env.no_proxy = "127.0.0.2"
  c = assert(config.resolve { cloud = "c", cwd = dir .. "/cwd", env = env })
  local r2, err = session.new(c):send("GET", target, {}, nil, 5)
  T.eq(r2, nil); T.eq(err.kind, "connect")
  -- without any proxy variable nothing goes through a proxy
  c = assert(config.resolve { cloud = "c", cwd = dir .. "/cwd", env = { HOME = dir } })
  T.eq(c.proxy, nil)
end)

p:kill("TERM")
p:wait(5)
p:close()
os.execute("rm -rf '" .. dir .. "'")
return T.done()
