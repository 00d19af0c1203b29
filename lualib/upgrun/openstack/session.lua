-- upgrun.openstack.session — the authenticated HTTP core shared by the
-- service clients of one connection: holds the Keystone token (reused until
-- it nears expiry; concurrent tasks share one re-authentication), resolves
-- endpoints from the catalog, sends JSON requests with upgrun.http,
-- re-authenticates once on a 401 and retries the request once (never a
-- loop), decodes errors, scrubs secrets, and reports every request to the
-- connection's call log hooks (method, path, status, duration, request id —
-- never a token).
local cjson = require "cjson"
local http = require "upgrun.http"
local time = require "upgrun.time"
local E = require "upgrun.openstack.errors"
local keystone = require "upgrun.openstack.keystone"

local M = {}
local Session = {}
Session.__index = Session

-- Re-authenticate when the token expires within this many seconds (or
-- within half its lifetime, for very short-lived tokens).
M.EXPIRY_MARGIN = 30

-- cfg: a resolved config (upgrun.openstack.config). opts: timeout (per
-- request, default 30 s), auth_timeout, on_request (a function or a list of
-- functions called with each call record), user_agent, clock (a function
-- returning the wall time in UTC epoch seconds, default upgrun.time.now: what
-- token expiry is judged by; tests age a token with it).
function M.new(cfg, opts)
  opts = opts or {}
  local s = setmetatable({
    cfg = cfg,
    timeout = opts.timeout or 30,
    auth_timeout = opts.auth_timeout or opts.timeout or 30,
    hooks = {},
    endpoint_overrides = {},
    user_agent = opts.user_agent or "upgrun-openstack/0.1",
    clock = opts.clock or time.now,
    auth_count = 0,
    secrets = {},
  }, Session)
  for _, k in ipairs({ "password", "application_credential_secret", "token" }) do
    if cfg.auth[k] then s.secrets[#s.secrets + 1] = cfg.auth[k] end
  end
  for k, v in pairs(cfg) do
    local svc = type(k) == "string" and k:match("^(.-)_endpoint_override$")
    if svc and type(v) == "string" then s.endpoint_overrides[svc:gsub("_", "-")] = v end
  end
  if type(opts.on_request) == "function" then s.hooks[1] = opts.on_request
  elseif type(opts.on_request) == "table" then
    for _, f in ipairs(opts.on_request) do s.hooks[#s.hooks + 1] = f end
  end
  return s
end

function Session:scrub(s) return E.scrub(s, self.secrets) end

function Session:add_hook(fn) self.hooks[#self.hooks + 1] = fn end

local function path_of(url)
  local p = url:match("^%a[%w+.-]*://[^/]*(/[^?#]*)") or url:match("^[^?#]*")
  return p ~= "" and p or "/"
end

function Session:record(rec)
  for _, fn in ipairs(self.hooks) do
    local ok, e = pcall(fn, rec)
    if not ok then io.stderr:write("upgrun.openstack: on_request hook failed: ", self:scrub(tostring(e)), "\n") end
  end
end

local function http_opts(self, method, url, headers, body, timeout)
  local px = self.cfg.proxy
  return {
    method = method, url = url, headers = headers, body = body,
    timeout = timeout or self.timeout,
    verify = self.cfg.verify ~= false, cacert = self.cfg.cacert,
    cert = self.cfg.cert, key = self.cfg.key, -- mutual TLS (clouds.yaml cert/key, OS_CERT/OS_KEY)
    proxy = px and (url:match("^https:") and px.https or px.http) or nil, -- https_proxy/http_proxy
    noproxy = px and px.no_proxy or nil,
  }
end

-- One HTTP exchange with timing and a call record. Returns resp or nil, err.
function Session:send(method, url, headers, body, timeout, service)
  local t0, wall = time.mono(), time.now()
  local resp, err = http.request(http_opts(self, method, url, headers, body, timeout))
  local dt = time.mono() - t0
  local rec = {
    method = method, path = path_of(url), service = service, start = wall,
    duration = dt, status = resp and resp.status or nil,
    request_id = resp and E.request_id(resp.headers) or nil,
    error = err and err.kind or nil,
  }
  self:record(rec)
  if not resp then
    err = type(err) == "table" and err or E.new("error", tostring(err))
    local e = E.new(err.kind or "error", string.format("%s %s: %s", method, rec.path,
      tostring(err.message)), { method = method, url = url })
    return nil, E.scrub_err(e, self.secrets)
  end
  return resp
end

-- ---- authentication -------------------------------------------------------

function Session:_do_auth()
  local url, why = keystone.v3_url(self.cfg.auth.auth_url)
  if not url then return nil, E.new("config", why) end
  url = url .. "/auth/tokens"
  local body = cjson.encode(keystone.auth_body(self.cfg))
  local resp, err = self:send("POST", url, {
    ["Content-Type"] = "application/json", ["Accept"] = "application/json",
    ["User-Agent"] = self.user_agent,
  }, body, self.auth_timeout, "identity")
  body = nil -- luacheck: ignore (drop the password-bearing body early)
  if not resp then return nil, err end
  if resp.status == 401 or resp.status == 403 then
    local e = E.from_response(resp, "POST", url, { secrets = self.secrets, auth_kind = true })
    e.kind = "auth"
    e.message = "authentication refused by Keystone for cloud " .. tostring(self.cfg.name)
      .. ": " .. tostring(e.server_message) .. " (" .. resp.status .. ")"
    return nil, E.scrub_err(e, self.secrets)
  end
  if resp.status >= 400 then
    return nil, E.from_response(resp, "POST", url, { secrets = self.secrets, path = path_of(url) })
  end
  local st, perr = keystone.parse_token(resp, time.mono())
  if not st then return nil, E.protocol(resp, "POST", url, perr, { secrets = self.secrets, path = path_of(url) }) end
  st.lifetime = st.expires_at and (st.expires_at - self.clock()) or nil
  -- the token is a secret too from now on
  self.secrets[#self.secrets + 1] = st.token
  self.auth_count = self.auth_count + 1
  return st
end

local function expiring(self, st)
  if not st.expires_at then return false end
  local margin = math.min(M.EXPIRY_MARGIN, (st.lifetime or 0) / 2)
  return st.expires_at - self.clock() < margin
end

-- The auth state, authenticating when there is none, it is about to expire,
-- or `force`. Concurrent callers share one authentication (single flight).
function Session:authenticate(force, stale)
  if not force and self.state and not expiring(self, self.state) then return self.state end
  if stale and self.state and self.state ~= stale then return self.state end -- renewed meanwhile
  -- one caller authenticates, the others wait (upgrun.single_flight)
  self.auth_flight = self.auth_flight or require("upgrun.single_flight").new("openstack-auth")
  local ok, st, err = self.auth_flight:run(function()
    local st, err = self:_do_auth()
    if st then self.state = st end
    return st, err
  end, self.auth_timeout + 5)
  if not ok then
    return nil, E.scrub_err(E.new(st and st.kind == "timeout" and "timeout" or "auth",
      "authentication failed: " .. tostring(st and st.message)), self.secrets)
  end
  if not st then return nil, err end
  return st
end

function Session:auth_state() return self:authenticate(false) end

-- Forgets the token (the next request authenticates).
function Session:invalidate() self.state = nil end

-- ---- endpoints --------------------------------------------------------------

-- The base URL of a service type (from <type>_endpoint_override in the
-- config, the identity auth_url, or the catalog). opts: interface, region.
function Session:endpoint(service_type, opts)
  opts = opts or {}
  local o = self.endpoint_overrides[service_type]
  if o then return (o:gsub("/+$", "")) end
  if service_type == "identity" and not opts.from_catalog then
    local u, why = keystone.v3_url(self.cfg.auth.auth_url)
    if not u then return nil, E.new("config", why) end
    return u
  end
  local st, err = self:auth_state()
  if not st then return nil, err end
  return keystone.select_endpoint(st.catalog, service_type, {
    interface = opts.interface or self.cfg.interface,
    region = opts.region or self.cfg.region_name,
  })
end

-- ---- requests ---------------------------------------------------------------

-- spec: service (a catalog type) and path, or url; method; json (a table to
-- send), body (raw), content_type; headers; timeout; microversion header
-- table (merged into headers); raw = true (do not decode the body); auth =
-- false (no token); ok_status = {[404]=true, ...} (statuses returned as
-- results rather than errors). Returns doc (decoded JSON, or "" for an empty
-- body, or the raw body with raw=true), resp — or nil, err.
function Session:request(spec)
  local method = spec.method or "GET"
  local url = spec.url
  if not url then
    local base, err = self:endpoint(spec.service)
    if not base then return nil, err end
    url = base .. (spec.path or "")
  end
  local headers = {
    ["Accept"] = spec.accept or "application/json",
    ["User-Agent"] = self.user_agent,
  }
  for k, v in pairs(spec.headers or {}) do headers[k] = v end
  local body = spec.body
  if spec.json ~= nil then
    body = cjson.encode(spec.json)
    headers["Content-Type"] = "application/json"
  elseif body and spec.content_type then
    headers["Content-Type"] = spec.content_type
  end
  local path = path_of(url)
  local tries = 0
  while true do
    tries = tries + 1
    local st
    if spec.auth ~= false then
      local err
      st, err = self:auth_state()
      if not st then return nil, err end
      headers["X-Auth-Token"] = st.token
    end
    local resp, err = self:send(method, url, headers, body, spec.timeout, spec.service)
    if not resp then return nil, err end
    if resp.status == 401 and spec.auth ~= false then
      if tries == 1 and not spec.no_reauth then
        -- the token was refused (revoked, expired early): re-authenticate once
        local _, aerr = self:authenticate(true, st)
        if aerr then return nil, aerr end
        goto continue
      end
      local e = E.from_response(resp, method, url, { secrets = self.secrets, path = path })
      e.kind = "auth"
      e.message = e.message .. (tries > 1 and " (still refused after re-authenticating)" or "")
      return nil, e
    end
    if resp.status >= 400 and not (spec.ok_status and spec.ok_status[resp.status]) then
      return nil, E.from_response(resp, method, url, { secrets = self.secrets, path = path })
    end
    if spec.raw then return resp.body or "", resp end
    local text = resp.body or ""
    if text == "" or resp.status == 204 then return "", resp end
    local ok, doc = pcall(cjson.decode, text)
    if not ok then
      if resp.status >= 400 then return "", resp end
      return nil, E.protocol(resp, method, url, "a body that is not JSON (" .. #text .. " bytes)",
        { secrets = self.secrets, path = path })
    end
    do return doc, resp end
    ::continue::
  end
end

return M
