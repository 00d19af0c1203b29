-- upgrun.shell — the one POSIX shell quoting: safe words stay as they are,
-- anything else is single-quoted ('\'' for embedded quotes).
--
--   shell.quote(arg) -> string
--   shell.join(argv) -> string    one shell-safe command line
--   shell.env_prefix(env) -> string   "export A='x y'; B=v; " for a {name = value}
--       table (names sorted; a name that is not a shell variable name, or a
--       value that is not a string or number, raises naming the field `env`);
--       "" for nil. How a remote command gets its environment over SSH, since
--       sshd accepts SSH env requests only for its AcceptEnv names.
local M = {}

function M.quote(arg)
  arg = tostring(arg)
  if arg ~= "" and not arg:find("[^%w%-_%./:=@,+%%]") then return arg end
  return "'" .. arg:gsub("'", "'\\''") .. "'"
end

function M.join(argv)
  local t = {}
  for i, a in ipairs(argv) do t[i] = M.quote(a) end
  return table.concat(t, " ")
end

function M.env_prefix(env)
  if env == nil then return "" end
  if type(env) ~= "table" then error("bad field 'env' (table expected, got " .. type(env) .. ")", 2) end
  local names = {}
  for k, v in pairs(env) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
      error("bad field 'env' (keys must be variable names, got " .. string.format("%q", tostring(k)) .. ")", 2)
    end
    if type(v) ~= "string" and type(v) ~= "number" then
      error("bad field 'env' (value of " .. k .. " must be a string, got " .. type(v) .. ")", 2)
    end
    names[#names + 1] = k
  end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = "export " .. k .. "=" .. M.quote(env[k]) .. "; " end
  return table.concat(parts)
end

return M
