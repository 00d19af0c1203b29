-- upgrun.nova.runbook — the Nova rolling upgrade of the Nova test plan (and the
-- manual one it is compared with) as reusable pieces: its parameters, probes and
-- watch, and the body of each stage. scenarios/nova_mitaka_newton.lua is these
-- pieces in three stages; scenarios/cloud_upgrade.lua calls the same pieces after
-- Keystone's and Glance's. Nova-only helpers stay in upgrun.nova.upgrade (service
-- records, nova-manage, nova-status), upgrun.nova.lifecycle (the persistent-resources
-- suite) and upgrun.nova.tempest_suite.
--
--   local nova = require "upgrun.nova.runbook"
--   local s = upgrade.scenario { project = "nova", releases = nova.RELEASES, params = nova.params(), ... }
--   local nv = nova.declare(s, { prefix = "", enabled = fn(ctx), identity_probe = true, only = nil })
--        -- probes (rates as params), the persistent servers' watch, setup, clean-up;
--        -- prefix "nova_" declares the params prefixed; identity_probe = false leaves
--        -- out "keystone token validation" (a cloud run has Keystone's own probes);
--        -- only = "^nova%-": the node's services that are Nova's (the nodes also run
--        -- other projects' services)
--   nv:before(ctx)    1. deployment check, test flavor, persistent servers, the suite
--   nv:upgrade(ctx)   rolling: config, 2. code, 3. DB expansion (hook point
--                     db_migration), 4. controllers, mixed-state checks, 5. computes,
--                     6. online data migrations and upgrade check; manual: stop
--                     everything, code, DB, start everything, 6.
--   nv:after(ctx)     services up, every service on the new release, the persistent
--                     servers survived, the suite
--
-- Everything site-specific (nodes, services, how code is switched, releases) comes
-- from the inventory and --set (docs/nova_scenario.md).
local cjson = require "cjson"
local http = require "upgrun.http"
local time = require "upgrun.time"
local services = require "upgrun.services"
local upgrade = require "upgrun.upgrade"
local nova = require "upgrun.nova.upgrade"
local lifecycle = require "upgrun.nova.lifecycle"
local tempest_suite = require "upgrun.nova.tempest_suite"
local guest = require "upgrun.nova.guest"
local probe_mod = require "upgrun.probe"
local probe_ssh = require "upgrun.probe_ssh"

local M = {}
local Runbook = {}
Runbook.__index = Runbook

-- The default release pair (the test plan's), when neither --set nor the inventory says.
M.RELEASES = { from = "mitaka", to = "newton" }

local STAGES = { "before", "upgrade", "after" }

-- Seconds a guest may take to answer SSH again after a check restarted its server on
-- purpose (its failed samples meanwhile are not downtime).
M.GUEST_BOOT_GRACE = 120

-- The runbook's own parameters (unprefixed names).
function M.params()
  return {
    controller_order = { default = "conductors_first", choices = { "conductors_first", "by_controller" },
                         description = "order of the controllers' restarts (the plan leaves it open)" },
    expected_binaries = { type = "list", default = {},
                          description = "binaries compute service list must show; default: inventory var "
                            .. "nova_expected_binaries, else the Mitaka/Newton set (with nova-consoleauth)" },
    controller_group = { default = "controller", description = "inventory group of the controllers" },
    compute_group = { default = "compute", description = "inventory group of the computes" },
    image = { default = "", description = "image for test servers; default: inventory var nova_image, "
                .. "else cirros" },
    flavor = { default = "upgrun.tiny", description = "flavor for test servers (created if missing)" },
    network = { default = "", description = "auto | none | a network id for test servers; default: inventory "
                  .. "var nova_network, else auto" },
    security_group = { default = "auto", description = "security group for the rescued-server add/remove check; "
                         .. "auto: one created for the run through Neutron (as Tempest does), else default" },
    validation = { default = "auto", choices = { "auto", "true", "false" },
                   description = "servers are reachable over SSH (a validation network): the guest probes "
                     .. "and the SSH checks; auto: inventory var nova_validation, else false" },
    validation_key = { default = "", description = "private key for the guests (its .pub is uploaded as a "
                         .. "keypair); default: inventory var nova_validation_key" },
    validation_user = { default = "", description = "user on the guests; default: inventory var "
                          .. "nova_validation_user, else root" },
    validation_netns = { default = "", description = "network namespace the guests are reached from; "
                           .. "default: inventory var nova_validation_netns, else none" },
    guest_interval = { default = 1, description = "seconds between SSH logins of each guest probe (0: off)" },
    api_downtime_budget = { default = 10, description = "max Nova API downtime (s) in a rolling upgrade" },
    checks_at = { type = "list", default = { "before", "mixed", "after" }, choices = { "before", "mixed", "after" },
                  description = "where the persistent-resources suite runs: before, mixed (controllers "
                    .. "upgraded, computes not yet: rolling only), after" },
    ffu_workaround = { default = "auto", choices = { "auto", "on", "off" },
                       description = "set Nova's [workarounds] "
                         .. "disable_compute_service_check_for_ffu on every node for the upgrade (auto: when "
                         .. "the inventory's upgrun_release_series says it skips a release)" },
    online_migration_batch = { default = 50, description = "rows per online_data_migrations run (--max-count)" },
    watch_interval = { default = 2, description = "seconds between listings of the persistent servers (0: off)" },
    code_switch = { default = "ssh", choices = { "ssh", "ansible" },
                    description = "step 2 runs each node's nova_code_switch over upgrun's SSH, or "
                      .. "code_switch_playbook with ansible-playbook (same inventory)" },
    code_switch_playbook = { default = "playbooks/nova_code_switch.yml",
                             description = "the playbook of code_switch=ansible (relative to this file)" },
    tempest = { default = false, description = "also run the seed plan's Tempest tests at the checks_at points" },
    tempest_tests = { type = "list", default = {}, description = "Tempest test ids instead of the seed plan's" },
    online_migration_passes = { default = 20, description = "max runs of nova-manage db online_data_migrations "
                                  .. "(it is run until it reports nothing left)" },
  }
end

-- Declares the probes, the watch, the setup and the clean-up on s; with
-- opts.prefix also the parameters (prefixed). opts.enabled(ctx): false turns
-- the probes and the watch off and skips the setup (a cloud run without Nova).
function M.declare(s, opts)
  opts = opts or {}
  local pre = opts.prefix or ""
  local self = setmetatable({ prefix = pre, probes = {}, only = opts.only }, Runbook)
  if pre ~= "" then s:declare_params(M.params(), pre) end
  -- the Nova API's downtime budget applies to the rolling upgrade (the manual one takes it down)
  local function api_budget(p)
    return p.strategy == "rolling" and { max_downtime = p[pre .. "api_downtime_budget"] } or nil
  end
  local function probe(spec)
    local ref = spec.rate or spec.interval
    ref.param = pre .. ref.param
    self.probes[#self.probes + 1] = upgrade.probe(s, spec)
  end

  probe {
    name = "nova servers.list", service = "compute", kind = "http", url = "GET compute /servers?limit=50",
    fn = function(ctx) return ctx.cloud.compute:request("GET", "/servers?limit=50") end,
    rate = { param = "list_rate", default = 5, description = "Nova servers.list probes per second" },
    budget = api_budget, timeout = 5, max_in_flight = 4, stages = STAGES, baseline = "before",
  }
  probe {
    name = "nova version document", service = "compute", kind = "http", url = "GET compute /",
    fn = function(ctx)
      return http.request { url = ctx.cloud.compute:version_url(), timeout = 2 }
    end,
    rate = { param = "version_rate", default = 20, description = "Nova version-document probes per second" },
    budget = api_budget, expect = { 200, 300 }, timeout = 2, max_in_flight = 8, stages = STAGES, baseline = "before",
  }
  if opts.identity_probe ~= false then
    probe {
      name = "keystone token validation", service = "identity", kind = "http", url = "GET identity /v3/auth/tokens",
      fn = function(ctx) return ctx.cloud.identity:validate(nil, { timeout = 5 }) end,
      rate = { param = "keystone_rate", default = 2, description = "Keystone token validations per second" },
      timeout = 5, max_in_flight = 4, stages = STAGES, baseline = "before",
    }
  end
  probe {
    name = "nova server boot/delete cycle", service = "compute", kind = "workflow",
    url = "POST compute /servers, wait ACTIVE, DELETE",
    fn = function(ctx)
      local P = self.P
      local c = ctx.cloud.compute
      local fl, ferr = self:ensure_test_flavor(ctx)
      if not fl then return nil, ferr end
      local srv, err = c:create_server { name = "upgrun-probe-" .. os.time(), image = P.image,
                                         flavor = P.flavor, networks = P.network }
      if not srv then return nil, err end
      -- in the ledger until deleted: a cycle cut short by an outage is cleaned up at the end
      local rec = ctx.ledger:record("probe_server", srv.id, { name = srv.name })
      local ok
      ok, err = c:wait_status(srv.id, "ACTIVE", 100)
      local gone, err2 = c:delete_server(srv.id, { wait = true, timeout = 60 })
      if gone then ctx.ledger:mark(rec, "cleaned", "deleted by the probe") end
      if not ok then return nil, err end
      return gone, err2
    end,
    interval = { param = "boot_interval", default = 15, description = "seconds between server boot/delete cycles "
                   .. "(0: off)" },
    timeout = 170, max_in_flight = 2, stages = { "upgrade" },
  }

  -- The persistent servers (ledger kind "server"), listed every `watch_interval` s
  -- through every stage: each change of status, task/vm/power state or host on the
  -- timeline, with the step running; time not ACTIVE on the recorded host is that
  -- server's unavailability; a server that vanishes fails the run at once.
  local watch = s:watch { kind = "server", every = 2, stages = STAGES }

  -- Nova's own settings, once the parameters are known (the layer resolved the releases).
  s:setup(function(ctx)
    if opts.enabled and not opts.enabled(ctx) then
      for _, p in ipairs(self.probes) do p.stages = {} end
      watch.stages = {}
      return
    end
    self.P = upgrade.view(ctx, pre)
    local P = self.P
    if not ctx.plan then
      local _ = ctx.cloud -- authenticate now: bad credentials stop the run before anything starts
    end
    P.image = upgrade.setting(ctx, "nova", "image", "cirros", P)
    P.network = upgrade.setting(ctx, "nova", "network", "auto", P)
    self:validation_setup(ctx, s)
    if P.watch_interval > 0 then watch.every = P.watch_interval else watch.stages = {} end
  end)

  local function delete_server(ctx, rec)
    local ok, err = ctx.cloud.compute:delete_server(rec.id, { wait = true, timeout = 120 })
    if not ok and not (err and err.status == 404) then error(err, 0) end
  end
  s:cleanup("server", delete_server)
  s:cleanup("probe_server", delete_server)
  s:cleanup("security_group", function(ctx, rec)
    local ok, err = ctx.cloud.network:delete_security_group(rec.id)
    if not ok and not (err and err.status == 404) then error(err, 0) end
  end)
  s:cleanup("keypair", function(ctx, rec)
    local ok, err = ctx.cloud.compute:delete_keypair(rec.id)
    if not ok and not (err and err.status == 404) then error(err, 0) end
  end)
  return self
end

-- ---------------------------------------------------------------- guests

local function truthy(v) return v == true or v == "true" or v == "yes" or v == "on" or v == 1 or v == "1" end

-- The validation settings (params, else the inventory vars of docs/nova_scenario.md) and,
-- with validation on, one guest probe per compute host: declared here, before the probes
-- start, with its target resolved per sample (the persistent server booted on that host
-- in the "before" stage), so it runs in the upgrade and after stages.
function Runbook:validation_setup(ctx, s)
  local P = self.P
  local v = P.validation
  if v == "auto" or v == "" or v == nil then v = upgrade.setting(ctx, "nova", "validation", false, {}) end
  P.validation = truthy(v)
  P.validation_key = upgrade.setting(ctx, "nova", "validation_key", "", P)
  P.validation_user = upgrade.setting(ctx, "nova", "validation_user", "root", P)
  P.validation_netns = upgrade.setting(ctx, "nova", "validation_netns", "", P)
  self.guests = self.guests or {}
  if not P.validation then return end
  if P.validation_key == "" then
    error("validation is on but no key: --set " .. self.prefix .. "validation_key=PATH or inventory var "
      .. "nova_validation_key", 0)
  end
  if not ctx.plan then
    local f = io.open(P.validation_key .. ".pub")
    if not f then error("validation_key: cannot read " .. P.validation_key .. ".pub (uploaded as the keypair)", 0) end
    f:close()
  end
  if P.guest_interval <= 0 then return end
  for _, n in ipairs(self:computes(ctx)) do
    local host = nova.nova_host(n)
    local name = "guest ssh " .. host
    local p
    for _, q in ipairs(s.probes) do if q.name == name then p = q end end
    if not p then
      local spec = { target = function() return self:guest_target(host) end, connect_timeout = 1,
                     user = function() return self.P.validation_user end,
                     key = function() return self.P.validation_key end }
      local login = probe_ssh.fn(spec)
      p = s:probe {
        name = name, kind = "ssh", service = "guests",
        url = "ssh " .. P.validation_user .. "@<persistent server on " .. host .. ">:22 true"
          .. (P.validation_netns ~= "" and (" (netns " .. P.validation_netns .. ")") or ""),
        fn = function(c, pr)
          local g = self.guests[host]
          if not g then return probe_mod.NOT_SENT, "no persistent server on " .. host .. " yet" end
          if g.excused then return probe_mod.NOT_SENT, "stopped on purpose by a check" end
          local ok, err = login(c, pr)
          if g.booting then -- started again by a check: its guest may still be booting
            if ok then g.booting = nil
            elseif time.mono() < g.booting then
              return probe_mod.NOT_SENT, "booting again after a check's stop/start (" .. tostring(err) .. ")"
            else g.booting = nil end
          end
          return ok, err
        end,
        interval = P.guest_interval, timeout = 5, max_in_flight = 6,
        stages = { "upgrade", "after" }, steady = "end",
      }
    end
    p.interval, p.stages = P.guest_interval, { "upgrade", "after" }
  end
end

-- The SSH target of the persistent server on `host` (nil, why while there is none).
function Runbook:guest_target(host)
  local g = self.guests[host]
  if not g then return nil, "no persistent server on " .. host end
  return { host = g.address, port = 22, netns = self.P.validation_netns ~= "" and self.P.validation_netns or nil }
end

-- Runs fn(...) with the guest probe of server `id` paused (a check stops and starts it
-- on purpose: not downtime). Once fn returns, the guest may still be booting: its failed
-- samples are not sent either until its first ok login, for at most GUEST_BOOT_GRACE s.
function Runbook:excusing(id, fn, ...)
  local g
  for _, x in pairs(self.guests or {}) do if x.id == id then g = x end end
  if g then g.excused = true end
  local r = table.pack(pcall(fn, ...))
  if g then g.excused, g.booting = nil, time.mono() + M.GUEST_BOOT_GRACE end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- The security group of the rescued-server check: the param's, or with "auto" one
-- created for the run through Neutron (ledger kind "security_group", deleted at
-- clean-up), like Tempest's own per test; "default" when the cloud has no Network API.
function Runbook:security_group(ctx)
  if self.P.security_group ~= "auto" then return self.P.security_group end
  if self.secgroup then return self.secgroup end
  if not ctx.cloud.network:available() then return "default" end
  local g, err = ctx.cloud.network:create_security_group {
    name = "upgrun-sg-" .. os.date("!%Y%m%dT%H%M%S") .. "-" .. tostring(math.random(1000, 9999)),
    description = "upgrun: rescued server add/remove security group check" }
  if not g then return nil, err end
  ctx.ledger:record("security_group", g.id, { name = g.name })
  self.secgroup = g.name
  return g.name
end

-- The run's keypair: the validation key's .pub imported once (ledger kind "keypair",
-- deleted at clean-up). Returns its name.
function Runbook:ensure_keypair(ctx)
  if self.keypair then return self.keypair end
  local f = assert(io.open(self.P.validation_key .. ".pub"))
  local pub = f:read("a"); f:close()
  local name = "upgrun-" .. os.date("!%Y%m%dT%H%M%S") .. "-" .. tostring(math.random(1000, 9999))
  local kp = assert(ctx.cloud.compute:create_keypair { name = name, public_key = pub })
  ctx.ledger:record("keypair", kp.name, { fingerprint = kp.fingerprint })
  self.keypair = kp.name
  return kp.name
end

-- ---------------------------------------------------------------- helpers

local MITAKA_BINARIES = { "nova-conductor", "nova-scheduler", "nova-consoleauth", "nova-compute" }
-- the controller_order choices: phases of services, each phase node by node
local CONTROLLER_ORDERS = {
  conductors_first = { { "nova-conductor" }, { "nova-scheduler", "nova-api" } },
  by_controller = { { "nova-conductor", "nova-scheduler", "nova-api" } },
}
local FFU = { "workarounds", "disable_compute_service_check_for_ffu" }

function Runbook:controllers(ctx) return ctx.inventory:group(self.P.controller_group) end
function Runbook:computes(ctx) return upgrade.nodes_with(ctx, self.P.compute_group, "nova-compute") end
function Runbook:all_group() return self.P.controller_group .. ":" .. self.P.compute_group end
function Runbook:all_nodes(ctx) return ctx.inventory:group(self:all_group()) end
function Runbook:restart_opts() return { grace = self.P.stop_grace, timeout = self.P.service_timeout } end

function Runbook:test_server_opts(ctx)
  local P = self.P
  local o = { image = P.image, flavor = P.flavor, network = P.network,
              security_group = P.security_group, validation = P.validation, timeout = 120,
              security_group_fn = function(c) return self:security_group(c) end }
  if P.validation and ctx then
    o.key_name = self:ensure_keypair(ctx)
    o.validation_user, o.validation_key, o.validation_netns = P.validation_user, P.validation_key, P.validation_netns
    o.known_hosts = (ctx.out or ".") .. "/known_hosts.guests"
  end
  return o
end

function Runbook:services_up(ctx, label, since)
  local P = self.P
  local expected = nova.expected_services(ctx,
    upgrade.setting(ctx, "nova", "expected_binaries", MITAKA_BINARIES, P), P.controller_group, P.compute_group)
  return nova.wait_services_up(ctx, expected, { timeout = P.service_timeout, label = label, since = since })
end

-- Whether the upgrade skips a release (a fast-forward upgrade, Nova's "FFU").
function Runbook:skip_level(ctx)
  local P = self.P
  if P.ffu_workaround ~= "auto" then return P.ffu_workaround == "on" end
  return upgrade.skips_release(ctx, P.from_release, P.to_release)
end

-- Sets (value) or unsets (nil) a nova.conf option on every node (nova_config_set /
-- nova_config_unset); read at each service's next start.
function Runbook:config_step(ctx, title, section, option, value)
  ctx:step(title, { nodes = self:all_group() }, function()
    upgrade.parallel(ctx, self:all_nodes(ctx), function(n) upgrade.config("nova", n, section, option, value) end)
  end)
end

-- The test flavor, created if missing: by the "before" stage's step, or by the boot/delete
-- probe when it runs first (the steady-state wait at the start runs every probe before any
-- stage, and a fresh cloud has no such flavor yet).
function Runbook:ensure_test_flavor(ctx)
  if self.flavor_ready then return true end
  local f, err = ctx.cloud.compute:ensure_flavor { name = self.P.flavor, ram = 128, vcpus = 1, disk = 1 }
  self.flavor_ready = f ~= nil
  return f, err
end

-- stop/start; the server must be ACTIVE again
local function accepts_actions(compute, id)
  local ok, e = compute:stop(id)
  if ok then ok, e = compute:wait_status(id, "SHUTOFF", 120) end
  if ok then ok, e = compute:start(id) end
  if ok then ok, e = compute:wait_status(id, "ACTIVE", 120) end
  return ok ~= nil, ok and "stopped and started" or tostring(e)
end

-- The node's Nova services (every service, unless opts.only picks Nova's).
function Runbook:nova_services(n)
  local out = {}
  for _, svc in ipairs(services.of(n)) do
    if upgrade.selects(self.only, svc.name) then out[#out + 1] = svc end
  end
  return out
end

-- ---------------------------------------------------------------- before

function Runbook:before(ctx)
  local P = self.P
  ctx:step("1. deployment check: nova services up", { nodes = P.controller_group }, function()
    self:services_up(ctx, " (before)")
    upgrade.check_code(ctx, "nova", self:all_nodes(ctx), P.from_release)
  end)

  ctx:step("test flavor", function()
    assert(self:ensure_test_flavor(ctx))
  end)

  ctx:step("persistent servers: one per compute host", { nodes = P.compute_group }, function()
    for _, n in ipairs(self:computes(ctx)) do
      local host = nova.nova_host(n)
      local opts = self:test_server_opts(ctx)
      opts.host = host
      local srv = lifecycle.boot(ctx, opts, "upgrun-persist-" .. host)
      local on = ctx.cloud.compute:server_host(srv)
      ctx.ledger:record("server", srv.id, { name = srv.name, host = on, status = srv.status,
                                            address = guest.address(srv) })
      if P.validation then
        local addr = guest.address(srv)
        ctx:check("persistent server on " .. host .. " has an address", addr ~= nil,
          addr or "no address in " .. cjson.encode(srv.addresses or {}))
        if addr then self.guests[host] = { id = srv.id, address = addr } end
      end
      ctx:check("persistent server scheduled to " .. host, on == host, "on " .. tostring(on))
    end
  end)

  if upgrade.wants(P.checks_at, "before") then
    ctx:step("persistent resources test suite", function() lifecycle.run(ctx, self:test_server_opts(ctx)) end)
    tempest_suite.step(ctx, P, "before")
  end
end

-- ---------------------------------------------------------------- upgrade

function Runbook:switch_code_step(ctx)
  local P = self.P
  ctx:step("2. change the codebase to " .. P.to_release, { nodes = self:all_group() }, function()
    if P.code_switch == "ssh" then
      upgrade.parallel(ctx, self:all_nodes(ctx), function(n) upgrade.switch_code(ctx, "nova", n, P.to_release) end)
      return
    end
    ctx:ansible { playbook = P.code_switch_playbook, limit = { P.controller_group, P.compute_group },
                  extra_vars = { nova_release = P.to_release } }
    if not ctx.plan then upgrade.check_code(ctx, "nova", self:all_nodes(ctx), P.to_release) end -- over upgrun's own SSH
  end)
end

function Runbook:db_expansion_step(ctx)
  local ctl = self:controllers(ctx)[1]
  ctx:step { name = "3. DB expansion", hook_point = "db_migration", nodes = { ctl }, fn = function()
    for _, what in ipairs({ "api_db sync", "db sync" }) do
      ctx:step("nova-manage " .. what, function()
        upgrade.tool(ctl, "nova_manage", "nova-manage", what, { check = true })
      end)
    end
  end }
end

function Runbook:controllers_step(ctx)
  local P = self.P
  ctx:step("4. controllers (" .. P.controller_order .. ")", { nodes = P.controller_group }, function()
    upgrade.restart_phases(ctx, self:controllers(ctx), CONTROLLER_ORDERS[P.controller_order], self:restart_opts())
  end)
end

-- The mixed-version state: controllers on the new release, computes still on the old one.
-- The persistent servers must accept an action, and the suite must pass, here too.
function Runbook:mixed_checks_step(ctx)
  local P = self.P
  ctx:step("mixed state checks (controllers on " .. P.to_release .. ", computes on " .. P.from_release .. ")",
    function()
      local compute = ctx.cloud.compute
      upgrade.survived(ctx, "server", function(rec, check)
        check("accepts actions in the mixed state (stop/start)", function()
          return ctx:intend("server", rec.id, self.excusing, self, rec.id, accepts_actions, compute, rec.id)
        end)
      end)
      lifecycle.run(ctx, self:test_server_opts(ctx))
      tempest_suite.step(ctx, P, "mixed")
    end)
end

function Runbook:computes_step(ctx)
  local P = self.P
  ctx:step("5. computes one by one", { nodes = P.compute_group }, function()
    local compute = ctx.cloud.compute
    upgrade.rolling(ctx, self:computes(ctx), function(n)
      local host = nova.nova_host(n)
      ctx:step("disable", function() assert(compute:disable_service(compute:find_service(host, "nova-compute"),
                                                                    "upgrun: rolling upgrade")) end)
      ctx:step("graceful stop (SIGTERM)", function() upgrade.stop(ctx, n, "nova-compute", self:restart_opts()) end)
      local started = time.now()
      ctx:step("start on " .. P.to_release, function() upgrade.start(ctx, n, "nova-compute", self:restart_opts()) end)
      ctx:step("wait until it reports up", function()
        nova.wait_services_up(ctx, { { host = host, binary = "nova-compute" } },
          { timeout = P.service_timeout, since = started, enabled = false, label = " after its restart" })
      end)
      ctx:step("enable", function() assert(compute:enable_service(compute:find_service(host, "nova-compute"))) end)
    end)
  end)
end

function Runbook:post_upgrade_step(ctx)
  local P = self.P
  local ctl = self:controllers(ctx)[1]
  ctx:step("6. online data migrations and upgrade check", { nodes = { ctl } }, function()
    ctx:step("nova-manage db online_data_migrations", function()
      -- run until it reports nothing left (exit 0), as the operator guides say; 1: some
      -- migrations ran, run again; 2: errors; 127: no migration could run
      local passes = nova.online_data_migrations(ctx, ctl, P.online_migration_passes, P.online_migration_batch)
      local rows, last = {}, passes[#passes]
      for i, p in ipairs(passes) do rows[#rows + 1] = string.format("pass %d: %d rows", i, p.rows) end
      ctx:check("online data migrations completed", last.status == 0,
        string.format("%d pass(es), %s; last exit %s%s", #passes, table.concat(rows, ", "), tostring(last.status),
          last.status == 0 and "" or (": " .. upgrade.tail(last.output, 1000))))
    end)
    ctx:step("nova-status upgrade check", function()
      local r = nova.manage(ctl, "nova_status", "upgrade check")
      -- 0: success, 1: warnings, 2: failure
      ctx:check("nova-status upgrade check passes", r.status == 0 or r.status == 1,
                "exit " .. tostring(r.status) .. ": " .. (r.stdout .. r.stderr):sub(-400))
    end)
  end)
end

-- The manual upgrade the rolling one is compared with: everything down,
-- migrate, everything up.
function Runbook:manual_steps(ctx)
  ctx:step("stop every nova service", { nodes = self:all_group() }, function()
    upgrade.parallel(ctx, self:all_nodes(ctx), function(n)
      for _, svc in ipairs(self:nova_services(n)) do upgrade.stop(ctx, n, svc.name, self:restart_opts()) end
    end)
  end)
  self:switch_code_step(ctx)
  self:db_expansion_step(ctx)
  local started = time.now()
  if self:skip_level(ctx) then
    self:config_step(ctx, "set [workarounds] disable_compute_service_check_for_ffu (skip-level upgrade)",
      FFU[1], FFU[2], "True")
  end
  ctx:step("start every nova service", { nodes = self:all_group() }, function()
    for _, group in ipairs({ self:controllers(ctx), self:computes(ctx) }) do
      upgrade.parallel(ctx, group, function(n)
        for _, svc in ipairs({ "nova-conductor", "nova-scheduler", "nova-api", "nova-compute" }) do
          if upgrade.has_service(n, svc) then upgrade.start(ctx, n, svc, self:restart_opts()) end
        end
      end)
    end
  end)
  ctx:step("wait until every service reports up", function() self:services_up(ctx, " (after start)", started) end)
end

function Runbook:upgrade(ctx)
  local P = self.P
  if P.strategy == "rolling" then
    self:config_step(ctx, "set [upgrade_levels] compute = auto", "upgrade_levels", "compute", "auto")
    if self:skip_level(ctx) then
      self:config_step(ctx, "set [workarounds] disable_compute_service_check_for_ffu (skip-level upgrade)",
        FFU[1], FFU[2], "True")
    end
    self:switch_code_step(ctx)
    self:db_expansion_step(ctx)
    self:controllers_step(ctx)
    if upgrade.wants(P.checks_at, "mixed") then self:mixed_checks_step(ctx) end
    self:computes_step(ctx)
  else
    self:manual_steps(ctx)
    if upgrade.wants(P.checks_at, "mixed") then
      ctx:skip("mixed state checks", "the manual strategy has no mixed-version state (every service is down "
        .. "while the code changes)")
    end
  end
  self:post_upgrade_step(ctx)
  if self:skip_level(ctx) then   -- every service runs the new release now: not needed at the next start
    self:config_step(ctx, "unset [workarounds] disable_compute_service_check_for_ffu", FFU[1], FFU[2], nil)
  end
end

-- ---------------------------------------------------------------- after

function Runbook:after(ctx)
  local P = self.P
  ctx:step("nova services up", function() self:services_up(ctx, " (after)") end)

  ctx:step("every service runs " .. P.to_release, { nodes = self:all_group() }, function()
    upgrade.check_running_release(ctx, self:all_nodes(ctx), P.to_release, { only = self.only })
    upgrade.check_code(ctx, "nova", self:all_nodes(ctx), P.to_release)
  end)

  ctx:step("persistent servers survived", function()
    local compute = ctx.cloud.compute
    upgrade.survived(ctx, "server", function(rec, check)
      local srv, err = compute:get_server(rec.id)
      check("still exists", srv ~= nil, srv and srv.status or tostring(err))
      if not srv then return end
      local host = compute:server_host(srv)
      check("on the same host", host == rec.data.host, "on " .. tostring(host) .. ", was " .. tostring(rec.data.host))
      check("in the same state", srv.status == rec.data.status, srv.status .. ", was " .. tostring(rec.data.status))
      check("accepts actions (stop/start)", function()
          return ctx:intend("server", rec.id, self.excusing, self, rec.id, accepts_actions, compute, rec.id)
        end)
    end)
  end)

  if upgrade.wants(P.checks_at, "after") then
    ctx:step("persistent resources test suite", function() lifecycle.run(ctx, self:test_server_opts(ctx)) end)
    tempest_suite.step(ctx, P, "after")
  end
end

return M
