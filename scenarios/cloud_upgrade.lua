-- scenarios/cloud_upgrade.lua — the whole cloud, in the order operators upgrade it:
-- Keystone, Glance, (Placement), Nova, each by its own runbook — the same pieces
-- keystone_rolling.lua, glance_rolling.lua and nova_mitaka_newton.lua run
-- (upgrun.keystone.runbook, upgrun.glance.runbook, upgrun.nova.runbook), one after
-- the other, with every product's probes running through the whole upgrade:
--
--   before   keystone: every Keystone on its old release, a ledger of users,
--            projects and roles, tokens issued; glance: every glance-api on its
--            old release, an image uploaded; nova: services up, persistent servers,
--            the persistent-resources suite (where nova_checks_at says)
--   upgrade  keystone: code, db_sync --expand / --migrate, node by node, --contract
--            glance:   code, db expand / migrate, glance-api node by node, contract
--            placement: not upgraded (below)
--            nova:     config, code, DB expansion, controllers, mixed-state checks,
--                      computes one by one, online data migrations, upgrade check
--   after    each product's after-checks: every node on its new release, the tokens
--            still validate, the ledger, the image and the servers survived
--
-- Probes (all through the cloud's endpoints in clouds.yaml, every stage): Keystone
-- token issue, validation and version document; Glance image list and download; Nova
-- servers.list, version document and (upgrade stage) a boot/delete cycle. report.json's
-- overall downtime is the all-products downtime (the union of every API's outages),
-- downtime_per_service the downtime per product, downtime_per_step per step.
--
-- Placement has no runbook here: the lab's Debian 12 pairs offer no Placement build
-- pair (Placement stays on its release; the upgrade stage says so as a skipped check).
--
--   upgrun scenarios/cloud_upgrade.lua -i inventory.yml --cloud prod -o out/
--   --set projects=keystone,glance        a subset, still in the operators' order
--   --set keystone_to_release=... nova_checks_at=after glance_list_rate=2 ...
--
-- Each product's parameters are its own scenario's, prefixed with the product
-- (keystone_serial, glance_probe_image, nova_controller_order, ...); the release pair
-- is <product>_from_release / <product>_to_release (else the inventory's variables of
-- the same names). The inventory holds every product's nodes and services (a node may
-- run several products' services); <product>_releases lists the releases it offers for
-- that product. The lab's: tests/lab/cloud-inventory (after keystone-lb up, glance-lb up).
local scenario = require "upgrun.scenario"
local upgrade = require "upgrun.upgrade"
local keystone = require "upgrun.keystone.runbook"
local glance = require "upgrun.glance.runbook"
local nova = require "upgrun.nova.runbook"

-- the operators' order, and each product's default release pair
local PRODUCTS = { "keystone", "glance", "nova" }
local RELEASES = { keystone = {}, glance = {}, nova = nova.RELEASES }
local PLACEMENT_WHY = "no Placement runbook: the lab's Debian 12 pairs offer no Placement build pair, so "
  .. "Placement stays on its release (on the lab it runs with the newest os-traits)"

local params = {
  projects = { type = "list", default = PRODUCTS, choices = PRODUCTS,
               description = "the products to upgrade (always in the order keystone, glance, nova)" },
  strategy = { default = "rolling", choices = { "rolling" }, description = "how the services change release" },
  stop_grace = { default = 30, description = "seconds a service gets after SIGTERM before SIGKILL" },
  service_timeout = { default = 180, description = "seconds to wait for a service to be up (and healthy)" },
}
for _, p in ipairs(PRODUCTS) do
  for k, v in pairs(upgrade.release_params(p, RELEASES[p], p .. "_")) do params[k] = v end
end

local s = scenario.new {
  name = "cloud_upgrade",
  description = "The whole cloud, rolling: Keystone, Glance, (Placement), Nova, with every API probed throughout",
  params = params,
}

local function chosen(product) return function(ctx) return upgrade.wants(ctx.params.projects, product) end end

local runbooks = {
  keystone = keystone.declare(s, { prefix = "keystone_", enabled = chosen("keystone") }),
  glance = glance.declare(s, { prefix = "glance_", enabled = chosen("glance") }),
  -- Keystone's own probes cover identity; a node's services are not all Nova's
  nova = nova.declare(s, { prefix = "nova_", enabled = chosen("nova"), identity_probe = false, only = "^nova%-" }),
}

local P -- the parameters once known

-- The chosen products in the operators' order, with their runbooks.
local function each(ctx, fn)
  for _, name in ipairs(PRODUCTS) do
    if upgrade.wants(P.projects, name) then fn(name, runbooks[name], upgrade.view(ctx, name .. "_")) end
  end
end

s:setup(function(ctx)
  P = ctx.params
  each(ctx, function(name, _, view) upgrade.resolve_releases(ctx, name, view, RELEASES[name]) end)
end)

s:stage("before", function(ctx)
  each(ctx, function(name, rb) ctx:step(name, function() rb:before(ctx) end) end)
end)

s:stage("upgrade", { needs = { "before" } }, function(ctx)
  each(ctx, function(name, rb, v)
    if name == "nova" then
      ctx:step("placement: not upgraded (no Placement release pair)", function()
        ctx:skip("placement upgraded", PLACEMENT_WHY)
      end)
    end
    ctx:step(string.format("%s %s to %s", name, v.from_release, v.to_release), function() rb:upgrade(ctx) end)
  end)
end)

s:stage("after", function(ctx)
  each(ctx, function(name, rb) ctx:step(name, function() rb:after(ctx) end) end)
end)

return s
