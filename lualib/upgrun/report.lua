-- upgrun.report — turns a finished (or aborted) run into its outputs:
-- analyse(run) reads the probes' online aggregates (upgrun.probing: outages,
-- latency sketches per stage, counts — never the samples, so it costs
-- O(outages + steps + stages)) and computes downtime per probe and per step
-- and budget verdicts; write_all(run) writes report.json, junit.xml and
-- report.html into the output directory, every write checked (upgrun.fs:
-- tmp + fsync + rename), and returns the list of outputs it could not write;
-- console(run) prints the short summary.
local json = require "upgrun.report.json"
local outages = require "upgrun.outages"
local steady = require "upgrun.steady"
local watch_report = require "upgrun.report.watch"

local M = {}
local A = json.array

-- report.json's schema version (docs/report.schema.json, docs/report.md):
-- raised when a field changes meaning or goes away; new fields keep it.
M.SCHEMA_VERSION = 1

-- ---------------------------------------------------------------- analysis


local function all_paths(steps)
  local out = A {}
  for _, st in ipairs(steps) do out[#out + 1] = st.path end
  return out
end

local function timed_steps(run)
  local out = {}
  for _, st in ipairs(run.steps) do if st.start then out[#out + 1] = st end end
  return out
end

local function analyse_probe(run, pr, steps)
  local p = pr.probe
  local all_outs = pr:finish()
  -- Outages that began while the steady state was awaited are reported apart:
  -- they are not downtime of the upgrade.
  local outs, settle_outs = {}, A {}
  for _, o in ipairs(all_outs) do
    if steady.STAGES[o.stage] then settle_outs[#settle_outs + 1] = o else outs[#outs + 1] = o end
  end
  for _, o in ipairs(outs) do
    o.steps = A(outages.during(o.start, o["end"], steps, run.hooks_run))
    o.all_steps = all_paths(outages.steps_during(o.start, o["end"], steps))
  end
  local down, longest, unc = outages.downtime(outs)
  local per = outages.downtime_per_step(outs, steps, run.run_end)
  local per_step = A {}
  for _, st in ipairs(steps) do
    if per[st.id] then per_step[#per_step + 1] = { step = st.path, id = st.id, stage = st.stage,
      seconds = per[st.id] } end
  end
  local by_stage = pr.stats:latency_by_stage(p.baseline)
  for stage, st in pairs(by_stage) do
    if steady.STAGES[stage] then st.p50_ratio, st.p95_ratio, st.p99_ratio = nil, nil, nil end
  end
  local counts = {}
  for k, v in pairs(pr.stats.counts) do counts[k] = v end
  local active = pr:active_time(run.run_end)
  local m = { downtime = down, longest = longest }
  for _, q in ipairs { "p50", "p95", "p99" } do m[q .. "_ratio"] = outages.worst_ratio(by_stage, q) end
  local budget = A(outages.evaluate_budget(p.budget, m))
  for _, b in ipairs(budget) do
    b.probe = p.name
    if b.status == "fail" then run.budget_failures = run.budget_failures + 1 end
  end
  -- The chart's buckets, one compact row each: [t0, t1, ok, bad, min, p50, p95, max]
  -- (latencies null when the bucket had no ok sample; 4 significant digits:
  -- the buckets' sketches are 5 % accurate).
  local cols = pr.stats.series:columns()
  local function lat(v) return v and tonumber(string.format("%.4g", v)) or json.null end
  local rows = A {}
  for i, c in ipairs(cols) do
    rows[i] = A { c.t0, c.t1, c.ok, c.bad, lat(c.min), lat(c.p50), lat(c.p95), lat(c.max) }
  end
  return {
    name = p.name, description = p.description, service = p.service, kind = p.kind, url = p.url,
    series = { fields = A { "t0", "t1", "ok", "bad", "min", "p50", "p95", "max" }, columns = rows },
    interval = p.interval, configured_rate = 1 / p.interval,
    timeout = p.timeout, max_in_flight = p.max_in_flight, stages = p.stages and A(p.stages) or "all",
    sent = pr.sent, skipped = pr.skipped, counts = counts, active_time = active,
    rate = active > 0 and pr.sent / active or 0,
    latency = pr.stats:latency(steady.STAGES), latency_by_stage = by_stage, baseline = p.baseline,
    outages = A(outs), downtime = down, downtime_uncertainty = unc, longest_outage = longest,
    downtime_per_step = per_step, budget = budget, degradation = m, steady_state_outages = settle_outs,
  }
end

-- The meeting's name for the overall (union) downtime: the time during which
-- at least one product's API was out.
M.ALL_PRODUCTS = "all-products downtime"

-- Downtime per product: the probes grouped by their `service` (identity,
-- image, compute, ...), each group's downtime the union of its probes'
-- outages, in the order the services first appear among the probes; each
-- window's steps and hooks (hooks: the run's hooks_run).
function M.per_service(probe_reports, steps, hooks)
  local groups, order = {}, {}
  for _, pr in ipairs(probe_reports) do
    local key = pr.service or pr.name
    local g = groups[key]
    if not g then
      g = { service = key, probes = A {}, outs = {} }
      groups[key] = g
      order[#order + 1] = g
    end
    g.probes[#g.probes + 1] = pr.name
    for _, o in ipairs(pr.outages) do g.outs[#g.outs + 1] = o end
  end
  local out = A {}
  for _, g in ipairs(order) do
    local union = outages.union(g.outs)
    local down, longest = 0, 0
    for _, w in ipairs(union) do
      w.steps = A(outages.during(w.start, w["end"], steps, hooks))
      down = down + w.duration
      if w.duration > longest then longest = w.duration end
    end
    out[#out + 1] = { service = g.service, probes = g.probes, downtime = down, longest_outage = longest,
                      outages = #union, windows = A(union) }
  end
  return out
end

function M.analyse(run)
  local steps = timed_steps(run)
  run.probe_reports = A {}
  local all = {}
  for _, prun in ipairs(run.probing and run.probing.runs or {}) do
    local pr = analyse_probe(run, prun, steps)
    run.probe_reports[#run.probe_reports + 1] = pr
    for _, o in ipairs(pr.outages) do all[#all + 1] = o end
  end
  -- Scenario level: the union of every probe's outages (time during which at
  -- least one API was out) and the worst degradation of any probe.
  local union = outages.union(all)
  for _, w in ipairs(union) do
    w.steps = A(outages.during(w.start, w["end"], steps, run.hooks_run))
  end
  local down, longest = 0, 0
  for _, w in ipairs(union) do down = down + w.duration; if w.duration > longest then longest = w.duration end end
  local m = { downtime = down, longest = longest }
  for _, q in ipairs { "p50", "p95", "p99" } do
    for _, pr in ipairs(run.probe_reports) do
      local r = pr.degradation[q .. "_ratio"]
      if r and (not m[q .. "_ratio"] or r > m[q .. "_ratio"]) then m[q .. "_ratio"] = r end
    end
  end
  local budget = A(outages.evaluate_budget(run.s.scenario_budget, m))
  for _, b in ipairs(budget) do
    b.probe = "(any API)"
    if b.status == "fail" then run.budget_failures = run.budget_failures + 1 end
  end
  run.overall = { downtime = down, longest_outage = longest, windows = A(union), budget = budget, degradation = m,
                  name = M.ALL_PRODUCTS }
  run.downtime_per_service = M.per_service(run.probe_reports, steps, run.hooks_run)
  -- Downtime per step, over all probes.
  local per_step = A {}
  for _, st in ipairs(steps) do
    local row = { step = st.path, id = st.id, stage = st.stage, probes = {} }
    local any = false
    for _, pr in ipairs(run.probe_reports) do
      for _, d in ipairs(pr.downtime_per_step) do
        if d.id == st.id then row.probes[pr.name] = d.seconds; any = true end
      end
    end
    if any then per_step[#per_step + 1] = row end
  end
  run.downtime_per_step = per_step
  -- Hook points (e.g. db_migration): the duration of the steps that declare them.
  local hp = {}
  for _, st in ipairs(steps) do
    if st.hook_point then
      local h = hp[st.hook_point] or { steps = A {}, duration = 0 }
      hp[st.hook_point] = h
      h.steps[#h.steps + 1] = { step = st.path, start = st.start, ["end"] = st["end"], duration = st.duration,
                                result = st.result }
      h.duration = h.duration + (st.duration or 0)
    end
  end
  run.hook_points = hp
  watch_report.analyse(run)
end

-- ---------------------------------------------------------------- report.json

local function clean_step(st)
  return { id = st.id, name = st.name, path = st.path, stage = st.stage, parent = st.parent, depth = st.depth,
           start = st.start, ["end"] = st["end"], duration = st.duration, wall_start = st.wall_start,
           wall_end = st.wall_end, result = st.result, error = st.error, traceback = st.traceback,
           reason = st.reason, nodes = st.nodes and A(st.nodes), hook_point = st.hook_point,
           continue_on_error = st.continue_on_error }
end

local function redacted_params(run)
  local out = {}
  for k, v in pairs(run.params) do
    local spec = run.s.params[k]
    if spec and spec.secret and v ~= nil and v ~= "" then out[k] = "***" else out[k] = v end
  end
  return out
end

local function redact_args(run)
  local out = A {}
  for _, a in ipairs(run.opts.sets) do
    local k = a:match("^([^=]+)=")
    local spec = k and run.s.params[k]
    out[#out + 1] = (spec and spec.secret) and (k .. "=***") or a
  end
  return out
end

function M.document(run)
  local steps, stages = A {}, A {}
  for i, st in ipairs(run.steps) do steps[i] = clean_step(st) end
  for i, sr in ipairs(run.stage_results) do
    stages[i] = { name = sr.name, result = sr.result, reason = sr.reason, error = sr.error, traceback = sr.traceback,
                  start = sr.start, ["end"] = sr["end"], duration = sr.duration, wall_start = sr.wall_start,
                  wall_end = sr.wall_end, needs = sr.needs and A(sr.needs) }
  end
  local budgets = A {}
  for _, pr in ipairs(run.probe_reports) do for _, b in ipairs(pr.budget) do budgets[#budgets + 1] = b end end
  for _, b in ipairs(run.overall.budget) do budgets[#budgets + 1] = b end
  for _, b in ipairs(watch_report.budgets(run.watch_reports)) do budgets[#budgets + 1] = b end
  local hooks = A {}
  for i, h in ipairs(run.hooks_run) do hooks[i] = h end
  local checks = A {}
  for i, c in ipairs(run.checks) do checks[i] = c end
  local resources = A {}
  for i, r in ipairs(run.ledger.records) do resources[i] = r end
  -- Events are recorded when they are known (a node command when it ends):
  -- sort them by their time (stable).
  local timeline = A {}
  for i, e in ipairs(run.tl.events) do timeline[i] = e; e._i = i end
  table.sort(timeline, function(a, b) if a.t ~= b.t then return a.t < b.t end return a._i < b._i end)
  for _, e in ipairs(timeline) do e._i = nil end
  local declared = A {}
  for _, k in ipairs(run.s.param_order) do
    local p = run.s.params[k]
    declared[#declared + 1] = { name = k, type = p.type, description = p.description, secret = p.secret or nil,
                                default = p.secret and "***" or p.default }
  end
  local doc = {
    format = "upgrun-report/1", schema_version = M.SCHEMA_VERSION,
    scenario = { name = run.s.name, description = run.s.description, file = run.path },
    params = redacted_params(run), declared_params = declared,
    versions = run.versions,
    run = { started = require("upgrun.timeline").iso(run.tl.t0_wall), t0_wall = run.tl.t0_wall,
            duration = run.run_end, output = run.out, inventory = run.opts.inventory, cloud = run.opts.cloud,
            ledger_from = run.opts.ledger, keep = run.opts.keep or false, set = redact_args(run),
            hooks_files = A(run.opts.hooks) },
    verdict = run.verdict, exit_code = run.exit_code, aborted = run.aborted or false,
    stages = stages, steps = steps, hooks = hooks, hook_points = run.hook_points, checks = checks,
    probes = run.probe_reports, overall = run.overall, downtime_per_step = run.downtime_per_step,
    downtime_per_service = run.downtime_per_service,
    budgets = budgets, resources = resources, timeline = timeline, steady_state = run.steady,
    output_errors = run.output_errors and A(run.output_errors) or nil,
    resumed = run.resumed, -- --resume / --from-step: {from, from_step, passed_earlier}
    watch = run.watch_reports and #run.watch_reports > 0 and run.watch_reports or nil, -- s:watch (report/watch.lua)
  }
  return doc
end

-- Walks a document replacing secret values in every string.
local function redact_deep(run, v)
  if type(v) == "string" then return run:redact(v) end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = redact_deep(run, x) end
  end
  return v
end

-- A failed output write fails the run (an aborted run stays aborted).
local function output_failed(run, failed)
  run.output_errors = failed
  if run.exit_code == 0 then run.verdict, run.exit_code = "failed", 1 end
  if run.doc then
    run.doc.verdict, run.doc.exit_code = run.verdict, run.exit_code
    run.doc.output_errors = A(failed)
  end
end

-- Closes samples.jsonl and writes junit.xml, report.html and report.json
-- (last, so that it names any output that could not be written); each is
-- complete or not there at all. Returns an array of "<file>: <error>" for the
-- outputs that could not be written (empty when all were), after setting the
-- verdict to failed (exit 1; 3 stays 3) when there are any.
function M.write_all(run)
  local fs = require "upgrun.fs"
  local failed = {}
  local function attempt(name, fn)
    local ok, res, err = pcall(fn)
    if not ok then err = res elseif not res then err = err or "unknown error" end
    if err then failed[#failed + 1] = name .. ": " .. tostring(err) end
  end
  if run.sample_log then
    attempt("samples.jsonl", function() return run.sample_log:close() end)
  end
  if run.ledger and run.ledger.save_error then failed[#failed + 1] = "ledger.json: " .. run.ledger.save_error end
  if #failed > 0 then output_failed(run, failed) end
  local doc = redact_deep(run, M.document(run))
  run.doc = doc
  attempt("junit.xml", function()
    return fs.write_file(run.out .. "/junit.xml", require("upgrun.report.junit").render(doc))
  end)
  attempt("report.html", function()
    return fs.write_file(run.out .. "/report.html", require("upgrun.report.html").render(doc))
  end)
  if #failed > 0 then output_failed(run, failed) end
  attempt("report.json", function() return json.write_file(run.out .. "/report.json", doc, " ") end)
  if #failed > 0 then output_failed(run, failed) end
  return failed
end

-- ---------------------------------------------------------------- console

function M.console(run)
  local out = {}
  local function p(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  p("")
  p("== %s: %s", run.s.name, run.verdict:upper())
  if #run.probe_reports > 0 then
    p("downtime per API:")
    for _, pr in ipairs(run.probe_reports) do
      p("  %-28s %7.3f s ± %.3f  (%d outage%s, longest %.3f s; %.1f req/s, %d sent, %d skipped)",
        pr.name, pr.downtime, pr.downtime_uncertainty, #pr.outages, #pr.outages == 1 and "" or "s",
        pr.longest_outage, pr.rate, pr.sent, pr.skipped)
      for _, o in ipairs(pr.outages) do
        p("      at %8.3f s  %6.3f s ± %.3f  during %s", o.start, o.duration, o.uncertainty,
          #o.steps > 0 and table.concat(o.steps, ", ") or "(no step)")
      end
    end
    local per = run.downtime_per_service or {}
    if #per > 1 then
      p("downtime per product (its probes' outages merged):")
      for _, g in ipairs(per) do
        p("  %-28s %7.3f s  (%d outage%s, longest %.3f s; %d probe%s)", g.service, g.downtime, g.outages,
          g.outages == 1 and "" or "s", g.longest_outage, #g.probes, #g.probes == 1 and "" or "s")
      end
    end
    if #run.probe_reports > 1 then
      p("  %-28s %7.3f s  (any API out; longest %.3f s)", M.ALL_PRODUCTS, run.overall.downtime,
        run.overall.longest_outage)
    end
  end
  for _, l in ipairs(watch_report.console_lines(run)) do p("%s", l) end
  local hp = {}
  for k in pairs(run.hook_points or {}) do hp[#hp + 1] = k end
  table.sort(hp)
  for _, k in ipairs(hp) do p("hook point %s: %.3f s", k, run.hook_points[k].duration) end
  local counts, skipped = { passed = 0, failed = 0, skipped = 0 }, {}
  for _, c in ipairs(run.checks) do
    counts[c.result] = (counts[c.result] or 0) + 1
    if c.result == "skipped" then skipped[#skipped + 1] = c end
  end
  if #run.checks > 0 then
    p("checks: %d passed, %d failed, %d skipped", counts.passed, counts.failed, counts.skipped)
    for _, c in ipairs(skipped) do p("  skipped %s — %s", c.name, run:redact(c.detail or "")) end
  end
  local timed = {}
  for _, st in ipairs(run.steps) do if st.duration then timed[#timed + 1] = st end end
  table.sort(timed, function(a, b) return a.duration > b.duration end)
  if #timed > 0 then
    p("slowest steps:")
    for i = 1, math.min(5, #timed) do
      p("  %8.3f s  %s [%s]", timed[i].duration, timed[i].path, timed[i].result)
    end
  end
  local failed = {}
  for _, st in ipairs(run.steps) do
    if st.result == "failed" or st.result == "interrupted" then
      failed[#failed + 1] = string.format("step %s: %s%s", st.path, st.result, st.error and (" — " .. st.error) or "")
    end
  end
  for _, c in ipairs(run.checks) do
    if not c.ok then
      failed[#failed + 1] = "check " .. c.name .. " failed" .. (c.detail and (" — " .. c.detail) or "")
    end
  end
  for _, h in ipairs(run.hooks_run) do
    if h.result == "failed" then failed[#failed + 1] = "hook " .. h.name .. " failed — " .. tostring(h.error) end
  end
  for _, b in ipairs(run.doc and run.doc.budgets or {}) do
    if b.status == "fail" then failed[#failed + 1] = "budget " .. b.probe .. " " .. b.key .. ": " .. b.message end
  end
  for _, e in ipairs(run.output_errors or {}) do failed[#failed + 1] = "output not written: " .. e end
  for _, l in ipairs(watch_report.problems(run)) do failed[#failed + 1] = l end
  if run.steady and run.steady.failure then failed[#failed + 1] = run.steady.failure end
  if #failed > 0 then
    p("problems:")
    for _, l in ipairs(failed) do p("  %s", run:redact(l)) end
  end
  for _, phase in ipairs { "start", "end" } do
    local st = run.steady and run.steady[phase]
    if st and st.result ~= "off" then p("steady state at the %s: %s", phase, steady.describe(st)) end
  end
  if run.aborted then p("aborted: the partial report was written") end
  p("report: %s/report.json, report.html, junit.xml, samples.jsonl", run.out)
  io.stdout:write(table.concat(out, "\n"), "\n")
  io.stdout:flush()
end

return M
