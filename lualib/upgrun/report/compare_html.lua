-- upgrun.report.compare_html — `upgrun compare A B ... --html FILE`: one
-- self-contained page comparing two or more runs: a table (verdict,
-- duration, hook points, downtime per API with its uncertainty, over all
-- APIs) and each run's timeline (upgrun.report.timeline_svg) on one shared
-- time scale, so the same step or outage lines up run under run.
local html = require "upgrun.report.html"
local timeline_svg = require "upgrun.report.timeline_svg"

local M = {}
local fmt = string.format
local h = html.escape

-- docs: report documents; labels: one per doc ("A: name strategy").
function M.render(docs, labels)
  local b = {}
  local function add(s) b[#b + 1] = s end
  add(html.head("upgrun compare: " .. table.concat(labels, " vs ")))
  add("<h1>upgrun compare</h1>")
  local head = { "" }
  for _, l in ipairs(labels) do head[#head + 1] = l end
  local rows = {}
  local function row(name, cell, bad)
    local r = { name }
    for i, d in ipairs(docs) do r[#r + 1] = cell(d, i) or "-" end
    r.class = bad
    rows[#rows + 1] = r
  end
  row("verdict", function(d) return fmt("%s (exit %d)", tostring(d.verdict), math.tointeger(d.exit_code) or -1) end)
  row("started", function(d) return d.run and d.run.started end)
  row("run duration", function(d) return fmt("%.1f s", d.run and d.run.duration or 0) end)
  local hp, hp_names = {}, {}
  for _, d in ipairs(docs) do
    for k in pairs(d.hook_points or {}) do
      if not hp[k] then hp[k] = true; hp_names[#hp_names + 1] = k end
    end
  end
  table.sort(hp_names)
  for _, k in ipairs(hp_names) do
    row("hook point " .. k, function(d)
      local p = (d.hook_points or {})[k]
      return p and fmt("%.3f s", p.duration)
    end)
  end
  local names, seen = {}, {}
  for _, d in ipairs(docs) do
    for _, pr in ipairs(d.probes or {}) do
      if not seen[pr.name] then seen[pr.name] = true; names[#names + 1] = pr.name end
    end
  end
  for _, name in ipairs(names) do
    local any_down = false
    local cells = {}
    for i, d in ipairs(docs) do
      for _, pr in ipairs(d.probes or {}) do
        if pr.name == name then
          if pr.downtime > 0 then any_down = true end
          cells[i] = fmt("%.3f ± %.3f s (%d outage%s, longest %.3f s)", pr.downtime, pr.downtime_uncertainty,
            #pr.outages, #pr.outages == 1 and "" or "s", pr.longest_outage)
        end
      end
    end
    row("downtime " .. name, function(_, i) return cells[i] end, any_down and "bad" or nil)
  end
  row("downtime (any API)", function(d) return d.overall and fmt("%.3f s", d.overall.downtime) end)
  add('<table class="compare">')
  add(html.table_html(head, rows):gsub("^<table>", ""):gsub("</table>$", ""))
  add("</table>")
  local dur = 0
  for _, d in ipairs(docs) do dur = math.max(dur, d.run and d.run.duration or 0) end
  for i, d in ipairs(docs) do
    add(fmt('<h2 class="run">%s — <span class="%s">%s</span></h2>', h(labels[i]), h(d.verdict),
      h(tostring(d.verdict):upper())))
    add(fmt("<p>output %s; started %s</p>", h(d.run and d.run.output), h(d.run and d.run.started)))
    add('<div class="scroll">' .. timeline_svg.render(d, { dur = dur }) .. "</div>")
  end
  add("</body></html>\n")
  return table.concat(b, "\n")
end

return M
