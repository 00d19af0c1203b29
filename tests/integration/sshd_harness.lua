-- sshd_harness — real OpenSSH sshd instances for the SSH/nodes/services tests
-- and the benchmark. Everything lives in a temp dir: generated host and client
-- keys (ed25519), authorized_keys, one sshd_config per node; sshd listens on
-- 127.0.0.1 on a free port from 22300-29999. The machine's own sshd and ~/.ssh
-- are never touched: callers pass known_hosts and key explicitly.
--
--   local H = require "sshd_harness"
--   local lab = H.new()                      -- temp dir + client key
--   local n = lab:start("n1", {password_auth=false, host_key=...})
--   n.port, n.pid, n.known_hosts (a file with just this node), n.dir
--   lab.key, lab.known_hosts (every started node), lab.user
--   lab:stop(n), lab:kill_all(n) (listener and its per-connection children)
--   lab:inventory(nodes, extra_host_vars) -> YAML text
--   H.netns_add(name, {veth=...}) / H.netns_del(name): a network namespace
--   (root only) with lo up; lab:start(name, {netns=NS, address=A}) runs that
--   sshd inside NS listening on A (default 127.0.0.1), as the lab's guests do
--   lab:cleanup()
local proc = require "upgrun.proc"
local time = require "upgrun.time"

local H = {}
H.__index = H

local function sh(cmd)
  local r = assert(proc.run({ "/bin/sh", "-c", cmd }, { timeout = 60 }))
  if r.status ~= 0 then
    error(string.format("harness command failed (%s): %s\n%s", tostring(r.status), cmd, r.stderr), 2)
  end
  return r.stdout
end
H.sh = sh

local function readfile(p)
  local f = assert(io.open(p, "rb")); local s = f:read("a"); f:close(); return s
end
local function writefile(p, s, mode)
  local f = assert(io.open(p, "wb")); f:write(s); f:close()
  if mode then sh(string.format("chmod %s '%s'", mode, p)) end
end
H.readfile, H.writefile = readfile, writefile

function H.keygen(path, opts)
  opts = opts or {}
  sh(string.format("ssh-keygen -q -t %s -N '%s' -C upgrun-test -f '%s'",
    opts.type or "ed25519", opts.passphrase or "", path))
  return path
end

-- opts.dir: use this dir instead of a fresh mktemp one.
function H.new(opts)
  opts = opts or {}
  local self = setmetatable({}, H)
  os.execute("mkdir -p /run/sshd")
  self.dir = opts.dir or sh("mktemp -d /tmp/upgrun-sshd.XXXXXX"):gsub("%s+$", "")
  sh("mkdir -p '" .. self.dir .. "'")
  self.user = sh("id -un"):gsub("%s+$", "")
  self.key = H.keygen(self.dir .. "/id_ed25519")
  writefile(self.dir .. "/authorized_keys", readfile(self.key .. ".pub"))
  self.host_key = H.keygen(self.dir .. "/ssh_host_ed25519_key")
  self.known_hosts = self.dir .. "/known_hosts"
  writefile(self.known_hosts, "")
  self.nodes = {}
  self.next_port = opts.base_port or (22300 + (os.time() * 7 + math.random(0, 999)) % 7000)
  return self
end

local function known_line(port, pubfile, address)
  local t, b64 = readfile(pubfile):match("^(%S+)%s+(%S+)")
  return string.format("[%s]:%d %s %s\n", address or "127.0.0.1", port, t, b64)
end
H.known_line = known_line

-- Starts one sshd. opts: host_key (path, default the lab's shared one;
-- "new" for a fresh one), password_auth (default false), extra (config
-- lines), login_shell ("cheap" default: SetEnv SHLVL=1 so bash skips
-- ~/.bashrc; "full": the account's normal shell start-up). Returns the node table.
function H:start(name, opts)
  opts = opts or {}
  local dir = self.dir .. "/" .. name
  sh("mkdir -p '" .. dir .. "'")
  local hk = opts.host_key or self.host_key
  if hk == "new" then hk = H.keygen(dir .. "/ssh_host_ed25519_key") end
  for _ = 1, 20 do
    local port = self.next_port
    self.next_port = port + 1
    if self.next_port > 29999 then self.next_port = 22300 end
    local cfg = table.concat({
      "Port " .. port,
      "ListenAddress " .. (opts.address or "127.0.0.1"),
      "HostKey " .. hk,
      "PidFile " .. dir .. "/sshd.pid",
      "AuthorizedKeysFile " .. self.dir .. "/authorized_keys",
      "StrictModes no",
      "UsePAM no",
      "PermitRootLogin " .. (opts.password_auth and "yes" or "prohibit-password"),
      "PubkeyAuthentication yes",
      "PasswordAuthentication " .. (opts.password_auth and "yes" or "no"),
      "KbdInteractiveAuthentication no",
      "MaxSessions 200",
      "MaxStartups 200:30:400",
      "LogLevel INFO",
      "PrintMotd no",
      "Subsystem sftp internal-sftp",
      -- Debian's bash sources ~/.bashrc for ssh commands unless SHLVL is
      -- already >= 1; root's .bashrc here runs pyenv init (~0.5 s per
      -- command). A cheap remote shell unless the caller asks for the real one.
      opts.login_shell == "full" and "" or "SetEnv SHLVL=1",
      opts.extra or "",
    }, "\n") .. "\n"
    writefile(dir .. "/sshd_config", cfg)
    local p = assert(proc.spawn { argv = { "/bin/sh", "-c",
      "exec " .. (opts.netns and ("ip netns exec '" .. opts.netns .. "' ") or "")
        .. "/usr/sbin/sshd -D -e -f '" .. dir .. "/sshd_config' 2>&1" }, stdin = "" })
    local ok = false
    local deadline = time.mono() + 10
    while time.mono() < deadline do
      local line = p:read_line(deadline - time.mono())
      if not line then break end
      if line:find("Server listening on", 1, true) then ok = true; break end
      if line:find("Bind to port", 1, true) or line:find("Cannot bind", 1, true) then break end
    end
    if ok then
      local n = { name = name, port = port, pid = p.pid, proc = p, dir = dir, host_key = hk,
        host = opts.address or "127.0.0.1", netns = opts.netns, opts = opts }
      n.known_hosts = dir .. "/known_hosts"
      writefile(n.known_hosts, known_line(port, hk .. ".pub", n.host))
      local f = assert(io.open(self.known_hosts, "ab"))
      f:write(known_line(port, hk .. ".pub", n.host)); f:close()
      self.nodes[#self.nodes + 1] = n
      return n
    end
    p:kill("KILL"); p:wait(5); p:close()
  end
  error("could not start sshd for " .. name)
end

-- Starts a stopped node again on the same port, config and host key (the
-- guest's sshd coming back). Returns the node.
function H.restart(_, n)
  local p = assert(proc.spawn { argv = { "/bin/sh", "-c",
    "exec " .. (n.netns and ("ip netns exec '" .. n.netns .. "' ") or "")
      .. "/usr/sbin/sshd -D -e -f '" .. n.dir .. "/sshd_config' 2>&1" }, stdin = "" })
  local deadline = time.mono() + 10
  while time.mono() < deadline do
    local line = p:read_line(deadline - time.mono())
    if not line then break end
    if line:find("Server listening on", 1, true) then
      n.proc, n.pid, n.dead = p, p.pid, false
      return n
    end
  end
  p:kill("KILL"); p:wait(5); p:close()
  error("could not restart sshd " .. n.name)
end

-- A network namespace `name` with lo up (root only). Returns the name.
function H.netns_add(name)
  sh("ip netns del '" .. name .. "' 2>/dev/null; ip netns add '" .. name .. "' && "
    .. "ip netns exec '" .. name .. "' ip link set lo up")
  return name
end

function H.netns_del(name)
  os.execute("ip netns del '" .. name .. "' 2>/dev/null")
end

-- Starts n sshd concurrently-ish (sequential spawn, listening checked each).
function H:start_many(prefix, count, opts)
  local list = {}
  for i = 1, count do list[i] = self:start(prefix .. i, opts) end
  return list
end

local function children(pid)
  local r = proc.run({ "pgrep", "-P", tostring(pid) }, { timeout = 10 })
  local out = {}
  for p in (r and r.stdout or ""):gmatch("%d+") do out[#out + 1] = tonumber(p) end
  return out
end
H.children = children

local function comm(pid)
  local f = io.open("/proc/" .. pid .. "/comm")
  if not f then return nil end
  local c = f:read("l"); f:close(); return c
end

-- Kills the listener and its per-connection sshd processes (the server
-- dying), but not the users' commands running under them unless
-- `with_commands`.
function H.kill_all(_, n, sig, with_commands)
  sig = sig or "KILL"
  local victims = {}
  local function rec(pid)
    for _, c in ipairs(children(pid)) do rec(c) end
    if with_commands or comm(pid) == "sshd" then victims[#victims + 1] = pid end
  end
  rec(n.pid)
  for _, pid in ipairs(victims) do proc.kill(pid, sig) end
  n.proc:wait(5)
  n.dead = true
end

function H.stop(_, n)
  if n.dead then return end
  n.proc:kill("TERM")
  n.proc:wait(5)
  n.proc:close()
  n.dead = true
end

-- An Ansible YAML inventory for the given nodes, one group `group`.
function H:inventory(nodes, group, host_vars)
  local out = { "all:", "  vars:", "    ansible_user: " .. self.user,
    "    ansible_ssh_private_key_file: " .. self.key,
    "    upgrun_known_hosts: " .. self.known_hosts, "  children:",
    "    " .. (group or "nodes") .. ":", "      hosts:" }
  for _, n in ipairs(nodes) do
    out[#out + 1] = "        " .. n.name .. ":"
    out[#out + 1] = "          ansible_host: 127.0.0.1"
    out[#out + 1] = "          ansible_port: " .. n.port
    if host_vars then
      for line in host_vars(n):gmatch("[^\n]+") do out[#out + 1] = "          " .. line end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

function H:cleanup()
  for _, n in ipairs(self.nodes) do
    if not n.dead then pcall(H.kill_all, self, n, "TERM", true) end
  end
  if self.dir and self.dir:match("^/tmp/upgrun%-") and not os.getenv("UPGRUN_KEEP") then
    os.execute("rm -rf '" .. self.dir .. "'")
  end
end

return H
