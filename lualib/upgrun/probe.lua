-- upgrun.probe — open-loop probes. A probe calls its function every
-- `interval` seconds, each call in its own task, whether or not earlier calls
-- have answered, so the end of a hang is resolved to the interval rather than
-- to the timeout. At most `max_in_flight` samples are outstanding: when the
-- bound is reached the slot is recorded as `skipped` (nothing is sent; the
-- outage analysis ignores it and the gap it leaves shows in the uncertainty).
--
-- A sample is stamped when it is sent and its result is
--   ok       the function returned a true value / an expected HTTP status
--   fail     an error (refused, reset, 5xx, 4xx other than expected; 401 always)
--   unknown  no answer within `timeout`
-- The probe function is fn(ctx, probe) -> value | nil, err (err.kind
-- "timeout" -> unknown) or an HTTP response {status=} classified by `expect`.
--
-- This module is the declaration only; a run's state (samples in flight,
-- counts, aggregates) lives in upgrun.probe_run.

local M = {}
local Probe = {}
Probe.__index = Probe
M.Probe = Probe

local function status_set(expect)
  if expect == nil then return nil end
  if type(expect) == "number" then expect = { expect } end
  local s = {}
  for _, v in ipairs(expect) do s[v] = true end
  return s
end

-- A readable message for an error value: a string as is, a table by its
-- `message` (or its __tostring, or its kind), never "table: 0x...".
function M.message(e)
  if type(e) ~= "table" then return tostring(e) end
  if e.message ~= nil then return tostring(e.message) end
  local mt = getmetatable(e)
  if mt and mt.__tostring then return tostring(e) end
  if e.kind ~= nil then return tostring(e.kind) end
  local parts = {}
  for k, v in pairs(e) do
    if type(v) ~= "table" and type(v) ~= "function" then parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
  end
  table.sort(parts)
  return #parts > 0 and ("{" .. table.concat(parts, ", ") .. "}") or "an error without a message"
end

-- What a probe function returns when it has nothing to probe now (its
-- target does not exist yet, or a check is stopping it on purpose), with a
-- reason as second value: the sample is recorded as `skipped` (err
-- "not_sent"), which the outage analysis ignores, like a max_in_flight slot.
M.NOT_SENT = setmetatable({}, { __name = "upgrun.probe.NOT_SENT" })

-- Classifies what a probe function returned. Returns result, status, err_kind,
-- message.
function M.classify(res, err, expect_set)
  if res == M.NOT_SENT then return "skipped", nil, "not_sent", err and M.message(err) or "nothing to probe" end
  if res == nil or res == false then
    if type(err) == "table" then
      local kind = err.kind or "error"
      return (kind == "timeout") and "unknown" or "fail", err.status, kind, M.message(err)
    end
    return "fail", nil, "error", err and tostring(err) or "the probe returned false"
  end
  if type(res) == "table" and math.type(res.status) == "integer" then
    return M.classify_status(res.status, expect_set)
  end
  return "ok"
end

-- Classifies an HTTP status (the same four values as classify).
function M.classify_status(st, expect_set)
  if st == 401 then return "fail", st, "http", "401 Unauthorized is never ok" end
  if expect_set then
    if expect_set[st] then return "ok", st end
    return "fail", st, "http", "unexpected status " .. st
  end
  if st >= 200 and st < 400 then return "ok", st end
  return "fail", st, "http", "status " .. st
end

-- A probe function for one HTTP request (upgrun.http):
--   probe.http{url =, method = "GET", headers =, body =, expect = {200, ...},
--              timeout =}
-- Without `expect`, 2xx/3xx are ok. Headers may be a function(ctx) returning
-- the headers (e.g. a fresh token). The function returns the response's
-- {status=} alone (upgrun.http's status_only: the classification needs
-- nothing else, and no headers or body are kept per sample).
-- The request of a probe function made by M.http with fixed headers (the
-- same request every time: upgrun.probe_run samples it in C), else nil.
local fixed_requests = setmetatable({}, { __mode = "k" })
function M.request_of(fn) return fixed_requests[fn] end

function M.http(spec)
  assert(type(spec) == "table" and type(spec.url) == "string", "probe.http needs {url = ...}")
  local http
  local fixed -- the request, built once when nothing in it changes per sample
  local fn = function(ctx, p)
    http = http or require "upgrun.http"
    local headers = spec.headers
    if type(headers) == "function" then
      headers = headers(ctx)
    elseif fixed and fixed.timeout == (spec.timeout or p.timeout) then
      return http.request(fixed)
    end
    local req = { method = spec.method or "GET", url = spec.url, headers = headers,
                  body = spec.body, timeout = spec.timeout or p.timeout, status_only = true }
    if type(spec.headers) ~= "function" then fixed = req end
    return http.request(req)
  end
  if type(spec.headers) ~= "function" then
    fixed_requests[fn] = { method = spec.method or "GET", url = spec.url, headers = spec.headers, body = spec.body,
                           timeout = spec.timeout } -- (nil: the probe's)
  end
  return fn
end

-- Creates a probe from its declaration (see docs/scenarios.md):
--   name, fn | http = {...}, interval (s) | rate (Hz), timeout (s, default
--   min(5, 10 * interval) but at least 1), max_in_flight (default
--   ceil(timeout / interval) + 1, at most 16), expect, stages, budget, baseline,
--   service (the API it measures, e.g. "compute": reports group downtime by
--   it; default the http URL's host:port, else the first word of the name),
--   kind (default "http" with http =, "ssh" with ssh = (upgrun.probe_ssh: a
--   guest's sshd, a fresh login per sample), else "function"), url (default
--   the http URL; a function probe may name what it calls), steady (true,
--   false, "end": which steady-state checks wait for it).
local function default_service(spec)
  local host = spec.http and spec.http.url:match("^%a[%w+.-]*://([^/?#]+)")
  if host then return (host:gsub("^.*@", "")) end
  return spec.name:match("^(%S+)") or spec.name
end

function M.new(spec)
  if type(spec) ~= "table" then error("probe: expects a table", 3) end
  if type(spec.name) ~= "string" or spec.name == "" then error("probe: needs a name", 3) end
  local p = setmetatable({}, Probe)
  p.name = spec.name
  p.fn = spec.fn
  if spec.http then
    p.fn = M.http(spec.http)
    p.expect = p.expect or spec.http.expect
  elseif spec.ssh then
    p.fn = require("upgrun.probe_ssh").fn(spec.ssh)
  end
  if type(p.fn) ~= "function" then error("probe " .. p.name .. ": needs fn, http or ssh", 3) end
  p.interval = spec.interval or (spec.rate and 1 / spec.rate) or 1
  if type(p.interval) ~= "number" or p.interval <= 0 then
    error("probe " .. p.name .. ": interval must be > 0", 3)
  end
  p.timeout = spec.timeout or math.max(1, math.min(5, 10 * p.interval))
  -- An http probe's request carries the probe's timeout itself: no watchdog
  -- task is needed per sample (upgrun.probe_run).
  p.self_timed = spec.http and (not spec.http.timeout or spec.http.timeout <= p.timeout) or nil
  if spec.ssh then p.self_timed = true end -- connect + command bounded by p.timeout (upgrun.probe_ssh)
  p.max_in_flight = spec.max_in_flight or math.min(16, math.ceil(p.timeout / p.interval) + 1)
  p.expect = spec.expect or p.expect
  p.expect_set = status_set(p.expect)
  p.stages = spec.stages
  p.budget = spec.budget
  p.baseline = spec.baseline or "before"
  p.description = spec.description
  for _, k in ipairs { "service", "kind", "url" } do
    if spec[k] ~= nil and type(spec[k]) ~= "string" then
      error("probe " .. p.name .. ": " .. k .. " must be a string", 3)
    end
  end
  -- steady: whether the steady-state check waits for this probe: true (default), false,
  -- or "end" (only after the last stage: a guest probe whose server the scenario creates)
  if spec.steady ~= nil and spec.steady ~= true and spec.steady ~= false and spec.steady ~= "end" then
    error("probe " .. p.name .. ": steady must be true, false or \"end\"", 3)
  end
  p.steady = spec.steady
  p.service = spec.service or (spec.ssh and "guests") or default_service(spec)
  p.kind = spec.kind or (spec.http and "http" or spec.ssh and "ssh" or "function")
  -- (never a password in the URL's user info in the report)
  p.url = spec.url or (spec.http and (spec.http.url:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1")))
    or (spec.ssh and require("upgrun.probe_ssh").describe(spec.ssh))
  return p
end

-- Whether the probe runs during `stage` (no `stages` = every stage).
function Probe:runs_in(stage)
  if not self.stages then return true end
  for _, s in ipairs(self.stages) do if s == stage then return true end end
  return false
end

return M
