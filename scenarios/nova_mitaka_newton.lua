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
--
-- The runbook's pieces live in upgrun.nova.runbook (scenarios/cloud_upgrade.lua runs the
-- same pieces after Keystone's and Glance's).
local upgrade = require "upgrun.upgrade"
local nova = require "upgrun.nova.runbook"

local s = upgrade.scenario {
  project = "nova",
  name = "nova_mitaka_newton",
  description = "Nova rolling upgrade with before/during/after tests (OSIC Nova rolling-upgrade plan)",
  releases = nova.RELEASES,
  strategies = { "rolling", "manual" },
  strategy_description = "manual: everything down, migrate, everything up",
  params = nova.params(),
}

local nv = nova.declare(s)

s:stage("before", function(ctx) nv:before(ctx) end)
s:stage("upgrade", { needs = { "before" } }, function(ctx) nv:upgrade(ctx) end)
s:stage("after", function(ctx) nv:after(ctx) end)

return s
