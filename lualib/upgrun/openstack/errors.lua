-- upgrun.openstack.errors — the error tables of the OpenStack clients: HTTP
-- errors decoded from OpenStack's error bodies (Nova's {"itemNotFound": {...}},
-- Keystone's {"error": {...}}, Neutron's {"NeutronError": {...}}, Glance's
-- plain-text or HTML pages), auth failures, protocol errors (a body that is
-- not the JSON it should be), and the scrubbing of secrets (tokens, passwords)
-- out of every message before it leaves the library.
local cjson = require "cjson"

local E = {}

-- Reuse the runtime's error metatable (its __tostring gives "kind: message")
-- so our errors print like the primitives' ones.
local errors = require "upgrun.errors"
E.MT = errors.MT

-- Builds an error {kind=, message=, ...fields} (upgrun.errors).
E.new = errors.new

-- Replaces every occurrence of each secret (strings of 4+ characters) in s by
-- "***", and blanks the values of anything that looks like a token or a
-- password header/field even when the secret is unknown to us.
-- (upgrun.redact.)
function E.scrub(s, secrets) return require("upgrun.redact").string(s, secrets, 4) end

-- Scrubs every string field of an error table in place; returns it.
function E.scrub_err(err, secrets)
  if type(err) ~= "table" then return err end
  for k, v in pairs(err) do
    if type(v) == "string" then err[k] = E.scrub(v, secrets) end
  end
  return err
end

-- The request id of a response (Nova, Keystone, Glance, Neutron all send
-- x-openstack-request-id; Nova also x-compute-request-id).
function E.request_id(headers)
  if type(headers) ~= "table" then return nil end
  local id = headers["x-openstack-request-id"] or headers["x-compute-request-id"]
  if type(id) == "table" then id = id[1] end
  return id
end

local function first_line_of_text(body)
  local text = body:gsub("<[^>]*>", " "):gsub("&[%w#]+;", " ")
  local lines = {}
  for line in text:gmatch("[^\r\n]+") do
    line = line:match("^%s*(.-)%s*$")
    if line ~= "" then lines[#lines + 1] = line end
    if #lines >= 3 then break end
  end
  local msg = table.concat(lines, " — ")
  if #msg > 300 then msg = msg:sub(1, 300) .. "…" end
  return msg
end

-- Extracts (message, fault name, code) from a decoded OpenStack error body.
local function decode_fault(doc)
  if type(doc) ~= "table" then return nil end
  -- Keystone: {"error": {"code": 401, "title": "Unauthorized", "message": "..."}}
  -- Neutron:  {"NeutronError": {"type": "...", "message": "...", "detail": ""}}
  -- Nova:     {"itemNotFound": {"code": 404, "message": "..."}} (any one key)
  -- Placement/others: {"errors": [{"status":..,"title":..,"detail":..}]}
  if type(doc.errors) == "table" and type(doc.errors[1]) == "table" then
    local e1 = doc.errors[1]
    return e1.detail or e1.title, e1.title or "errors", tonumber(e1.status)
  end
  if type(doc.message) == "string" then
    return doc.message, doc.title or doc.type, tonumber(doc.code)
  end
  for name, v in pairs(doc) do
    if type(v) == "table" and (type(v.message) == "string" or v.code or v.title) then
      local msg = v.message
      if type(msg) ~= "string" then msg = v.title or v.detail end
      if name == "NeutronError" and type(v.type) == "string" then
        return msg, v.type, tonumber(v.code)
      end
      return msg, name, tonumber(v.code)
    end
  end
  return nil
end

-- Turns an HTTP response with status >= 400 into an error table
-- {kind="http"|"auth", status=, message=, fault=, request_id=, method=, url=}.
-- A body that is not JSON (HAProxy's 503 page, Glance's text pages, a
-- truncated document) still gives an http error: its first lines become the
-- message and err.body_format = "text".
function E.from_response(resp, method, url, opts)
  opts = opts or {}
  local body = resp.body or ""
  local message, fault, format
  local ok, doc = pcall(cjson.decode, body)
  if ok and type(doc) == "table" then
    message, fault = decode_fault(doc)
    format = "json"
    -- Glance puts HTML line breaks in its JSON messages
    if type(message) == "string" then
      message = message:gsub("<[^>]*>", " "):gsub("%s+", " "):match("^%s*(.-)%s*$")
    end
  end
  if not message then
    message = body ~= "" and first_line_of_text(body) or nil
    format = format or (body ~= "" and "text" or "empty")
  end
  message = message or ("HTTP " .. tostring(resp.status))
  local kind = "http"
  if resp.status == 401 and opts.auth_kind then kind = "auth" end
  local rid = E.request_id(resp.headers)
  local err = E.new(kind, string.format("%s %s: %d %s%s", method, opts.path or url,
    resp.status, message, rid and (" [" .. rid .. "]") or ""), {
    status = resp.status,
    fault = fault,
    server_message = message,
    request_id = E.request_id(resp.headers),
    method = method,
    url = url,
    body_format = format,
  })
  return E.scrub_err(err, opts.secrets)
end

-- A 2xx response whose body should have been JSON but is not.
function E.protocol(resp, method, url, why, opts)
  opts = opts or {}
  return E.scrub_err(E.new("protocol", string.format("%s %s: %d with %s", method,
    opts.path or url, resp.status, why), {
    status = resp.status,
    request_id = E.request_id(resp.headers),
    method = method,
    url = url,
  }), opts.secrets)
end

return E
