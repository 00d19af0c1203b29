-- upgrun.nova.tempest_suite — the seed plan's named Tempest tests for the
-- persistent-resources checks (pause/suspend/shelve, rescue, security group
-- on a rescued server, the SSH checks on a created server, basic ops and
-- multinode scheduling), run by the Nova scenario next to its native suite
-- when --set tempest=true. Ids are Tempest 33's (Debian 12); see
-- docs/nova_scenario.md for the list and what each needs.
--
--   tempest_suite.TESTS                 the test ids
--   tempest_suite.step(ctx, P, where)   a step running them (no-op unless P.tempest)
local M = {}

M.TESTS = {
  "tempest.api.compute.servers.test_server_actions.ServerActionsTestJSON.test_pause_unpause_server",
  "tempest.api.compute.servers.test_server_actions.ServerActionsTestJSON.test_suspend_resume_server",
  "tempest.api.compute.servers.test_server_actions.ServerActionsTestJSON.test_shelve_unshelve_server",
  "tempest.api.compute.servers.test_server_rescue.ServerRescueTestJSON.test_rescue_unrescue_instance",
  "tempest.api.compute.servers.test_server_rescue.ServerRescueTestJSONUnderV235"
    .. ".test_rescued_vm_add_remove_security_group",
  "tempest.api.compute.servers.test_create_server.ServersTestJSON.test_host_name_is_same_as_server_name",
  "tempest.api.compute.servers.test_create_server.ServersTestJSON.test_verify_created_server_vcpus",
  "tempest.api.compute.servers.test_create_server.ServersTestJSON.test_verify_server_details",
  "tempest.scenario.test_server_basic_ops.TestServerBasicOps.test_server_basic_ops",
  "tempest.scenario.test_server_multinode.TestServerMultinode.test_schedule_to_all_nodes",
}

-- Whether Tempest itself can validate (SSH into) the servers: it runs in upgrun's
-- network namespace and logs in with its own keypair, so guests reachable only from
-- validation_netns are not for it (its SSH tests then skip with its own reason;
-- upgrun's own SSH checks, upgrun.nova.guest, cover them through the namespace).
function M.tempest_validation(P)
  return P.validation == true and (P.validation_netns or "") == ""
end

-- P: the scenario's params (tempest, tempest_tests, image, flavor, network,
-- validation, validation_netns); where: before | mixed | after (names the step and its dir).
function M.step(ctx, P, where)
  if not P.tempest then return end
  local tests = (P.tempest_tests and #P.tempest_tests > 0) and P.tempest_tests or M.TESTS
  ctx:step("tempest persistent resources suite (" .. where .. ")", function()
    ctx:tempest { name = "tempest-" .. where, tests = tests, image = P.image, flavor = P.flavor,
                  network = P.network, validation = M.tempest_validation(P), concurrency = 2,
                  timeout = P.tempest_timeout or 900 }
  end)
end

return M
