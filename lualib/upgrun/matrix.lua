-- upgrun.matrix — `upgrun matrix MATRIX.yml [options]`: runs the cells of a
-- scenario matrix one after another, each as its own upgrun process writing
-- its own run directory, OUT/<cell id>/. Before each cell the matrix's
-- `before_each` command runs (e.g. a lab reset); a cell whose before_each
-- fails is not run and counts as an error (exit 2). OUT/matrix.json records
-- every cell of this invocation (and the ids of the whole matrix) after each
-- cell, so `upgrun merge` can tell passed, failed, not run and missing apart.
-- The file format and the include/exclude rules: upgrun.matrix.file,
-- upgrun.matrix.expand and docs/ci.md.
local file = require "upgrun.matrix.file"
local expand = require "upgrun.matrix.expand"
local json = require "upgrun.report.json"
local proc = require "upgrun.proc"
local task = require "upgrun.task"
local time = require "upgrun.time"

local M = {}

M.USAGE = [[
usage: upgrun matrix MATRIX.yml [options]
      --list             print the cells (index, id, scenario, parameters); run nothing
      --shard I/N        run only shard I of N (cells I, I+N, I+2N, ... in matrix order)
      --fail-fast        stop after the first cell that does not pass
      --keep-going       run every cell whatever the others gave (the default)
  -o, --output DIR       where the cells' run directories go (default: the file's
                         `output:`, else out/matrix-<name>)
  -q, --quiet            the cells print only their summaries
  -h, --help             this text
exit code: the worst cell's (0 passed, 1 failed, 2 bad config or before_each failed,
3 aborted or timed out); 2 for a bad matrix file or option]]

local VERDICT = { [0] = "passed", [1] = "failed", [2] = "error", [3] = "aborted" }

local function usage_error(msg)
  io.stderr:write("upgrun matrix: ", msg, "\n")
  return 2
end

-- The path of the running upgrun binary (cells run with the same one).
local function self_exe()
  local f = io.open("/proc/self/stat")
  local pid = f and f:read("l"):match("^(%d+)")
  if f then f:close() end
  local r = pid and proc.run({ "readlink", "/proc/" .. pid .. "/exe" }, { timeout = 10 })
  if r and r.status == 0 then return (r.stdout:gsub("%s+$", "")) end
  return "upgrun"
end

local function parse_args(args)
  local o = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local function val()
      i = i + 1
      if args[i] == nil then error(a .. " needs a value", 0) end
      return args[i]
    end
    if a == "--list" then o.list = true
    elseif a == "--shard" then o.shard = val()
    elseif a == "--fail-fast" then o.fail_fast = true
    elseif a == "--keep-going" then o.fail_fast = false
    elseif a == "-o" or a == "--output" then o.output = val()
    elseif a == "-q" or a == "--quiet" then o.quiet = true
    elseif a == "-h" or a == "--help" then o.help = true
    elseif a == "--" then o.file = o.file or args[i + 1]; break
    elseif a:sub(1, 1) == "-" then error("unknown option " .. a, 0)
    elseif o.file then error("one matrix file expected, got " .. o.file .. " and " .. a, 0)
    else o.file = a end
    i = i + 1
  end
  return o
end

local function cell_line(c)
  local parts = {}
  for _, p in ipairs(c.params) do parts[#parts + 1] = p.name .. "=" .. (p.secret and "***" or p.value) end
  local extra = ""
  if c.inventory then extra = extra .. " -i " .. c.inventory end
  if c.cloud then extra = extra .. " --cloud " .. c.cloud end
  return string.format("%3d  %-36s %s%s  %s", c.index, c.id, c.scenario:match("([^/]+)$"), extra,
                       table.concat(parts, " "))
end

-- Runs `before_each` for a cell (sh -c, in the matrix file's directory).
local function before_each(plan, c)
  io.stdout:write(string.format("matrix: cell %s: before_each: %s\n", c.id, plan.before_each_text))
  io.stdout:flush()
  local env = { UPGRUN_MATRIX_CELL = c.id }
  for k, v in pairs(plan.env) do env[k] = v end
  local okr, r, err = pcall(proc.run, { "/bin/sh", "-c", plan.before_each },
                            { timeout = plan.timeout, cwd = plan.dir, env_add = env,
                              stdout = "inherit", stderr = "inherit" })
  if not okr then return false, "before_each stopped: the matrix was aborted", 3 end
  if not r then return false, "before_each did not finish: " .. tostring(err and err.message or err) end
  if r.status ~= 0 then return false, string.format("before_each exited with %s", tostring(r.status)) end
  return true
end

local function run_cell(plan, c, exe, out, quiet)
  local dir = out .. "/" .. c.id
  os.execute("rm -rf '" .. dir:gsub("'", "'\\''") .. "'")
  local argv = { exe, c.scenario, "-o", dir }
  if quiet then argv[#argv + 1] = "-q" end
  if c.inventory then argv[#argv + 1] = "-i"; argv[#argv + 1] = c.inventory end
  if c.cloud then argv[#argv + 1] = "--cloud"; argv[#argv + 1] = c.cloud end
  for _, p in ipairs(c.params) do argv[#argv + 1] = "--set"; argv[#argv + 1] = p.name .. "=" .. p.value end
  local env = { UPGRUN_MATRIX_CELL = c.id }
  for k, v in pairs(plan.env) do env[k] = v end
  -- SIGINT/SIGTERM of the matrix cancels this wait (the child is stopped):
  -- the cell then counts as aborted and no further cell starts
  local okr, r, err = pcall(proc.run, argv, { timeout = plan.timeout, env_add = env, stdout = "inherit",
                                              stderr = "inherit" })
  if not okr then
    return 3, "stopped: the matrix was aborted (" .. tostring(type(r) == "table" and r.message or r) .. ")"
  end
  if not r then
    return 3, (err and err.kind == "timeout") and string.format("timed out after %g s", plan.timeout)
                or ("did not finish: " .. tostring(err and err.message or err))
  end
  local code = math.tointeger(r.status) or 3
  if code < 0 or code > 3 then code = 3 end -- killed by a signal
  return code
end

local function mkdir_p(dir)
  local ok = os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  return ok
end

function M.main(...)
  local ok, o = pcall(parse_args, { ... })
  if not ok then return usage_error(o .. "\n" .. M.USAGE) end
  if o.help then io.stdout:write(M.USAGE, "\n"); return 0 end
  if not o.file then return usage_error("a matrix file is needed\n" .. M.USAGE) end
  local si, sn = 1, 1
  if o.shard then
    si, sn = expand.parse_shard(o.shard)
    if not si then return usage_error(sn) end
  end
  local okp, plan = pcall(file.load, o.file)
  if not okp then return usage_error(tostring(plan)) end
  local cells = expand.shard(plan.cells, si, sn)
  if o.list then
    for _, c in ipairs(cells) do io.stdout:write(cell_line(c), "\n") end
    return 0
  end
  local fail_fast = plan.fail_fast
  if o.fail_fast ~= nil then fail_fast = o.fail_fast end
  local out = o.output or plan.output or ("out/matrix-" .. plan.name)
  if not mkdir_p(out) then return usage_error("cannot create " .. out) end

  local all_ids = {}
  for i, c in ipairs(plan.cells) do all_ids[i] = c.id end
  local record = {
    format = "upgrun-matrix/1", matrix = plan.name, file = plan.path, shard = { index = si, count = sn },
    all_cells = json.array(all_ids), cells = json.array {},
  }
  for _, c in ipairs(cells) do
    local pv = {}
    for _, p in ipairs(c.params) do pv[p.name] = p.secret and "***" or p.value end
    record.cells[#record.cells + 1] = { id = c.id, index = c.index, dir = c.id, scenario = c.scenario,
                                        inventory = c.inventory, cloud = c.cloud, params = pv, verdict = "not run" }
  end
  local function save() assert(json.write_file(out .. "/matrix.json", record, "  ")) end
  save()

  local exe = self_exe()
  local worst, stopped = 0, false
  for k, c in ipairs(cells) do
    local rec = record.cells[k]
    if task.aborted() then
      rec.reason = "the matrix was aborted (SIGINT/SIGTERM)"
      worst = math.max(worst, 3)
    elseif stopped then
      rec.reason = "--fail-fast: an earlier cell did not pass"
    else
      io.stdout:write(string.format("\nmatrix %s: cell %d/%d %s\n", plan.name, k, #cells, c.id))
      io.stdout:flush()
      local t0 = time.mono()
      rec.started = os.date("!%Y-%m-%dT%H:%M:%SZ")
      local code, reason = nil, nil
      if plan.before_each then
        local okb, why, bcode = before_each(plan, c)
        if not okb then code, reason = bcode or 2, why end
      end
      if not code then code, reason = run_cell(plan, c, exe, out, o.quiet) end
      rec.exit_code, rec.verdict, rec.reason = code, VERDICT[code], reason
      rec.duration = time.mono() - t0
      if code > worst then worst = code end
      save()
      io.stdout:write(string.format("matrix %s: cell %s: %s (exit %d)%s\n", plan.name, c.id, rec.verdict, code,
                                    reason and (": " .. reason) or ""))
      if code ~= 0 and fail_fast then stopped = true end
    end
  end
  save()
  io.stdout:write(string.format("\nmatrix %s%s: %d cell(s)\n", plan.name,
                                sn > 1 and string.format(" shard %d/%d", si, sn) or "", #cells))
  for _, rec in ipairs(record.cells) do
    io.stdout:write(string.format("  %-40s %s\n", rec.id, rec.verdict ..
                                  (rec.exit_code and string.format(" (exit %d)", rec.exit_code) or "")))
  end
  io.stdout:write("results: ", out, "/ (merge with: upgrun merge ", out, ")\n")
  if stopped and worst == 0 then worst = 1 end
  return worst
end

return M
