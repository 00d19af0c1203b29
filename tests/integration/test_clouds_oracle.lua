-- test_clouds_oracle — upgrun.openstack.config against the real
-- openstacksdk (Debian's python3-openstacksdk, through os_config_oracle.py):
-- 48 generated cases (clouds.yaml in the working directory, in
-- $XDG_CONFIG_HOME/openstack, ~/.config/openstack, the XDG site directory or
-- OS_CLIENT_CONFIG_FILE; .yaml/.yml/.json; secure.yaml merged or holding a
-- whole cloud; OS_* clouds named by OS_CLOUD_NAME; dashed keys; domain_name
-- for both domains; regions lists; verify as a boolean or a CA path string;
-- insecure; cert/key; legacy tenant_/endpoint_type names; 32-digit ids)
-- must resolve to the same cloud, region, auth, interface, TLS verification
-- and client certificate; a case the SDK refuses upgrun must refuse too.
-- Seeded by UPGRUN_ORACLE_SEED (default 15).
local T = require "testlib"
local config = require "upgrun.openstack.config"
local proc = require "upgrun.proc"
local cjson = require "cjson"

local CASES = tonumber(os.getenv("UPGRUN_ORACLE_CASES") or "") or 48
local seed = tonumber(os.getenv("UPGRUN_ORACLE_SEED") or "") or 15
local root = T.tmpdir()

local rnd, pick, chance = T.rng(seed, 7)

local function writefile(path, text)
  assert(os.execute("mkdir -p '" .. path:match("^(.*)/[^/]*$") .. "'"))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- A YAML emitter for the generated mappings (keys in a fixed order).
local function emit(v, indent)
  if type(v) ~= "table" then
    if type(v) == "string" and v:sub(1, 1) == "!" then return v:sub(2) end -- raw YAML text
    if type(v) == "string" then return string.format("%q", v) end
    return tostring(v)
  end
  if v[1] ~= nil then
    local t = {}
    for i, x in ipairs(v) do t[i] = emit(x, nil) end
    return "[" .. table.concat(t, ", ") .. "]"
  end
  if indent == nil then -- inside a flow list: a flow mapping
    local t = {}
    for k, x in pairs(v) do t[#t + 1] = k .. ": " .. emit(x, nil) end
    table.sort(t)
    return "{" .. table.concat(t, ", ") .. "}"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local x = v[k]
    if type(x) == "table" and x[1] == nil then
      out[#out + 1] = indent .. k .. ":\n" .. emit(x, indent .. "  ")
    else
      out[#out + 1] = indent .. k .. ": " .. emit(x, indent)
    end
  end
  return table.concat(out, "\n")
end

local function dash(k) return chance(0.3) and (k:gsub("_", "-")) or k end

-- One cloud definition; `secure` gets what goes to secure.yaml.
local function gen_cloud(i, secure)
  local c, auth = {}, {}
  auth[dash("auth_url")] = "https://keystone" .. i .. ".example:5000/v3"
  local user_at_top = chance(0.2)
  if chance(0.8) then (user_at_top and c or auth).username = "user" .. rnd(9)
  else auth.user_id = "uid" .. rnd(99) end
  if secure then secure.auth = { password = "sec" .. rnd(99) } else auth.password = "pw" .. rnd(99) end
  local r = rnd(6)
  if r == 1 then auth[dash("project_name")] = "proj" .. rnd(9)
  elseif r == 2 then auth[dash("project_id")] = "!" .. string.rep(tostring(rnd(9)), 32) -- a 32-digit id
  elseif r == 3 then c[dash("tenant_name")] = "ten" .. rnd(9)
  elseif r == 4 then c[dash("project_name")] = "top" .. rnd(9) end
  local d = rnd(6)
  if d == 1 or d == 5 then c[dash("domain_name")] = "Dom" .. rnd(9)
  elseif d == 2 then auth[dash("domain_name")] = "ADom" .. rnd(9)
  elseif d == 3 then auth[dash("user_domain_name")] = "U" .. rnd(9); auth[dash("project_domain_name")] = "P" .. rnd(9)
  elseif d == 4 then c.domain_id = "did" .. rnd(9); auth.user_domain_id = "ud" .. rnd(9) end
  local g = rnd(6)
  if g == 1 then c.region_name = "R" .. rnd(9)
  elseif g == 2 then c.regions = { "r1", "r2" }; if chance(0.5) then c.region_name = "r3" end
  elseif g == 3 then c.regions = { { name = "rA", values = { interface = "internal" } }, "rB" }
  elseif g == 4 then c.region_name = "x1,x2" end
  local v = rnd(8)
  if v == 1 then c.verify = false
  elseif v == 2 then c.verify = "no" -- a string: a CA bundle path for requests
  elseif v == 3 then c.verify = "/etc/ssl/ca-" .. rnd(9) .. ".pem"
  elseif v == 4 then c.insecure = pick({ true, false })
  elseif v == 5 then c.cacert = "/tmp/ca" .. rnd(9) .. ".pem"; if chance(0.5) then c.verify = false end
  elseif v == 6 then c.verify = "!no" end -- plain `no`: YAML false
  if chance(0.25) then c.cert = "/tmp/client" .. rnd(9) .. ".crt"; if chance(0.6) then c.key = "/tmp/client.key" end end
  local f = rnd(5)
  if f == 1 then c.interface = pick({ "internal", "admin", "public" })
  elseif f == 2 then c[dash("endpoint_type")] = pick({ "internal", "admin" }) end
  if chance(0.3) then c[dash("auth_type")] = pick({ "password", "v3password" }) end
  if chance(0.2) then c.identity_api_version = 3 end
  c.auth = auth
  return c
end

local function gen_case(i)
  local d = root .. "/case" .. i
  local home, cwd = d .. "/home", d .. "/cwd"
  local env = { HOME = home, PATH = "/usr/bin:/bin" }
  local where = pick({ "cwd", "cwd", "xdg_home", "home", "site", "override", "env_only" })
  local ext = pick({ ".yaml", ".yaml", ".yml", ".json" })
  if where == "xdg_home" then env.XDG_CONFIG_HOME = d .. "/xdg" end
  if where == "site" then env.XDG_CONFIG_DIRS = d .. "/site" end
  local dirs = { cwd = cwd, xdg_home = d .. "/xdg/openstack", home = home .. "/.config/openstack",
    site = d .. "/site/openstack", override = d .. "/elsewhere" }
  local ncl = rnd(3)
  local clouds, secure = {}, {}
  local names = {}
  for k = 1, ncl do
    local name = "cloud" .. k
    names[#names + 1] = name
    local sec = chance(0.3) and {} or nil
    clouds[name] = gen_cloud(i * 10 + k, sec)
    if sec then secure[name] = sec end
  end
  if chance(0.15) then -- a cloud only in secure.yaml
    secure.onlysecure = gen_cloud(i * 10 + 9)
    names[#names + 1] = "onlysecure"
  end
  if where ~= "env_only" then
    local file = dirs[where] .. "/clouds" .. ext
    if ext == ".json" then writefile(file, cjson.encode({ clouds = clouds }):gsub('"!(%d+)"', "%1"))
    else writefile(file, "clouds:\n" .. emit(clouds, "  ") .. "\n") end
    if where == "override" then env.OS_CLIENT_CONFIG_FILE = file end
    if next(secure) then
      writefile(dirs[where] .. "/secure.yaml", "clouds:\n" .. emit(secure, "  ") .. "\n")
      if where == "override" then env.OS_CLIENT_SECURE_FILE = dirs[where] .. "/secure.yaml" end
    end
  end
  local cloud
  local e = rnd(6)
  if where == "env_only" or e == 1 then
    env.OS_AUTH_URL = "https://env.example:5000/v3"
    env.OS_USERNAME = "envuser"
    env.OS_PASSWORD = "envpw"
    if chance(0.5) then env.OS_PROJECT_NAME = "envproj" end
    if chance(0.4) then env.OS_DOMAIN_NAME = "EnvDom" end
    if chance(0.4) then env.OS_REGION_NAME = "EnvRegion" end
    if chance(0.3) then env.OS_INTERFACE = "internal" end
    if chance(0.3) then env.OS_CERT = "/tmp/env.crt"; env.OS_KEY = "/tmp/env.key" end
    if chance(0.3) then env.OS_CACERT = "/tmp/env-ca.pem" end
    if chance(0.4) then env.OS_CLOUD_NAME = "fromenv" end
  end
  if where ~= "env_only" then
    local c = rnd(#names > 1 and 5 or 3)
    if c == 1 or c >= 4 then cloud = pick(names)
    elseif c == 2 then env.OS_CLOUD = pick(names) end
  end
  if chance(0.15) and where ~= "env_only" then env.OS_REGION_NAME = "EnvR" end
  assert(os.execute("mkdir -p '" .. cwd .. "' '" .. home .. "'"))
  return { cwd = cwd, env = env, cloud = cloud, where = where }
end

local AUTH_TYPE = { password = "password", v3password = "password" }

-- upgrun's answer in the oracle's shape.
local function upgrun_view(c)
  local verify = c.verify ~= false and (c.cacert or true) or false
  local cert = c.cert and (c.key and { c.cert, c.key } or c.cert) or cjson.null
  return { name = c.name, region_name = c.region_name, auth = c.auth, interface = c.interface,
    auth_type = c.auth_type, verify = verify, cert = cert }
end

local function same(a, b)
  if type(a) == "table" and type(b) == "table" then
    for k, v in pairs(a) do if not same(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
  end
  if a == cjson.null then a = nil end
  if b == cjson.null then b = nil end
  return a == b
end

T.case(CASES .. " generated clouds.yaml / OS_* cases resolve as openstacksdk resolves them", function()
  local cases = {}
  for i = 1, CASES do cases[i] = gen_case(i) end
  local list = root .. "/cases.json"
  local wire = {}
  for i, c in ipairs(cases) do wire[i] = { cwd = c.cwd, env = c.env, cloud = c.cloud or cjson.null } end
  writefile(list, cjson.encode(wire))
  local r, err = proc.run({ "/usr/bin/python3", T.src("tests/integration/os_config_oracle.py"), list },
    { timeout = 300 })
  assert(r, tostring(err and err.message or err))
  T.eq(r.status, 0, "the openstacksdk oracle failed: " .. tostring(r.stderr))
  local answers = cjson.decode(r.stdout)
  local failed, refused, kinds, no_domain, reasons = {}, 0, {}, 0, {}
  for i, c in ipairs(cases) do
    kinds[c.where] = (kinds[c.where] or 0) + 1
    local want = answers[i]
    local got, gerr = config.resolve({ cloud = c.cloud, env = c.env, cwd = c.cwd })
    local label = string.format("case %d (%s, cloud %s)", i, c.cwd, tostring(c.cloud or c.env.OS_CLOUD))
    if not want.ok and got and want.error:find("must also provide either a %a+_domain_id or %a+_domain_name")
        and not (got.auth.user_domain_id or got.auth.user_domain_name) ~= not want.error:find("user_domain") then
      -- documented (docs/openstack.md): with no domain at all, upgrun logs in
      -- to Keystone's "default" domain where openstacksdk refuses
      no_domain = no_domain + 1
    elseif not want.ok then
      refused = refused + 1
      reasons[#reasons + 1] = want.error:sub(1, 80) .. " / " .. tostring(gerr):sub(1, 100)
      if got then failed[#failed + 1] = label .. ": openstacksdk refuses (" .. want.error .. "), upgrun resolves" end
    elseif not got then
      failed[#failed + 1] = label .. ": upgrun refuses: " .. tostring(gerr)
    else
      want.auth_type = AUTH_TYPE[want.auth_type] or want.auth_type
      if want.region_name == "" then want.region_name = nil end
      local view = upgrun_view(got)
      for _, k in ipairs({ "name", "region_name", "auth", "interface", "auth_type", "verify", "cert" }) do
        if not same(view[k], want[k]) then
          failed[#failed + 1] = string.format("%s: %s: openstacksdk %s, upgrun %s", label, k,
            cjson.encode(want[k]), cjson.encode(view[k] == nil and cjson.null or view[k]))
        end
      end
    end
  end
  local summary = {}
  for k, n in pairs(kinds) do summary[#summary + 1] = k .. "=" .. n end
  table.sort(summary)
  io.write("     cases: ", table.concat(summary, " "), "; refused by both: ", refused,
    "; no domain (default domain in upgrun): ", no_domain, "\n")
  for _, why in ipairs(reasons) do io.write("       refused: ", why, "\n") end
  if #failed > 0 then T.fail(#failed .. " disagreement(s):\n" .. table.concat(failed, "\n")) end
  os.execute("rm -rf '" .. root .. "'")
end)

return T.done()
