-- upgrun.probe_ssh — the data-plane probe kind "ssh": is a guest (a server's
-- operating system) reachable and does it accept logins? Each sample opens a
-- fresh TCP connection to port 22, does the SSH handshake, authenticates and
-- runs `true`, then closes. A fresh connection per sample is the honest check
-- that the guest accepts connections (a kept session would survive a dead
-- sshd listener); it costs the guest one sshd fork, a key exchange and a
-- public-key signature check per sample (~10-20 ms of CPU on each side; the
-- latency of ok samples is reported like any probe's).
--
--   probe.new{name =, ssh = {target =, user = "root", key =, known_hosts =,
--             command = "true", connect_timeout =}, interval =, timeout =, ...}
--   target: {host =, port = 22, netns =} or fn(ctx) -> that | nil, err
--           (resolved per sample: a probe declared before its server exists)
--   known_hosts: a path, or fn(ctx) -> path; default OUT/known_hosts.guests
--           (run-scoped). The policy is accept-new: a guest's first key is
--           recorded, a key that changes during the run is a failure (kind
--           hostkey, named).
--   connect_timeout: seconds for the TCP connect alone (default: the probe's
--           timeout). On a guest's LAN a connect that hangs means nobody
--           answers ARP for the address: the guest is gone. Without the short
--           bound, a login sent while the guest is away waits in ARP (Linux
--           retries for ~3 s) and succeeds once it is back: an ok sample sent
--           during the outage, which shortened a 11 s guest outage to 8 s.
--
-- Sample errors (err.kind, what the report shows):
--   refused      TCP connection refused (nothing listens on port 22)
--   unreachable  no route to the address / network unreachable
--   connect      another TCP or SSH connection failure (handshake, reset)
--   timeout      no answer in time (the message names the phase: TCP
--                connect, SSH handshake, authentication, or the command):
--                the sample is `unknown`, as for every probe
--   hostkey      the guest's host key changed during the run
--   auth         the key was refused
--   exec         the command failed (non-zero exit, signal, channel error)
--   no_target    the target is not known (its server has no address, or is gone)
local errors = require "upgrun.errors"

local M = {}

-- The sample error for what ssh.connect returned.
function M.connect_error(err)
  local kind, msg = err and err.kind or "connect", errors.message(err)
  if kind == "connect" then
    local m = msg:lower()
    if m:find("refused", 1, true) then
      kind = "refused"
    elseif m:find("no route", 1, true) or m:find("unreachable", 1, true) then
      kind = "unreachable"
    end
  elseif kind ~= "timeout" and kind ~= "hostkey" and kind ~= "auth" and kind ~= "cancelled" then
    kind = "connect"
  end
  return errors.new(kind, msg)
end

-- The sample error for what session:exec returned (nil when it succeeded).
function M.exec_error(cmd, r, err)
  if not r then
    if err and err.kind == "timeout" then return errors.new("timeout", "command `" .. cmd .. "`: " .. err.message) end
    if err and err.kind == "cancelled" then return err end
    return errors.new("exec", "command `" .. cmd .. "`: " .. errors.message(err))
  end
  if r.status == 0 then return nil end
  return errors.new("exec", string.format("command `%s` %s%s", cmd,
    r.signal and ("killed by SIG" .. r.signal) or ("exited " .. tostring(r.status)),
    (r.stderr or "") ~= "" and (": " .. r.stderr:sub(1, 200):gsub("%s+$", "")) or ""))
end

local function resolve(v, ctx)
  if type(v) == "function" then return v(ctx) end
  return v
end

-- A readable "what it calls" for the report: ssh root@10.99.0.12:22 (netns x).
function M.describe(spec)
  local t = type(spec.target) == "table" and spec.target or nil
  return string.format("ssh %s@%s:%d %s", spec.user or "root", t and t.host or "(resolved per sample)",
    t and t.port or 22, spec.command or "true") .. (t and t.netns and (" (netns " .. t.netns .. ")") or "")
end

-- The probe function of an ssh probe (see the header). p.timeout bounds the
-- whole sample: connect + command.
function M.fn(spec)
  assert(type(spec) == "table" and spec.target, "probe ssh needs {target = ...}")
  local ssh, time
  local cmd = spec.command or "true"
  return function(ctx, p)
    ssh = ssh or require "upgrun.ssh"
    time = time or require "upgrun.time"
    local t0 = time.mono()
    local target, terr = resolve(spec.target, ctx)
    if not target then
      return nil, errors.new("no_target", terr and errors.message(terr) or "no target to probe")
    end
    local kh = resolve(spec.known_hosts, ctx) or ((ctx and ctx.out or ".") .. "/known_hosts.guests")
    local s <close>, err = ssh.connect {
      host = target.host, port = target.port or 22, netns = target.netns,
      user = resolve(spec.user, ctx) or "root", key = resolve(spec.key, ctx), agent = false,
      known_hosts = kh, host_key_policy = "accept-new", timeout = p.timeout,
      connect_timeout = spec.connect_timeout and math.min(spec.connect_timeout, p.timeout),
    }
    if not s then return nil, M.connect_error(err) end
    local left = p.timeout - (time.mono() - t0)
    if left <= 0.001 then return nil, errors.new("timeout", "no time left for the command after connecting") end
    local r, xerr = s:exec(cmd, { timeout = left })
    local e = M.exec_error(cmd, r, xerr)
    if e then return nil, e end
    return true
  end
end

return M
