-- upgrun.sample_log — samples.jsonl, written as samples complete: one JSON
-- object per line, buffered (upgrun.fs), flushed at least every second by a
-- task and at close (with fsync). Every write is checked: the first error is
-- kept (log.err) and reported once on stderr, and the run then fails.
--
--   local log = sample_log.open(path, redact) -> log | nil, err
--   log:write(s)   log:flush()   log:close() -> true | nil, err
local fs = require "upgrun.fs"
local task = require "upgrun.task"
local time = require "upgrun.time"

local M = {}
local Log = {}
Log.__index = Log

local cjson = require("cjson").new()
cjson.encode_number_precision(10)

function M.open(path, redact)
  local f, err = fs.open(path)
  if not f then return nil, err end
  local log = setmetatable({ path = path, f = f, redact = redact, line = {} }, Log)
  log.flusher = task.spawn("samples.jsonl flush", function()
    while log.f do
      if not pcall(time.sleep, 1) then return end
      log:flush()
    end
  end)
  return log
end

function Log:fail(err)
  if self.err then return end
  self.err = err
  io.stderr:write("upgrun: samples.jsonl: ", tostring(err), "\n")
end

-- The line's names and the sample's keys, in line order (file:write_json).
-- (docs/scenarios.md lists them in this order)
local FIELDS = { "probe", "probe", "t_send", "t", "wall", "wall", "result", "result", "latency", "latency",
                 "status", "status", "err", "err", "message", "message", "stage", "stage", "step", "step" }
local LINE_FIELDS = {}
for i = 1, #FIELDS, 2 do LINE_FIELDS[i], LINE_FIELDS[i + 1] = FIELDS[i], FIELDS[i] end

function Log:write(s)
  if not self.f or self.err then return end
  local ok, err
  local msg, stage, step = s.message, s.stage, s.step
  if type(stage) == "table" or type(step) == "table" then -- (not from the runner)
    local l = self:copy(s)
    ok, err = self.f:write(cjson.encode(l), "\n")
  elseif msg == nil or not self.redact then
    -- the common case (an ok sample): formatted in C from the sample itself
    ok, err = self.f:write_json(s, FIELDS)
  else
    ok, err = self.f:write_json(self:copy(s), LINE_FIELDS)
  end
  if not ok then self:fail(err) end
end

-- The line of a sample as a table (reused), its message redacted.
function Log:copy(s)
  local l = self.line
  l.probe, l.t_send, l.wall, l.result, l.latency = s.probe, s.t, s.wall, s.result, s.latency
  l.status, l.err, l.stage, l.step = s.status, s.err, s.stage, s.step
  l.message = s.message and self.redact and self.redact(s.message) or s.message
  return l
end

function Log:flush()
  if not self.f or self.err then return end
  local ok, err = self.f:flush()
  if not ok then self:fail(err) end
end

-- Flushes, fsyncs and closes. Returns true or nil, the first error.
function Log:close()
  local f = self.f
  if f then
    self.f = nil
    if self.flusher then pcall(self.flusher.cancel, self.flusher) end
    local ok, err = f:close()
    if not ok then self:fail(err) end
  end
  if self.err then return nil, self.err end
  return true
end

return M
