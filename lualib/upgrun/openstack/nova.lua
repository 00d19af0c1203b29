-- upgrun.openstack.nova — the Compute (Nova) client of a connection:
-- version discovery and microversion negotiation (OpenStack-API-Version),
-- services (list, enable/disable, force down), hypervisors, flavors (find or
-- create), servers (create with networks/AZ/host targeting/scheduler hints,
-- get, paged list, delete and wait until gone, wait for a status failing
-- fast on ERROR), server actions, and the compute host of a server. Every
-- call returns value or nil, err; HTTP errors keep the request id.
local cjson = require "cjson"
local time = require "upgrun.time"
local E = require "upgrun.openstack.errors"

local M = {}
local Compute = {}
Compute.__index = Compute

-- The newest microversion this client asks for by default (Nova Zed's maximum).
M.DEFAULT_MAX_MICROVERSION = "2.93"

-- "2.53" -> {2, 53}; nil for anything else.
function M.parse_version(v)
  if type(v) ~= "string" then return nil end
  local a, b = v:match("^(%d+)%.(%d+)$")
  if not a then return nil end
  return { tonumber(a), tonumber(b) }
end

-- <0, 0, >0 like strcmp, for two "X.Y" strings.
function M.compare(a, b)
  local pa, pb = M.parse_version(a), M.parse_version(b)
  if pa[1] ~= pb[1] then return pa[1] - pb[1] end
  return pa[2] - pb[2]
end

-- The microversion to use: min(wanted, server max), or nil with an error
-- when the server's range does not reach `wanted_min` (default 2.1), or the
-- server has no microversions (legacy v2.0: returns nil, nil).
function M.negotiate(server_min, server_max, wanted_max, wanted_min)
  if not server_max or server_max == "" then return nil, nil end
  wanted_max = wanted_max or M.DEFAULT_MAX_MICROVERSION
  local v = M.compare(wanted_max, server_max) <= 0 and wanted_max or server_max
  if wanted_min and M.compare(v, wanted_min) < 0 then
    return nil, E.new("version", string.format("the server supports compute %s–%s, this needs at least %s",
      tostring(server_min), server_max, wanted_min))
  end
  if server_min and server_min ~= "" and M.compare(v, server_min) < 0 then
    return nil, E.new("version", string.format("the server supports compute %s–%s, asked for at most %s",
      server_min, server_max, wanted_max))
  end
  return v
end

-- session: upgrun.openstack.session; opts: microversion (the wanted max,
-- "X.Y"), min_microversion, conn (the connection, for image lookups).
function M.new(session, opts)
  opts = opts or {}
  return setmetatable({
    session = session, conn = opts.conn,
    wanted = opts.microversion or M.DEFAULT_MAX_MICROVERSION,
    wanted_min = opts.min_microversion,
    poll_interval = opts.poll_interval or 0.25,
    -- Seconds a server answering status DELETED is polled further for its
    -- 404: nova-compute saves vm_state "deleted" a moment before it
    -- destroys the record, and a GET in between still answers the server.
    deleted_grace = 10,
  }, Compute)
end

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function query(params)
  local keys = {}
  for k, v in pairs(params or {}) do if v ~= nil and v ~= false then keys[#keys + 1] = k end end
  if #keys == 0 then return "" end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = params[k]
    if v == true then v = "True" end
    parts[#parts + 1] = urlencode(k) .. "=" .. urlencode(v)
  end
  return "?" .. table.concat(parts, "&")
end
M.query = query

local function is_null(v) return v == nil or v == cjson.null end

-- GET the compute endpoint's version document. Returns
-- {id=, version= (max), min_version=, status=} or nil, err.
function Compute:discover()
  if self.version_doc then return self.version_doc end
  local base, err = self.session:endpoint("compute")
  if not base then return nil, err end
  -- the catalog URL is usually .../v2.1 (maybe .../v2.1/<project_id>)
  local root = base:gsub("(/v2[%.%d]*)/[%x%-]+$", "%1")
  local doc, resp = self.session:request({ service = "compute", url = root, method = "GET" })
  if not doc then return nil, resp end
  local v = type(doc) == "table" and doc.version
  if type(doc) == "table" and not v and type(doc.versions) == "table" then
    for _, cand in ipairs(doc.versions) do
      if cand.id == "v2.1" then v = cand end
    end
  end
  if type(v) ~= "table" then
    return nil, E.protocol(resp, "GET", root, "no compute version document", {})
  end
  self.version_doc = { id = v.id, version = v.version, min_version = v.min_version, status = v.status }
  return self.version_doc
end

-- The negotiated microversion ("X.Y"), discovering it on first use.
function Compute:microversion()
  if self.mv ~= nil then return self.mv or nil end
  local doc, err = self:discover()
  if not doc then return nil, err end
  local v, nerr = M.negotiate(doc.min_version, doc.version, self.wanted, self.wanted_min)
  if nerr then return nil, nerr end
  self.mv = v or false
  return v
end

-- true when the negotiated microversion is at least `v`.
function Compute:supports(v)
  local mv = self:microversion()
  return mv ~= nil and M.compare(mv, v) >= 0
end

-- A compute request: path under the endpoint, with the microversion headers.
function Compute:request(method, path, json, extra)
  local mv, err = self:microversion()
  if err then return nil, err end
  local headers = {}
  if mv then
    headers["OpenStack-API-Version"] = "compute " .. mv
    headers["X-OpenStack-Nova-API-Version"] = mv
  end
  local spec = { service = "compute", method = method, path = path, json = json, headers = headers }
  if extra then for k, v in pairs(extra) do spec[k] = v end end
  return self.session:request(spec)
end

-- Follows `<collection>_links` "next" links, re-using our own endpoint with
-- the link's query (the link's host may be a public name we must not use).
function Compute:paged(path, collection, params, max)
  local out = {}
  local q = query(params)
  while true do
    local doc, err = self:request("GET", path .. q)
    if not doc then return nil, err end
    local items = type(doc) == "table" and doc[collection]
    if type(items) ~= "table" then
      return nil, E.new("protocol", "GET " .. path .. ": no '" .. collection .. "' list in the response")
    end
    for _, it in ipairs(items) do
      out[#out + 1] = it
      if max and #out >= max then return out end
    end
    local nxt
    for _, l in ipairs(doc[collection .. "_links"] or {}) do
      if l.rel == "next" then nxt = l.href end
    end
    if not nxt or #items == 0 then return out end
    local nq = nxt:match("(%?.*)$")
    if not nq or nq == q then return out end
    q = nq
  end
end

-- ---- services --------------------------------------------------------------

-- Lists compute services: {{id=, binary=, host=, zone=, status=, state=,
-- updated_at=, forced_down=, disabled_reason=}, ...}. filters: {binary=, host=}.
function Compute:services(filters)
  local doc, err = self:request("GET", "/os-services" .. query(filters))
  if not doc then return nil, err end
  local out = {}
  for _, s in ipairs(doc.services or {}) do
    out[#out + 1] = {
      id = s.id, binary = s.binary, host = s.host, zone = s.zone,
      status = s.status, state = s.state,
      updated_at = not is_null(s.updated_at) and s.updated_at or nil,
      forced_down = s.forced_down == true,
      disabled_reason = not is_null(s.disabled_reason) and s.disabled_reason or nil,
    }
  end
  return out
end

-- Finds one service by host and binary (default nova-compute).
function Compute:find_service(host, binary)
  local list, err = self:services({ host = host, binary = binary or "nova-compute" })
  if not list then return nil, err end
  if #list == 0 then
    return nil, E.new("not_found", string.format("no %s service on host %s", binary or "nova-compute", host))
  end
  return list[1]
end

local function service_ref(self, svc)
  if type(svc) == "string" then return self:find_service(svc) end
  return svc
end

-- Shared by enable/disable/force_down: ≥ 2.53 by service id, else by host+binary.
function Compute:_update_service(svc, body, legacy_action)
  local s, err = service_ref(self, svc)
  if not s then return nil, err end
  local doc
  if self:supports("2.53") then
    doc, err = self:request("PUT", "/os-services/" .. urlencode(s.id), body)
  else
    local b = { host = s.host, binary = s.binary or "nova-compute" }
    for k, v in pairs(body) do if k ~= "status" then b[k] = v end end
    doc, err = self:request("PUT", "/os-services/" .. legacy_action, b)
  end
  if not doc then return nil, err end
  return doc.service or doc
end

-- Enables a service (a service table from services(), or a compute host name).
function Compute:enable_service(svc)
  return self:_update_service(svc, { status = "enabled" }, "enable")
end

-- Disables a service, with an optional reason.
function Compute:disable_service(svc, reason)
  return self:_update_service(svc, { status = "disabled", disabled_reason = reason },
    reason and "disable-log-reason" or "disable")
end

-- Marks a service forced down (or not) — needs ≥ 2.11.
function Compute:force_down_service(svc, down)
  return self:_update_service(svc, { forced_down = down ~= false }, "force-down")
end

-- ---- hypervisors -----------------------------------------------------------

function Compute:hypervisors(params)
  return self:paged("/os-hypervisors/detail", "hypervisors", params)
end

-- ---- flavors ---------------------------------------------------------------

function Compute:flavors()
  return self:paged("/flavors/detail", "flavors", { is_public = "None" })
end

-- Finds a flavor by id or name: the flavor table or nil, err (kind not_found).
function Compute:find_flavor(name_or_id)
  local list, err = self:flavors()
  if not list then return nil, err end
  for _, f in ipairs(list) do if f.id == name_or_id then return f end end
  for _, f in ipairs(list) do if f.name == name_or_id then return f end end
  return nil, E.new("not_found", "no flavor named " .. tostring(name_or_id))
end

-- Creates a flavor: spec {name=, ram= (MiB), vcpus=, disk= (GiB), id=, is_public=}.
function Compute:create_flavor(spec)
  local body = { flavor = {
    name = spec.name, ram = spec.ram or 64, vcpus = spec.vcpus or 1, disk = spec.disk or 0,
    id = spec.id, ["os-flavor-access:is_public"] = spec.is_public ~= false,
  } }
  local doc, err = self:request("POST", "/flavors", body)
  if not doc then return nil, err end
  return doc.flavor
end

-- Finds the flavor named spec.name, creating it when absent.
function Compute:ensure_flavor(spec)
  local f, err = self:find_flavor(spec.name)
  if f then return f end
  if err.kind ~= "not_found" then return nil, err end
  return self:create_flavor(spec)
end

function Compute:delete_flavor(id)
  local ok, err = self:request("DELETE", "/flavors/" .. urlencode(id))
  if not ok then return nil, err end
  return true
end

-- ---- keypairs --------------------------------------------------------------

-- Imports a public key as a keypair: spec {name=, public_key= (OpenSSH text)}.
-- Returns the keypair {name=, fingerprint=, public_key=} or nil, err.
function Compute:create_keypair(spec)
  local doc, err = self:request("POST", "/os-keypairs",
    { keypair = { name = spec.name, public_key = spec.public_key } })
  if not doc then return nil, err end
  return doc.keypair
end

function Compute:get_keypair(name)
  local doc, err = self:request("GET", "/os-keypairs/" .. urlencode(name))
  if not doc then return nil, err end
  return doc.keypair
end

-- Deletes a keypair; a missing one (404) is nil, err with status 404.
function Compute:delete_keypair(name)
  local ok, err = self:request("DELETE", "/os-keypairs/" .. urlencode(name))
  if not ok then return nil, err end
  return true
end

-- ---- servers ---------------------------------------------------------------

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function id_of(x)
  if type(x) == "table" then return x.id end
  return x
end

-- Creates a server. spec:
--   name, image (id, name, or a table with id), flavor (id, name or table),
--   networks ("none", "auto", a network id, or a list of {uuid=, port=, fixed_ip=}),
--   availability_zone ("zone" or "zone:host"), host (≥ 2.74 as `host`,
--   below as availability_zone "zone:host"), hints (os:scheduler_hints),
--   metadata, key_name, security_groups (names), user_data (base64),
--   min_count/max_count, extra (merged into the server body).
-- Returns the created server {id=, ...} (adminPass removed) or nil, err.
function Compute:create_server(spec)
  local server = { name = spec.name or ("upgrun-" .. tostring(os.time())) }
  local image = id_of(spec.image)
  if image and not tostring(image):match(UUID) and self.conn and self.conn.image then
    local img, err = self.conn.image:find(image)
    if not img then return nil, err end
    image = img.id
  end
  server.imageRef = image
  local flavor = id_of(spec.flavor)
  if flavor and not tostring(flavor):match("^%d+$") and not tostring(flavor):match(UUID) then
    local f, err = self:find_flavor(flavor)
    if not f then return nil, err end
    flavor = f.id
  end
  server.flavorRef = flavor
  local mv, err = self:microversion()
  if err then return nil, err end
  local nets = spec.networks
  if nets == "none" or nets == "auto" then
    if mv and M.compare(mv, "2.37") >= 0 then server.networks = nets end
  elseif type(nets) == "string" and nets ~= "" then -- a network's id
    server.networks = { { uuid = nets } }
  elseif type(nets) == "table" then
    server.networks = {}
    for _, n in ipairs(nets) do
      server.networks[#server.networks + 1] = type(n) == "string" and { uuid = n } or n
    end
  elseif mv and M.compare(mv, "2.37") >= 0 then
    server.networks = "auto"
  end
  local az = spec.availability_zone
  if spec.host then
    if mv and M.compare(mv, "2.74") >= 0 then
      server.host = spec.host
    else
      az = (az and az:match("^[^:]*") or "nova") .. ":" .. spec.host
    end
  end
  server.availability_zone = az
  server.metadata = spec.metadata
  server.key_name = spec.key_name
  server.user_data = spec.user_data
  server.min_count, server.max_count = spec.min_count, spec.max_count
  if spec.security_groups then
    server.security_groups = {}
    for _, g in ipairs(spec.security_groups) do server.security_groups[#server.security_groups + 1] = { name = g } end
  end
  for k, v in pairs(spec.extra or {}) do server[k] = v end
  local body = { server = server }
  if spec.hints and next(spec.hints) then body["os:scheduler_hints"] = spec.hints end
  local doc
  doc, err = self:request("POST", "/servers", body)
  if not doc then return nil, err end
  local s = doc.server or {}
  s.adminPass = nil
  return s
end

-- GET /servers/{id}: the server table or nil, err (404: kind http, status 404).
function Compute:get_server(id)
  local doc, err = self:request("GET", "/servers/" .. urlencode(id_of(id)))
  if not doc then return nil, err end
  return doc.server
end

-- Lists servers (detail by default), following the pages.
-- opts: detail (default true), limit (page size), max (stop after),
-- all_projects, and any filter (name=, status=, host=, ...).
function Compute:list_servers(opts)
  opts = opts or {}
  local params = {}
  for k, v in pairs(opts) do
    if k ~= "detail" and k ~= "max" and k ~= "all_projects" then params[k] = v end
  end
  if opts.all_projects then params.all_tenants = "True" end
  return self:paged(opts.detail == false and "/servers" or "/servers/detail", "servers", params, opts.max)
end

-- Finds one server by exact name: server or nil, err (not_found).
function Compute:find_server(name)
  local list, err = self:list_servers({ name = "^" .. name:gsub("[%.%^%$%*%+%?%(%)%[%]{}|\\]", "\\%0") .. "$" })
  if not list then return nil, err end
  for _, s in ipairs(list) do if s.name == name then return s end end
  return nil, E.new("not_found", "no server named " .. name)
end

-- The compute host a server runs on (OS-EXT-SRV-ATTR:host, admin only).
function Compute:server_host(server)
  local s = server
  if type(s) ~= "table" or s["OS-EXT-SRV-ATTR:host"] == nil then
    local err
    s, err = self:get_server(id_of(server))
    if not s then return nil, err end
  end
  local h = s["OS-EXT-SRV-ATTR:host"]
  if h == nil then
    return nil, E.new("forbidden", "server " .. tostring(s.id) .. " shows no OS-EXT-SRV-ATTR:host (admin only)")
  end
  if h == cjson.null then return nil, E.new("not_found", "server " .. tostring(s.id) .. " is on no host") end
  return h
end

local function status_set(status)
  local set = {}
  if type(status) == "table" then for _, s in ipairs(status) do set[s] = true end else set[status] = true end
  return set
end

-- Polls the server until its status is `status` (a string or a list) and
-- no task is in progress. Fails fast when it goes ERROR (kind "fault", with
-- the server's fault message), on timeout (kind "timeout", with the last
-- status), or when the server is gone (kind "http", 404; DELETED counts as
-- gone unless waited for). Returns the server.
function Compute:wait_status(id, status, timeout, opts)
  opts = opts or {}
  id = id_of(id)
  timeout = timeout or 120
  local want = status_set(status)
  local deadline = time.mono() + timeout
  local interval = opts.interval or self.poll_interval
  local last, last_task
  while true do
    local s, err = self:get_server(id)
    if not s then return nil, err end
    last = s.status
    last_task = not is_null(s["OS-EXT-STS:task_state"]) and s["OS-EXT-STS:task_state"] or nil
    if want[last] and (last_task == nil or opts.ignore_task_state) then return s end
    if last == "ERROR" and not want.ERROR then
      local f = type(s.fault) == "table" and s.fault or {}
      return nil, E.new("fault", string.format("server %s went ERROR while waiting for %s: %s", id,
        type(status) == "table" and table.concat(status, "|") or status,
        tostring(f.message or "no fault message")), { server_id = id, status = "ERROR",
        fault = f.message, fault_code = f.code, fault_details = f.details })
    end
    local now = time.mono()
    if now >= deadline then
      return nil, E.new("timeout", string.format("server %s still %s%s after %.1f s (waiting for %s)", id,
        tostring(last), last_task and ("/" .. last_task) or "", timeout,
        type(status) == "table" and table.concat(status, "|") or status),
        { server_id = id, status = last, task_state = last_task })
    end
    time.sleep(math.min(interval, deadline - now))
    interval = math.min(interval * 1.5, opts.max_interval or 2)
  end
end

-- DELETE /servers/{id}. opts.wait: wait until it is gone (opts.timeout, default 120).
function Compute:delete_server(id, opts)
  opts = opts or {}
  id = id_of(id)
  local ok, err = self:request("DELETE", "/servers/" .. urlencode(id))
  if not ok then return nil, err end
  if opts.wait then return self:wait_gone(id, opts.timeout) end
  return true
end

-- Waits until GET /servers/{id} answers 404. SOFT_DELETED (a deferred
-- delete) is gone at once; DELETED is gone at its 404, or after
-- self.deleted_grace seconds if the record stays.
function Compute:wait_gone(id, timeout)
  id = id_of(id)
  local deadline = time.mono() + (timeout or 120)
  local interval = self.poll_interval
  local deleted_until
  while true do
    local s, err = self:get_server(id)
    if not s then
      if err.status == 404 then return true end
      return nil, err
    end
    if s.status == "SOFT_DELETED" then return true end
    if s.status == "DELETED" then
      deleted_until = deleted_until or math.min(deadline, time.mono() + self.deleted_grace)
      if time.mono() >= deleted_until then return true end
    end
    if time.mono() >= deadline then
      return nil, E.new("timeout", string.format("server %s still %s after %.1f s of waiting to be gone",
        id, tostring(s.status), timeout or 120), { server_id = id, status = s.status })
    end
    time.sleep(interval)
    interval = math.min(interval * 1.5, 2)
  end
end

-- POST /servers/{id}/action with one action body; true (or the response
-- document when it has one, adminPass removed) or nil, err.
function Compute:action(id, name, arg)
  local body = { [name] = arg == nil and cjson.null or arg }
  local doc, err = self:request("POST", "/servers/" .. urlencode(id_of(id)) .. "/action", body)
  if not doc then return nil, err end
  if type(doc) == "table" then doc.adminPass = nil; return doc end
  return true
end

-- The server actions. Each returns true or nil, err; wait for the result
-- with wait_status.
function Compute:pause(id) return self:action(id, "pause") end
function Compute:unpause(id) return self:action(id, "unpause") end
function Compute:suspend(id) return self:action(id, "suspend") end
function Compute:resume(id) return self:action(id, "resume") end
function Compute:shelve(id) return self:action(id, "shelve") end
function Compute:shelve_offload(id) return self:action(id, "shelveOffload") end
function Compute:unshelve(id, opts)
  if opts and next(opts) then return self:action(id, "unshelve", opts) end
  return self:action(id, "unshelve")
end
function Compute:rescue(id, opts) return self:action(id, "rescue", opts or {}) end
function Compute:unrescue(id) return self:action(id, "unrescue") end
function Compute:stop(id) return self:action(id, "os-stop") end
function Compute:start(id) return self:action(id, "os-start") end
function Compute:reboot(id, hard) return self:action(id, "reboot", { type = hard and "HARD" or "SOFT" }) end
function Compute:add_security_group(id, name) return self:action(id, "addSecurityGroup", { name = name }) end
function Compute:remove_security_group(id, name) return self:action(id, "removeSecurityGroup", { name = name }) end
-- Cold migration (optionally to a host, ≥ 2.56), live migration, resize.
function Compute:migrate(id, host)
  if host then return self:action(id, "migrate", { host = host }) end
  return self:action(id, "migrate")
end
function Compute:live_migrate(id, host)
  return self:action(id, "os-migrateLive", { host = host or cjson.null, block_migration = "auto" })
end
function Compute:resize(id, flavor) return self:action(id, "resize", { flavorRef = id_of(flavor) }) end
function Compute:confirm_resize(id) return self:action(id, "confirmResize") end

-- The unauthenticated version document URL (the cheapest liveness probe).
function Compute:version_url()
  local base, err = self.session:endpoint("compute")
  if not base then return nil, err end
  return base:match("^(%a[%w+.-]*://[^/]*)") .. "/"
end

return M
