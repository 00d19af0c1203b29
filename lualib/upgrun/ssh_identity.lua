-- upgrun.ssh_identity — who upgrun is over SSH when the inventory does not
-- say: the policy (OpenSSH's defaults) on top of upgrun.ssh, whose connect
-- takes every identity explicitly.
--
--   local ident = require "upgrun.ssh_identity"
--   local params, err = ident.resolve(spec [, env])  -- spec: ssh.connect's fields
--   local sess, err = ident.connect(spec [, env])    -- resolve, then ssh.connect
--   ident.environment() -> {home =, user =, agent =}  -- HOME, the local account, SSH_AUTH_SOCK
--
-- Defaults, as OpenSSH: `user` = the local account; `known_hosts` =
-- ~/.ssh/known_hosts; identities, in order: the agent at SSH_AUTH_SOCK (only
-- when neither `key` nor `password` is given, or `agent = true`), then the
-- given `key`, or else (no password either) each of ~/.ssh/id_ed25519,
-- id_ecdsa, id_rsa that can be read; then `password`. `agent = false` turns
-- the agent off; a string is the agent's socket path. With no identity at
-- all, resolve fails (kind "auth") naming everything it tried. `env` (for
-- tests, or a caller with its own view) replaces environment().
local ssh = require "upgrun.ssh"
local errors = require "upgrun.errors"

local M = {}

M.DEFAULT_KEYS = { "id_ed25519", "id_ecdsa", "id_rsa" }

function M.environment()
  local acct = ssh.local_account()
  local home = os.getenv("HOME")
  if not home or home == "" then home = acct.home or "/" end
  return { home = home, user = acct.user or "root", agent = os.getenv("SSH_AUTH_SOCK") }
end

local function readable(path)
  local f = io.open(path, "rb")
  if not f then return false end
  f:close()
  return true
end

-- ssh.connect's parameters with every default filled in, or nil, err.
function M.resolve(spec, env)
  env = env or M.environment()
  local p = {}
  for k, v in pairs(spec) do p[k] = v end
  p.user = spec.user or env.user
  p.known_hosts = spec.known_hosts or (env.home .. "/.ssh/known_hosts")
  local tried = {}
  local agent = spec.agent
  p.agent = nil
  if agent == true or (agent == nil and not spec.key and not spec.keys and not spec.password) then
    if env.agent and env.agent ~= "" then
      p.agent = env.agent
    else
      tried[#tried + 1] = "the agent (SSH_AUTH_SOCK not set)"
    end
  elseif type(agent) == "string" then
    p.agent = agent
  end
  if not spec.key and not spec.keys and not spec.password then
    local keys = {}
    for _, name in ipairs(M.DEFAULT_KEYS) do
      local path = env.home .. "/.ssh/" .. name
      if readable(path) then keys[#keys + 1] = path else tried[#tried + 1] = path .. " (not readable)" end
    end
    if #keys > 0 then p.keys = keys end
  end
  if not p.agent and not p.key and not p.keys and not p.password then
    return nil, errors.newf("auth", "no SSH identity for %s@%s:%s: tried %s; give a key "
      .. "(ansible_ssh_private_key_file), a password, or start ssh-agent", tostring(p.user), tostring(spec.host),
      tostring(spec.port or 22), table.concat(tried, ", "))
  end
  return p
end

function M.connect(spec, env)
  local p, err = M.resolve(spec, env)
  if not p then return nil, err end
  return ssh.connect(p)
end

return M
