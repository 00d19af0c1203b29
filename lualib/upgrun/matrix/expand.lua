-- upgrun.matrix.expand — turns a matrix declaration into its cells, with the
-- semantics of GitHub Actions `strategy.matrix` (which GitLab's
-- `parallel:matrix` shares for the product of axes):
--   1. the cells are the Cartesian product of the axes, the first axis
--      varying slowest (the order the axes are written in);
--   2. `exclude`: a cell is removed when it matches every key:value of an
--      exclude entry (a partial match is enough); exclude keys must be axes;
--   3. `include`, after exclude, entry by entry: the entry's key:value pairs
--      are added to every cell of the product whose ORIGINAL axis values they
--      do not overwrite (values added by an earlier include may be
--      overwritten); an entry that can be added to no such cell becomes a new
--      cell of its own (later entries are not merged into it).
-- Also: stable cell ids and the stable shard subsets (`--shard I/N`).
local M = {}

local function is_scalar(v)
  local t = type(v)
  return t == "string" or t == "number" or t == "boolean"
end

-- The value as text, as it is given to `--set` and written in ids.
function M.text(v)
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
    return string.format("%d", v)
  end
  return tostring(v)
end

local function same(a, b) return M.text(a) == M.text(b) end

-- Expands `decl` (the decoded `matrix:` mapping) into cells.
-- axis_order: the axis names in the order they are written (keys of decl other
-- than include/exclude). Returns an array of cells, each
-- {values = {key = value}, keys = {key, ...} (in order), origin = "product" | "include"},
-- or raises a string naming the offending entry.
function M.expand(decl, axis_order)
  if type(decl) ~= "table" then error("matrix: expects a mapping of axes (and include/exclude)", 0) end
  local axes = {}
  for _, name in ipairs(axis_order) do
    local values = decl[name]
    if type(values) ~= "table" or #values == 0 then
      error(string.format("matrix.%s: expects a non-empty list of values", name), 0)
    end
    for i, v in ipairs(values) do
      if not is_scalar(v) then
        error(string.format("matrix.%s[%d]: expects a string, number or boolean", name, i), 0)
      end
    end
    axes[#axes + 1] = { name = name, values = values }
  end
  local is_axis = {}
  for _, a in ipairs(axes) do is_axis[a.name] = true end

  -- 1. the product, first axis slowest
  local cells = {}
  if #axes > 0 then
    local function rec(i, acc)
      if i > #axes then
        local values, keys = {}, {}
        for j, a in ipairs(axes) do values[a.name] = acc[j]; keys[j] = a.name end
        cells[#cells + 1] = { values = values, keys = keys, origin = "product" }
        return
      end
      for _, v in ipairs(axes[i].values) do
        acc[i] = v
        rec(i + 1, acc)
      end
    end
    rec(1, {})
  end

  local function entries(field)
    local list = decl[field]
    if list == nil then return {} end
    if type(list) ~= "table" or (next(list) ~= nil and #list == 0) then
      error("matrix." .. field .. ": expects a list of mappings", 0)
    end
    for i, e in ipairs(list) do
      if type(e) ~= "table" or #e > 0 or next(e) == nil then
        error(string.format("matrix.%s[%d]: expects a non-empty mapping of key: value", field, i), 0)
      end
      for k, v in pairs(e) do
        if type(k) ~= "string" or not is_scalar(v) then
          error(string.format("matrix.%s[%d].%s: expects a string, number or boolean", field, i, tostring(k)), 0)
        end
      end
    end
    return list
  end

  -- 2. exclude (partial match)
  local excludes = entries("exclude")
  for i, e in ipairs(excludes) do
    for k in pairs(e) do
      if not is_axis[k] then
        error(string.format("matrix.exclude[%d]: %q is not an axis of the matrix (axes: %s)", i, k,
                            table.concat(axis_order, ", ")), 0)
      end
    end
  end
  local kept = {}
  for _, c in ipairs(cells) do
    local drop = false
    for _, e in ipairs(excludes) do
      local all = true
      for k, v in pairs(e) do if not same(c.values[k], v) then all = false; break end end
      if all then drop = true; break end
    end
    if not drop then kept[#kept + 1] = c end
  end
  cells = kept

  -- 3. include, after exclude
  local product_n = #cells
  for _, e in ipairs(entries("include")) do
    -- keys in a stable order: axes first (in axis order), then the rest sorted
    local ekeys = {}
    for _, a in ipairs(axes) do if e[a.name] ~= nil then ekeys[#ekeys + 1] = a.name end end
    local rest = {}
    for k in pairs(e) do if not is_axis[k] then rest[#rest + 1] = k end end
    table.sort(rest)
    for _, k in ipairs(rest) do ekeys[#ekeys + 1] = k end
    local added = false
    for ci = 1, product_n do
      local c = cells[ci]
      local fits = true
      for _, k in ipairs(ekeys) do
        if is_axis[k] and not same(c.values[k], e[k]) then fits = false; break end
      end
      if fits then
        added = true
        for _, k in ipairs(ekeys) do
          if c.values[k] == nil then c.keys[#c.keys + 1] = k end
          c.values[k] = e[k]
        end
      end
    end
    if not added then
      local values = {}
      for _, k in ipairs(ekeys) do values[k] = e[k] end
      cells[#cells + 1] = { values = values, keys = ekeys, origin = "include" }
    end
  end
  return cells
end

-- A cell's id: its values in key order, joined by "-", each reduced to
-- [A-Za-z0-9_.] (a scenario path to its base name without .lua; a leading
-- "." becomes "_"). Stable: it
-- depends only on the cell's own values, not on its position.
function M.cell_id(cell)
  local parts = {}
  for _, k in ipairs(cell.keys) do
    local v = M.text(cell.values[k])
    if k == "scenario" then v = v:match("([^/]+)$"):gsub("%.lua$", "") end
    v = v:gsub("[^%w_.]+", "_")
    parts[#parts + 1] = v
  end
  -- never ".", ".." or a hidden name: the id is a directory name
  local id = table.concat(parts, "-"):gsub("^%.", "_")
  if id == "" then id = "default" end
  return id
end

-- Parses "I/N" (1 <= I <= N). Returns i, n or nil, message.
function M.parse_shard(spec)
  local i, n = tostring(spec):match("^(%d+)/(%d+)$")
  i, n = tonumber(i), tonumber(n)
  if not i then return nil, string.format("--shard expects I/N (e.g. 1/2), got %q", tostring(spec)) end
  if n < 1 or i < 1 or i > n then
    return nil, string.format("--shard %s: I must be between 1 and N (N >= 1)", spec)
  end
  return i, n
end

-- The cells of shard i of n: every n-th cell in matrix order, starting at the
-- i-th (cells 1, 1+n, 1+2n, ... go to shard 1). The same matrix file gives
-- the same subsets on every machine, and the shards together hold every cell
-- exactly once.
function M.shard(cells, i, n)
  local out = {}
  for k, c in ipairs(cells) do
    if (k - 1) % n == i - 1 then out[#out + 1] = c end
  end
  return out
end

return M
