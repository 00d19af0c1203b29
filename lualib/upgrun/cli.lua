-- upgrun.cli — what `upgrun SCRIPT [args...]` runs: loads SCRIPT as text in
-- its own environment and runs it with the arguments. A script that returns a
-- scenario (a table with a `run` method) is run by it with the arguments;
-- a script that returns an integer exits with it. Subcommands: `upgrun
-- compare A B` (upgrun.compare), `upgrun matrix FILE` (upgrun.matrix),
-- `upgrun merge DIR...` (upgrun.merge).
local M = {}

function M.main(path, ...)
  if path == "compare" then return require("upgrun.compare").main(...) end
  if path == "matrix" then return require("upgrun.matrix").main(...) end
  if path == "merge" then return require("upgrun.merge").main(...) end
  local env = setmetatable({}, { __index = _G })
  local dir = path:match("^(.*)/[^/]*$") or "."
  package.path = dir .. "/?.lua;" .. package.path
  _G.arg = table.pack(...)
  _G.arg[0] = path
  local chunk, err = loadfile(path, "t", env)
  if not chunk then
    io.stderr:write("upgrun: ", err, "\n")
    return 2
  end
  local result = chunk(...)
  if type(result) == "table" and type(result.run) == "function" then
    return result:run({ ... }, path)
  end
  if math.type(result) == "integer" then return result end
  return 0
end

return M
