-- test_fuzz_contract — a Lua-level fuzz of the entry points that read user
-- files: upgrun.yaml.decode/decode_all, upgrun.inventory.parse and
-- upgrun.openstack.config.resolve get randomly generated documents (valid
-- YAML trees of random shape and scalars, mutated copies with bytes cut,
-- swapped or inserted, and random bytes) and must keep their contract:
-- a result, or `nil, err` with err a table naming a kind and a message —
-- never a raw Lua error (yaml.decode may also return a plain nil for a null
-- or empty document, as documented). The seed is fixed (1) so a run is
-- reproducible; UPGRUN_FUZZ_SEED=N explores another one, UPGRUN_FUZZ_N=N sets
-- the number of documents per entry point.
local T = require "testlib"
local yaml = require "upgrun.yaml"
local inventory = require "upgrun.inventory"
local config = require "upgrun.openstack.config"

local seed = tonumber(os.getenv("UPGRUN_FUZZ_SEED") or "") or 1
local N = tonumber(os.getenv("UPGRUN_FUZZ_N") or "") or 400
math.randomseed(seed)
io.write(string.format("     seed %d (UPGRUN_FUZZ_SEED=%d replays it), %d documents each\n", seed, seed, N))

local R = math.random
local function pick(t) return t[R(#t)] end

local SCALARS = { "yes", "no", "~", "null", "", "0x1F", "0755", "1_000", "1.5", ".inf", "-.nan", "1e3", "1:30",
  "10.0.0.1", "9223372036854775808", "true", "'quoted'", '"dq\\n"', "!vault |\n  x", "*undefined", "&a x",
  "[1, 2", "{a: b", "|", ">-", "@", "`", "%", "?", "- x", "a: b: c", "\t", "ctl[1:3]", "cmp[a:c]", "[1:0]",
  "http://127.0.0.1:5000/v3", "RegionOne", "internal", "public", "v3applicationcredential", "password" }
local KEYS = { "all", "children", "hosts", "vars", "ansible_host", "ansible_port", "ansible_user", "clouds", "c",
  "auth", "auth_url", "username", "password", "project_name", "region_name", "interface", "verify",
  "auth_type", "profile", "<<", "_meta", "hostvars", "ctl1", "cmp1", "nova", "controllers", "ungrouped",
  "application_credential_id", "user_domain_name", "1", "true", "~", "" }

-- A random YAML text of nested mappings, sequences and scalars (block style).
local function gen_node(depth, indent)
  local r = R(10)
  local pad = string.rep("  ", indent)
  if depth <= 0 or r <= 3 then return " " .. pick(SCALARS) .. "\n" end
  local out = { "\n" }
  local n = R(0, 4)
  if r <= 7 then
    for _ = 1, n do out[#out + 1] = pad .. pick(KEYS) .. ":" .. gen_node(depth - 1, indent + 1) end
  else
    for _ = 1, n do out[#out + 1] = pad .. "-" .. gen_node(depth - 1, indent + 1) end
  end
  if n == 0 then return " " .. pick { "{}", "[]", "~" } .. "\n" end
  return table.concat(out)
end

local function gen_doc(top)
  local body = {}
  for _ = 1, R(1, 3) do body[#body + 1] = (top or pick(KEYS)) .. ":" .. gen_node(R(1, 6), 1) end
  return table.concat(body)
end

local function gen_json()
  local function v(d)
    local r = R(6)
    if d <= 0 or r == 1 then return pick { '1', '"x"', 'null', 'true', '[]', '{}', '"127.0.0.1"', '2201' } end
    if r <= 4 then
      local parts = {}
      for _ = 1, R(0, 3) do parts[#parts + 1] = string.format("%q", pick(KEYS)) .. ": " .. v(d - 1) end
      return "{" .. table.concat(parts, ", ") .. "}"
    end
    local parts = {}
    for _ = 1, R(0, 3) do parts[#parts + 1] = v(d - 1) end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  return "{" .. string.format("%q", pick { "_meta", "all", "controllers" }) .. ": " .. v(4) .. "}"
end

local function mutate(s)
  for _ = 1, R(1, 4) do
    local i = R(0, #s)
    local op = R(4)
    if op == 1 then s = s:sub(1, i) .. s:sub(i + R(1, 8))
    elseif op == 2 then s = s:sub(1, i) .. string.char(R(0, 255)) .. s:sub(i + 1)
    elseif op == 3 then s = s:sub(1, i) .. pick(SCALARS) .. s:sub(i + 1)
    else s = s:sub(1, i) .. pick { "\n", ":", "- ", "  ", "&x ", "*x", "{", "[", "]", "}", ",", "#" } .. s:sub(i + 1)
    end
  end
  return s
end

local function random_bytes()
  local b = {}
  for i = 1, R(0, 64) do b[i] = string.char(R(0, 255)) end
  return table.concat(b)
end

local function gen(kind)
  local r = R(10)
  local doc
  if kind == "inventory" and r <= 2 then doc = gen_json()
  elseif kind == "clouds" then doc = gen_doc("clouds")
  elseif kind == "inventory" then doc = gen_doc("all")
  else doc = gen_doc() end
  if r >= 9 then return random_bytes() end
  if r >= 5 then return mutate(doc) end
  return doc
end

-- Checks the contract of fn(...); returns an error message or nil.
local function contract(fn, null_ok, ...)
  local ok, res, err = pcall(fn, ...)
  if not ok then return "raised a raw error: " .. tostring(res) end
  if res == nil and not (null_ok and err == nil) then
    if type(err) ~= "table" then return "returned nil and a non-table error: " .. tostring(err) end
    if type(err.kind) ~= "string" or type(err.message) ~= "string" then
      return "returned an error without kind/message: " .. tostring(err.kind) .. "/" .. tostring(err.message)
    end
  end
  return nil
end

local function fuzz(kind, call)
  local broken = {}
  for _ = 1, N do
    local doc = gen(kind)
    local msg = call(doc)
    if msg and #broken < 3 then broken[#broken + 1] = string.format("%s\n       input: %q", msg, doc) end
  end
  T.ok(#broken == 0, kind .. " broke its nil, err contract (seed " .. seed .. "):\n     " ..
    table.concat(broken, "\n     "))
end

T.case("upgrun.yaml.decode / decode_all: a result or nil, err for any text", function()
  fuzz("yaml", function(doc)
    return contract(yaml.decode, true, doc, "fuzz.yml") or contract(yaml.decode_all, false, doc, "fuzz.yml")
  end)
end)

T.case("upgrun.inventory.parse: an inventory or nil, err for any text", function()
  fuzz("inventory", function(doc) return contract(inventory.parse, false, doc, "fuzz.yml") end)
end)

T.case("upgrun.openstack.config.resolve: a cloud or nil, err for any clouds.yaml", function()
  local path = os.tmpname()
  fuzz("clouds", function(doc)
    local f = assert(io.open(path, "wb"))
    f:write(doc)
    f:close()
    return contract(config.resolve, false, { cloud = "c", env = {}, files = { path }, secure_files = {} })
  end)
  os.remove(path)
end)

return T.done()
