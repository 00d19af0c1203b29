-- upgrun.probing — the probes of one run: one upgrun.probe_run per declared
-- probe (in declaration order), started and stopped per stage, every sample
-- streamed to samples.jsonl (upgrun.sample_log). The runner calls:
--
--   local P = probing.new(run.s.probes, run.tl, {log =, on_event = fn(kind, fields)})
--   P:enter_stage(ctx, stage, current_step)  start the probes of that stage, stop the others
--   P:start_all(ctx, stage, current_step, filter)  every probe not turned off (the steady-state check)
--   P:stop_all()   P:drain()   P:finish() (cuts what is in flight, closes outages)
--   P.runs (array), P.by_name[name]
--   P:on_outage(fn(probe_name, kind, outage, sample))  outage starts and ends
--       as the samples show them ("start"/"end", see upgrun.probe_stats)
local probe_run = require "upgrun.probe_run"

local M = {}
local Probing = {}
Probing.__index = Probing

function M.new(probes, tl, opts)
  opts = opts or {}
  local self = setmetatable({ runs = {}, by_name = {}, tl = tl, log = opts.log, on_event = opts.on_event },
                            Probing)
  local sink
  if opts.log then
    local log = opts.log
    sink = function(s) log:write(s) end
  end
  for _, p in ipairs(probes) do
    local pr = probe_run.new(p, tl, { sink = sink })
    self.runs[#self.runs + 1] = pr
    self.by_name[p.name] = pr
  end
  return self
end

function Probing:on_outage(fn)
  for _, pr in ipairs(self.runs) do
    local name = pr.name
    pr.stats.on_outage = function(kind, o, s) fn(name, kind, o, s) end
  end
end

function Probing:event(kind, fields)
  if self.on_event then self.on_event(kind, fields) end
end

function Probing:enter_stage(ctx, stage, current_step)
  for _, pr in ipairs(self.runs) do
    if pr.probe:runs_in(stage) then
      pr:start(ctx, stage, current_step)
      self:event("probe_start", { probe = pr.name, stage = stage })
    elseif pr.loop then
      pr:stop()
      self:event("probe_stop", { probe = pr.name, stage = stage })
    end
  end
end

-- Whether a probe is turned off (`stages = {}`, e.g. by a setup function).
function M.is_off(pr) return type(pr.probe.stages) == "table" and #pr.probe.stages == 0 end

-- Every probe that is not turned off (and that `filter(pr)` accepts, if given),
-- whatever its stages.
function Probing:start_all(ctx, stage, current_step, filter)
  for _, pr in ipairs(self.runs) do
    if not M.is_off(pr) and (not filter or filter(pr)) then
      pr:start(ctx, stage, current_step)
      self:event("probe_start", { probe = pr.name, stage = stage })
    end
  end
end

function Probing:stop_all()
  for _, pr in ipairs(self.runs) do
    if pr.loop then
      pr:stop()
      self:event("probe_stop", { probe = pr.name })
    end
  end
end

function Probing:drain()
  for _, pr in ipairs(self.runs) do pcall(pr.drain, pr) end
end

function Probing:finish()
  for _, pr in ipairs(self.runs) do pr:finish() end
end

return M
