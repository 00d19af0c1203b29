-- upgrun.steady — the steady-state hypothesis: before the first stage, every
-- probe of the scenario (unless turned off: stages = {}) must answer ok without a break for a settle window
-- (parameter steady_settle, default 10 s; 0 turns the check off) within a
-- deadline (steady_deadline, default 120 s). A probe declared with steady = false
-- is left out of both checks, steady = "end" out of the first (a guest probe whose
-- server the scenario creates: there is nothing to reach before the first stage). The run waits, printing what
-- still fails; past the deadline it stops before any stage runs and fails
-- ("the cloud is not steady: <probe> failing (<last error>)"). The same check
-- runs after the last stage: a cloud that does not come back to steady state
-- within the deadline fails the run. The samples of these windows carry the
-- stage names "steady_start" / "steady_end": they are reported apart from the
-- stages (not in the baseline, their outages are not downtime).
--
--   steady.declare(s, {settle =, deadline =})  adds the two parameters (scenario.new)
--   steady.check(run, ctx, "start"|"end") -> true (steady, off, or aborted) | false
--   run.steady = {start = result, ["end"] = result, failure = message}
--   result = {result = "steady"|"not steady"|"off"|"aborted", settle, deadline,
--             start, ["end"], duration, failing = {{probe, error, ok_for}}}
local time = require "upgrun.time"
local probing_mod = require "upgrun.probing"

local M = {}

M.STAGES = { steady_start = true, steady_end = true }
M.DEFAULTS = { settle = 10, deadline = 120 }

local POLL = 0.25   -- seconds between looks at the probes
local REPORT = 5    -- seconds between progress lines

function M.declare(s, spec)
  spec = spec or {}
  if not s.params.steady_settle then
    s:param("steady_settle", { default = spec.settle or M.DEFAULTS.settle, type = "number",
      description = "seconds every probe must answer ok in a row before the first stage and after the last"
        .. " (0: no steady-state check)" })
  end
  if not s.params.steady_deadline then
    s:param("steady_deadline", { default = spec.deadline or M.DEFAULTS.deadline, type = "number",
      description = "seconds the steady-state check may wait" })
  end
end

-- Whether the check of `phase` waits for this probe (probe.steady: true/nil, false, "end").
local function counts(pr, phase)
  local st = pr.probe.steady
  return st == nil or st == true or st == phase
end
M.counts = counts

-- Probes not (yet) steady: {{probe, error, ok_for}}.
local function failing(probing, settle, phase)
  local out = {}
  for _, pr in ipairs(probing.runs) do
    if probing_mod.is_off(pr) or not counts(pr, phase) then goto next end
    local d, err = pr.stats:steady_for()
    if not d or d < settle then
      out[#out + 1] = { probe = pr.name, ok_for = d or 0,
                        error = (not d) and (err or "no answer yet") or nil }
    end
    ::next::
  end
  return out
end

local function describe_failing(f)
  local parts = {}
  for _, x in ipairs(f) do
    parts[#parts + 1] = x.error and string.format("%s failing (%s)", x.probe, x.error)
      or string.format("%s ok for %.1f s", x.probe, x.ok_for)
  end
  return table.concat(parts, "; ")
end

-- One line for the console.
function M.describe(res)
  if res.result == "steady" then
    return string.format("steady after %.1f s (every probe ok for %g s)", res.duration, res.settle)
  elseif res.result == "aborted" then
    return "aborted while waiting"
  end
  return string.format("NOT steady within %g s: %s", res.deadline, describe_failing(res.failing or {}))
end

function M.check(run, ctx, phase)
  local params = run.params or {}
  local settle = tonumber(params.steady_settle) or M.DEFAULTS.settle
  local deadline = tonumber(params.steady_deadline) or M.DEFAULTS.deadline
  local res = { settle = settle, deadline = deadline }
  run.steady = run.steady or {}
  run.steady[phase] = res
  local probing = run.probing
  if settle <= 0 or not probing or #probing.runs == 0 then res.result = "off"; return true end
  local stage = "steady_" .. phase
  local tl = run.tl
  res.start = tl:now()
  tl:event("steady_start", { phase = phase, settle = settle, deadline = deadline,
    message = string.format("steady state (%s): every probe ok for %g s, at most %g s ...", phase, settle, deadline) })
  probing:start_all(ctx, stage, nil, function(pr) return counts(pr, phase) end)
  local last_report = res.start
  while true do
    local f = failing(probing, settle, phase)
    local now = tl:now()
    if #f == 0 then res.result = "steady"; break end
    if now - res.start >= deadline then res.result = "not steady"; res.failing = f; break end
    if now - last_report >= REPORT then
      last_report = now
      tl:event("steady_wait", { phase = phase,
        message = string.format("  waiting (%.0f s): %s", now - res.start, describe_failing(f)) })
    end
    if not pcall(time.sleep, POLL) then res.result = "aborted"; run.aborted = true; break end
  end
  res["end"] = tl:now()
  res.duration = res["end"] - res.start
  tl:event("steady_end", { phase = phase, result = res.result, duration = res.duration,
    message = string.format("steady state (%s): %s", phase, M.describe(res)) })
  if res.result == "not steady" then
    local first = res.failing[1]
    local what = first.error and string.format("%s failing (%s)", first.probe, first.error)
      or string.format("%s ok for only %.1f s", first.probe, first.ok_for)
    run.steady.failure = string.format("the cloud is not steady%s: %s",
      phase == "end" and " after the upgrade" or "", run:redact(what))
    run.nfailed = run.nfailed + 1
    io.stderr:write("upgrun: ", run.steady.failure, "\n")
    return false
  end
  return true
end

return M
