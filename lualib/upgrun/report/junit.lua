-- upgrun.report.junit — junit.xml from a report document (read by Jenkins
-- and GitLab). Suites <scenario>.steps, .checks, .hooks, .probes, .budgets
-- (and .run for the steady-state checks and unwritten outputs, when there
-- are any); failed -> <failure>, interrupted -> <error>, skipped -> <skipped>.
--
-- * A testcase per probe (suite .probes): failed when one of its budget items
--   fails; its message and <system-out> list every outage (start in run time
--   and UTC, length ± uncertainty, the steps it fell in), so an outage shows
--   even when no budget fails. Budget items name their outages too.
-- * <properties> in every suite: upgrun's version, the scenario, the run,
--   every parameter (secrets ***: declared secret, or named like one when
--   not declared; values through upgrun.redact) and every version
--   recorded (ctx:version: the releases of the services).
-- * Times are not counted twice: a step with sub-steps has as its testcase
--   time only its time outside them (its full duration is in <system-out>);
--   the steps suite's time is the union of the steps' intervals, the other
--   suites' times the sum of their testcases (probes and budgets: 0), and
--   <testsuites time> is the run's duration.
-- * A ctx:ansible step lists its playbook's tasks in <system-out>, one line
--   each: start, duration, play / task, outcome, the failed or unreachable
--   hosts with their msg and the others per outcome (upgrun.report.ansible);
--   its failure message names the failed tasks and hosts (the step's error).
-- * Classnames are dot-separated segments (scenario, stage, step path, ...);
--   Jenkins splits a classname at its last dot into package and class, so
--   each segment has its dots replaced by "_" (M.segment): stage
--   "2. change the codebase" is the class "2_ change the codebase". Testcase
--   names keep the real names.
local redact = require "upgrun.redact"
local Timeline = require "upgrun.timeline"

local M = {}

-- Valid UTF-8 (each invalid byte becomes "?").
local function valid_utf8(s)
  local out = {}
  while true do
    local n, bad = utf8.len(s)
    if n then out[#out + 1] = s; break end
    out[#out + 1] = s:sub(1, bad - 1) .. "?"
    s = s:sub(bad + 1)
  end
  return table.concat(out)
end

local function x(s)
  s = tostring(s == nil and "" or s)
  if not utf8.len(s) then s = valid_utf8(s) end
  s = s:gsub("[%z\1-\8\11\12\14-\31]", "?")
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }))
end

-- One classname segment: no dot (Jenkins splits at the last dot), never empty.
function M.segment(s)
  s = tostring(s == nil and "" or s):gsub("%.", "_")
  return s == "" and "_" or s
end

-- A classname from segments.
function M.classname(...)
  local t = {}
  for i = 1, select("#", ...) do t[i] = M.segment((select(i, ...))) end
  return table.concat(t, ".")
end
local cls = M.classname

-- Length of the union of intervals {a, b}.
local function union_length(iv)
  table.sort(iv, function(p, q) return p[1] < q[1] end)
  local total, lo, hi = 0, nil, nil
  for _, v in ipairs(iv) do
    if not lo or v[1] > hi then
      if lo then total = total + (hi - lo) end
      lo, hi = v[1], v[2]
    elseif v[2] > hi then
      hi = v[2]
    end
  end
  if lo then total = total + (hi - lo) end
  return total
end

local function case(c)
  local t = { string.format('    <testcase classname="%s" name="%s" time="%.3f"', x(c.classname), x(c.name),
                            c.time or 0) }
  local inner = {}
  if c.status == "failure" or c.status == "error" then
    inner[#inner + 1] = string.format('      <%s message="%s" type="%s">%s</%s>', c.status, x(c.message), c.status,
                                      x(c.body or c.message), c.status)
  elseif c.status == "skipped" then
    inner[#inner + 1] = string.format('      <skipped message="%s"/>', x(c.message))
  end
  if c.out and c.out ~= "" then inner[#inner + 1] = "      <system-out>" .. x(c.out) .. "</system-out>" end
  if #inner == 0 then t[#t + 1] = "/>" else t[#t + 1] = ">\n" .. table.concat(inner, "\n") .. "\n    </testcase>" end
  return table.concat(t)
end

local function suite(s, stamp, props)
  local n, f, e, sk, time = #s.cases, 0, 0, 0, 0
  for _, c in ipairs(s.cases) do
    if c.status == "failure" then f = f + 1 elseif c.status == "error" then e = e + 1
    elseif c.status == "skipped" then sk = sk + 1 end
    time = time + (c.time or 0)
  end
  if s.time then time = s.time end
  local body = {}
  for i, c in ipairs(s.cases) do body[i] = case(c) end
  return string.format('  <testsuite name="%s" tests="%d" failures="%d" errors="%d" skipped="%d" time="%.3f"'
                       .. ' timestamp="%s">\n%s%s%s  </testsuite>\n',
                       x(s.name), n, f, e, sk, time, x(stamp), props, table.concat(body, "\n"), n > 0 and "\n" or ""),
         n, f, e, sk
end

-- ------------------------------------------------------------- properties

local function value_text(v)
  if type(v) == "table" then
    local t = {}
    for i, y in ipairs(v) do t[i] = tostring(y) end
    return table.concat(t, ",")
  end
  return tostring(v)
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t or {}) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

-- The <properties> block (the same in every suite).
function M.properties(doc)
  local props = {}
  local function add(name, v)
    if v ~= nil and v ~= "" then props[#props + 1] = { name, value_text(v) } end
  end
  local versions = doc.versions or {}
  add("upgrun.version", versions.upgrun)
  add("scenario", doc.scenario.name)
  add("scenario.file", doc.scenario.file)
  local run = doc.run or {}
  add("run.started", run.started)
  add("run.duration", run.duration and string.format("%.3f", run.duration))
  add("run.cloud", run.cloud)
  add("run.inventory", value_text(run.inventory or ""))
  add("verdict", doc.verdict)
  if doc.overall and #(doc.probes or {}) > 1 then
    add("downtime.all_products", string.format("%.3f", doc.overall.downtime))
  end
  for _, g in ipairs(doc.downtime_per_service or {}) do
    add("downtime.service." .. tostring(g.service), string.format("%.3f", g.downtime))
  end
  -- declared parameters: secret ones are *** in doc.params already (a name
  -- like admin_password is secret unless declared secret = false); others
  -- go by their name
  local declared = {}
  for _, d in ipairs(doc.declared_params or {}) do declared[d.name] = true end
  for _, k in ipairs(sorted_keys(doc.params)) do
    local v = doc.params[k]
    local secret = not declared[k] and redact.is_secret_name(k) and v ~= ""
    add("param." .. k, secret and "***" or redact.string(value_text(v), {}))
  end
  for _, k in ipairs(sorted_keys(versions)) do
    if k ~= "upgrun" then add("version." .. k, versions[k]) end
  end
  local out = { "    <properties>\n" }
  for _, p in ipairs(props) do
    out[#out + 1] = string.format('      <property name="%s" value="%s"/>\n', x(p[1]), x(p[2]))
  end
  out[#out + 1] = "    </properties>\n"
  return table.concat(out)
end

-- ------------------------------------------------------------- outages

local function steps_text(o)
  return (o.steps and #o.steps > 0) and table.concat(o.steps, ", ") or "(no step)"
end

-- "at 12.431 s (2026-...Z) for 2.499 s ± 0.051 during roll / restart api"
local function outage_text(doc, o, long)
  local wall = ""
  local t0 = doc.run and tonumber(doc.run.t0_wall)
  if long and t0 then wall = " (" .. Timeline.iso(t0 + o.start) .. ")" end
  local unc = o.uncertainty and string.format(" ± %.3f", o.uncertainty) or ""
  local t = string.format("at %.3f s%s for %.3f s%s during %s", o.start, wall, o.duration or 0, unc, steps_text(o))
  if long then
    if o.samples then t = t .. string.format("; %d failed sample%s", o.samples, o.samples == 1 and "" or "s") end
    if o.first_error then t = t .. ", first: " .. tostring(o.first_error) end
    if o.open then t = t .. "; still out when the run ended" end
  end
  return t
end

local function outages_summary(doc, list)
  if #list == 0 then return "no outage" end
  local t = {}
  for i, o in ipairs(list) do t[i] = outage_text(doc, o) end
  return string.format("%d outage%s: %s", #list, #list == 1 and "" or "s", table.concat(t, "; "))
end

-- The testcase of one probe of a report document (classname <prefix>.probes);
-- also used by upgrun.merge.junit.
function M.probe_case(doc, prefix, pr)
  local outs = pr.outages or {}
  local lines = { string.format("probe %s: %d outage%s, downtime %.3f s ± %.3f, longest %.3f s; %d requests sent "
    .. "(%.1f/s), %d skipped", pr.name, #outs, #outs == 1 and "" or "s", pr.downtime or 0,
    pr.downtime_uncertainty or 0, pr.longest_outage or 0, pr.sent or 0, pr.rate or 0, pr.skipped or 0) }
  for i, o in ipairs(outs) do lines[#lines + 1] = string.format("outage %d: %s", i, outage_text(doc, o, true)) end
  for _, o in ipairs(pr.steady_state_outages or {}) do
    lines[#lines + 1] = "during the steady-state check (not downtime): " .. outage_text(doc, o, true)
  end
  local failed = {}
  for _, b in ipairs(pr.budget or {}) do
    lines[#lines + 1] = string.format("budget %s: %s: %s", b.key, b.status, tostring(b.message))
    if b.status == "fail" then failed[#failed + 1] = b.key .. ": " .. tostring(b.message) end
  end
  local c = { classname = cls(prefix, "probes"), name = pr.name, out = table.concat(lines, "\n") }
  if #failed > 0 then
    c.status = "failure"
    c.message = "budget failed (" .. table.concat(failed, "; ") .. "); " .. outages_summary(doc, outs)
  end
  return c
end

-- A budget item's message followed by its outages (outs_of: probe name ->
-- outages; the scenario budget "(any API)" takes the union windows).
function M.budget_message(doc, b, outs_of)
  local outs = outs_of[b.probe] or (b.probe == "(any API)" and doc.overall and doc.overall.windows) or {}
  return tostring(b.message) .. " — " .. outages_summary(doc, outs)
end

-- ------------------------------------------------------------- render

function M.render(doc)
  local sc = doc.scenario.name
  local stamp = (doc.run.started or ""):gsub("%.%d+Z$", "")
  local suites = {}
  -- steps: a parent's time is its time outside its sub-steps
  local children, intervals = {}, {}
  for _, st in ipairs(doc.steps) do
    if st.parent then
      children[st.parent] = children[st.parent] or {}
      table.insert(children[st.parent], st)
    end
    if st.start and st["end"] then intervals[#intervals + 1] = { st.start, st["end"] } end
  end
  local cases = {}
  local ansible_lines = require("upgrun.report.ansible").junit_lines(doc)
  for _, st in ipairs(doc.steps) do
    local c = { classname = cls(sc, st.stage), name = st.path, time = st.duration }
    local kids = children[st.id]
    if kids and st.duration then
      local iv = {}
      for _, k in ipairs(kids) do if k.start and k["end"] then iv[#iv + 1] = { k.start, k["end"] } end end
      local inside = union_length(iv)
      c.time = math.max(0, st.duration - inside)
      c.out = string.format("duration %.3f s, of which %.3f s in %d sub-step%s (counted there)", st.duration, inside,
                            #kids, #kids == 1 and "" or "s")
    end
    local tasks = ansible_lines[st.path]
    if tasks then
      c.out = (c.out and (c.out .. "\n") or "") .. string.format("ansible tasks (%d):\n%s", #tasks,
        table.concat(tasks, "\n"))
    end
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
      cases[#cases + 1] = { classname = cls(sc, sr.name), name = "stage " .. sr.name, status = "skipped",
                            message = sr.reason or "skipped" }
    elseif sr.error then
      cases[#cases + 1] = { classname = cls(sc, sr.name), name = "stage " .. sr.name, status = "failure",
                            message = sr.error, body = sr.traceback, time = 0 }
    end
  end
  suites[#suites + 1] = { name = sc .. ".steps", cases = cases, time = union_length(intervals) }
  -- checks
  cases = {}
  for _, c in ipairs(doc.checks) do
    local classname = c.step and cls(sc, c.stage, c.step) or cls(sc, c.stage)
    cases[#cases + 1] = { classname = classname, name = c.name,
                          status = (c.result == "skipped" and "skipped") or ((not c.ok) and "failure" or nil),
                          message = c.detail or (c.result == "skipped" and "skipped" or "check failed") }
  end
  suites[#suites + 1] = { name = sc .. ".checks", cases = cases }
  -- hooks
  cases = {}
  for _, h in ipairs(doc.hooks) do
    local c = { classname = cls(sc, "hooks", h.point), name = h.name .. " @ " .. tostring(h.step), time = h.duration }
    if h.result == "failed" then c.status, c.message, c.body = "failure", h.error, h.traceback
    elseif h.result == "interrupted" then c.status, c.message = "error", "interrupted" end
    cases[#cases + 1] = c
  end
  suites[#suites + 1] = { name = sc .. ".hooks", cases = cases }
  -- probes: one testcase each, with every outage
  cases = {}
  local outs_of = {}
  for _, pr in ipairs(doc.probes or {}) do
    cases[#cases + 1] = M.probe_case(doc, sc, pr)
    outs_of[pr.name] = pr.outages or {}
  end
  suites[#suites + 1] = { name = sc .. ".probes", cases = cases }
  -- budgets, each naming the outages it is about
  cases = {}
  for _, b in ipairs(doc.budgets) do
    local message = M.budget_message(doc, b, outs_of)
    local c = { classname = cls(sc, "budget", b.probe), name = b.key, message = message }
    if b.status == "fail" then c.status = "failure" elseif b.status == "skipped" then c.status = "skipped" end
    cases[#cases + 1] = c
  end
  suites[#suites + 1] = { name = sc .. ".budgets", cases = cases }
  -- resource watches: a testcase per watched kind (upgrun.report.watch)
  if doc.watch then
    local watch_cases = require("upgrun.report.watch").junit_cases(doc, cls(sc, "watch"))
    suites[#suites + 1] = { name = sc .. ".watch", cases = watch_cases }
  end
  -- the steady-state checks (when on), and outputs that could not be written
  cases = {}
  for _, phase in ipairs { "start", "end" } do
    local st = doc.steady_state and doc.steady_state[phase]
    if st and st.result ~= "off" then
      local c = { classname = cls(sc, "steady_state"), name = "steady at the " .. phase, time = st.duration }
      if st.result == "not steady" then c.status, c.message = "failure", doc.steady_state.failure or "not steady"
      elseif st.result == "aborted" then c.status, c.message = "error", "aborted" end
      cases[#cases + 1] = c
    end
  end
  for _, e in ipairs(doc.output_errors or {}) do
    cases[#cases + 1] = { classname = cls(sc, "outputs"), name = e:match("^[^:]+") or e, status = "failure",
                          message = e }
  end
  if #cases > 0 then suites[#suites + 1] = { name = sc .. ".run", cases = cases } end

  local props = M.properties(doc)
  local parts, T, F, E, S = {}, 0, 0, 0, 0
  for _, s in ipairs(suites) do
    local text, n, f, e, sk = suite(s, stamp, props)
    parts[#parts + 1] = text
    T, F, E, S = T + n, F + f, E + e, S + sk
  end
  return string.format('<?xml version="1.0" encoding="UTF-8"?>\n'
                       .. '<testsuites name="%s" tests="%d" failures="%d" errors="%d" skipped="%d" time="%.3f">\n'
                       .. '%s</testsuites>\n',
                       x("upgrun " .. sc), T, F, E, S, tonumber(doc.run.duration) or 0, table.concat(parts))
end

return M
