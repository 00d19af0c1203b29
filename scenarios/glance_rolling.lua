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
local errors = require "upgrun.errors"
local proc = require "upgrun.proc"
local upgrade = require "upgrun.upgrade"

local s = upgrade.scenario {
  project = "glance",
  name = "glance_rolling",
  description = "Glance rolling upgrade (glance-manage db expand / migrate / contract)",
  strategies = { "rolling" },
  params = {
    group = { default = "controller", description = "inventory group of the glance-api nodes" },
    service = { default = "glance-api", description = "the Glance API service in upgrun_services" },
    serial = { default = 1, description = "nodes upgraded at a time (the others serve)" },
    probe_image = { default = "", description = "an image the download probe reads; default: inventory var "
                      .. "glance_probe_image" },
    image_kib = { default = 1024, description = "size of the image uploaded before the upgrade (KiB)" },
    api_downtime_budget = { default = 5, description = "max Glance downtime (s) seen by each probe" },
  },
}

local P -- the parameters once known
local STAGES = { "before", "upgrade", "after" }
local function budget(p) return { max_downtime = p.api_downtime_budget } end

-- ---------------------------------------------------------------- probes

upgrade.probe(s, {
  name = "glance image list",
  fn = function(ctx) return ctx.cloud.image:request("GET", "/images?limit=5") end,
  rate = { param = "list_rate", default = 5, description = "image lists per second" },
  budget = budget, timeout = 5, max_in_flight = 4, stages = STAGES, baseline = "before",
})

local probe_image_id
upgrade.probe(s, {
  name = "glance image download",
  fn = function(ctx)
    if not probe_image_id then
      local img, err = ctx.cloud.image:find(P.probe_image)
      if not img then return nil, err end
      probe_image_id = img.id
    end
    local data, err = ctx.cloud.image:request("GET", "/images/" .. probe_image_id .. "/file", { raw = true })
    if not data then return nil, err end
    if #data == 0 then return nil, "empty download" end
    return true
  end,
  rate = { param = "download_rate", default = 2, description = "image downloads per second" },
  budget = budget, timeout = 10, max_in_flight = 4, stages = STAGES, baseline = "before",
})

s:setup(function(ctx)
  P = ctx.params
  P.probe_image = upgrade.setting(ctx, "glance", "probe_image", nil)
  if not P.probe_image and not ctx.plan then
    error("--set probe_image: needed (an image the download probe reads), or inventory var glance_probe_image", 0)
  end
  if not ctx.plan then
    local _ = ctx.cloud -- authenticate now: bad credentials stop the run before anything starts
  end
end)

-- ---------------------------------------------------------------- helpers

local function nodes(ctx) return upgrade.nodes_with(ctx, P.group, P.service) end
local function manage(ctx, args)
  local n = nodes(ctx)[1]
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

-- ---------------------------------------------------------------- before

s:stage("before", function(ctx)
  ctx:step("1. every glance-api runs " .. P.from_release, { nodes = P.group }, function()
    upgrade.check_running_release(ctx, nodes(ctx), P.from_release)
    upgrade.check_code(ctx, "glance", nodes(ctx), P.from_release)
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
end)

-- ---------------------------------------------------------------- upgrade

s:stage("upgrade", { needs = { "before" } }, function(ctx)
  ctx:step("1. code to " .. P.to_release, { nodes = P.group }, function()
    upgrade.parallel(ctx, nodes(ctx), function(n) upgrade.switch_code(ctx, "glance", n, P.to_release) end)
  end)
  ctx:step { name = "2. database expand", hook_point = "db_migration", fn = function() manage(ctx, "db expand") end }
  ctx:step("3. database migrate", function() manage(ctx, "db migrate") end)
  ctx:step("4. glance-api node by node", { nodes = P.group }, function()
    upgrade.rolling(ctx, nodes(ctx), function(n)
      upgrade.restart_step(ctx, n, P.service, { grace = P.stop_grace, timeout = P.service_timeout })
    end, { serial = P.serial })
  end)
  ctx:step { name = "5. database contract", hook_point = "db_contract", fn = function() manage(ctx, "db contract") end }
end)

-- ---------------------------------------------------------------- after

s:stage("after", function(ctx)
  ctx:step("every glance-api runs " .. P.to_release, { nodes = P.group }, function()
    upgrade.check_running_release(ctx, nodes(ctx), P.to_release)
    upgrade.check_code(ctx, "glance", nodes(ctx), P.to_release)
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
end)

-- ---------------------------------------------------------------- cleanup

s:cleanup("image", function(ctx, rec)
  local ok, err = ctx.cloud.image:delete(rec.id)
  if not ok and err.status ~= 404 then error(errors.message(err), 0) end
end)

return s
