-- upgrun.keystone.runbook — Keystone's minimal-downtime upgrade ("Upgrading with
-- minimal downtime" in the Keystone admin guide) as reusable pieces: its
-- parameters, its probes, and the body of each stage. scenarios/keystone_rolling.lua
-- is these pieces in three stages; scenarios/cloud_upgrade.lua calls the same
-- pieces between Glance's and Nova's.
--
--   local keystone = require "upgrun.keystone.runbook"
--   local s = upgrade.scenario { project = "keystone", params = keystone.params(), ... }
--   local ks = keystone.declare(s, { prefix = "", enabled = fn(ctx) })
--        -- probes (rates as params), setup, cleanup; prefix "keystone_" declares
--        -- the params prefixed (several projects in one scenario)
--   ks:before(ctx)    1. every keystone runs the old release; ledger of users,
--                     projects, roles, assignments; tokens issued (in memory only)
--   ks:upgrade(ctx)   1. code, 2. db_sync --expand (hook point db_migration),
--                     3. --migrate, 4. node by node behind the balancer (tokens
--                     validate after each), 5. --contract (hook point db_contract)
--   ks:after(ctx)     every keystone runs the new release; tokens still validate;
--                     the ledger survived (each user still authenticates)
--
-- Site facts (inventory, prefix keystone_): keystone_code_switch, keystone_code_current,
-- keystone_manage, keystone_from_release / _to_release, upgrun_services.keystone with
-- drain/undrain for the balancer. Probes go through the cloud's auth_url.
local errors = require "upgrun.errors"
local http = require "upgrun.http"
local openstack = require "upgrun.openstack"
local upgrade = require "upgrun.upgrade"

local M = {}
local Runbook = {}
Runbook.__index = Runbook

local STAGES = { "before", "upgrade", "after" }

-- The runbook's own parameters (unprefixed names).
function M.params()
  return {
    group = { default = "controller", description = "inventory group of the Keystone nodes" },
    service = { default = "keystone", description = "the Keystone service in upgrun_services" },
    serial = { default = 1, description = "nodes upgraded at a time (the others serve)" },
    ledger_size = { default = 2, description = "users, projects and roles created before the upgrade" },
    api_downtime_budget = { default = 5, description = "max Keystone downtime (s) seen by each probe" },
  }
end

-- Declares the probes, the setup and the clean-up on s; with opts.prefix
-- also the parameters (prefixed). opts.enabled(ctx): false turns the probes
-- off and skips the setup (a cloud run without this project).
function M.declare(s, opts)
  opts = opts or {}
  local pre = opts.prefix or ""
  local self = setmetatable({ prefix = pre, probes = {}, passwords = {}, tokens = {} }, Runbook)
  if pre ~= "" then s:declare_params(M.params(), pre) end
  local function budget(p) return { max_downtime = p[pre .. "api_downtime_budget"] } end
  local function probe(spec)
    spec.rate.param = pre .. spec.rate.param
    spec.budget, spec.timeout, spec.stages, spec.baseline = budget, spec.timeout or 5, STAGES, "before"
    spec.service = "identity"
    self.probes[#self.probes + 1] = upgrade.probe(s, spec)
  end

  probe {
    name = "keystone token issue", kind = "http", url = "POST identity /v3/auth/tokens",
    fn = function(ctx)
      -- a connection of its own: each sample is a fresh password authentication
      local conn = openstack.from_config(ctx.cloud.config, { lazy = true, timeout = 5 })
      return conn.identity:authenticate()
    end,
    rate = { param = "issue_rate", default = 2, description = "tokens issued per second" },
    max_in_flight = 4,
  }
  probe {
    name = "keystone token validation", kind = "http", url = "GET identity /v3/auth/tokens",
    fn = function(ctx) return ctx.cloud.identity:validate(nil, { timeout = 5 }) end,
    rate = { param = "validate_rate", default = 10, description = "token validations per second" },
    max_in_flight = 8,
  }
  probe {
    name = "keystone version document", kind = "http", url = "GET identity /v3",
    fn = function(ctx) return http.request { url = ctx.cloud.identity:endpoint("identity"), timeout = 2 } end,
    rate = { param = "version_rate", default = 10, description = "version-document requests per second" },
    expect = { 200 }, max_in_flight = 8,
  }

  s:setup(function(ctx)
    if opts.enabled and not opts.enabled(ctx) then
      for _, p in ipairs(self.probes) do p.stages = {} end
      return
    end
    self.P = upgrade.view(ctx, pre)
    local P = self.P
    if P.ledger_size < 1 then
      error("--set " .. pre .. "ledger_size: must be 1 or more, got " .. tostring(P.ledger_size), 0)
    end
    if not ctx.plan then
      local _ = ctx.cloud -- authenticate now: bad credentials stop the run before anything starts
    end
  end)

  for _, kind in ipairs({ "user", "project", "role" }) do
    s:cleanup(kind, function(ctx, rec)
      local ok, err = ctx.cloud:request("identity", "DELETE", "/" .. kind .. "s/" .. rec.id, { timeout = 10 })
      if not ok and err.status ~= 404 then error(errors.message(err), 0) end
    end)
  end
  return self
end

-- ---------------------------------------------------------------- helpers

function Runbook:nodes(ctx) return upgrade.nodes_with(ctx, self.P.group, self.P.service) end

function Runbook:manage(ctx, args)
  local n = self:nodes(ctx)[1]
  ctx:step("keystone-manage " .. args, { nodes = { n } }, function()
    upgrade.tool(n, "keystone_manage", "keystone-manage", args, { check = true, timeout = 600 })
  end)
end

local function api(ctx, method, path, json)
  return ctx.cloud:request("identity", method, path, { json = json, timeout = 10 })
end

local function random_password()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(18)
  f:close()
  return (b:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- A token of a ledger user, issued through the load balancer.
function Runbook:user_token(ctx, rec)
  local cfg = {}
  for k, v in pairs(ctx.cloud.config) do cfg[k] = v end
  cfg.auth = { auth_url = ctx.cloud.config.auth.auth_url, username = rec.data.name,
               password = self.passwords[rec.id], user_domain_id = "default",
               project_id = rec.data.project, project_domain_id = "default" }
  local conn, err = openstack.from_config(cfg, { timeout = 10 })
  if not conn then return nil, err end
  return conn.identity:get_token()
end

-- Every token issued before validates now, for its user.
function Runbook:tokens_validate(ctx, when)
  for _, t in ipairs(self.tokens) do
    ctx:check(string.format("token issued before the upgrade (%s) validates %s", t.who, when), function()
      local info, err = ctx.cloud.identity:validate(t.token, { timeout = 10 })
      if not info then return false, errors.message(err) end
      return info.user and info.user.id == t.user_id, "user " .. tostring(info.user and info.user.name)
    end)
  end
end

function Runbook:check_release(ctx, release)
  local P = self.P
  upgrade.check_running_release(ctx, self:nodes(ctx), release, { only = { P.service } })
  upgrade.check_code(ctx, "keystone", self:nodes(ctx), release)
end

-- ---------------------------------------------------------------- stages

function Runbook:before(ctx)
  local P = self.P
  ctx:step("1. every keystone runs " .. P.from_release, { nodes = P.group }, function()
    self:check_release(ctx, P.from_release)
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
      self.passwords[u.id] = pw -- secrets of this run, in memory only (never in the ledger or a report)
      local rec = ctx.ledger:record("user", u.id, { name = name, project = p.id, role = role.id })
      assert(api(ctx, "PUT", string.format("/projects/%s/users/%s/roles/%s", p.id, u.id, role.id)))
      local tok = assert(self:user_token(ctx, rec))
      self.tokens[#self.tokens + 1] = { who = name, token = tok, user_id = u.id }
    end
    local admin = openstack.from_config(ctx.cloud.config, { timeout = 10 })
    self.tokens[#self.tokens + 1] = { who = "admin", token = assert(admin.identity:get_token()),
                                      user_id = admin.identity:user_id() }
    self:tokens_validate(ctx, "before the upgrade")
  end)
end

function Runbook:upgrade(ctx)
  local P = self.P
  ctx:step("1. code to " .. P.to_release, { nodes = P.group }, function()
    upgrade.parallel(ctx, self:nodes(ctx), function(n) upgrade.switch_code(ctx, "keystone", n, P.to_release) end)
  end)
  ctx:step { name = "2. database expand", hook_point = "db_migration", fn = function()
    self:manage(ctx, "db_sync --expand")
  end }
  ctx:step("3. database migrate", function() self:manage(ctx, "db_sync --migrate") end)
  ctx:step("4. keystone node by node", { nodes = P.group }, function()
    upgrade.rolling(ctx, self:nodes(ctx), function(n)
      upgrade.restart_step(ctx, n, P.service, { grace = P.stop_grace, timeout = P.service_timeout })
      self:tokens_validate(ctx, "with " .. n.name .. " on " .. P.to_release)
    end, { serial = P.serial })
  end)
  ctx:step { name = "5. database contract", hook_point = "db_contract", fn = function()
    self:manage(ctx, "db_sync --contract")
  end }
end

function Runbook:after(ctx)
  local P = self.P
  ctx:step("every keystone runs " .. P.to_release, { nodes = P.group }, function()
    self:check_release(ctx, P.to_release)
  end)

  ctx:step("tokens issued before still validate", function() self:tokens_validate(ctx, "after the upgrade") end)

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
      if self.passwords[rec.id] then
        local tok, terr = self:user_token(ctx, rec)
        check("user still authenticates", tok ~= nil, tok and "new token issued" or errors.message(terr))
      else
        ctx:skip(rec.data.name .. " user still authenticates", "its password was only in the memory of an "
          .. "earlier run (resumed)")
      end
    end)
  end)
end

return M
