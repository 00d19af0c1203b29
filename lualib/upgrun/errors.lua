-- upgrun.errors — the one error constructor of the Lua side, and the list of
-- error kinds. Every error a library returns (`nil, err`) or raises is a table
-- {kind =, message =, ...fields} that prints as "kind: message" (the same
-- metatable as the C primitives' errors).
--
--   errors.new(kind, message, fields) -> err
--   errors.newf(kind, fmt, ...) -> err
--   errors.message(e) -> string     the message of any error value
--   errors.KINDS                    every kind, with what it means
local M = {}

-- The runtime's error metatable when it is there (it is, inside upgrun).
local registry = debug and debug.getregistry and debug.getregistry()
M.MT = (registry and registry["upgrun.error"]) or {
  __tostring = function(e) return tostring(e.kind) .. ": " .. tostring(e.message) end,
}

-- Every error kind used by upgrun (C primitives and Lua libraries). Code
-- that raises or returns an error uses one of these names.
M.KINDS = {
  timeout = "a wait ran out of time",
  cancelled = "the task was cancelled (abort, timeout of an enclosing step)",
  connect = "a TCP/SSH connection could not be made",
  tls = "a TLS handshake or certificate check failed",
  http = "an HTTP request got an error status",
  exit = "a command exited with a non-zero status",
  signal = "a command was killed by a signal",
  exited = "the process had already exited (kill of a finished process)",
  spawn = "a command could not be started",
  auth = "authentication was refused",
  hostkey = "an SSH host key did not match",
  channel = "an SSH channel failed",
  closed = "the connection or process was closed",
  protocol = "a peer answered something that is not what the protocol says",
  too_large = "an output exceeded its size cap",
  io = "a file or stream could not be read or written",
  yaml = "a YAML document could not be parsed",
  config = "a configuration (clouds.yaml, service spec) is wrong or incomplete",
  inventory = "an inventory file is wrong (the message names file:line)",
  usage = "a bad invocation or scenario (exit 2)",
  not_found = "the resource does not exist",
  not_running = "the service is not running",
  forbidden = "the API refused the request (403)",
  fault = "an OpenStack resource went into an error state",
  catalog = "the service catalog has no usable endpoint",
  ambiguous = "a name matches several resources",
  version = "an API version is not supported",
  refused = "a TCP connection was refused (nothing listens there; an ssh probe's sample)",
  unreachable = "no route to the address (an ssh probe's sample)",
  exec = "a command run over SSH failed (an ssh probe's sample)",
  no_target = "a probe had nothing to probe (its target does not exist)",
  not_sent = "a probe sample was not sent: nothing to probe now (recorded as skipped)",
  error = "anything else",
}

-- Builds an error {kind =, message =, ...fields}.
function M.new(kind, message, fields)
  local e = {}
  if fields then for k, v in pairs(fields) do e[k] = v end end
  e.kind, e.message = kind, message
  return setmetatable(e, M.MT)
end

-- Builds an error with a formatted message.
function M.newf(kind, fmt, ...) return M.new(kind, string.format(fmt, ...)) end

-- The message of any error value (an error table, a string, anything).
function M.message(e)
  if type(e) == "table" then
    if e.message ~= nil then return tostring(e.message) end
    local mt = getmetatable(e)
    if mt and mt.__tostring then return tostring(e) end
    return tostring(e.kind or e)
  end
  return tostring(e)
end

-- Whether e is an error of that kind.
function M.is(e, kind) return type(e) == "table" and e.kind == kind end

return M
