-- upgrun.report — turns a finished (or aborted) run into its outputs:
-- analyse(run) computes outages, downtime per probe and per step, latency per
-- stage and budget verdicts (with upgrun.outages); write_all(run) writes
-- report.json, junit.xml and report.html into the output directory;
-- write_sample(run, s) appends one line to samples.jsonl as samples arrive;
-- console(run) prints the short summary.
local json = require "upgrun.report.json"
local outages = require "upgrun.outages"

local M = {}
local A = json.array

-- ---------------------------------------------------------------- samples

function M.write_sample(run, s)
  local f = run.samples_file
  if not f then return end
  f:write(json.encode {
    probe = s.probe, t_send = s.t, wall = s.wall, result = s.result, latency = s.latency,
    status = s.status, err = s.err, message = s.message and run:redact(s.message) or nil,
    stage = s.stage, step = s.step,
  }, "\n")
end

-- ---------------------------------------------------------------- analysis

-- Innermost of the given steps: those none of whose children is in the set.
local function innermost(steps)
  local has_child = {}
  for _, st in ipairs(steps) do if st.parent then has_child[st.parent] = true end end
  local out = A {}
  for _, st in ipairs(steps) do if not has_child[st.id] then out[#out + 1] = st.path end end
  return out
end

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

local function analyse_probe(run, p, steps)
  local outs = outages.find(p.samples)
  for _, o in ipairs(outs) do
    local during = outages.steps_during(o.start, o["end"], steps)
    o.steps = innermost(during)
    o.all_steps = all_paths(during)
  end
  local down, longest, unc = outages.downtime(outs)
  local per = outages.downtime_per_step(outs, steps, run.run_end)
  local per_step = A {}
  for _, st in ipairs(steps) do
    if per[st.id] then per_step[#per_step + 1] = { step = st.path, id = st.id, stage = st.stage,
      seconds = per[st.id] } end
  end
  local by_stage = outages.latency_by_stage(p.samples, p.baseline)
  local counts = { ok = 0, fail = 0, unknown = 0, skipped = 0, cancelled = 0 }
  local ok_lat = {}
  for _, s in ipairs(p.samples) do
    counts[s.result] = (counts[s.result] or 0) + 1
    if s.result == "ok" then ok_lat[#ok_lat + 1] = s.latency end
  end
  local active = p:active_time(run.run_end)
  local m = { downtime = down, longest = longest }
  for _, q in ipairs { "p50", "p95", "p99" } do m[q .. "_ratio"] = outages.worst_ratio(by_stage, q) end
  local budget = A(outages.evaluate_budget(p.budget, m))
  for _, b in ipairs(budget) do
    b.probe = p.name
    if b.status == "fail" then run.budget_failures = run.budget_failures + 1 end
  end
  return {
    name = p.name, description = p.description, interval = p.interval, configured_rate = 1 / p.interval,
    timeout = p.timeout, max_in_flight = p.max_in_flight, stages = p.stages and A(p.stages) or "all",
    sent = p.sent, skipped = p.skipped, counts = counts, active_time = active,
    rate = active > 0 and p.sent / active or 0,
    latency = outages.stats(ok_lat), latency_by_stage = by_stage, baseline = p.baseline,
    outages = A(outs), downtime = down, downtime_uncertainty = unc, longest_outage = longest,
    downtime_per_step = per_step, budget = budget, degradation = m,
  }
end

function M.analyse(run)
  local steps = timed_steps(run)
  run.probe_reports = A {}
  local all = {}
  for _, p in ipairs(run.s.probes) do
    local pr = analyse_probe(run, p, steps)
    run.probe_reports[#run.probe_reports + 1] = pr
    for _, o in ipairs(pr.outages) do all[#all + 1] = o end
  end
  -- Scenario level: the union of every probe's outages (time during which at
  -- least one API was out) and the worst degradation of any probe.
  local union = outages.union(all)
  for _, w in ipairs(union) do
    local during = outages.steps_during(w.start, w["end"], steps)
    w.steps = innermost(during)
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
  run.overall = { downtime = down, longest_outage = longest, windows = A(union), budget = budget, degradation = m }
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
    format = "upgrun-report/1",
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
    budgets = budgets, resources = resources, timeline = timeline,
    resumed = run.resumed, -- --resume / --from-step: {from, from_step, passed_earlier}
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

function M.write_all(run)
  local doc = redact_deep(run, M.document(run))
  run.doc = doc
  local ok, err = json.write_file(run.out .. "/report.json", doc, " ")
  if not ok then error("cannot write report.json: " .. tostring(err)) end
  if run.samples_file then run.samples_file:close(); run.samples_file = nil end
  local junit = require("upgrun.report.junit").render(doc)
  local f = assert(io.open(run.out .. "/junit.xml", "w"))
  f:write(junit)
  f:close()
  local html = require("upgrun.report.html").render(doc, run)
  f = assert(io.open(run.out .. "/report.html", "w"))
  f:write(html)
  f:close()
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
    if #run.probe_reports > 1 then p("  %-28s %7.3f s", "(any API)", run.overall.downtime) end
  end
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
  if #failed > 0 then
    p("problems:")
    for _, l in ipairs(failed) do p("  %s", run:redact(l)) end
  end
  if run.aborted then p("aborted: the partial report was written") end
  p("report: %s/report.json, report.html, junit.xml, samples.jsonl", run.out)
  io.stdout:write(table.concat(out, "\n"), "\n")
  io.stdout:flush()
end

return M
