-- upgrun.glance.runbook — Glance's rolling upgrade ("Rolling upgrades" in the Glance
-- admin guide: glance-manage db expand / migrate / contract) as reusable pieces: its
-- parameters, its probes, and the body of each stage. scenarios/glance_rolling.lua is
-- these pieces in three stages; scenarios/cloud_upgrade.lua calls the same pieces
-- between Keystone's and Nova's.
--
--   local glance = require "upgrun.glance.runbook"
--   local s = upgrade.scenario { project = "glance", params = glance.params(), ... }
--   local gl = glance.declare(s, { prefix = "", enabled = fn(ctx) })
--   gl:before(ctx)    1. every glance-api runs the old release; an image uploaded,
--                     its size and checksums in the ledger
--   gl:upgrade(ctx)   1. code, 2. db expand (hook point db_migration), 3. db migrate,
--                     4. glance-api node by node behind the balancer, 5. db contract
--   gl:after(ctx)     every glance-api runs the new release; the image is still
--                     active, same size and checksums, downloads with the same sha512
--
-- Site facts (inventory, prefix glance_): glance_code_switch, glance_code_current,
-- glance_manage, glance_from_release / _to_release, glance_probe_image, and
-- upgrun_services.glance-api with drain/undrain. Probes go through the cloud's image
-- endpoint.
local errors = require "upgrun.errors"
local proc = require "upgrun.proc"
local upgrade = require "upgrun.upgrade"

local M = {}
local Runbook = {}
Runbook.__index = Runbook

local STAGES = { "before", "upgrade", "after" }

-- The runbook's own parameters (unprefixed names).
function M.params()
  return {
    group = { default = "controller", description = "inventory group of the glance-api nodes" },
    service = { default = "glance-api", description = "the Glance API service in upgrun_services" },
    serial = { default = 1, description = "nodes upgraded at a time (the others serve)" },
    probe_image = { default = "", description = "an image the download probe reads; default: inventory var "
                      .. "glance_probe_image" },
    image_kib = { default = 1024, description = "size of the image uploaded before the upgrade (KiB)" },
    api_downtime_budget = { default = 5, description = "max Glance downtime (s) seen by each probe" },
  }
end

-- Declares the probes, the setup and the clean-up on s; with opts.prefix
-- also the parameters (prefixed). opts.enabled(ctx): false turns the probes
-- off and skips the setup (a cloud run without this project).
function M.declare(s, opts)
  opts = opts or {}
  local pre = opts.prefix or ""
  local self = setmetatable({ prefix = pre, probes = {} }, Runbook)
  if pre ~= "" then s:declare_params(M.params(), pre) end
  local function budget(p) return { max_downtime = p[pre .. "api_downtime_budget"] } end
  local function probe(spec)
    spec.rate.param = pre .. spec.rate.param
    spec.budget, spec.stages, spec.baseline, spec.service, spec.kind = budget, STAGES, "before", "image", "http"
    self.probes[#self.probes + 1] = upgrade.probe(s, spec)
  end

  probe {
    name = "glance image list", url = "GET image /v2/images?limit=5",
    fn = function(ctx) return ctx.cloud.image:request("GET", "/images?limit=5") end,
    rate = { param = "list_rate", default = 5, description = "image lists per second" },
    timeout = 5, max_in_flight = 4,
  }
  local probe_image_id
  probe {
    name = "glance image download", url = "GET image /v2/images/{probe_image}/file",
    fn = function(ctx)
      if not probe_image_id then
        local img, err = ctx.cloud.image:find(self.P.probe_image)
        if not img then return nil, err end
        probe_image_id = img.id
      end
      local data, err = ctx.cloud.image:request("GET", "/images/" .. probe_image_id .. "/file", { raw = true })
      if not data then return nil, err end
      if #data == 0 then return nil, "empty download" end
      return true
    end,
    rate = { param = "download_rate", default = 2, description = "image downloads per second" },
    timeout = 10, max_in_flight = 4,
  }

  s:setup(function(ctx)
    if opts.enabled and not opts.enabled(ctx) then
      for _, p in ipairs(self.probes) do p.stages = {} end
      return
    end
    self.P = upgrade.view(ctx, pre)
    local P = self.P
    P.probe_image = upgrade.setting(ctx, "glance", "probe_image", nil, P)
    if not P.probe_image and not ctx.plan then
      error("--set " .. pre .. "probe_image: needed (an image the download probe reads), or inventory var "
        .. "glance_probe_image", 0)
    end
    if not ctx.plan then
      local _ = ctx.cloud -- authenticate now: bad credentials stop the run before anything starts
    end
  end)

  s:cleanup("image", function(ctx, rec)
    local ok, err = ctx.cloud.image:delete(rec.id)
    if not ok and err.status ~= 404 then error(errors.message(err), 0) end
  end)
  return self
end

-- ---------------------------------------------------------------- helpers

function Runbook:nodes(ctx) return upgrade.nodes_with(ctx, self.P.group, self.P.service) end

function Runbook:manage(ctx, args)
  local n = self:nodes(ctx)[1]
  ctx:step("glance-manage " .. args, { nodes = { n } }, function()
    upgrade.tool(n, "glance_manage", "glance-manage", args, { check = true, timeout = 600 })
  end)
end

-- The sha512 (hex) of bytes, by sha512sum (Glance's default os_hash_algo).
local function sha512(data)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  local r, err = proc.run({ "sha512sum", path }, { timeout = 60 })
  os.remove(path)
  if not r or r.status ~= 0 then error("sha512sum: " .. tostring(err or (r and r.stderr)), 0) end
  return r.stdout:match("^(%x+)")
end

local function random_bytes(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(n)
  f:close()
  return b
end

function Runbook:check_release(ctx, release)
  upgrade.check_running_release(ctx, self:nodes(ctx), release, { only = { self.P.service } })
  upgrade.check_code(ctx, "glance", self:nodes(ctx), release)
end

-- ---------------------------------------------------------------- stages

function Runbook:before(ctx)
  local P = self.P
  ctx:step("1. every glance-api runs " .. P.from_release, { nodes = P.group }, function()
    self:check_release(ctx, P.from_release)
  end)

  ctx:step("persistent image", function()
    local data = random_bytes(math.floor(P.image_kib * 1024))
    local name = string.format("upgrun-persist-%d-%d", os.time(), math.random(1000, 9999))
    local img = assert(ctx.cloud.image:upload { name = name, data = data })
    local sum = sha512(data)
    ctx.ledger:record("image", img.id, { name = name, size = img.size, checksum = img.checksum,
                                         os_hash_value = img.os_hash_value, sha512 = sum })
    ctx:check(name .. " is active with its size", img.status == "active" and img.size == #data,
      string.format("%s, %s bytes", tostring(img.status), tostring(img.size)))
    ctx:check(name .. " sha512 is Glance's os_hash_value", img.os_hash_algo ~= "sha512" or img.os_hash_value == sum,
      tostring(img.os_hash_algo))
  end)
end

function Runbook:upgrade(ctx)
  local P = self.P
  ctx:step("1. code to " .. P.to_release, { nodes = P.group }, function()
    upgrade.parallel(ctx, self:nodes(ctx), function(n) upgrade.switch_code(ctx, "glance", n, P.to_release) end)
  end)
  ctx:step { name = "2. database expand", hook_point = "db_migration", fn = function()
    self:manage(ctx, "db expand")
  end }
  ctx:step("3. database migrate", function() self:manage(ctx, "db migrate") end)
  ctx:step("4. glance-api node by node", { nodes = P.group }, function()
    upgrade.rolling(ctx, self:nodes(ctx), function(n)
      upgrade.restart_step(ctx, n, P.service, { grace = P.stop_grace, timeout = P.service_timeout })
    end, { serial = P.serial })
  end)
  ctx:step { name = "5. database contract", hook_point = "db_contract", fn = function()
    self:manage(ctx, "db contract")
  end }
end

function Runbook:after(ctx)
  local P = self.P
  ctx:step("every glance-api runs " .. P.to_release, { nodes = P.group }, function()
    self:check_release(ctx, P.to_release)
  end)

  ctx:step("the image survived", function()
    local image = ctx.cloud.image
    upgrade.survived(ctx, "image", function(rec, check)
      local img, err = image:get(rec.id)
      check("still exists", img ~= nil and img.status == "active", img and img.status or errors.message(err))
      if not img then return end
      check("same size and checksums", img.size == rec.data.size and img.checksum == rec.data.checksum
        and img.os_hash_value == rec.data.os_hash_value, string.format("size %s, checksum %s", tostring(img.size),
        tostring(img.checksum)))
      local data, derr = image:request("GET", "/images/" .. rec.id .. "/file", { raw = true, timeout = 60 })
      local sum = data and sha512(data)
      check("downloads with the same sha512", sum == rec.data.sha512,
        data and string.format("%d bytes, sha512 %s...", #data, tostring(sum):sub(1, 16)) or errors.message(derr))
    end)
  end)
end

return M
