-- upgrun.report.html — report.html: one self-contained page (inline SVG and
-- CSS; a Content-Security-Policy forbids any fetch) with the timeline a
-- person looks at (upgrun.report.timeline_svg: steps, node service actions,
-- latency bands, outages with their uncertainty, legend, run-time and
-- wall-clock axes, ctx:ansible playbook tasks), then the tables (downtime per
-- API and per step, budgets, checks, hooks, steps, Ansible tasks). Drawn
-- from the report document only.
local timeline_svg = require "upgrun.report.timeline_svg"

local M = {}

local function h(s)
  return (tostring(s == nil and "" or s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;" }))
end
local function f3(v) return v and string.format("%.3f", v) or "" end
local function ms(v) return v and string.format("%.1f", v * 1000) or "" end

local function table_html(headers, rows)
  local t = { "<table><tr>" }
  for _, hd in ipairs(headers) do t[#t + 1] = "<th>" .. h(hd) .. "</th>" end
  t[#t + 1] = "</tr>"
  for _, r in ipairs(rows) do
    t[#t + 1] = "<tr" .. (r.class and (' class="' .. r.class .. '"') or "") .. ">"
    for _, c in ipairs(r) do
      -- a count read back from JSON is a float: write 12, not 12.0
      if math.type(c) == "float" and c == math.floor(c) and math.abs(c) < 1e15 then c = string.format("%d", c) end
      t[#t + 1] = "<td>" .. h(c) .. "</td>"
    end
    t[#t + 1] = "</tr>"
  end
  t[#t + 1] = "</table>"
  return table.concat(t)
end

-- The page's head: no network (CSP), the style, and a script that records
-- any script error into the DOM (#page-errors; the browser tests read it).
function M.head(title)
  return '<!DOCTYPE html><html><head><meta charset="utf-8">'
    .. [[<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; ]]
    .. [[script-src 'unsafe-inline'; img-src data:">]]
    .. "<title>" .. h(title) .. "</title>" .. [[
<script>window.onerror=function(m,s,l){var e=document.getElementById("page-errors");
if(e){e.textContent+=m+" (line "+l+")\n";}};</script>
<style>
body{font:14px sans-serif;margin:20px;color:#222} h1{font-size:20px} h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} tr.bad td{background:#fde0e0} .passed{color:#070} .failed,.aborted{color:#b00}
svg text.lbl{font:11px sans-serif} svg text.row{font:12px sans-serif;font-weight:bold}
svg text.sub{font:10px sans-serif;fill:#555} #page-errors{color:#b00} #page-errors:empty{display:none}
.scroll{overflow-x:auto}
</style></head><body><pre id="page-errors"></pre>]]
end
M.table_html = table_html
M.escape = h

function M.render(doc)
  local b = {}
  local function add(s) b[#b + 1] = s end
  add(M.head("upgrun " .. tostring(doc.scenario.name)))
  add(string.format('<h1>%s — <span class="%s">%s</span></h1>', h(doc.scenario.name), h(doc.verdict),
    h((doc.verdict or ""):upper())))
  add("<p>" .. h(doc.scenario.description) .. "</p>")
  add(string.format("<p>started %s, %.3f s; output %s</p>", h(doc.run.started), doc.run.duration or 0,
    h(doc.run.output)))
  add("<h2>Timeline</h2>")
  add('<div class="scroll">' .. timeline_svg.render(doc) .. "</div>")
  local rows = {}
  for _, pr in ipairs(doc.probes) do
    rows[#rows + 1] = { pr.name, f3(pr.downtime) .. " ± " .. f3(pr.downtime_uncertainty), #pr.outages,
      f3(pr.longest_outage),
                        string.format("%.1f/s", pr.rate), pr.sent, pr.skipped, ms(pr.latency.p50), ms(pr.latency.p95),
                          ms(pr.latency.p99),
                        class = pr.downtime > 0 and "bad" or nil }
  end
  add("<h2>Downtime per API</h2>")
  add(table_html({ "probe", "downtime (s)", "outages", "longest (s)", "rate", "sent", "skipped", "p50 ms", "p95 ms",
    "p99 ms" }, rows))
  rows = {}
  for _, g in ipairs(doc.downtime_per_service or {}) do
    rows[#rows + 1] = { g.service, f3(g.downtime), g.outages, f3(g.longest_outage), table.concat(g.probes, ", "),
                        class = g.downtime > 0 and "bad" or nil }
  end
  if #doc.probes > 1 and doc.overall then
    local o = doc.overall
    rows[#rows + 1] = { "all-products downtime (any API out)", f3(o.downtime), #o.windows, f3(o.longest_outage),
                        "every probe", class = o.downtime > 0 and "bad" or nil }
  end
  if #rows > 1 then
    add("<h2>Downtime per product</h2>")
    add(table_html({ "product (service)", "downtime (s)", "outages", "longest (s)", "probes" }, rows))
  end
  rows = {}
  for _, pr in ipairs(doc.probes) do
    for _, o in ipairs(pr.outages) do
      local tasks = require("upgrun.report.ansible").during(doc, o.start, o["end"])
      rows[#rows + 1] = { pr.name, f3(o.start), f3(o["end"]), f3(o.duration) .. " ± " .. f3(o.uncertainty),
                          tostring(o.first_error or ""), table.concat(o.steps or {}, ", ")
                            .. (tasks and ("; ansible tasks: " .. tasks) or "") }
    end
  end
  if #rows > 0 then
    add("<h2>Outages</h2>")
    add(table_html({ "probe", "start (s)", "end (s)", "duration (s)", "first error", "during steps" }, rows))
  end
  rows = {}
  for _, d in ipairs(doc.downtime_per_step) do
    local parts = {}
    for k, v in pairs(d.probes) do parts[#parts + 1] = string.format("%s: %.3f s", k, v) end
    table.sort(parts)
    rows[#rows + 1] = { d.step, d.stage, table.concat(parts, "; ") }
  end
  if #rows > 0 then add("<h2>Downtime per step</h2>"); add(table_html({ "step", "stage", "downtime" }, rows)) end
  rows = {}
  for _, pr in ipairs(doc.probes) do
    local stages = {}
    for k in pairs(pr.latency_by_stage) do stages[#stages + 1] = k end
    table.sort(stages)
    for _, sname in ipairs(stages) do
      local l = pr.latency_by_stage[sname]
      rows[#rows + 1] = { pr.name, sname, l.n, ms(l.p50), ms(l.p95), ms(l.p99),
                          l.p95_ratio and string.format("%.2f×", l.p95_ratio) or "" }
    end
  end
  if #rows > 0 then add("<h2>Latency per stage</h2>"); add(table_html({ "probe", "stage", "ok samples", "p50 ms",
    "p95 ms", "p99 ms", "p95 vs baseline" }, rows)) end
  rows = require("upgrun.report.watch").html_rows(doc)
  if #rows > 0 then add("<h2>Watched resources</h2>"); add(table_html({ "watch", "resource", "at (s)", "change",
    "during" }, rows)) end
  rows = {}
  for _, bu in ipairs(doc.budgets) do rows[#rows + 1] = { bu.probe, bu.key, bu.status, bu.message,
    class = bu.status == "fail" and "bad" or nil } end
  if #rows > 0 then add("<h2>Budgets</h2>"); add(table_html({ "probe", "budget", "result", "detail" }, rows)) end
  rows = {}
  for _, st in ipairs(doc.steps) do
    rows[#rows + 1] = { st.path, st.stage, f3(st.start), f3(st.duration), st.result, st.error or "",
                        class = (st.result == "failed" or st.result == "interrupted") and "bad" or nil }
  end
  add("<h2>Steps</h2>"); add(table_html({ "step", "stage", "start (s)", "duration (s)", "result", "error" }, rows))
  rows = require("upgrun.report.ansible").html_rows(doc)
  if #rows > 0 then
    add('<h2>Ansible tasks</h2><div class="ansible-tasks">')
    add(table_html({ "playbook", "play", "task", "hosts", "start (s)", "duration (s)", "step" }, rows) .. "</div>")
  end
  rows = {}
  for _, c in ipairs(doc.checks) do
    local result = c.result == "skipped" and "skipped" or (c.ok and "ok" or "FAILED")
    rows[#rows + 1] = { c.name, c.stage, c.step or "", result, c.detail or "", class = (not c.ok) and "bad" or nil }
  end
  if #rows > 0 then add("<h2>Checks</h2>"); add(table_html({ "check", "stage", "step", "result", "detail" }, rows)) end
  rows = {}
  for _, hk in ipairs(doc.hooks) do rows[#rows + 1] = { hk.name, hk.step, f3(hk.start), f3(hk.duration), hk.result,
    hk.error or "", hk.source or "", class = hk.result ~= "passed" and "bad" or nil } end
  if #rows > 0 then add("<h2>Hooks</h2>"); add(table_html({ "hook", "step", "start (s)", "duration (s)", "result",
    "error", "source" }, rows)) end
  rows = {}
  for k, v in pairs(doc.params) do rows[#rows + 1] = { k, type(v) == "table" and table.concat(v,
    ",") or tostring(v) } end
  table.sort(rows, function(a, c) return a[1] < c[1] end)
  add("<h2>Parameters</h2>"); add(table_html({ "parameter", "value" }, rows))
  add("</body></html>\n")
  return table.concat(b, "\n")
end

return M
