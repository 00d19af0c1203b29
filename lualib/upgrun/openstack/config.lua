-- upgrun.openstack.config — resolves a cloud's settings the way openstacksdk
-- does: the first clouds.yaml found (OS_CLIENT_CONFIG_FILE, then ./, then
-- ~/.config/openstack/, then /etc/openstack/; .yaml, .yml or .json), the first
-- secure.yaml found likewise (OS_CLIENT_SECURE_FILE first) deep-merged over it,
-- an "envvars" cloud made from the OS_* environment variables, the cloud chosen
-- by name (argument, then OS_CLOUD, then "envvars", then the only cloud), and
-- the caller's explicit overrides on top. Errors name the file, line and field.
local E = require "upgrun.openstack.errors"

local M = {}

-- OS_* variables read for the "envvars" cloud (Lua cannot list the
-- environment, so the known names are listed). Value: where it goes.
local ENV_AUTH = {
  OS_AUTH_URL = "auth_url", OS_USERNAME = "username", OS_USER_ID = "user_id",
  OS_PASSWORD = "password", OS_PROJECT_NAME = "project_name",
  OS_PROJECT_ID = "project_id", OS_TENANT_NAME = "project_name",
  OS_TENANT_ID = "project_id", OS_USER_DOMAIN_NAME = "user_domain_name",
  OS_USER_DOMAIN_ID = "user_domain_id", OS_PROJECT_DOMAIN_NAME = "project_domain_name",
  OS_PROJECT_DOMAIN_ID = "project_domain_id", OS_DOMAIN_NAME = "domain_name",
  OS_DOMAIN_ID = "domain_id", OS_DEFAULT_DOMAIN = "default_domain",
  OS_DEFAULT_DOMAIN_ID = "default_domain_id", OS_DEFAULT_DOMAIN_NAME = "default_domain_name",
  OS_APPLICATION_CREDENTIAL_ID = "application_credential_id",
  OS_APPLICATION_CREDENTIAL_NAME = "application_credential_name",
  OS_APPLICATION_CREDENTIAL_SECRET = "application_credential_secret",
  OS_TOKEN = "token", OS_SYSTEM_SCOPE = "system_scope",
}
local ENV_TOP = {
  OS_AUTH_TYPE = "auth_type", OS_INTERFACE = "interface", OS_ENDPOINT_TYPE = "interface",
  OS_CACERT = "cacert", OS_CERT = "cert", OS_KEY = "key", OS_INSECURE = "insecure",
  OS_VERIFY = "verify", OS_IDENTITY_API_VERSION = "identity_api_version",
  OS_COMPUTE_API_VERSION = "compute_api_version", OS_IMAGE_API_VERSION = "image_api_version",
}
-- Variables that select or tune but do not by themselves make an envvars cloud.
local ENV_SELECTORS = { "OS_CLOUD", "OS_REGION_NAME", "OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE" }

-- Keys that belong in `auth` even when written at the top of a cloud (as
-- openstacksdk's "magic fixes" move them).
local AUTH_KEYS = {}
for _, k in pairs(ENV_AUTH) do AUTH_KEYS[k] = true end
AUTH_KEYS.tenant_name, AUTH_KEYS.tenant_id = true, true

local AUTH_TYPES = {
  password = "password", v3password = "password",
  application_credential = "application_credential",
  v3applicationcredential = "application_credential",
  token = "token", v3token = "token",
}
local INTERFACES = {
  public = "public", publicURL = "public", internal = "internal",
  internalURL = "internal", admin = "admin", adminURL = "admin",
}

local function getenv_fn(env)
  if type(env) == "table" then return function(k) return env[k] end end
  if type(env) == "function" then return env end
  return os.getenv
end

local function is_null(v)
  if v == nil then return true end
  local ok, yaml = pcall(require, "upgrun.yaml")
  return ok and v == yaml.null
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close(); return true end
  return false
end

-- The candidate files, in the order openstacksdk tries them.
function M.search_paths(kind, opts)
  opts = opts or {}
  local getenv = getenv_fn(opts.env)
  local home = opts.home or getenv("HOME") or ""
  local cwd = opts.cwd or getenv("PWD") or "."
  local dirs = opts.dirs or { cwd, home .. "/.config/openstack", "/etc/openstack" }
  local list = {}
  local override = getenv(kind == "secure" and "OS_CLIENT_SECURE_FILE" or "OS_CLIENT_CONFIG_FILE")
  if override and override ~= "" then list[#list + 1] = override end
  local base = kind == "secure" and "secure" or "clouds"
  for _, d in ipairs(dirs) do
    for _, suffix in ipairs({ ".yaml", ".yml", ".json" }) do
      list[#list + 1] = d .. "/" .. base .. suffix
    end
  end
  return list
end

-- Finds the 1-based line of a key path (e.g. {"clouds","lab","verify"}) in
-- block-style YAML text; nil when not found. Best effort, for messages.
function M.locate(text, path)
  if type(text) ~= "string" or not path or #path == 0 then return nil end
  local stack, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local indent, key = line:match("^(%s*)([^%s#%-][^:]-)%s*:%s")
    if not indent then indent, key = line:match("^(%s*)([^%s#%-][^:]-)%s*:$") end
    if indent then
      key = key:gsub("^[\"'](.*)[\"']$", "%1")
      while #stack > 0 and stack[#stack].indent >= #indent do stack[#stack] = nil end
      stack[#stack + 1] = { indent = #indent, key = key }
      if #stack == #path then
        local same = true
        for i = 1, #path do if stack[i].key ~= tostring(path[i]) then same = false; break end end
        if same then return n end
      end
    end
  end
  return nil
end

local function config_error(file, text, path, what)
  local field = table.concat(path, ".")
  local line = M.locate(text, path)
  local where = file and (line and (file .. ":" .. line) or file) or "configuration"
  return E.new("config", string.format("%s: %s: %s", where, field, what),
    { file = file, line = line, field = field })
end

-- Reads a YAML or JSON file; nil when absent; raises nothing.
local function read_config_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local doc, err
  if path:match("%.json$") then
    local ok, cjson = pcall(require, "cjson")
    local ok2, d = pcall(cjson.decode, text)
    if ok and ok2 then doc = d else err = { message = tostring(d) } end
  else
    local yaml = require "upgrun.yaml"
    doc, err = yaml.decode(text, path)
    if doc == nil and err == nil then doc = {} end -- an empty file: no clouds
  end
  if doc == nil then
    local line, col = err and err.line, err and err.column
    local where = path .. (line and (":" .. line .. (col and (":" .. col) or "")) or "")
    return nil, E.new("config", where .. ": " .. tostring(err and err.message or err),
      { file = path, line = line, column = col })
  end
  return { path = path, text = text, doc = doc }
end

local function first_file(candidates)
  for _, p in ipairs(candidates) do
    if exists(p) then return read_config_file(p) end
  end
  return false
end

local function deep_merge(dst, src)
  for k, v in pairs(src) do
    if type(v) == "table" and type(dst[k]) == "table" and not is_null(v) then
      deep_merge(dst[k], v)
    elseif not is_null(v) then
      dst[k] = type(v) == "table" and deep_merge({}, v) or v
    end
  end
  return dst
end

-- The "envvars" cloud, or nil when no OS_* variable other than selectors is set.
function M.env_cloud(opts)
  local getenv = getenv_fn(opts and opts.env)
  local cloud, any = { auth = {} }, false
  for var, key in pairs(ENV_AUTH) do
    local v = getenv(var)
    if v and v ~= "" then cloud.auth[key] = v; any = true end
  end
  for var, key in pairs(ENV_TOP) do
    local v = getenv(var)
    if v and v ~= "" then cloud[key] = v; any = true end
  end
  if not any then return nil end
  local region = getenv("OS_REGION_NAME")
  if region and region ~= "" then cloud.region_name = region end
  return cloud
end

local function as_bool(v)
  if type(v) == "boolean" then return v end
  if type(v) == "string" then
    local l = v:lower()
    if l == "true" or l == "yes" or l == "1" then return true end
    if l == "false" or l == "no" or l == "0" then return false end
  end
  return nil
end

-- Validates and normalises one cloud's raw settings; returns the settings
-- or nil, err (naming file, line, field).
local function normalise(name, raw, src)
  local file, text = src and src.path, src and src.text
  local function fail(field, what)
    local path = { "clouds", name }
    for part in field:gmatch("[^.]+") do path[#path + 1] = part end
    return nil, config_error(file, text, path, what)
  end
  if type(raw) ~= "table" then
    return nil, config_error(file, text, { "clouds", name }, "expected a mapping, got " .. type(raw))
  end
  local c = { name = name, auth = {} }
  if raw.auth ~= nil and not is_null(raw.auth) then
    if type(raw.auth) ~= "table" then return fail("auth", "expected a mapping, got " .. type(raw.auth)) end
    for k, v in pairs(raw.auth) do
      if not is_null(v) then
        if type(v) == "table" then
          return fail("auth." .. k, "expected a scalar, got a " .. (#v > 0 and "list" or "mapping"))
        end
        c.auth[k] = tostring(v)
      end
    end
  end
  for k, v in pairs(raw) do
    if k ~= "auth" and not is_null(v) then
      if AUTH_KEYS[k] and c.auth[k] == nil and type(v) ~= "table" then c.auth[k] = tostring(v)
      elseif not AUTH_KEYS[k] then c[k] = v end
    end
  end
  -- legacy names
  c.auth.project_name = c.auth.project_name or c.auth.tenant_name
  c.auth.project_id = c.auth.project_id or c.auth.tenant_id
  c.auth.tenant_name, c.auth.tenant_id = nil, nil
  if c.endpoint_type and not c.interface then c.interface = c.endpoint_type end
  c.endpoint_type = nil
  -- auth_type
  local at = c.auth_type
  if at == nil then
    at = (c.auth.application_credential_secret or c.auth.application_credential_id)
      and "application_credential" or (c.auth.token and not c.auth.password and "token") or "password"
  end
  if type(at) ~= "string" or not AUTH_TYPES[at] then
    return fail("auth_type", string.format("unsupported auth type %q (supported: password, v3password, "
      .. "v3applicationcredential, application_credential, token)", tostring(at)))
  end
  c.auth_type = AUTH_TYPES[at]
  -- interface
  local iface = c.interface or "public"
  if type(iface) ~= "string" or not INTERFACES[iface] then
    return fail("interface", string.format("expected public, internal or admin, got %q", tostring(iface)))
  end
  c.interface = INTERFACES[iface]
  -- verify / insecure / cacert
  if c.insecure ~= nil then
    local b = as_bool(c.insecure)
    if b == nil then return fail("insecure", "expected a boolean, got " .. tostring(c.insecure)) end
    if c.verify == nil then c.verify = not b end
    c.insecure = nil
  end
  if c.verify == nil then c.verify = true end
  if type(c.verify) == "string" and as_bool(c.verify) == nil and c.verify:find("/", 1, true) then
    c.cacert = c.cacert or c.verify -- a CA bundle path given as verify
    c.verify = true
  end
  local vb = as_bool(c.verify)
  if vb == nil then return fail("verify", "expected a boolean, got " .. type(c.verify)) end
  c.verify = vb
  if c.cacert ~= nil and type(c.cacert) ~= "string" then
    return fail("cacert", "expected a file path, got " .. type(c.cacert))
  end
  if c.region_name ~= nil and type(c.region_name) ~= "string" then
    return fail("region_name", "expected a string, got " .. type(c.region_name))
  end
  if c.regions ~= nil then
    if type(c.regions) ~= "table" then return fail("regions", "expected a list") end
    if not c.region_name then
      local r1 = c.regions[1]
      c.region_name = type(r1) == "table" and r1.name or r1
    end
  end
  if c.identity_api_version ~= nil and not tostring(c.identity_api_version):match("^3") then
    return fail("identity_api_version", "only Keystone v3 is supported, got " .. tostring(c.identity_api_version))
  end
  if not c.auth.auth_url then
    return fail("auth.auth_url", "missing (the Keystone URL, e.g. https://keystone.example:5000/v3)")
  end
  if c.auth_type == "password" then
    if not (c.auth.username or c.auth.user_id) then return fail("auth.username", "missing (or auth.user_id)") end
    if not c.auth.password then return fail("auth.password", "missing (put it in clouds.yaml or secure.yaml)") end
  elseif c.auth_type == "application_credential" then
    if not c.auth.application_credential_secret then
      return fail("auth.application_credential_secret", "missing")
    end
    if not (c.auth.application_credential_id or
            (c.auth.application_credential_name and (c.auth.username or c.auth.user_id))) then
      return fail("auth.application_credential_id", "missing (or application_credential_name with username)")
    end
  elseif c.auth_type == "token" and not c.auth.token then
    return fail("auth.token", "missing")
  end
  return c
end

-- Loads every cloud definition: returns {clouds = {name = raw}, files = {...},
-- sources = {name = {path=, text=}}} or nil, err.
function M.load_all(opts)
  opts = opts or {}
  local clouds_src, err = first_file(opts.files or M.search_paths("clouds", opts))
  if clouds_src == nil then return nil, err end
  local secure_src
  secure_src, err = first_file(opts.secure_files or M.search_paths("secure", opts))
  if secure_src == nil then return nil, err end
  local all = { clouds = {}, sources = {}, files = {} }
  for _, src in ipairs({ clouds_src or false, secure_src or false }) do
    if src then
      all.files[#all.files + 1] = src.path
      local doc = src.doc
      if type(doc) ~= "table" or is_null(doc) then
        return nil, config_error(src.path, src.text, { "clouds" }, "expected a mapping with a 'clouds' key")
      end
      local cl = doc.clouds
      if cl ~= nil and not is_null(cl) then
        if type(cl) ~= "table" then
          return nil, config_error(src.path, src.text, { "clouds" }, "expected a mapping of cloud names")
        end
        for name, c in pairs(cl) do
          if type(c) ~= "table" then
            return nil, config_error(src.path, src.text, { "clouds", name }, "expected a mapping, got " ..
              (is_null(c) and "null" or type(c)))
          end
          if src == clouds_src then
            all.clouds[name] = deep_merge({}, c)
            all.sources[name] = src
          elseif all.clouds[name] then
            deep_merge(all.clouds[name], c)
          end
        end
      end
    end
  end
  all.clouds_file = clouds_src and clouds_src.path or nil
  all.secure_file = secure_src and secure_src.path or nil
  local envc = M.env_cloud(opts)
  if envc then all.clouds.envvars = envc end
  return all
end

local function sorted_names(t)
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- Resolves one cloud. opts: cloud (name), env (table or function, default
-- os.getenv), files / secure_files (candidate lists), cwd, home, and the
-- overrides region_name, interface, verify, cacert, auth (a table merged
-- into auth). Returns the settings:
--   {name=, auth_type=, auth={...}, region_name=, interface=, verify=, cacert=,
--    clouds_file=, secure_file=, ...other keys of the cloud as written}
-- or nil, err (kind "config").
function M.resolve(opts)
  opts = opts or {}
  local getenv = getenv_fn(opts.env)
  local all, err = M.load_all(opts)
  if not all then return nil, err end
  local name = opts.cloud
  if name == nil or name == "" then name = getenv("OS_CLOUD") end
  if name == "" then name = nil end
  if name == nil then
    if all.clouds.envvars then name = "envvars"
    else
      local names = sorted_names(all.clouds)
      if #names == 1 then name = names[1] end
    end
  end
  if name == nil then
    local names = sorted_names(all.clouds)
    if #names == 0 then
      return nil, E.new("config", "no cloud configured: no clouds.yaml found (looked in "
        .. table.concat(opts.files or M.search_paths("clouds", opts), ", ")
        .. ") and no OS_AUTH_URL in the environment")
    end
    return nil, E.new("config", "several clouds are defined in " .. tostring(all.clouds_file)
      .. " and none was chosen (use --cloud or OS_CLOUD): " .. table.concat(names, ", "),
      { known = names })
  end
  local raw = all.clouds[name]
  if not raw then
    local names = sorted_names(all.clouds)
    return nil, E.new("config", string.format("cloud %q not found in %s; known clouds: %s", name,
      all.clouds_file or "(no clouds.yaml found)", #names > 0 and table.concat(names, ", ") or "none"),
      { known = names, cloud = name })
  end
  raw = deep_merge({}, raw)
  -- Explicit overrides, then OS_REGION_NAME as the default region.
  if opts.auth then raw.auth = deep_merge(type(raw.auth) == "table" and raw.auth or {}, opts.auth) end
  for _, k in ipairs({ "region_name", "interface", "verify", "cacert", "auth_type" }) do
    if opts[k] ~= nil then raw[k] = opts[k] end
  end
  if raw.region_name == nil and raw.regions == nil then
    local r = getenv("OS_REGION_NAME")
    if r and r ~= "" then raw.region_name = r end
  end
  local c
  c, err = normalise(name, raw, name ~= "envvars" and all.sources[name] or nil)
  if not c then
    if name == "envvars" then
      err.message = err.message:gsub("^configuration: clouds%.envvars%.", "OS_* environment: ")
    end
    return nil, err
  end
  c.clouds_file, c.secure_file = all.clouds_file, all.secure_file
  return c
end

-- Names of the clouds that resolve() would know.
function M.cloud_names(opts)
  local all, err = M.load_all(opts)
  if not all then return nil, err end
  return sorted_names(all.clouds)
end

M.ENV_SELECTORS = ENV_SELECTORS
return M
