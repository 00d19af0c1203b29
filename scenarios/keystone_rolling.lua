-- scenarios/keystone_rolling.lua — Keystone's documented minimal-downtime upgrade
-- ("Upgrading with minimal downtime" in the Keystone admin guide), on the shared
-- upgrade layer (upgrun.upgrade):
--
--   before   every Keystone runs the old release; a ledger of users, projects,
--            roles and role assignments is created; tokens are issued (kept in
--            memory only: a token is a secret)
--   upgrade  1. the code of every node changes (running processes keep the old code)
--            2. keystone-manage db_sync --expand   (hook point "db_migration")
--            3. keystone-manage db_sync --migrate
--            4. the nodes one at a time behind the load balancer: drain, SIGTERM and
--               wait, start on the new code, healthy, back in; the tokens issued
--               before validate after each node (old and new code side by side)
--            5. keystone-manage db_sync --contract, once every node runs the new release
--   after    every Keystone runs the new release; the tokens issued before still
--            validate; the ledger survived (each user, project, role and assignment
--            is there, and each user still authenticates)
--
-- Probes through the load balancer (the cloud's auth_url), in every stage: a token
-- issued (password authentication, a new token each time), a token validated, and
-- the version document.
--
--   upgrun scenarios/keystone_rolling.lua -i inventory.yml --cloud prod -o out/
--
-- Site facts (inventory, prefix keystone_): keystone_code_switch, keystone_code_current,
-- keystone_manage (command prefix of keystone-manage on a node), keystone_from_release /
-- keystone_to_release, and upgrun_services.keystone with drain/undrain for the balancer.
-- The lab's: tests/lab/keystone-lb up (two Keystones behind their own HAProxy).
--
-- The runbook's pieces live in upgrun.keystone.runbook (scenarios/cloud_upgrade.lua runs
-- the same pieces as the first product of the whole cloud).
local upgrade = require "upgrun.upgrade"
local keystone = require "upgrun.keystone.runbook"

local s = upgrade.scenario {
  project = "keystone",
  name = "keystone_rolling",
  description = "Keystone rolling upgrade with minimal downtime (db_sync expand / migrate / contract)",
  strategies = { "rolling" },
  params = keystone.params(),
}

local ks = keystone.declare(s)

s:stage("before", function(ctx) ks:before(ctx) end)
s:stage("upgrade", { needs = { "before" } }, function(ctx) ks:upgrade(ctx) end)
s:stage("after", function(ctx) ks:after(ctx) end)

return s
