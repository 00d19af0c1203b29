-- test_full_disk.lua — outputs on a full file system (a small tmpfs mounted
-- by the test; needs root): the run fails (exit 1, or 3 when aborted) naming
-- each output it could not write on stderr; ledger.json keeps its previous
-- complete content; no output is left truncated (tmp + fsync + rename).
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local time = require "upgrun.time"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FIX = T.src("tests/integration/fixtures/scenarios/")

local function sh(cmd)
  local r = proc.run({ "sh", "-c", cmd }, { timeout = 30 })
  return r.status == 0, (r.stdout or "") .. (r.stderr or "")
end

-- Mounts a tmpfs of `size` on a new directory; returns it.
local function small_disk(size)
  local dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p '" .. dir .. "'"))
  local ok, out = sh("mount -t tmpfs -o size=" .. size .. " upgrun-test '" .. dir .. "'")
  if not ok then T.fail("cannot mount a tmpfs (this test needs root): " .. out) end
  return dir
end

local function unmount(dir) sh("umount '" .. dir .. "' && rmdir '" .. dir .. "'") end

local read = T.read

-- Every output present is complete; no temporary file is left behind.
local function outputs_whole(out)
  for _, name in ipairs { "report.json", "ledger.json" } do
    local text = read(out .. "/" .. name)
    if text then T.ok(pcall(cjson.decode, text), name .. " is complete JSON") end
  end
  local ok, listing = sh("ls -a '" .. out .. "'")
  T.ok(ok)
  T.ok(not listing:find("%.tmp"), "no temporary file left: " .. listing)
  local samples = read(out .. "/samples.jsonl") or ""
  for line in samples:gmatch("[^\n]+") do
    if not pcall(cjson.decode, line) then
      -- only the last line may be cut (the disk filled mid-buffer)
      T.ok(samples:sub(-#line - 1) == line .. "\n" or samples:sub(-#line) == line, "a cut line is the last one")
    end
  end
end

T.case("a full disk fails the run, names the outputs and keeps the previous ledger", function()
  local dir = small_disk("512k")
  local out = dir .. "/out"
  local r = proc.run({ BIN, FIX .. "full_disk.lua", "-o", out, "-q" }, { timeout = 60 })
  local err = r.stderr or ""
  T.eq(r.status, 1, "exit code; stderr: " .. err)
  T.ok(err:find("ledger.json", 1, true), "stderr names ledger.json: " .. err)
  T.ok(err:find("No space left on device", 1, true), "stderr says why: " .. err)
  T.ok(err:find("output not written: report.json", 1, true), "stderr names report.json: " .. err)
  T.ok(err:find("samples.jsonl", 1, true), "stderr names samples.jsonl: " .. err)
  local ledger = cjson.decode((assert(read(out .. "/ledger.json"), "the previous ledger.json is there")))
  T.eq(#ledger.resources, 1, "the previous ledger, intact")
  T.eq(ledger.resources[1].id, "vm-1")
  outputs_whole(out)
  -- with room again, the same run writes everything and passes
  os.remove(out .. "/filler")
  unmount(dir)
end)

T.case("the reports are written when there is room; report.json says which output failed", function()
  local dir = small_disk("512k")
  local out = dir .. "/out"
  -- the filler is removed as soon as it is complete: only writes made while the
  -- disk was full fail (the ledger save of vm-2 and samples.jsonl flushes)
  local p = proc.spawn { argv = { BIN, FIX .. "full_disk.lua", "-o", out, "--set", "wait=3" }, stdout = "capture",
                         stderr = "capture" }
  local seen
  for _ = 1, 200 do
    local line = p:read_line(20)
    if not line then break end
    if line:find("DISK FULL", 1, true) then seen = true; break end
  end
  T.ok(seen, "the disk was filled")
  time.sleep(1.5) -- a flush of samples.jsonl (every second) meets the full disk
  os.remove(out .. "/filler")
  local r = p:wait(30)
  T.eq(r.status, 1)
  local doc = cjson.decode((assert(read(out .. "/report.json"), "report.json written once there is room")))
  T.valid_report(out)
  T.eq(doc.verdict, "failed")
  T.eq(doc.exit_code, 1)
  local names = table.concat(doc.output_errors or {}, "\n")
  T.ok(names:find("ledger.json", 1, true), "report names ledger.json: " .. names)
  T.ok(names:find("samples.jsonl", 1, true), "report names samples.jsonl: " .. names)
  outputs_whole(out)
  unmount(dir)
end)

T.case("aborted on a full disk: exit 3, the outputs named", function()
  local dir = small_disk("512k")
  local out = dir .. "/out"
  local p = proc.spawn { argv = { BIN, FIX .. "full_disk.lua", "-o", out, "--set", "wait=30" }, stdout = "capture",
                         stderr = "capture" }
  local seen
  for _ = 1, 200 do
    local line = p:read_line(20)
    if not line then break end
    if line:find("DISK FULL", 1, true) then seen = true; break end
  end
  T.ok(seen, "the disk was filled")
  time.sleep(0.3)
  p:kill("INT")
  local r = p:wait(30)
  T.eq(r.status, 3)
  T.ok((r.stderr or ""):find("output not written: report.json", 1, true), "stderr: " .. tostring(r.stderr))
  local ledger = cjson.decode((assert(read(out .. "/ledger.json"))))
  T.eq(#ledger.resources, 1)
  outputs_whole(out)
  unmount(dir)
end)

return T.done()
