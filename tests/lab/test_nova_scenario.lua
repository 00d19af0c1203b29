-- test_nova_scenario — the main job as a test: scenarios/nova_mitaka_newton.lua
-- run for real on the lab across the release pair its inventory offers (Zed to
-- 2025.1 "epoxy" when the epoxy root is built), rolling and then manual (the lab
-- is reset to the old release, databases included, before each run), with
-- assertions on report.json: every check passed or was skipped with a reason,
-- the persistent servers survived and took actions in the mixed state, every
-- nova service ends on the new release, the DB migration was timed, the online
-- data migrations ran to the end, and the rolling upgrade kept the Nova API out
-- for less time than the manual one (UPGRUN_LAB_TO_RELEASE=zed-u5: across the
-- quick pair instead). The manual run switches the code with Ansible
-- (--set code_switch=ansible: scenarios/playbooks/nova_code_switch.yml run by
-- ansible-playbook with the lab's inventory; its tasks are asserted per node).
-- Also: a release the inventory does not
-- offer is refused (exit 2) with the offered ones listed; a DB migration that
-- fails for real (a DB user without grant) fails its step with the end of
-- nova-manage's output in report.json. The resource watch
-- (s:watch on the persistent servers): the clean rolling run shows no change
-- that was not made on purpose; a short run with tests/lab/watch_hooks.lua
-- (one server deleted after the DB migration, the other stopped for 10 s)
-- names where it vanished and counts the 10 s, attributed to the hook; the guests'
-- data-plane probes (one per compute) report both guests' outages in those hooks,
-- and show 0 s of guest downtime through the clean rolling and manual runs.
local T = require "testlib"
local proc = require "upgrun.proc"
local cjson = require "cjson"

local SRC = os.getenv("UPGRUN_SRC") or "../.."
local BIN = os.getenv("UPGRUN_BIN") or (SRC .. "/build/upgrun")
local LAB = os.getenv("UPGRUN_LAB_DIR") or "/var/lib/upgrun-lab"
local OUT = os.getenv("UPGRUN_TEST_OUT") or (SRC .. "/build/lab-runs")

local INV = assert(require("upgrun.yaml").decode_file(LAB .. "/inventory.yml")).all.vars
-- UPGRUN_LAB_TO_RELEASE=zed-u5: the quick pair instead of the inventory's default pair
local TO = os.getenv("UPGRUN_LAB_TO_RELEASE") or INV.nova_to_release

local function sh(argv, timeout)
  local r, err = proc.run(argv, { timeout = timeout or 600 })
  if not r then error(table.concat(argv, " ") .. ": " .. tostring(err), 2) end
  return r
end

local function read_json(path)
  local f = assert(io.open(path), "no " .. path)
  local doc = cjson.decode(f:read("a"))
  f:close()
  return doc
end

-- Deletes servers an earlier, interrupted run may have left (named upgrun-*),
-- so the project's instance quota is free.
local function delete_leftovers()
  local conn = assert(require("upgrun.openstack").connect { cloud = "upgrun-lab",
                                                             files = { LAB .. "/clouds.yaml" } })
  for _, s in ipairs(assert(conn.compute:list_servers {})) do
    if s.name:match("^upgrun%-") then conn.compute:delete_server(s.id, { wait = true, timeout = 120 }) end
  end
end

-- Runs the scenario with one strategy (and extra arguments, output directory
-- `name`); returns exit code, report, console output.
local function run(strategy, extra, name)
  delete_leftovers()
  local r = sh({ SRC .. "/tests/lab/reset" }, 600)
  assert(r.status == 0, "tests/lab/reset failed: " .. r.stdout .. r.stderr)
  local out = OUT .. "/" .. (name or strategy)
  sh({ "rm", "-rf", out })
  local argv = { BIN, SRC .. "/scenarios/nova_mitaka_newton.lua", "-i", LAB .. "/inventory.yml",
                 "--cloud", "upgrun-lab", "-o", out, "--set", "strategy=" .. strategy, "--set", "to_release=" .. TO }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  r = assert(proc.run(argv, { timeout = 1500, env_add = { OS_CLIENT_CONFIG_FILE = LAB .. "/clouds.yaml" } }))
  io.write(r.stdout, r.stderr)
  T.valid_report(out)
  return r.status, read_json(out .. "/report.json"), r.stdout
end

local reports = {}

local function probe(doc, name)
  for _, p in ipairs(doc.probes) do if p.name == name then return p end end
  error("no probe " .. name)
end

local function assert_run(strategy, code, doc)
  T.eq(code, 0, strategy .. " run exit code (verdict " .. tostring(doc.verdict) .. ")")
  T.eq(doc.verdict, "passed")
  local counts = { passed = 0, failed = 0, skipped = 0 }
  for _, c in ipairs(doc.checks) do
    counts[c.result] = counts[c.result] + 1
    if c.result == "failed" then T.fail("check failed: " .. c.name .. ": " .. tostring(c.detail)) end
    if c.result == "skipped" then T.ok(c.detail and #c.detail > 10, "skipped check has a reason: " .. c.name) end
  end
  T.ok(counts.passed >= 30, "at least 30 checks passed, got " .. counts.passed)
  -- the lab's servers have guests (tests/lab/labvirt.py): the SSH-into-VM checks and the
  -- rescued server's security-group check ran for real, one set per suite run
  local ssh, sg = 0, 0
  for _, c in ipairs(doc.checks) do
    if c.name:match("^ssh into the server: ") then
      T.eq(c.result, "passed", c.name .. " (" .. c.stage .. "): " .. tostring(c.detail)); ssh = ssh + 1
    elseif c.name:match("^rescued server add/remove security group") then
      T.eq(c.result, "passed", c.name .. ": " .. tostring(c.detail)); sg = sg + 1
    end
  end
  -- the suite runs before, in the mixed state (rolling only: manual has none) and after
  local suites = strategy == "rolling" and 3 or 2
  T.eq(ssh, 3 * suites, "3 SSH checks at each suite run")
  T.eq(sg, suites, "the security-group check at each suite run")
  -- the guests of the persistent servers answered SSH through the whole upgrade
  local guests = 0
  for _, p in ipairs(doc.probes) do
    if p.name:match("^guest ssh ") then
      guests = guests + 1
      T.eq(p.service, "guests")
      T.ok(p.sent > 20, p.name .. " sent " .. p.sent .. " logins")
      T.eq(p.downtime, 0, p.name .. ": 0 s guest downtime in a " .. strategy .. " upgrade")
    end
  end
  T.eq(guests, 2, "a guest probe per compute host")
  -- persistent servers: one per compute host, still there, same host, same state, actions work
  local servers = 0
  for _, r in ipairs(doc.resources) do if r.kind == "server" then servers = servers + 1 end end
  T.eq(servers, 2, "one persistent server per compute host")
  local survived = 0
  for _, c in ipairs(doc.checks) do
    if c.stage == "after" and c.name:match("^upgrun%-persist%-") and c.result == "passed" then
      survived = survived + 1
    end
  end
  T.eq(survived, 2 * 4, "exists / same host / same state / accepts actions, for both servers")
  -- every nova service runs the new release (the running process, checked on each node)
  local moved = 0
  for _, c in ipairs(doc.checks) do
    if c.name:match("^nova%-[%w]+ on %w+ runs " .. TO:gsub("%-", "%%-") .. "$") and c.result == "passed" then
      moved = moved + 1
    end
  end
  T.eq(moved, 8, "3 services on 2 controllers + nova-compute on 2 computes run " .. TO)
  -- the online data migrations ran until nothing was left
  local odm
  for _, c in ipairs(doc.checks) do if c.name == "online data migrations completed" then odm = c end end
  T.ok(odm and odm.result == "passed", "online data migrations completed: " .. tostring(odm and odm.detail))
  T.ok(odm and odm.detail:match("pass 1: %d+ rows"), "rows per pass reported")
  -- the DB migration is a timed hook point
  local db = doc.hook_points.db_migration
  T.ok(db and db.duration > 0.5, "db_migration timed")
  -- every probe sampled through the upgrade at about its rate
  for _, p in ipairs(doc.probes) do
    if p.name ~= "nova server boot/delete cycle" then
      T.ok(p.sent > 20, p.name .. " sent samples")
    end
  end
  -- probes name their API; the timeline page shows the run's service actions, in Chromium
  T.eq(probe(doc, "nova servers.list").service, "compute")
  T.eq(probe(doc, "keystone token validation").service, "identity")
  local page = OUT .. "/" .. strategy .. "/report.html"
  local r = proc.run({ "python3", SRC .. "/tests/integration/browser_check.py", page, page .. ".png" },
    { timeout = 120 })
  T.eq(r.status, 0, "browser_check: " .. tostring(r.stderr))
  local b = cjson.decode(r.stdout)
  T.eq(b.page_errors, "", "no script error"); T.eq(#b.console, 0, table.concat(b.console, "\n"))
  T.ok((b.classes["svc-stop"] or 0) >= 4 and (b.classes["svc-start"] or 0) >= 4, "service stops and starts drawn")
  T.ok((b.classes["band-minmax"] or 0) >= 3, "latency bands")
  T.ok(b.png.nonwhite > 0.1, "not blank")
end

T.case("a release the inventory does not offer is refused, listing the offered ones", function()
  local r = sh({ BIN, SRC .. "/scenarios/nova_mitaka_newton.lua", "-i", LAB .. "/inventory.yml", "--plan",
                 "--set", "to_release=wallaby" })
  T.eq(r.status, 2)
  T.ok(r.stderr:find('no release "wallaby"', 1, true) and r.stderr:find("offered: zed", 1, true), r.stderr)
end)

-- A DB migration that fails for real: ctl1's nova.conf gets (through the site's config
-- command, the inventory's nova_config_set) an [api_database] connection for a MariaDB user
-- that has no grant, so `nova-manage api_db sync` is refused by the database. The run must
-- fail at that step with the end of nova-manage's own output (MariaDB's refusal) in
-- report.json, run no later migration, and print no secret. The before checks are cut to the
-- minimum (no suite, no boot probe, no settle window); `reset` in the next run clears it.
T.case("a failing DB migration fails its step with the tail of nova-manage's output", function()
  delete_leftovers()
  local r = sh({ SRC .. "/tests/lab/reset" }, 600)
  assert(r.status == 0, "tests/lab/reset failed: " .. r.stdout .. r.stderr)
  local cmd = INV.nova_config_set:gsub("{node}", "ctl1"):gsub("{section}", "api_database")
    :gsub("{option}", "connection"):gsub("{value}", "'mysql+pymysql://upgrun_no_grant@127.0.0.1:13306/nova_api'")
  r = sh({ "sh", "-c", cmd })
  T.eq(r.status, 0, "svc config: " .. r.stderr)
  local out = OUT .. "/failing-migration"
  sh({ "rm", "-rf", out })
  r = assert(proc.run({ BIN, SRC .. "/scenarios/nova_mitaka_newton.lua", "-i", LAB .. "/inventory.yml",
                        "--cloud", "upgrun-lab", "-o", out, "--set", "strategy=rolling", "--set", "to_release=" .. TO,
                        "--set", "checks_at=mixed", "--set", "boot_interval=0", "--set", "steady_settle=0" },
                      { timeout = 900, env_add = { OS_CLIENT_CONFIG_FILE = LAB .. "/clouds.yaml" } }))
  io.write(r.stdout, r.stderr)
  T.eq(r.status, 1, "a failed step fails the run")
  local doc = read_json(out .. "/report.json")
  T.eq(doc.verdict, "failed")
  local res = {}
  for _, st in ipairs(doc.steps) do res[st.path] = st end
  local st = res["3. DB expansion / nova-manage api_db sync"]
  T.ok(st and st.result == "failed", "the api_db sync step failed")
  local e = st and st.error or ""
  -- 255: nova-manage's exit when its command raised ("An error has occurred: <traceback>")
  T.ok(e:find("nova-manage api_db sync failed (exit 255)", 1, true), "names the command and its exit: " .. e)
  T.ok(e:find("Access denied for user 'upgrun_no_grant'", 1, true) and e:find("1045", 1, true),
       "carries MariaDB's refusal from the end of nova-manage's output: " .. e)
  T.ok(#e <= 1700, "only the tail (" .. #e .. " bytes)")
  T.eq(res["3. DB expansion"] and res["3. DB expansion"].result, "failed")
  T.ok(not res["3. DB expansion / nova-manage db sync"], "db sync did not run after the failure")
  T.ok(not res["4. controllers (conductors_first)"], "no controller was restarted on a failed migration")
  local f = assert(io.open(LAB .. "/etc/secret"))
  local secret = f:read("l")
  f:close()
  local text = T.read(out .. "/report.json")
  T.ok(#secret >= 8 and not text:find(secret, 1, true), "the lab password is not in report.json")
end)

T.case("rolling upgrade on the lab", function()
  local code, doc = run("rolling")
  reports.rolling = doc
  assert_run("rolling", code, doc)
  local names = {}
  for _, st in ipairs(doc.steps) do names[st.path] = st.result end
  for _, want in ipairs({ "1. deployment check: nova services up", "2. change the codebase to " .. TO,
                          "3. DB expansion", "4. controllers (conductors_first)", "5. computes one by one",
                          "6. online data migrations and upgrade check",
                          "mixed state checks (controllers on " .. TO .. ", computes on " .. INV.nova_from_release
                            .. ")" }) do
    T.eq(names[want], "passed", "step " .. want)
  end
  -- the watch of the persistent servers: every change was one the scenario made on purpose
  local w = doc.watch and doc.watch[1]
  T.ok(w and w.kind == "server", "the persistent servers are watched")
  T.eq(#w.resources, 2)
  local unexpected = {}
  for _, res in ipairs(w.resources) do
    for _, tr in ipairs(res.transitions) do
      if not tr.intended then unexpected[#unexpected + 1] = res.name .. " at " .. tr.t .. ": " .. tr.changes end
    end
  end
  T.eq(#unexpected, 0, "a clean rolling run shows 0 unexpected transitions: " .. table.concat(unexpected, "; "))
  T.eq(w.unexpected_transitions, 0); T.eq(w.unavailable, 0); T.eq(w.vanished, 0)
  T.ok(w.intended_transitions >= 2, "the stop/start checks were seen: " .. w.intended_transitions)
  T.ok(w.polls > 30, "listed every 2 s through the run: " .. w.polls .. " polls")
  T.ok(w.requests <= w.polls + w.list_errors, "one list request per poll (2 servers, one page)")
end)

T.case("manual upgrade on the lab, the code switched by an Ansible playbook", function()
  local code, doc = run("manual", { "--set", "code_switch=ansible" })
  reports.manual = doc
  assert_run("manual", code, doc)
  local step = "2. change the codebase to " .. TO .. " / ansible-playbook nova_code_switch.yml"
  local found
  for _, st in ipairs(doc.steps) do if st.path == step then found = st end end
  T.eq(found and found.result, "passed", step)
  local tasks = {}
  for _, e in ipairs(doc.timeline) do if e.kind == "ansible_task" then tasks[e.task] = e end end
  local switched, verified = tasks["switch the code"], tasks["the code is on " .. TO]
  T.ok(switched and verified, "the playbook's tasks are on the timeline")
  for _, node in ipairs({ "ctl1", "ctl2", "cmp1", "cmp2" }) do
    T.eq(switched.hosts[node] and switched.hosts[node].status, "changed", node .. " switched by Ansible")
    T.eq(verified.hosts[node] and verified.hosts[node].status, "ok", node .. " on " .. TO .. " for Ansible")
  end
  -- the manual upgrade takes the API down: the probes must have seen it
  T.ok(probe(doc, "nova version document").downtime > 1, "manual upgrade shows an API outage")
end)

T.case("rolling keeps the Nova API out for less time than manual", function()
  assert(reports.rolling and reports.manual, "both runs are needed")
  for _, name in ipairs({ "nova servers.list", "nova version document" }) do
    local r, m = probe(reports.rolling, name).downtime, probe(reports.manual, name).downtime
    T.ok(r < m, string.format("%s: rolling %.3f s < manual %.3f s", name, r, m))
  end
  local cmp = sh({ BIN, "compare", OUT .. "/rolling", OUT .. "/manual" })
  T.eq(cmp.status, 0)
  T.ok(cmp.stdout:find("nova version document", 1, true), cmp.stdout)
  io.write(cmp.stdout)
end)

T.case("watch: a server deleted after the DB migration, another stopped for 10 s (--hooks)", function()
  local code, doc, stdout = run("rolling", { "--hooks", SRC .. "/tests/lab/watch_hooks.lua", "--set",
    "checks_at=before", "--set", "boot_interval=0" }, "watch-hooks")
  T.eq(code, 1, "a vanished server fails the run")
  local deleted, stopped
  for _, e in ipairs(doc.timeline) do
    if e.kind == "watch_test_deleted" then deleted = e elseif e.kind == "watch_test_stopped" then stopped = e end
  end
  assert(deleted and stopped, "both hooks ran")
  local w = doc.watch[1]
  local byid = {}
  for _, res in ipairs(w.resources) do byid[res.id] = res end
  -- the deleted one: vanished, in the hook after "3. DB expansion"
  local gone = byid[deleted.id]
  T.ok(gone.vanished, "the deleted server vanished")
  local where = table.concat(gone.vanished.during, "; ")
  T.ok(where:find("hook after db_migration (of 3. DB expansion)", 1, true), "vanished in: " .. where)
  T.eq(w.vanished, 1)
  T.ok(stdout:find("watch: server " .. deleted.name, 1, true), "the console names it among the problems")
  -- the stopped one: unavailable for the time it was SHUTOFF (10 s and the start), ± the interval
  local res = byid[stopped.id]
  T.eq(#res.windows, 1)
  local shut = stopped.on - stopped.off
  io.write(string.format("stopped server: SHUTOFF seen for %.3f s by the hook, unavailable %.3f s ± %.3f by the "
    .. "watch\n", shut, res.unavailable, res.windows[1].uncertainty))
  T.ok(shut >= 10, "the hook kept it stopped 10 s")
  T.near(res.unavailable, shut, w.every + 0.5, "unavailability = the SHUTOFF time ± the watch interval")
  T.ok(table.concat(res.windows[1].during, "; "):find("hook before 4. controllers", 1, true),
    "attributed to the hook: " .. table.concat(res.windows[1].during, "; "))
  local unexpected = 0
  for _, tr in ipairs(res.transitions) do if not tr.intended then unexpected = unexpected + 1 end end
  T.ok(unexpected >= 2, "the stop and the start are unexpected transitions: " .. unexpected)
  -- the guests, killed on purpose by the hooks: each one's data-plane probe reports it, in its hook
  local function guest_outages(server_name)
    local p = probe(doc, "guest ssh " .. server_name:match("^upgrun%-persist%-(.+)$"))
    local list = {}
    for _, o in ipairs(p.outages) do list[#list + 1] = { o = o, steps = table.concat(o.steps or {}, "; ") } end
    return list, p
  end
  local found
  for _, x in ipairs(guest_outages(stopped.name)) do
    if x.steps:find("hook before 4. controllers", 1, true) then found = x.o end
  end
  T.ok(found, "the stopped server's guest outage is in the hook")
  io.write(string.format("stopped server's guest: out %.3f s ± %.3f (SHUTOFF %.3f s)\n", found.duration,
    found.uncertainty, shut))
  T.near(found.duration, shut, 3, "guest outage = the SHUTOFF time (power off .. guest up again)")
  local gone_list, gone_probe = guest_outages(deleted.name)
  local last = gone_list[#gone_list]
  T.ok(last and last.steps:find("hook after db_migration (of 3. DB expansion)", 1, true),
    "the deleted server's guest went out in its hook: " .. (last and last.steps or "no outage"))
  T.ok(gone_probe.downtime > 10, "and stayed out: " .. gone_probe.downtime .. " s")
end)

return T.done()
