-- upgrun.single_flight — "one caller connects, the others wait": the first
-- caller starts fn in its own task; callers arriving while it runs join the
-- same task instead of starting another. The task publishes its results
-- itself, so a caller that is cancelled or times out leaves nothing half-done.
--
--   local sf = single_flight.new(name)
--   sf:run(fn, timeout) -> true, results... | nil, err   (as task:join)
--   sf:busy() -> bool
local task = require "upgrun.task"

local M = {}
local SF = {}
SF.__index = SF

function M.new(name) return setmetatable({ name = name or "single flight" }, SF) end

function SF:busy() return self.task ~= nil end

-- Runs fn once for all concurrent callers; waits at most `timeout` seconds
-- (nil = until it ends).
function SF:run(fn, timeout)
  if not self.task then
    self.task = task.spawn(self.name, function()
      local r = table.pack(pcall(fn))
      self.task = nil
      if not r[1] then error(r[2], 0) end
      return table.unpack(r, 2, r.n)
    end)
  end
  return self.task:join(timeout)
end

return M
