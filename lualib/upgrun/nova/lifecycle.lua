-- upgrun.nova.lifecycle — the Nova test plan's "persistent resources test
-- suite", run as named checks on a server created for the purpose (the
-- tempest tests it names: pause/unpause, suspend/resume, shelve/unshelve,
-- rescue/unrescue, a rescued server's security groups, basic server
-- operations, and the SSH-into-the-VM checks). A check the cloud cannot
-- support is recorded as skipped with the reason, never as passed.
--
--   local lifecycle = require "upgrun.nova.lifecycle"
--   lifecycle.run(ctx, {image =, flavor =, network =, security_group =,
--                       validation = false, timeout = 120, name_prefix =,
--                       key_name =, validation_user =, validation_key =,
--                       validation_netns =, known_hosts =, security_group_fn =})
-- With validation the test server is booted with the run's keypair (key_name)
-- on `network`, with Tempest's metadata and access addresses, and the three
-- SSH checks run for real (upgrun.nova.guest); security_group_fn(ctx) -> name
-- gives the group of the rescued-server check (Tempest creates its own).
local cjson = require "cjson"
local time = require "upgrun.time"
local guest = require "upgrun.nova.guest"

local M = {}

-- Each action: the call, then the status(es) the server must reach.
M.CYCLES = {
  { name = "pause/unpause", test = "test_pause_unpause_server",
    steps = { { "pause", "PAUSED" }, { "unpause", "ACTIVE" } } },
  { name = "suspend/resume", test = "test_suspend_resume_server",
    steps = { { "suspend", "SUSPENDED" }, { "resume", "ACTIVE" } } },
  { name = "shelve/unshelve", test = "test_shelve_unshelve_server",
    steps = { { "shelve", { "SHELVED", "SHELVED_OFFLOADED" }, settle = "SHELVED_OFFLOADED" },
              { "unshelve", "ACTIVE" } } },
  { name = "rescue/unrescue", test = "test_rescue_unrescue_instance",
    steps = { { "rescue", "RESCUE" }, { "unrescue", "ACTIVE" } } },
  { name = "basic operations (stop/start/reboot)", test = "test_server_basic_ops",
    steps = { { "stop", "SHUTOFF" }, { "start", "ACTIVE" }, { "reboot", "ACTIVE" } } },
}

-- How long a shelved server may take to be offloaded (a cloud with shelved_offload_time 0,
-- the default, offloads it at once; one with a longer time keeps it SHELVED on its host).
local SETTLE_S = 15

local function host_of(server)
  local h = server["OS-EXT-SRV-ATTR:host"]
  if h == nil or h == cjson.null then return nil end
  return h
end

-- Waits (up to SETTLE_S) for the status `settle` a server goes on to by itself, and then
-- for its host to be cleared: Nova shows SHELVED_OFFLOADED before the offload clears the
-- server's host, and an unshelve in between is undone by that clearing (seen on the lab: the
-- unshelve ended ACTIVE with no host, the next action failed 500 "Unable to find host").
-- Tempest waits for SHELVED_OFFLOADED too. The host is only seen with an admin's token;
-- without it, or if the cloud keeps shelved servers on their host, this returns what it saw.
local function settle_on(compute, id, s, settle)
  if s.status ~= settle then s = compute:wait_status(id, settle, SETTLE_S) or s end
  local deadline = time.mono() + SETTLE_S
  while s.status == settle and host_of(s) and time.mono() < deadline do
    time.sleep(0.5)
    s = compute:get_server(id) or s
  end
  return s
end

-- Runs one action and waits for the status (and, with `settle`, for the status the
-- server goes on to); returns ok, detail.
local function act(compute, id, action, want, timeout, settle)
  local ok, err = compute[action](compute, id)
  if not ok then return false, action .. ": " .. tostring(err) end
  local s
  s, err = compute:wait_status(id, want, timeout)
  if not s then return false, action .. ": " .. tostring(err) end
  local first = s.status
  if settle then s = settle_on(compute, id, s, settle) end
  return true, action .. " -> " .. first .. (s.status ~= first and (" -> " .. s.status) or "")
end

local function cycle(compute, id, c, timeout)
  local done = {}
  for _, st in ipairs(c.steps) do
    local ok, detail = act(compute, id, st[1], st[2], timeout, st.settle)
    done[#done + 1] = detail
    if not ok then return false, table.concat(done, "; ") end
  end
  return true, table.concat(done, "; ")
end

-- Whether the server has a port (an address on some network): without one,
-- security groups cannot be added to it.
local function has_port(server)
  return type(server.addresses) == "table" and next(server.addresses) ~= nil
end

-- Creates a server, waits until ACTIVE, returns it (or raises).
function M.boot(ctx, opts, name)
  local compute = ctx.cloud.compute
  local server = assert(compute:create_server {
    name = name, image = opts.image, flavor = opts.flavor,
    networks = opts.network, host = opts.host, key_name = opts.key_name,
    metadata = opts.metadata, extra = opts.extra,
  })
  local ok, err = compute:wait_status(server.id, "ACTIVE", opts.timeout or 120)
  if not ok then
    compute:delete_server(server.id)
    error(string.format("server %s did not become ACTIVE: %s", name, tostring(err)), 0)
  end
  return ok
end

-- The image's id (Tempest compares the server's image with its image_ref).
function M.image_id(ctx, image)
  if type(image) == "string" and image:match("^%x+%-%x+%-%x+%-%x+%-%x+$") then return image end
  local img = ctx.cloud.image and ctx.cloud.image:find(image)
  return img and img.id
end

function M.run(ctx, opts)
  local compute = ctx.cloud.compute
  local timeout = opts.timeout or 120
  local name = string.format("%s-%s-%d", opts.name_prefix or "upgrun-lifecycle", ctx.stage, os.time())
  local bopts = opts
  if opts.validation then -- what test_verify_server_details checks, set as Tempest sets it
    bopts = setmetatable({ metadata = guest.METADATA,
                           extra = { accessIPv4 = guest.ACCESS_IPV4, accessIPv6 = guest.ACCESS_IPV6 } },
                         { __index = opts })
  end
  local _, server = ctx:step("boot test server", function() return M.boot(ctx, bopts, name) end)
  local id = server.id
  for _, c in ipairs(M.CYCLES) do
    ctx:step(c.name, { continue_on_error = true }, function()
      ctx:check(c.name .. " (" .. c.test .. ")", cycle(compute, id, c, timeout))
    end)
  end
  ctx:step("rescued server add/remove security group", { continue_on_error = true }, function()
    local check = "rescued server add/remove security group (test_rescued_vm_add_remove_security_group)"
    if not has_port(server) then
      ctx:skip(check, "the server has no network port (network '" .. tostring(opts.network)
        .. "'): security groups apply to ports, so this cloud/network cannot run it")
      return
    end
    local group = opts.security_group
    if opts.security_group_fn then
      local g, gerr = opts.security_group_fn(ctx)
      if not g then ctx:check(check, false, "no security group: " .. tostring(gerr)); return end
      group = g
    end
    local ok, detail = act(compute, id, "rescue", "RESCUE", timeout)
    if ok then
      local added, err = compute:add_security_group(id, group)
      local removed, err2
      if added then removed, err2 = compute:remove_security_group(id, group) end
      ok = added and removed
      detail = ok and ("rescued; added and removed " .. group) or tostring(err or err2)
      local back, detail2 = act(compute, id, "unrescue", "ACTIVE", timeout)
      ok = ok and back
      if not back then detail = detail .. "; " .. detail2 end
    end
    ctx:check(check, ok, detail)
  end)
  if opts.validation then
    ctx:step("ssh into the server", { continue_on_error = true }, function()
      local srv = compute:get_server(id) or server
      local fl = compute:find_flavor(opts.flavor)
      local expect = { name = name, vcpus = fl and fl.vcpus, flavor_name = fl and fl.name, flavor_id = fl and fl.id,
                       image_id = M.image_id(ctx, opts.image) }
      local v = { user = opts.validation_user or "root", key = opts.validation_key, netns = opts.validation_netns,
                  known_hosts = opts.known_hosts, ssh_timeout = opts.ssh_timeout }
      for _, r in ipairs(guest.checks(ctx, srv, v, expect)) do
        ctx:check("ssh into the server: " .. r.test, r.ok, r.detail)
      end
    end)
  else
    local why = "no validation network (validation=false): the servers of this cloud are not reachable over SSH "
      .. "from upgrun"
    for _, t in ipairs({ "test_host_name_is_same_as_server_name", "test_verify_created_server_vcpus",
                         "test_verify_server_details" }) do
      ctx:skip("ssh into the server: " .. t, why)
    end
  end
  ctx:step("delete test server", function()
    assert(compute:delete_server(id, { wait = true, timeout = timeout }))
  end)
end

return M
