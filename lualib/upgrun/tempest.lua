-- upgrun.tempest — Tempest as a step: ctx:tempest{...} runs Debian's
-- `tempest run` against the scenario's cloud and records each Tempest test
-- as a check (passed; failed with the traceback's tail; skipped with
-- Tempest's reason), with a "tempest_test" timeline event carrying the
-- test's own start time and duration.
--
--   ctx:tempest{tests = {"tempest.api...test_x", ...} | regex = "...",
--               concurrency = 1, timeout = 900, image =, flavor =, network =,
--               validation = false, name = "tempest", extra = {section = {key = value}}}
--     -> summary {passed =, failed =, skipped =, tests = {...}, dir =}
--
-- The tempest.conf is generated from the resolved clouds.yaml settings
-- (ctx.cloud.config) and the image/flavor/network given (names or ids,
-- resolved through the cloud), written mode 600 into <out>/<name>/ next to
-- the raw subunit stream (tempest.subunit) and Tempest's stderr. The
-- password is added to the run's secret values, so no report shows it.
-- Tempest runs in its own session (setsid): on the timeout the whole
-- process group gets upgrun.terminate's TERM -> grace -> KILL, and when the
-- task is cancelled the group is SIGKILLed. The subunit v2 stream is read
-- through Debian's `subunit-2to1` (python3-subunit) and parsed here.
local proc = require "upgrun.proc"
local terminate = require "upgrun.terminate"
local errors = require "upgrun.errors"
local time = require "upgrun.time"
local timeline = require "upgrun.timeline"

local M = {}

M.DEFAULT_TIMEOUT = 900
M.TRACEBACK_LINES = 12

-- ------------------------------------------------------------ tempest.conf

local function ini_value(v)
  if type(v) == "boolean" then return v and "true" or "false" end
  local s = tostring(v)
  if s:find("[\r\n]") then error("tempest.conf: a value may not contain a newline", 0) end
  return s
end

-- Renders {section = {key = value}} as INI text, sections and keys sorted.
function M.ini(conf)
  local sections = {}
  for name in pairs(conf) do sections[#sections + 1] = name end
  table.sort(sections, function(a, b)
    if a == "DEFAULT" then return b ~= "DEFAULT" end
    if b == "DEFAULT" then return false end
    return a < b
  end)
  local out = {}
  for _, name in ipairs(sections) do
    out[#out + 1] = "[" .. name .. "]"
    local keys = {}
    for k in pairs(conf[name]) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do out[#out + 1] = k .. " = " .. ini_value(conf[name][k]) end
    out[#out + 1] = ""
  end
  return table.concat(out, "\n")
end

local function need(t, key, what)
  local v = t[key]
  if v == nil or v == "" then error("tempest.conf: the cloud's settings have no " .. what, 0) end
  return v
end

-- The tempest.conf table for a resolved cloud (upgrun.openstack.config's
-- settings) and o = {image_id =, flavor_id =, network =, validation =,
-- dir =, extra =}. Only password authentication can be given to Tempest.
function M.conf(cloud, o)
  local auth = cloud.auth or {}
  if cloud.auth_type and cloud.auth_type ~= "password" and cloud.auth_type ~= "v3password" then
    error("tempest.conf: Tempest needs password authentication, the cloud uses auth_type "
      .. tostring(cloud.auth_type), 0)
  end
  local url = need(auth, "auth_url", "auth.auth_url"):gsub("/+$", "")
  if not url:match("/v3$") then url = url .. "/v3" end
  local interface = cloud.interface or "public"
  local c = {
    DEFAULT = { log_dir = o.dir, log_file = "tempest.log", use_stderr = false },
    oslo_concurrency = { lock_path = o.dir .. "/locks" },
    auth = {
      use_dynamic_credentials = true,
      admin_username = need(auth, "username", "auth.username"),
      admin_password = need(auth, "password", "auth.password"),
      admin_project_name = auth.project_name or need(auth, "tenant_name", "auth.project_name"),
      admin_domain_name = auth.user_domain_name or auth.domain_name or "Default",
      create_isolated_networks = false, -- a network by name (fixed_network_name), or none
    },
    identity = {
      uri_v3 = url, auth_version = "v3", v3_endpoint_type = interface,
      region = cloud.region_name or "RegionOne",
      disable_ssl_certificate_validation = cloud.verify == false,
    },
    ["identity-feature-enabled"] = { api_v2 = false },
    compute = {
      image_ref = o.image_id, image_ref_alt = o.image_id,
      flavor_ref = o.flavor_id, flavor_ref_alt = o.flavor_id,
      endpoint_type = interface .. "URL", region = cloud.region_name or "RegionOne",
      build_timeout = o.build_timeout or 120,
    },
    ["compute-feature-enabled"] = {
      pause = true, suspend = true, shelve = true, rescue = true, resize = true,
      console_output = false, vnc_console = false, spice_console = false, serial_console = false,
      live_migration = false, snapshot = true,
    },
    validation = { run_validation = o.validation and true or false, connect_method = "fixed" },
    service_available = { nova = true, glance = true, neutron = o.neutron ~= false, cinder = false,
                          swift = false, heat = false, horizon = false, placement = true },
    network = { endpoint_type = interface .. "URL", region = cloud.region_name or "RegionOne" },
    image = { endpoint_type = interface .. "URL", region = cloud.region_name or "RegionOne" },
  }
  if type(cloud.cacert) == "string" then c.identity.ca_certificates_file = cloud.cacert end
  if o.network and o.network ~= "" and o.network ~= "auto" and o.network ~= "none" then
    c.compute.fixed_network_name = o.network
  end
  for section, kv in pairs(o.extra or {}) do
    c[section] = c[section] or {}
    for k, v in pairs(kv) do c[section][k] = v end
  end
  return c
end

-- ------------------------------------------------------- subunit v1 parse

local function tstamp(s)
  local Y, m, d, H, M_, S = s:match("^(%d+)-(%d+)-(%d+) (%d+):(%d+):([%d.]+)")
  if not Y then return nil end
  local sec = tonumber(S)
  local whole = math.floor(sec)
  local t = os.time { year = tonumber(Y), month = tonumber(m), day = tonumber(d), hour = tonumber(H),
                      min = tonumber(M_), sec = whole, isdst = false }
  -- os.time reads local time; correct to UTC
  local utc_off = os.time(os.date("!*t", t)) - t
  return t - utc_off + (sec - whole)
end

local STATUS = {
  success = "passed", successful = "passed", xfail = "passed",
  failure = "failed", error = "failed", uxsuccess = "failed",
  skip = "skipped",
}

-- Parses subunit v1 text (as `subunit-2to1` writes it) into an array of
-- {id =, result = passed|failed|skipped, start =, stop = (epoch s, or nil),
--  attachments = {name = text}} in the order the tests ended.
function M.parse_v1(text)
  local tests, now, starts = {}, nil, {}
  local pos, n = 1, #text
  local function line()
    if pos > n then return nil end
    local e = text:find("\n", pos, true) or (n + 1)
    local l = text:sub(pos, e - 1):gsub("\r$", "")
    pos = e + 1
    return l
  end
  while true do
    local l = line()
    if not l then break end
    local ts = l:match("^time: (.*)$")
    local kw, id = l:match("^(%a+):? (.*)$")
    local rest = ""
    for _, suffix in ipairs(id and { " [ multipart", " [" } or {}) do
      if id:sub(-#suffix) == suffix then id, rest = id:sub(1, -#suffix - 1), suffix; break end
    end
    if ts then
      now = tstamp(ts) or now
    elseif kw == "test" or kw == "testing" then
      starts[id] = now
    elseif kw and STATUS[kw] then
      local t = { id = id, result = STATUS[kw], start = starts[id], stop = now, attachments = {}, status = kw }
      if rest:find("[", 1, true) then
        if rest:find("multipart", 1, true) then
          -- parts: Content-Type, name, then chunks "<hex>\r\n<bytes>" until "0\r\n"; "]" ends
          while true do
            local ct = line()
            if ct == nil or ct == "]" then break end
            local name = line() or "?"
            local parts = {}
            while true do
              local e = text:find("\n", pos, true)
              if not e then pos = n + 1; break end
              local len = tonumber((text:sub(pos, e - 1):gsub("\r$", "")), 16)
              pos = e + 1
              if not len or len == 0 then break end
              parts[#parts + 1] = text:sub(pos, pos + len - 1)
              pos = pos + len
            end
            t.attachments[name] = table.concat(parts)
          end
        else
          local body = {}
          while true do
            local b = line()
            if b == nil or b == "]" then break end
            body[#body + 1] = (b:gsub("^ ", ""))
          end
          t.attachments.details = table.concat(body, "\n")
        end
      end
      tests[#tests + 1] = t
    end
  end
  return tests
end

-- The last n non-empty lines of a text (without caret marker lines).
function M.tail(s, n)
  local lines = {}
  for l in tostring(s or ""):gmatch("[^\n]+") do
    -- Python 3.11's "^^^^" position markers say nothing in a report
    if l:find("%S") and not l:match("^[%s%^~]+$") then lines[#lines + 1] = l end
  end
  local first = math.max(1, #lines - n + 1)
  return table.concat(lines, "\n", first)
end

-- The detail of a check for one parsed test.
function M.detail(t)
  local a = t.attachments or {}
  if t.result == "skipped" then
    local r = a.reason or a.details or ""
    r = r:gsub("^%s+", ""):gsub("%s+$", "")
    return r ~= "" and r or "skipped by Tempest (no reason given)"
  elseif t.result == "failed" then
    local tb = a.traceback or a.details
    if not tb then tb = select(2, next(a)) end
    return M.tail(tb, M.TRACEBACK_LINES) ~= "" and M.tail(tb, M.TRACEBACK_LINES) or ("Tempest status " .. t.status)
  end
  return nil
end

-- Strips the "[id,tags]" suffix Tempest adds to test ids.
function M.short_id(id) return (id:gsub("%[[^%]]*%]$", "")) end

-- -------------------------------------------------------- process group

-- Runs argv (whose program must make itself a session leader, e.g. via
-- setsid) with a timeout; on the timeout the process group -pid gets
-- TERM -> grace -> KILL; on cancellation (the task unwinding) SIGKILL.
-- Returns the wait result or nil, err (kind timeout | spawn ...).
function M.run_group(argv, opts)
  local spec = { argv = argv, env_add = opts.env_add, cwd = opts.cwd, stdout = "capture", stderr = "capture" }
  local p <close>, err = proc.spawn(spec)
  if not p then return nil, err end
  local pgid, done = p.pid, false
  local _ <close> = setmetatable({}, { __close = function()
    if not done then proc.kill(-pgid, "KILL") end
  end })
  if opts.on_start then opts.on_start(pgid) end
  local res
  res, err = p:wait(opts.timeout)
  if not res then
    if type(err) ~= "table" or err.kind ~= "timeout" then return nil, err end
    local escalated
    -- the group exists once setsid ran in the child; before that, the child alone
    local function signal(sig)
      local ok = proc.kill(-pgid, sig)
      if ok then return ok end
      return p:kill(sig)
    end
    res, escalated = terminate.escalate {
      term = function() return signal("TERM") end,
      kill = function() return signal("KILL") end,
      wait = function(t) return p:wait(t) end,
      grace = opts.grace or 5,
    }
    -- whatever of the group outlived its leader goes too
    proc.kill(-pgid, "KILL")
    done = true
    if not res then return nil, escalated end
    return nil, errors.new("timeout", string.format("'%s' timed out after %gs (process group stopped with %s)",
      tostring(argv[2] or argv[1]), opts.timeout, escalated and "SIGKILL" or "SIGTERM"), res)
  end
  proc.kill(-pgid, "KILL") -- leftovers of the group (none normally)
  done = true
  return res
end

-- ----------------------------------------------------------------- the step

local function write_file(path, text, mode)
  local f = assert(io.open(path, "wb"))
  if mode then os.execute(string.format("chmod %s '%s'", mode, path)) end
  f:write(text)
  f:close()
end

local function resolve_ids(ctx, o)
  local image_id, flavor_id = o.image_id, o.flavor_id
  if not image_id then
    local im, err = ctx.cloud.image:find(assert(o.image, "ctx:tempest: needs image (name or id)"))
    if not im then error("ctx:tempest: image " .. tostring(o.image) .. ": " .. errors.message(err), 0) end
    image_id = im.id
  end
  if not flavor_id then
    local fl, err = ctx.cloud.compute:find_flavor(assert(o.flavor, "ctx:tempest: needs flavor (name or id)"))
    if not fl then error("ctx:tempest: flavor " .. tostring(o.flavor) .. ": " .. errors.message(err), 0) end
    flavor_id = fl.id
  end
  return image_id, flavor_id
end

local function check_opts(o)
  if type(o) ~= "table" then error("ctx:tempest: needs a table {tests = {...} | regex = ...}", 3) end
  if (o.tests == nil) == (o.regex == nil) then error("ctx:tempest: give exactly one of tests and regex", 3) end
  if o.tests ~= nil and (type(o.tests) ~= "table" or #o.tests == 0) then
    error("ctx:tempest: tests must be a non-empty list of Tempest test ids", 3)
  end
  if o.regex ~= nil and type(o.regex) ~= "string" then error("ctx:tempest: regex must be a string", 3) end
  for _, k in ipairs({ "concurrency", "timeout" }) do
    if o[k] ~= nil and (type(o[k]) ~= "number" or o[k] <= 0) then
      error("ctx:tempest: " .. k .. " must be a positive number", 3)
    end
  end
end

-- Writes the workspace into dir (tempest.conf mode 600, .stestr.conf, the
-- include list) for a resolved cloud and o (tests | regex, image_id,
-- flavor_id, network, validation, concurrency, extra); returns the argv of
-- the Tempest run and the conf table.
function M.prepare(dir, cloud_cfg, o)
  assert(os.execute("mkdir -p '" .. dir .. "/locks'"))
  local conf = M.conf(cloud_cfg, { image_id = o.image_id, flavor_id = o.flavor_id, network = o.network,
                                   validation = o.validation, dir = dir, extra = o.extra })
  write_file(dir .. "/tempest.conf", M.ini(conf), "600")
  local argv = { "setsid", "tempest", "run", "--config-file", dir .. "/tempest.conf", "--subunit",
                 "--concurrency", tostring(o.concurrency or 1) }
  if o.tests then
    -- stestr reads each line as a regex searched in the id: anchor it, so
    -- test_list_flavors is that test and not every test_list_flavors_* too
    local lines = {}
    for i, id in ipairs(o.tests) do
      lines[i] = "^" .. id:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?{}|\\]", "\\%0") .. "(\\[.*\\])?$"
    end
    write_file(dir .. "/include-list.txt", table.concat(lines, "\n") .. "\n")
    argv[#argv + 1] = "--include-list"
    argv[#argv + 1] = dir .. "/include-list.txt"
  else
    argv[#argv + 1] = "--regex"
    argv[#argv + 1] = o.regex
  end
  -- tempest run needs a workspace with a .stestr.conf (as `tempest init` writes it)
  write_file(dir .. "/.stestr.conf", "[DEFAULT]\ntest_path=" .. M.test_path() .. "\ntop_dir=" .. M.top_dir()
    .. "\ngroup_regex=([^\\.]*\\.)*\n")
  return argv, conf
end

-- Runs the prepared argv in dir; saves tempest.subunit and tempest.stderr
-- (through redact, a function) there. Returns res_or_nil, err, tests (the
-- parsed subunit stream, also when the run timed out).
function M.execute(argv, dir, timeout, redact)
  local res, err = M.run_group(argv, { cwd = dir, timeout = timeout or M.DEFAULT_TIMEOUT,
                                       env_add = { OS_CLOUD = "", OS_CLIENT_CONFIG_FILE = "" } })
  local r = res or (type(err) == "table" and err.stdout and err) or nil
  write_file(dir .. "/tempest.subunit", r and r.stdout or "")
  write_file(dir .. "/tempest.stderr", (redact or tostring)(r and r.stderr or ""))
  local v1 = ""
  if r and r.stdout and #r.stdout > 0 then
    local conv, cerr = proc.run({ "subunit-2to1" }, { stdin = r.stdout, timeout = 120, check = true })
    if not conv then error("tempest: subunit-2to1: " .. errors.message(cerr), 0) end
    v1 = conv.stdout
  end
  return res, err, M.parse_v1(v1)
end

-- Runs Tempest and records the checks; see the header.
function M.run(ctx, o)
  check_opts(o)
  local name = o.name or "tempest"
  if ctx.plan then
    -- --plan: the checks it would record, nothing run
    for _, id in ipairs(o.tests or { "(regex " .. o.regex .. ")" }) do ctx:check("tempest " .. id, true) end
    return { passed = 0, failed = 0, skipped = 0, tests = {} }
  end
  local base = ctx.out .. "/" .. name:gsub("[^%w._-]", "_")
  local dir, n = base, 1
  while os.rename(dir, dir) do n = n + 1; dir = base .. "-" .. n end
  local run = ctx._run
  local opts = {}
  for k, v in pairs(o) do opts[k] = v end
  opts.image_id, opts.flavor_id = resolve_ids(ctx, o)
  local pw = (ctx.cloud.config.auth or {}).password
  if type(pw) == "string" and #pw >= 3 then run.secret_values[#run.secret_values + 1] = pw end
  local argv = M.prepare(dir, ctx.cloud.config, opts)
  ctx:log("tempest: %s (conf %s)", o.regex or (#o.tests .. " tests"), dir .. "/tempest.conf")
  local t0 = ctx.timeline:now()
  local res, err, tests = M.execute(argv, dir, o.timeout, function(s) return run:redact(s) end)
  local summary = { passed = 0, failed = 0, skipped = 0, tests = {}, dir = dir }
  for _, t in ipairs(tests) do
    local id = M.short_id(t.id)
    summary[t.result] = summary[t.result] + 1
    summary.tests[#summary.tests + 1] = { id = id, result = t.result }
    -- the test's own start on the run's clock (subunit stamps are UTC wall time)
    local rel = t.start and (ctx.timeline:now() - (time.now() - t.start)) or nil
    ctx:event("tempest_test", { name = id, result = t.result, t = rel,
                                wall = t.start and timeline.iso(t.start) or nil,
                                duration = (t.start and t.stop) and (t.stop - t.start) or nil })
    local check = "tempest " .. id
    if t.result == "skipped" then ctx:skip(check, M.detail(t))
    else ctx:check(check, t.result == "passed", M.detail(t)) end
  end
  if not res then
    ctx:check(name .. " run", false, errors.message(err))
  elseif #tests == 0 then
    ctx:check(name .. " run", false, string.format("tempest ran no test (exit %s): %s", tostring(res.status),
      run:redact(M.tail(res.stderr, 5))))
  end
  ctx:log("tempest: %d passed, %d failed, %d skipped in %.1fs", summary.passed, summary.failed, summary.skipped,
    ctx.timeline:now() - t0)
  return summary
end

-- Where Debian's python3-tempest has its tests (the .stestr.conf paths).
function M.top_dir() return "/usr/lib/python3/dist-packages" end
function M.test_path() return "/usr/lib/python3/dist-packages/tempest/test_discover" end

return M
