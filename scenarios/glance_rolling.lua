-- scenarios/glance_rolling.lua — Glance's rolling upgrade ("Rolling upgrades" in the
-- Glance admin guide: glance-manage db expand / migrate / contract), on the shared
-- upgrade layer (upgrun.upgrade):
--
--   before   every glance-api runs the old release; an image is uploaded and its
--            size and checksums recorded in the ledger
--   upgrade  1. the code of every node changes (running processes keep the old code)
--            2. glance-manage db expand    (hook point "db_migration")
--            3. glance-manage db migrate
--            4. the glance-api nodes one at a time behind the load balancer: drain,
--               SIGTERM and wait, start on the new code, healthy, back in
--            5. glance-manage db contract, once every node runs the new release
--   after    every glance-api runs the new release; the image is still active with
--            the same size and checksums, and downloads with the same sha512
--
-- Probes through the load balancer (the cloud's image endpoint), in every stage: the
-- image list, and a download of an image that exists before the run (the site's
-- glance_probe_image, by name or id).
--
--   upgrun scenarios/glance_rolling.lua -i inventory.yml --cloud prod -o out/
--
-- Site facts (inventory, prefix glance_): glance_code_switch, glance_code_current,
-- glance_manage (command prefix of glance-manage on a node), glance_from_release /
-- glance_to_release, glance_probe_image, and upgrun_services.glance-api with drain/undrain.
-- The lab's: tests/lab/glance-lb up (two glance-api behind their own HAProxy).
--
-- The runbook's pieces live in upgrun.glance.runbook (scenarios/cloud_upgrade.lua runs
-- the same pieces after Keystone's, before Nova's).
local upgrade = require "upgrun.upgrade"
local glance = require "upgrun.glance.runbook"

local s = upgrade.scenario {
  project = "glance",
  name = "glance_rolling",
  description = "Glance rolling upgrade (glance-manage db expand / migrate / contract)",
  strategies = { "rolling" },
  params = glance.params(),
}

local gl = glance.declare(s)

s:stage("before", function(ctx) gl:before(ctx) end)
s:stage("upgrade", { needs = { "before" } }, function(ctx) gl:upgrade(ctx) end)
s:stage("after", function(ctx) gl:after(ctx) end)

return s
