-- test_cloud_layer — several products in one upgrade scenario (what
-- scenarios/cloud_upgrade.lua does with Keystone, Glance and Nova), on the
-- layer's multi-product parts, in a real run against three real sshd nodes each
-- running two products' services (fixtures/ssh_fakesvc.sh, real processes):
-- products "alpha" and "beta" with prefixed parameters (upgrade.view), their
-- release pairs resolved and checked against <product>_releases
-- (upgrade.resolve_releases, refused with the prefixed name, exit 2), release
-- checks that look only at the product's own services (check_running_release
-- {only =}), and the report's downtime per product (probes grouped by service)
-- and all-products downtime: each product's probes watch its service on n1 and
-- n2 (a local file the service creates once healthy), so the rolling restarts
-- make real outages; the test recomputes every union from the probes' outages.
local T = require "testlib"
local H = require "sshd_harness"
local proc = require "upgrun.proc"
local cjson = require "cjson"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FAKE = T.src("tests/integration/fixtures/ssh_fakesvc.sh")
local lab = H.new()
local nodes = { lab:start("n1"), lab:start("n2"), lab:start("n3") }
local D = lab.dir

local host_lines = {}
for _, n in ipairs(nodes) do
  local svcs = {}
  for _, p in ipairs({ "alpha", "beta" }) do
    H.sh(string.format("mkdir -p '%s/%s/%s' && echo %s1 > '%s/%s/%s/release'", D, n.name, p, p:sub(1, 1), D, n.name,
      p))
    local dir = string.format("%s/{node}/%s", D, p)
    svcs[#svcs + 1] = string.format([[
            %s-api:
              backend: command
              start: "%s start %s %s-api"
              pidfile: "%s/%s-api.pid"
              health: "%s health %s %s-api"
              running_release: "%s release %s %s-api"]], p, FAKE, dir, p, dir, p, FAKE, dir, p, FAKE, dir, p)
  end
  host_lines[#host_lines + 1] = string.format([[
        %s:
          ansible_host: 127.0.0.1
          ansible_port: %d
          upgrun_services:
%s]], n.name, n.port, table.concat(svcs, "\n"))
end
local INV = D .. "/inventory.yml"
H.writefile(INV, table.concat({
  "all:",
  "  vars:",
  "    ansible_user: " .. lab.user,
  "    ansible_ssh_private_key_file: " .. lab.key,
  "    upgrun_known_hosts: " .. lab.known_hosts,
  "    alpha_releases: [a1, a2]",
  "    beta_releases: [b1, b2]",
  "    alpha_from_release: a1",
  "    alpha_to_release: a2",
  "    beta_from_release: b1",
  "    alpha_code_switch: \"echo {release} > " .. D .. "/{node}/alpha/release\"",
  "    beta_code_switch: \"echo {release} > " .. D .. "/{node}/beta/release\"",
  "  children:",
  "    app:",
  "      hosts:",
  table.concat(host_lines, "\n"),
}, "\n") .. "\n")

-- Each product: a runbook over its prefixed view; two probes (service = the
-- product) on its service's health file on n1 and n2.
local SCENARIO = D .. "/cloud_layer.lua"
H.writefile(SCENARIO, string.format([==[
local scenario = require "upgrun.scenario"
local upgrade = require "upgrun.upgrade"
local D = %q
local PRODUCTS = { "alpha", "beta" }
local params = { projects = { type = "list", default = PRODUCTS, choices = PRODUCTS } }
for _, p in ipairs(PRODUCTS) do
  params[p .. "_serial"] = 1
  for k, v in pairs(upgrade.release_params(p, nil, p .. "_")) do params[k] = v end
end
params.beta_to_release = "b2"
local s = scenario.new { name = "cloud_layer", params = params }
for _, p in ipairs(PRODUCTS) do
  for _, n in ipairs({ "n1", "n2" }) do
    local f = string.format("%%s/%%s/%%s/%%s-api.healthy", D, n, p, p)
    s:probe { name = p .. " on " .. n, service = p, rate = 20, timeout = 1, stages = { "upgrade" },
              fn = function() local h = io.open(f); if h then h:close() end; return h ~= nil end }
  end
end
local views = {}
s:setup(function(ctx)
  for _, p in ipairs(PRODUCTS) do
    if upgrade.wants(ctx.params.projects, p) then
      views[p] = upgrade.view(ctx, p .. "_")
      upgrade.resolve_releases(ctx, p, views[p], nil)
    end
  end
end)
s:stage("before", function(ctx)
  ctx:step("start", function()
    for _, n in ipairs(ctx.inventory:group("app")) do
      for _, p in ipairs(PRODUCTS) do upgrade.start(ctx, n, p .. "-api", { timeout = 20 }) end
    end
  end)
end)
s:stage("upgrade", function(ctx)
  for _, p in ipairs(PRODUCTS) do
    local P = views[p]
    if P then
      ctx:step(p, function()
        local all = ctx.inventory:group("app")
        upgrade.parallel(ctx, all, function(n) upgrade.switch_code(ctx, p, n, P.to_release) end)
        upgrade.rolling(ctx, all, function(n)
          upgrade.restart_step(ctx, n, p .. "-api", { grace = 5, timeout = 20 })
        end, { serial = P.serial })
      end)
    end
  end
end)
s:stage("after", function(ctx)
  local all = ctx.inventory:group("app")
  for _, p in ipairs(PRODUCTS) do
    if views[p] then upgrade.check_running_release(ctx, all, views[p].to_release, { only = { p .. "-api" } }) end
  end
  for _, n in ipairs(all) do
    for _, p in ipairs(PRODUCTS) do upgrade.stop(ctx, n, p .. "-api", { grace = 5 }) end
  end
end)
return s
]==], D))

local function run(name, ...)
  local out = D .. "/out-" .. name
  local argv = { BIN, SCENARIO, "-i", INV, "-o", out, "--set", "steady_settle=0", ... }
  local r = assert(proc.run(argv, { timeout = 180 }))
  local f = io.open(out .. "/report.json")
  local doc = f and cjson.decode(f:read("a"))
  if f then f:close() end
  return r, doc, out
end

local union_length = T.union_length

T.case("two products rolled one after the other: releases, only-own checks, per-product downtime", function()
  local r, doc, out = run("both")
  T.ok(doc, "report written: " .. r.stderr)
  T.eq(r.status, 0, r.stdout .. r.stderr)
  T.valid_report(out)
  T.eq(doc.params.alpha_to_release, "a2", "alpha's pair from the inventory, written to its prefixed param")
  T.eq(doc.params.beta_from_release, "b1")
  local names = {}
  for _, c in ipairs(doc.checks) do names[c.name] = c.result end
  for _, n in ipairs({ "n1", "n2", "n3" }) do
    T.eq(names["alpha-api on " .. n .. " runs a2"], "passed")
    T.eq(names["beta-api on " .. n .. " runs b2"], "passed")
    T.eq(names["beta-api on " .. n .. " runs a2"], nil, "beta is not held to alpha's release")
  end
  -- per product: the union of its own probes' outages; all products: the union of all
  local per, all = {}, {}
  for _, p in ipairs(doc.probes) do
    per[p.service] = per[p.service] or {}
    for _, o in ipairs(p.outages) do table.insert(per[p.service], o); all[#all + 1] = o end
  end
  T.eq(#doc.downtime_per_service, 2)
  for i, want in ipairs({ "alpha", "beta" }) do
    local g = doc.downtime_per_service[i]
    T.eq(g.service, want)
    T.eq(#g.probes, 2)
    T.ok(g.downtime > 0, want .. "'s restarts were seen: " .. g.downtime)
    T.near(g.downtime, union_length(per[want]), 1e-6, want .. " = the union of its probes' outages")
    T.ok(g.downtime < (doc.probes[2 * i - 1].downtime + doc.probes[2 * i].downtime) + 1e-9, "not a sum")
  end
  T.eq(doc.overall.name, "all-products downtime")
  T.near(doc.overall.downtime, union_length(all), 1e-6, "all-products downtime = the union of every outage")
  T.ok(r.stdout:find("all-products downtime", 1, true) and r.stdout:find("downtime per product", 1, true),
    "the console names both: " .. r.stdout)
  local junit = T.read(out .. "/junit.xml")
  T.ok(junit:find('name="downtime.service.alpha"', 1, true) and junit:find('name="downtime.all_products"', 1, true),
    "junit.xml properties")
  T.ok(T.read(out .. "/report.html"):find("Downtime per product", 1, true), "report.html table")
end)

T.case("a subset of products; a release the product does not offer is refused by its prefixed name", function()
  local r, doc = run("beta-only", "--set", "projects=beta")
  T.eq(r.status, 0, r.stdout .. r.stderr)
  T.eq(doc.downtime_per_service[1].service, "alpha", "alpha's probes still reported")
  T.eq(doc.downtime_per_service[1].downtime, 0, "alpha was not restarted")
  T.ok(doc.downtime_per_service[2].downtime > 0, "beta was")
  r = run("bad", "--set", "alpha_to_release=b2")
  T.eq(r.status, 2)
  T.ok(r.stderr:find('--set alpha_to_release: the inventory offers no release "b2" (offered: a1, a2)', 1, true),
    r.stderr)
end)

lab:cleanup()
return T.done()
