-- upgrun.terminate — the one "stop it politely, then for sure" policy:
-- send TERM, wait up to a grace period, then KILL and wait again. Used for
-- local children (upgrun.proc.run on a timeout) and for remote services
-- (upgrun.services stop); each caller says how to signal and how to wait.
--
--   local res, escalated = terminate.escalate {
--     term = function() return p:kill("TERM") end,  -- ok | nil, err
--     kill = function() return p:kill("KILL") end,
--     wait = function(timeout) return p:wait(timeout) end, -- res | nil, err
--     grace = 2,      -- seconds (or a function giving them) before KILL
--     after = nil,    -- seconds to wait after KILL (nil: until it ends)
--   }
--   -> res, escalated (true when KILL was needed) | nil, err
-- A `term`/`kill` error of kind "exited" (already gone) is not a failure.
local M = {}

local function val(v)
  if type(v) == "function" then return v() end
  return v
end

local function gone_or_ok(ok, err)
  if ok or (type(err) == "table" and err.kind == "exited") then return true end
  return nil, err
end

function M.escalate(o)
  local ok, err = gone_or_ok(o.term())
  if not ok then return nil, err end
  local res
  res, err = o.wait(val(o.grace))
  if res then return res, false end
  if type(err) ~= "table" or err.kind ~= "timeout" then return nil, err end
  ok, err = gone_or_ok(o.kill())
  if not ok then return nil, err end
  res, err = o.wait(val(o.after))
  if not res then return nil, err end
  return res, true
end

return M
