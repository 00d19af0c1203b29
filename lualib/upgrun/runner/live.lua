-- upgrun.runner.live — the console of a run on a terminal: the lines of the
-- plain console (upgrun.runner.console) scroll as usual, and below them a
-- status block is redrawn in place (ANSI, at most REDRAW_HZ times a second,
-- one write per redraw): the run time and stage, the running step(s) with
-- their elapsed time, and each probe's state (UP/DOWN since when, request
-- rate over the last seconds, latency of its latest answer). An outage line
-- is printed the moment the samples show an outage start, and again when it
-- ends (length ± uncertainty, the steps it fell in). Lines are cut to the
-- terminal width (upgrun.fs.term_size), so the block never wraps.
--
--   live.wanted() -> bool         stdout is a terminal and TERM is not "dumb"
--   local v = live.new(run, {color =, verbose =, write =, size =})
--   v.listener      the timeline listener (run.tl:listen(v.listener))
--   v:outage(probe, kind, o, sample)   (run.probing:on_outage(...))
--   v:start()       starts redrawing;  v:stop() clears the block, stops
-- opts.write(s) writes raw text (default: stdout, flushed); opts.size() ->
-- cols, rows (default: upgrun.fs.term_size(1)).
local fs = require "upgrun.fs"
local task = require "upgrun.task"
local time = require "upgrun.time"
local console = require "upgrun.runner.console"

local M = {}
local Live = {}
Live.__index = Live

local REDRAW_HZ = 4
local RATE_WINDOW = 2 -- seconds over which the request rate is measured
local COLORS = { red = "\27[31m", green = "\27[32m", yellow = "\27[33m", dim = "\27[2m", bold = "\27[1m" }

function M.wanted()
  if os.getenv("TERM") == "dumb" then return false end
  return fs.isatty(1)
end

-- Display length of a UTF-8 string (bytes when it is not valid UTF-8).
local function len(s) return utf8.len(s) or #s end

-- s cut to n columns.
local function cut(s, n)
  if n <= 0 then return "" end
  if len(s) <= n then return s end
  if not utf8.len(s) then return s:sub(1, n) end
  return s:sub(1, utf8.offset(s, n + 1) - 1)
end

local function secs(t)
  if t < 60 then return string.format("%.1f s", t) end
  if t < 3600 then return string.format("%dm%02ds", t // 60, math.floor(t % 60)) end
  return string.format("%dh%02dm", t // 3600, math.floor(t % 3600 / 60))
end

function M.new(run, opts)
  opts = opts or {}
  local self = setmetatable({
    run = run, color = opts.color, height = 0, rates = {},
    write = opts.write or function(s) io.stdout:write(s); io.stdout:flush() end,
    size = opts.size or function() return fs.term_size(1) end,
  }, Live)
  local plain = console.listener { verbose = opts.verbose, color = opts.color,
                                   write = function(l) self:line(l) end }
  self.listener = function(e)
    if e.kind == "stage_start" then self.stage = e.stage end
    plain(e)
  end
  return self
end

-- A line of segments {text, colour} cut to `width` columns and painted.
function Live:render(segs, width)
  local out, left = {}, width
  for _, sg in ipairs(segs) do
    if left <= 0 then break end
    local text = cut((sg[1]:gsub("%c", " ")), left) -- a control character would move the cursor
    left = left - len(text)
    if self.color and sg[2] then text = COLORS[sg[2]] .. text .. "\27[0m" end
    out[#out + 1] = text
  end
  return table.concat(out)
end

-- Requests per second over the last RATE_WINDOW seconds (the whole run at first).
function Live:rate(pr, now)
  local r = self.rates[pr]
  if not r then r = { t = now, sent = pr.sent }; self.rates[pr] = r end
  if now - r.t >= RATE_WINDOW then
    r.value = (pr.sent - r.sent) / (now - r.t)
    r.t, r.sent = now, pr.sent
  end
  if r.value then return r.value end
  local active = pr:active_time(self.run.tl:now())
  return active > 0 and pr.sent / active or 0
end

-- Appends list to lines in at most n lines (the last one saying how many
-- more there are when they do not fit and n > 1).
local function fit(lines, list, n, what)
  if n <= 0 then return end
  for i, l in ipairs(list) do
    if i == n and #list > n and n > 1 then
      lines[#lines + 1] = { { string.format("    ... and %d more %s", #list - n + 1, what) } }
      return
    end
    lines[#lines + 1] = l
    if i == n then return end
  end
end

-- The status block's lines (arrays of segments).
function Live:block(rows)
  local run, now = self.run, self.run.tl:now()
  local lines = { { { string.format("-- %s  %s", run.s.name, secs(now)), "bold" },
                    { self.stage and ("  stage " .. self.stage) or "" } } }
  local probes = {}
  for _, pr in ipairs(run.probing and run.probing.runs or {}) do
    local st, segs = pr.stats, { { "   probe " .. pr.name .. "  " } }
    local o = st.tracker.cur
    if o then
      segs[#segs + 1] = { "DOWN", "red" }
      segs[#segs + 1] = { string.format(" for %s (since %.3f s)", secs(math.max(0, now - o.start)), o.start) }
    elseif not pr.loop then
      segs[#segs + 1] = { "idle", "dim" }
    elseif st.last then
      segs[#segs + 1] = { "UP", "green" }
    else
      segs[#segs + 1] = { "starting", "yellow" }
    end
    if pr.loop then segs[#segs + 1] = { string.format("  %.1f req/s", self:rate(pr, now)) } end
    local last = st.last
    if last then
      segs[#segs + 1] = { string.format("  last %s %.0f ms", last.result == "ok" and "ok" or tostring(last.result),
                                        (last.latency or 0) * 1000) }
      if last.result ~= "ok" and (last.message or last.err) then
        segs[#segs + 1] = { ": " .. tostring(last.message or last.err):gsub("%s+", " ") }
      end
    end
    probes[#probes + 1] = segs
  end
  local steps = {}
  for _, stp in ipairs(run.running_list) do
    steps[#steps + 1] = { { string.rep("  ", stp.depth + 1) .. "> " .. stp.name },
                          { "  " .. secs(math.max(0, now - stp.start)), "yellow" } }
  end
  -- keep within the terminal (the block and the cursor's line): the steps
  -- get what the probes leave, at least one line when any runs
  local avail = math.max(1, (rows or 24) - 2)
  local nsteps = math.min(#steps, math.max(math.min(#steps, 1), avail - #probes))
  fit(lines, steps, nsteps, "running step(s)")
  fit(lines, probes, avail - nsteps, "probe(s)")
  return lines
end

-- Text that erases the block drawn last (the cursor is on the line below it).
function Live:erase()
  if self.height == 0 then return "" end
  return string.format("\r\27[%dA\27[J", self.height)
end

function Live:draw_text()
  local cols, rows = self.size()
  cols = cols or 80
  local out = {}
  local lines = self:block(rows)
  for i, l in ipairs(lines) do out[i] = self:render(l, cols - 1) .. "\27[K\n" end
  self.height = #lines
  return table.concat(out)
end

function Live:redraw()
  if self.stopped then return end
  self.write(self:erase() .. self:draw_text())
end

-- A line of the plain console (or an outage line) above the block.
function Live:line(text)
  if self.stopped or not self.started then self.write(text .. "\n"); return end
  local erase = self:erase()
  self.height = 0
  self.write(erase .. text .. "\n" .. self:draw_text())
end

-- An outage starts or ends (upgrun.probing:on_outage).
function Live:outage(probe, kind, o, sample)
  self:line(console.outage_line(self.run, probe, kind, o, sample, self.color))
end

function Live:start()
  self.started = true
  self:redraw()
  self.ticker = task.spawn("live console", function()
    while not self.stopped do
      if not pcall(time.sleep, 1 / REDRAW_HZ) then break end
      self:redraw()
    end
  end)
end

function Live:stop()
  if self.stopped then return end
  self.write(self:erase())
  self.height = 0
  self.stopped = true
  if self.ticker then self.ticker:cancel() end
end

return M
