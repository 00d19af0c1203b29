-- upgrun.compare — `upgrun compare RUN_A RUN_B [...]`: prints the downtime of
-- two (or more) runs side by side — per API (probe) with its uncertainty,
-- over all APIs, the DB migration time, and per step — so a manual and a
-- rolling upgrade (or two releases) can be compared run against run. A run
-- is an output directory or its report.json. `--html FILE` also writes the
-- comparison as a page with each run's timeline (upgrun.report.compare_html).
local cjson = require "cjson"

local M = {}

local function read_report(path)
  local file = path
  local f = io.open(file .. "/report.json")
  if f then file = file .. "/report.json" else f = io.open(file) end
  if not f then return nil, "cannot read " .. path .. " (an output directory or its report.json)" end
  local text = f:read("a")
  f:close()
  local ok, doc = pcall(cjson.decode, text)
  if not ok or type(doc) ~= "table" or doc.format ~= "upgrun-report/1" then
    return nil, file .. ": not an upgrun report (" .. tostring(ok and "format" or doc) .. ")"
  end
  return doc
end
M.read_report = read_report

local function label(doc)
  local p = doc.params or {}
  return p.strategy and (doc.scenario.name .. " " .. p.strategy) or doc.scenario.name
end

-- Returns the comparison as lines of text.
function M.render(docs)
  local out = {}
  local function p(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  local W = 30
  for i, d in ipairs(docs) do W = math.max(W, #(string.char(64 + i) .. ": " .. label(d)) + 2) end
  local head = string.format("%-34s", "")
  for i, d in ipairs(docs) do
    head = head .. string.format("%-" .. W .. "s", string.char(64 + i) .. ": " .. label(d))
  end
  p("%s", head)
  local function row(name, cell)
    local line = string.format("%-34s", name)
    for _, d in ipairs(docs) do line = line .. string.format("%-" .. W .. "s", cell(d) or "-") end
    p("%s", line)
  end
  row("verdict", function(d)
    return string.format("%s (exit %d)", d.verdict, math.tointeger(d.exit_code) or -1)
  end)
  row("run duration", function(d) return string.format("%.1f s", d.run.duration or 0) end)
  local hp = {}
  for _, d in ipairs(docs) do for k in pairs(d.hook_points or {}) do hp[k] = true end end
  for k in pairs(hp) do
    row("hook point " .. k, function(d)
      local h = (d.hook_points or {})[k]
      return h and string.format("%.3f s", h.duration)
    end)
  end
  p("")
  p("downtime per API (s ± sampling uncertainty; outages; longest)")
  local names, seen = {}, {}
  for _, d in ipairs(docs) do
    for _, pr in ipairs(d.probes or {}) do
      if not seen[pr.name] then seen[pr.name] = true; names[#names + 1] = pr.name end
    end
  end
  for _, name in ipairs(names) do
    row("  " .. name, function(d)
      for _, pr in ipairs(d.probes or {}) do
        if pr.name == name then
          return string.format("%.3f ± %.3f (%d; %.3f)", pr.downtime, pr.downtime_uncertainty, #pr.outages,
                               pr.longest_outage)
        end
      end
    end)
  end
  row("  (any API)", function(d) return d.overall and string.format("%.3f", d.overall.downtime) end)
  for i, d in ipairs(docs) do
    p("")
    p("%s: downtime per step (s)", string.char(64 + i) .. ": " .. label(d))
    if #(d.downtime_per_step or {}) == 0 then p("  (no outage in any step)") end
    for _, r in ipairs(d.downtime_per_step or {}) do
      local cells = {}
      for _, name in ipairs(names) do
        local v = r.probes[name]
        if v and v > 0 then cells[#cells + 1] = string.format("%s %.3f", name, v) end
      end
      if #cells > 0 then
        -- a step name longer than the column gets a line of its own
        if #r.step > 40 then p("  %s", r.step); p("  %-40s %s", "", table.concat(cells, ", "))
        else p("  %-40s %s", r.step, table.concat(cells, ", ")) end
      end
    end
  end
  return out
end

local USAGE = "usage: upgrun compare RUN_A RUN_B [RUN_C ...] [--html FILE]   (output directories or report.json)\n"

function M.main(...)
  local args, paths, html_file = { ... }, {}, nil
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--html" then
      html_file = args[i + 1]
      if not html_file then io.stderr:write("upgrun compare: --html needs a file\n", USAGE); return 2 end
      i = i + 1
    elseif a:match("^%-%-html=") then
      html_file = a:sub(8)
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      io.stderr:write("upgrun compare: unknown option ", a, "\n", USAGE)
      return 2
    else
      paths[#paths + 1] = a
    end
    i = i + 1
  end
  if #paths < 2 then
    io.stderr:write(USAGE)
    return 2
  end
  local docs = {}
  for j, path in ipairs(paths) do
    local doc, err = read_report(path)
    if not doc then io.stderr:write("upgrun compare: ", err, "\n"); return 2 end
    docs[j] = doc
  end
  io.stdout:write(table.concat(M.render(docs), "\n"), "\n")
  if html_file then
    local labels = {}
    for j, d in ipairs(docs) do labels[j] = string.char(64 + j) .. ": " .. label(d) end
    local ok, err = require("upgrun.fs").write_file(html_file, require("upgrun.report.compare_html").render(docs,
      labels))
    if not ok then io.stderr:write("upgrun compare: ", html_file, ": ", tostring(err), "\n"); return 1 end
    io.stdout:write("compare: ", html_file, "\n")
  end
  return 0
end

return M
