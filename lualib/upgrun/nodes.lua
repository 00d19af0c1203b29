-- upgrun.nodes — nodes reached over SSH, fan-out over many nodes, and the
-- event log of everything done on them (see docs/nodes.md).
--
--   local nodes = require "upgrun.nodes"
--   local inv = assert(nodes.load("inventory.yml"))      -- upgrun.inventory
--   local n = inv:host("ctl1")
--   local r, err = n:run("systemctl is-active nova-api", {timeout = 10})
--   n:run_argv({"cat", path})                            -- quoted for you
--   local res = nodes.fanout(inv:group("compute"), "true", {concurrency = 10})
--   nodes.on_event(function(ev) ... end)                 -- or nodes.events
--
-- A node keeps ONE SSH session (connected lazily, reused by every command,
-- re-connected once if it died); concurrent commands on a node share it, a
-- channel per command.
local ssh_identity = require "upgrun.ssh_identity"
local shell = require "upgrun.shell"
local task = require "upgrun.task"
local single_flight = require "upgrun.single_flight"
local time = require "upgrun.time"

local M = {}

-- ---- events ---------------------------------------------------------------

M.events = {}          -- every event, in completion order
M.max_events = 100000  -- older ones are dropped beyond this
local listeners = {}

-- Registers fn(event); returns a function that unregisters it.
function M.on_event(fn)
  listeners[#listeners + 1] = fn
  return function()
    for i, f in ipairs(listeners) do if f == fn then table.remove(listeners, i); return end end
  end
end

function M.clear_events() M.events = {} end

-- Starts an event: returns a table to fill and pass to finish().
local function ev_start(kind, node, fields)
  local ev = { type = kind, node = node and node.name, start = time.mono(), wall_start = time.now() }
  for k, v in pairs(fields or {}) do ev[k] = v end
  return ev
end

local function ev_finish(ev, ok, err, extra)
  ev.finish = time.mono()
  ev.wall_end = time.now()
  ev.duration = ev.finish - ev.start
  ev.ok = ok and true or false
  if err then
    ev.error_kind = type(err) == "table" and err.kind or "error"
    ev.error = type(err) == "table" and err.message or tostring(err)
  end
  for k, v in pairs(extra or {}) do ev[k] = v end
  local evs = M.events
  evs[#evs + 1] = ev
  if #evs > M.max_events then table.remove(evs, 1) end
  for _, fn in ipairs(listeners) do
    local okl, e = pcall(fn, ev)
    if not okl then io.stderr:write("upgrun.nodes: event listener failed: ", tostring(e), "\n") end
  end
  return ev
end
M._ev_start, M._ev_finish = ev_start, ev_finish

local mkerr = require("upgrun.errors").newf
M._mkerr = mkerr

-- ---- shell quoting -------------------------------------------------------

-- Quotes one argument for a POSIX shell: safe words stay as they are,
-- anything else is single-quoted ('\'' for embedded quotes).
-- (upgrun.shell, kept here under the names callers use.)
M.quote = require("upgrun.shell").quote

-- Joins an argv into one shell-safe command line.
M.join = require("upgrun.shell").join

-- ---- nodes ------------------------------------------------------------------

local Node = {}
Node.__index = Node
M.Node = Node

local function expand(path)
  if type(path) ~= "string" then return path end
  local home = os.getenv("HOME") or ""
  return (path:gsub("^~/", home .. "/"))
end

local function truthy(v)
  if type(v) == "string" then v = v:lower(); return v == "true" or v == "yes" end
  return v == true
end

-- A node from its name and (merged) variables. opts.inventory is kept as
-- node.inventory.
function M.new(name, vars, opts)
  vars = vars or {}
  local self = setmetatable({ name = name, vars = vars, inventory = opts and opts.inventory }, Node)
  self.host = tostring(vars.ansible_host or vars.ansible_ssh_host or name)
  self.port = tonumber(vars.ansible_port or vars.ansible_ssh_port) or 22
  self.user = vars.ansible_user or vars.ansible_ssh_user
  self.key = expand(vars.ansible_ssh_private_key_file or vars.ansible_private_key_file)
  self.known_hosts = expand(vars.upgrun_known_hosts)
  self.host_key_policy = vars.upgrun_host_key_policy
  self.become = truthy(vars.ansible_become)
  self.become_user = vars.ansible_become_user
  self.connect_timeout = tonumber(vars.upgrun_ssh_timeout or vars.ansible_timeout) or 10
  self.keepalive = tonumber(vars.upgrun_ssh_keepalive)
  return self
end

function Node:__tostring() return "node " .. self.name end

-- The node's session, connecting if needed. Concurrent callers share one
-- connection attempt. Returns session or nil, err.
function Node:session()
  local s = self._session
  if s and s:is_open() then return s end
  -- one caller connects, the others wait (upgrun.single_flight)
  self._connect_flight = self._connect_flight or single_flight.new("connect " .. self.name)
  if self._connect_flight:busy() then
    local ok, sess, err = self._connect_flight:run(nil, self.connect_timeout + 5)
    if not ok then return nil, sess end
    return sess, err
  end
  local reconnect = s ~= nil
  self._session = nil
  if s then s:close() end
  local function connect()
    local ev = ev_start("connect", self, { host = self.host, port = self.port, user = self.user,
      reconnect = reconnect or nil })
    local sess, err = ssh_identity.connect {
      host = self.host, port = self.port, user = self.user, key = self.key,
      password = self.vars.ansible_password or self.vars.ansible_ssh_pass,
      known_hosts = self.known_hosts, host_key_policy = self.host_key_policy,
      timeout = self.connect_timeout, keepalive = self.keepalive,
      agent = (self.key or self.vars.ansible_password) and false or nil,
    }
    ev_finish(ev, sess, err, sess and { fingerprint = sess:info().fingerprint } or nil)
    if sess then self._session = sess end
    return sess, err
  end
  local ok, sess, err = self._connect_flight:run(connect)
  if not ok then return nil, sess end
  return sess, err
end

-- Wraps cmd for become (sudo -n) and the remote kill of a timed-out command.
function Node:_wrap(cmd, opts)
  local become = opts.become
  if become == nil then become = self.become end
  if opts.timeout and opts.kill_remote ~= false then
    -- the command dies on the node too, shortly after the local timeout
    cmd = string.format("timeout -k 2 %d sh -c %s", math.ceil(opts.timeout) + 1, M.quote(cmd))
  end
  if become then
    local u = opts.become_user or self.become_user
    cmd = "sudo -n " .. (u and ("-u " .. M.quote(u) .. " ") or "") .. "sh -c " .. M.quote(cmd)
  end
  return cmd
end

-- Runs a shell command. opts: timeout (s), stdin, env, become (overrides
-- ansible_become), check (a non-zero exit becomes nil, {kind="exit"}),
-- display (what the event log shows instead of cmd: use it when cmd holds
-- a secret), kill_remote (default true: wrap in `timeout` so a timed-out
-- command does not live on). Returns {status, signal, stdout, stderr,
-- duration, ok} or nil, err (connect, auth, hostkey, timeout, closed,
-- channel, exit).
function Node:run(cmd, opts)
  opts = opts or {}
  local ev = ev_start("command", self, { command = opts.display or cmd })
  local sess, err = self:session()
  local r
  if sess then
    r, err = sess:exec(shell.env_prefix(opts.env) .. self:_wrap(cmd, opts), { timeout = opts.timeout,
      stdin = opts.stdin, max_output = opts.max_output })
  end
  if r then
    r.ok = r.status == 0
    if opts.check and not r.ok then
      err = mkerr("exit", "%s: %s %s", self.name, opts.display or cmd,
        r.signal and ("killed by SIG" .. r.signal) or ("exited " .. tostring(r.status)))
      err.status, err.signal, err.stdout, err.stderr = r.status, r.signal, r.stdout, r.stderr
    end
  end
  ev_finish(ev, r and r.ok and not (opts.check and not r.ok), err, r and { status = r.status, signal = r.signal,
    stderr_tail = #r.stderr > 0 and r.stderr:sub(-200) or nil } or nil)
  if err and (not r or opts.check) then return nil, err end
  return r
end

-- Runs an argv (each element shell-quoted: never an injection).
function Node:run_argv(argv, opts)
  return self:run(M.join(argv), opts)
end

-- Uploads data (a string) or {path=local} to remote_path with mode.
function Node:upload(data, remote_path, mode, opts)
  local ev = ev_start("upload", self, { path = remote_path, bytes = type(data) == "string" and #data or nil })
  local sess, err = self:session()
  local ok
  if sess then ok, err = sess:upload(data, remote_path, mode, opts) end
  ev_finish(ev, ok, err)
  if not ok then return nil, err end
  return true
end

function Node:close()
  if self._session then self._session:close(); self._session = nil end
end

-- The node's service `name` (upgrun.services).
function Node:service(name)
  return require("upgrun.services").get(self, name)
end

-- ---- fan-out ---------------------------------------------------------------

-- Runs fn_or_cmd on every node of `list` with at most opts.concurrency at
-- once (default: all), in batches of opts.serial nodes (each batch done before
-- the next starts), never stopping at a failure unless opts.stop_on_error.
-- A string is run with node:run(cmd, opts.run or {timeout = opts.timeout});
-- a function is called as fn(node) and may return result[, err].
-- Returns results: results[i] = {node=, name=, ok=, result=, err=, duration=,
-- skipped=} in list order; results.by_name[name]; results.ok (all ok);
-- results.failed (names); results.duration.
function M.fanout(list, fn_or_cmd, opts)
  opts = opts or {}
  assert(type(list) == "table", "fanout: a list of nodes expected")
  local fn = fn_or_cmd
  if type(fn) == "string" then
    local cmd, ropts = fn, opts.run or { timeout = opts.timeout }
    fn = function(node) return node:run(cmd, ropts) end
  end
  assert(type(fn) == "function", "fanout: a command string or a function expected")
  local n = #list
  local conc = math.max(1, math.floor(opts.concurrency or n))
  local serial = math.max(1, math.floor(opts.serial or n))
  local results = { by_name = {}, failed = {} }
  local t0 = time.mono()
  local stop = false

  local function one(i)
    local node = list[i]
    local res = { node = node, name = node.name }
    local s = time.mono()
    local ok, r, e = pcall(fn, node)
    if not ok then
      if type(r) == "table" and r.kind == "cancelled" then error(r, 0) end
      res.ok, res.err = false, mkerr("error", "%s", tostring(r))
    elseif r == nil or r == false then
      res.ok, res.err = false, e or mkerr("error", "returned %s", tostring(r))
    else
      res.result = r
      res.ok = not (type(r) == "table" and (r.signal ~= nil or (r.status ~= nil and r.status ~= 0)))
    end
    res.duration = time.mono() - s
    results[i] = res
    if not res.ok and opts.stop_on_error then stop = true end
  end

  local b = 1
  while b <= n do
    local last = math.min(n, b + serial - 1)
    local next_i = b
    local workers = {}
    for w = 1, math.min(conc, last - b + 1) do
      workers[w] = task.spawn("fanout worker", function()
        while not stop and next_i <= last do
          local i = next_i
          next_i = next_i + 1
          one(i)
        end
      end)
    end
    for _, w in ipairs(workers) do
      local ok, e = pcall(w.join, w)
      if not ok then -- we were cancelled: take the workers down too
        for _, w2 in ipairs(workers) do w2:cancel() end
        error(e, 0)
      end
    end
    b = last + 1
    if stop then break end
  end
  results.ok = true
  for i = 1, n do
    local r = results[i]
    if not r then
      r = { node = list[i], name = list[i].name, ok = false, skipped = true,
        err = mkerr("skipped", "not run: an earlier node failed (stop_on_error)") }
      results[i] = r
    end
    results.by_name[r.name] = r
    if not r.ok then results.ok = false; results.failed[#results.failed + 1] = r.name end
  end
  results.duration = time.mono() - t0
  return results
end

-- Loads an inventory (upgrun.inventory.load; opts.playbook_dir).
function M.load(path, opts)
  return require("upgrun.inventory").load(path, opts)
end

return M
