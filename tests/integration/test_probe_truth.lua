-- test_probe_truth — measurement truth. outage_server.py (a real HTTP server
-- on 127.0.0.1) follows random schedules of outages (refused, 503, hang past
-- the probe timeout; 50 ms to 5 s) and reports when each really began and
-- ended on CLOCK_MONOTONIC. Open-loop probes at 20 Hz and 100 Hz (http
-- probes, sampled in C) and at 20 Hz (a function probe: a task per sample) must report
-- every outage of >= 2 sampling gaps within ±(gap + 20 ms) at both ends, and
-- no outage where there was none. Then attribution: steps that sleep known
-- times, an outage inside one of them, and the report names that step.
--   UPGRUN_TRUTH_SCHEDULES=N (default 20) random schedules, 2 at a time.
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"
local task = require "upgrun.task"
local time = require "upgrun.time"
local probe = require "upgrun.probe"
local probe_run = require "upgrun.probe_run"
local Timeline = require "upgrun.timeline"

local SERVER = T.src("tests/integration/outage_server.py")
local SCHEDULES = tonumber(os.getenv("UPGRUN_TRUTH_SCHEDULES") or "20")
local LENGTH = 6
local PROBE_TIMEOUT = 0.5
local SLACK = 0.020

-- Starts the server; returns the process and its port.
local function start_server(args)
  local argv = { "python3", SERVER }
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  local p = proc.spawn { argv = argv, stdout = "capture", stderr = "inherit" }
  local line = p:read_line(10)
  local port = line and line:match("^PORT (%d+)")
  assert(port, "outage_server did not start: " .. tostring(line))
  return p, port
end

-- An http probe, or (as_function) the same request from a function probe.
local function new_probe(name, rate, port, as_function)
  local http = { url = "http://127.0.0.1:" .. port .. "/", expect = { 200 } }
  local fn
  if as_function then
    local f = probe.http(http)
    fn = function(ctx, p) return f(ctx, p) end -- (not probe.http's own: a task per sample)
  end
  return probe.new {
    name = name, interval = 1 / rate, timeout = PROBE_TIMEOUT,
    -- enough slots that a hang never starves the sampling (see docs)
    max_in_flight = math.ceil(PROBE_TIMEOUT * rate) + 4,
    http = not as_function and http or nil, fn = fn, expect = { 200 },
  }
end

-- Compares reported outages with the truth (both relative to tl). Returns a
-- list of problems and the worst start/end errors.
local function compare(name, gap, reported, truth)
  local tol = gap + SLACK
  local problems, worst = {}, 0
  for _, tr in ipairs(truth) do
    local len = tr["end"] - tr.start
    local matches = {}
    for _, r in ipairs(reported) do
      if r.start <= tr["end"] + tol and r["end"] >= tr.start - tol then matches[#matches + 1] = r end
    end
    if len >= 2 * gap then
      if #matches ~= 1 then
        problems[#problems + 1] = string.format("%s: true %s outage %.3f-%.3f (%.3f s) reported as %d outages",
                                                name, tr.kind, tr.start, tr["end"], len, #matches)
      else
        local r = matches[1]
        local es, ee = r.start - tr.start, r["end"] - tr["end"]
        worst = math.max(worst, math.abs(es), math.abs(ee))
        if math.abs(es) > tol or math.abs(ee) > tol then
          problems[#problems + 1] = string.format(
            "%s: %s outage %.3f-%.3f reported %.3f-%.3f (start %+.3f, end %+.3f; tolerance ±%.3f)",
            name, tr.kind, tr.start, tr["end"], r.start, r["end"], es, ee, tol)
        end
      end
    end
  end
  for _, r in ipairs(reported) do
    local real = false
    for _, tr in ipairs(truth) do
      if r.start <= tr["end"] + tol and r["end"] >= tr.start - tol then real = true end
    end
    if not real then
      problems[#problems + 1] = string.format("%s: outage reported at %.3f-%.3f where there was none",
                                              name, r.start, r["end"])
    end
  end
  return problems, worst
end

-- One schedule: a server, two probes (20 Hz and 100 Hz). Returns problems,
-- stats.
local function run_schedule(seed)
  local tl = Timeline.new()
  local t0 = time.mono() + 0.4
  local srv, port = start_server { "--t0", string.format("%.6f", t0), "--seed", seed,
                                   "--length", LENGTH, "--hold", PROBE_TIMEOUT + 0.5 }
  local probes = { probe_run.new(new_probe("20Hz", 20, port), tl), probe_run.new(new_probe("100Hz", 100, port), tl),
                   probe_run.new(new_probe("20Hz task", 20, port, true), tl) }
  for _, p in ipairs(probes) do p:start(nil, "test") end
  -- each path is the one meant
  assert(probes[1].sampler and probes[2].sampler and not probes[3].sampler, "sampled in C: the http probes only")
  local line = srv:read_line(LENGTH + 15)
  for _, p in ipairs(probes) do p:stop() end
  for _, p in ipairs(probes) do p:drain(PROBE_TIMEOUT + 1) end
  local res = srv:wait(10)
  assert(res and res.status == 0, "outage_server failed: " .. tostring(res and res.status))
  assert(line, "no truth from outage_server")
  local doc = cjson.decode(line)
  local truth = {}
  for _, o in ipairs(doc.outages) do
    truth[#truth + 1] = { kind = o.kind, start = tl:rel(o.start), ["end"] = tl:rel(o["end"]) }
  end
  local problems, stats = {}, { truth = #truth, worst = {}, samples = {} }
  for _, p in ipairs(probes) do
    -- the outages found online, as a run reports them
    local reported = p:finish()
    local pr, worst = compare("seed " .. seed .. " " .. p.name, p.probe.interval, reported, truth)
    for _, x in ipairs(pr) do problems[#problems + 1] = x end
    stats.worst[p.name] = worst
    stats.samples[p.name] = { sent = p.sent, skipped = p.skipped, rate = p.sent / p:active_time(tl:now()) }
  end
  return problems, stats
end

T.case(string.format("%d random schedules: 20 Hz and 100 Hz probes match the truth", SCHEDULES), function()
  local all, worst, n_out = {}, { ["20Hz"] = 0, ["100Hz"] = 0, ["20Hz task"] = 0 }, 0
  local rates = { ["20Hz"] = {}, ["100Hz"] = {}, ["20Hz task"] = {} }
  local seed0 = tonumber(os.getenv("UPGRUN_TRUTH_SEED") or "") or os.time()
  local i = 0
  while i < SCHEDULES do
    -- two schedules at a time, each with its own server
    local batch = {}
    for k = 1, math.min(2, SCHEDULES - i) do
      local seed = seed0 + i + k
      batch[#batch + 1] = task.spawn("schedule " .. seed, function() return run_schedule(seed) end)
    end
    for _, t in ipairs(batch) do
      local ok, problems, stats = t:join(LENGTH + 30)
      T.ok(ok, "schedule finished: " .. tostring(problems))
      for _, x in ipairs(problems) do all[#all + 1] = x end
      n_out = n_out + stats.truth
      for name, w in pairs(stats.worst) do worst[name] = math.max(worst[name], w) end
      for name, s in pairs(stats.samples) do rates[name][#rates[name] + 1] = s.rate end
    end
    i = i + #batch
  end
  io.write(string.format("     seeds %d..%d: %d true outages; worst boundary error 20 Hz %.1f ms, 100 Hz %.1f ms, "
    .. "20 Hz (function probe) %.1f ms\n", seed0 + 1, seed0 + SCHEDULES, n_out, worst["20Hz"] * 1000,
    worst["100Hz"] * 1000, worst["20Hz task"] * 1000))
  for name, r in pairs(rates) do
    if #r > 0 then
      io.write(string.format("     %s achieved rate %.1f..%.1f/s\n", name, math.min(table.unpack(r)),
                             math.max(table.unpack(r))))
    end
  end
  if #all > 0 then T.fail(#all .. " mismatches:\n" .. table.concat(all, "\n")) end
end)

T.case("attribution: an outage during a step names that step", function()
  local scenario = require "upgrun.scenario"
  local out = os.tmpname()
  os.remove(out)
  -- steps: "idle" 0-1.0 s, "restart api" 1.0-2.0 s, "settle" 2.0-2.6 s; the
  -- server answers 503 from 1.55 to 1.9 s and refuses from 2.2 to 2.4 s.
  local t0 = time.mono() + 2
  local schedule = cjson.encode { { kind = "503", start = 1.55, ["end"] = 1.9 },
                                  { kind = "refused", start = 2.2, ["end"] = 2.4 } }
  local srv, port = start_server { "--t0", string.format("%.6f", t0), "--schedule", schedule, "--length", 0,
    "--linger", 5 }
  local s = scenario.new { name = "attribution", steady = { settle = 0 } }
  s:probe { name = "api", interval = 0.02, timeout = 0.3,
            http = { url = "http://127.0.0.1:" .. port .. "/" } }
  s:stage("upgrade", function(ctx)
    while time.mono() < t0 do time.sleep(0.005) end
    ctx:step("idle", function() time.sleep(1.0) end)
    ctx:step("restart api", function()
      ctx:step("stop", function() time.sleep(0.5) end)
      ctx:step("start", function() time.sleep(0.5) end)
    end)
    ctx:step("settle", function() time.sleep(0.6) end)
  end)
  local code = s:run({ "-o", out, "-q" }, "attribution")
  T.eq(code, 0)
  srv:kill("TERM")
  srv:wait(5)
  T.valid_report(out)
  local f = assert(io.open(out .. "/report.json"))
  local doc = cjson.decode(f:read("a"))
  f:close()
  local pr = doc.probes[1]
  T.eq(#pr.outages, 2, "two outages")
  T.eq(#pr.outages[1].steps, 1)
  T.eq(pr.outages[1].steps[1], "restart api / start")
  T.near(pr.outages[1].duration, 0.35, 0.02 + 0.02)
  T.eq(pr.outages[2].steps[1], "settle")
  T.near(pr.outages[2].duration, 0.2, 0.02 + 0.02)
  -- downtime per step: the 503 window falls in "restart api" and "start"
  local per = {}
  for _, d in ipairs(pr.downtime_per_step) do per[d.step] = d.seconds end
  T.near(per["restart api / start"], 0.35, 0.04)
  T.near(per["restart api"], 0.35, 0.04)
  T.near(per["settle"], 0.2, 0.04)
  T.eq(per["idle"], nil)
  os.execute("rm -rf '" .. out .. "'")
end)

return T.done()
