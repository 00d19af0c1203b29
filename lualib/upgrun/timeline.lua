-- upgrun.timeline — one clock for a run. Every event (step start/end, hook,
-- check, probe start/stop, node command, custom) is recorded with
--   t    = monotonic seconds since the run start (for durations and order)
--   wall = UTC wall time, ISO 8601 with milliseconds (for people and logs)
-- Probe samples use the same `t` base (they live in samples.jsonl).
local time = require "upgrun.time"
local units = require "upgrun.units"

local M = {}
M.__index = M

-- ISO 8601 UTC with milliseconds from epoch seconds (the date part is
-- cached per second: probes stamp every sample).
local last_s, last_prefix
function M.iso(epoch)
  local s, ms = units.split_ms(epoch)
  if s ~= last_s then last_s, last_prefix = s, os.date("!%Y-%m-%dT%H:%M:%S", s) end
  return string.format("%s.%03dZ", last_prefix, ms)
end

function M.new()
  local self = setmetatable({}, M)
  self.t0_mono = time.mono()
  self.t0_wall = time.now()
  self.events = {}
  self.listeners = {}
  return self
end

-- Seconds since the run start (monotonic).
function M:now() return time.mono() - self.t0_mono end

-- Relative time of an absolute monotonic stamp.
function M:rel(mono) return mono - self.t0_mono end

-- Wall time (ISO string) now.
function M.wall(_) return M.iso(time.now()) end

-- Appends an event {t, wall, kind, ...fields}; returns it.
function M:event(kind, fields)
  local e = fields or {}
  e.kind = kind
  e.t = e.t or self:now()
  e.wall = e.wall or self:wall()
  self.events[#self.events + 1] = e
  for _, fn in ipairs(self.listeners) do pcall(fn, e) end
  return e
end

-- fn(event) is called for each event recorded from now on (e.g. progress output).
function M:listen(fn) self.listeners[#self.listeners + 1] = fn end

return M
