-- test_ansible — ctx:ansible{...} (upgrun.ansible): Debian's ansible-playbook
-- run by upgrun (started as a child process) against real sshd nodes
-- (sshd_harness) with the inventory upgrun was given. Asserts the task x
-- host results on the timeline (ok, changed, skipped, failed, unreachable),
-- the step's failure naming the task, host and Ansible's msg, a secret extra
-- var never in the report, a playbook syntax error naming file and line, a
-- timeout and a Ctrl-C (SIGINT) killing ansible-playbook's whole process
-- group (its forked worker's `sleep` included), and the SSH host keys upgrun
-- checks (upgrun_known_hosts) being the ones Ansible checks; the Nova
-- scenario's scenarios/playbooks/nova_code_switch.yml on the sshd nodes; the
-- failing run's report.html in headless Chromium (browser_check.py: the
-- playbook's lane, a bar per task with its outcome's class and hover text, a
-- row per host, the "Ansible tasks" table) and its junit.xml naming the
-- failed task and host and listing every task; each report.json validated.
local T = require "testlib"
local H = require "sshd_harness"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local time = require "upgrun.time"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local TMP = T.tmpdir()
local lab = H.new()
local n1, n2 = lab:start("n1"), lab:start("n2")
local gone = lab:start("gone")
lab:stop(gone) -- its port is closed: unreachable

local function write(rel, text)
  local f = assert(io.open(TMP .. "/" .. rel, "w"))
  f:write(text)
  f:close()
  return TMP .. "/" .. rel
end

-- The harness inventory (key, known_hosts as upgrun_known_hosts), a group `nodes`.
local inv = write("inv.yml", lab:inventory({ n1, n2 }, "nodes"))
local inv_gone = write("inv_gone.yml", lab:inventory({ n1, n2, gone }, "nodes"))
-- A local host for the process-group cases (its `sleep` is a child of an Ansible worker).
local inv_local = write("inv_local.yml", "all:\n  hosts:\n    here:\n      ansible_connection: local\n"
                        .. "      ansible_python_interpreter: /usr/bin/python3\n")

local SECRET = "s3cr3t-extra-var-value"

write("scenario.lua", [[
local scenario = require "upgrun.scenario"
local s = scenario.new { name = "ansible_step", description = "one ctx:ansible step",
  params = { playbook = { default = "ok.yml" }, timeout = { default = 120 }, limit = { default = "" } } }
s:stage("only", function(ctx)
  ctx:step("before the playbook", function() end)
  ctx:ansible { playbook = ctx.params.playbook, timeout = tonumber(ctx.params.timeout), grace = 2,
                limit = ctx.params.limit ~= "" and ctx.params.limit or nil,
                extra_vars = { greeting = "hello", db_password = "]] .. SECRET .. [[" } }
  ctx:step("after the playbook", function() end)
end)
return s
]])

write("ok.yml", [[
- name: the nodes
  hosts: nodes
  gather_facts: false
  tasks:
    - name: say hello
      debug:
        msg: "{{ greeting }} from {{ inventory_hostname }} (password {{ db_password }})"
    - name: touch a file
      command: "touch ]] .. TMP .. [[/touched-{{ inventory_hostname }}"
    - name: only on n1
      command: "true"
      when: inventory_hostname == 'n1'
]])

write("fails.yml", [[
- name: the nodes
  hosts: nodes
  gather_facts: false
  tasks:
    - name: say hello
      debug:
        msg: "{{ greeting }}"
    - name: break on n2
      command: "sh -c 'echo disk full >&2; exit 3'"
      when: inventory_hostname == 'n2'
    - name: after the failure
      command: "true"
    - name: never
      command: "true"
      when: false
]])

write("syntax.yml", "- hosts: nodes\n  tasks:\n    - name: x\n      debug: msg=1\n     bad: indent\n")

write("sleep.yml", [[
- hosts: all
  gather_facts: false
  tasks:
    - name: first
      debug: msg=start
    - name: sleep long
      command: sleep 417.25
]])

local function upgrun(args, opts)
  local argv = { BIN, TMP .. "/scenario.lua" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = assert(proc.run(argv, { timeout = 180 * T.slack, cwd = TMP }))
  local text = T.read(args[#args] .. "/report.json")
  local doc = text and cjson.decode(text)
  if opts and opts.raw then return r, doc, text end
  return r, doc
end

local function events(doc, kind)
  local out = {}
  for _, e in ipairs(doc.timeline) do if e.kind == kind then out[#out + 1] = e end end
  return out
end

local function step(doc, name)
  for _, st in ipairs(doc.steps) do if st.name == name then return st end end
end

local function sleepers()
  local r = proc.run({ "pgrep", "-f", "sleep 417.25" }, { timeout = 10 })
  return r and r.stdout:match("%d+") ~= nil
end

T.case("a passing playbook: each task timed with per-host ok/changed/skipped, secret extra var redacted", function()
  local r, doc, text = upgrun({ "-i", inv, "-o", TMP .. "/ok" }, { raw = true })
  T.eq(r.status, 0, r.stdout .. r.stderr)
  local tasks = events(doc, "ansible_task")
  T.eq(#tasks, 3, "three tasks")
  T.eq(tasks[1].task, "say hello"); T.eq(tasks[1].play, "the nodes")
  T.eq(tasks[1].hosts.n1.status, "ok"); T.eq(tasks[1].hosts.n2.status, "ok")
  T.ok(tasks[1].hosts.n1.msg:find("hello from n1", 1, true), tasks[1].hosts.n1.msg)
  T.ok(tasks[1].path:find("ok.yml:5", 1, true), tasks[1].path)
  T.eq(tasks[2].hosts.n1.status, "changed"); T.eq(tasks[2].counts.changed, 2)
  T.eq(tasks[3].hosts.n1.status, "changed"); T.eq(tasks[3].hosts.n2.status, "skipped")
  for i, t in ipairs(tasks) do
    T.ok(t.duration > 0 and t.t_end >= t.t, "task " .. i .. " is timed")
    if i > 1 then T.ok(t.t >= tasks[i - 1].t_end - 1e-6, "tasks in order") end
  end
  local st = step(doc, "ansible-playbook ok.yml")
  T.eq(st.result, "passed")
  T.ok(tasks[1].t >= st.start and tasks[3].t_end <= st["end"], "tasks inside the step")
  T.eq(step(doc, "after the playbook").result, "passed")
  T.ok(not text:find(SECRET, 1, true), "the secret extra var is not in report.json")
  T.ok(not (T.read(TMP .. "/ok/samples.jsonl") or ""):find(SECRET, 1, true))
  T.ok(not (r.stdout .. r.stderr):find(SECRET, 1, true), "nor on the console")
  T.ok(tasks[1].hosts.n1.msg:find("(password ***)", 1, true), tasks[1].hosts.n1.msg)
  T.ok(r.stdout:find("ansible: touch a file  changed=2", 1, true), r.stdout)
  T.ok(T.read(TMP .. "/touched-n1") and T.read(TMP .. "/touched-n2"), "the command ran on both nodes")
  -- the run's SSH masters (ControlPersist, in its private directory) are stopped with it
  local left = proc.run({ "pgrep", "-f", "upgrun-ansible[.]" }, { timeout = 10 })
  T.eq(left.stdout, "", "no SSH master left")
  -- the host keys: only upgrun_known_hosts knows them, given to Ansible through ansible-ssh.yml
  T.ok(T.read(TMP .. "/ok/ansible-ssh.yml"):find("UserKnownHostsFile=" .. lab.known_hosts, 1, true))
  local summary = events(doc, "ansible")[1]
  T.ok(summary.command:find("-i " .. inv, 1, true), summary.command)
  T.eq(summary.stats.n1.changed, 2)
end)

T.case("a wrong host key in upgrun_known_hosts makes the host unreachable for Ansible too", function()
  local kh = write("wrong_known_hosts", H.known_line(n1.port, lab.key .. ".pub"))
  local text = T.read(inv):gsub("upgrun_known_hosts: [^\n]+", "upgrun_known_hosts: " .. kh)
  local inv_wrong = write("inv_wrong.yml", text)
  local r, doc = upgrun({ "-i", inv_wrong, "--set", "limit=n1", "-o", TMP .. "/wrongkey" })
  T.eq(r.status, 1, r.stdout .. r.stderr)
  local st = step(doc, "ansible-playbook ok.yml")
  T.ok(st.error:find("host n1 unreachable in task 'touch a file'", 1, true), st.error)
  T.ok(st.error:find("ost key verification failed", 1, true), st.error)
end)

T.case("a failing task and an unreachable host fail the step, naming task, host and msg", function()
  local r, doc = upgrun({ "-i", inv_gone, "--set", "playbook=fails.yml", "-o", TMP .. "/fails" })
  T.eq(r.status, 1, r.stdout .. r.stderr)
  local st = step(doc, "ansible-playbook fails.yml")
  T.eq(st.result, "failed")
  T.ok(st.error:find("task 'break on n2' failed on n2: non-zero return code (rc 3): disk full", 1, true), st.error)
  -- debug runs on the controller: the first task connecting to `gone` is the third
  T.ok(st.error:find("host gone unreachable in task 'after the failure': Failed to connect", 1, true), st.error)
  T.eq(step(doc, "after the playbook"), nil, "the stage stopped at the failed step")
  local tasks = events(doc, "ansible_task")
  T.eq(tasks[1].hosts.gone.status, "ok"); T.eq(tasks[3].hosts.gone.status, "unreachable")
  T.eq(tasks[2].hosts.n2.status, "failed"); T.eq(tasks[2].hosts.n2.rc, 3)
  T.eq(tasks[2].hosts.n2.stderr, "disk full"); T.eq(tasks[2].hosts.n1.status, "skipped")
  T.eq(tasks[3].task, "after the failure")
  T.eq(tasks[3].hosts.n1.status, "changed"); T.eq(tasks[3].hosts.n2, nil, "n2 stopped at its failure")
  T.ok(r.stdout:find("ansible: break on n2  failed=1 skipped=2", 1, true), r.stdout)
end)

-- Runs tests/integration/browser_check.py (headless Chromium) on a page; returns its JSON report.
local function browser(page)
  local r = proc.run({ "python3", T.src("tests/integration/browser_check.py"), page, page .. ".png", "1280x900" },
                     { timeout = 120 * T.slack })
  T.eq(r.status, 0, "browser_check ran (chromium: tests/setup installs it): " .. tostring(r.stderr))
  return cjson.decode(r.stdout)
end

local function has(s, needle, what)
  T.ok(type(s) == "string" and s:find(needle, 1, true), (what or "") .. " contains " .. needle .. ":\n" .. tostring(s))
end

T.case("report.html draws the tasks (lane, bars by outcome, host rows, hover) and lists them; junit too", function()
  -- the run of the case above: say hello ok x3; break on n2 failed on n2, skipped on n1 and gone;
  -- after the failure changed on n1, unreachable on gone; never skipped on n1
  local out = TMP .. "/fails"
  T.valid_report(out, TMP .. "/ok")
  local b = browser(out .. "/report.html")
  T.eq(b.page_errors, "", "no script error"); T.eq(#b.network, 0, "no fetch")
  local c = b.classes
  T.eq(c["ansible-lane"], 1, "a lane for the playbook run")
  T.eq(c["ansible-task"], 4, "a bar per task")
  for _, o in ipairs { "ok", "failed", "unreachable", "skipped" } do T.eq(c["task-" .. o], 1, "a task " .. o) end
  T.eq(c["ansible-host"], 9, "each host's part of each task")
  T.eq(c["host-failed"], 1); T.eq(c["host-changed"], 1); T.eq(c["host-unreachable"], 1)
  T.eq(c["host-ok"], 3); T.eq(c["host-skipped"], 3)
  T.eq(c["legend-item"], 16, "the outcome colours in the legend")
  local tip = b.titles_by_class["task-failed"][1]
  has(tip, "task break on n2: failed\nplay the nodes · fails.yml\n", "hover")
  has(tip, "n2: failed (rc 3): non-zero return code; stderr: disk full", "hover")
  has(tip, "skipped (2): gone, n1", "hover")
  has(tip, "step ansible-playbook fails.yml", "hover")
  has(b.titles_by_class["task-unreachable"][1], "gone: unreachable: Failed to connect", "hover")
  has(b.titles_by_class["task-unreachable"][1], "changed (1): n1", "hover")
  has(b.titles_by_class["host-failed"][1], "n2: failed (rc 3)", "the host cell")
  local rows = b.rows_by_class["ansible-row"]
  T.eq(#rows, 4, "a table row per task")
  T.eq(rows[2][1], "fails.yml"); T.eq(rows[2][2], "the nodes"); T.eq(rows[2][3], "break on n2")
  has(rows[2][4], "n2: failed (rc 3)", "hosts cell"); has(rows[2][4], "skipped (2): gone, n1", "hosts cell")
  T.eq(rows[2][7], "ansible-playbook fails.yml")
  T.eq(#b.rows_by_class["row-failed"], 1); T.eq(b.rows_by_class["row-failed"][1][3], "break on n2")
  T.eq(b.rows_by_class["row-changed"], nil, "no task is changed at worst")
  -- the passing run: its msg holds the secret extra var, redacted in the page as in report.json
  local html = T.read(TMP .. "/ok/report.html")
  T.ok(not html:find(SECRET, 1, true), "the secret extra var is not in report.html")
  has(html, "hello from n1 (password ***)", "report.html")
  -- junit.xml: the step's failure names task and host; <system-out> lists every task
  local x = proc.run({ "xmllint", "--noout", out .. "/junit.xml" }, { timeout = 30 })
  T.eq(x.status, 0, "xmllint: " .. tostring(x.stderr))
  local junit = T.read(out .. "/junit.xml")
  has(junit, 'message="ansible-playbook fails.yml failed: task &apos;break on n2&apos; failed on n2: ', "junit")
  has(junit, "ansible tasks (4):\n", "junit")
  has(junit, "the nodes / break on n2: failed — n2: failed (rc 3): non-zero return code; stderr: disk full; "
      .. "skipped (2): gone, n1\n", "junit")
  has(junit, "the nodes / never: skipped — skipped (1): n1</system-out>", "junit")
end)

T.case("a syntax error in the playbook: a clear error naming the file and line", function()
  local r, doc = upgrun({ "-i", inv, "--set", "playbook=syntax.yml", "-o", TMP .. "/syntax" })
  T.eq(r.status, 1, r.stdout .. r.stderr)
  local st = step(doc, "ansible-playbook syntax.yml")
  T.ok(st.error:find(TMP .. "/syntax.yml:4:17: YAML syntax error: did not find expected '-' indicator", 1, true),
       st.error)
  local r2, doc2 = upgrun({ "-i", inv, "--set", "playbook=nothere.yml", "-o", TMP .. "/nothere" })
  T.eq(r2.status, 1)
  T.ok(step(doc2, "ansible-playbook nothere.yml").error:find("no such playbook: " .. TMP .. "/nothere.yml", 1, true))
  T.valid_report(TMP .. "/syntax", TMP .. "/nothere", TMP .. "/wrongkey")
end)

T.case("a timeout kills ansible-playbook's process group, naming the running task", function()
  local t0 = time.mono()
  local r, doc = upgrun({ "-i", inv_local, "--set", "playbook=sleep.yml", "--set", "timeout=6", "-o", TMP .. "/to" })
  T.eq(r.status, 1, r.stdout .. r.stderr)
  T.ok(time.mono() - t0 < 60 * T.slack, "stopped at the timeout")
  local st = step(doc, "ansible-playbook sleep.yml")
  T.ok(st.error:find("timed out after 6s while task 'sleep long' (" .. TMP .. "/sleep.yml:6) ran", 1, true), st.error)
  T.ok(st.error:find("process group was stopped with SIG", 1, true), st.error)
  T.eq(events(doc, "ansible_task")[1].hosts.here.status, "ok", "the task before is recorded")
  T.valid_report(TMP .. "/to")
  T.wait_until(function() return not sleepers() end, 5, "the worker's sleep to be gone")
end)

T.case("Ctrl-C (SIGINT) during a playbook: exit 3, the whole process group killed", function()
  os.remove(TMP .. "/int")
  local p = assert(proc.spawn { argv = { BIN, TMP .. "/scenario.lua", "-i", inv_local, "--set", "playbook=sleep.yml",
                                         "-o", TMP .. "/int" }, cwd = TMP, stdout = "null", stderr = "null" })
  T.wait_until(sleepers, 60, "the playbook's sleep to start")
  T.ok(p:kill("INT"))
  local r = assert(p:wait(30 * T.slack))
  T.eq(r.status, 3)
  T.wait_until(function() return not sleepers() end, 5, "the worker's sleep to be gone")
  local doc = cjson.decode(T.read(TMP .. "/int/report.json"))
  T.eq(step(doc, "ansible-playbook sleep.yml").result, "interrupted")
  T.valid_report(TMP .. "/int")
  T.ok(not T.read(TMP .. "/int/report.json"):find(SECRET, 1, true))
end)

T.case("the Nova scenario's code-switch playbook runs each node's nova_code_switch and checks it", function()
  local vars = "nova_code_switch: \"echo {release} > " .. TMP .. "/code-{node}\"\n"
    .. "nova_code_current: \"cat " .. TMP .. "/code-{node}\"\n"
  local text = lab:inventory({ n1, n2 }, "controller"):gsub("  vars:\n", "  vars:\n    "
    .. vars:gsub("\n(.)", "\n    %1"), 1)
  local inv_nova = write("inv_nova.yml", text)
  write("nova.lua", [[
local s = require("upgrun.scenario").new { name = "nova_switch", description = "the code switch playbook" }
s:stage("only", function(ctx)
  ctx:ansible { playbook = "]] .. T.src("scenarios/playbooks/nova_code_switch.yml") .. [[",
                limit = { "controller" }, extra_vars = { nova_release = "zed-u5" } }
end)
return s
]])
  local r = assert(proc.run({ BIN, TMP .. "/nova.lua", "-i", inv_nova, "-o", TMP .. "/nova" },
                            { timeout = 180 * T.slack, cwd = TMP }))
  T.eq(r.status, 0, r.stdout .. r.stderr)
  T.eq(T.read(TMP .. "/code-n1"), "zed-u5\n"); T.eq(T.read(TMP .. "/code-n2"), "zed-u5\n")
  local doc = cjson.decode(T.read(TMP .. "/nova/report.json"))
  local tasks = {}
  for _, e in ipairs(events(doc, "ansible_task")) do tasks[e.task] = e end
  T.eq(tasks["switch the code"].counts.changed, 2)
  T.eq(tasks["the code is on zed-u5"].counts.ok, 2)
end)

lab:cleanup()
os.exit(T.done())
