-- upgrun.openstack.glance — the Image (Glance v2) client of a connection:
-- find an image by name, get, list (following `next`), upload a small image
-- (create the record, PUT its data, read it back), find-or-upload, delete.
local E = require "upgrun.openstack.errors"

local M = {}
local Image = {}
Image.__index = Image

function M.new(session)
  return setmetatable({ session = session }, Image)
end

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- The v2 base URL (the catalog usually holds the unversioned root).
function Image:base()
  local base, err = self.session:endpoint("image")
  if not base then return nil, err end
  if base:match("/v2$") then return base end
  return base .. "/v2"
end

function Image:request(method, path, spec)
  local base, err = self:base()
  if not base then return nil, err end
  spec = spec or {}
  spec.service, spec.method, spec.url = "image", method, base .. path
  return self.session:request(spec)
end

-- Lists images, following the `next` links. filters: name=, status=,
-- visibility=, limit= (page size), ...
function Image:list(filters)
  local parts = {}
  local keys = {}
  for k in pairs(filters or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = urlencode(k) .. "=" .. urlencode(filters[k]) end
  local path = "/images" .. (#parts > 0 and ("?" .. table.concat(parts, "&")) or "")
  local out = {}
  for _ = 1, 1000 do
    local doc, err = self:request("GET", path)
    if not doc then return nil, err end
    if type(doc) ~= "table" or type(doc.images) ~= "table" then
      return nil, E.new("protocol", "GET /v2" .. path .. ": no 'images' list in the response")
    end
    for _, im in ipairs(doc.images) do out[#out + 1] = im end
    -- `next` is "/v2/images?marker=..." relative to the root
    if type(doc.next) ~= "string" or #doc.images == 0 then break end
    path = doc.next:gsub("^/v2", "")
  end
  return out
end

-- Finds the image with this exact name (or id). nil, err kind "not_found"
-- when none, kind "ambiguous" (with err.ids) when several share the name.
function Image:find(name_or_id)
  local list, err = self:list({ name = name_or_id })
  if not list then return nil, err end
  if #list == 1 then return list[1] end
  if #list > 1 then
    local ids = {}
    for _, im in ipairs(list) do ids[#ids + 1] = im.id end
    return nil, E.new("ambiguous", string.format("%d images are named %q: %s", #list, name_or_id,
      table.concat(ids, ", ")), { ids = ids })
  end
  local im = self:get(name_or_id)
  if im then return im end
  return nil, E.new("not_found", "no image named " .. tostring(name_or_id))
end

function Image:get(id)
  return self:request("GET", "/images/" .. urlencode(id))
end

-- Uploads a small image held in memory. spec: name, data (the bytes),
-- disk_format (raw), container_format (bare), visibility, min_disk, min_ram,
-- properties (extra fields). Returns the image record (status active) or
-- nil, err; on a failed upload the half-made record is deleted.
function Image:upload(spec)
  local rec = {
    name = spec.name, disk_format = spec.disk_format or "raw",
    container_format = spec.container_format or "bare", visibility = spec.visibility,
    min_disk = spec.min_disk, min_ram = spec.min_ram,
  }
  for k, v in pairs(spec.properties or {}) do rec[k] = v end
  local img, err = self:request("POST", "/images", { json = rec })
  if not img then return nil, err end
  local ok
  ok, err = self:request("PUT", "/images/" .. urlencode(img.id) .. "/file", {
    body = spec.data or "", content_type = "application/octet-stream", raw = true,
    timeout = spec.timeout,
  })
  if not ok then
    self:delete(img.id)
    return nil, err
  end
  return self:get(img.id)
end

-- The image named spec.name, uploading it when absent.
function Image:ensure(spec)
  local img, err = self:find(spec.name)
  if img then return img end
  if err.kind ~= "not_found" then return nil, err end
  return self:upload(spec)
end

function Image:delete(id)
  local ok, err = self:request("DELETE", "/images/" .. urlencode(id), { raw = true })
  if not ok then return nil, err end
  return true
end

return M
