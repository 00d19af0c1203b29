-- upgrun.report.ansible — the tasks of ctx:ansible playbooks (report.json
-- timeline events of kind "ansible_task") in the other outputs, drawn from the
-- report document only:
--   svg_lanes: a lane per playbook run on the timeline (one bar per task from
--     its start to its end, coloured by its worst outcome, the task name as
--     label when it fits, play / task / per-host status / msg tail / rc on
--     hover), and under it a thin row per host (up to MAX_HOST_ROWS hosts) with
--     each host's part of each task, from the task's start to that host's
--     result, in the host's outcome;
--   legend: the outcome colours (only when a run has tasks);
--   html_rows: the rows of the "Ansible tasks" table;
--   during: the tasks that ran during an outage (its hover and table row);
--   junit_lines: per step path, one line per task for the step's <system-out>.
-- Task messages come redacted in the document (run:redact when recorded, and
-- the whole document before it is written); they are passed through
-- upgrun.redact once more for token/password patterns.
local redact = require "upgrun.redact"

local M = {}
local fmt = string.format

M.MAX_HOST_ROWS = 8 -- more hosts than this in one playbook run: no per-host rows (hover and table list them)
M.MSG_TAIL = 200 -- characters of a host's msg shown on hover and in the table
M.MAX_NAMES = 12 -- host names listed per outcome in one task's text

-- Outcomes, worst first: the task's outcome is the worst of its hosts'.
-- {name, colour, legend label}
M.OUTCOMES = {
  { "failed", "#d83a3a", "ansible task failed" },
  { "unreachable", "#7b2d6b", "unreachable" },
  { "ignored", "#f2a6a6", "failed, ignored" },
  { "changed", "#f0b429", "changed" },
  { "ok", "#66bb6a", "ok" },
  { "skipped", "#a9d6e5", "skipped" },
  { "none", "#dddddd", "no host result" },
}
local RANK, COLOUR = {}, {}
for i, o in ipairs(M.OUTCOMES) do RANK[o[1]], COLOUR[o[1]] = i, o[2] end

local function num(v) return type(v) == "number" and v == v and v or nil end

-- A host result's outcome: its status, "ignored" for an ignored failure.
local function host_outcome(r)
  local s = type(r) == "table" and r.status or nil
  if s == "failed" and r.ignored then return "ignored" end
  return RANK[s] and s or "none"
end
M.host_outcome = host_outcome

-- The ansible_task events of a document, in time order (kept per timeline
-- table: the page asks once per outage).
local cache = setmetatable({}, { __mode = "k" })
function M.tasks(doc)
  local tl = doc.timeline or {}
  if cache[tl] and cache[tl].n == #tl then return cache[tl].tasks end
  local out = {}
  for _, e in ipairs(tl) do
    if e.kind == "ansible_task" and num(e.t) then out[#out + 1] = e end
  end
  cache[tl] = { n = #tl, tasks = out }
  return out
end

-- The hosts of a task sorted worst outcome first, then by name: {name, result, outcome}.
local function sorted_hosts(e)
  local list = {}
  for name, r in pairs(type(e.hosts) == "table" and e.hosts or {}) do
    list[#list + 1] = { name = name, r = r, outcome = host_outcome(r) }
  end
  table.sort(list, function(a, b)
    if a.outcome ~= b.outcome then return RANK[a.outcome] < RANK[b.outcome] end
    return a.name < b.name
  end)
  return list
end

-- The task's outcome: the worst of its hosts' ("none" without any result).
function M.outcome(e)
  local hosts = sorted_hosts(e)
  return hosts[1] and hosts[1].outcome or "none"
end

local function tail(s, n)
  if type(s) ~= "string" then return nil end
  s = redact.string(s, {}):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if s == "" then return nil end
  if #s <= n then return s end
  return "…" .. s:sub(-n):gsub("^[\128-\191]+", "")
end

-- One host's detail: "n2: failed (rc 3): non-zero return code; disk full".
local function host_detail(hst)
  local r = hst.r
  local parts = { hst.outcome == "ignored" and "failed (ignored)" or hst.outcome }
  if num(r.rc) and r.rc ~= 0 then parts[1] = parts[1] .. fmt(" (rc %d)", math.floor(r.rc)) end
  local msg = tail(r.msg, M.MSG_TAIL)
  local err = (hst.outcome == "failed" or hst.outcome == "ignored") and tail(r.stderr, M.MSG_TAIL) or nil
  local text = hst.name .. ": " .. parts[1]
  if msg then text = text .. ": " .. msg end
  if err and err ~= msg then text = text .. "; stderr: " .. err end
  return text
end

-- The hosts of a task as lines: each bad host (failed, unreachable, ignored)
-- with its msg, then the others grouped by outcome ("changed: n1, n3").
function M.host_lines(e)
  local lines, groups, order = {}, {}, {}
  for _, hst in ipairs(sorted_hosts(e)) do
    if RANK[hst.outcome] <= RANK.ignored then
      lines[#lines + 1] = host_detail(hst)
    else
      if not groups[hst.outcome] then groups[hst.outcome] = {}; order[#order + 1] = hst.outcome end
      local g = groups[hst.outcome]
      g[#g + 1] = hst.name
    end
  end
  if #lines > M.MAX_NAMES then
    local more = #lines - M.MAX_NAMES
    for i = #lines, M.MAX_NAMES + 1, -1 do lines[i] = nil end
    lines[#lines + 1] = fmt("… and %d more failed or unreachable", more)
  end
  for _, o in ipairs(order) do
    local g = groups[o]
    local names = table.concat(g, ", ", 1, math.min(#g, M.MAX_NAMES))
    if #g > M.MAX_NAMES then names = names .. fmt(" … and %d more", #g - M.MAX_NAMES) end
    lines[#lines + 1] = fmt("%s (%d): %s", o, #g, names)
  end
  if #lines == 0 then lines[1] = "no host result" end
  return lines
end

local function span(e)
  local t0, t1 = e.t, num(e.t_end) or e.t
  return fmt("%.3f → %.3f s (%.3f s)", t0, t1, num(e.duration) or (t1 - t0))
end

-- The hover text of a task.
function M.title(e)
  local head = fmt("%s%s: %s", e.handler and "handler " or "task ", tostring(e.task), M.outcome(e))
  local lines = { head, fmt("play %s · %s", tostring(e.play or "?"), tostring(e.playbook or "?")), span(e) }
  if e.path then lines[#lines + 1] = tostring(e.path) end
  for _, l in ipairs(M.host_lines(e)) do lines[#lines + 1] = l end
  if e.step then lines[#lines + 1] = "step " .. tostring(e.step) end
  return table.concat(lines, "\n")
end

-- The tasks that ran during [t0, t1], as text for an outage's hover and
-- row: "restart nova-api on ctl1 (changed)", at most `max` (default 4) and
-- "… and N more"; nil when none.
function M.during(doc, t0, t1, max)
  max = max or 4
  local out, n = {}, 0
  for _, e in ipairs(M.tasks(doc)) do
    if e.t <= t1 and (num(e.t_end) or e.t) >= t0 then
      n = n + 1
      if n <= max then
        local names = {}
        for _, hst in ipairs(sorted_hosts(e)) do
          if hst.outcome ~= "skipped" then names[#names + 1] = hst.name end
        end
        local on = #names == 0 and "" or #names <= 3 and (" on " .. table.concat(names, ", "))
          or fmt(" on %d hosts", #names)
        out[#out + 1] = fmt("%s%s (%s)", tostring(e.task), on, M.outcome(e))
      end
    end
  end
  if n == 0 then return nil end
  if n > max then out[#out + 1] = fmt("… and %d more", n - max) end
  return table.concat(out, ", ")
end

-- Legend entries (when the document has tasks), on a row of their own:
-- legend(draw, label) as in upgrun.report.timeline_svg, draw(x, y) -> SVG;
-- newline() starts a legend row.
function M.legend(doc, legend, newline)
  if #M.tasks(doc) == 0 then return end
  newline()
  for _, o in ipairs(M.OUTCOMES) do
    if o[1] ~= "none" then
      legend(function(x, y)
        return fmt('<rect x="%.1f" y="%d" width="12" height="10" fill="%s" stroke="#555" stroke-width="0.5"/>', x, y,
          o[2])
      end, o[3])
    end
  end
end

-- The playbook runs of a document: {step, playbook, tasks, hosts (sorted)}, in time order.
local function runs_of(doc)
  local runs, by_step = {}, {}
  for _, e in ipairs(M.tasks(doc)) do
    local key = tostring(e.step or e.playbook)
    local r = by_step[key]
    if not r then
      r = { step = e.step, playbook = e.playbook, tasks = {}, hosts = {}, seen = {} }
      by_step[key] = r
      runs[#runs + 1] = r
    end
    r.tasks[#r.tasks + 1] = e
    for name in pairs(type(e.hosts) == "table" and e.hosts or {}) do
      if not r.seen[name] then r.seen[name] = true; r.hosts[#r.hosts + 1] = name end
    end
  end
  for _, r in ipairs(runs) do table.sort(r.hosts) end
  return runs
end

-- Draws the lanes. c: {add, X, y, left, width, h (escape), fit, row_label(text, y, sub)}. Returns the new y.
function M.svg_lanes(doc, c)
  local add, X, h, y = c.add, c.X, c.h, c.y
  for _, run in ipairs(runs_of(doc)) do
    y = y + 2
    -- the step's own name (ctx:ansible{name =}) tells two runs of one playbook apart
    local own = tostring(run.step or ""):match("([^/]-)%s*$"):gsub("^%s+", ""):gsub("^ansible%-playbook ", "ansible ")
    c.row_label(own ~= "" and own or ("ansible " .. tostring(run.playbook or "?")), y + 14)
    local host_rows = #run.hosts <= M.MAX_HOST_ROWS and run.hosts or {}
    local lh = 20 + #host_rows * 10
    add(fmt('<rect class="ansible-lane" x="%d" y="%d" width="%d" height="%d" fill="#f7f7f7" stroke="#ddd">'
      .. "<title>%s</title></rect>", c.left, y, c.width, lh, h(run.step or run.playbook)))
    for i, name in ipairs(host_rows) do c.row_label(name, y + 20 + i * 10 - 1, true) end
    for _, e in ipairs(run.tasks) do
      local x0 = X(e.t)
      local x1 = X(num(e.t_end) or e.t)
      local w = math.max(1, x1 - x0)
      local outcome = M.outcome(e)
      local title = h(M.title(e))
      add(fmt('<g class="ansible-task task-%s"><rect x="%.1f" y="%d" width="%.1f" height="18" fill="%s" '
        .. 'stroke="#fff" stroke-width="0.5"/><title>%s</title>', outcome, x0, y + 1, w, COLOUR[outcome], title))
      local hosts = sorted_hosts(e)
      local label = tostring(e.task)
      if #hosts == 1 then label = label .. " · " .. hosts[1].name end
      label = c.fit(label, w)
      if label then
        add(fmt('<text x="%.1f" y="%d" class="lbl"%s>%s</text>', x0 + 2, y + 14,
          RANK[outcome] <= RANK.unreachable and ' fill="#fff"' or "", h(label)))
      end
      add("</g>")
      for i, name in ipairs(host_rows) do
        local r = type(e.hosts) == "table" and e.hosts[name]
        if r then
          local o = host_outcome(r)
          local xe = num(r.t) and X(r.t) or x1
          add(fmt('<rect class="ansible-host host-%s" x="%.1f" y="%d" width="%.1f" height="8" fill="%s">'
            .. "<title>%s — %s</title></rect>", o, x0, y + 20 + (i - 1) * 10 + 1, math.max(1, xe - x0), COLOUR[o],
            h(host_detail { name = name, r = r, outcome = o }), h(tostring(e.task))))
        end
      end
    end
    y = y + lh + 2
  end
  return y
end

-- The rows of the "Ansible tasks" table: playbook, play, task, hosts, start, duration, step.
function M.html_rows(doc)
  local rows = {}
  for _, e in ipairs(M.tasks(doc)) do
    local outcome = M.outcome(e)
    rows[#rows + 1] = { tostring(e.playbook or ""), tostring(e.play or ""),
                        (e.handler and "handler: " or "") .. tostring(e.task), table.concat(M.host_lines(e), "; "),
                        fmt("%.3f", e.t), fmt("%.3f", num(e.duration) or 0), tostring(e.step or ""),
                        class = "ansible-row row-" .. outcome .. (RANK[outcome] <= RANK.unreachable and " bad" or "") }
  end
  return rows
end

-- Per step path, the lines naming its tasks for junit.xml's <system-out>:
-- "12.345 s +0.512 s  the nodes / break on n2: failed — n2: failed (rc 3): ...; skipped (1): n1".
function M.junit_lines(doc)
  local by_step = {}
  for _, e in ipairs(M.tasks(doc)) do
    if e.step then
      local l = by_step[e.step] or {}
      by_step[e.step] = l
      l[#l + 1] = fmt("%.3f s +%.3f s  %s / %s: %s — %s", e.t, num(e.duration) or 0, tostring(e.play or "?"),
        tostring(e.task), M.outcome(e), table.concat(M.host_lines(e), "; "))
    end
  end
  return by_step
end

return M
