-- upgrun.inventory.hostpattern — an inventory host entry as Ansible reads it
-- (ansible.parsing.utils.addresses.parse_address and
-- ansible.plugins.inventory.expand_hostname_range):
--   "web1:2222"      -> {"web1"}, port 2222
--   "[::1]:2222"     -> {"::1"}, port 2222
--   "web[01:03]"     -> {"web01", "web02", "web03"} (zero padding kept)
--   "db-[a:c]"       -> {"db-a", "db-b", "db-c"}; "[1:9:2]" has a step
-- Several ranges in one name expand to every combination, left range outer.
--
--   local hp = require "upgrun.inventory.hostpattern"
--   local names, port_or_err = hp.expand("web[1:3]:22")  -- names or nil, message
local M = {}

local LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

-- Splits a trailing ":port" as Ansible does: "[x]:port", or a name whose
-- only ':' outside [...] precedes the final digits. Names that are not a
-- plausible host (other characters) keep their text and get no port.
local function split_port(s)
  local inner, port = s:match("^%[(.+)%]:(%d+)$")
  if inner then s = inner end
  if not port then
    local depth, colon = 0, nil
    for i = 1, #s do
      local c = s:sub(i, i)
      if c == "[" then depth = depth + 1
      elseif c == "]" then depth = depth - 1
      elseif c == ":" and depth == 0 then
        if colon then colon = false; break end
        colon = i
      end
    end
    if colon and s:sub(colon + 1):match("^%d+$") then
      s, port = s:sub(1, colon - 1), s:sub(colon + 1)
    end
  end
  if port and not s:find("^[%w%-_%.%[%]:]+$") then return nil end
  return s, port and tonumber(port) or nil
end

local function expand_ranges(name, out)
  local head, range, tail = name:match("^([^%[]*)%[([^%]]*)%](.*)$")
  if not head then
    if name:find("[", 1, true) then return nil, "unclosed '[' in host range '" .. name .. "'" end
    out[#out + 1] = name
    return out
  end
  local bounds = {}
  for b in (range .. ":"):gmatch("([^:]*):") do bounds[#bounds + 1] = b end
  if #bounds ~= 2 and #bounds ~= 3 then return nil, "host range must be begin:end or begin:end:step" end
  local beg, fin, step = bounds[1], bounds[2], tonumber(bounds[3] or "1")
  if beg == "" then beg = "0" end
  if fin == "" then return nil, "host range must specify end value" end
  if not step or step < 1 or step ~= math.floor(step) then return nil, "host range step must be a positive integer" end
  local seq = {}
  local ib, ie = #beg == 1 and LETTERS:find(beg, 1, true), #fin == 1 and LETTERS:find(fin, 1, true)
  if ib and ie then
    if ib > ie then return nil, "host range must have begin <= end" end
    for i = ib, ie, step do seq[#seq + 1] = LETTERS:sub(i, i) end
  else
    local nb, ne = beg:match("^%d+$") and tonumber(beg), fin:match("^%d+$") and tonumber(fin)
    if not nb or not ne then return nil, string.format("host range [%s] must be numbers or single letters", range) end
    local width = (beg:sub(1, 1) == "0" and #beg > 1) and #beg or nil
    if width and width ~= #fin then return nil, "host range must specify equal-length begin and end formats" end
    if ne - nb > 1000000 then return nil, "host range [" .. range .. "] is larger than a million hosts" end
    for i = nb, ne, step do seq[#seq + 1] = width and string.format("%0" .. width .. "d", i) or tostring(i) end
  end
  for _, v in ipairs(seq) do
    local ok, err = expand_ranges(head .. v .. tail, out)
    if not ok then return nil, err end
  end
  return out
end

-- Returns the host names and the port (or nil), or nil, message.
function M.expand(pattern)
  local s, port = split_port(pattern)
  if not s then s, port = pattern, nil end
  if not s:find("[", 1, true) then return { s }, port end
  local names, err = expand_ranges(s, {})
  if not names then return nil, err end
  return names, port
end

return M
