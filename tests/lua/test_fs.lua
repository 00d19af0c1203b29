-- test_fs.lua — upgrun.fs: atomic whole-file writes and checked buffered
-- files. /dev/full (ENOSPC on every write) stands in for a full disk; the
-- tmpfs test is tests/integration/test_full_disk.lua.
local T = require "testlib"
local fs = require "upgrun.fs"

local dir = T.tmpdir()

local read = T.read

T.case("write_file replaces a file whole, leaves no temporary file", function()
  T.eq(fs.write_file(dir .. "/a.json", "one"), true)
  T.eq(read(dir .. "/a.json"), "one")
  T.eq(fs.write_file(dir .. "/a.json", string.rep("x", 200000)), true)
  T.eq(#read(dir .. "/a.json"), 200000)
  local p = io.popen("ls -a '" .. dir .. "'")
  local listing = p:read("a")
  p:close()
  T.ok(not listing:find("tmp"), listing)
end)

T.case("write_file into a missing directory: nil and a message naming the file", function()
  local ok, err = fs.write_file(dir .. "/nope/b.json", "x")
  T.eq(ok, nil)
  T.ok(err:find("nope/b.json", 1, true) and err:find("No such file", 1, true), err)
end)

T.case("a file: buffered writes, flush, sync, close", function()
  local f = assert(fs.open(dir .. "/c.jsonl"))
  for i = 1, 10000 do T.eq(f:write(i .. "\n"), true) end
  T.eq(f:flush(), true)
  T.eq(f:write("end\n"), true)
  T.eq(f:sync(), true)
  T.eq(f:close(), true)
  T.eq(f:close(), true, "closing twice is fine")
  local text = read(dir .. "/c.jsonl")
  T.ok(text:find("^1\n2\n") and text:find("10000\nend\n$"), "content in order")
  local _, err = f:write("late")
  T.ok(err and err:find("closed", 1, true), tostring(err))
end)

T.case("write(s, ...) appends every string; write_json writes one JSON line in field order", function()
  local cjson = require "cjson"
  local f = assert(fs.open(dir .. "/d.jsonl"))
  T.eq(f:write("a", "b", 3, "\n"), true)
  local fields = { "probe", "probe", "t_send", "t", "n", "n", "ok", "ok", "gone", "gone", "msg", "msg" }
  local nasty = "quote\" back\\ nl\n tab\t ctl\1 del\127 utf8 \u{e9} slash/"
  T.eq(f:write_json({ probe = "api", t = 0.1234567891234, n = 200, ok = false, msg = nasty }, fields), true)
  T.eq(f:write_json({ probe = "x", t = 1 / 0 }, fields), true)
  T.eq(f:write_json({}, fields), true)
  T.raises("cannot encode a table", f.write_json, f, { probe = {} }, fields)
  T.eq(f:close(), true)
  local lines = {}
  for l in io.lines(dir .. "/d.jsonl") do lines[#lines + 1] = l end
  T.eq(#lines, 4, "no partial line from the failed call")
  T.eq(lines[1], "ab3")
  T.eq(lines[2]:sub(1, 47), '{"probe":"api","t_send":0.1234567891,"n":200,"o')
  local doc = cjson.decode(lines[2])
  T.eq(doc.msg, nasty); T.eq(doc.ok, false); T.eq(doc.n, 200); T.eq(doc.gone, nil)
  T.eq(lines[3], '{"probe":"x","t_send":null}')
  T.eq(lines[4], "{}")
end)

T.case("a full device: the flush fails with ENOSPC and the error sticks", function()
  local f = assert(fs.open("/dev/full"))
  T.eq(f:write("hello\n"), true, "buffered")
  local ok, err = f:flush()
  T.eq(ok, nil)
  T.ok(err:find("write /dev/full: No space left on device", 1, true), err)
  local _, err2 = f:write("more")
  T.eq(err2, err, "sticky")
  local cok, cerr = f:close()
  T.eq(cok, nil)
  T.eq(cerr, err)
  -- a big write fails at once (past the buffer)
  local g = assert(fs.open("/dev/full"))
  local wok, werr = g:write(string.rep("x", 100000))
  T.eq(wok, nil)
  T.ok(werr:find("No space left", 1, true), werr)
  g:close()
end)

T.case("open of an unwritable path: nil, err", function()
  local f, err = fs.open(dir .. "/nope/d")
  T.eq(f, nil)
  T.ok(err:find("open ", 1, true), err)
end)

T.case("isatty and term_size: false and nil on a pipe, true on a pseudo-terminal (script(1))", function()
  local proc = require "upgrun.proc"
  local bin = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
  local code = 'local fs = require "upgrun.fs"; local c, r = fs.term_size(1); '
    .. 'print(tostring(fs.isatty(1)) .. " " .. tostring(c) .. " " .. tostring(r))'
  local r = proc.run({ bin, "-e", code }, { timeout = 30 })
  T.eq(r.status, 0, r.stderr)
  T.eq(r.stdout, "false nil nil\n", "stdout is a pipe")
  -- script(1) runs the command on a new pseudo-terminal; stty gives it a size first
  local shell = require "upgrun.shell"
  r = proc.run({ "script", "-qec", "stty cols 97 rows 31; " .. shell.join { bin, "-e", code }, "/dev/null" },
               { timeout = 30 })
  T.eq(r.status, 0, r.stderr)
  T.ok(r.stdout:find("true 97 31", 1, true), "a terminal of 97x31: " .. r.stdout)
  T.raises("not a file descriptor", fs.isatty, -1)
end)

os.execute("rm -rf '" .. dir .. "'")
return T.done()
