-- scenarios/template.lua — a starting point for a project's rolling-upgrade
-- scenario on the shared layer (upgrun.upgrade), written for a Cinder-like
-- project: copy it, rename the project, and replace the parts marked EDIT.
-- docs/writing_a_scenario.md walks through it.
--
--   before   the API and its services are up on the old release; a persistent
--            resource is created and recorded in the ledger
--   upgrade  1. the code of every node switched to the new release
--            2. the database expanded (hook point "db_migration")
--            3. the API nodes one by one: drain, restart, health, undrain
--            4. the other services node by node
--            5. the database contracted
--   after    every service runs the new release; the resource survived
--
--   upgrun scenarios/template.lua -i inventory.yml --cloud mycloud --plan
--
-- The site says how, in the inventory (prefix = the project):
--   cinder_code_switch / cinder_code_current   switch / print a node's code release
--   cinder_manage                              command prefix of cinder-manage on a node
--   cinder_from_release / cinder_to_release    the default release pair
--   upgrun_services                            the services on each node (docs/nodes.md):
--                                              start, pidfile, health, running_release,
--                                              drain / undrain for an API behind a balancer
local upgrade = require "upgrun.upgrade"

local PROJECT = "cinder"                                   -- EDIT: the inventory variables' prefix

local s = upgrade.scenario {
  project = PROJECT,
  name = "cinder_rolling",                                 -- EDIT
  description = "Cinder rolling upgrade (template)",      -- EDIT
  releases = { from = "zed", to = "2023.1" },              -- EDIT: when neither --set nor inventory says
  strategies = { "rolling" },
  params = {
    api_group = { default = "controller", description = "inventory group of the API nodes" },
    api_service = { default = "cinder-api", description = "the API service (behind the load balancer)" },
    other_services = { type = "list", default = { "cinder-scheduler", "cinder-volume" },
                       description = "the other services, restarted node by node after the API" },
    serial = { default = 1, description = "API nodes restarted at a time" },
    api_downtime_budget = { default = 5, description = "max API downtime (s)" },
  },
}

local P -- the parameters once known

-- ---------------------------------------------------------------- probes
-- A probe's rate is a parameter (--set api_rate=10; 0 turns it off).

upgrade.probe(s, {
  name = "cinder volume list",                             -- EDIT: the API call that must keep working
  fn = function(ctx)
    return ctx.cloud.identity.session:request { service = "volumev3", path = "/volumes?limit=10" }
  end,
  rate = { param = "api_rate", default = 5 },
  budget = function(p) return { max_downtime = p.api_downtime_budget } end,
  timeout = 5, stages = { "before", "upgrade", "after" }, baseline = "before",
})

s:setup(function(ctx) P = ctx.params end)

-- ---------------------------------------------------------------- before

s:stage("before", function(ctx)
  ctx:step("services up on " .. P.from_release, { nodes = P.api_group }, function()
    upgrade.check_running_release(ctx, ctx.inventory:group(P.api_group), P.from_release)
  end)
  ctx:step("persistent resource", function()
    -- EDIT: create something the upgrade must not lose, and record it:
    -- local vol = ...create it...
    -- ctx.ledger:record("volume", vol.id, { name = vol.name, size = vol.size })
  end)
end)

-- ---------------------------------------------------------------- upgrade

s:stage("upgrade", { needs = { "before" } }, function(ctx)
  local nodes = ctx.inventory:group(P.api_group)
  ctx:step("1. code to " .. P.to_release, { nodes = P.api_group }, function()
    upgrade.parallel(ctx, nodes, function(n) upgrade.switch_code(ctx, PROJECT, n, P.to_release) end)
  end)
  ctx:step { name = "2. database expand", hook_point = "db_migration", nodes = { nodes[1] }, fn = function()
    upgrade.tool(nodes[1], PROJECT .. "_manage", "cinder-manage", "db sync", { check = true }) -- EDIT
  end }
  ctx:step("3. " .. P.api_service .. " node by node", { nodes = P.api_group }, function()
    upgrade.rolling(ctx, upgrade.nodes_with(ctx, P.api_group, P.api_service), function(n)
      upgrade.restart_step(ctx, n, P.api_service, { grace = P.stop_grace, timeout = P.service_timeout })
    end, { serial = P.serial })
  end)
  ctx:step("4. other services", { nodes = P.api_group }, function()
    upgrade.restart_phases(ctx, nodes, { P.other_services }, { grace = P.stop_grace, timeout = P.service_timeout })
  end)
  ctx:step("5. database contract", { nodes = { nodes[1] } }, function()
    -- EDIT: the project's contract step, when it has one
  end)
end)

-- ---------------------------------------------------------------- after

s:stage("after", function(ctx)
  local nodes = ctx.inventory:group(P.api_group)
  ctx:step("every service runs " .. P.to_release, { nodes = P.api_group }, function()
    upgrade.check_running_release(ctx, nodes, P.to_release)
    upgrade.check_code(ctx, PROJECT, nodes, P.to_release)
  end)
  ctx:step("persistent resources survived", function()
    upgrade.survived(ctx, "volume", function(rec, check)
      local _ = rec -- EDIT: read it back: check("still exists", found ~= nil, detail)
      check("is recorded", true)
    end)
  end)
end)

-- EDIT: delete what the scenario created, at the end of the run
s:cleanup("volume", function(ctx, rec) local _, _ = ctx, rec end)

return s
