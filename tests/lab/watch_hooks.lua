-- tests/lab/watch_hooks.lua — site hooks (--hooks) for test_nova_scenario's watch run:
-- after the DB migration the persistent server on the first compute host is deleted
-- (the resource watch must say it vanished there), and before the controllers are
-- upgraded the one on the second host is stopped, left SHUTOFF for 10 s and started
-- again (the watch must count ~10 s of unavailability, attributed to this hook). The
-- hooks put what they did on the timeline (watch_test_deleted, watch_test_stopped
-- with the times SHUTOFF and ACTIVE were seen) for the test to compare with.
-- luacheck: globals hook

-- The persistent servers, by compute host.
local function persistent(ctx)
  local recs = {}
  for rec in ctx.ledger:each("server") do recs[#recs + 1] = rec end
  table.sort(recs, function(a, b) return tostring(a.data.host) < tostring(b.data.host) end)
  assert(#recs >= 2, "expected a persistent server per compute host, found " .. #recs)
  return recs
end

local FAST = { interval = 0.2, max_interval = 0.2 }

hook("db_migration", "after", function(ctx)
  local rec = persistent(ctx)[1]
  assert(ctx.cloud.compute:delete_server(rec.id, { wait = true, timeout = 120 }))
  ctx:event("watch_test_deleted", { id = rec.id, name = rec.data.name, t_gone = ctx.timeline:now() })
  ctx:sleep(3) -- the watch (every 2 s) sees it gone while this hook still runs
end)

hook("4. controllers (conductors_first)", "before", function(ctx)
  local rec = persistent(ctx)[2]
  local c = ctx.cloud.compute
  assert(c:stop(rec.id))
  assert(c:wait_status(rec.id, "SHUTOFF", 120, FAST))
  local off = ctx.timeline:now()
  ctx:sleep(10)
  assert(c:start(rec.id))
  assert(c:wait_status(rec.id, "ACTIVE", 120, FAST))
  local on = ctx.timeline:now()
  ctx:event("watch_test_stopped", { id = rec.id, name = rec.data.name, off = off, on = on })
  ctx:sleep(3) -- the watch sees it ACTIVE again while this hook still runs
end)
