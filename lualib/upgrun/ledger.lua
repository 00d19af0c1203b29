-- upgrun.ledger — persistent resources of a run (a VM booted before the
-- upgrade and checked after it). Each record is written to ledger.json in the
-- output directory as soon as it is made (atomically: tmp file + rename), so
-- nothing is lost if the run is aborted. A later run given `--ledger FILE`
-- imports the earlier records (origin = that file) to verify or clean them.
--
--   ledger:record(kind, id, data) -> rec       e.g. ("server", uuid, {name = ...})
--   ledger:each([kind]) -> iterator over live records (not cleaned up)
--   ledger:get(kind, id), ledger:has(kind)
--   ledger:mark(rec, status, detail)          status: verified|failed|cleaned|kept|...
local json = require "upgrun.report.json"

local M = {}
local Ledger = {}
Ledger.__index = Ledger

-- path: where to write (nil = keep in memory only, e.g. in --plan).
function M.new(path, meta)
  return setmetatable({ path = path, meta = meta or {}, records = {} }, Ledger)
end

-- Reads a ledger file written by an earlier run. Returns the decoded table
-- or nil, message.
function M.read(path)
  local f, err = io.open(path, "r")
  if not f then return nil, "cannot read ledger " .. tostring(err) end
  local text = f:read("a")
  f:close()
  local ok, doc = pcall(json.decode, text)
  if not ok or type(doc) ~= "table" or type(doc.resources) ~= "table" then
    return nil, "ledger " .. path .. " is not a upgrun ledger (" .. tostring(ok and "no resources" or doc) .. ")"
  end
  return doc
end

function Ledger:save()
  if not self.path then return true end
  local doc = { format = "upgrun-ledger/1", run = self.meta, resources = json.array {} }
  for i, r in ipairs(self.records) do doc.resources[i] = r end
  local ok, err = json.write_file(self.path, doc, "  ")
  if not ok then
    -- The previous ledger.json stays as it was; the run fails at the end
    -- (even if a later save succeeds: the record was missing for a while).
    if not self.save_error then
      io.stderr:write("upgrun: cannot write ledger ", self.path, ": ", tostring(err), "\n")
    end
    self.save_error = self.save_error or tostring(err)
  end
  return ok, err
end

-- Records a resource and writes the ledger. `data` must be plain data (no
-- secrets: it ends up in a file).
function Ledger:record(kind, id, data, t)
  assert(type(kind) == "string", "ledger:record(kind, id, data): kind must be a string")
  assert(id ~= nil, "ledger:record: id is required")
  local rec = { kind = kind, id = tostring(id), data = data or {}, status = "created", t = t,
                history = json.array {} }
  self.records[#self.records + 1] = rec
  self:save()
  return rec
end

-- Imports the records of an earlier ledger document (from M.read).
function Ledger:import(doc, origin)
  local n = 0
  for _, r in ipairs(doc.resources) do
    if r.status ~= "cleaned" then
      local rec = { kind = r.kind, id = tostring(r.id), data = r.data or {}, status = "imported",
                    origin = origin, history = json.array {} }
      self.records[#self.records + 1] = rec
      n = n + 1
    end
  end
  self:save()
  return n
end

function Ledger:mark(rec, status, detail, t)
  rec.status = status
  rec.history[#rec.history + 1] = { status = status, detail = detail, t = t }
  self:save()
end

local LIVE = { created = true, imported = true, verified = true, failed = true, kept = true }

function Ledger:each(kind)
  local i = 0
  return function()
    while true do
      i = i + 1
      local r = self.records[i]
      if not r then return nil end
      if (not kind or r.kind == kind) and LIVE[r.status] then return r end
    end
  end
end

function Ledger:get(kind, id)
  for r in self:each(kind) do if r.id == tostring(id) then return r end end
end

function Ledger:has(kind) return self:each(kind)() ~= nil end

return M
