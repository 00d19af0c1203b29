-- upgrun.ansible — runs ansible-playbook (Debian's ansible-core) and reads
-- its results task by task and host by host, as they happen, through the
-- `upgrun_events` stdout callback (upgrun.ansible.callback) written to a
-- private temporary directory for the run. ctx:ansible (upgrun.ansible.step)
-- is the scenario-facing step built on this; M.run is usable on its own.
--
--   local ansible = require "upgrun.ansible"
--   local res, err = ansible.run {
--     playbook = "/abs/site.yml",        -- required
--     inventories = { "inv.yml", ... },  -- each given as -i, in order
--     limit = "compute" | {"ctl1", "compute"},   tags = "a,b" | {...}, skip_tags =,
--     extra_vars = { release = "zed" },  -- written to a 0600 file, passed as -e @file
--     secret_vars = { "db_password" },   -- extra_vars whose values are secret (names with
--                                        -- password/token/secret/key are secret anyway)
--     become_password = "...",           -- given as ansible_become_password (secret)
--     check = false, diff = false, forks = nil, verbosity = 0, args = {...}, env = {...},
--     timeout = 3600, grace = 5,         -- seconds; then TERM, KILL to the process group
--     on_task = function(task) end,      -- each task once it has ended
--   }
--   res = { tasks = {task...}, stats = {host = {ok =, changed =, failures =, ...}},
--           status = exit code, duration =, failures = {{task =, host =, msg =}...},
--           unreachable = {...}, no_hosts = {play names}, argv = {...} }
--   task = { name =, play =, action =, path = "file:line", handler =, start =, finish = (monotonic),
--            hosts = { name = {status = "ok|changed|failed|skipped|unreachable", ignored =, msg =,
--                              rc =, stderr =, stdout =} }, counts = {ok =, changed =, ...} }
-- On failure: nil, err with err.kind "exit" (failed tasks, unreachable
-- hosts, a play that matched no host; err.result is the result), "config"
-- (no such playbook, a syntax error: the message names the file and line
-- Ansible gives), "spawn" (ansible-playbook is not installed), "timeout"
-- (killed; the message names the task that was running). Messages never
-- carry a secret value (replaced by ***).
local proc = require "upgrun.proc"
local dir_lib = require "upgrun.dir"
local time = require "upgrun.time"
local cjson = require "cjson"
local terminate = require "upgrun.terminate"
local redact = require "upgrun.redact"
local errors = require "upgrun.errors"
local callback_source = require "upgrun.ansible.callback"

local M = {}

M.DEFAULT_TIMEOUT = 3600
M.GRACE = 5
M.PROGRAM = "ansible-playbook"
local MARK = "\30upgrun "
local MAX_FAILURES_IN_MESSAGE = 5
local CONTEXT_LINES = 40 -- plain output lines kept for error messages

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function list_opt(v, sep, name)
  if v == nil then return nil end
  if type(v) == "string" then return v end
  if type(v) ~= "table" then error("ansible: " .. name .. " must be a string or a list of strings", 3) end
  local parts = {}
  for i, x in ipairs(v) do parts[i] = type(x) == "table" and (x.name or tostring(x)) or tostring(x) end
  return table.concat(parts, sep)
end

local function write_file(path, text, mode)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  if mode then os.execute("chmod " .. mode .. " " .. shq(path)) end
  local ok, werr = f:write(text)
  f:close()
  if not ok then return nil, werr end
  return true
end

-- Stops the SSH ControlPersist masters of a run (their sockets in cp_dir):
-- they detach from the process group and would outlive the run.
local function stop_masters(cp_dir)
  local entries = dir_lib.list(cp_dir)
  for _, e in ipairs(entries or {}) do
    local sock = cp_dir .. "/" .. e.name
    os.execute("ssh -o ControlPath=" .. shq(sock) .. " -O exit upgrun-ansible >/dev/null 2>&1")
    os.remove(sock)
  end
  os.remove(cp_dir)
end

-- A private directory (0700) for the callback, the extra-vars file and the
-- SSH control sockets; its removal is synchronous (it also runs after a
-- cancellation).
local function private_dir()
  local r, err = proc.run({ "mktemp", "-d", (os.getenv("TMPDIR") or "/tmp") .. "/upgrun-ansible.XXXXXX" },
                          { timeout = 10, check = true })
  if not r then return nil, err end
  local dir = r.stdout:gsub("%s+$", "")
  local files = {}
  local d = setmetatable({ path = dir, files = files }, {
    __close = function()
      for i = #files, 1, -1 do os.remove(files[i]) end
      os.remove(dir .. "/callback")
      stop_masters(dir .. "/cp")
      os.remove(dir)
    end })
  function d.add(rel, text, mode)
    local p = dir .. "/" .. rel
    files[#files + 1] = p
    local ok, werr = write_file(p, text, mode)
    if not ok then error("ansible: cannot write " .. p .. ": " .. tostring(werr), 0) end
    return p
  end
  return d
end

-- The secret strings of a run: secret extra vars and the become password.
local function secrets_of(o)
  local out, named = {}, {}
  for _, n in ipairs(o.secret_vars or {}) do named[n] = true end
  for k, v in pairs(o.extra_vars or {}) do
    if (named[k] or redact.is_secret_name(k)) and type(v) == "string" then out[#out + 1] = v end
  end
  if type(o.become_password) == "string" then out[#out + 1] = o.become_password end
  return out
end
M.secrets_of = secrets_of

-- argv for ansible-playbook (paths of the private files given).
function M.argv(o, extra_vars_file)
  local argv = { o.program or M.PROGRAM }
  for _, inv in ipairs(o.inventories or {}) do argv[#argv + 1] = "-i"; argv[#argv + 1] = inv end
  local limit = list_opt(o.limit, ":", "limit")
  if limit then argv[#argv + 1] = "--limit"; argv[#argv + 1] = limit end
  local tags = list_opt(o.tags, ",", "tags")
  if tags then argv[#argv + 1] = "--tags"; argv[#argv + 1] = tags end
  local skip = list_opt(o.skip_tags, ",", "skip_tags")
  if skip then argv[#argv + 1] = "--skip-tags"; argv[#argv + 1] = skip end
  if extra_vars_file then argv[#argv + 1] = "-e"; argv[#argv + 1] = "@" .. extra_vars_file end
  if o.check then argv[#argv + 1] = "--check" end
  if o.diff then argv[#argv + 1] = "--diff" end
  if o.forks then argv[#argv + 1] = "--forks"; argv[#argv + 1] = tostring(math.tointeger(o.forks) or o.forks) end
  if (o.verbosity or 0) > 0 then argv[#argv + 1] = "-" .. string.rep("v", o.verbosity) end
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = tostring(a) end
  argv[#argv + 1] = o.playbook
  return argv
end

-- The command line as a person would type it (for logs and --plan).
function M.command_line(argv)
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = a:match("^[%w@%%+=:,./_-]+$") and a or shq(a) end
  return table.concat(parts, " ")
end

-- Ansible's own error from its output, as "file:line:column: reason" when
-- it names a place (a YAML syntax error, an unknown module), else its
-- "ERROR! ..." line, else the last lines.
local function ansible_error(stderr, other)
  local text = (stderr or "") .. "\n" .. table.concat(other or {}, "\n")
  local first = text:match("ERROR! ([^\n]*)")
  if first then
    local yaml_reason = text:match("Syntax Error while loading YAML%.%s*\n%s*([^\n]+)")
    local msg = yaml_reason and ("YAML syntax error: " .. yaml_reason:gsub("%s+$", "")) or first
    local file, line, col = text:match("The error appears to be in '([^\n]-)': line (%d+), column (%d+)")
    if file then return string.format("%s:%s:%s: %s", file, line, col, msg) end
    return msg
  end
  local lines = {}
  for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
  return table.concat(lines, "\n", math.max(1, #lines - 5))
end

local function count(task)
  local c = { ok = 0, changed = 0, failed = 0, skipped = 0, unreachable = 0, ignored = 0 }
  for _, h in pairs(task.hosts) do
    c[h.status] = (c[h.status] or 0) + 1
    if h.ignored then c.ignored = c.ignored + 1 end
  end
  return c
end

local function failure_text(f)
  local detail = f.msg or ""
  if f.rc and f.rc ~= 0 then detail = detail .. string.format(" (rc %s)", tostring(f.rc)) end
  local err = f.stderr and f.stderr:gsub("%s+$", "")
  if err and err ~= "" then detail = detail .. ": " .. (#err > 300 and ("..." .. err:sub(-300)) or err) end
  if f.status == "unreachable" then
    return string.format("host %s unreachable in task '%s': %s", f.host, f.task, detail)
  end
  return string.format("task '%s' failed on %s: %s", f.task, f.host, detail)
end

-- The message of a failed run, naming each failed task and host with Ansible's msg.
local function failed_message(name, res)
  local parts = {}
  for _, f in ipairs(res.failures) do parts[#parts + 1] = failure_text(f) end
  for _, f in ipairs(res.unreachable) do parts[#parts + 1] = failure_text(f) end
  local more = #parts - MAX_FAILURES_IN_MESSAGE
  if more > 0 then
    for i = #parts, MAX_FAILURES_IN_MESSAGE + 1, -1 do parts[i] = nil end
    parts[#parts + 1] = string.format("and %d more (see the timeline)", more)
  end
  for _, p in ipairs(res.no_hosts) do parts[#parts + 1] = "play '" .. p .. "' matched no host" end
  return name .. " failed: " .. table.concat(parts, "; ")
end

-- Reads the event stream; returns the result table (not yet judged).
local function reader(o)
  local res = { tasks = {}, stats = {}, failures = {}, unreachable = {}, no_hosts = {}, other = {} }
  local by_id, cur, play = {}, nil, nil
  local function close_task(now)
    if cur then
      cur.finish = now
      cur.counts = count(cur)
      if o.on_task then o.on_task(cur) end
      cur = nil
    end
  end
  local function on_line(line, now)
    if line:sub(1, #MARK) ~= MARK then
      local other = res.other
      other[#other + 1] = line
      if #other > CONTEXT_LINES then table.remove(other, 1) end
      return
    end
    local ok, ev = pcall(cjson.decode, line:sub(#MARK + 1))
    if not ok or type(ev) ~= "table" then return end
    for k, v in pairs(ev) do if v == cjson.null then ev[k] = nil end end
    if ev.ev == "task" then
      close_task(now)
      cur = { id = ev.id, name = ev.name, action = ev.action, path = ev.path, handler = ev.handler or nil,
              play = play, start = now, hosts = {} }
      by_id[ev.id] = cur
      res.tasks[#res.tasks + 1] = cur
    elseif ev.ev == "result" then
      local t = by_id[ev.task]
      if t then
        ev.rc = math.tointeger(ev.rc) or ev.rc
        t.hosts[ev.host] = { status = ev.status, ignored = ev.ignored or nil, msg = ev.msg, rc = ev.rc,
                             stderr = ev.stderr, stdout = ev.stdout, t = now }
        local f = { task = t.name, host = ev.host, status = ev.status, msg = ev.msg, rc = ev.rc,
                    stderr = ev.stderr, path = t.path }
        if ev.status == "failed" and not ev.ignored then res.failures[#res.failures + 1] = f end
        if ev.status == "unreachable" then res.unreachable[#res.unreachable + 1] = f end
      end
    elseif ev.ev == "play" then
      close_task(now)
      play = ev.name
    elseif ev.ev == "no_hosts" then
      if not ev.remaining then res.no_hosts[#res.no_hosts + 1] = play or "?" end
    elseif ev.ev == "stats" then
      close_task(now)
      res.stats = ev.hosts or {}
    end
  end
  return res, on_line, close_task, function() return cur end
end

-- Runs the playbook; see the header for o and the result.
function M.run(o)
  if type(o) ~= "table" or type(o.playbook) ~= "string" or o.playbook == "" then
    error("ansible.run: needs playbook = a path", 2)
  end
  local secrets = secrets_of(o)
  local function red(s) return redact.string(s, secrets) end
  local name = M.PROGRAM .. " " .. (o.playbook:match("[^/]+$") or o.playbook)
  local fh = io.open(o.playbook, "rb")
  if not fh then return nil, errors.new("config", "no such playbook: " .. o.playbook, { file = o.playbook }) end
  fh:close()

  local dir <close>, derr = private_dir()
  if not dir then
    return nil, errors.new("io", "ansible: cannot make a temporary directory: " .. errors.message(derr))
  end
  os.execute("mkdir -m 700 " .. shq(dir.path .. "/callback"))
  dir.add("callback/upgrun_events.py", callback_source)
  local ev = {}
  for k, v in pairs(o.extra_vars or {}) do ev[k] = v end
  if o.become_password then ev.ansible_become_password = o.become_password end
  local ev_file
  if next(ev) then ev_file = dir.add("extra_vars.json", cjson.encode(ev), "600") end
  local argv = M.argv(o, ev_file)

  local env = {
    ANSIBLE_STDOUT_CALLBACK = "upgrun_events",
    ANSIBLE_CALLBACK_PLUGINS = dir.path .. "/callback" .. (os.getenv("ANSIBLE_CALLBACK_PLUGINS")
      and (":" .. os.getenv("ANSIBLE_CALLBACK_PLUGINS")) or ""),
    ANSIBLE_LOAD_CALLBACK_PLUGINS = "1", ANSIBLE_NOCOLOR = "1", ANSIBLE_FORCE_COLOR = "0",
    -- SSH masters of this run only: one left by an earlier run to the same
    -- host:port:user would be reused without checking the host key again
    ANSIBLE_SSH_CONTROL_PATH_DIR = os.getenv("ANSIBLE_SSH_CONTROL_PATH_DIR") or (dir.path .. "/cp"),
    ANSIBLE_RETRY_FILES_ENABLED = "0", PYTHONDONTWRITEBYTECODE = "1", PYTHONUNBUFFERED = "1",
  }
  for k, v in pairs(o.env or {}) do env[k] = tostring(v) end

  local timeout = o.timeout or M.DEFAULT_TIMEOUT
  local t0 = time.mono()
  local deadline = t0 + timeout
  local p <close>, err = proc.spawn { argv = argv, env_add = env, cwd = o.cwd, group = true, stdin = "" }
  if not p then
    if err.kind == "spawn" then
      err.message = err.message .. " (install Debian's ansible-core: apt-get install ansible-core)"
    end
    return nil, err
  end
  local res, on_line, close_task, running = reader(o)
  res.argv = argv
  local timed_out = false
  while true do
    local line, lerr = p:read_line(math.max(0, deadline - time.mono()))
    if line then on_line(line, time.mono())
    elseif lerr.kind == "timeout" then timed_out = true; break
    else break end -- closed: EOF
  end
  local r, stop_signal
  if not timed_out then
    r = p:wait(math.max(0.5, deadline - time.mono()))
    if not r then timed_out = true end
  end
  if timed_out then
    local escalated
    r, escalated = terminate.escalate {
      term = function() return p:kill("TERM") end, kill = function() return p:kill("KILL") end,
      wait = function(t) return p:wait(t) end, grace = o.grace or M.GRACE,
    }
    stop_signal = r and r.signal or (escalated and "SIGKILL" or "SIGTERM")
  end
  local was_running = running()
  close_task(time.mono())
  res.duration = time.mono() - t0
  res.status = r and r.status
  res.stderr = r and red(r.stderr)

  if timed_out then
    local where = ""
    if was_running then
      local waiting = {}
      where = string.format(" while task '%s' (%s) ran", was_running.name, tostring(was_running.path))
      for h in pairs(was_running.hosts) do waiting[#waiting + 1] = h end
      if #waiting > 0 then
        table.sort(waiting)
        where = where .. " (answered: " .. table.concat(waiting, ", ") .. ")"
      end
    end
    return nil, errors.new("timeout", red(string.format("%s timed out after %gs%s; its process group was stopped "
      .. "with %s", name, timeout, where, tostring(stop_signal))), { result = res })
  end
  if r.signal then
    return nil, errors.new("signal", red(string.format("%s was killed by %s", name, r.signal)), { result = res })
  end
  if #res.failures > 0 or #res.unreachable > 0 or (#res.no_hosts > 0 and not o.allow_no_hosts) then
    return nil, errors.new("exit", red(failed_message(name, res)), { result = res, status = r.status })
  end
  if r.status ~= 0 then
    local text = ansible_error(r.stderr, res.other)
    local kind = (r.status == 4 or text:find("could not be found", 1, true)) and "config" or "exit"
    return nil, errors.new(kind, red(string.format("%s exited with status %d: %s", name, r.status, text)),
                           { result = res, status = r.status })
  end
  return res
end

return M
