-- upgrun.report.timeline_svg — the timeline of one run as inline SVG, drawn
-- from report.json's fields only (so a report can be re-rendered, and runs
-- compared, from their report.json):
--   run-time axis (top) and UTC wall-clock axis (bottom, from run.t0_wall);
--   stages, then steps one row per depth, labels cut to fit (full text on
--   hover: SVG <title>);
--   one lane per node with its service actions (stop, signal, start) as
--   markers and its other commands as ticks;
--   one lane per probe: the latency of each chart bucket (probes[].series) as
--   a min–max band, a p50–p95 band and the p50 line (log scale), failed
--   samples as red ticks, outages shaded with their start/end uncertainty
--   hatched on each side;
--   a lane per ctx:ansible playbook run, its tasks as bars coloured by
--   outcome and a row per host (upgrun.report.ansible);
--   a legend.
--   local svg = timeline_svg.render(doc, {dur =, width =})  -- dur: a shared x scale
local ansible_report = require "upgrun.report.ansible"

local M = {}

local fmt = string.format

local function h(s)
  return (tostring(s == nil and "" or s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;" }))
end
M.escape = h

local function num(v) return type(v) == "number" and v == v and v or nil end

local RESULT_COLORS = { passed = "#8fd19e", failed = "#f08080", interrupted = "#f0c060", skipped = "#ddd",
                        planned = "#ddd" }
local STAGE_COLORS = { "#dbe9f6", "#fbe6c8", "#e0f0d8", "#efdcf2", "#f6f0c8", "#d8efef" }
local ACTION = { stop = { "#c03030", "stop" }, signal = { "#e08020", "signal" }, start = { "#208040", "start" } }
M.CHAR_W = 6.7 -- width of an 11px sans-serif character, on the safe side (DejaVu Sans: ~6.3 average)

-- Text that fits in `width` pixels: whole, cut with an ellipsis, or nil.
local function fit(text, width)
  local n = math.floor((width - 4) / M.CHAR_W)
  if #text <= n then return text end
  if n < 4 then return nil end
  local cut = text:sub(1, n - 1):gsub("[\128-\191]*$", ""):gsub("[\192-\255]$", "")
  return cut .. "…"
end
M.fit = fit

-- A round tick step for a span of `dur` seconds with about 8 ticks.
local function tick_step(dur)
  local steps = { 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200 }
  for _, s in ipairs(steps) do if dur / s <= 10 then return s end end
  return 3600 * math.ceil(dur / 36000)
end

local function runtime_label(t, step)
  if step >= 60 then return fmt("%d:%02d", t // 60, math.floor(t % 60 + 0.5)) end
  if step >= 1 then return fmt("%d s", math.floor(t + 0.5)) end
  return fmt("%g s", tonumber(fmt("%.2f", t)))
end

local function wall_label(epoch, step)
  local s = math.floor(epoch)
  local base = os.date("!%H:%M:%S", s)
  if step < 1 then return base .. fmt(".%02d", math.floor((epoch - s) * 100)) end
  return base
end

local function ms(v)
  if v < 0.001 then return fmt("%.0f µs", v * 1e6) end
  return fmt(v >= 0.1 and "%.0f ms" or "%.1f ms", v * 1000)
end

function M.render(doc, opts)
  opts = opts or {}
  local W, left, right = opts.width or 1200, 200, 70
  local run = doc.run or {}
  local dur = math.max(opts.dur or num(run.duration) or 0, 0.001)
  local PW = W - left - right
  local function X(t) return left + PW * math.max(0, math.min(t, dur)) / dur end
  local out, bg = {}, {}
  local function add(s) out[#out + 1] = s end
  local y = 8

  -- legend
  local lx = left
  local function legend(draw, label)
    if lx + 24 + #label * 5.6 > W and lx > left then lx, y = left, y + 16 end -- wrap to a second row
    bg[#bg + 1] = fmt('<g class="legend-item">%s<text x="%.1f" y="%d" class="sub">%s</text></g>', draw(lx, y),
      lx + 16, y + 9, h(label))
    lx = lx + 24 + #label * 5.6
  end
  legend(function(x, yy) return fmt('<rect x="%.1f" y="%d" width="12" height="10" fill="#c9daf2"/>', x, yy) end,
    "latency min–max")
  legend(function(x, yy) return fmt('<rect x="%.1f" y="%d" width="12" height="10" fill="#7fa6dc"/>', x, yy) end,
    "p50–p95")
  legend(function(x, yy) return fmt('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#1f4f9a" stroke-width="1.5"/>',
    x, x + 12, yy + 5, yy + 5) end, "p50")
  legend(function(x, yy) return fmt('<rect x="%.1f" y="%d" width="2" height="10" fill="#b00"/>', x + 5, yy) end,
    "failed samples")
  legend(function(x, yy) return fmt('<rect x="%.1f" y="%d" width="12" height="10" fill="#e04040" '
    .. 'fill-opacity="0.4"/>', x, yy) end, "outage")
  legend(function(x, yy) return fmt('<rect x="%.1f" y="%d" width="12" height="10" fill="url(#unc)"/>', x, yy) end,
    "± uncertainty")
  for _, a in ipairs { "stop", "signal", "start" } do
    legend(function(x, yy) return fmt('<path d="M%.1f %d l6 10 l-12 0 z" fill="%s"/>', x + 6, yy, ACTION[a][1]) end,
      "service " .. ACTION[a][2])
  end
  legend(function(x, yy) return fmt('<rect x="%.1f" y="%d" width="1.5" height="10" fill="#888"/>', x + 5, yy) end,
    "node command")
  ansible_report.legend(doc, legend, function() lx, y = left, y + 16 end)
  add('<g class="legend">' .. table.concat(bg) .. "</g>")
  bg = {}
  y = y + 30

  -- run-time axis (top)
  local step = tick_step(dur)
  local ticks = {}
  for i = 0, math.floor(dur / step + 1e-9) do ticks[#ticks + 1] = i * step end
  local axis_top = y
  for _, t in ipairs(ticks) do
    add(fmt('<text x="%.1f" y="%d" class="sub axis-run" text-anchor="middle">%s</text>', X(t), y,
      runtime_label(t, step)))
  end
  add(fmt('<text x="6" y="%d" class="sub">run time (from the start)</text>', y))
  y = y + 8

  -- stages
  local function row_label(text, yy, sub)
    add(fmt('<text x="6" y="%d" class="%s">%s<title>%s</title></text>', yy, sub and "sub" or "row",
      h(fit(text, (left - 10) * (sub and 1.15 or 0.95)) or ""), h(text)))
  end
  row_label("stages", y + 13)
  -- the steady-state waits before the first stage and after the last
  for _, phase in ipairs { "start", "end" } do
    local ss = doc.steady_state and doc.steady_state[phase]
    if type(ss) == "table" and num(ss.start) and num(ss["end"]) and ss["end"] > ss.start then
      local x0, x1 = X(ss.start), X(ss["end"])
      add(fmt('<rect class="steady" x="%.1f" y="%d" width="%.1f" height="18" fill="#eeeeee"><title>steady state '
        .. "(%s): %s, %.3f s</title></rect>", x0, y, math.max(1, x1 - x0), phase, h(ss.result), ss["end"] - ss.start))
      local label = fit("steady state", x1 - x0)
      if label then add(fmt('<text x="%.1f" y="%d" class="lbl" fill="#666">%s</text>', x0 + 3, y + 13, h(label))) end
    end
  end
  for i, sr in ipairs(doc.stages or {}) do
    if num(sr.start) then
      local x0, x1 = X(sr.start), X(num(sr["end"]) or dur)
      add(fmt('<rect class="stage" x="%.1f" y="%d" width="%.1f" height="18" fill="%s"><title>stage %s: %s '
        .. '(%.3f s)</title></rect>', x0, y, math.max(1, x1 - x0), STAGE_COLORS[(i - 1) % #STAGE_COLORS + 1],
        h(sr.name), h(sr.result), num(sr.duration) or 0))
      local label = fit(sr.name, x1 - x0)
      if label then add(fmt('<text x="%.1f" y="%d" class="lbl">%s</text>', x0 + 3, y + 13, h(label))) end
    end
  end
  y = y + 22

  -- steps, one row per depth
  local maxdepth = -1
  for _, st in ipairs(doc.steps or {}) do
    if num(st.start) and st.depth > maxdepth then maxdepth = st.depth end
  end
  for d = 0, maxdepth do
    row_label(d == 0 and "steps" or fmt("steps, level %d", d + 1), y + 13)
    for _, st in ipairs(doc.steps) do
      if num(st.start) and st.depth == d then
        local x0, x1 = X(st.start), X(num(st["end"]) or dur)
        add(fmt('<g class="step"><rect x="%.1f" y="%d" width="%.1f" height="18" fill="%s" stroke="#555" '
          .. 'stroke-width="0.5"/><title>%s\n%s, %.3f s (%.3f → %.3f)%s</title>',
          x0, y, math.max(1, x1 - x0), RESULT_COLORS[st.result] or "#ccc", h(st.path), h(st.result),
          num(st.duration) or 0, st.start, num(st["end"]) or dur, st.error and ("\n" .. h(st.error)) or ""))
        local label = fit(st.name, x1 - x0)
        if label then add(fmt('<text x="%.1f" y="%d" class="lbl">%s</text>', x0 + 2, y + 13, h(label))) end
        add("</g>")
      end
    end
    y = y + 22
  end

  -- a lane per ctx:ansible playbook run: its tasks, and a row per host (upgrun.report.ansible)
  y = ansible_report.svg_lanes(doc, { add = add, X = X, y = y, left = left, width = PW, h = h, fit = fit,
                                      row_label = row_label })

  -- node lanes: service actions and commands, per node
  local node_order, by_node = {}, {}
  for _, e in ipairs(doc.timeline or {}) do
    if e.kind == "node" and type(e.node) == "string" and num(e.t) and e.type ~= "connect" then
      if not by_node[e.node] then by_node[e.node] = {}; node_order[#node_order + 1] = e.node end
      local l = by_node[e.node]
      l[#l + 1] = e
    end
  end
  table.sort(node_order)
  for _, node in ipairs(node_order) do
    y = y + 2
    row_label("node " .. node, y + 14)
    add(fmt('<rect x="%d" y="%d" width="%d" height="20" fill="#f7f7f7" stroke="#ddd"/>', left, y, PW))
    -- commands first (behind), then service actions
    for pass = 1, 2 do
      for _, e in ipairs(by_node[node]) do
        local action = e.type == "service" and ACTION[e.action]
        local what = e.type == "service" and fmt("%s %s%s", tostring(e.action), tostring(e.service),
            e.signal and (" (SIG" .. tostring(e.signal):gsub("^SIG", "") .. ")") or "")
          or tostring(e.command or e.path or e.type)
        local tip = fmt("%s: %s\nat %.3f s%s, %s%s%s", node, what, e.t,
          num(e.t_end) and fmt(" → %.3f s", e.t_end) or "", e.ok and "ok" or "failed",
          e.step and ("\nstep " .. e.step) or "", e.error and ("\n" .. tostring(e.error)) or "")
        if pass == 1 and not action then
          add(fmt('<rect class="node-cmd" x="%.1f" y="%d" width="1.5" height="12" fill="#888"><title>%s</title>'
            .. "</rect>", X(e.t), y + 4, h(tip)))
        elseif pass == 2 and action then
          local x = X(e.t)
          if num(e.t_end) and X(e.t_end) - x > 1 then
            add(fmt('<rect x="%.1f" y="%d" width="%.1f" height="4" fill="%s" fill-opacity="0.5"/>', x, y + 14,
              X(e.t_end) - x, action[1]))
          end
          add(fmt('<path class="svc-marker svc-%s" d="M%.1f %d l6 11 l-12 0 z" fill="%s" stroke="#fff" '
            .. 'stroke-width="0.5"><title>%s</title></path>', h(e.action), x, y + 2, action[1], h(tip)))
        end
      end
    end
    y = y + 22
  end

  -- probe lanes
  local ph = 84
  local function during_tasks(t0, t1)
    local tasks = ansible_report.during(doc, t0, t1)
    return tasks and ("\nansible tasks: " .. tasks) or ""
  end
  for _, pr in ipairs(doc.probes or {}) do
    y = y + 6
    row_label(pr.name, y + 14)
    row_label(fmt("%.3f s down, %d outage%s", num(pr.downtime) or 0, #(pr.outages or {}),
      #(pr.outages or {}) == 1 and "" or "s"), y + 28, true)
    row_label(fmt("%s%s", pr.service or "", pr.kind and (" · " .. pr.kind) or ""), y + 41, true)
    add(fmt('<rect class="lane" x="%d" y="%d" width="%d" height="%d" fill="#fcfcfc" stroke="#ccc"/>', left, y, PW,
      ph))
    -- outages: the certain part solid, the uncertainty hatched on each side
    for _, o in ipairs(pr.outages or {}) do
      local s0, e0 = o.start, o["end"]
      local su = num(o.start_uncertainty) or 0
      local eu = num(o.end_uncertainty) or 0
      add(fmt('<g class="outage"><rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#e04040" '
        .. 'fill-opacity="0.4"/><title>outage of %s: %.3f s ± %.3f\n%.3f → %.3f s (start ± %.3f, end ± %.3f)\n'
        .. "first error: %s\nduring %s%s</title></g>", X(s0), y, math.max(1.5, X(e0) - X(s0)), ph, h(pr.name),
        o.duration, num(o.uncertainty) or 0, s0, e0, su, eu, h(o.first_error or "?"),
        h(table.concat(o.steps or {}, ", ")), h(during_tasks(s0, e0))))
      if su > 0 then
        add(fmt('<rect class="outage-unc" x="%.1f" y="%d" width="%.1f" height="%d" fill="url(#unc)">'
          .. "<title>start uncertain by %.3f s</title></rect>", X(s0 - su), y, math.max(1, X(s0) - X(s0 - su)),
          ph, su))
      end
      if eu > 0 then
        add(fmt('<rect class="outage-unc" x="%.1f" y="%d" width="%.1f" height="%d" fill="url(#unc)">'
          .. "<title>end uncertain by %.3f s</title></rect>", X(e0), y, math.max(1, X(e0 + eu) - X(e0)), ph, eu))
      end
    end
    -- latency bands from the chart buckets
    local cols = pr.series and pr.series.columns or {}
    local lo, hi = math.huge, 0
    for _, c in ipairs(cols) do
      local mn, mx = num(c[5]), num(c[8])
      if mn and mx then
        if mn < lo then lo = mn end
        if mx > hi then hi = mx end
      end
    end
    if hi > 0 then
      lo = math.max(lo, 1e-5)
      hi = math.max(hi, lo * 10)
      local llo, lhi = math.log(lo), math.log(hi)
      local function Y(v) return y + ph - 3 - (ph - 6) * (math.log(math.max(v, lo)) - llo) / (lhi - llo) end
      -- runs of consecutive buckets with latencies become one polygon per band
      local runs, cur, prev_t1 = {}, nil, nil
      for _, c in ipairs(cols) do
        if num(c[5]) then
          if not cur or math.abs(c[1] - prev_t1) > 1e-9 then cur = {}; runs[#runs + 1] = cur end
          cur[#cur + 1] = c
          prev_t1 = c[2]
        else
          cur = nil
        end
      end
      local function band(run_cols, lo_i, hi_i, class, fill)
        local top, bot = {}, {}
        for _, c in ipairs(run_cols) do
          top[#top + 1] = fmt("%.1f,%.1f %.1f,%.1f", X(c[1]), Y(c[hi_i]), X(c[2]), Y(c[hi_i]))
          table.insert(bot, 1, fmt("%.1f,%.1f %.1f,%.1f", X(c[2]), Y(c[lo_i]), X(c[1]), Y(c[lo_i])))
        end
        add(fmt('<polygon class="%s" fill="%s" points="%s %s"/>', class, fill, table.concat(top, " "),
          table.concat(bot, " ")))
      end
      for _, r in ipairs(runs) do band(r, 5, 8, "band band-minmax", "#c9daf2") end
      for _, r in ipairs(runs) do band(r, 6, 7, "band band-p50p95", "#7fa6dc") end
      for _, r in ipairs(runs) do
        local pts = {}
        for _, c in ipairs(r) do pts[#pts + 1] = fmt("%.1f,%.1f %.1f,%.1f", X(c[1]), Y(c[6]), X(c[2]), Y(c[6])) end
        add(fmt('<polyline class="line-p50" fill="none" stroke="#1f4f9a" stroke-width="1.2" points="%s"/>',
          table.concat(pts, " ")))
        -- a lone bucket narrower than 3 px (a slow probe): a dot, with its numbers on hover
        local c = r[1]
        if #r == 1 and X(c[2]) - X(c[1]) < 3 then
          add(fmt('<circle class="dot-p50" cx="%.1f" cy="%.1f" r="2.5" fill="#1f4f9a"><title>%.3f–%.3f s: p50 %s, '
            .. "max %s</title></circle>", (X(c[1]) + X(c[2])) / 2, Y(c[6]), c[1], c[2], ms(c[6]), ms(c[8])))
        end
      end
      -- y scale on the right: max and min, and a middle gridline
      local mid = math.sqrt(lo * hi)
      for _, v in ipairs { hi, mid, lo } do
        add(fmt('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#000" stroke-opacity="0.07"/>', left, left + PW,
          Y(v), Y(v)))
        add(fmt('<text x="%d" y="%.1f" class="sub yscale">%s</text>', left + PW + 4, Y(v) + 3, ms(v)))
      end
    else
      add(fmt('<text x="%d" y="%d" class="sub">%s</text>', left + 6, y + ph / 2,
        pr.series and "no ok sample" or "no latency series in this report (written before schema_version 1)"))
    end
    -- failed samples: a red tick per bucket, its height the failed share
    for _, c in ipairs(cols) do
      local bad, ok = num(c[4]) or 0, num(c[3]) or 0
      if bad > 0 then
        local frac = bad / (bad + ok)
        add(fmt('<rect class="bad" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#b00"><title>%.3f–%.3f s: '
          .. "%d failed, %d ok</title></rect>", X(c[1]), y + ph - 2 - 14 * frac, math.max(1, X(c[2]) - X(c[1])),
          14 * frac + 2, c[1], c[2], bad, ok))
      end
    end
    y = y + ph + 4
  end
  -- a lane per resource watch (upgrun.report.watch)
  y = require("upgrun.report.watch").svg_lanes(doc, add, X, y, left, PW, h)

  -- the union of outages shaded lightly across every lane; tick gridlines
  for _, w in ipairs(doc.overall and doc.overall.windows or {}) do
    bg[#bg + 1] = fmt('<rect class="window" x="%.1f" y="%d" width="%.1f" height="%d" fill="#e04040" '
      .. 'fill-opacity="0.07"/>', X(w.start), axis_top + 4, math.max(1, X(w["end"]) - X(w.start)), y - axis_top - 4)
  end
  for _, t in ipairs(ticks) do
    bg[#bg + 1] = fmt('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#000" stroke-opacity="0.08"/>', X(t), X(t),
      axis_top + 4, y)
  end
  -- wall-clock axis (bottom)
  y = y + 14
  local t0 = num(run.t0_wall)
  if t0 then
    for _, t in ipairs(ticks) do
      add(fmt('<text x="%.1f" y="%d" class="sub axis-wall" text-anchor="middle">%s</text>', X(t), y,
        wall_label(t0 + t, step)))
    end
    add(fmt('<text x="6" y="%d" class="sub">wall clock, UTC %s</text>', y, os.date("!%Y-%m-%d", math.floor(t0))))
  end
  local H = y + 8
  return table.concat({
    fmt('<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">',
      W, H, W, H),
    '<defs><pattern id="unc" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
      .. '<rect width="6" height="6" fill="#e04040" fill-opacity="0.12"/>'
      .. '<line x1="0" y1="0" x2="0" y2="6" stroke="#e04040" stroke-width="2" stroke-opacity="0.5"/></pattern></defs>',
    '<rect width="100%" height="100%" fill="#fff"/>',
    table.concat(bg, "\n"), table.concat(out, "\n"), "</svg>" }, "\n")
end

return M
