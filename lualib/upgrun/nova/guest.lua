-- upgrun.nova.guest — reaching a Nova server's guest over SSH (Tempest's
-- "validation"): its address from the server's `addresses`, an SSH login with
-- the run's key through the validation namespace, and the three checks of
-- Tempest's test_create_server that look into (or at) the guest, with
-- Tempest's semantics.
--
--   local guest = require "upgrun.nova.guest"
--   guest.address(server) -> "10.99.0.12" | nil       (first fixed IPv4, else any)
--   guest.target(server, v) -> {host=, port=22, netns=} | nil, why
--   guest.connect(ctx, server, v, timeout) -> session | nil, err  (retried until timeout)
--   guest.checks(ctx, server, v, expect) -> {{test=, ok=, detail=}, ...}
--   v = {user =, key =, netns =, known_hosts =} (the validation settings)
--   expect = {name =, vcpus =, image_id =, flavor_name =, metadata =, access_ipv4 =, access_ipv6 =}
local cjson = require "cjson"
local time = require "upgrun.time"
local errors = require "upgrun.errors"

local M = {}

-- What test_verify_server_details checks is created with the server (Tempest's
-- resource_setup: metadata, accessIPv4/v6).
M.METADATA = { hello = "world" }
M.ACCESS_IPV4 = "1.1.1.1"
M.ACCESS_IPV6 = "0000:0000:0000:0000:0000:babe:220.12.22.2"
M.ACCESS_IPV6_CANONICAL = "::babe:dc0c:1602" -- RFC 5952, as Tempest compares it (netaddr)

function M.address(server)
  local any
  if type(server.addresses) ~= "table" then return nil end
  for _, list in pairs(server.addresses) do
    for _, a in ipairs(type(list) == "table" and list or {}) do
      if a.version == 4 and (a["OS-EXT-IPS:type"] == nil or a["OS-EXT-IPS:type"] == "fixed") then return a.addr end
      any = any or a.addr
    end
  end
  return any
end

function M.target(server, v)
  local addr = M.address(server)
  if not addr then return nil, "server " .. tostring(server.name) .. " has no address" end
  return { host = addr, port = 22, netns = (v.netns ~= "" and v.netns) or nil }
end

-- Logs in (a guest's sshd may still be starting: retried every second until timeout).
function M.connect(_, server, v, timeout)
  local ssh = require "upgrun.ssh"
  local t, why = M.target(server, v)
  if not t then return nil, errors.new("not_found", why) end
  local deadline = time.mono() + (timeout or 60)
  local last
  repeat
    local s, err = ssh.connect { host = t.host, port = t.port, netns = t.netns, user = v.user, key = v.key,
                                 agent = false, known_hosts = v.known_hosts, host_key_policy = "accept-new",
                                 timeout = math.max(1, math.min(10, deadline - time.mono())) }
    if s then return s end
    last = err
    if err.kind == "hostkey" or err.kind == "auth" then break end
    time.sleep(1)
  until time.mono() >= deadline
  return nil, last
end

local function exec(s, cmd)
  local r, err = s:exec(cmd, { timeout = 30 })
  if not r then return nil, errors.message(err) end
  if r.status ~= 0 then return nil, string.format("`%s` exited %s: %s", cmd, tostring(r.status), r.stderr) end
  return r.stdout
end

-- Tempest's assert_flavor_equal at microversion >= 2.47 (the flavor embedded by
-- name) or below (a link with the id).
local function flavor_ok(srv_flavor, expect)
  if type(srv_flavor) ~= "table" then return false end
  if srv_flavor.original_name then return srv_flavor.original_name == expect.flavor_name end
  return srv_flavor.id == expect.flavor_id
end

local function same_table(a, b)
  if type(a) ~= "table" then return false end
  for k, v in pairs(b) do if a[k] ~= v then return false end end
  for k in pairs(a) do if b[k] == nil then return false end end
  return true
end

-- test_verify_server_details: the attributes the server was created with.
function M.details(server, expect)
  local bad = {}
  local function want(what, ok, got) if not ok then bad[#bad + 1] = what .. " is " .. tostring(got) end end
  want("accessIPv4", server.accessIPv4 == M.ACCESS_IPV4, server.accessIPv4)
  want("accessIPv6", server.accessIPv6 == M.ACCESS_IPV6_CANONICAL, server.accessIPv6)
  want("name", server.name == expect.name, server.name)
  local img = type(server.image) == "table" and server.image.id or server.image
  want("image", img == expect.image_id, img)
  want("flavor", flavor_ok(server.flavor, expect), cjson.encode(server.flavor or cjson.null))
  want("metadata", same_table(server.metadata, M.METADATA), cjson.encode(server.metadata or cjson.null))
  if #bad == 0 then return true, "name, image, flavor, metadata, accessIPv4/v6 as created" end
  return false, table.concat(bad, "; ")
end

-- Tempest compares the server's name, lower-cased, with the guest's hostname up
-- to its first dot (images may add a domain such as ".novalocal").
function M.hostname_matches(name, hostname)
  hostname = (hostname or ""):gsub("%s+$", "")
  return name:lower() == (hostname:match("^[^.]*") or ""), hostname
end

-- The three checks; each {test =, ok =, detail =}.
function M.checks(ctx, server, v, expect)
  local dok, ddetail = M.details(server, expect)
  local out = { { test = "test_verify_server_details", ok = dok, detail = ddetail } }
  local s, err = M.connect(ctx, server, v, v.ssh_timeout or 60)
  if not s then
    local why = "cannot log in to " .. tostring(M.address(server)) .. ": " .. errors.message(err)
    out[#out + 1] = { test = "test_host_name_is_same_as_server_name", ok = false, detail = why }
    out[#out + 1] = { test = "test_verify_created_server_vcpus", ok = false, detail = why }
    return out
  end
  local hn, herr = exec(s, "hostname")
  local ok, got = M.hostname_matches(server.name, hn)
  out[#out + 1] = { test = "test_host_name_is_same_as_server_name", ok = hn ~= nil and ok,
                    detail = hn and string.format("hostname %q, server name %q", got, server.name) or herr }
  -- Tempest counts ^processor in /proc/cpuinfo; a guest that is a namespace on the host
  -- (the lab's) shows the host's there, and its CPUs as nproc: nproc is asked first.
  local n, nerr = exec(s, "nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo")
  local count = n and tonumber(n:match("%d+"))
  local want = math.tointeger(expect.vcpus) or expect.vcpus
  out[#out + 1] = { test = "test_verify_created_server_vcpus", ok = count ~= nil and count == want,
                    detail = n and string.format("%s vCPUs in the guest, flavor %s", tostring(count),
                      tostring(want)) or nerr }
  s:close()
  return out
end

return M
