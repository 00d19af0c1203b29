-- upgrun.openstack.config — resolves a cloud's settings the way openstacksdk
-- 0.101 does (checked against it by tests/integration/test_clouds_oracle.lua):
-- the first clouds.yaml found (OS_CLIENT_CONFIG_FILE, then the working
-- directory (getcwd, not $PWD), $XDG_CONFIG_HOME/openstack,
-- ~/.config/openstack, $XDG_CONFIG_DIRS (default /etc/xdg)/openstack,
-- /etc/openstack; .yaml, .yml or .json), the first secure.yaml found likewise
-- (OS_CLIENT_SECURE_FILE first) deep-merged over it (a cloud only in
-- secure.yaml counts), a cloud made from the OS_* environment (named
-- "envvars", or OS_CLOUD_NAME), the cloud chosen by name (argument, then
-- OS_CLOUD, then the environment cloud, then the only cloud), and the
-- caller's explicit overrides on top. Dashed keys (auth-url) read as
-- underscored ones; domain_name/domain_id apply to both the user and the
-- project domain of a project-scoped login; `regions: [r1, r2]` selects r1;
-- a `verify` that is a string is a CA bundle path (as requests reads it);
-- cert/key (OS_CERT/OS_KEY) are the client certificate for mutual TLS;
-- https_proxy/http_proxy/no_proxy from the environment are the proxies.
-- Vendor profiles (`profile:`) are not supported: a clear error. Errors name
-- the file, line and field.
local E = require "upgrun.openstack.errors"
local dir = require "upgrun.dir"

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
  OS_AUTH_TYPE = "auth_type", OS_INTERFACE = "interface", OS_ENDPOINT_TYPE = "endpoint_type",
  OS_CACERT = "cacert", OS_CERT = "cert", OS_KEY = "key", OS_INSECURE = "insecure",
  OS_VERIFY = "verify", OS_IDENTITY_API_VERSION = "identity_api_version",
  OS_COMPUTE_API_VERSION = "compute_api_version", OS_IMAGE_API_VERSION = "image_api_version",
}
-- Variables that select or tune but do not by themselves make an envvars cloud.
local ENV_SELECTORS = { "OS_CLOUD", "OS_REGION_NAME", "OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE",
  "OS_CLOUD_NAME" }

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
  local cwd = opts.cwd or dir.cwd() or "."
  local xdg_home = getenv("XDG_CONFIG_HOME")
  if not xdg_home or xdg_home == "" then xdg_home = home .. "/.config" end
  -- appdirs' site_config_dir: every $XDG_CONFIG_DIRS entry + /openstack,
  -- joined with ':' (openstacksdk uses that string as one directory)
  local site = {}
  local xdg_dirs = getenv("XDG_CONFIG_DIRS")
  if not xdg_dirs or xdg_dirs == "" then xdg_dirs = "/etc/xdg" end
  for d in xdg_dirs:gmatch("[^:]+") do site[#site + 1] = (d:gsub("/+$", "")) .. "/openstack" end
  local dirs = opts.dirs or { cwd, xdg_home .. "/openstack", home .. "/.config/openstack",
    table.concat(site, ":"), "/etc/openstack" }
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

-- The 1-based line of a key path (e.g. {"clouds","lab","verify"}) in a
-- loaded file, from upgrun.yaml's positions (a dashed spelling of a key is
-- found too); nil when unknown (JSON files, keys not in the file).
local YAML_NULL = require("upgrun.yaml").null

local function locate(src, path)
  if not src or not src.pos then return nil end
  local node, line = src.doc, nil
  for _, key in ipairs(path) do
    if type(node) ~= "table" then return line end
    local p = src.pos[node]
    local k = key
    if node[k] == nil and type(k) == "string" then k = k:gsub("_", "-") end
    if node[k] == nil then return line end
    line = p and p.lines[k] or line
    node = node[k]
  end
  return line
end

local function config_error(src, path, what)
  local parts = {}
  for i, k in ipairs(path) do parts[i] = k == YAML_NULL and "~" or tostring(k) end
  local field = table.concat(parts, ".")
  local file = src and src.path
  local line = locate(src, path)
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
  local doc, pos, err
  if type(text) ~= "string" then
    err = { message = path .. ": cannot read (a directory?)" }
  else -- JSON too: libyaml reads it, keeping lines and integers beyond 2^53 exact
    local yaml = require "upgrun.yaml"
    doc, pos = yaml.decode(text, path, { positions = true })
    if doc == nil and pos ~= nil then err, pos = pos, nil end
    if doc == nil and err == nil then doc = {} end -- an empty file: no clouds
  end
  if doc == nil then
    local line, col = err and err.line, err and err.column
    local msg = tostring(err and err.message or err):gsub("^" .. path:gsub("%p", "%%%0") .. ":[%d:]+ ", "")
    local where = path .. (line and (":" .. line .. (col and (":" .. col) or "")) or "")
    return nil, E.new("config", where .. ": " .. msg, { file = path, line = line, column = col })
  end
  return { path = path, text = text, doc = doc, pos = pos }
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

-- False when t contains itself (a recursive YAML alias).
local function acyclic(t, stack)
  if stack[t] then return false end
  stack[t] = true
  for _, v in pairs(t) do
    if type(v) == "table" and not acyclic(v, stack) then return false end
  end
  stack[t] = nil
  return true
end

-- openstacksdk's normalize_keys: every dashed key of a mapping (recursively)
-- read as its underscored spelling (the underscored one wins if both).
local function normalize_keys(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do
    if type(k) == "string" and k:find("-", 1, true) then
      local u = k:gsub("-", "_")
      if t[u] == nil then out[u] = normalize_keys(v) end
    else
      out[k] = normalize_keys(v)
    end
  end
  return out
end

-- The environment cloud, or nil when no OS_* variable other than selectors is set.
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
    if l == "true" or l == "yes" or l == "1" or l == "on" then return true end
    if l == "false" or l == "no" or l == "0" or l == "off" then return false end
  end
  return nil
end

local function expand_home(p, home)
  if type(p) == "string" and home then return (p:gsub("^~/", home .. "/")) end
  return p
end

-- openstacksdk's _handle_domain_id: for a project-scoped login, domain_id /
-- domain_name set both the user's and the project's domain (unless given).
local function handle_domains(auth)
  local scoped = auth.project_id or auth.project_name
  for _, m in ipairs({ { "domain_id", "user_domain_id", "project_domain_id" },
                       { "domain_name", "user_domain_name", "project_domain_name" } }) do
    local v = auth[m[1]]
    if scoped and v ~= nil then
      if auth[m[2]] == nil then auth[m[2]] = v end
      if auth[m[3]] == nil then auth[m[3]] = v end
      auth[m[1]] = nil
    end
  end
end

-- The region: `regions` (names or {name=, values=}) lists the valid ones and
-- the first is the default; otherwise region_name (a comma list gives its
-- first). An explicit region (opts) must be one of `regions` when listed.
local function pick_region(c, explicit, fail)
  local names = {}
  if c.regions ~= nil then
    if type(c.regions) ~= "table" then return fail("regions", "expected a list") end
    for i, r in ipairs(c.regions) do
      local n = type(r) == "table" and r.name or r
      if type(n) ~= "string" then return fail("regions", "entry " .. i .. " has no name") end
      names[#names + 1] = n
    end
  elseif type(c.region_name) == "string" then
    for n in c.region_name:gmatch("[^,]+") do names[#names + 1] = n end
  elseif c.region_name ~= nil then
    return fail("region_name", "expected a string, got " .. type(c.region_name))
  end
  local chosen = names[1]
  if explicit ~= nil and explicit ~= "" then
    chosen = explicit
    if c.regions ~= nil then
      local ok = false
      for _, n in ipairs(names) do if n == explicit then ok = true end end
      if not ok then
        return fail("regions", string.format("region %q is not one of this cloud's regions (%s)", explicit,
          table.concat(names, ", ")))
      end
    end
  end
  -- values of the chosen region (regions: [{name=, values={...}}]) apply
  for _, r in ipairs(type(c.regions) == "table" and c.regions or {}) do
    if type(r) == "table" and r.name == chosen and type(r.values) == "table" then
      for k, v in pairs(normalize_keys(r.values)) do
        if k == "auth" and type(v) == "table" then deep_merge(c.auth, v) else c[k] = v end
      end
    end
  end
  c.regions = nil
  c.region_name = chosen
  return true
end

-- Validates and normalises one cloud's raw settings; returns the settings
-- or nil, err (naming file, line, field).
local function normalise(name, raw, src, opts)
  local function fail(field, what)
    local path = { "clouds", name }
    for part in field:gmatch("[^.]+") do path[#path + 1] = part end
    return nil, config_error(src, path, what)
  end
  if type(raw) ~= "table" then
    return nil, config_error(src, { "clouds", name }, "expected a mapping, got " .. type(raw))
  end
  -- as openstacksdk's magic fixes: endpoint_type (so spelled) beats interface,
  -- before dashed keys are read as underscored ones (a dashed endpoint-type is
  -- then ignored, as there)
  if raw.endpoint_type ~= nil then raw.interface, raw.endpoint_type = raw.endpoint_type, nil end
  raw = normalize_keys(raw)
  raw.endpoint_type = nil
  if raw.profile ~= nil or raw.cloud ~= nil then
    local k = raw.profile ~= nil and "profile" or "cloud"
    return fail(k, string.format("vendor profiles are not supported (%s: %s): write the cloud's auth_url, "
      .. "region_name and interface in the cloud itself", k, tostring(raw[k])))
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
      if AUTH_KEYS[k] and type(v) ~= "table" then c.auth[k] = tostring(v) -- sdk: the top-level one wins
      elseif not AUTH_KEYS[k] then c[k] = v end
    end
  end
  -- legacy names (project_* win over tenant_*)
  c.auth.project_name = c.auth.project_name or c.auth.tenant_name
  c.auth.project_id = c.auth.project_id or c.auth.tenant_id
  c.auth.tenant_name, c.auth.tenant_id = nil, nil
  if c.auth.auth_token and not c.auth.token then c.auth.token = c.auth.auth_token end
  c.auth.auth_token = nil
  handle_domains(c.auth)
  c.auth_type = c.auth_type or c.auth_plugin
  c.auth_plugin = nil
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
  -- TLS, as requests reads it: insecure wins; a string verify is a CA path;
  -- cacert is used when verifying
  local home = opts.home or getenv_fn(opts.env)("HOME")
  if c.insecure ~= nil then
    local b = as_bool(c.insecure)
    if b == nil then return fail("insecure", "expected a boolean, got " .. tostring(c.insecure)) end
    c.insecure = b
  end
  if c.verify == nil then c.verify = true end
  if type(c.verify) == "string" then
    c.cacert = c.cacert or c.verify
    c.verify = true
  elseif type(c.verify) ~= "boolean" then
    return fail("verify", "expected a boolean or a CA bundle path, got " .. type(c.verify))
  end
  if c.insecure then c.verify = false end
  c.insecure = nil
  for _, k in ipairs({ "cacert", "cert", "key" }) do
    if c[k] ~= nil and type(c[k]) ~= "string" then
      return fail(k, "expected a file path, got " .. type(c[k]))
    end
    c[k] = expand_home(c[k], home)
  end
  if c.key and not c.cert then return fail("key", "a client key needs cert (the client certificate) too") end
  local ok, err = pick_region(c, opts.region_name, fail)
  if not ok then return nil, err end
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

-- Proxies from the environment, as requests and curl read them.
local function env_proxies(getenv)
  local function var(n) local v = getenv(n) or getenv(n:upper()); if v ~= "" then return v end end
  local p = { http = var("http_proxy"), https = var("https_proxy"), no_proxy = var("no_proxy") }
  if p.http or p.https then return p end
end

-- Loads every cloud definition: returns {clouds = {name = raw}, files = {...},
-- sources = {name = src}} or nil, err.
function M.load_all(opts)
  opts = opts or {}
  local getenv = getenv_fn(opts.env)
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
        return nil, config_error(src, { "clouds" }, "expected a mapping with a 'clouds' key")
      end
      local cl = doc.clouds
      if cl ~= nil and not is_null(cl) then
        if type(cl) ~= "table" then
          return nil, config_error(src, { "clouds" }, "expected a mapping of cloud names")
        end
        for name, c in pairs(cl) do
          if type(name) ~= "string" then
            return nil, config_error(src, { "clouds", name }, "a cloud name must be a string (quote "
              .. tostring(name) .. ")")
          end
          if type(c) ~= "table" then
            return nil, config_error(src, { "clouds", name }, "expected a mapping, got " ..
              (is_null(c) and "null" or type(c)))
          end
          if not acyclic(c, {}) then
            return nil, config_error(src, { "clouds", name }, "contains itself (a YAML alias loop)")
          end
          if all.clouds[name] then
            deep_merge(all.clouds[name], c)
          else
            all.clouds[name] = deep_merge({}, c)
            all.sources[name] = src
          end
        end
      end
    end
  end
  all.clouds_file = clouds_src and clouds_src.path or nil
  all.secure_file = secure_src and secure_src.path or nil
  local env_name = getenv("OS_CLOUD_NAME")
  if env_name == nil or env_name == "" then env_name = "envvars" end
  all.env_name = env_name
  local envc = M.env_cloud(opts)
  if envc then
    if all.clouds[env_name] then
      return nil, E.new("config", string.format("%s defines a cloud named %q and the OS_* environment cloud is "
        .. "named %q too (OS_CLOUD_NAME): rename one of them", tostring(all.clouds_file), env_name, env_name))
    end
    all.clouds[env_name] = envc
  end
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
--    cert=, key=, proxy={http=, https=, no_proxy=} or nil,
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
    if all.clouds[all.env_name] and all.sources[all.env_name] == nil then name = all.env_name
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
  if type(name) ~= "string" then
    return nil, E.new("config", "the cloud name must be a string, got " .. type(name))
  end
  local raw = all.clouds[name]
  if not raw then
    local names = sorted_names(all.clouds)
    return nil, E.new("config", string.format("cloud %q not found in %s; known clouds: %s", name,
      all.clouds_file or "(no clouds.yaml found)", #names > 0 and table.concat(names, ", ") or "none"),
      { known = names, cloud = name })
  end
  raw = deep_merge({}, raw)
  -- Explicit overrides.
  if opts.auth then raw.auth = deep_merge(type(raw.auth) == "table" and raw.auth or {}, opts.auth) end
  for _, k in ipairs({ "interface", "verify", "cacert", "auth_type" }) do
    if opts[k] ~= nil then raw[k] = opts[k] end
  end
  local from_env = all.sources[name] == nil
  local c
  c, err = normalise(name, raw, all.sources[name], opts)
  if not c then
    if from_env then
      err.message = err.message:gsub("^configuration: clouds%.[^.]+%.", "OS_* environment: ")
      err.message = err.message:gsub("auth%.password: missing %(put it in clouds.yaml or secure.yaml%)",
        "OS_PASSWORD is not set (the OS_* variables define a cloud but give no password)")
    end
    return nil, err
  end
  c.proxy = env_proxies(getenv)
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
