-- upgrun.inventory.check — validates the inventory variables upgrun itself
-- interprets (ports, users, keys, become, timeouts, upgrun_services), so a
-- wrong type is an error at load time, not a surprise at the first command.
--
--   local err = check.vars(vars, fail)   -- fail(field, message) builds the error
local M = {}

local function is_null(v) return v == nil or type(v) == "userdata" end

local known_vars = {
  ansible_port = "port", ansible_ssh_port = "port",
  ansible_host = "string", ansible_ssh_host = "string", ansible_user = "string",
  ansible_ssh_user = "string", ansible_ssh_private_key_file = "string",
  ansible_private_key_file = "string", upgrun_known_hosts = "string",
  upgrun_host_key_policy = "policy", ansible_become = "bool", ansible_become_user = "string",
  upgrun_ssh_timeout = "number", upgrun_ssh_keepalive = "number", upgrun_services = "services",
}

local function check_services(v, fail)
  if type(v) ~= "table" then
    return fail("upgrun_services", "upgrun_services must be a mapping of service name -> spec")
  end
  for name, spec in pairs(v) do
    if type(spec) ~= "table" then
      return fail("upgrun_services", "upgrun_services." .. tostring(name) .. " must be a mapping")
    end
    local b = spec.backend or "command"
    if b ~= "command" and b ~= "systemd" then
      return fail("backend", string.format("upgrun_services.%s.backend must be \"command\" or \"systemd\", not %q",
        name, tostring(b)))
    end
    for _, f in ipairs({ "start", "stop", "pidfile", "pattern", "health", "running_release", "unit",
                          "drain", "undrain" }) do
      if not is_null(spec[f]) and type(spec[f]) ~= "string" then
        return fail(f, string.format("upgrun_services.%s.%s must be a string", name, f))
      end
    end
    if b == "command" then
      if type(spec.start) ~= "string" then
        return fail("start", string.format("upgrun_services.%s: backend \"command\" needs start", name))
      end
      if type(spec.pidfile) ~= "string" and type(spec.pattern) ~= "string" then
        return fail("pidfile", string.format("upgrun_services.%s: backend \"command\" needs pidfile or pattern", name))
      end
    end
  end
end

-- Validates the variables upgrun interprets; fail(field, msg) returns an error.
function M.vars(vars, fail)
  for k, kind in pairs(known_vars) do
    local v = vars[k]
    if not is_null(v) then
      if kind == "port" then
        local n = tonumber(v)
        if not n or n ~= math.floor(n) or n < 1 or n > 65535 then
          return fail(k, k .. " must be a number (1-65535), got " .. string.format("%q", tostring(v)))
        end
      elseif kind == "string" then
        if type(v) ~= "string" and type(v) ~= "number" then return fail(k, k .. " must be a string") end
      elseif kind == "number" then
        if not tonumber(v) then return fail(k, k .. " must be a number") end
      elseif kind == "bool" then
        local ok = type(v) == "boolean" or (type(v) == "string" and ({ ["true"] = 1, ["false"] = 1,
          yes = 1, no = 1 })[v:lower()])
        if not ok then return fail(k, k .. " must be true or false") end
      elseif kind == "policy" then
        if v ~= "strict" and v ~= "accept-new" then return fail(k, k .. " must be \"strict\" or \"accept-new\"") end
      elseif kind == "services" then
        local e = check_services(v, fail)
        if e then return e end
      end
    end
  end
end


return M
