-- upgrun.shell — the one POSIX shell quoting: safe words stay as they are,
-- anything else is single-quoted ('\'' for embedded quotes).
--
--   shell.quote(arg) -> string
--   shell.join(argv) -> string    one shell-safe command line
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

return M
