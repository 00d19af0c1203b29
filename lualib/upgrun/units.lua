-- upgrun.units — the Lua side's time unit conversions, in one place.
--   units.ms(seconds) -> integer milliseconds (rounded; nil stays nil;
--                        inf/nan and negatives are clamped to [0, 2^53])
--   units.ms_string(seconds) -> "12.3" (milliseconds, one decimal; "" for nil)
--   units.split_ms(epoch) -> whole seconds, milliseconds (0..999)
local M = {}

local MAX = 2 ^ 53

function M.ms(s)
  if s == nil then return nil end
  local v = s * 1000
  if v ~= v or v < 0 then return 0 end
  if v > MAX then return math.tointeger(MAX) end
  return math.floor(v + 0.5)
end

function M.ms_string(s) return s and string.format("%.1f", s * 1000) or "" end

function M.split_ms(epoch)
  local s = math.floor(epoch)
  local ms = math.floor((epoch - s) * 1000 + 0.5)
  if ms >= 1000 then s, ms = s + 1, ms - 1000 end
  return s, ms
end

return M
