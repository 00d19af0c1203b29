-- upgrun.merge.render — the merged results of N runs ("cells", see
-- upgrun.merge) as Markdown (summary.md), an HTML index (index.html, links to
-- each cell's report.html, no external assets) and data (merged.json):
-- a table of cells (verdict, exit code, duration, DB migration, checks,
-- budgets), downtime per API per cell side by side (rows: APIs, columns:
-- cells, like `upgrun compare`), downtime per step per cell, failed budgets
-- and checks by cell.
local json = require "upgrun.report.json"

local M = {}

local function n(v) return tonumber(v) or 0 end

-- The facts of one cell, from report.json's documented fields.
function M.facts(c)
  local d = c.doc
  local f = { id = c.id, verdict = c.verdict, exit_code = c.exit_code, reason = c.reason, link = c.link,
              set = c.set or {}, probes = {}, failed_budgets = {}, failed_checks = {} }
  if not d then return f end
  f.scenario = d.scenario and d.scenario.name
  f.duration = d.run and d.run.duration
  local hp = (d.hook_points or {}).db_migration
  f.db_migration = hp and hp.duration
  f.checks = { passed = 0, failed = 0, skipped = 0 }
  for _, ch in ipairs(d.checks or {}) do
    local r = ch.result or (ch.ok and "passed" or "failed")
    f.checks[r] = (f.checks[r] or 0) + 1
    if r == "failed" then
      f.failed_checks[#f.failed_checks + 1] = ch.name .. (ch.detail and (": " .. ch.detail) or "")
    end
  end
  f.budgets = { pass = 0, fail = 0, skipped = 0 }
  for _, b in ipairs(d.budgets or {}) do
    f.budgets[b.status] = (f.budgets[b.status] or 0) + 1
    if b.status == "fail" then
      f.failed_budgets[#f.failed_budgets + 1] = string.format("%s %s: %s", tostring(b.probe), tostring(b.key),
                                                              tostring(b.message))
    end
  end
  for _, p in ipairs(d.probes or {}) do
    f.probes[p.name] = { downtime = n(p.downtime), uncertainty = n(p.downtime_uncertainty),
                         outages = #(p.outages or {}), longest = n(p.longest_outage) }
  end
  f.overall_downtime = d.overall and d.overall.downtime
  -- per step: the API out longest during it (what rounds to 0.000 s is left out)
  f.steps = {}
  for _, r in ipairs(d.downtime_per_step or {}) do
    local worst, api = 0, nil
    for name, v in pairs(r.probes or {}) do
      if n(v) > worst or (n(v) == worst and api and name < api) then worst, api = n(v), name end
    end
    if api and worst >= 0.0005 then f.steps[#f.steps + 1] = { step = r.step, downtime = worst, api = api } end
  end
  return f
end

-- Rows of the per-step table: step names in first-seen order; cell -> text.
local function step_rows(facts)
  local rows, index = {}, {}
  for _, f in ipairs(facts) do
    for _, s in ipairs(f.steps or {}) do
      if not index[s.step] then index[s.step] = #rows + 1; rows[#rows + 1] = { step = s.step, by = {} } end
      rows[index[s.step]].by[f.id] = string.format("%.3f (%s)", s.downtime, s.api)
    end
  end
  return rows
end

local function api_names(facts)
  local names, seen = {}, {}
  for _, f in ipairs(facts) do
    local these = {}
    for name in pairs(f.probes) do these[#these + 1] = name end
    table.sort(these)
    for _, name in ipairs(these) do
      if not seen[name] then seen[name] = true; names[#names + 1] = name end
    end
  end
  return names
end

local function all_facts(cells)
  local out = {}
  for i, c in ipairs(cells) do out[i] = M.facts(c) end
  return out
end

local function secs(v, fmt) return v and string.format(fmt or "%.1f s", v) or "-" end
local function downtime(p) return p and string.format("%.3f ± %.3f (%d; %.3f)", p.downtime, p.uncertainty, p.outages,
                                                        p.longest) or "-" end

local OVERALL = { [0] = "PASSED", [1] = "FAILED", [2] = "ERROR", [3] = "ABORTED" }

local function counts(facts)
  local c = {}
  for _, f in ipairs(facts) do c[f.verdict] = (c[f.verdict] or 0) + 1 end
  local keys = {}
  for k in pairs(c) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = c[k] .. " " .. k end
  return table.concat(parts, ", ")
end

-- The parameters every cell (with parameters) has with the same value.
local function common_params(facts)
  local common, first = nil, true
  for _, f in ipairs(facts) do
    if next(f.set) ~= nil then
      if first then
        common, first = {}, false
        for k, v in pairs(f.set) do common[k] = tostring(v) end
      else
        for k, v in pairs(common) do if tostring(f.set[k]) ~= v then common[k] = nil end end
      end
    end
  end
  if facts[2] == nil then return {} end -- one cell: show its parameters in its row
  return common or {}
end

local function set_text(set, skip)
  local keys = {}
  for k in pairs(set) do if not (skip and skip[k]) then keys[#keys + 1] = k end end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(set[k]) end
  return table.concat(parts, " ")
end

-- ------------------------------------------------------------- Markdown

local function md(s) return (tostring(s):gsub("[|\\`*_<>%[%]]", "\\%0"):gsub("\n", " ")) end

function M.markdown(cells, warnings, code)
  local facts = all_facts(cells)
  local o = {}
  local function p(s) o[#o + 1] = s end
  p(string.format("## upgrun: %s (exit %d) — %d cell(s): %s", OVERALL[code] or "?", code, #facts, counts(facts)))
  p("")
  local common = common_params(facts)
  if next(common) ~= nil then p("Parameters of every cell: " .. md(set_text(common))); p("") end
  p("| cell | verdict | exit | duration | DB migration | checks (pass/fail/skip) | budgets (pass/fail) | parameters |")
  p("|---|---|---|---|---|---|---|---|")
  for _, f in ipairs(facts) do
    local checks = f.checks and string.format("%d/%d/%d", f.checks.passed, f.checks.failed, f.checks.skipped) or "-"
    local budgets = f.budgets and string.format("%d/%d", f.budgets.pass, f.budgets.fail) or "-"
    local name = f.link and string.format("[%s](%s)", md(f.id), f.link) or md(f.id)
    p(string.format("| %s | %s | %s | %s | %s | %s | %s | %s |", name, md(f.verdict),
                    f.exit_code and tostring(f.exit_code) or "-", secs(f.duration), secs(f.db_migration, "%.3f s"),
                    checks, budgets, md(set_text(f.set, common))))
  end
  local names = api_names(facts)
  if #names > 0 then
    p("")
    p("### Downtime per API (s ± sampling uncertainty (outages; longest))")
    p("")
    local head, sep = { "| API" }, { "|---" }
    for _, f in ipairs(facts) do head[#head + 1] = md(f.id); sep[#sep + 1] = "---" end
    p(table.concat(head, " | ") .. " |")
    p(table.concat(sep, "|") .. "|")
    for _, name in ipairs(names) do
      local row = { "| " .. md(name) }
      for _, f in ipairs(facts) do row[#row + 1] = downtime(f.probes[name]) end
      p(table.concat(row, " | ") .. " |")
    end
    local row = { "| (any API)" }
    for _, f in ipairs(facts) do row[#row + 1] = secs(f.overall_downtime, "%.3f") end
    p(table.concat(row, " | ") .. " |")
  end
  local rows = step_rows(facts)
  if #rows > 0 then
    p("")
    p("### Downtime per step (s, the API out longest during the step)")
    p("")
    local head, sep = { "| step" }, { "|---" }
    for _, f in ipairs(facts) do head[#head + 1] = md(f.id); sep[#sep + 1] = "---" end
    p(table.concat(head, " | ") .. " |")
    p(table.concat(sep, "|") .. "|")
    for _, r in ipairs(rows) do
      local row = { "| " .. md(r.step) }
      for _, f in ipairs(facts) do row[#row + 1] = md(r.by[f.id] or "-") end
      p(table.concat(row, " | ") .. " |")
    end
  end
  local problems = {}
  for _, f in ipairs(facts) do
    if f.reason and f.verdict ~= "passed" then problems[#problems + 1] = string.format("- **%s**: %s", md(f.id),
                                                                                        md(f.reason)) end
    for _, b in ipairs(f.failed_budgets) do problems[#problems + 1] = string.format("- **%s**: budget %s", md(f.id),
                                                                                    md(b)) end
    for _, ch in ipairs(f.failed_checks) do problems[#problems + 1] = string.format("- **%s**: check %s", md(f.id),
                                                                                    md(ch)) end
  end
  if #problems > 0 then
    p("")
    p("### What did not pass")
    p("")
    for _, l in ipairs(problems) do p(l) end
  end
  if #warnings > 0 then
    p("")
    p("### Inputs skipped (not counted)")
    p("")
    for _, w in ipairs(warnings) do p("- " .. md(w)) end
  end
  return table.concat(o, "\n") .. "\n"
end

-- ----------------------------------------------------------------- HTML

local function h(s)
  return (tostring(s == nil and "" or s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                                           ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local CSS = [[
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.passed{background:#e6f4e6}.failed{background:#fbe3e3}
.error,.missing,.aborted{background:#fde9cc}.num{text-align:right;font-variant-numeric:tabular-nums}
]]

function M.html(cells, warnings, code)
  local facts = all_facts(cells)
  local o = {}
  local function p(s) o[#o + 1] = s end
  p("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>upgrun merged results</title><style>" .. CSS
    .. "</style></head><body>")
  p(string.format("<h1>upgrun: %s (exit %d)</h1><p>%d cell(s): %s</p>", OVERALL[code] or "?", code, #facts,
                  h(counts(facts))))
  local common = common_params(facts)
  if next(common) ~= nil then p("<p>Parameters of every cell: " .. h(set_text(common)) .. "</p>") end
  p("<table><tr><th>cell</th><th>verdict</th><th>exit</th><th>duration</th><th>DB migration</th>"
    .. "<th>checks pass/fail/skip</th><th>budgets pass/fail</th><th>parameters</th><th>note</th></tr>")
  for _, f in ipairs(facts) do
    local name = f.link and string.format("<a href=\"%s\">%s</a>", h(f.link), h(f.id)) or h(f.id)
    p(string.format("<tr class=\"%s\"><td>%s</td><td>%s</td><td class=\"num\">%s</td><td class=\"num\">%s</td>"
                    .. "<td class=\"num\">%s</td><td class=\"num\">%s</td><td class=\"num\">%s</td><td>%s</td>"
                    .. "<td>%s</td></tr>",
                    h(f.verdict:gsub(" ", "_")), name, h(f.verdict), f.exit_code and f.exit_code or "-",
                    secs(f.duration), secs(f.db_migration, "%.3f s"),
                    f.checks and string.format("%d/%d/%d", f.checks.passed, f.checks.failed, f.checks.skipped) or "-",
                    f.budgets and string.format("%d/%d", f.budgets.pass, f.budgets.fail) or "-",
                    h(set_text(f.set, common)), h(f.verdict ~= "passed" and f.reason or "")))
  end
  p("</table>")
  local names = api_names(facts)
  if #names > 0 then
    p("<h2>Downtime per API</h2><p>seconds ± sampling uncertainty (outages; longest outage)</p><table><tr><th>API</th>")
    for _, f in ipairs(facts) do p("<th>" .. h(f.id) .. "</th>") end
    p("</tr>")
    for _, name in ipairs(names) do
      p("<tr><td>" .. h(name) .. "</td>")
      for _, f in ipairs(facts) do p("<td class=\"num\">" .. h(downtime(f.probes[name])) .. "</td>") end
      p("</tr>")
    end
    p("<tr><td>(any API)</td>")
    for _, f in ipairs(facts) do p("<td class=\"num\">" .. secs(f.overall_downtime, "%.3f") .. "</td>") end
    p("</tr></table>")
  end
  local rows = step_rows(facts)
  if #rows > 0 then
    p("<h2>Downtime per step</h2><p>seconds, the API out longest during the step</p><table><tr><th>step</th>")
    for _, f in ipairs(facts) do p("<th>" .. h(f.id) .. "</th>") end
    p("</tr>")
    for _, r in ipairs(rows) do
      p("<tr><td>" .. h(r.step) .. "</td>")
      for _, f in ipairs(facts) do p("<td class=\"num\">" .. h(r.by[f.id] or "-") .. "</td>") end
      p("</tr>")
    end
    p("</table>")
  end
  local any = false
  for _, f in ipairs(facts) do
    if #f.failed_budgets + #f.failed_checks > 0 then
      if not any then p("<h2>Failed budgets and checks</h2><ul>"); any = true end
      for _, b in ipairs(f.failed_budgets) do p("<li>" .. h(f.id) .. ": budget " .. h(b) .. "</li>") end
      for _, ch in ipairs(f.failed_checks) do p("<li>" .. h(f.id) .. ": check " .. h(ch) .. "</li>") end
    end
  end
  if any then p("</ul>") end
  if #warnings > 0 then
    p("<h2>Inputs skipped (not counted)</h2><ul>")
    for _, w in ipairs(warnings) do p("<li>" .. h(w) .. "</li>") end
    p("</ul>")
  end
  p("</body></html>")
  return table.concat(o, "\n") .. "\n"
end

-- ----------------------------------------------------------------- data

function M.data(cells, warnings, code)
  local facts = all_facts(cells)
  for _, f in ipairs(facts) do
    f.steps = json.array(f.steps)
    f.failed_budgets = json.array(f.failed_budgets)
    f.failed_checks = json.array(f.failed_checks)
  end
  return { format = "upgrun-merged/1", exit_code = code, cells = json.array(facts),
           apis = json.array(api_names(facts)), skipped_inputs = json.array(warnings) }
end

return M
