-- upgrun.openstack — OpenStack clients for scenarios: connect to a cloud
-- named in clouds.yaml (or described by OS_* variables) and get a connection
-- with .identity (Keystone v3), .compute (Nova), .image (Glance v2) and
-- .network (Neutron v2.0: security groups only).
--
--   local openstack = require "upgrun.openstack"
--   local conn, err = openstack.connect{cloud = "upgrun-lab"}
--   local servers = conn.compute:list_servers()
--
-- See docs/openstack.md for the whole API and the config resolution order.
local config = require "upgrun.openstack.config"
local session = require "upgrun.openstack.session"
local keystone = require "upgrun.openstack.keystone"
local nova = require "upgrun.openstack.nova"
local glance = require "upgrun.openstack.glance"
local neutron = require "upgrun.openstack.neutron"
local E = require "upgrun.openstack.errors"

local M = {
  config = config, errors = E, keystone = keystone, nova = nova, glance = glance, neutron = neutron,
}

local Connection = {}
Connection.__index = Connection

-- opts: cloud, region_name, interface, verify, cacert, auth (overrides),
-- env / files / secure_files / cwd / home (config lookup, see config.resolve),
-- timeout (per request, s), on_request (fn(record) or a list of them),
-- microversion (wanted max compute microversion), lazy (do not authenticate
-- now). Returns a connection or nil, err (kind config, auth, connect, ...).
function M.connect(opts)
  opts = opts or {}
  local cfg, err = config.resolve(opts)
  if not cfg then return nil, err end
  return M.from_config(cfg, opts)
end

-- Builds a connection from an already resolved config table.
function M.from_config(cfg, opts)
  opts = opts or {}
  local s = session.new(cfg, opts)
  local conn = setmetatable({ cloud = cfg.name, config = cfg, session = s }, Connection)
  conn.identity = keystone.service(s)
  conn.compute = nova.new(s, { microversion = opts.microversion, min_microversion = opts.min_microversion,
    conn = conn })
  conn.image = glance.new(s)
  conn.network = neutron.new(s)
  if not opts.lazy then
    local st, aerr = s:authenticate(false)
    if not st then return nil, aerr end
  end
  return conn
end

-- Adds a call-log hook: fn{method=, path=, service=, status=, duration=,
-- start=, request_id=, error=} after every request.
function Connection:on_request(fn) self.session:add_hook(fn) end

-- A raw request to a service: conn:request("compute", "GET", "/os-services").
-- spec as session:request (json=, headers=, raw=, timeout=...).
function Connection:request(service_type, method, path, spec)
  spec = spec or {}
  spec.service, spec.method, spec.path = service_type, method, path
  if service_type == "compute" then
    return self.compute:request(method, path, spec.json, spec)
  end
  return self.session:request(spec)
end

-- A copy of the settings without secrets (for reports).
function Connection:describe()
  local c = self.config
  local auth = {}
  for k, v in pairs(c.auth) do
    if require("upgrun.redact").is_secret_name(k) then auth[k] = "***" else auth[k] = v end
  end
  return { cloud = c.name, auth_type = c.auth_type, auth = auth, region_name = c.region_name,
    interface = c.interface, verify = c.verify, cacert = c.cacert, clouds_file = c.clouds_file }
end

return M
