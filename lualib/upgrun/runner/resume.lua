-- upgrun.runner.resume — checkpoints and resuming. A run writes
-- checkpoint.json into its output directory (atomically, tmp file + rename)
-- when it starts and after each top-level step: the scenario file and its
-- sha256, the parameters (secret ones left out), -i and --cloud, and each top-level step with
-- its stage and result. `--resume DIR` reads it: the scenario must be the
-- same file content (unless --force), the parameters, -i and --cloud are the
-- earlier run's (a --set that contradicts one is a usage error), and the top-level steps
-- that passed are not run again until the first one that did not pass.
-- `--from-step NAME` skips the top-level steps before the one named NAME.
--
--   resume.load(s, opts, path) -> state | nil, message   (opts.resume / opts.from_step)
--   resume.gate(state) -> gate    gate:skip(st) -> nil | result, reason;  gate:missing() -> message | nil
--   resume.start(run)             writes the first checkpoint of a run
--   resume.step_done(run, st)     records a finished top-level step
local json = require "upgrun.report.json"
local shell = require "upgrun.shell"
local cjson = require "cjson"

local M = {}

M.FILE = "checkpoint.json"
M.FORMAT = "upgrun-checkpoint/1"
M.PASSED_EARLIER = "passed earlier"

-- The sha256 of a file (hex), or nil, message.
function M.hash(path)
  local p = io.popen("sha256sum -- " .. shell.quote(path) .. " 2>/dev/null")
  if not p then return nil, "cannot run sha256sum" end
  local out = p:read("a")
  p:close()
  local h = out and out:match("^(%x+)")
  if not h or #h ~= 64 then return nil, "cannot hash " .. path end
  return h
end

-- A path made absolute with symbolic links resolved (it need not exist).
local function real(path)
  local p = io.popen("realpath -m -- " .. shell.quote(path) .. " 2>/dev/null")
  local out = p and p:read("l")
  if p then p:close() end
  return out ~= "" and out or path
end

local function key(stage, name) return tostring(stage) .. "\0" .. tostring(name) end

local function same(a, b)
  if type(a) == "table" and type(b) == "table" then
    if #a ~= #b then return false end
    for i = 1, #a do if tostring(a[i]) ~= tostring(b[i]) then return false end end
    return true
  end
  return a == b
end

local function show(v) return type(v) == "table" and table.concat(v, ",") or tostring(v) end

-- The parameters recorded in a checkpoint: the non-secret ones.
local function recorded_params(s, params)
  local out = {}
  for _, k in ipairs(s.param_order) do
    local v = params[k]
    if not s.params[k].secret and v ~= nil then out[k] = type(v) == "table" and json.array(v) or v end
  end
  return out
end

local function read_checkpoint(dir)
  local file = dir .. "/" .. M.FILE
  local f = io.open(file, "r")
  if not f then
    local d = io.open(dir, "r")
    if d then d:close() end
    return nil, string.format("--resume %s: %s", dir, d and ("no " .. M.FILE .. " there: not the output directory "
      .. "of a run (or of a run made before checkpoints existed)") or "no such directory")
  end
  local text = f:read("a")
  f:close()
  local ok, doc = pcall(cjson.decode, text)
  if not ok or type(doc) ~= "table" or doc.format ~= M.FORMAT or type(doc.steps) ~= "table" then
    return nil, string.format("--resume %s: %s is not a upgrun checkpoint (%s)", dir, file,
                              ok and "format " .. tostring(type(doc) == "table" and doc.format) or tostring(doc))
  end
  return doc
end

-- Reads what --resume and --from-step need and merges the parameters into
-- opts.params. Returns the state (nil when neither option is given) or nil, message.
function M.load(s, opts, path)
  if not opts.resume and not opts.from_step then return nil end
  local state = { from_step = opts.from_step, passed = {}, order = {} }
  if not opts.resume then return state end
  local dir = opts.resume:gsub("/+$", "")
  local doc, err = read_checkpoint(dir)
  if not doc then return nil, err end
  state.dir, state.doc = dir, doc
  if opts.output and real(opts.output) == real(dir) then
    return nil, string.format("--resume %s: -o names the same directory; a resumed run writes a new one and leaves "
      .. "the earlier run's as it is", dir)
  end
  if doc.scenario ~= s.name then
    return nil, string.format("--resume %s: that run is of scenario %s, not %s", dir, tostring(doc.scenario), s.name)
  end
  local h, herr = M.hash(path)
  if not h then return nil, "--resume: " .. herr end
  if h ~= doc.sha256 and not opts.force then
    return nil, string.format("--resume %s: scenario file %s changed since that run (sha256 %s then, %s now); "
      .. "steps that passed may no longer be the same steps: start a new run, or --force to resume anyway",
      dir, path, tostring(doc.sha256):sub(1, 12), h:sub(1, 12))
  end
  state.changed = h ~= doc.sha256
  -- The nodes and the cloud: the earlier run's, unless given again.
  if opts.inventory == nil and type(doc.inventory) == "string" then opts.inventory = doc.inventory end
  if opts.cloud == nil and type(doc.cloud) == "string" then opts.cloud = doc.cloud end
  -- Parameters: the earlier run's; a --set may repeat one, never change it.
  local given = {}
  for _, kv in ipairs(opts.sets) do
    local k = kv:match("^([^=]+)=")
    if k then given[k] = true end
  end
  local earlier = type(doc.params) == "table" and doc.params or {}
  for _, k in ipairs(s.param_order) do
    local spec = s.params[k]
    if not spec.secret and earlier[k] ~= nil then
      if given[k] and not same(opts.params[k], earlier[k]) then
        return nil, string.format("--set %s=%s contradicts the resumed run %s, which ran with %s=%s (a resumed run "
          .. "keeps its parameters; start a new run to change them)", k, show(opts.params[k]), dir, k,
          show(earlier[k]))
      end
      opts.params[k] = earlier[k]
    end
  end
  for k in pairs(earlier) do
    if not s.params[k] then
      return nil, string.format("--resume %s: that run has parameter %s, which %s no longer declares", dir, k, s.name)
    end
  end
  for _, st in ipairs(doc.steps) do
    if type(st) == "table" and (st.result == "passed" or st.result == M.PASSED_EARLIER) then
      state.passed[key(st.stage, st.name)] = true
    end
  end
  return state
end

local Gate = {}
Gate.__index = Gate

function M.gate(state) return setmetatable({ state = state, seen = {}, names = {} }, Gate) end

-- Whether top-level step st is to be skipped: nil (run it) or result, reason.
-- Skipping ends at the first step that is run; from then on every step runs.
function Gate:skip(st)
  local state = self.state
  if not self.seen[st.name] then
    self.seen[st.name] = true
    self.names[#self.names + 1] = st.name
  end
  if self.reached then return nil end
  if state.from_step then
    if st.name == state.from_step then self.reached = true; return nil end
    return "skipped", "--from-step " .. state.from_step
  end
  if state.passed[key(st.stage, st.name)] then return M.PASSED_EARLIER, "in run " .. state.dir end
  self.reached = true
  return nil
end

-- After the stages: the message when --from-step named no top-level step.
function Gate:missing()
  if not self.state.from_step or self.reached then return nil end
  return string.format("--from-step %s: no top-level step of this scenario is named so; its steps are: %s",
                       self.state.from_step, #self.names > 0 and table.concat(self.names, ", ") or "(none)")
end

local function save(run)
  local cp = run.checkpoint
  local ok, err = json.write_file(run.out .. "/" .. M.FILE, cp, "  ")
  if not ok then io.stderr:write("upgrun: cannot write ", run.out, "/", M.FILE, ": ", tostring(err), "\n") end
end

function M.start(run)
  local h = M.hash(run.path)
  local st = run.resume_state
  run.checkpoint = { format = M.FORMAT, scenario = run.s.name, file = run.path, sha256 = h,
                     params = recorded_params(run.s, run.params), output = run.out,
                     inventory = run.opts.inventory, cloud = run.opts.cloud,
                     resumes = st and st.dir, from_step = st and st.from_step, steps = json.array {} }
  save(run)
end

function M.step_done(run, st)
  if not run.checkpoint or st.parent or st.stage == "cleanup" then return end
  local steps = run.checkpoint.steps
  steps[#steps + 1] = { stage = st.stage, name = st.name, result = st.result }
  save(run)
end

-- The report's `resumed` field, or nil.
function M.report_field(run)
  local st = run.resume_state
  if not st then return nil end
  local n = 0
  for _, x in ipairs(run.steps) do if x.result == M.PASSED_EARLIER then n = n + 1 end end
  return { from = st.dir, from_step = st.from_step, scenario_changed = st.changed or nil, passed_earlier = n }
end

return M
