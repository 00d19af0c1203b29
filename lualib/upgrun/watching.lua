-- upgrun.watching — the resource watches of one run: one upgrun.watch_run
-- per declared watch (s:watch), started and stopped per stage like the
-- probes (upgrun.probing). A resource that vanishes fails the run at once
-- (run:fail_in_stage), the run goes on. The runner calls:
--
--   local W = watching.new(run.s.watches, run)
--   W:enter_stage(ctx, stage)   W:stop_all()   W:finish(t_end)
--   W:intend(kind, id, fn, ...)  (ctx:intend) changes made on purpose while fn runs
--   W.runs (array)
local watch_run = require "upgrun.watch_run"

local M = {}
local Watching = {}
Watching.__index = Watching

-- What runs now: the innermost steps, else a hook running between steps
-- ("hook NAME (of STEP)"), else nil.
local function running(run)
  local s = run:current_step()
  if s then return s end
  for i = #run.hooks_run, 1, -1 do
    local h = run.hooks_run[i]
    if h.start and not h["end"] then return string.format("hook %s (of %s)", h.name, tostring(h.step)) end
  end
  return nil
end
M.running = running

function M.new(watches, run)
  local self = setmetatable({ runs = {}, run = run }, Watching)
  for _, w in ipairs(watches or {}) do
    self.runs[#self.runs + 1] = watch_run.new(w, {
      tl = run.tl, ledger = run.ledger,
      current_step = function() return running(run) end,
      event = function(kind, fields) run.tl:event(kind, fields) end,
      on_vanish = function() run:fail_in_stage(run.cur_stage) end,
    })
  end
  return self
end

function Watching:enter_stage(ctx, stage)
  for _, wr in ipairs(self.runs) do
    if wr.watch:runs_in(stage) then
      if not wr.loop then self.run.tl:event("watch_start", { watch = wr.name, stage = stage }) end
      wr:start(ctx, stage)
    elseif wr.loop then
      wr:stop()
      self.run.tl:event("watch_stop", { watch = wr.name, stage = stage })
    end
  end
end

function Watching:stop_all()
  for _, wr in ipairs(self.runs) do
    if wr.loop then
      wr:stop()
      self.run.tl:event("watch_stop", { watch = wr.name })
    end
  end
end

function Watching:finish(t_end)
  for _, wr in ipairs(self.runs) do wr:finish(t_end) end
end

-- Runs fn(...) with the changes of resource (kind, id) marked intended in
-- every watch of that kind.
function Watching:intend(kind, id, fn, ...)
  local wrapped = fn
  for _, wr in ipairs(self.runs) do
    if wr.watch.kind == kind then
      local inner = wrapped
      wrapped = function(...) return wr:intend(id, inner, ...) end
    end
  end
  return wrapped(...)
end

return M
