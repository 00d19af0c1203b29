-- tests/lab/tempest_scenario.lua — a one-step scenario that runs ctx:tempest
-- with the test ids given in --set tests=a,b,c against the cloud (used by
-- tests/lab/test_tempest.lua; runnable by hand against any cloud).
local scenario = require "upgrun.scenario"

local s = scenario.new {
  name = "tempest_step",
  description = "run a list of Tempest tests as one step",
  params = {
    tests = { type = "list", default = {}, description = "Tempest test ids" },
    image = { default = "lab-image", description = "image (name or id)" },
    flavor = { default = "lab.tiny", description = "flavor (name or id)" },
    network = { default = "none", description = "none | a network name" },
    timeout = { default = 300, description = "seconds for the Tempest run" },
  },
}

s:stage("tempest", function(ctx)
  local P = ctx.params
  ctx:step("tempest", function()
    ctx:tempest { tests = P.tests, image = P.image, flavor = P.flavor, network = P.network,
                  timeout = P.timeout, concurrency = 2 }
  end)
end)

return s
