-- upgrun.merge — `upgrun merge DIR... [-o OUT]`: merges runs into one set of
-- results for CI: OUT/junit.xml (a testsuite per cell), OUT/summary.md
-- (Markdown for a job summary or a merge-request comment, also printed),
-- OUT/index.html (links to each cell's report.html) and OUT/merged.json.
-- A DIR is a run directory (report.json) or the output of `upgrun matrix`
-- (matrix.json: its cells; a cell with no report counts with its recorded
-- exit code; a cell of the matrix that no merged shard ran is "missing").
-- A DIR that is neither is named, skipped with a warning and never counted.
-- Runs are read through report.json's documented fields only.
-- Exit code: the worst cell's (missing cells count as 2); 2 if nothing merged.
local cjson = require "cjson"
local json = require "upgrun.report.json"
local proc = require "upgrun.proc"
local render = require "upgrun.merge.render"
local junit = require "upgrun.merge.junit"

local M = {}

M.USAGE = [[
usage: upgrun merge DIR... [-o OUT]
  DIR            a run directory (report.json) or an `upgrun matrix` output (matrix.json)
  -o, --output   where junit.xml, summary.md, index.html and merged.json go (default: merged)
exit code: the worst cell's (0 passed, 1 failed, 2 error or missing, 3 aborted); 2 if no run]]

local VERDICT_CODE = { passed = 0, failed = 1, error = 2, aborted = 3 }

local function read_json(path)
  local f = io.open(path)
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local ok, doc = pcall(cjson.decode, text)
  if not ok then return nil, path .. ": not JSON (" .. tostring(doc) .. ")" end
  return doc
end

local function read_report(dir)
  local doc, err = read_json(dir .. "/report.json")
  if not doc then return nil, err end
  if type(doc) ~= "table" or doc.format ~= "upgrun-report/1" then
    local format = type(doc) == "table" and doc.format
    return nil, dir .. "/report.json: not an upgrun report (format " .. tostring(format) .. ")"
  end
  return doc
end

local function is_dir(path)
  local f = io.open(path .. "/.")
  if f then f:close(); return true end
  return false
end

local function cell_from_report(id, dir, doc, extra)
  local code = math.tointeger(doc.exit_code) or VERDICT_CODE[doc.verdict] or 2
  local c = { id = id, dir = dir, doc = doc, exit_code = code, verdict = doc.verdict or "error", set = {} }
  -- the parameters given on the command line (--set k=v; secrets are *** there)
  for _, kv in ipairs((doc.run or {}).set or {}) do
    local k, v = tostring(kv):match("^([^=]+)=(.*)$")
    if k then c.set[k] = v end
  end
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

-- Collects the cells of the inputs. Returns cells, warnings, matrices
-- ({name = {all = ids, seen = {id = true}}}).
function M.collect(inputs)
  local cells, warnings, matrices = {}, {}, {}
  local function warn(msg) warnings[#warnings + 1] = msg; io.stderr:write("upgrun merge: warning: ", msg, "\n") end
  for _, input in ipairs(inputs) do
    local dir = input:gsub("/+$", "")
    if dir == "" then dir = "/" end
    local mdoc, merr = read_json(dir .. "/matrix.json")
    local rdoc, rerr = read_report(dir)
    if mdoc and type(mdoc) == "table" and mdoc.format == "upgrun-matrix/1" then
      local key = tostring(mdoc.matrix) .. " (" .. tostring(mdoc.file) .. ")"
      local m = matrices[key] or { name = mdoc.matrix, all = mdoc.all_cells or {}, seen = {}, shards = {} }
      matrices[key] = m
      m.shards[#m.shards + 1] = mdoc.shard and string.format("%s/%s", math.tointeger(mdoc.shard.index),
                                                                  math.tointeger(mdoc.shard.count)) or "?"
      for _, rec in ipairs(mdoc.cells or {}) do
        local cdir = dir .. "/" .. tostring(rec.dir or rec.id)
        m.seen[rec.id] = true
        local extra = { matrix = mdoc.matrix, source = dir, reason = rec.reason, set = rec.params,
                        index = rec.index }
        local doc, err = read_report(cdir)
        if doc then
          cells[#cells + 1] = cell_from_report(rec.id, cdir, doc, extra)
        else
          local code = math.tointeger(rec.exit_code)
          local verdict = rec.verdict or "not run"
          if code == nil then verdict = "not run"; code = nil
          elseif code == 0 then
            -- the run said it passed but its report is gone: never counted as passed
            code, verdict = 2, "error"
          end
          cells[#cells + 1] = { id = rec.id, dir = cdir, exit_code = code, verdict = verdict, set = rec.params or {},
                                matrix = mdoc.matrix, source = dir, index = rec.index,
                                reason = rec.reason or err or ("no report.json in " .. cdir) }
        end
      end
    elseif rdoc then
      cells[#cells + 1] = cell_from_report(dir:match("([^/]+)$") or dir, dir, rdoc, { source = dir })
    elseif not is_dir(dir) then
      warn(dir .. ": no such directory; skipped")
    else
      warn(string.format("%s: not a run (%s); skipped, not counted", dir,
                         merr or rerr or "no report.json or matrix.json"))
    end
  end
  -- cells of a matrix no merged shard ran
  for _, m in pairs(matrices) do
    for idx, id in ipairs(m.all) do
      if not m.seen[id] then
        cells[#cells + 1] = { id = id, exit_code = 2, verdict = "missing", set = {}, matrix = m.name, index = idx,
                              reason = "in matrix " .. tostring(m.name) .. " but in none of the merged shards ("
                                .. table.concat(m.shards, ", ") .. ")" }
      end
    end
  end
  -- the cells of a matrix in matrix order (whatever shard ran them), at the
  -- place of the matrix's first cell; other runs in the order given
  local group, seq = {}, {}
  for i, c in ipairs(cells) do
    local g = c.matrix ~= nil and ("m:" .. tostring(c.matrix)) or ("r:" .. i)
    if not group[g] then group[g] = i end
    seq[c] = { group[g], c.index or 0, i }
  end
  table.sort(cells, function(a, b)
    local x, y = seq[a], seq[b]
    for k = 1, 3 do if x[k] ~= y[k] then return x[k] < y[k] end end
    return false
  end)
  -- one id per cell
  local count = {}
  for _, c in ipairs(cells) do
    count[c.id] = (count[c.id] or 0) + 1
    if count[c.id] > 1 then
      warn(string.format("cell %s appears more than once (%s); listed as %s#%d", c.id, tostring(c.source),
                         c.id, count[c.id]))
      c.id = c.id .. "#" .. count[c.id]
    end
  end
  return cells, warnings, matrices
end

-- The exit code of a merge: the worst cell's; a cell not run (fail-fast)
-- counts as 1, a missing one as 2.
function M.exit_code(cells)
  if #cells == 0 then return 2 end
  local worst = 0
  for _, c in ipairs(cells) do
    local code = c.exit_code
    if code == nil then code = 1 end
    if code > worst then worst = code end
  end
  return worst
end

-- Relative path from directory `from` to `to` (both made absolute).
local function relpath(from, to)
  local r = proc.run({ "realpath", "-m", "--relative-to=" .. from, to }, { timeout = 10 })
  if r and r.status == 0 then return (r.stdout:gsub("%s+$", "")) end
  return to
end

local function write(path, text)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

function M.main(...)
  local args, out = { ... }, "merged"
  local inputs = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-o" or a == "--output" then
      i = i + 1
      out = args[i]
      if not out then io.stderr:write("upgrun merge: ", a, " needs a value\n"); return 2 end
    elseif a == "-h" or a == "--help" then io.stdout:write(M.USAGE, "\n"); return 0
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      io.stderr:write("upgrun merge: unknown option ", a, "\n", M.USAGE, "\n"); return 2
    else inputs[#inputs + 1] = a end
    i = i + 1
  end
  if #inputs == 0 then io.stderr:write(M.USAGE, "\n"); return 2 end
  local cells, warnings = M.collect(inputs)
  if #cells == 0 then
    io.stderr:write("upgrun merge: no run among ", table.concat(inputs, " "), "\n")
    return 2
  end
  if not os.execute("mkdir -p '" .. out:gsub("'", "'\\''") .. "'") then
    io.stderr:write("upgrun merge: cannot create ", out, "\n"); return 2
  end
  for _, c in ipairs(cells) do
    if c.dir then c.link = relpath(out, c.dir .. "/report.html") end
  end
  local code = M.exit_code(cells)
  local md = render.markdown(cells, warnings, code)
  write(out .. "/summary.md", md)
  write(out .. "/index.html", render.html(cells, warnings, code))
  write(out .. "/junit.xml", junit.render(cells))
  assert(json.write_file(out .. "/merged.json", render.data(cells, warnings, code), "  "))
  io.stdout:write(md)
  io.stdout:write("\nmerged: ", out, "/summary.md, index.html, junit.xml, merged.json\n")
  return code
end

return M
