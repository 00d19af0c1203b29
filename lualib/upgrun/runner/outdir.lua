-- upgrun.runner.outdir — the output directory of a run. A run never
-- overwrites another: -o DIR must be new or empty unless --force (and then
-- the records of a ledger.json already there are carried over, never
-- dropped); the default out/<scenario>-<UTC time with ms>-<pid> is created
-- atomically (mkdir), with -2, -3 ... appended if it exists all the same.
--
--   outdir.prepare(opts, scenario_name) -> dir, previous_ledger_doc, created | nil, message
--   outdir.remove(dir)    removes a directory prepare created (a run that did not start)
local shell = require "upgrun.shell"
local time = require "upgrun.time"
local ledger = require "upgrun.ledger"

local M = {}

local function pid()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local line = f:read("l")
  f:close()
  return line and line:match("^(%d+)")
end

-- A UTC stamp with milliseconds: 20260102T030405.678Z.
function M.stamp(epoch)
  epoch = epoch or time.now()
  local s = math.floor(epoch)
  local ms = math.floor((epoch - s) * 1000)
  return os.date("!%Y%m%dT%H%M%S", s) .. string.format(".%03dZ", ms)
end

function M.default_name(name) return "out/" .. name .. "-" .. M.stamp() .. "-" .. (pid() or "0") end

local function sh_ok(cmd) return os.execute(cmd .. " 2>/dev/null") == true end

local function entries(dir)
  local p = io.popen("ls -A " .. shell.quote(dir) .. " 2>/dev/null")
  if not p then return {} end
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function writable(dir)
  local probe = dir .. "/.upgrun-write-test"
  local f = io.open(probe, "w")
  if not f then return nil, "output directory " .. dir .. " is not writable" end
  f:close()
  os.remove(probe)
  return true
end

function M.prepare(opts, name)
  if not opts.output then
    local base = M.default_name(name)
    if not sh_ok("mkdir -p " .. shell.quote(base:match("^(.*)/") or ".")) then
      return nil, "cannot create output directory " .. base
    end
    local dir = base
    for i = 2, 100 do
      if sh_ok("mkdir " .. shell.quote(dir)) then
        local ok, err = writable(dir)
        if not ok then return nil, err end
        return dir, nil, true
      end
      dir = base .. "-" .. i
    end
    return nil, "cannot create a new output directory " .. base
  end
  local dir = opts.output
  if sh_ok("test -e " .. shell.quote(dir) .. " -a ! -d " .. shell.quote(dir)) then
    return nil, "output directory " .. dir .. " exists and is not a directory"
  end
  local created = not sh_ok("test -d " .. shell.quote(dir))
  local existing = entries(dir)
  local previous
  if #existing > 0 then
    if not opts.force then
      return nil, string.format("output directory %s is not empty (%d entr%s, e.g. %s): a run never "
        .. "overwrites another; give a new -o DIR, or --force to write into it", dir, #existing,
        #existing == 1 and "y" or "ies", existing[1])
    end
    local f = io.open(dir .. "/ledger.json")
    if f then
      f:close()
      local doc, err = ledger.read(dir .. "/ledger.json")
      if not doc then return nil, "--force: the ledger already in " .. dir .. " cannot be read (" .. err
        .. "); move it away first so no record is lost" end
      previous = doc
    end
  end
  if not sh_ok("mkdir -p " .. shell.quote(dir)) then return nil, "cannot create output directory " .. dir end
  local ok, err = writable(dir)
  if not ok then return nil, err end
  return dir, previous, created
end

function M.remove(dir) os.execute("rm -rf " .. shell.quote(dir) .. " 2>/dev/null") end

return M
