-- upgrun.report.json — a JSON encoder for reports: keys sorted (stable,
-- diffable reports), arrays kept as arrays even when empty (json.array{}),
-- NaN/inf and json.null written as null, numbers to 10 significant digits
-- except large ones (>= 1e6: epoch seconds) which keep microseconds, arrays
-- of numbers on one line. Decoding uses cjson (require "cjson").
local M = {}

local ARRAY = { __name = "json.array" }

-- A value written as null (e.g. a hole in an array of numbers).
M.null = setmetatable({}, { __name = "json.null" })

local function scalar_array(t)
  for i = 1, #t do
    local x = t[i]
    if type(x) ~= "number" and x ~= M.null then return false end
  end
  return true
end

local function number(v)
  if math.type(v) == "integer" then return tostring(v) end
  local a = math.abs(v)
  if a >= 1e6 and a < 1e15 then
    return (string.format("%.6f", v):gsub("0+$", ""):gsub("%.$", ""))
  end
  return string.format("%.10g", v)
end

-- Marks t as an array (so an empty t is written [] rather than {}).
function M.array(t) return setmetatable(t or {}, ARRAY) end

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function esc(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  local n = #t
  if n == 0 then return false end
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

local function enc(v, out, indent, depth)
  local tv = type(v)
  if tv == "string" then out[#out + 1] = esc(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    else out[#out + 1] = number(v) end
  elseif tv == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif v == M.null then out[#out + 1] = "null"
  elseif tv == "table" then
    local nl = indent and ("\n" .. string.rep(indent, depth + 1)) or ""
    local close = indent and ("\n" .. string.rep(indent, depth)) or ""
    if is_array(v) then
      if #v == 0 then out[#out + 1] = "[]"; return end
      if indent and scalar_array(v) then nl, close = "", "" end
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = nl
        enc(v[i], out, indent, depth + 1)
      end
      out[#out + 1] = close .. "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) == "string" or type(k) == "number" then keys[#keys + 1] = tostring(k) end
      end
      table.sort(keys)
      if #keys == 0 then out[#out + 1] = "{}"; return end
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = nl .. esc(k) .. (indent and ": " or ":")
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        enc(val, out, indent, depth + 1)
      end
      out[#out + 1] = close .. "}"
    end
  else
    out[#out + 1] = "null" -- functions, userdata: not data
  end
end

-- Encodes v; `indent` (e.g. "  ") pretty-prints.
function M.encode(v, indent)
  local out = {}
  enc(v, out, indent, 0)
  return table.concat(out)
end

function M.decode(s) return require("cjson").decode(s) end

-- Writes v to path atomically (upgrun.fs.write_file: a temporary file,
-- every write checked, fsync, then rename). Returns true or nil, err; on
-- error the previous content of path is intact.
function M.write_file(path, v, indent)
  return require("upgrun.fs").write_file(path, M.encode(v, indent) .. "\n")
end

return M
