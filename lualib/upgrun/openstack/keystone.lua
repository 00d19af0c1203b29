-- upgrun.openstack.keystone — Keystone v3: the auth request (password or
-- application credential, scoped to a project, a domain or the system), the
-- token's expiry and service catalog, endpoint selection by service type,
-- interface and region, and the identity service object of a connection
-- (token validation as a cheap Keystone probe, token revocation).
local cjson = require "cjson"
local E = require "upgrun.openstack.errors"

local M = {}

-- The v3 base of an auth_url ("http://k:5000" -> "http://k:5000/v3").
function M.v3_url(auth_url)
  local u = auth_url:gsub("/+$", "")
  if u:match("/v3$") or u:match("/v3%.%d+$") then return u end
  if u:match("/v2%.0$") then return nil, "Keystone v2.0 is not supported (auth_url ends in /v2.0)" end
  return u .. "/v3"
end

local function domain_ref(id, name)
  if id then return { id = id } end
  if name then return { name = name } end
  return nil
end

-- The JSON body of POST /v3/auth/tokens for a resolved cloud config.
function M.auth_body(cfg)
  local a = cfg.auth
  local default_domain = domain_ref(a.default_domain_id or a.default_domain, a.default_domain_name)
    or { id = "default" }
  local identity
  if cfg.auth_type == "application_credential" then
    local ac = { secret = a.application_credential_secret }
    if a.application_credential_id then ac.id = a.application_credential_id
    else
      ac.name = a.application_credential_name
      ac.user = a.user_id and { id = a.user_id } or {
        name = a.username,
        domain = domain_ref(a.user_domain_id, a.user_domain_name) or default_domain,
      }
    end
    identity = { methods = { "application_credential" }, application_credential = ac }
    -- an application credential carries its own scope
    return { auth = { identity = identity } }
  elseif cfg.auth_type == "token" then
    identity = { methods = { "token" }, token = { id = a.token } }
  else
    local user
    if a.user_id then user = { id = a.user_id, password = a.password }
    else
      user = { name = a.username, password = a.password,
        domain = domain_ref(a.user_domain_id, a.user_domain_name) or default_domain }
    end
    identity = { methods = { "password" }, password = { user = user } }
  end
  local scope
  if a.project_id then scope = { project = { id = a.project_id } }
  elseif a.project_name then
    scope = { project = { name = a.project_name,
      domain = domain_ref(a.project_domain_id, a.project_domain_name) or default_domain } }
  elseif a.domain_id or a.domain_name then
    scope = { domain = domain_ref(a.domain_id, a.domain_name) }
  elseif a.system_scope then
    scope = { system = { all = true } }
  end
  return { auth = { identity = identity, scope = scope } }
end

-- Seconds since the epoch (UTC) of an ISO 8601 time like
-- "2024-05-06T12:34:56.000000Z" or "...+00:00"; nil if unparsable.
function M.parse_time(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d+)%-(%d+)%-(%d+)[T ](%d+):(%d+):(%d+%.?%d*)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  -- days from civil (Howard Hinnant), independent of the local timezone
  local yy = mo <= 2 and y - 1 or y
  local era = (yy >= 0 and yy or yy - 399) // 400
  local yoe = yy - era * 400
  local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  local t = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
  local sign, oh, om = rest:match("([%+%-])(%d%d):?(%d%d)$")
  if sign then
    local off = tonumber(oh) * 3600 + tonumber(om) * 60
    t = sign == "+" and t - off or t + off
  end
  return t
end

local IFACE = { publicURL = "public", internalURL = "internal", adminURL = "admin" }

-- Picks an endpoint URL from a v3 catalog. opts: interface (default public),
-- region (nil: any, but ambiguity between regions is an error).
-- Returns url or nil, err (kind "catalog").
function M.select_endpoint(catalog, service_type, opts)
  opts = opts or {}
  local iface = IFACE[opts.interface] or opts.interface or "public"
  local region = opts.region
  local types, found_service = {}, false
  local matches = {}
  for _, svc in ipairs(catalog or {}) do
    types[#types + 1] = tostring(svc.type)
    if svc.type == service_type then
      found_service = true
      for _, ep in ipairs(svc.endpoints or {}) do
        local ep_region = ep.region_id or ep.region
        if (IFACE[ep.interface] or ep.interface) == iface
           and (region == nil or ep_region == region or ep.region == region) then
          matches[#matches + 1] = { url = ep.url, region = ep_region }
        end
      end
    end
  end
  if not found_service then
    table.sort(types)
    return nil, E.new("catalog", string.format("no %q service in the catalog (it has: %s)",
      service_type, table.concat(types, ", ")), { service_type = service_type })
  end
  if #matches == 0 then
    return nil, E.new("catalog", string.format("no %s endpoint for %q%s", iface, service_type,
      region and (" in region " .. region) or ""), { service_type = service_type })
  end
  if region == nil then
    local regions, seen = {}, {}
    for _, m in ipairs(matches) do
      local r = tostring(m.region)
      if not seen[r] then seen[r] = true; regions[#regions + 1] = r end
    end
    if #regions > 1 then
      table.sort(regions)
      return nil, E.new("catalog", string.format("%s endpoints for %q in several regions (%s): set region_name",
        iface, service_type, table.concat(regions, ", ")), { service_type = service_type, regions = regions })
    end
  end
  return (matches[1].url:gsub("/+$", ""))
end

-- Parses the response of POST /v3/auth/tokens into the session's auth state.
function M.parse_token(resp, now)
  local token = resp.headers and resp.headers["x-subject-token"]
  if type(token) == "table" then token = token[1] end
  local ok, doc = pcall(cjson.decode, resp.body or "")
  if not token or token == "" then return nil, "no X-Subject-Token header" end
  if not ok or type(doc) ~= "table" or type(doc.token) ~= "table" then
    return nil, "a body that is not a Keystone token document"
  end
  local t = doc.token
  local expires = M.parse_time(t.expires_at)
  return {
    token = token,
    expires_at = expires,
    expires_at_text = t.expires_at,
    issued_mono = now,
    catalog = type(t.catalog) == "table" and t.catalog or {},
    user = t.user, project = t.project, domain = t.domain,
    roles = t.roles, methods = t.methods,
  }
end

-- ---- the identity service of a connection --------------------------------

local Identity = {}
Identity.__index = Identity

function M.service(session)
  return setmetatable({ session = session }, Identity)
end

-- Authenticates now (a fresh token even if one is held). Returns the token
-- info {expires_at=, user=, project=, roles=} or nil, err.
function Identity:authenticate()
  local st, err = self.session:authenticate(true)
  if not st then return nil, err end
  return { expires_at = st.expires_at, expires_at_text = st.expires_at_text, user = st.user,
    project = st.project, domain = st.domain, roles = st.roles }
end

-- The current token (authenticating if needed). A secret: never log it.
function Identity:get_token()
  local st, err = self.session:auth_state()
  if not st then return nil, err end
  return st.token
end

function Identity:catalog()
  local st, err = self.session:auth_state()
  if not st then return nil, err end
  return st.catalog
end

function Identity:project_id()
  local st, err = self.session:auth_state()
  if not st then return nil, err end
  return st.project and st.project.id
end

function Identity:user_id()
  local st, err = self.session:auth_state()
  if not st then return nil, err end
  return st.user and st.user.id
end

-- The endpoint of a service type; opts {interface=, region=} default to the
-- connection's.
function Identity:endpoint(service_type, opts)
  return self.session:endpoint(service_type, opts)
end

-- GET /v3/auth/tokens: validates `subject` (default: our own token) with our
-- token, without the catalog — the cheap Keystone probe. Returns
-- {expires_at=, user=, project=, methods=} or nil, err (a revoked or unknown
-- subject gives kind "http", status 404).
function Identity:validate(subject, opts)
  opts = opts or {}
  local st, err = self.session:auth_state()
  if not st then return nil, err end
  local doc, resp = self.session:request({
    service = "identity", method = "GET", path = "/auth/tokens?nocatalog=1",
    headers = { ["X-Subject-Token"] = subject or st.token },
    secret_headers = true, timeout = opts.timeout, no_reauth = opts.no_reauth,
  })
  if not doc then return nil, resp end
  local t = doc.token or {}
  return { expires_at = M.parse_time(t.expires_at), expires_at_text = t.expires_at,
    user = t.user, project = t.project, methods = t.methods }
end

-- DELETE /v3/auth/tokens: revokes `subject` (a token string). true or nil, err.
function Identity:revoke(subject, opts)
  opts = opts or {}
  local ok, err = self.session:request({
    service = "identity", method = "DELETE", path = "/auth/tokens",
    headers = { ["X-Subject-Token"] = subject }, secret_headers = true,
    timeout = opts.timeout, raw = true,
  })
  if not ok then return nil, err end
  return true
end

return M
