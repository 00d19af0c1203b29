-- test_http — upgrun.http against a real local fault server
-- (tests/integration/faultserver.py): normal answers, 5xx as responses, each
-- fault mapped to its exact err.kind, keep-alive reuse, 200 requests from 200
-- tasks, cancellation releasing the connection, TLS verification and cacert.
local T = require "testlib"
local http = require "upgrun.http"
local task = require "upgrun.task"
local time = require "upgrun.time"
local proc = require "upgrun.proc"
local cjson = require "cjson"

-- Starts faultserver.py under upgrun.proc; returns {base=, port=, dead=, stop=}.
-- Its first line on stdout is "PORT DEADPORT PID".
local function start_server(...)
  local p = assert(proc.spawn {
    argv = { "python3", T.src("tests/integration/faultserver.py"), "--lifetime", "240", ... },
    stderr = "inherit",
  })
  local line, err = p:read_line(10)
  local port, dead = (line or ""):match("^(%d+) (%d+) %d+$")
  if not port then
    p:close()
    error("faultserver did not start: " .. tostring(line or err))
  end
  local s = { port = tonumber(port), dead = tonumber(dead) }
  s.base = "http://127.0.0.1:" .. port
  function s.stop()
    p:kill("TERM")
    p:wait(5)
    p:close()
  end
  return s
end

local function stats(srv)
  local r = assert(http.request { url = srv.base .. "/stats", timeout = 5 })
  return cjson.decode(r.body)
end

local srv = start_server()

T.case("GET answers with status, lowercased headers, body, timing", function()
  local r, err = http.request { url = srv.base .. "/echo/x?a=1", timeout = 5 }
  T.ok(r, tostring(err))
  T.eq(r.status, 200)
  T.eq(r.headers["content-type"], "application/json")
  T.eq(r.headers["server"]:match("^faultserver"), "faultserver")
  local doc = cjson.decode(r.body)
  T.eq(doc.method, "GET"); T.eq(doc.path, "/echo/x?a=1")
  T.eq(r.url, srv.base .. "/echo/x?a=1")
  T.ok(r.timing.total > 0 and r.timing.total < 5)
  T.ok(r.timing.ttfb > 0 and r.timing.ttfb <= r.timing.total)
  T.ok(r.timing.connect <= r.timing.ttfb)
end)

T.case("status_only: {status=} alone, body and headers read but not kept, max_body still applies", function()
  local r, err = http.request { url = srv.base .. "/echo/x", timeout = 5, status_only = true }
  T.ok(r, tostring(err))
  T.eq(r.status, 200)
  T.eq(r.body, nil); T.eq(r.headers, nil); T.eq(r.timing, nil)
  local n = 0
  for _ in pairs(r) do n = n + 1 end
  T.eq(n, 1, "only status")
  local r5 = assert(http.request { url = srv.base .. "/status/503", timeout = 5, status_only = true })
  T.eq(r5.status, 503)
  T.err("too_large", http.request { url = srv.base .. "/big?n=200000", max_body = 100000, timeout = 5,
                                    status_only = true })
  -- the connection stays usable (the body was read to its end)
  local r2 = assert(http.request { url = srv.base .. "/big?n=100000", max_body = 100000, timeout = 5,
                                   status_only = true })
  T.eq(r2.status, 200)
  T.err("connect", http.request { url = "http://127.0.0.1:" .. srv.dead .. "/", timeout = 5, status_only = true })
end)

T.case("POST sends headers and body; other methods too", function()
  local r = assert(http.request {
    method = "POST", url = srv.base .. "/echo", timeout = 5,
    headers = { ["X-Auth-Token"] = "secret-token", ["Content-Type"] = "application/json", ["X-Num"] = 42 },
    body = '{"k": "v"}',
  })
  local doc = cjson.decode(r.body)
  T.eq(doc.method, "POST"); T.eq(doc.body, '{"k": "v"}')
  T.eq(doc.headers["x-auth-token"], "secret-token")
  T.eq(doc.headers["content-type"], "application/json")
  T.eq(doc.headers["x-num"], "42")
  T.eq(doc.headers["expect"], nil)
  local big = string.rep("b", 100000) -- no Expect: 100-continue round trip
  r = assert(http.request { method = "PUT", url = srv.base .. "/echo", body = big, timeout = 5 })
  doc = cjson.decode(r.body)
  T.eq(doc.method, "PUT"); T.eq(#doc.body, 100000)
  r = assert(http.request { method = "DELETE", url = srv.base .. "/echo", timeout = 5 })
  T.eq(cjson.decode(r.body).method, "DELETE")
  r = assert(http.request { method = "HEAD", url = srv.base .. "/echo", timeout = 5 })
  T.eq(r.status, 200); T.eq(r.body, "")
  r = assert(http.get(srv.base .. "/echo", { timeout = 5, headers = { A = "b" } }))
  T.eq(cjson.decode(r.body).headers.a, "b")
end)

T.case("a 503 or 404 is a response, not an error", function()
  local r, err = http.request { url = srv.base .. "/status/503", timeout = 5 }
  T.ok(r, tostring(err)); T.eq(r.status, 503)
  T.eq(cjson.decode(r.body).status, 503)
  r = assert(http.request { url = srv.base .. "/nothing", timeout = 5 })
  T.eq(r.status, 404)
end)

T.case("a delay past the timeout gives kind timeout, on time", function()
  local t0 = time.mono()
  local err = T.err("timeout", http.request { url = srv.base .. "/delay?s=3", timeout = 0.3 })
  local dt = time.mono() - t0
  T.ok(dt >= 0.29 and dt < 1.5, "took " .. dt)
  T.ok(err.message:find(srv.base .. "/delay", 1, true), err.message)
end)

T.case("connection closed mid-response gives kind closed", function()
  T.err("closed", http.request { url = srv.base .. "/close", timeout = 5 })
  T.err("closed", http.request { url = srv.base .. "/drop", timeout = 5 })
  -- the client goes on working afterwards
  T.eq(assert(http.request { url = srv.base .. "/echo", timeout = 5 }).status, 200)
end)

T.case("listener down gives kind connect", function()
  local t0 = time.mono()
  local err = T.err("connect", http.request { url = "http://127.0.0.1:" .. srv.dead .. "/", timeout = 5 })
  T.ok(time.mono() - t0 < 1)
  T.ok(err.message:find("127.0.0.1:" .. srv.dead, 1, true), err.message)
end)

T.case("an oversized body gives kind too_large (known length and chunked)", function()
  T.err("too_large", http.request { url = srv.base .. "/big?n=200000", max_body = 100000, timeout = 5 })
  T.err("too_large", http.request { url = srv.base .. "/bigchunked?n=5000000", max_body = 100000, timeout = 5 })
  local r = assert(http.request { url = srv.base .. "/big?n=100000", max_body = 100000, timeout = 5 })
  T.eq(#r.body, 100000)
  r = assert(http.request { url = srv.base .. "/bigchunked?n=300000", timeout = 5 })
  T.eq(#r.body, 300000)
end)

T.case("credentials never appear in error messages", function()
  local url = "http://user:pw-secret@127.0.0.1:" .. srv.dead .. "/x"
  local err = T.err("connect", http.request { url = url, timeout = 5 })
  T.eq(err.message:find("pw-secret", 1, true), nil, err.message)
  T.eq(err.message:find("user", 1, true), nil, err.message)
end)

T.case("keep-alive: sequential requests reuse one connection", function()
  assert(http.request { url = srv.base .. "/echo", timeout = 5 }) -- warm
  local before = stats(srv).connections
  local last
  for _ = 1, 10 do
    last = assert(http.request { url = srv.base .. "/echo", timeout = 5 })
    T.eq(last.reused, true)
  end
  T.eq(last.timing.connect, 0)
  T.eq(stats(srv).connections, before) -- /stats itself reused the connection too
end)

T.case("a keep-alive connection the server dropped is not an error", function()
  assert(http.request { url = srv.base .. "/echo?close=1&after=0.05", timeout = 5 })
  local c0 = os.clock()
  time.sleep(0.3) -- the server has closed it by now; curl still has it cached
  -- its socket stays watched while idle (mod_http keeps the watch between
  -- requests): the EOF must stop the watch, not make the loop spin
  T.ok(os.clock() - c0 < 0.1, string.format("%.3f s CPU while idle", os.clock() - c0))
  local r, err = http.request { url = srv.base .. "/echo", timeout = 5 }
  T.ok(r, tostring(err)); T.eq(r.status, 200)
  T.eq(r.reused, false)
end)

T.case("200 concurrent requests from 200 tasks all complete", function()
  local tasks = {}
  local t0 = time.mono()
  for i = 1, 200 do
    tasks[i] = task.spawn(function()
      local r, err = http.request {
        method = "POST", url = srv.base .. "/echo/" .. i, body = "body-" .. i, timeout = 30,
      }
      if not r then return nil, err end
      local doc = cjson.decode(r.body)
      return r.status == 200 and doc.path == "/echo/" .. i and doc.body == "body-" .. i
    end)
  end
  local good = 0
  for i = 1, 200 do
    local ok, res, err = tasks[i]:join(60)
    if ok and res == true then good = good + 1
    elseif good + 1 == i then print("     first failure:", ok, res, err and tostring(err)) end
  end
  T.eq(good, 200)
  T.ok(time.mono() - t0 < 30)
end)

T.case("cancelling a task mid-request releases the connection", function()
  local aborted = stats(srv).aborted
  local t = task.spawn(function() return http.request { url = srv.base .. "/delay?s=5", timeout = 10 } end)
  time.sleep(0.3)
  local t0 = time.mono()
  t:cancel()
  local ok, err = t:join(1)
  T.eq(ok, nil); T.eq(err.kind, "cancelled")
  T.ok(time.mono() - t0 < 0.5)
  -- the server sees the client close the connection (well before the 5 s delay)
  local seen = false
  local deadline = time.mono() + 3
  while time.mono() < deadline do
    if stats(srv).aborted > aborted then seen = true; break end
    time.sleep(0.05)
  end
  T.ok(seen, "server saw the connection closed")
end)

T.case("with_timeout around a request cancels it", function()
  local t0 = time.mono()
  T.err("timeout", task.with_timeout(0.2, http.request, { url = srv.base .. "/delay?s=5", timeout = 10 }))
  T.ok(time.mono() - t0 < 1)
  T.eq(assert(http.request { url = srv.base .. "/echo", timeout = 5 }).status, 200)
end)

T.case("misuse raises", function()
  T.raises("url", http.request, {})
  T.raises("url", http.request, { url = "not a url" })
  T.raises("timeout", http.request, { url = srv.base, timeout = 0 })
  T.raises("timeout", http.request, { url = srv.base, timeout = {} })
  T.raises("timeout", http.request, { url = srv.base, timeout = math.huge })
  T.raises("max_body", http.request, { url = srv.base, max_body = -1 })
  T.raises("headers", http.request, { url = srv.base, headers = { X = "a\r\nY: b" } })
  T.raises("headers", http.request, { url = srv.base, headers = { X = {} } })
  T.raises("method", http.request, { url = srv.base, method = "get" })
end)

-- ---- upgrun.http.sampler: the C-side probe sampler -------------------------

-- Takes every sample of `sp` until it can produce no more (it must have been
-- stopped or be stopped by `until_fn`), as tables in take order.
local function take_all(sp, until_fn)
  local out = {}
  while true do
    local n = sp:take(2)
    for i = 1, n do
      local seq, mark, t_send, wall, t_end, status, kind, message = sp:get(i)
      out[#out + 1] = { seq = seq, mark = mark, t_send = t_send, wall = wall, t_end = t_end, status = status,
                        kind = kind, message = message }
    end
    if until_fn and until_fn(out) then sp:stop(); until_fn = nil end
    if n == 0 and not until_fn and sp:in_flight() == 0 then return out end
  end
end

local SLACK = T.slack -- (the valgrind run widens it)

for _, lite in ipairs { true, false } do
T.case("sampler (" .. (lite and "lite" or "curl") .. "): one request per interval on kept-alive connections, "
       .. "seq contiguous, marks at send", function()
  local before = stats(srv)
  local sp = http.sampler { url = srv.base .. "/status/200", interval = 0.02, timeout = 5 * SLACK, batch = 0.05,
                            max_in_flight = 4, lite = lite }
  local t0 = time.mono()
  sp:start(7)
  local marked = false
  local recs = take_all(sp, function(out)
    if not marked and #out >= 20 then sp:mark(8); marked = time.mono() end
    return #out >= 40
  end)
  local t1 = time.mono()
  T.ok(#recs >= 40, "got " .. #recs)
  table.sort(recs, function(a, b) return a.seq < b.seq end)
  local saw8 = false
  for i, r in ipairs(recs) do
    T.eq(r.seq, i, "seq contiguous")
    T.eq(r.kind, nil, r.message); T.eq(r.status, 200)
    T.ok(r.t_send >= t0 and r.t_end >= r.t_send and r.t_end <= t1, "stamps inside the run")
    T.ok(math.abs(r.wall - time.now()) < 60, "wall is epoch seconds")
    if r.mark == 8 then saw8 = true; T.ok(r.t_send >= marked, "mark 8 only after mark(8)") else T.eq(r.mark, 7) end
    -- the schedule, which start() begins after t0: never before its slot
    -- (at most 1 ms early: no burst), and no slot lost (a slot is skipped
    -- only after the loop was starved for a whole interval: 0.1 s allows a
    -- busy CI machine's stalls, not a lost slot per sample)
    T.ok(r.t_send - t0 >= (i - 1) * 0.02 - 0.0011, "slot " .. i .. " sent early: " .. (r.t_send - t0))
    T.ok(r.t_send - recs[1].t_send <= (i - 1) * 0.02 + 0.1 * SLACK, "slot " .. i .. " late or lost: "
         .. (r.t_send - recs[1].t_send))
  end
  T.ok(saw8, "later samples carry the new mark")
  local after = stats(srv)
  T.ok(after.requests - before.requests >= 40, "requests")
  -- kept alive: at most one connection per slot (lite) or curl's shared
  -- cache (this /stats request may open one more)
  T.ok(after.connections - before.connections <= 4 + 1, (after.connections - before.connections)
       .. " new connections for " .. (after.requests - before.requests) .. " requests")
  T.eq(sp:engine(), lite and "lite" or "curl")
  sp:close()
  T.raises("closed", sp.start, sp)
end)
end

for _, lite in ipairs { true, false } do
T.case("sampler (" .. (lite and "lite" or "curl") .. "): faults give the request's error kinds, statuses are "
       .. "answers, no credentials", function()
  local function one(spec)
    spec.interval, spec.timeout, spec.lite = spec.interval or 10, spec.timeout or 5, lite
    local sp = http.sampler(spec)
    sp:start(1)
    sp:stop() -- one slot was sent at start
    local recs = take_all(sp)
    sp:close()
    T.eq(#recs, 1)
    return recs[1]
  end
  local r = one { url = srv.base .. "/status/503" }
  T.eq(r.status, 503); T.eq(r.kind, nil)
  r = one { url = "http://user:pw-secret@127.0.0.1:" .. srv.dead .. "/x" }
  T.eq(r.kind, "connect")
  T.ok(r.message:find("127.0.0.1:" .. srv.dead, 1, true) and not r.message:find("pw-secret", 1, true), r.message)
  r = one { url = srv.base .. "/delay?s=3", timeout = 0.3 }
  T.eq(r.kind, "timeout")
  T.ok(r.t_end - r.t_send >= 0.29 and r.t_end - r.t_send < 1.5 * SLACK, "bounded by the timeout")
  r = one { url = srv.base .. "/big?n=200000", max_body = 100000 }
  T.eq(r.kind, "too_large"); T.ok(r.message:find("/big?n=200000", 1, true), r.message)
  r = one { url = srv.base .. "/bigchunked?n=5000000", max_body = 100000 }
  T.eq(r.kind, "too_large"); T.ok(r.message:find("max_body", 1, true), r.message)
  T.eq(one({ url = srv.base .. "/close" }).kind, "closed")
  r = one { url = srv.base .. "/echo", method = "POST", body = "x", headers = { ["X-Auth-Token"] = "t" } }
  T.eq(r.status, 200); T.eq(r.kind, nil)
  T.eq(one({ url = srv.base .. "/drop" }).kind, "closed")
end)
end

T.case("sampler: a slot that finds max_in_flight outstanding is skipped, never sent", function()
  local before = stats(srv)
  local sp = http.sampler { url = srv.base .. "/delay?s=0.5", interval = 0.05, max_in_flight = 2, timeout = 5 * SLACK }
  sp:start(1)
  local most = 0
  local recs = take_all(sp, function(out)
    most = math.max(most, sp:in_flight())
    return #out >= 12
  end)
  sp:close()
  local skipped, answered = 0, 0
  for _, r in ipairs(recs) do
    if r.kind == "skipped" then
      skipped = skipped + 1
      T.eq(r.t_end, r.t_send)
    else
      answered = answered + 1
      T.eq(r.status, 200)
    end
  end
  T.ok(most <= 2, "in flight " .. most)
  T.ok(skipped >= 6, "skipped " .. skipped)
  T.eq(stats(srv).requests - before.requests, answered + 1, "only the answered ones reached the server (+ /stats)")
end)

T.case("sampler: cut ends what is in flight (in send order); close wakes a waiting task", function()
  local before = stats(srv)
  local sp = http.sampler { url = srv.base .. "/delay?s=5", interval = 0.05, max_in_flight = 3, timeout = 10 }
  sp:start(4)
  local asked = 0 -- (each /stats request counts too)
  T.wait_until(function()
    asked = asked + 1
    return stats(srv).requests - before.requests - asked >= 3
  end, 5 * SLACK, "3 requests waiting at the server")
  T.eq(sp:in_flight(), 3)
  sp:stop()
  local cut = sp:cut()
  T.eq(#cut, 3); T.eq(sp:in_flight(), 0)
  for i, c in ipairs(cut) do
    T.eq(c[1], i); T.eq(c[2], 4)
    if i > 1 then T.ok(c[3] > cut[i - 1][3]) end
  end
  T.wait_until(function() return stats(srv).aborted - before.aborted == 3 end, 10 * SLACK,
               "the server saw the 3 connections closed")
  -- a task waiting in take() gets 0 when the sampler is closed
  local sp2 = http.sampler { url = srv.base .. "/delay?s=5", interval = 10, timeout = 10 }
  sp2:start(1)
  local entered = false
  local waiter = task.spawn("waiter", function() entered = true; return sp2:take(30) end)
  -- (entered and take() run in one slice: once entered, the waiter waits in take())
  T.wait_until(function() return entered end, 5 * SLACK, "the waiter in take()")
  T.eq(sp2:in_flight(), 1)
  sp2:close()
  local ok, n = waiter:join(5)
  T.ok(ok, tostring(n)); T.eq(n, 0)
  sp:close(); sp:close() -- twice is harmless
end)

T.case("sampler: bad options name the field", function()
  T.raises("interval", http.sampler, { url = srv.base })
  T.raises("interval", http.sampler, { url = srv.base, interval = 0 })
  T.raises("max_in_flight", http.sampler, { url = srv.base, interval = 1, max_in_flight = 1025 })
  T.raises("max_in_flight", http.sampler, { url = srv.base, interval = 1, max_in_flight = 1.5 })
  T.raises("batch", http.sampler, { url = srv.base, interval = 1, batch = -1 })
  T.raises("url", http.sampler, { interval = 1 })
  T.raises("timeout", http.sampler, { url = srv.base, interval = 1, timeout = 0 })
  T.raises("no such sample", function() local sp = http.sampler { url = srv.base, interval = 1 }; sp:get(1) end)
end)

T.case("TLS: self-signed server fails verification; cacert= makes it pass", function()
  local dir = assert(proc.run({ "mktemp", "-d" }, { timeout = 10, check = true })).stdout:gsub("%s+$", "")
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  assert(proc.run({ "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost" },
    { timeout = 60, check = true }))
  local tls = start_server("--tls", cert, key)
  local url = "https://127.0.0.1:" .. tls.port .. "/echo"
  local ok, e = pcall(function()
    T.err("tls", http.request { url = url, timeout = 5 })
    local r, err = http.request { url = url, timeout = 5, cacert = cert }
    T.ok(r, tostring(err)); T.eq(r.status, 200)
    T.eq(cjson.decode(r.body).method, "GET")
    r = assert(http.request { url = url, timeout = 5, verify = false })
    T.eq(r.status, 200)
  end)
  tls.stop()
  proc.run({ "rm", "-rf", dir }, { timeout = 10 })
  if not ok then error(e, 0) end
end)

srv.stop()
return T.done()
