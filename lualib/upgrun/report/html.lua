-- upgrun.report.html — report.html: one self-contained page (inline SVG and
-- CSS, no external assets) with the timeline a person looks at: stages and
-- steps as bands, outages shaded, latency over time per probe, then the
-- tables (downtime per API and per step, budgets, checks, hooks, steps).
local M = {}

local function h(s)
  return (tostring(s == nil and "" or s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;" }))
end
local function f3(v) return v and string.format("%.3f", v) or "" end
local function ms(v) return v and string.format("%.1f", v * 1000) or "" end

local COLORS = { passed = "#8fd19e", failed = "#f08080", interrupted = "#f0c060", skipped = "#ddd", planned = "#ddd" }
local STAGE_COLORS = { "#dbe9f6", "#fbe6c8", "#e0f0d8", "#efdcf2", "#f6f0c8", "#d8efef" }

local function table_html(headers, rows)
  local t = { "<table><tr>" }
  for _, hd in ipairs(headers) do t[#t + 1] = "<th>" .. h(hd) .. "</th>" end
  t[#t + 1] = "</tr>"
  for _, r in ipairs(rows) do
    t[#t + 1] = "<tr" .. (r.class and (' class="' .. r.class .. '"') or "") .. ">"
    for _, c in ipairs(r) do t[#t + 1] = "<td>" .. h(c) .. "</td>" end
    t[#t + 1] = "</tr>"
  end
  t[#t + 1] = "</table>"
  return table.concat(t)
end

local function svg_timeline(doc, run)
  local W, left, right = 1200, 170, 20
  local dur = math.max(doc.run.duration or 0, 0.001)
  local function X(t) return left + (W - left - right) * math.max(0, math.min(t, dur)) / dur end
  local y = 24
  local out = {}
  local function add(s) out[#out + 1] = s end
  local height_marker = #out + 1
  add("") -- replaced by the svg header once the height is known
  -- time axis
  local step = 10 ^ math.floor(math.log(dur / 5, 10))
  if dur / step > 12 then step = step * 5 elseif dur / step > 6 then step = step * 2 end
  local ticks = {}
  for t = 0, dur + 1e-9, step do ticks[#ticks + 1] = t end
  -- stages
  for i, sr in ipairs(doc.stages) do
    if sr.start then
      add(string.format('<rect x="%.1f" y="%d" width="%.1f" height="18" fill="%s">'
        .. '<title>stage %s: %s (%.3f s)</title></rect>',
        X(sr.start), y, math.max(1, X(sr["end"] or dur) - X(sr.start)), STAGE_COLORS[(i - 1) % #STAGE_COLORS + 1],
        h(sr.name), h(sr.result), sr.duration or 0))
      add(string.format('<text x="%.1f" y="%d" class="lbl">%s</text>', X(sr.start) + 3, y + 13, h(sr.name)))
    end
  end
  add(string.format('<text x="4" y="%d" class="row">stages</text>', y + 13))
  y = y + 24
  -- steps, one row per depth
  local maxdepth = -1
  for _, st in ipairs(doc.steps) do if st.start and st.depth > maxdepth then maxdepth = st.depth end end
  for d = 0, maxdepth do
    add(string.format('<text x="4" y="%d" class="row">steps%s</text>', y + 13,
      d > 0 and (" (level " .. d + 1 .. ")") or ""))
    for _, st in ipairs(doc.steps) do
      if st.start and st.depth == d then
        local x0, x1 = X(st.start), X(st["end"] or dur)
        add(string.format('<rect x="%.1f" y="%d" width="%.1f" height="18" fill="%s" stroke="#555" stroke-width="0.5">'
          .. '<title>%s\n%s, %.3f s (%.3f → %.3f)%s</title></rect>',
          x0, y, math.max(1, x1 - x0), COLORS[st.result] or "#ccc", h(st.path), h(st.result), st.duration or 0,
          st.start, st["end"] or dur, st.error and ("\n" .. h(st.error)) or ""))
        if x1 - x0 > 40 then
          add(string.format('<text x="%.1f" y="%d" class="lbl" clip-path="none">%s</text>', x0 + 2, y + 13,
            h(#st.name > (x1 - x0) / 6 and st.name:sub(1, math.floor((x1 - x0) / 6)) or st.name)))
        end
      end
    end
    y = y + 22
  end
  -- probes: latency of ok samples (log scale), failures as marks, outages shaded
  for _, pr in ipairs(doc.probes) do
    local ph = 90
    y = y + 6
    add(string.format('<text x="4" y="%d" class="row">%s</text>', y + 14, h(pr.name)))
    add(string.format('<text x="4" y="%d" class="sub">%.3f s down, %d outage(s)</text>', y + 28, pr.downtime,
      #pr.outages))
    add(string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="#fafafa" stroke="#ccc"/>', left, y,
      W - left - right, ph))
    for _, o in ipairs(pr.outages) do
      add(string.format('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#e04040" fill-opacity="0.35">'
        .. '<title>outage %.3f s ± %.3f (%.3f → %.3f) during %s</title></rect>',
        X(o.start), y, math.max(1.5, X(o["end"]) - X(o.start)), ph, o.duration, o.uncertainty, o.start, o["end"],
        h(table.concat(o.steps or {}, ", "))))
    end
    -- The series: fixed-size per-bucket aggregates (upgrun.series), one
    -- column per bucket: min..max as a light bar, p50 and p95 as lines.
    local cols = run and run.series and run.series[pr.name] or {}
    local lo, hi = math.huge, 0
    for _, c in ipairs(cols) do
      if c.min then
        if c.min < lo then lo = c.min end
        if c.max > hi then hi = c.max end
      end
    end
    if hi > 0 then
      lo = math.max(lo, 1e-5); hi = math.max(hi, lo * 10)
      local function Y(v) return y + ph - 4 - (ph - 8) * (math.log(math.max(v,
        lo)) - math.log(lo)) / (math.log(hi) - math.log(lo)) end
      local p50, p95 = {}, {}
      for _, c in ipairs(cols) do
        local cx = X((c.t0 + c.t1) / 2)
        if c.min then
          add(string.format('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#9bb8e0" stroke-width="1"/>',
            cx, cx, Y(c.min), Y(c.max)))
          p50[#p50 + 1] = string.format("%.1f,%.1f", cx, Y(c.p50))
          p95[#p95 + 1] = string.format("%.1f,%.1f", cx, Y(c.p95))
        end
        if c.bad > 0 then
          add(string.format('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#b00" stroke-width="1"/>',
            cx, cx, y + ph - 6, y + ph))
        end
      end
      if #p95 > 0 then add('<polyline fill="none" stroke="#e08020" stroke-width="1" points="' .. table.concat(p95,
        " ") .. '"><title>p95</title></polyline>') end
      if #p50 > 0 then add('<polyline fill="none" stroke="#2060c0" stroke-width="1" points="' .. table.concat(p50,
        " ") .. '"><title>p50</title></polyline>') end
      add(string.format('<text x="%d" y="%d" class="sub">%s ms</text>', left - 50, y + 10, ms(hi)))
      add(string.format('<text x="%d" y="%d" class="sub">%s ms</text>', left - 50, y + ph, ms(lo)))
    end
    y = y + ph + 4
  end
  y = require("upgrun.report.watch").svg_lanes(doc, add, X, y, left, W - left - right, h) -- a lane per watch
  -- shade every outage lightly across the whole height
  local total_h = y + 24
  for _, w in ipairs(doc.overall and doc.overall.windows or {}) do
    add(string.format('<rect x="%.1f" y="20" width="%.1f" height="%d" fill="#e04040" fill-opacity="0.08"/>',
      X(w.start), math.max(1, X(w["end"]) - X(w.start)), y - 20))
  end
  for _, t in ipairs(ticks) do
    add(string.format('<line x1="%.1f" x2="%.1f" y1="18" y2="%d" stroke="#000" stroke-opacity="0.08"/>', X(t), X(t), y))
    add(string.format('<text x="%.1f" y="14" class="sub" text-anchor="middle">%g s</text>', X(t), t))
  end
  out[height_marker] = string.format(
    '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">', W, total_h, W, total_h)
  add("</svg>")
  return table.concat(out, "\n")
end

function M.render(doc, run)
  local b = {}
  local function add(s) b[#b + 1] = s end
  add('<!DOCTYPE html><html><head><meta charset="utf-8"><title>upgrun ' .. h(doc.scenario.name) .. "</title>")
  add([[<style>
body{font:14px sans-serif;margin:20px;color:#222} h1{font-size:20px} h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} tr.bad td{background:#fde0e0} .passed{color:#070} .failed,.aborted{color:#b00}
svg text.lbl{font:11px sans-serif} svg text.row{font:12px sans-serif;font-weight:bold}
svg text.sub{font:10px sans-serif;fill:#555}
</style></head><body>]])
  add(string.format('<h1>%s — <span class="%s">%s</span></h1>', h(doc.scenario.name), h(doc.verdict),
    h((doc.verdict or ""):upper())))
  add("<p>" .. h(doc.scenario.description) .. "</p>")
  add(string.format("<p>started %s, %.3f s; output %s</p>", h(doc.run.started), doc.run.duration or 0,
    h(doc.run.output)))
  add("<h2>Timeline</h2>")
  add(svg_timeline(doc, run))
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
  for _, pr in ipairs(doc.probes) do
    for _, o in ipairs(pr.outages) do
      rows[#rows + 1] = { pr.name, f3(o.start), f3(o["end"]), f3(o.duration) .. " ± " .. f3(o.uncertainty),
                          tostring(o.first_error or ""), table.concat(o.steps or {}, ", ") }
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
