-- upgrun.watch_run — one resource watch (upgrun.watch) in one run: a task
-- that lists the watch's kind every `every` seconds (one list call, however
-- many resources), keeps each live ledger record's last fields, and records
--   watch_change    a change of any watched field ({from}, {to}, the step running)
--   watch_vanished  a recorded resource missing from the list (and confirmed
--                   gone by a GET): the run fails at once (opts.on_vanish)
--   watch_error     a failed list call (once per streak; the poll is lost)
-- on the timeline, and the windows of time each resource spent outside its
-- expected state (its unavailability; a vanished resource is unavailable
-- until the end). Times are the list call's send time, so a window is
-- exact to ± the interval (start_uncertainty / end_uncertainty).
--
--   local wr = watch_run.new(w, {tl =, ledger =, current_step = fn, event = fn(kind, fields), on_vanish = fn(res)})
--   wr:start(ctx, stage)  wr:stop()  wr:poll(ctx) (one poll, for tests)  wr:finish(t_end)
--   wr:intend(id, fn) -> fn's results: changes while fn runs (and one interval after) are intended:
--                        recorded with intended = true, not counted as unavailability
--   wr.resources (array, first-seen order), wr.polls, wr.requests, wr.list_errors
local task = require "upgrun.task"
local time = require "upgrun.time"
local watch = require "upgrun.watch"
local probe = require "upgrun.probe"

local M = {}
local WatchRun = {}
WatchRun.__index = WatchRun
M.WatchRun = WatchRun

function M.new(w, opts)
  return setmetatable({
    watch = w, name = w.name, tl = opts.tl, ledger = opts.ledger, current_step = opts.current_step,
    emit = opts.event, on_vanish = opts.on_vanish,
    resources = {}, by_id = {}, intents = {}, excuse_until = {}, polls = 0, requests = 0, list_errors = 0,
    windows_active = {},
  }, WatchRun)
end

function WatchRun:event(kind, fields)
  if self.emit then self.emit(kind, fields) end
end

local function same(a, b) return a == b end

-- "status ACTIVE -> SHUTOFF, task_state - -> powering-off" for the fields that changed.
function M.describe_changes(fields, from, to)
  local parts = {}
  for _, f in ipairs(fields) do
    local name = f[1]
    if not same(from[name], to[name]) then
      parts[#parts + 1] = string.format("%s %s -> %s", name, tostring(from[name] or "-"), tostring(to[name] or "-"))
    end
  end
  return table.concat(parts, ", ")
end

local function matches(expected, f)
  for k, v in pairs(expected) do if f[k] ~= v then return false end end
  return true
end

local function state_text(expected, f)
  local parts = {}
  local keys = {}
  for k in pairs(expected) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if f[k] ~= expected[k] then
      parts[#parts + 1] = string.format("%s %s (expected %s)", k, tostring(f[k] or "-"), tostring(expected[k]))
    end
  end
  return table.concat(parts, ", ")
end

function WatchRun:excused(res, t)
  local u = self.excuse_until[res.id]
  return (self.intents[res.id] or 0) > 0 or (u ~= nil and t <= u)
end

local function close_window(res, t, prev_t)
  local win = res.bad
  win["end"] = t
  win.end_uncertainty = prev_t and (t - prev_t) or 0
  win.duration = win["end"] - win.start
  win.uncertainty = math.max(win.start_uncertainty, win.end_uncertainty)
  res.bad = nil
end

-- One observation of a resource's fields at send time t.
function WatchRun:observe(res, f, t)
  local w = self.watch
  if not res.first then
    res.first, res.last, res.last_seen = f, f, t
    res.expected = w:expected_of(res.rec, f)
  else
    local changes = M.describe_changes(w.fields, res.last, f)
    if changes ~= "" then
      local step = self.current_step and self.current_step() or nil
      local tr = { t = t, from = res.last, to = f, changes = changes, step = step,
                   intended = self:excused(res, t) or nil }
      res.transitions[#res.transitions + 1] = tr
      self:event("watch_change", { watch = self.name, kind = w.kind, id = res.id, name = res.name, t = t,
                                   changes = changes, step = step, intended = tr.intended })
    end
    res.last, res.last_seen = f, t
  end
  if matches(res.expected, f) then
    if res.bad then close_window(res, t, res.prev_t) end
    res.last_ok_t = t
  elseif not res.bad and not self:excused(res, t) then
    res.bad = { start = t, start_uncertainty = res.last_ok_t and (t - res.last_ok_t) or 0,
                state = state_text(res.expected, f) }
    res.windows[#res.windows + 1] = res.bad
  end
  res.prev_t = t
end

function WatchRun:vanish(res, t)
  local step = self.current_step and self.current_step() or nil
  res.vanished = { t = t, last_seen = res.last_seen, step = step }
  if res.bad then close_window(res, t, res.prev_t) end
  res.bad = { start = t, start_uncertainty = res.last_seen and (t - res.last_seen) or 0, state = "vanished",
              vanished = true }
  res.windows[#res.windows + 1] = res.bad
  self:event("watch_vanished", { watch = self.name, kind = self.watch.kind, id = res.id, name = res.name, t = t,
                                 last_seen = res.last_seen, step = step })
  if self.on_vanish then pcall(self.on_vanish, res, self) end
end

function WatchRun:resource(rec, t)
  local res = self.by_id[rec.id]
  if not res then
    res = { id = rec.id, rec = rec, name = type(rec.data) == "table" and rec.data.name or rec.id,
            transitions = {}, windows = {}, since = t }
    self.by_id[rec.id] = res
    self.resources[#self.resources + 1] = res
  end
  return res
end

local function count_call(self) self.requests = self.requests + 1 end

-- One poll: lists the kind, compares each live record. Returns true, or nil, err
-- when the list call failed (nothing is concluded from a failed poll).
function WatchRun:poll(ctx)
  local w = self.watch
  local t = self.tl:now()
  local ok, items, err = pcall(w.list, ctx, w)
  count_call(self)
  if not ok then items, err = nil, items end
  if type(err) == "table" and err.kind == "cancelled" then error(err, 0) end
  if type(items) ~= "table" then
    self.list_errors = self.list_errors + 1
    if not self.error_streak then
      self:event("watch_error", { watch = self.name, kind = w.kind, t = t, message = probe.message(err) })
    end
    self.error_streak = true
    return nil, err
  end
  self.error_streak = nil
  self.polls = self.polls + 1
  local index = {}
  for _, it in ipairs(items) do
    if type(it) == "table" and it.id ~= nil then index[tostring(it.id)] = it end
  end
  local live = {}
  for rec in self.ledger:each(w.kind) do
    live[rec.id] = true
    local res = self:resource(rec, t)
    if not res.vanished then
      local item = index[rec.id]
      if item then
        self:observe(res, w:fields_of(item), t)
      elseif w.get then
        -- Missing from the list: confirm with a GET (a page boundary moving
        -- under concurrent deletes must not read as a disappearance).
        local gok, obj, gerr = pcall(w.get, ctx, rec.id)
        count_call(self)
        if not gok then obj, gerr = nil, obj end
        if type(gerr) == "table" and gerr.kind == "cancelled" then error(gerr, 0) end
        if type(obj) == "table" then self:observe(res, w:fields_of(obj), t)
        elseif watch.is_gone(gerr) then self:vanish(res, t) end
      else
        self:vanish(res, t)
      end
    end
  end
  -- Records no longer live (cleaned up by the scenario): no longer watched.
  for _, res in ipairs(self.resources) do
    if not live[res.id] and not res.dropped then
      res.dropped = t
      if res.bad and not res.vanished then close_window(res, t, res.prev_t) end
    end
  end
  return true
end

-- Starts polling (when running: only the stage changes).
function WatchRun:start(ctx, stage)
  self.stage = stage
  if self.loop then return end
  local w = self.watch
  self.running = true
  self.windows_active[#self.windows_active + 1] = { start = self.tl:now() }
  self.loop = task.spawn("watch " .. self.name, function()
    local next_due = time.mono()
    while self.running do
      local now = time.mono()
      while next_due > now and self.running do
        if not pcall(time.sleep, next_due - now) then self.running = false end
        now = time.mono()
      end
      if not self.running then break end
      next_due = next_due + w.every
      local ok, e = pcall(self.poll, self, ctx)
      if not ok then
        if type(e) == "table" and e.kind == "cancelled" then break end
        self.list_errors = self.list_errors + 1
        self:event("watch_error", { watch = self.name, kind = w.kind, message = probe.message(e) })
      end
      -- a poll slower than the interval: the next one starts now, no burst
      if time.mono() > next_due then next_due = time.mono() end
    end
  end)
end

function WatchRun:stop()
  if not self.loop then return end
  self.running = false
  self.loop:cancel()
  self.loop = nil
  local a = self.windows_active[#self.windows_active]
  if a and not a["end"] then a["end"] = self.tl:now() end
end

-- Runs fn(...) with the changes of resource `id` marked intended (the
-- scenario stops and starts it on purpose); the excuse lasts one interval
-- after fn returns so the poll that sees it back is covered too.
function WatchRun:intend(id, fn, ...)
  id = tostring(id)
  self.intents[id] = (self.intents[id] or 0) + 1
  local r = table.pack(pcall(fn, ...))
  self.intents[id] = self.intents[id] - 1
  self.excuse_until[id] = self.tl:now() + self.watch.every * 1.5
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- Stops, closes the windows still open at t_end (open = true). Idempotent.
function WatchRun:finish(t_end)
  self:stop()
  if self.finished then return end
  self.finished = true
  for _, res in ipairs(self.resources) do
    if res.bad then
      res.bad["end"] = math.max(t_end, res.bad.start)
      res.bad.end_uncertainty = 0
      res.bad.open = true
      res.bad.duration = res.bad["end"] - res.bad.start
      res.bad.uncertainty = res.bad.start_uncertainty
      res.bad = nil
    end
  end
end

return M
