-- upgrun.report.watch — the resource watches (upgrun.watch_run) in the
-- reports: analyse(run) builds run.watch_reports (report.json key "watch":
-- per watch its resources, their transitions, unavailability windows
-- attributed to the steps and hooks running, disappearances, budgets), and
-- the small pieces the other outputs add: console lines, problems, a junit
-- testcase per watched kind, a timeline lane per watched kind, an HTML table.
-- Kept apart from report.lua, report/html.lua and report/junit.lua, which
-- call in here with one line each.
local json = require "upgrun.report.json"
local outages = require "upgrun.outages"

local M = {}
local A = json.array

-- What ran during [t0, t1]: the innermost steps and the hooks (upgrun.outages.during).
function M.during(run, t0, t1, steps) return A(outages.during(t0, t1, steps, run.hooks_run)) end

local function where_text(list) return #list > 0 and table.concat(list, ", ") or "(between steps)" end

local function plain(f)
  local o = {}
  for k, v in pairs(f or {}) do o[k] = v end
  return o
end

local function analyse_watch(run, wr, steps)
  local w = wr.watch
  local resources, per_step_sum, failures = A {}, {}, A {}
  local total, n_trans, n_intended, worst = 0, 0, 0, 0
  for _, res in ipairs(wr.resources) do
    local wins = A {}
    local unavailable, unc = 0, 0
    for _, win in ipairs(res.windows) do
      -- a vanished resource: where it vanished (between the last poll that saw it and the first that did not)
      local during = win.vanished and res.vanished
        and M.during(run, res.vanished.last_seen or win.start, win.start, steps)
        or M.during(run, win.start, win["end"], steps)
      wins[#wins + 1] = { start = win.start, ["end"] = win["end"], duration = win.duration,
                          uncertainty = win.uncertainty, start_uncertainty = win.start_uncertainty,
                          end_uncertainty = win.end_uncertainty, state = win.state, open = win.open,
                          vanished = win.vanished, during = during }
      unavailable = unavailable + win.duration
      unc = unc + win.uncertainty
    end
    local per = outages.downtime_per_step(res.windows, steps, run.run_end)
    local per_step = A {}
    for _, st in ipairs(steps) do
      if per[st.id] then
        per_step[#per_step + 1] = { step = st.path, id = st.id, stage = st.stage, seconds = per[st.id] }
        per_step_sum[st.id] = (per_step_sum[st.id] or 0) + per[st.id]
      end
    end
    for _, h in ipairs(run.hooks_run or {}) do
      local sum = 0
      for _, win in ipairs(res.windows) do
        sum = sum + outages.overlap(win.start, win["end"], h.start or 0, h["end"] or run.run_end or 0)
      end
      if sum > 0 then per_step[#per_step + 1] = { hook = h.name, step = h.step, seconds = sum } end
    end
    local trans = A {}
    for _, tr in ipairs(res.transitions) do
      trans[#trans + 1] = { t = tr.t, changes = tr.changes, from = plain(tr.from), to = plain(tr.to), step = tr.step,
                            intended = tr.intended }
      n_trans = n_trans + 1
      if tr.intended then n_intended = n_intended + 1 end
    end
    local vanished
    if res.vanished then
      local v = res.vanished
      local during = M.during(run, v.last_seen or v.t, v.t, steps)
      vanished = { t = v.t, last_seen = v.last_seen, step = v.step, during = during }
      failures[#failures + 1] = string.format("%s %s (%s) vanished between %s and %.3f s, during %s", w.kind,
        tostring(res.name), res.id, v.last_seen and string.format("%.3f", v.last_seen) or "the start", v.t,
        where_text(during))
    end
    total = total + unavailable
    if unavailable > worst then worst = unavailable end
    resources[#resources + 1] = {
      id = res.id, name = res.name, expected = plain(res.expected), first = plain(res.first), last = plain(res.last),
      since = res.since, dropped = res.dropped, transitions = trans, unavailable = unavailable,
      unavailable_uncertainty = unc, windows = wins, unavailable_per_step = per_step, vanished = vanished,
    }
  end
  local per_step = A {}
  for _, st in ipairs(steps) do
    if per_step_sum[st.id] then per_step[#per_step + 1] = { step = st.path, id = st.id, stage = st.stage,
                                                             seconds = per_step_sum[st.id] } end
  end
  local budget = A {}
  local limit = w.budget and w.budget.max_unavailable
  if limit then
    for _, r in ipairs(resources) do
      local ok = r.unavailable <= limit
      local b = { probe = "watch " .. w.name .. " " .. tostring(r.name), key = "max_unavailable", limit = limit,
                  value = r.unavailable, unit = "s", status = ok and "pass" or "fail",
                  message = string.format("unavailable %.3f s %s %g s", r.unavailable, ok and "<=" or "> budget",
                                          limit) }
      budget[#budget + 1] = b
      if not ok then run.budget_failures = run.budget_failures + 1 end
    end
  end
  return {
    name = w.name, kind = w.kind, every = w.every, page_size = w.page_size,
    stages = w.stages and A(w.stages) or "all", polls = wr.polls, requests = wr.requests,
    list_errors = wr.list_errors, transitions = n_trans, intended_transitions = n_intended,
    unexpected_transitions = n_trans - n_intended, unavailable = total, worst_unavailable = worst,
    resources = resources, unavailable_per_step = per_step, budget = budget, failures = failures,
    vanished = #failures,
  }
end

-- Builds run.watch_reports from run.watching (nothing when no watch ran).
function M.analyse(run)
  run.watch_reports = A {}
  local steps = {}
  for _, st in ipairs(run.steps) do if st.start then steps[#steps + 1] = st end end
  for _, wr in ipairs(run.watching and run.watching.runs or {}) do
    wr:finish(run.run_end or run.tl:now())
    run.watch_reports[#run.watch_reports + 1] = analyse_watch(run, wr, steps)
  end
end

-- The budget items of every watch (for report.json's "budgets").
function M.budgets(reports)
  local out = {}
  for _, r in ipairs(reports or {}) do for _, b in ipairs(r.budget) do out[#out + 1] = b end end
  return out
end

-- Console lines (the summary printed at the end).
function M.console_lines(run)
  local out = {}
  local reports = run.watch_reports or {}
  if #reports == 0 then return out end
  out[#out + 1] = "watched resources:"
  for _, r in ipairs(reports) do
    out[#out + 1] = string.format("  %-12s %d resource%s, %d polls every %g s (%d requests, %d failed), %d change%s "
      .. "(%d intended), unavailable %.3f s, %d vanished", r.name, #r.resources, #r.resources == 1 and "" or "s",
      r.polls, r.every, r.requests, r.list_errors, r.transitions, r.transitions == 1 and "" or "s",
      r.intended_transitions, r.unavailable, r.vanished)
    for _, res in ipairs(r.resources) do
      for _, win in ipairs(res.windows) do
        out[#out + 1] = string.format("      %s: at %8.3f s  %6.3f s ± %.3f  %s%s %s %s", tostring(res.name),
          win.start, win.duration, win.uncertainty, win.state or "", win.open and " (until the end)" or "",
          win.vanished and "in" or "during", where_text(win.during))
      end
    end
  end
  return out
end

-- Failure lines for the console's "problems:" list.
function M.problems(run)
  local out = {}
  for _, r in ipairs(run.watch_reports or {}) do
    for _, f in ipairs(r.failures) do out[#out + 1] = "watch: " .. f end
  end
  return out
end

-- One junit testcase per watched kind: a failure names every vanished
-- resource and failed budget.
function M.junit_cases(doc, classname)
  local cases = {}
  for _, r in ipairs(doc.watch or {}) do
    local msgs = {}
    for _, f in ipairs(r.failures) do msgs[#msgs + 1] = f end
    for _, b in ipairs(r.budget) do if b.status == "fail" then msgs[#msgs + 1] = b.probe .. ": " .. b.message end end
    local lines = {}
    for _, res in ipairs(r.resources) do
      for _, tr in ipairs(res.transitions) do
        lines[#lines + 1] = string.format("%.3f s %s: %s%s (during %s)", tr.t, tostring(res.name), tr.changes,
          tr.intended and " (intended)" or "", tr.step or "no step")
      end
      for _, win in ipairs(res.windows) do
        lines[#lines + 1] = string.format("%.3f s %s: unavailable %.3f s ± %.3f, %s (%s)", win.start,
          tostring(res.name), win.duration, win.uncertainty, win.state or "", where_text(win.during))
      end
    end
    -- `out` is <system-out> where the junit writer has it
    local c = { classname = classname, name = "watch " .. r.name .. string.format(" (%d resources, %d changes, "
      .. "%.3f s unavailable)", #r.resources, r.transitions, r.unavailable), out = table.concat(lines, "\n") }
    if #msgs > 0 then c.status, c.message, c.body = "failure", msgs[1], table.concat(msgs, "\n") end
    cases[#cases + 1] = c
  end
  return cases
end

-- A lane per watched kind in the timeline SVG: unavailability windows
-- shaded (red when the resource vanished), a tick per change. add(s)
-- appends to the SVG, X(t) maps time, h escapes. Returns the new y.
function M.svg_lanes(doc, add, X, y, left, width, h)
  for _, r in ipairs(doc.watch or {}) do
    local lh = 22
    y = y + 6
    add(string.format('<text x="4" y="%d" class="row">watch %s</text>', y + 14, h(r.name)))
    add(string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="#fafafa" stroke="#ccc"/>', left, y, width, lh))
    for _, res in ipairs(r.resources) do
      for _, win in ipairs(res.windows) do
        add(string.format('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.5">'
          .. '<title>%s: %s %.3f s ± %.3f during %s</title></rect>', X(win.start), y,
          math.max(1.5, X(win["end"]) - X(win.start)), lh, win.vanished and "#b00000" or "#e0a040", h(res.name),
          h(win.state or ""), win.duration, win.uncertainty, h(where_text(win.during))))
      end
      for _, tr in ipairs(res.transitions) do
        add(string.format('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="1.5">'
          .. '<title>%s at %.3f s: %s%s</title></line>', X(tr.t), X(tr.t), y, y + lh,
          tr.intended and "#888" or "#2060c0", h(res.name), tr.t, h(tr.changes), tr.intended and " (intended)" or ""))
      end
    end
    y = y + lh + 4
  end
  return y
end

-- The HTML table rows: one per transition and per window.
function M.html_rows(doc)
  local rows = {}
  for _, r in ipairs(doc.watch or {}) do
    for _, res in ipairs(r.resources) do
      for _, tr in ipairs(res.transitions) do
        rows[#rows + 1] = { r.name, tostring(res.name), string.format("%.3f", tr.t),
                            tr.changes .. (tr.intended and " (intended)" or ""), tr.step or "" }
      end
      for _, win in ipairs(res.windows) do
        rows[#rows + 1] = { r.name, tostring(res.name), string.format("%.3f", win.start),
                            string.format("unavailable %.3f s ± %.3f: %s", win.duration, win.uncertainty,
                                          win.state or ""), where_text(win.during),
                            class = "bad" }
      end
    end
  end
  return rows
end

return M
