-- upgrun.openstack.neutron — the little of the Network API (Neutron v2.0) the
-- scenarios need: security groups, created and deleted by the rescued-server
-- check the way Tempest does it (its own group per test, not "default").
--
--   local net = conn.network
--   net:create_security_group{name =, description =} -> {id=, name=, ...} | nil, err
--   net:delete_security_group(id) -> true | nil, err (404: status 404)
--   net:available() -> true | nil, err (the catalog has a network endpoint)
local M = {}
local Network = {}
Network.__index = Network

function M.new(session)
  return setmetatable({ session = session }, Network)
end

-- The v2.0 base URL (the catalog holds the unversioned root).
function Network:base()
  local base, err = self.session:endpoint("network")
  if not base then return nil, err end
  base = base:gsub("/+$", "")
  if base:match("/v2%.0$") then return base end
  return base .. "/v2.0"
end

function Network:available()
  local base, err = self:base()
  return base ~= nil or nil, err
end

function Network:request(method, path, spec)
  local base, err = self:base()
  if not base then return nil, err end
  spec = spec or {}
  spec.service, spec.method, spec.url = "network", method, base .. path
  return self.session:request(spec)
end

function Network:create_security_group(spec)
  local doc, err = self:request("POST", "/security-groups",
    { json = { security_group = { name = spec.name, description = spec.description or "" } } })
  if not doc then return nil, err end
  return doc.security_group
end

function Network:delete_security_group(id)
  local ok, err = self:request("DELETE", "/security-groups/" .. tostring(id))
  if not ok then return nil, err end
  return true
end

return M
