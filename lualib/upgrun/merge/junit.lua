-- upgrun.merge.junit — the junit.xml of a merge: one <testsuite> per cell
-- (named by the cell id), with a testcase per step, check, hook run and
-- probe and budget item of its report.json (classname "<cell>.<stage>",
-- "<cell>.check.<stage>", "<cell>.hook.<point>", "<cell>.probes",
-- "<cell>.budget.<probe>", each segment without dots: upgrun.report.junit's
-- mapping for Jenkins; probe testcases and budget messages list the outages
-- as in a run's junit.xml). failed -> <failure>, interrupted
-- -> <error>, skipped -> <skipped>. A cell without a report (its run did not
-- finish, before_each failed, not run, missing from every shard) is one
-- testcase "run" with an <error> (not run after --fail-fast: <skipped>), so
-- it is never counted as passed.
local report_junit = require "upgrun.report.junit"
local cls = report_junit.classname

local M = {}

local function x(s)
  s = tostring(s == nil and "" or s)
  s = s:gsub("[%z\1-\8\11\12\14-\31]", "?")
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }))
end

local function testcase(c)
  local head = string.format('    <testcase classname="%s" name="%s" time="%.3f"', x(c.classname), x(c.name),
                             tonumber(c.time) or 0)
  local inner = {}
  if c.status == "failure" or c.status == "error" then
    inner[1] = string.format('      <%s message="%s" type="%s">%s</%s>', c.status, x(c.message), c.status,
                             x(c.body or c.message), c.status)
  elseif c.status == "skipped" then
    inner[1] = string.format('      <skipped message="%s"/>', x(c.message))
  end
  if c.out and c.out ~= "" then inner[#inner + 1] = "      <system-out>" .. x(c.out) .. "</system-out>" end
  if #inner == 0 then return head .. "/>" end
  return head .. ">\n" .. table.concat(inner, "\n") .. "\n    </testcase>"
end

-- The testcases of one cell.
function M.cases(cell)
  local id, d, cases = cell.id, cell.doc, {}
  if not d then
    local status = cell.verdict == "not run" and "skipped" or "error"
    cases[1] = { classname = cls(id), name = "run", status = status,
                 message = string.format("%s%s", cell.verdict,
                                         cell.reason and (": " .. cell.reason) or "") }
    return cases
  end
  for _, st in ipairs(d.steps or {}) do
    local c = { classname = cls(id, st.stage), name = st.path or st.name, time = st.duration }
    if st.result == "failed" then c.status, c.message, c.body = "failure", st.error or "failed", st.traceback
    elseif st.result == "interrupted" then c.status, c.message = "error", st.error or "interrupted"
    elseif st.result == "skipped" or st.result == "planned" then c.status, c.message = "skipped",
      st.reason or st.result end
    cases[#cases + 1] = c
  end
  for _, ch in ipairs(d.checks or {}) do
    local c = { classname = cls(id, "check", ch.stage), name = ch.name }
    if ch.result == "skipped" then c.status, c.message = "skipped", ch.detail or "skipped"
    elseif ch.result == "failed" or ch.ok == false then c.status, c.message = "failure", ch.detail or "check failed" end
    cases[#cases + 1] = c
  end
  for _, hk in ipairs(d.hooks or {}) do
    local c = { classname = cls(id, "hook", hk.point),
                name = tostring(hk.name) .. " @ " .. tostring(hk.step), time = hk.duration }
    if hk.result == "failed" then c.status, c.message, c.body = "failure", hk.error, hk.traceback
    elseif hk.result == "interrupted" then c.status, c.message = "error", "interrupted" end
    cases[#cases + 1] = c
  end
  local outs_of = {}
  for _, pr in ipairs(d.probes or {}) do
    cases[#cases + 1] = report_junit.probe_case(d, id, pr)
    outs_of[pr.name] = pr.outages or {}
  end
  for _, b in ipairs(d.budgets or {}) do
    local c = { classname = cls(id, "budget", b.probe), name = b.key,
                message = report_junit.budget_message(d, b, outs_of) }
    if b.status == "fail" then c.status = "failure" elseif b.status == "skipped" then c.status = "skipped" end
    cases[#cases + 1] = c
  end
  -- a run that did not pass must not look passed even if no testcase failed
  -- (e.g. aborted between steps)
  local bad = false
  for _, c in ipairs(cases) do if c.status == "failure" or c.status == "error" then bad = true end end
  if not bad and cell.exit_code and cell.exit_code ~= 0 then
    cases[#cases + 1] = { classname = cls(id), name = "run", status = "error",
                          message = string.format("%s (exit %d)", tostring(cell.verdict), cell.exit_code) }
  end
  return cases
end

function M.render(cells)
  local parts, T, F, E, S, TT = {}, 0, 0, 0, 0, 0
  for _, cell in ipairs(cells) do
    local cases = M.cases(cell)
    local f, e, s, t = 0, 0, 0, 0
    local body = {}
    for i, c in ipairs(cases) do
      if c.status == "failure" then f = f + 1 elseif c.status == "error" then e = e + 1
      elseif c.status == "skipped" then s = s + 1 end
      t = t + (tonumber(c.time) or 0)
      body[i] = testcase(c)
    end
    local stamp = cell.doc and cell.doc.run and tostring(cell.doc.run.started or ""):gsub("%.%d+Z$", "") or ""
    parts[#parts + 1] = string.format('  <testsuite name="%s" tests="%d" failures="%d" errors="%d" skipped="%d"'
                                      .. ' time="%.3f" timestamp="%s">\n%s\n  </testsuite>\n',
                                      x(cell.id), #cases, f, e, s, t, x(stamp), table.concat(body, "\n"))
    T, F, E, S, TT = T + #cases, F + f, E + e, S + s, TT + t
  end
  return string.format('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="upgrun merged" tests="%d"'
                       .. ' failures="%d" errors="%d" skipped="%d" time="%.3f">\n%s</testsuites>\n',
                       T, F, E, S, TT, table.concat(parts))
end

return M
