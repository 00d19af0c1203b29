-- upgrun.watch — resource watches: the declaration (s:watch{...}) and the
-- table of watchable kinds. A watch follows every live ledger record of its
-- kind (upgrun.ledger) during the stages it covers: one list call per
-- interval for the whole kind (not one call per resource), every change of
-- the kind's fields recorded on the timeline, time outside the expected
-- state counted as the resource's unavailability, a resource that vanishes
-- failing the run. The running state lives in upgrun.watch_run.
--
--   s:watch{kind = "server", every = 2, stages = {...}, expect = {status = "ACTIVE"} | fn(rec, first),
--           budget = {max_unavailable = s}, page_size = 1000}
--
-- A kind is {fields = {{name, key}...} (the fields recorded), expect =
-- {names} (the fields whose value when the resource was first seen is its
-- expected state, unless the watch sets `expect`), list(ctx, watch) ->
-- array of raw items | nil, err, get(ctx, id) -> item | nil, err (confirms a
-- disappearance: err.status 404 or err.kind "not_found" means gone)}.
local M = {}
local Watch = {}
Watch.__index = Watch
M.Watch = Watch

local function is_gone(err)
  return type(err) == "table" and (err.status == 404 or err.kind == "not_found")
end
M.is_gone = is_gone

M.KINDS = {
  -- Nova servers: GET /servers/detail?all_tenants=True, pages of `page_size`
  -- (Nova's own max_limit is 1000), filtered here to the recorded ids.
  server = {
    fields = { { "status", "status" }, { "task_state", "OS-EXT-STS:task_state" },
               { "vm_state", "OS-EXT-STS:vm_state" }, { "power_state", "OS-EXT-STS:power_state" },
               { "host", "OS-EXT-SRV-ATTR:host" } },
    expect = { "status", "host" },
    list = function(ctx, w) return ctx.cloud.compute:list_servers { all_projects = true, limit = w.page_size } end,
    get = function(ctx, id) return ctx.cloud.compute:get_server(id) end,
  },
  -- Glance images: GET /v2/images (all visibilities the caller sees).
  image = {
    fields = { { "status", "status" }, { "visibility", "visibility" }, { "checksum", "checksum" } },
    expect = { "status" },
    list = function(ctx) return ctx.cloud.image:list() end,
    get = function(ctx, id) return ctx.cloud.image:get(id) end,
  },
}

local function fail(where, msg) error(where .. ": " .. msg, 0) end

-- Creates a watch from its declaration; `where` names the declaring line for
-- errors about a bad field.
function M.new(spec, where)
  where = where or "s:watch"
  if type(spec) ~= "table" then fail(where, "s:watch expects a table {kind = ..., every = ...}") end
  local kind = M.KINDS[spec.kind]
  if type(spec.kind) ~= "string" then fail(where, "s:watch: kind must be a string") end
  if not kind and not (spec.list and spec.fields) then
    local names = {}
    for k in pairs(M.KINDS) do names[#names + 1] = k end
    table.sort(names)
    fail(where, string.format("s:watch: unknown kind %q (known: %s; or give list and fields)", spec.kind,
                              table.concat(names, ", ")))
  end
  local w = setmetatable({ kind = spec.kind, name = spec.name or spec.kind }, Watch)
  w.every = spec.every or 2
  if type(w.every) ~= "number" or w.every <= 0 then fail(where, "s:watch " .. w.name .. ": every must be > 0") end
  w.page_size = spec.page_size or 1000
  if math.type(w.page_size) ~= "integer" or w.page_size < 1 then
    fail(where, "s:watch " .. w.name .. ": page_size must be a positive integer")
  end
  w.fields = spec.fields or kind.fields
  w.expect_fields = spec.expect_fields or (kind and kind.expect) or {}
  w.expect = spec.expect
  if w.expect ~= nil and type(w.expect) ~= "table" and type(w.expect) ~= "function" then
    fail(where, "s:watch " .. w.name .. ": expect must be a table of field = value or a function(rec, first)")
  end
  w.list = spec.list or kind.list
  w.get = spec.get or (kind and kind.get)
  w.stages = spec.stages
  if w.stages ~= nil and type(w.stages) ~= "table" then
    fail(where, "s:watch " .. w.name .. ": stages must be a list of stage names")
  end
  w.budget = spec.budget
  if w.budget ~= nil then
    if type(w.budget) ~= "table" then fail(where, "s:watch " .. w.name .. ": budget must be a table") end
    for k, v in pairs(w.budget) do
      if k ~= "max_unavailable" then
        fail(where, "s:watch " .. w.name .. ": unknown budget key " .. tostring(k) .. " (known: max_unavailable)")
      end
      if type(v) ~= "number" then fail(where, "s:watch " .. w.name .. ": budget max_unavailable must be a number") end
    end
  end
  w.description = spec.description
  w.where = where
  return w
end

-- Whether the watch runs during `stage` (no `stages` = every stage).
function Watch:runs_in(stage)
  if not self.stages then return true end
  for _, s in ipairs(self.stages) do if s == stage then return true end end
  return false
end

-- The recorded fields of a raw item: {name = value} (JSON null -> nil).
function Watch:fields_of(item)
  local out = {}
  for _, f in ipairs(self.fields) do
    local v = item[f[2]]
    if type(v) == "number" then v = math.tointeger(v) or v end -- cjson reads 1 as 1.0
    if v ~= nil and type(v) ~= "userdata" and type(v) ~= "table" then out[f[1]] = v end
  end
  return out
end

-- The expected state of a resource given its first observed fields:
-- {field = value} (the watch's `expect` table or function, else the kind's
-- expect fields as first seen).
function Watch:expected_of(rec, first)
  local e = self.expect
  if type(e) == "function" then e = e(rec, first) end
  if type(e) == "table" then
    local out = {}
    for k, v in pairs(e) do out[k] = v end
    return out
  end
  local out = {}
  for _, name in ipairs(self.expect_fields) do out[name] = first[name] end
  return out
end

return M
