-- upgrun.proc_run — upgrun.proc.run(argv, opts): spawn, wait with a timeout,
-- and on the timeout stop the child with upgrun.terminate's TERM -> grace ->
-- KILL policy; check = true turns a non-zero exit or a death by signal into
-- an error. Written in Lua on the C primitives (spawn, wait, kill); the C
-- module installs it as proc.run when it is loaded (see docs/runtime.md for
-- the contract).
local terminate = require "upgrun.terminate"

local ERROR_MT = debug.getregistry()["upgrun.error"]

local function new_error(kind, message, fields)
  local e = { kind = kind, message = message }
  for k, v in pairs(fields or {}) do if e[k] == nil then e[k] = v end end
  return setmetatable(e, ERROR_MT)
end

local function field_error(name, what) error(string.format("bad field '%s' (%s)", name, what), 3) end

local function number_opt(opts, name, default)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "number" then field_error(name, "number expected, got " .. type(v)) end
  if v ~= v or v < 0 then field_error(name, "must be >= 0") end
  return v
end

local function fmt_secs(s) return string.format("%g", s) end

-- Installs run into the C module table `proc`.
return function(proc)
  function proc.run(argv, opts)
    if type(argv) ~= "string" and type(argv) ~= "table" then
      error("bad argument #1 to 'run' (table or string expected, got " .. type(argv) .. ")", 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
      error("bad argument #2 to 'run' (table expected, got " .. type(opts) .. ")", 2)
    end
    opts = opts or {}
    local timeout = number_opt(opts, "timeout", 60)
    local grace = number_opt(opts, "grace", 2)
    local check = opts.check
    if check ~= nil and type(check) ~= "boolean" then field_error("check", "boolean expected, got " .. type(check)) end
    local spec = {}
    for k, v in pairs(opts) do spec[k] = v end
    spec.timeout, spec.grace, spec.check = nil, nil, nil
    spec.argv = type(argv) == "string" and { "/bin/sh", "-c", argv } or argv
    local p <close>, err = proc.spawn(spec)
    if not p then return nil, err end
    local name = tostring(spec.argv[1])
    local res
    res, err = p:wait(timeout)
    if not res then
      if err.kind ~= "timeout" then return nil, err end
      local escalated
      res, escalated = terminate.escalate {
        term = function() return p:kill("TERM") end,
        kill = function() return p:kill("KILL") end,
        wait = function(t) return p:wait(t) end,
        grace = grace,
      }
      if not res then return nil, escalated end
      return nil, new_error("timeout", string.format("'%s' timed out after %ss (stopped with %s)", name,
        fmt_secs(timeout), res.signal or (escalated and "SIGKILL" or "SIGTERM")), res)
    end
    if check and res.signal then
      return nil, new_error("signal", string.format("'%s' was killed by %s", name, res.signal), res)
    end
    if check and res.status ~= 0 then
      return nil, new_error("exit", string.format("'%s' exited with status %d", name, res.status), res)
    end
    return res
  end
end
