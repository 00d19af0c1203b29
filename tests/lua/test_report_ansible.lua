-- test_report_ansible — upgrun.report.ansible on report documents built
-- here (what a fleet-sized playbook gives, which the real-sshd test in
-- tests/integration/test_ansible.lua does not reach): a task's outcome is its
-- worst host's, an ignored failure is told apart, many hosts are summed up
-- (no per-host rows past MAX_HOST_ROWS, names capped), msg tails cut and
-- token-redacted, names escaped in the SVG and the page, labels that fit,
-- junit lines per step.
local T = require "testlib"
local A = require "upgrun.report.ansible"
local svg = require "upgrun.report.timeline_svg"

local function task(t, t_end, name, hosts, extra)
  local e = { kind = "ansible_task", t = t, t_end = t_end, duration = t_end - t, wall = "x", task = name,
              play = "rolling", playbook = "site.yml", step = "upgrade / ansible-playbook site.yml", hosts = hosts }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function many(n, status)
  local hosts = {}
  for i = 1, n do hosts[string.format("cmp%02d", i)] = { status = status, t = 1 } end
  return hosts
end

local big = many(40, "changed")
big.cmp07 = { status = "failed", rc = 2, msg = string.rep("x", 300) .. " X-Auth-Token: gAAAAsecret end", t = 1 }
big.cmp09 = { status = "unreachable", msg = "Failed to connect", t = 1 }
local doc = {
  run = { duration = 100, t0_wall = 1700000000 },
  timeline = {
    { kind = "step_start", t = 0, wall = "x" },
    task(1, 2, "gather <facts>", many(40, "ok")),
    task(2, 30, "restart nova-api", big),
    task(30, 31, "cleanup", { ctl1 = { status = "failed", ignored = true, msg = "gone", t = 30.5 } },
         { handler = true }),
    task(31, 31.2, "noop", {}),
    task(31.2, 90, "a task with a long name that cannot fit in a narrow bar at all", many(3, "skipped")),
  },
}

T.case("a task's outcome is its worst host's; an ignored failure is its own outcome", function()
  local ts = A.tasks(doc)
  T.eq(#ts, 5)
  T.eq(A.outcome(ts[1]), "ok"); T.eq(A.outcome(ts[2]), "failed"); T.eq(A.outcome(ts[3]), "ignored")
  T.eq(A.outcome(ts[4]), "none"); T.eq(A.outcome(ts[5]), "skipped")
end)

T.case("host lines: bad hosts with msg (tail, redacted), the others per outcome, names capped", function()
  local lines = A.host_lines(A.tasks(doc)[2])
  T.eq(#lines, 3)
  T.ok(lines[1]:find("^cmp07: failed %(rc 2%): …x+ X%-Auth%-Token: %*%*%* end$"), lines[1])
  T.ok(utf8.len(lines[1]) <= A.MSG_TAIL + 30, "msg cut to its tail: " .. #lines[1])
  T.ok(not lines[1]:find("gAAAAsecret", 1, true), "token redacted")
  T.eq(lines[2], "cmp09: unreachable: Failed to connect")
  T.eq(lines[3], "changed (38): cmp01, cmp02, cmp03, cmp04, cmp05, cmp06, cmp08, cmp10, cmp11, cmp12, cmp13, "
    .. "cmp14 … and 26 more")
  T.eq(A.host_lines(A.tasks(doc)[3])[1], "ctl1: failed (ignored): gone")
  T.eq(A.host_lines(A.tasks(doc)[4])[1], "no host result")
end)

T.case("the timeline: one lane, a bar per task, no host rows past MAX_HOST_ROWS, escaped, labels fit", function()
  local out = svg.render(doc, { width = 1200 })
  local function count(pat) local _, n = out:gsub(pat, "") return n end
  T.eq(count('class="ansible%-lane"'), 1)
  T.ok(out:find('class="row">ansible site.yml<', 1, true), "the lane is named after the playbook")
  T.eq(count('class="ansible%-task task%-'), 5)
  T.eq(count('class="ansible%-host'), 0, "40 hosts: no per-host rows")
  T.eq(count('class="legend%-item"'), 10 + 6)
  T.ok(out:find("task gather &lt;facts&gt;: ok", 1, true), "escaped title")
  T.ok(not out:find("<facts>", 1, true))
  T.ok(out:find("handler cleanup: ignored", 1, true))
  T.ok(out:find('class="ansible-task task-ignored"', 1, true))
  local labelled = 0
  for w, label in out:gmatch('<g class="ansible%-task[^"]*"><rect x="[%d.]+" y="%d+" width="([%d.]+)"[^>]*/>'
    .. "<title>[^<]*</title>\n<text[^>]*>([^<]*)</text>") do
    T.ok(utf8.len(label) * svg.CHAR_W <= tonumber(w) + 1, string.format("label %q fits in %s px", label, w))
    labelled = labelled + 1
  end
  T.eq(labelled, 2, "the two wide bars are labelled (restart, the long one), the 9 px ones not")
  T.ok(out:find(">restart nova%-api<"), "the wide bar is labelled")
  T.ok(out:find(">a task with a long name that cannot fit in a narrow bar at all<", 1, true)
    or out:find(">a task with a long[^<]*…<"), "the long name, whole or cut")
  -- a run with a few hosts gets a row per host; no task: no lane, no legend entries
  local small = { run = { duration = 10 }, timeline = { task(1, 2, "one", { a = { status = "ok", t = 1.5 },
                                                                             b = { status = "changed", t = 2 } }) } }
  small.timeline[1].step = "upgrade / switch the code"
  local s2 = svg.render(small)
  T.ok(s2:find('class="row">switch the code<', 1, true), "or after the step's own name (ctx:ansible{name =})")
  T.eq(select(2, s2:gsub('class="ansible%-host host%-', "")), 2)
  T.ok(s2:find('class="ansible-host host-changed"', 1, true))
  local none = svg.render { run = { duration = 10 }, timeline = {} }
  T.ok(not none:find("ansible", 1, true)); T.eq(select(2, none:gsub('class="legend%-item"', "")), 10)
end)

T.case("an outage's hover names the tasks that ran during it, with their hosts", function()
  T.eq(A.during(doc, 25, 30.2), "restart nova-api on 40 hosts (failed), cleanup on ctl1 (ignored)")
  T.eq(A.during(doc, 95, 99), nil)
  T.eq(A.during(doc, 0, 100, 2), "gather <facts> on 40 hosts (ok), restart nova-api on 40 hosts (failed), … and 3 more")
  local d = { run = doc.run, timeline = doc.timeline,
              probes = { { name = "nova", downtime = 1, outages = { { start = 30.2, ["end"] = 30.4, duration = 0.2,
                                                                      steps = { "upgrade" } } } } } }
  local out = svg.render(d)
  T.ok(out:find("during upgrade\nansible tasks: cleanup on ctl1 (ignored)</title>", 1, true), out)
end)

T.case("table rows and junit lines", function()
  local rows = A.html_rows(doc)
  T.eq(#rows, 5)
  T.eq(rows[2][3], "restart nova-api"); T.eq(rows[2].class, "ansible-row row-failed bad")
  T.eq(rows[3][3], "handler: cleanup"); T.eq(rows[3].class, "ansible-row row-ignored")
  T.eq(rows[2][5], "2.000"); T.eq(rows[2][6], "28.000"); T.eq(rows[2][7], "upgrade / ansible-playbook site.yml")
  local j = A.junit_lines(doc)["upgrade / ansible-playbook site.yml"]
  T.eq(#j, 5)
  T.ok(j[2]:find("^2%.000 s %+28%.000 s  rolling / restart nova%-api: failed — cmp07: failed %(rc 2%)"), j[2])
end)

return T.done()
