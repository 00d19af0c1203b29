-- upgrun.upgrade.code — a node's code and configuration, per project: switch
-- the code to a release, read the release it is on, check it, and set a
-- configuration option. The site says how in inventory variables prefixed by
-- the project (nova_code_switch, keystone_code_current, ...):
--   <project>_code_switch    shell command switching a node's code; {node} and
--                            {release} are replaced (git checkout + pip, apt, a
--                            venv or tree switch: whatever the site does)
--   <project>_code_current   optional: prints the release a node's code is on
--   <project>_config_set     shell command setting a config option on a node;
--                            {node} {section} {option} {value} are replaced;
--                            <project>_config_unset likewise without {value}
-- Used through upgrun.upgrade.
local M = {}

-- Expands {node}/{release} in an inventory command template.
local function expand(tmpl, node, release)
  return (tmpl:gsub("{node}", node.name):gsub("{release}", release or ""))
end

local function trim(s) return (tostring(s):match("^%s*(.-)%s*$")) end

-- How a node's code is switched, by name (opts.how; default "command": the
-- inventory's <project>_code_switch). A site or a library adds its own way
-- here: M.switchers.name = function(ctx, project, node, release, opts) ... end
-- (raise on failure).
M.switchers = {}

function M.switchers.command(_, project, node, release, opts)
  local var = project .. "_code_switch"
  local tmpl = node.vars[var]
  if type(tmpl) ~= "string" then
    error(string.format("%s: the inventory has no %s (how this site switches %s's code)", node.name, var,
      project), 0)
  end
  assert(node:run(expand(tmpl, node, release), { timeout = opts.timeout or 600, check = true }))
end

-- The release a node's code is on (<project>_code_current), or nil when the
-- site gives no such command or it fails.
function M.code_release(project, node)
  local tmpl = node.vars[project .. "_code_current"]
  if type(tmpl) ~= "string" then return nil end
  local r = node:run(expand(tmpl, node), { timeout = 60 })
  return r and r.ok and trim(r.stdout) or nil
end

-- Switches a node's code to `release`, then verifies it with
-- <project>_code_current when the site has one (a check "<node> code is on
-- <release>"). opts.how: a key of M.switchers; opts.timeout.
function M.switch_code(ctx, project, node, release, opts)
  opts = opts or {}
  local how = opts.how or "command"
  local switch = M.switchers[how]
  if not switch then
    local known = {}
    for k in pairs(M.switchers) do known[#known + 1] = k end
    table.sort(known)
    error(string.format("code switch %q is not known (known: %s)", tostring(how), table.concat(known, ", ")), 0)
  end
  switch(ctx, project, node, release, opts)
  local tmpl = node.vars[project .. "_code_current"]
  if type(tmpl) == "string" then
    local r = assert(node:run(expand(tmpl, node), { timeout = 60, check = true }))
    local now = trim(r.stdout)
    ctx:check(node.name .. " code is on " .. release, now == release, "code is on " .. now)
  end
end

-- A check "<node> code is on <release>" per node whose site says which
-- release its code is on (nodes without <project>_code_current are passed over).
function M.check_code(ctx, project, nodes, release)
  for _, n in ipairs(nodes) do
    local rel = M.code_release(project, n)
    if rel then ctx:check(n.name .. " code is on " .. release, rel == release, "code is on " .. rel) end
  end
end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Sets (value) or unsets (value nil) a configuration option on a node with
-- the inventory's <project>_config_set / _config_unset; raises with the
-- output on failure.
function M.config(project, node, section, option, value)
  local var = project .. (value == nil and "_config_unset" or "_config_set")
  local tmpl = node.vars[var]
  if type(tmpl) ~= "string" then
    error(string.format("%s: the inventory has no %s (how this site sets a %s option)", node.name, var, project), 0)
  end
  local cmd = tmpl:gsub("{node}", node.name):gsub("{section}", shq(section)):gsub("{option}", shq(option))
    :gsub("{value}", value == nil and "" or shq(value))
  local r, err = node:run(cmd, { timeout = 120 })
  if not r or not r.ok then
    error(string.format("%s: setting [%s] %s failed: %s", node.name, section, option,
      r and (r.stdout .. r.stderr) or tostring(err)), 0)
  end
end

return M
