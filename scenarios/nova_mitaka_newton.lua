-- scenarios/nova_mitaka_newton.lua — the Nova rolling upgrade, Mitaka → Newton,
-- step by step as the Nova rolling-upgrade test plan writes it:
--
--   before   1. deployment check: every Nova service up (compute service list)
--            persistent servers: one per compute host, kept through the upgrade
--            the persistent-resources test suite on a created server
--   upgrade  2. change the codebase to the new release on every node
--            3. DB expansion (nova-manage api_db sync, db sync), hook point
--               "db_migration", timed
--            4. the controllers (all conductors first, or controller by controller)
--            5. the computes one by one (disable, SIGTERM and wait, start on the
--               new code, wait until it reports up, enable)
--            6. online data migrations, nova-status upgrade check
--   after    every before-check again; the persistent servers survived (same
--            host, same state, still accept actions); every service runs the
--            new release
--
-- Probes run through every stage: Nova servers.list (the plan's probe), the Nova
-- version document (cheap liveness), Keystone token validation, and a server
-- boot/delete cycle during the upgrade. `--set strategy=manual` runs the manual
-- upgrade (every service down, migrate, every service up) with the same probes.
--
--   upgrun scenarios/nova_mitaka_newton.lua -i inventory.yml --cloud prod -o out/
--
-- Everything site-specific (nodes, services, how code is switched, service names,
-- releases) comes from the inventory and --set. See docs/nova_scenario.md.
local scenario = require "upgrun.scenario"
local http = require "upgrun.http"
local nova = require "upgrun.nova.upgrade"
local lifecycle = require "upgrun.nova.lifecycle"
local tempest_suite = require "upgrun.nova.tempest_suite"

local s = scenario.new {
  name = "nova_mitaka_newton",
  description = "Nova rolling upgrade with before/during/after tests (OSIC Nova rolling-upgrade plan)",
  params = {
    from_release = { default = "", description = "release the cloud runs before; default: inventory var "
                       .. "nova_from_release, else mitaka" },
    to_release = { default = "", description = "release to upgrade to; default: inventory var nova_to_release, "
                     .. "else newton" },
    strategy = { default = "rolling", description = "rolling | manual (everything down, migrate, up)" },
    controller_order = { default = "conductors_first",
                         description = "conductors_first | by_controller (the plan leaves it open)" },
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
    security_group = { default = "default", description = "security group for the add/remove check" },
    validation = { default = false, description = "servers are reachable over SSH (validation network)" },
    list_rate = { default = 5, description = "Nova servers.list probes per second" },
    version_rate = { default = 20, description = "Nova version-document probes per second" },
    keystone_rate = { default = 2, secret = false, description = "Keystone token validations per second" },
    boot_interval = { default = 15, description = "seconds between server boot/delete cycles (0: off)" },
    stop_grace = { default = 30, description = "seconds a service gets after SIGTERM before SIGKILL" },
    service_timeout = { default = 180, description = "seconds to wait for a service to report up" },
    api_downtime_budget = { default = 10, description = "max Nova API downtime (s) in a rolling upgrade" },
    checks_at = { type = "list", default = { "before", "mixed", "after" },
                  description = "where the persistent-resources suite runs: before, mixed (controllers "
                    .. "upgraded, computes not yet: rolling only), after" },
    ffu_workaround = { default = "auto", description = "auto | on | off: set Nova's [workarounds] "
                         .. "disable_compute_service_check_for_ffu on every node for the upgrade (auto: when "
                         .. "the inventory's upgrun_release_series says it skips a release)" },
    online_migration_batch = { default = 50, description = "rows per online_data_migrations run (--max-count)" },
    tempest = { default = false, description = "also run the seed plan's Tempest tests at the checks_at points" },
    tempest_tests = { type = "list", default = {}, description = "Tempest test ids instead of the seed plan's" },
    online_migration_passes = { default = 20, description = "max runs of nova-manage db online_data_migrations "
                                  .. "(it is run until it reports nothing left)" },
  },
}

local P -- the parameters, set when the first stage starts

-- ---------------------------------------------------------------- probes

s:probe {
  name = "nova servers.list",
  fn = function(ctx) return ctx.cloud.compute:request("GET", "/servers?limit=50") end,
  rate = 5, timeout = 5, max_in_flight = 4, stages = { "before", "upgrade", "after" }, baseline = "before",
}

s:probe {
  name = "nova version document",
  fn = function(ctx)
    return http.request { url = ctx.cloud.compute:version_url(), timeout = 2 }
  end,
  expect = { 200, 300 }, rate = 20, timeout = 2, max_in_flight = 8,
  stages = { "before", "upgrade", "after" }, baseline = "before",
}

s:probe {
  name = "keystone token validation",
  fn = function(ctx) return ctx.cloud.identity:validate(nil, { timeout = 5 }) end,
  rate = 2, timeout = 5, max_in_flight = 4, stages = { "before", "upgrade", "after" }, baseline = "before",
}

s:probe {
  name = "nova server boot/delete cycle",
  fn = function(ctx)
    local c = ctx.cloud.compute
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
  interval = 15, timeout = 170, max_in_flight = 2, stages = { "upgrade" },
}

-- Rates, budgets and choices are parameters: checked and applied once they
-- are known, before any probe starts.
s:setup(function(ctx)
  P = ctx.params
  if not ctx.plan then
    local _ = ctx.cloud -- authenticate now: bad credentials stop the run before anything starts
  end
  P.image = nova.setting(ctx, "image", "cirros")
  P.from_release = nova.setting(ctx, "from_release", "mitaka")
  P.to_release = nova.setting(ctx, "to_release", "newton")
  P.network = nova.setting(ctx, "network", "auto")
  local function one_of(name, ...)
    for _, v in ipairs({ ... }) do if P[name] == v then return end end
    error(string.format("--set %s: must be one of %s, got %q", name, table.concat({ ... }, ", "), P[name]), 0)
  end
  one_of("strategy", "rolling", "manual")
  one_of("ffu_workaround", "auto", "on", "off")
  for _, where in ipairs(P.checks_at) do
    if where ~= "before" and where ~= "mixed" and where ~= "after" then
      error(string.format("--set checks_at: each must be before, mixed or after, got %q", where), 0)
    end
  end
  -- the releases must be ones the site offers (inventory var upgrun_releases)
  local ok, inv = pcall(function() return ctx.inventory end)
  local offered = ok and inv and inv.vars and inv.vars.upgrun_releases
  if type(offered) == "table" then
    for _, name in ipairs({ "from_release", "to_release" }) do
      local found = false
      for _, r in ipairs(offered) do if r == P[name] then found = true end end
      if not found then
        error(string.format("--set %s: the inventory offers no release %q (offered: %s)", name, P[name],
          table.concat(offered, ", ")), 0)
      end
    end
  end
  one_of("controller_order", "conductors_first", "by_controller")
  for probe, rate in pairs({ ["nova servers.list"] = P.list_rate, ["nova version document"] = P.version_rate,
                             ["keystone token validation"] = P.keystone_rate }) do
    if rate > 0 then s:probe_named(probe).interval = 1 / rate else s:probe_named(probe).stages = {} end
  end
  local cycle = s:probe_named("nova server boot/delete cycle")
  if P.boot_interval > 0 then cycle.interval = P.boot_interval else cycle.stages = {} end
  if P.strategy == "rolling" then
    for _, name in ipairs({ "nova servers.list", "nova version document" }) do
      s:probe_named(name).budget = { max_downtime = P.api_downtime_budget }
    end
  end
end)

-- ---------------------------------------------------------------- helpers

-- Raises with every node's error when ctx:parallel had failures.
local function all_ok(results)
  local errs = {}
  for _, r in ipairs(results) do
    if not r.ok then errs[#errs + 1] = tostring(type(r.error) == "table" and r.error.message or r.error) end
  end
  if #errs > 0 then error(table.concat(errs, "; "), 0) end
end

local function controllers(ctx) return ctx.inventory:group(P.controller_group) end
local function computes(ctx) return nova.nodes_with(ctx, P.compute_group, "nova-compute") end
local function all_nodes(ctx) return ctx.inventory:group(P.controller_group .. ":" .. P.compute_group) end

local MITAKA_BINARIES = { "nova-conductor", "nova-scheduler", "nova-consoleauth", "nova-compute" }

local function test_server_opts()
  return { image = P.image, flavor = P.flavor, network = P.network,
           security_group = P.security_group, validation = P.validation, timeout = 120 }
end

local function services_up(ctx, label, since)
  local expected = nova.expected_services(ctx, nova.setting(ctx, "expected_binaries", MITAKA_BINARIES),
                                          P.controller_group,
                                          P.compute_group)
  return nova.wait_services_up(ctx, expected, { timeout = P.service_timeout, label = label, since = since })
end


local function checks_at(where)
  for _, w in ipairs(P.checks_at) do if w == where then return true end end
  return false
end

-- Releases from the inventory's upgrun_release_series ({release = "2025.1"}), as a count of
-- six-month releases; nil when unknown.
local function series_index(ctx, release)
  local ok, inv = pcall(function() return ctx.inventory end)
  local series = ok and inv and inv.vars and inv.vars.upgrun_release_series
  local v = type(series) == "table" and series[release]
  local year, half = tostring(v or ""):match("^(%d%d%d%d)%.([12])$")
  return year and (tonumber(year) * 2 + tonumber(half)) or nil
end

-- Whether the upgrade skips at least one release (a fast-forward upgrade, Nova's "FFU").
local function skip_level(ctx)
  if P.ffu_workaround ~= "auto" then return P.ffu_workaround == "on" end
  local a, b = series_index(ctx, P.from_release), series_index(ctx, P.to_release)
  return a ~= nil and b ~= nil and b - a > 1
end

-- Sets (value) or unsets (nil) a nova.conf option on every node with the inventory's
-- nova_config_set / nova_config_unset commands; read at each service's next start.
local function config_step(ctx, title, section, option, value)
  ctx:step(title, { nodes = P.controller_group .. ":" .. P.compute_group }, function()
    all_ok(ctx:parallel(all_nodes(ctx), function(n) nova.config(n, section, option, value) end))
  end)
end

-- Restarts one service on one node as a visible step.
local function restart_step(ctx, node, service)
  ctx:step(string.format("restart %s on %s", service, node.name), { nodes = { node } }, function()
    nova.restart(ctx, node, service, { grace = P.stop_grace, timeout = P.service_timeout })
  end)
end

-- ---------------------------------------------------------------- before

s:stage("before", function(ctx)

  ctx:step("1. deployment check: nova services up", { nodes = P.controller_group }, function()
    services_up(ctx, " (before)")
    for _, n in ipairs(all_nodes(ctx)) do
      local rel = nova.code_release(n)
      if rel then ctx:check(n.name .. " code is on " .. P.from_release, rel == P.from_release, "code is on " .. rel) end
    end
  end)

  ctx:step("test flavor", function()
    assert(ctx.cloud.compute:ensure_flavor { name = P.flavor, ram = 128, vcpus = 1, disk = 1 })
  end)

  ctx:step("persistent servers: one per compute host", { nodes = P.compute_group }, function()
    for _, n in ipairs(computes(ctx)) do
      local host = nova.nova_host(n)
      local opts = test_server_opts()
      opts.host = host
      local srv = lifecycle.boot(ctx, opts, "upgrun-persist-" .. host)
      local on = ctx.cloud.compute:server_host(srv)
      ctx.ledger:record("server", srv.id, { name = srv.name, host = on, status = srv.status })
      ctx:check("persistent server scheduled to " .. host, on == host, "on " .. tostring(on))
    end
  end)

  if checks_at("before") then
    ctx:step("persistent resources test suite", function() lifecycle.run(ctx, test_server_opts()) end)
    tempest_suite.step(ctx, P, "before")
  end
end)

-- ---------------------------------------------------------------- upgrade

local function switch_code_step(ctx)
  ctx:step("2. change the codebase to " .. P.to_release, { nodes = P.controller_group .. ":" .. P.compute_group },
    function()
      all_ok(ctx:parallel(all_nodes(ctx), function(n) nova.switch_code(ctx, n, P.to_release) end))
    end)
end

local function db_expansion_step(ctx)
  local ctl = controllers(ctx)[1]
  ctx:step { name = "3. DB expansion", hook_point = "db_migration", nodes = { ctl }, fn = function()
    for _, what in ipairs({ "api_db sync", "db sync" }) do
      ctx:step("nova-manage " .. what, function()
        local r = nova.manage(ctl, "nova_manage", what)
        if not r.ok then
          error(string.format("nova-manage %s failed (exit %s): %s", what, tostring(r.status),
            nova.tail(r.stdout .. r.stderr, 1500)), 0)
        end
      end)
    end
  end }
end

local function controllers_step(ctx)
  ctx:step("4. controllers (" .. P.controller_order .. ")", { nodes = P.controller_group }, function()
    local ctls = controllers(ctx)
    if P.controller_order == "conductors_first" then
      for _, n in ipairs(ctls) do
        if nova.has_service(n, "nova-conductor") then restart_step(ctx, n, "nova-conductor") end
      end
      for _, n in ipairs(ctls) do
        for _, svc in ipairs({ "nova-scheduler", "nova-api" }) do
          if nova.has_service(n, svc) then restart_step(ctx, n, svc) end
        end
      end
    elseif P.controller_order == "by_controller" then
      for _, n in ipairs(ctls) do
        for _, svc in ipairs({ "nova-conductor", "nova-scheduler", "nova-api" }) do
          if nova.has_service(n, svc) then restart_step(ctx, n, svc) end
        end
      end
    else
      error("controller_order must be conductors_first or by_controller, got " .. P.controller_order, 0)
    end
  end)
end

-- The mixed-version state: controllers on the new release, computes still on the old one.
-- The persistent servers must accept an action, and the suite must pass, here too.
local function mixed_checks_step(ctx)
  ctx:step("mixed state checks (controllers on " .. P.to_release .. ", computes on " .. P.from_release .. ")",
    function()
      local compute = ctx.cloud.compute
      for rec in ctx.ledger:each("server") do
        local name = rec.data.name or rec.id
        ctx:check(name .. " accepts actions in the mixed state (stop/start)", function()
          local ok, e = compute:stop(rec.id)
          if ok then ok, e = compute:wait_status(rec.id, "SHUTOFF", 120) end
          if ok then ok, e = compute:start(rec.id) end
          if ok then ok, e = compute:wait_status(rec.id, "ACTIVE", 120) end
          return ok ~= nil, ok and "stopped and started" or tostring(e)
        end)
      end
      lifecycle.run(ctx, test_server_opts())
      tempest_suite.step(ctx, P, "mixed")
    end)
end

local function computes_step(ctx)
  ctx:step("5. computes one by one", { nodes = P.compute_group }, function()
    local compute = ctx.cloud.compute
    for _, n in ipairs(computes(ctx)) do
      local host = nova.nova_host(n)
      ctx:step(n.name, { nodes = { n } }, function()
        ctx:step("disable", function() assert(compute:disable_service(compute:find_service(host, "nova-compute"),
                                                                      "upgrun: rolling upgrade")) end)
        ctx:step("graceful stop (SIGTERM)", function() nova.stop(ctx, n, "nova-compute", { grace = P.stop_grace }) end)
        local started = require("upgrun.time").now()
        ctx:step("start on " .. P.to_release, function()
          nova.start(ctx, n, "nova-compute", { timeout = P.service_timeout })
        end)
        ctx:step("wait until it reports up", function()
          nova.wait_services_up(ctx, { { host = host, binary = "nova-compute" } },
            { timeout = P.service_timeout, since = started, enabled = false, label = " after its restart" })
        end)
        ctx:step("enable", function() assert(compute:enable_service(compute:find_service(host, "nova-compute"))) end)
      end)
    end
  end)
end

local function post_upgrade_step(ctx)
  local ctl = controllers(ctx)[1]
  ctx:step("6. online data migrations and upgrade check", { nodes = { ctl } }, function()
    ctx:step("nova-manage db online_data_migrations", function()
      -- run until it reports nothing left (exit 0), as the operator guides say; 1: some
      -- migrations ran, run again; 2: errors; 127: no migration could run
      local passes = nova.online_data_migrations(ctx, ctl, P.online_migration_passes,
        P.online_migration_batch)
      local rows, last = {}, passes[#passes]
      for i, p in ipairs(passes) do rows[#rows + 1] = string.format("pass %d: %d rows", i, p.rows) end
      ctx:check("online data migrations completed", last.status == 0,
        string.format("%d pass(es), %s; last exit %s%s", #passes, table.concat(rows, ", "), tostring(last.status),
          last.status == 0 and "" or (": " .. nova.tail(last.output, 1000))))
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
local function manual_steps(ctx)
  local list = all_nodes(ctx)
  ctx:step("stop every nova service", { nodes = P.controller_group .. ":" .. P.compute_group }, function()
    all_ok(ctx:parallel(list, function(n)
      for _, svc in ipairs(require("upgrun.services").of(n)) do
        nova.stop(ctx, n, svc.name, { grace = P.stop_grace })
      end
    end))
  end)
  switch_code_step(ctx)
  db_expansion_step(ctx)
  local started = require("upgrun.time").now()
  if skip_level(ctx) then
    config_step(ctx, "set [workarounds] disable_compute_service_check_for_ffu (skip-level upgrade)",
      "workarounds", "disable_compute_service_check_for_ffu", "True")
  end
  ctx:step("start every nova service", { nodes = P.controller_group .. ":" .. P.compute_group }, function()
    for _, group in ipairs({ controllers(ctx), computes(ctx) }) do
      all_ok(ctx:parallel(group, function(n)
        for _, svc in ipairs({ "nova-conductor", "nova-scheduler", "nova-api", "nova-compute" }) do
          if nova.has_service(n, svc) then nova.start(ctx, n, svc, { timeout = P.service_timeout }) end
        end
      end))
    end
  end)
  ctx:step("wait until every service reports up", function() services_up(ctx, " (after start)", started) end)
end

s:stage("upgrade", { needs = { "before" } }, function(ctx)
  if P.strategy == "rolling" then
    config_step(ctx, "set [upgrade_levels] compute = auto", "upgrade_levels", "compute", "auto")
    if skip_level(ctx) then
      config_step(ctx, "set [workarounds] disable_compute_service_check_for_ffu (skip-level upgrade)",
        "workarounds", "disable_compute_service_check_for_ffu", "True")
    end
    switch_code_step(ctx)
    db_expansion_step(ctx)
    controllers_step(ctx)
    if checks_at("mixed") then mixed_checks_step(ctx) end
    computes_step(ctx)
  elseif P.strategy == "manual" then
    manual_steps(ctx)
    if checks_at("mixed") then
      ctx:skip("mixed state checks", "the manual strategy has no mixed-version state (every service is down "
        .. "while the code changes)")
    end
  else
    error("strategy must be rolling or manual, got " .. tostring(P.strategy), 0)
  end
  post_upgrade_step(ctx)
  if skip_level(ctx) then   -- every service runs the new release now: not needed at the next start
    config_step(ctx, "unset [workarounds] disable_compute_service_check_for_ffu", "workarounds",
      "disable_compute_service_check_for_ffu", nil)
  end
end)

-- ---------------------------------------------------------------- after

s:stage("after", function(ctx)
  ctx:step("nova services up", function() services_up(ctx, " (after)") end)

  ctx:step("every service runs " .. P.to_release, { nodes = P.controller_group .. ":" .. P.compute_group },
    function()
      nova.check_running_release(ctx, all_nodes(ctx), P.to_release)
      for _, n in ipairs(all_nodes(ctx)) do
        local rel = nova.code_release(n)
        if rel then ctx:check(n.name .. " code is on " .. P.to_release, rel == P.to_release, "code is on " .. rel) end
      end
    end)

  ctx:step("persistent servers survived", function()
    local compute = ctx.cloud.compute
    for rec in ctx.ledger:each("server") do
      local name = rec.data.name or rec.id
      local srv, err = compute:get_server(rec.id)
      ctx:check(name .. " still exists", srv ~= nil, srv and srv.status or tostring(err))
      if srv then
        local host = compute:server_host(srv)
        ctx:check(name .. " on the same host", host == rec.data.host, "on " .. tostring(host)
          .. ", was " .. tostring(rec.data.host))
        ctx:check(name .. " in the same state", srv.status == rec.data.status, srv.status .. ", was "
          .. tostring(rec.data.status))
        ctx:check(name .. " accepts actions (stop/start)", function()
          local ok, e = compute:stop(rec.id)
          if ok then ok, e = compute:wait_status(rec.id, "SHUTOFF", 120) end
          if ok then ok, e = compute:start(rec.id) end
          if ok then ok, e = compute:wait_status(rec.id, "ACTIVE", 120) end
          return ok ~= nil, ok and "stopped and started" or tostring(e)
        end)
      end
    end
  end)

  if checks_at("after") then
    ctx:step("persistent resources test suite", function() lifecycle.run(ctx, test_server_opts()) end)
    tempest_suite.step(ctx, P, "after")
  end
end)

-- ---------------------------------------------------------------- cleanup

local function delete_server(ctx, rec)
  local ok, err = ctx.cloud.compute:delete_server(rec.id, { wait = true, timeout = 120 })
  if not ok and not (err and err.status == 404) then error(err, 0) end
end
s:cleanup("server", delete_server)
s:cleanup("probe_server", delete_server)

return s
