-- upgrun.runner.jsonlog — `--events FILE`: every timeline event as one JSON
-- line, written as it happens (flushed per line, so `tail -f` follows a
-- run). A timeline listener like the console; secrets are redacted.
--
--   jsonlog.open(path, redact_fn) -> listener fn(event), close fn | nil, message
local cjson = require "cjson"

local M = {}

local function clean(v, redact, depth)
  if type(v) == "string" then return redact(v) end
  if type(v) ~= "table" or depth > 4 then
    if type(v) == "number" or type(v) == "boolean" then return v end
    return v == nil and nil or tostring(v)
  end
  local out = {}
  for k, x in pairs(v) do
    if type(x) ~= "function" and type(x) ~= "userdata" and type(x) ~= "thread" then
      out[k] = clean(x, redact, depth + 1)
    end
  end
  return out
end

function M.open(path, redact)
  local f, err = io.open(path, "w")
  if not f then return nil, "--events: cannot write " .. path .. ": " .. tostring(err) end
  local failed
  local function listener(e)
    if failed then return end
    local ok, line = pcall(cjson.encode, clean(e, redact, 0))
    if not ok then line = cjson.encode { kind = e.kind, t = e.t, error = "not encodable: " .. tostring(line) } end
    local wok, werr = f:write(line, "\n")
    if wok then wok, werr = f:flush() end
    if not wok then
      failed = true
      io.stderr:write("upgrun: --events ", path, ": ", tostring(werr), " (no more events written)\n")
    end
  end
  local function close() f:close() end
  return listener, close
end

return M
