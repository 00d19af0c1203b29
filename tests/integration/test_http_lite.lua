-- test_http_lite — upgrun.http.sampler's two engines side by side: http_lite
-- (the minimal HTTP/1.1 client of host/http_lite.c) against libcurl, the
-- reference. A raw server (tests/integration/rawhttp_server.py) answers what
-- no HTTP library would send — truncated, garbage, HTTP/1.0 to EOF, interim
-- 1xx, odd or oversized chunking, a header section of 120 KB, answers in
-- one-byte pieces, keep-alive connections dropped — and each case is sampled
-- with both engines: the statuses and error kinds must be the same. Then the
-- requests themselves: lite sends what curl sends (method, target, every
-- header (their order aside), the body).
local T = require "testlib"
local cjson = require "cjson"
local http = require "upgrun.http"
local proc = require "upgrun.proc"

local srv = assert(proc.spawn { argv = { "python3", T.src("tests/integration/rawhttp_server.py"), "--lifetime", "300" },
                                stdout = "capture", stderr = "inherit" })
local port = tonumber((srv:read_line(10) or ""):match("^(%d+)$"))
assert(port, "rawhttp_server did not start")
local base = "http://127.0.0.1:" .. port

-- The first `want` answered samples of a sampler on `spec` (skipped slots
-- aside), as "status/kind" strings; and the first error message.
local function sample(spec, want)
  local sp = http.sampler(spec)
  sp:start(1)
  local out, msg = {}, nil
  while true do
    local n = sp:take(5 * T.slack)
    for i = 1, n do
      local _, _, _, _, _, status, kind, message = sp:get(i)
      if kind ~= "skipped" and #out < want then
        out[#out + 1] = status .. "/" .. tostring(kind)
        msg = msg or message
      end
    end
    if #out >= want then sp:stop() end
    if n == 0 and sp:in_flight() == 0 and #out >= want then break end
  end
  local engine = sp:engine()
  sp:close()
  return table.concat(out, " "), msg, engine
end

-- What some cases must give (both engines agreeing on something else would
-- be a shared mistake).
local EXPECT = {
  ok_length = "200/nil", ok_chunked = "200/nil", ok_chunked_split = "200/too_large", http10_eof = "200/nil",
  interim_then_204 = "204/nil", not_modified = "304/nil", status_503 = "503/nil", garbage = "0/protocol",
  empty = "0/closed", truncated_body = "200/closed", bad_length = "200/protocol", big_length = "200/too_large",
  big_head = "200/nil", lf_only = "200/nil", ok_then_drop = "200/nil", trickle_ok_chunked = "200/nil",
}

T.case("every raw answer: lite gives what curl gives (3 samples each, kept-alive connections reused)", function()
  local names = {}
  for n in assert(http.request { url = base .. "/cases", timeout = 5 }).body:gmatch("[^\n]+") do
    names[#names + 1] = n
  end
  T.ok(#names >= 30, "cases: " .. #names)
  local diffs = {}
  for _, name in ipairs(names) do
    local spec = { url = base .. "/case/" .. name, interval = 0.02, max_in_flight = 1, timeout = 3 * T.slack,
                   max_body = 1000 }
    spec.lite = true
    local a, am, ea = sample(spec, 3)
    spec.lite = false
    local b, bm, eb = sample(spec, 3)
    T.eq(ea, "lite"); T.eq(eb, "curl")
    if a ~= b then diffs[#diffs + 1] = string.format("%s: lite %s (%s), curl %s (%s)", name, a, am, b, bm) end
    local want = EXPECT[name]
    if want then T.eq(a, want .. " " .. want .. " " .. want, name) end
  end
  if #diffs > 0 then T.fail(#diffs .. " differences:\n" .. table.concat(diffs, "\n")) end
end)

T.case("lite sends the request curl sends", function()
  local function recorded(key, lite, extra)
    local spec = { url = base .. "/record/" .. key .. "?q=1&r=a%20b", interval = 10, timeout = 5, lite = lite,
                   headers = { ["X-Auth-Token"] = "tok", ["X-Empty"] = "", ["Accept"] = "application/json" } }
    for k, v in pairs(extra or {}) do spec[k] = v end
    T.eq(select(1, sample(spec, 1)), "200/nil")
    local doc = cjson.decode(assert(http.request { url = base .. "/recorded/" .. key, timeout = 5 }).body)
    table.sort(doc.headers, function(x, y) return x[1] < y[1] end)
    return doc
  end
  for _, extra in ipairs { {}, { method = "POST", body = '{"a": 1}' }, { method = "PUT", body = "x" },
                           { method = "HEAD" }, { method = "DELETE" } } do
    local key = (extra.method or "GET"):lower()
    local l, c = recorded(key .. "-lite", true, extra), recorded(key .. "-curl", false, extra)
    T.eq(l.method, extra.method or "GET"); T.eq(l.target, "/record/" .. key .. "-lite?q=1&r=a%20b")
    T.eq(l.version, "HTTP/1.1")
    T.eq(cjson.encode(l.headers), cjson.encode(c.headers), key .. " headers")
    T.eq(l.body, c.body)
    T.eq(l.body, extra.body or "")
  end
end)

T.case("a host name is resolved (localhost); an unknown one is a connect error, as with curl", function()
  local a = sample({ url = "http://localhost:" .. port .. "/case/ok_length", interval = 0.05, timeout = 5 }, 2)
  T.eq(a, "200/nil 200/nil")
  for _, lite in ipairs { true, false } do
    local r, msg = sample({ url = "http://no-such-host.invalid:" .. port .. "/", interval = 1, timeout = 5,
                            lite = lite }, 1)
    T.eq(r, "0/connect", tostring(msg))
  end
end)

T.case("what lite does not do goes to curl", function()
  for _, spec in ipairs {
    { url = "https://127.0.0.1:" .. port .. "/" }, { url = "http://u:p@127.0.0.1:" .. port .. "/" },
    { url = base .. "/", proxy = "http://127.0.0.1:1" }, { url = base .. "/", connect_timeout = 1 },
    { url = base .. "/", lite = false },
  } do
    spec.interval = 1
    local sp = http.sampler(spec)
    T.eq(sp:engine(), "curl", spec.url)
    sp:close()
  end
end)

srv:kill("TERM")
srv:wait(5)
srv:close()
return T.done()
