-- upgrun.report.junit — junit.xml from a report document: one testsuite each
-- for steps, checks, hooks and budgets (and one for the steady-state checks
-- and unwritten outputs, when there are any); one testcase per step, check, hook
-- run and budget item. failed -> <failure>, interrupted -> <error>,
-- skipped -> <skipped>. Readable by Jenkins and GitLab.
local M = {}

local function x(s)
  s = tostring(s == nil and "" or s)
  s = s:gsub("[%z\1-\8\11\12\14-\31]", "?")
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }))
end

local function case(classname, name, time, status, message, body)
  local t = { string.format('    <testcase classname="%s" name="%s" time="%.3f"', x(classname), x(name), time or 0) }
  if status == "failure" or status == "error" then
    t[#t + 1] = string.format('>\n      <%s message="%s" type="%s">%s</%s>\n    </testcase>',
                              status, x(message), status, x(body or message), status)
  elseif status == "skipped" then
    t[#t + 1] = string.format('>\n      <skipped message="%s"/>\n    </testcase>', x(message))
  else
    t[#t + 1] = "/>"
  end
  return table.concat(t)
end

local function suite(name, cases, stamp)
  local n, f, e, s, time = #cases, 0, 0, 0, 0
  for _, c in ipairs(cases) do
    if c.status == "failure" then f = f + 1 elseif c.status == "error" then e = e + 1
    elseif c.status == "skipped" then s = s + 1 end
    time = time + (c.time or 0)
  end
  local body = {}
  for i, c in ipairs(cases) do body[i] = case(c.classname, c.name, c.time, c.status, c.message, c.body) end
  return string.format('  <testsuite name="%s" tests="%d" failures="%d" errors="%d" skipped="%d" time="%.3f"'
                       .. ' timestamp="%s">\n%s%s  </testsuite>\n',
                       x(name), n, f, e, s, time, x(stamp), table.concat(body, "\n"), n > 0 and "\n" or ""),
         n, f, e, s, time
end

function M.render(doc)
  local sc = doc.scenario.name
  local stamp = (doc.run.started or ""):gsub("%.%d+Z$", "")
  local suites = {}
  -- steps
  local cases = {}
  for _, st in ipairs(doc.steps) do
    local c = { classname = sc .. "." .. tostring(st.stage), name = st.path, time = st.duration }
    if st.result == "failed" then c.status, c.message, c.body = "failure", st.error or "failed",
      st.traceback or st.error
    elseif st.result == "interrupted" then c.status, c.message = "error", st.error or "interrupted"
    elseif st.result == "skipped" or st.result == "planned" then c.status, c.message = "skipped",
      st.reason or st.result
    elseif st.result == "passed earlier" then c.name = st.path .. " (passed earlier)" end -- --resume
    cases[#cases + 1] = c
  end
  for _, sr in ipairs(doc.stages) do
    if sr.result == "skipped" then
      cases[#cases + 1] = { classname = sc .. "." .. sr.name, name = "stage " .. sr.name, status = "skipped",
                            message = sr.reason or "skipped" }
    elseif sr.error then
      cases[#cases + 1] = { classname = sc .. "." .. sr.name, name = "stage " .. sr.name, status = "failure",
                            message = sr.error, body = sr.traceback, time = sr.duration }
    end
  end
  suites[#suites + 1] = { sc .. ".steps", cases }
  -- checks
  cases = {}
  for _, c in ipairs(doc.checks) do
    cases[#cases + 1] = { classname = sc .. "." .. tostring(c.stage) .. (c.step and ("." .. c.step) or ""),
                          name = c.name,
                          status = (c.result == "skipped" and "skipped") or ((not c.ok) and "failure" or nil),
                          message = c.detail or (c.result == "skipped" and "skipped" or "check failed") }
  end
  suites[#suites + 1] = { sc .. ".checks", cases }
  -- hooks
  cases = {}
  for _, h in ipairs(doc.hooks) do
    local c = { classname = sc .. ".hooks." .. tostring(h.point), name = h.name .. " @ " .. tostring(h.step),
      time = h.duration }
    if h.result == "failed" then c.status, c.message, c.body = "failure", h.error, h.traceback
    elseif h.result == "interrupted" then c.status, c.message = "error", "interrupted" end
    cases[#cases + 1] = c
  end
  suites[#suites + 1] = { sc .. ".hooks", cases }
  -- budgets
  cases = {}
  for _, b in ipairs(doc.budgets) do
    local c = { classname = sc .. ".budget." .. b.probe, name = b.key, message = b.message }
    if b.status == "fail" then c.status = "failure" elseif b.status == "skipped" then c.status = "skipped" end
    cases[#cases + 1] = c
  end
  suites[#suites + 1] = { sc .. ".budgets", cases }
  -- resource watches: a testcase per watched kind (upgrun.report.watch)
  if doc.watch then suites[#suites + 1] = { sc .. ".watch", require("upgrun.report.watch").junit_cases(doc, sc) } end
  -- the steady-state checks (when on), and outputs that could not be written
  cases = {}
  for _, phase in ipairs { "start", "end" } do
    local st = doc.steady_state and doc.steady_state[phase]
    if st and st.result ~= "off" then
      local c = { classname = sc .. ".steady_state", name = "steady at the " .. phase, time = st.duration }
      if st.result == "not steady" then c.status, c.message = "failure", doc.steady_state.failure or "not steady"
      elseif st.result == "aborted" then c.status, c.message = "error", "aborted" end
      cases[#cases + 1] = c
    end
  end
  for _, e in ipairs(doc.output_errors or {}) do
    cases[#cases + 1] = { classname = sc .. ".outputs", name = e:match("^[^:]+") or e, status = "failure",
                          message = e }
  end
  if #cases > 0 then suites[#suites + 1] = { sc .. ".run", cases } end

  local parts, T, F, E, S, TT = {}, 0, 0, 0, 0, 0
  for _, s in ipairs(suites) do
    local text, n, f, e, sk, t = suite(s[1], s[2], stamp)
    parts[#parts + 1] = text
    T, F, E, S, TT = T + n, F + f, E + e, S + sk, TT + t
  end
  return string.format('<?xml version="1.0" encoding="UTF-8"?>\n'
                       .. '<testsuites name="%s" tests="%d" failures="%d" errors="%d" skipped="%d" time="%.3f">\n'
                       .. '%s</testsuites>\n',
                       x("upgrun " .. sc), T, F, E, S, TT, table.concat(parts))
end

return M
