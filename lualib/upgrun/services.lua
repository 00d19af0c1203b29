-- upgrun.services — control of a service on a node: stop (signal, wait,
-- SIGKILL after a grace period), start (+ wait until running and healthy),
-- restart, signal, wait_stopped, wait_running, pid, running_release.
-- The backend comes from the node's inventory variable `upgrun_services`
-- (service name -> spec): "command" (os-faults style: start/stop commands, a
-- pidfile and/or a pgrep -f pattern, health and running_release commands) or
-- "systemd" (systemctl). See docs/nodes.md.
--
--   local svc = node:service("nova-api")        -- or services.get(node, name)
--   local r, err = svc:stop{signal = "TERM", grace = 30, timeout = 60}
--   -- r = {stopped=true, pid=, escalated=false, duration=}
--   local r, err = svc:start{timeout = 120}      -- r = {pid=, healthy=, duration=}
local nodes = require "upgrun.nodes"
local time = require "upgrun.time"
local terminate = require "upgrun.terminate"

local M = {}
local Service = {}
Service.__index = Service
M.Service = Service

local q = nodes.quote
local mkerr = nodes._mkerr
local ev_start, ev_finish = nodes._ev_start, nodes._ev_finish

M.poll_interval = 0.05 -- seconds between checks while waiting

-- The service `name` on `node`, from node.vars.upgrun_services[name] (or
-- `spec` given explicitly). Raises if the node has no such service.
function M.get(node, name, spec)
  spec = spec or (type(node.vars.upgrun_services) == "table" and node.vars.upgrun_services[name])
  if type(spec) ~= "table" then
    local known = {}
    for k in pairs(type(node.vars.upgrun_services) == "table" and node.vars.upgrun_services or {}) do
      known[#known + 1] = k
    end
    table.sort(known)
    error(string.format("node %s has no service '%s' in upgrun_services (services: %s)", node.name,
      tostring(name), #known > 0 and table.concat(known, ", ") or "none"), 2)
  end
  local backend = spec.backend or "command"
  if backend ~= "command" and backend ~= "systemd" then
    error(string.format("node %s service %s: unknown backend %q", node.name, name, tostring(backend)), 2)
  end
  node._services = node._services or {}
  local cached = node._services[name]
  if cached and cached.spec == spec then return cached end
  local self = setmetatable({ node = node, name = name, spec = spec, backend = backend,
    unit = spec.unit or name }, Service)
  node._services[name] = self
  return self
end

function Service:__tostring() return string.format("service %s on %s", self.name, self.node.name) end

-- Substitutes {node}, {service}, {pid} in a spec command.
function Service:_cmd(tmpl, pid)
  return (tmpl:gsub("{(%w+)}", function(k)
    if k == "node" then return self.node.name end
    if k == "service" then return self.name end
    if k == "pid" and pid then return tostring(pid) end
  end))
end

function Service:_run(cmd, timeout)
  return self.node:run(cmd, { timeout = timeout or 30 })
end

-- Shell snippet: exit 0 if process $1 exists and is not a zombie.
local ALIVE = [[alive() { s=$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -c1); ]] ..
  [[[ -n "$s" ] && [ "$s" != Z ]; }; ]]

-- Remote command printing the main pid (nothing when not running).
function Service:_pid_cmd()
  if self.backend == "systemd" then
    return "systemctl show -p MainPID --value " .. q(self.unit)
  end
  local parts = { ALIVE }
  if self.spec.pidfile then
    parts[#parts + 1] = string.format([[p=$(cat %s 2>/dev/null | tr -dc 0-9); ]] ..
      [[if [ -n "$p" ] && alive "$p"; then echo "$p"; exit 0; fi; ]], q(self:_cmd(self.spec.pidfile)))
  end
  if self.spec.pattern then
    -- the oldest match outside our own session (whose command lines contain
    -- the pattern too)
    parts[#parts + 1] = string.format([[me=$(ps -o sid= -p $$ | tr -d ' '); ]] ..
      [[for p in $(pgrep -f -- %s); do [ "$(ps -o sid= -p $p | tr -d ' ')" = "$me" ] && continue; ]] ..
      [[alive "$p" && { echo "$p"; exit 0; }; done; ]], q(self:_cmd(self.spec.pattern)))
  end
  parts[#parts + 1] = "exit 0"
  return table.concat(parts)
end

-- The running main pid, or false when not running; nil, err when the node
-- could not be asked.
function Service:pid()
  local r, err = self:_run(self:_pid_cmd(), 30)
  if not r then return nil, err end
  if r.status ~= 0 then
    return nil, mkerr("exit", "%s: finding the pid failed (%s): %s", tostring(self), tostring(r.status), r.stderr)
  end
  local pid = tonumber(r.stdout:match("%d+"))
  if not pid or pid == 0 then return false end
  return pid
end

local function timeout_err(what, secs)
  return mkerr("timeout", "%s did not happen within %.1f s", what, secs)
end

-- Waits until the process `pid` (or the service, when pid is nil) is gone.
-- true, or nil, {kind="timeout"}.
function Service:wait_stopped(timeout, pid)
  timeout = timeout or 60
  local deadline = time.mono() + timeout
  while true do
    local alive
    if pid then
      local r, err = self:_run(ALIVE .. "alive " .. math.tointeger(pid), 30)
      if not r then return nil, err end
      alive = r.status == 0
    else
      local p, err = self:pid()
      if p == nil then return nil, err end
      alive = p ~= false
    end
    if not alive then return true end
    if time.mono() >= deadline then
      return nil, timeout_err(tostring(self) .. " stopping", timeout)
    end
    time.sleep(math.min(M.poll_interval, math.max(0, deadline - time.mono())))
  end
end

-- Waits until the service runs (and, if it has a health command and
-- opts.health ~= false, until that passes). pid, or nil, {kind="timeout"}.
function Service:wait_running(timeout, opts)
  timeout = timeout or 60
  opts = opts or {}
  local deadline = time.mono() + timeout
  local pid
  while true do
    local p, err = self:pid()
    if p == nil then return nil, err end
    if p then
      if self.backend == "systemd" then
        local r = self:_run("systemctl is-active " .. q(self.unit), 30)
        if r and r.stdout:match("^active") then pid = p end
      else
        pid = p
      end
    end
    if pid then break end
    if time.mono() >= deadline then return nil, timeout_err(tostring(self) .. " starting", timeout) end
    time.sleep(math.min(M.poll_interval, math.max(0, deadline - time.mono())))
  end
  if self.spec.health and opts.health ~= false then
    while true do
      local left = math.max(0.1, deadline - time.mono())
      local r = self:_run(self:_cmd(self.spec.health, pid), math.min(left, 30))
      if r and r.status == 0 then break end
      if time.mono() >= deadline then
        return nil, timeout_err(tostring(self) .. " becoming healthy", timeout)
      end
      time.sleep(math.min(M.poll_interval * 2, math.max(0, deadline - time.mono())))
    end
  end
  return pid
end

-- Sends a signal ("TERM", "KILL", "HUP", ... or a number) to the main
-- process. true, or nil, err (kind "not_running" when there is none).
function Service:signal(sig, pid)
  sig = tostring(sig or "TERM"):gsub("^SIG", "")
  local ev = ev_start("service", self.node, { service = self.name, action = "signal", signal = sig })
  local r, err
  if self.backend == "systemd" then
    r, err = self:_run("systemctl kill -s " .. q(sig) .. " " .. q(self.unit), 30)
  else
    if not pid then
      pid, err = self:pid()
      if pid == false then err = mkerr("not_running", "%s is not running", tostring(self)) end
    end
    if pid then r, err = self:_run("kill -s " .. q(sig) .. " " .. math.tointeger(pid), 30) end
  end
  if r and r.status ~= 0 then
    err = mkerr("exit", "signalling %s failed: %s", tostring(self), r.stderr)
  end
  ev_finish(ev, r and r.status == 0, err, { pid = pid })
  if err then return nil, err end
  return true
end

-- Stops the service: sends opts.signal (default TERM; or runs the spec's
-- stop command when opts.signal is nil and one exists), waits up to
-- opts.grace (default 30) s, then SIGKILLs and waits up to opts.timeout
-- (default 60 s in total). Returns {stopped=true, pid=, escalated=,
-- was_running=, duration=} or nil, err.
function Service:stop(opts)
  opts = opts or {}
  local grace = opts.grace or 30
  local timeout = opts.timeout or math.max(60, grace + 10)
  local t0 = time.mono()
  local ev = ev_start("service", self.node, { service = self.name, action = "stop", signal = opts.signal })
  local function done(res, err)
    if res then res.duration = time.mono() - t0 end
    ev_finish(ev, res, err, res and { pid = res.pid, escalated = res.escalated } or nil)
    return res, err
  end
  local pid, err = self:pid()
  if pid == nil then return done(nil, err) end
  if pid == false then
    return done({ stopped = true, was_running = false, escalated = false })
  end
  -- the one TERM -> grace -> KILL policy (upgrun.terminate), also used by proc.run
  local ok, escalated = terminate.escalate {
    term = function()
      if self.backend == "systemd" then
        return self:_run(string.format("systemctl kill -s %s %s", q(opts.signal or "TERM"), q(self.unit)), 30)
      elseif opts.signal == nil and self.spec.stop then
        return self:_run(self:_cmd(self.spec.stop, pid), timeout)
      end
      return self:_run("kill -s " .. q(tostring(opts.signal or "TERM"):gsub("^SIG", "")) ..
        " " .. math.tointeger(pid), 30)
    end,
    kill = function()
      if self.backend == "systemd" then self:_run("systemctl kill -s KILL " .. q(self.unit), 30)
      else self:_run("kill -s KILL " .. math.tointeger(pid), 30) end
      return true -- the wait below tells whether it worked
    end,
    wait = function(t) return self:wait_stopped(t, pid) end,
    grace = function() return math.max(0, grace - (time.mono() - t0)) end,
    after = function() return math.max(0.5, timeout - (time.mono() - t0)) end,
  }
  if not ok then return done(nil, escalated) end
  if self.backend == "systemd" then self:_run("systemctl stop " .. q(self.unit), 30) end
  return done({ stopped = true, was_running = true, pid = pid, escalated = escalated })
end

-- Starts the service (nothing to do when it already runs), then waits until
-- it runs and its health command passes, within opts.timeout (default 60).
-- Returns {pid=, healthy=, already=, duration=} or nil, err.
function Service:start(opts)
  opts = opts or {}
  local timeout = opts.timeout or 60
  local t0 = time.mono()
  local ev = ev_start("service", self.node, { service = self.name, action = "start" })
  local function done(res, err)
    if res then res.duration = time.mono() - t0 end
    ev_finish(ev, res, err, res and { pid = res.pid } or nil)
    return res, err
  end
  local pid, err = self:pid()
  if pid == nil then return done(nil, err) end
  if pid and self.backend == "command" then
    return done({ pid = pid, already = true, healthy = nil })
  end
  local cmd = self.backend == "systemd" and ("systemctl start " .. q(self.unit)) or self:_cmd(self.spec.start)
  local r
  r, err = self:_run(cmd, timeout)
  if not r then return done(nil, err) end
  if r.status ~= 0 then
    local e = mkerr("exit", "starting %s failed (%s): %s", tostring(self),
      r.signal and ("SIG" .. r.signal) or ("exit " .. tostring(r.status)),
      (r.stderr ~= "" and r.stderr or r.stdout):sub(-500))
    e.status, e.stdout, e.stderr = r.status, r.stdout, r.stderr
    return done(nil, e)
  end
  pid, err = self:wait_running(math.max(0.1, timeout - (time.mono() - t0)))
  if not pid then return done(nil, err) end
  return done({ pid = pid, healthy = self.spec.health and true or nil })
end

-- stop(opts) then start(opts). Returns {stop=, start=, duration=}.
function Service:restart(opts)
  local t0 = time.mono()
  local s, err = self:stop(opts)
  if not s then return nil, err end
  local st
  st, err = self:start(opts)
  if not st then return nil, err end
  return { stop = s, start = st, duration = time.mono() - t0, pid = st.pid }
end

-- true when running, false when not; nil, err when the node can't be asked.
function Service:is_running()
  local p, err = self:pid()
  if p == nil then return nil, err end
  return p ~= false
end

-- Runs the health command: true/false (nil, err when none or unreachable).
function Service:healthy(timeout)
  if not self.spec.health then return nil, mkerr("config", "%s has no health command", tostring(self)) end
  local r, err = self:_run(self:_cmd(self.spec.health), timeout or 30)
  if not r then return nil, err end
  return r.status == 0
end

-- Which code release the running process uses (the spec's running_release
-- command's output, trimmed), or nil, err.
function Service:running_release()
  if not self.spec.running_release then
    return nil, mkerr("config", "%s has no running_release command", tostring(self))
  end
  local r, err = self:_run(self:_cmd(self.spec.running_release), 30)
  if not r then return nil, err end
  if r.status ~= 0 then return nil, mkerr("exit", "running_release of %s failed: %s", tostring(self), r.stderr) end
  return (r.stdout:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Every service of a node (sorted by name).
function M.of(node)
  local out = {}
  for name in pairs(type(node.vars.upgrun_services) == "table" and node.vars.upgrun_services or {}) do
    out[#out + 1] = name
  end
  table.sort(out)
  for i, name in ipairs(out) do out[i] = M.get(node, name) end
  return out
end

return M
