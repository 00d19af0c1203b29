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
local errors = require "upgrun.errors"
local http = require "upgrun.http"
local openstack = require "upgrun.openstack"
local upgrade = require "upgrun.upgrade"

local s = upgrade.scenario {
  project = "keystone",
  name = "keystone_rolling",
  description = "Keystone rolling upgrade with minimal downtime (db_sync expand / migrate / contract)",
  strategies = { "rolling" },
  params = {
    group = { default = "controller", description = "inventory group of the Keystone nodes" },
    service = { default = "keystone", description = "the Keystone service in upgrun_services" },
    serial = { default = 1, description = "nodes upgraded at a time (the others serve)" },
    ledger_size = { default = 2, description = "users, projects and roles created before the upgrade" },
    api_downtime_budget = { default = 5, description = "max Keystone downtime (s) seen by each probe" },
  },
}

local P -- the parameters once known
local STAGES = { "before", "upgrade", "after" }
local function budget(p) return { max_downtime = p.api_downtime_budget } end

-- ---------------------------------------------------------------- probes

upgrade.probe(s, {
  name = "keystone token issue",
  fn = function(ctx)
    -- a connection of its own: each sample is a fresh password authentication
    local conn = openstack.from_config(ctx.cloud.config, { lazy = true, timeout = 5 })
    return conn.identity:authenticate()
  end,
  rate = { param = "issue_rate", default = 2, description = "tokens issued per second" },
  budget = budget, timeout = 5, max_in_flight = 4, stages = STAGES, baseline = "before",
})

upgrade.probe(s, {
  name = "keystone token validation",
  fn = function(ctx) return ctx.cloud.identity:validate(nil, { timeout = 5 }) end,
  rate = { param = "validate_rate", default = 10, description = "token validations per second" },
  budget = budget, timeout = 5, max_in_flight = 8, stages = STAGES, baseline = "before",
})

upgrade.probe(s, {
  name = "keystone version document",
  fn = function(ctx) return http.request { url = ctx.cloud.identity:endpoint("identity"), timeout = 2 } end,
  rate = { param = "version_rate", default = 10, description = "version-document requests per second" },
  expect = { 200 }, budget = budget, timeout = 5, max_in_flight = 8, stages = STAGES, baseline = "before",
})

s:setup(function(ctx)
  P = ctx.params
  if P.ledger_size < 1 then error("--set ledger_size: must be 1 or more, got " .. tostring(P.ledger_size), 0) end
  if not ctx.plan then
    local _ = ctx.cloud -- authenticate now: bad credentials stop the run before anything starts
  end
end)

-- ---------------------------------------------------------------- helpers

local function nodes(ctx) return upgrade.nodes_with(ctx, P.group, P.service) end
local function manage(ctx, args)
  local n = nodes(ctx)[1]
  ctx:step("keystone-manage " .. args, { nodes = { n } }, function()
    upgrade.tool(n, "keystone_manage", "keystone-manage", args, { check = true, timeout = 600 })
  end)
end

local function api(ctx, method, path, json)
  return ctx.cloud:request("identity", method, path, { json = json, timeout = 10 })
end

-- Secrets of this run, in memory only (never in the ledger or a report).
local passwords, tokens = {}, {}

local function random_password()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(18)
  f:close()
  return (b:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- A token of a ledger user, issued through the load balancer.
local function user_token(ctx, rec)
  local cfg = {}
  for k, v in pairs(ctx.cloud.config) do cfg[k] = v end
  cfg.auth = { auth_url = ctx.cloud.config.auth.auth_url, username = rec.data.name,
               password = passwords[rec.id], user_domain_id = "default",
               project_id = rec.data.project, project_domain_id = "default" }
  local conn, err = openstack.from_config(cfg, { timeout = 10 })
  if not conn then return nil, err end
  return conn.identity:get_token()
end

-- Every token issued before validates now, for its user.
local function tokens_validate(ctx, when)
  for _, t in ipairs(tokens) do
    ctx:check(string.format("token issued before the upgrade (%s) validates %s", t.who, when), function()
      local info, err = ctx.cloud.identity:validate(t.token, { timeout = 10 })
      if not info then return false, errors.message(err) end
      return info.user and info.user.id == t.user_id, "user " .. tostring(info.user and info.user.name)
    end)
  end
end

-- ---------------------------------------------------------------- before

s:stage("before", function(ctx)
  ctx:step("1. every keystone runs " .. P.from_release, { nodes = P.group }, function()
    upgrade.check_running_release(ctx, nodes(ctx), P.from_release)
    upgrade.check_code(ctx, "keystone", nodes(ctx), P.from_release)
  end)

  ctx:step("ledger: users, projects, roles", function()
    local tag = string.format("upgrun-%d-%d", os.time(), math.random(1000, 9999))
    for i = 1, P.ledger_size do
      local name = string.format("%s-%d", tag, i)
      local p = assert(api(ctx, "POST", "/projects", { project = { name = name, domain_id = "default" } })).project
      ctx.ledger:record("project", p.id, { name = name })
      local role = assert(api(ctx, "POST", "/roles", { role = { name = name } })).role
      ctx.ledger:record("role", role.id, { name = name })
      local pw = random_password()
      local u = assert(api(ctx, "POST", "/users", { user = { name = name, password = pw, domain_id = "default",
                                                             default_project_id = p.id } })).user
      passwords[u.id] = pw
      local rec = ctx.ledger:record("user", u.id, { name = name, project = p.id, role = role.id })
      assert(api(ctx, "PUT", string.format("/projects/%s/users/%s/roles/%s", p.id, u.id, role.id)))
      local tok = assert(user_token(ctx, rec))
      tokens[#tokens + 1] = { who = name, token = tok, user_id = u.id }
    end
    local admin = openstack.from_config(ctx.cloud.config, { timeout = 10 })
    tokens[#tokens + 1] = { who = "admin", token = assert(admin.identity:get_token()),
                            user_id = admin.identity:user_id() }
    tokens_validate(ctx, "before the upgrade")
  end)
end)

-- ---------------------------------------------------------------- upgrade

s:stage("upgrade", { needs = { "before" } }, function(ctx)
  ctx:step("1. code to " .. P.to_release, { nodes = P.group }, function()
    upgrade.parallel(ctx, nodes(ctx), function(n) upgrade.switch_code(ctx, "keystone", n, P.to_release) end)
  end)
  ctx:step { name = "2. database expand", hook_point = "db_migration", fn = function()
    manage(ctx, "db_sync --expand")
  end }
  ctx:step("3. database migrate", function() manage(ctx, "db_sync --migrate") end)
  ctx:step("4. keystone node by node", { nodes = P.group }, function()
    upgrade.rolling(ctx, nodes(ctx), function(n)
      upgrade.restart_step(ctx, n, P.service, { grace = P.stop_grace, timeout = P.service_timeout })
      tokens_validate(ctx, "with " .. n.name .. " on " .. P.to_release)
    end, { serial = P.serial })
  end)
  ctx:step { name = "5. database contract", hook_point = "db_contract", fn = function()
    manage(ctx, "db_sync --contract")
  end }
end)

-- ---------------------------------------------------------------- after

s:stage("after", function(ctx)
  ctx:step("every keystone runs " .. P.to_release, { nodes = P.group }, function()
    upgrade.check_running_release(ctx, nodes(ctx), P.to_release)
    upgrade.check_code(ctx, "keystone", nodes(ctx), P.to_release)
  end)

  ctx:step("tokens issued before still validate", function() tokens_validate(ctx, "after the upgrade") end)

  ctx:step("the ledger survived", function()
    for _, kind in ipairs({ "project", "role" }) do
      upgrade.survived(ctx, kind, function(rec, check)
        local doc, err = api(ctx, "GET", "/" .. kind .. "s/" .. rec.id)
        check(kind .. " still exists", doc ~= nil and doc[kind].name == rec.data.name, doc and doc[kind].name
          or errors.message(err))
      end)
    end
    upgrade.survived(ctx, "user", function(rec, check)
      local doc, err = api(ctx, "GET", "/users/" .. rec.id)
      check("user still exists", doc ~= nil and doc.user.name == rec.data.name,
        doc and doc.user.name or errors.message(err))
      local assigned, aerr = api(ctx, "HEAD", string.format("/projects/%s/users/%s/roles/%s", rec.data.project,
        rec.id, rec.data.role))
      check("user keeps its role on its project", assigned ~= nil, assigned and "assigned" or errors.message(aerr))
      if passwords[rec.id] then
        local tok, terr = user_token(ctx, rec)
        check("user still authenticates", tok ~= nil, tok and "new token issued" or errors.message(terr))
      else
        ctx:skip(rec.data.name .. " user still authenticates", "its password was only in the memory of an "
          .. "earlier run (resumed)")
      end
    end)
  end)
end)

-- ---------------------------------------------------------------- cleanup

for _, kind in ipairs({ "user", "project", "role" }) do
  s:cleanup(kind, function(ctx, rec)
    local ok, err = api(ctx, "DELETE", "/" .. kind .. "s/" .. rec.id)
    if not ok and err.status ~= 404 then error(errors.message(err), 0) end
  end)
end

return s
