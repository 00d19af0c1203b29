-- upgrun.runner.console — the console view of a run: a timeline listener
-- that prints stages, steps, failed checks and hooks, and log lines as they
-- happen, and each task of an Ansible playbook step (-v adds passing checks
-- and hooks, and node commands). Other views
-- (JSON log lines, CI annotations) are other listeners on the same timeline.
-- On a terminal, upgrun.runner.live wraps it: these lines scroll above a
-- status block redrawn in place.
--
--   console.listener(opts) -> fn(event)
--     opts.write(line)  where lines go (default stdout, flushed per line)
--     opts.verbose      also passing checks/hooks and node commands
--     opts.color        colour result words (ANSI)
--   console.use_color(setting) -> bool    setting: auto|always|never (NO_COLOR wins for auto)
--   console.outage_line(run, probe, kind, outage, sample, color) -> line
--     the line printed when an outage starts ("start") or ends ("end"), from
--     upgrun.probing:on_outage: OUTAGE <probe> down at <t> s during <step>:
--     <error>, then OUTAGE END <probe> up again at <t> s: down <len> s ± <unc>
--     during <the innermost steps it fell in>
local outages = require "upgrun.outages"

local M = {}

local COLORS = { red = "\27[31m", green = "\27[32m", yellow = "\27[33m", reset = "\27[0m" }

-- Whether to colour: --color=always|never, else NO_COLOR, else stdout is a terminal.
function M.use_color(setting)
  if setting == "always" then return true end
  if setting == "never" then return false end
  local nc = os.getenv("NO_COLOR")
  if nc and nc ~= "" then return false end
  local term = os.getenv("TERM")
  if term == "dumb" then return false end
  return require("upgrun.fs").isatty(1)
end

local function indent(n) return string.rep("  ", n) end

-- Innermost of the run's steps running at some point in [t0, t1] (paths).
local function steps_in(run, t0, t1)
  local timed = {}
  for _, st in ipairs(run.steps) do if st.start then timed[#timed + 1] = st end end
  local during = outages.steps_during(t0, t1, timed)
  local has_child, out = {}, {}
  for _, st in ipairs(during) do if st.parent then has_child[st.parent] = true end end
  for _, st in ipairs(during) do if not has_child[st.id] then out[#out + 1] = st.path end end
  return out
end

function M.outage_line(run, probe, kind, o, s, color)
  local function paint(c, text) return color and (COLORS[c] .. text .. COLORS.reset) or text end
  if kind == "start" then
    local why = s and (s.message or s.err or s.status)
    return string.format("%s %s down at %.3f s%s%s", paint("red", "OUTAGE"), probe, o.start,
                         s and s.step and (" during " .. s.step) or "",
                         why and (": " .. run:redact(tostring(why)):gsub("%s+", " ")) or "")
  end
  local steps = steps_in(run, o.start, o["end"])
  return string.format("%s %s up again at %.3f s: down %.3f s ± %.3f%s", paint("green", "OUTAGE END"), probe,
                       o["end"], o.duration, o.uncertainty,
                       #steps > 0 and (" during " .. table.concat(steps, ", ")) or " (no step)")
end

function M.listener(opts)
  opts = opts or {}
  local write = opts.write or function(line) io.stdout:write(line, "\n"); io.stdout:flush() end
  local function paint(color, s)
    if not opts.color then return s end
    return COLORS[color] .. s .. COLORS.reset
  end
  local function result_word(r)
    if r == "passed" then return paint("green", "ok") end
    if r == "skipped" then return paint("yellow", "SKIPPED") end
    return paint("red", tostring(r):upper())
  end
  local handlers = {}
  function handlers.stage_start(e) write("stage " .. e.stage) end
  function handlers.stage_skipped(e)
    write(string.format("stage %s: %s (%s)", e.stage, paint("yellow", "SKIPPED"), e.reason))
  end
  function handlers.stage_end(e)
    if e.error then write(string.format("stage %s: %s %s", e.stage, paint("red", "ERROR"), e.error)) end
    write(string.format("stage %s: %s (%.3f s)", e.stage,
                        e.result == "passed" and paint("green", "passed") or paint("red", e.result), e.duration))
  end
  function handlers.step_start(e) write(string.format("%s%s ...", indent(e.depth + 1), e.name)) end
  function handlers.step_end(e)
    write(string.format("%s%s %s (%.3f s)%s", indent(e.depth + 1), e.name, result_word(e.result), e.duration,
                        e.error and (": " .. e.error) or ""))
  end
  function handlers.step_skipped(e) -- --resume, --from-step: not run
    write(string.format("%s%s %s (%s)", indent(e.depth + 1), e.name,
                        e.result == "skipped" and paint("yellow", "skipped") or paint("green", e.result), e.reason))
  end
  function handlers.hook(e)
    if e.result == "failed" then
      write(string.format("  %s %s (step %s): %s", paint("red", "HOOK FAILED"), e.name, e.step, tostring(e.error)))
    elseif opts.verbose then
      write(string.format("  hook %s (step %s): %s", e.name, e.step, e.result))
    end
  end
  function handlers.check(e)
    local pad = indent((e.depth or 0) + 1)
    if e.result == "failed" then
      local detail = e.detail and (": " .. e.detail) or ""
      write(string.format("%s%s %s%s", pad, paint("red", "CHECK FAILED"), e.name, detail))
    elseif e.result == "skipped" then
      write(string.format("%s%s %s: %s", pad, paint("yellow", "skipped"), e.name, tostring(e.detail)))
    elseif opts.verbose then
      write(string.format("%scheck %s %s", pad, e.name, paint("green", "ok")))
    end
  end
  function handlers.log(e) write("    " .. tostring(e.message)) end
  -- the steady-state check before the first stage and after the last
  function handlers.steady_start(e) write(e.message) end
  handlers.steady_wait = handlers.steady_start
  function handlers.steady_end(e)
    write(e.result == "not steady" and paint("red", e.message) or e.message)
  end
  -- a task of ctx:ansible, once it ended: its per-host counts
  function handlers.ansible_task(e)
    local c, parts = e.counts or {}, {}
    for _, k in ipairs { "ok", "changed", "failed", "skipped", "unreachable" } do
      if (c[k] or 0) > 0 then
        local word = k .. "=" .. c[k]
        parts[#parts + 1] = (k == "failed" or k == "unreachable") and paint("red", word) or word
      end
    end
    write(string.format("%sansible: %s  %s (%.3f s)", indent((e.depth or 0) + 1), tostring(e.task),
                        #parts > 0 and table.concat(parts, " ") or "no host", e.duration or 0))
  end
  function handlers.scenario_error(e) write(paint("red", "SCENARIO ERROR") .. " " .. e.message) end
  function handlers.node(e)
    if opts.verbose and e.command then
      write(string.format("      %s: %s (%s)", tostring(e.node), e.command, e.ok == false and "failed" or "ok"))
    end
  end
  return function(e)
    local h = handlers[e.kind]
    if h then h(e) end
  end
end

return M
