-- upgrun.runner — runs a declared scenario (upgrun.scenario) from its command
-- line: parses the options and parameters (runner.params), loads --hooks
-- files, checks the scenario for typos (runner.validate) and the -i file,
-- then either prints the plan (runner.plan, a dry run) or prepares the output
-- directory (runner.outdir) and executes it (runner.executor) with the
-- console listening to the timeline (runner.console; runner.live on a
-- terminal), and writes the reports.
-- --resume and --from-step (runner.resume) choose the top-level steps not run.
--
--   runner.main(s, args, path) -> exit code
local scenario = require "upgrun.scenario"
local errors = require "upgrun.errors"
local ledger = require "upgrun.ledger"
local params = require "upgrun.runner.params"
local Run = require "upgrun.runner.run"
local context = require "upgrun.runner.context"
local executor = require "upgrun.runner.executor"
local plan = require "upgrun.runner.plan"
local console = require "upgrun.runner.console"
local live = require "upgrun.runner.live"
local outdir = require "upgrun.runner.outdir"
local validate = require "upgrun.runner.validate"
local jsonlog = require "upgrun.runner.jsonlog"
local resume = require "upgrun.runner.resume"
local probing = require "upgrun.probing"
local watching = require "upgrun.watching"
local sample_log = require "upgrun.sample_log"
local report = require "upgrun.report"
local task = require "upgrun.task"

local EXIT = scenario.EXIT
local M = {}

local function fail(msg)
  io.stderr:write("upgrun: ", msg, "\n")
  return EXIT.usage
end

-- Everything that can be checked before a run starts; returns true or nil, message.
local function check_inputs(s, opts)
  for _, hf in ipairs(opts.hooks) do
    local ok, e = pcall(params.load_hooks_file, s, hf)
    if not ok then return nil, errors.message(e) end
  end
  if #s.stages == 0 then return nil, "scenario " .. s.name .. " (" .. s.declared_at .. ") declares no stages" end
  local files = {}
  local inventories = type(opts.inventory) == "table" and opts.inventory or { opts.inventory }
  for _, f in ipairs(inventories) do
    if not f:find(",", 1, true) then files[#files + 1] = { "-i", f } end -- "h1,h2" is a host list
  end
  if opts.ledger then files[#files + 1] = { "--ledger", opts.ledger } end
  for _, o in ipairs(files) do
    local h = io.open(o[2], "r")
    if not h then return nil, string.format("%s %s: no such file or not readable", o[1], o[2]) end
    h:close()
  end
  return true
end

local function run_plan(s, run)
  run.ledger = ledger.new(nil)
  run.exec = plan.new(run)
  if run.opts.inventory then
    local inv, err = run:load_inventory()
    if not inv then return fail(err) end
    run.inventory = plan.dry_inventory(run.exec, inv)
  else
    run.inventory = plan.symbolic_inventory()
  end
  local ctx = context.new(run)
  local ok, err = executor.run_setups(run, ctx)
  if not ok then return fail(s.name .. ": " .. err) end
  local vok, verr = validate.scenario(s)
  if not vok then return fail(verr) end
  return run.exec:execute(ctx)
end

local function run_for_real(s, run)
  local opts = run.opts
  -- declaration typos first: nothing is created for a scenario that cannot run
  local vok, verr = validate.scenario(s, true)
  if not vok then return fail(verr) end
  local dir, previous, created = outdir.prepare(opts, s.name)
  if not dir then return fail(previous) end
  run.out = dir
  -- a run stopped before it starts leaves no directory it made behind
  local function fail_early(msg)
    if created then outdir.remove(dir) end
    return fail(msg)
  end
  run.ledger = ledger.new(run.out .. "/ledger.json", { scenario = s.name, started = run.tl:wall(), output = run.out })
  if previous then
    local n = run.ledger:import(previous, run.out .. "/ledger.json (earlier run, --force)")
    run.tl:event("ledger_import", { file = run.out .. "/ledger.json", resources = n })
  end
  local rstate = run.resume_state
  if rstate then
    run.resume_gate = resume.gate(rstate)
    if rstate.dir then
      local file = rstate.dir .. "/ledger.json"
      local h = io.open(file)
      if h then
        h:close()
        local doc, lerr = ledger.read(file)
        if not doc then return fail_early("--resume: " .. lerr) end
        local n = run.ledger:import(doc, file .. " (resumed run)")
        run.tl:event("ledger_import", { file = file, resources = n })
        local cleaned = 0
        for _, r in ipairs(doc.resources) do if r.status == "cleaned" then cleaned = cleaned + 1 end end
        if cleaned > 0 then
          io.stderr:write(string.format("upgrun: warning: run %s cleaned up %d resource%s at its end; steps that "
            .. "passed there are not run again, so later steps will not find them (run with --keep to resume "
            .. "with them)\n", rstate.dir, cleaned, cleaned == 1 and "" or "s"))
        end
      end
    end
  end
  resume.start(run)
  if opts.ledger then
    local doc, lerr = ledger.read(opts.ledger)
    if not doc then return fail_early("--ledger: " .. lerr) end
    local n = run.ledger:import(doc, opts.ledger)
    run.tl:event("ledger_import", { file = opts.ledger, resources = n })
  end

  -- Node commands and service actions (upgrun.nodes' event log) go on the
  -- timeline, when that library is there.
  local nok, nodes = pcall(require, "upgrun.nodes")
  local unsubscribe
  if nok and type(nodes) == "table" and type(nodes.on_event) == "function" then
    unsubscribe = nodes.on_event(function(e) run:node_event(e) end)
  end
  local function unsub() if type(unsubscribe) == "function" then unsubscribe() end end

  if opts.inventory then
    local _, ierr = run:load_inventory() -- before any probe starts: a bad file stops the run here
    if ierr then unsub(); return fail_early(ierr) end
  end
  run.exec = executor.new(run)
  local ctx = context.new(run)
  local ok, err = executor.run_setups(run, ctx)
  if not ok then unsub(); return fail_early(s.name .. ": " .. err) end
  vok, verr = validate.scenario(s) -- again: setup functions may change probes
  if not vok then unsub(); return fail_early(verr) end
  local serr
  run.sample_log, serr = sample_log.open(run.out .. "/samples.jsonl", function(m) return run:redact(m) end)
  if not run.sample_log then unsub(); return fail_early(serr) end
  run.probing = probing.new(s.probes, run.tl, { log = run.sample_log,
    on_event = function(kind, fields) run.tl:event(kind, fields) end })
  run.watching = watching.new(s.watches, run)
  local close_events
  if opts.events then
    local listener, close_or_err = jsonlog.open(opts.events, function(x) return run:redact(x) end)
    if not listener then unsub(); run.sample_log:close(); return fail_early(close_or_err) end
    for _, e in ipairs(run.tl.events) do listener(e) end -- what happened before (ledger imports)
    run.tl:listen(listener)
    close_events = close_or_err
  end
  local view
  if not opts.quiet then
    local color = console.use_color(opts.color)
    if live.wanted() then -- a terminal: lines, and the status block redrawn in place
      view = live.new(run, { verbose = opts.verbose, color = color })
      run.tl:listen(view.listener)
      run.probing:on_outage(function(...) view:outage(...) end)
    else -- plain lines (CI logs): the outage lines too, as they happen
      run.tl:listen(console.listener { verbose = opts.verbose, color = color })
      run.probing:on_outage(function(probe, kind, o, sample)
        io.stdout:write(console.outage_line(run, probe, kind, o, sample, color), "\n")
        io.stdout:flush()
      end)
    end
    io.stdout:write(string.format("upgrun: scenario %s -> %s\n", s.name, run.out))
    if rstate then
      io.stdout:write(string.format("upgrun: %s\n", rstate.from_step and ("from step " .. rstate.from_step
        .. (rstate.dir and (", resuming run " .. rstate.dir) or "")) or ("resuming run " .. rstate.dir
        .. " at its first top-level step that did not pass")))
    end
    io.stdout:flush()
    if view then view:start() end
  end
  local xok, xerr = pcall(run.exec.execute, run.exec, ctx)
  if view then view:stop() end
  if not xok then error(xerr, 0) end
  unsub()
  if close_events then close_events() end
  run.probing:finish() -- samples still in flight are cut at the run's end
  run.watching:finish(run.run_end)
  local missing = run.resume_gate and run.resume_gate:missing()
  if missing then
    run.sample_log:close()
    return fail_early(missing)
  end
  run.resumed = resume.report_field(run)
  -- A signal while Lua computes is raised once, where the code runs: the
  -- analysis is then done again for the aborted run (nothing waits in it).
  local aok, aerr = pcall(report.analyse, run)
  if not aok then
    if not errors.is(aerr, "cancelled") then error(aerr, 0) end
    run.aborted = true
    report.analyse(run)
  end
  if task.aborted() then run.aborted = true end
  run.verdict, run.exit_code = run:verdict()
  local wok, werr = pcall(report.write_all, run)
  if not wok then werr = { errors.message(werr) } end
  for _, e in ipairs(werr) do io.stderr:write("upgrun: output not written: ", e, "\n") end
  if #werr > 0 and run.exit_code == EXIT.passed then run.exit_code = EXIT.failed end
  if task.aborted() and not run.aborted then
    -- A signal came while the reports were written: the process exits 3, so
    -- the report must say aborted too.
    run.aborted = true
    run.verdict, run.exit_code = run:verdict()
    pcall(report.write_all, run)
  end
  if opts.quiet then run.opts.quiet = false end
  report.console(run)
  for _, msg in ipairs(run.scenario_errors) do io.stderr:write("upgrun: ", msg, "\n") end
  if not run.aborted then
    for _, msg in ipairs(validate.unused_hooks(run)) do io.stderr:write("upgrun: warning: ", msg, "\n") end
  end
  return run.exit_code
end

function M.main(s, args, path)
  local ok, opts = pcall(params.parse, s, args)
  if not ok then return fail(errors.message(opts)) end
  if opts.help then
    io.stdout:write(params.USAGE, "\n\nparameters of ", s.name, ":\n", params.help(s), "\n")
    return EXIT.passed
  end
  local rstate, rerr = resume.load(s, opts, path) -- before the checks: it may set -i
  if rerr then return fail(rerr) end
  local iok, ierr = check_inputs(s, opts)
  if not iok then return fail(ierr) end
  local run = Run.new(s, opts, path)
  run.resume_state = rstate
  if opts.plan then return run_plan(s, run) end
  return run_for_real(s, run)
end

return M
