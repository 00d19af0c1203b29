-- test_matrix_expand — upgrun.matrix.expand against the examples of GitHub
-- Actions' documentation of strategy.matrix (the product order, exclude by
-- partial match, include that extends cells without overwriting original
-- values or adds a new cell), stable ids, and the shard subsets.
local T = require "testlib"
local expand = require "upgrun.matrix.expand"

local function show(cells)
  local out = {}
  for i, c in ipairs(cells) do
    local parts = {}
    for _, k in ipairs(c.keys) do parts[#parts + 1] = k .. "=" .. expand.text(c.values[k]) end
    out[i] = "{" .. table.concat(parts, ", ") .. "}"
  end
  return table.concat(out, " ")
end

T.case("the product: first axis slowest (GitHub's version x os example)", function()
  local cells = expand.expand({ version = { 10, 12, 14 }, os = { "ubuntu-latest", "windows-latest" } },
                              { "version", "os" })
  T.eq(show(cells), "{version=10, os=ubuntu-latest} {version=10, os=windows-latest} "
    .. "{version=12, os=ubuntu-latest} {version=12, os=windows-latest} "
    .. "{version=14, os=ubuntu-latest} {version=14, os=windows-latest}")
end)

T.case("exclude: a partial match is enough (GitHub's example: 12 cells -> 9)", function()
  local cells = expand.expand({
    os = { "macos-latest", "windows-latest" }, version = { 12, 14, 16 }, environment = { "staging", "production" },
    exclude = { { os = "macos-latest", version = 12, environment = "production" },
                { os = "windows-latest", version = 16 } },
  }, { "os", "version", "environment" })
  T.eq(#cells, 9, "12 - 1 - 2")
  for _, c in ipairs(cells) do
    T.ok(not (c.values.os == "windows-latest" and c.values.version == 16), show { c })
    T.ok(not (c.values.os == "macos-latest" and c.values.version == 12 and c.values.environment == "production"))
  end
end)

T.case("include: GitHub's fruit/animal example, cell by cell", function()
  local cells = expand.expand({
    fruit = { "apple", "pear" }, animal = { "cat", "dog" },
    include = {
      { color = "green" },
      { color = "pink", animal = "cat" },
      { fruit = "apple", shape = "circle" },
      { fruit = "banana" },
      { fruit = "banana", animal = "cat" },
    },
  }, { "fruit", "animal" })
  T.eq(show(cells), "{fruit=apple, animal=cat, color=pink, shape=circle} "
    .. "{fruit=apple, animal=dog, color=green, shape=circle} "
    .. "{fruit=pear, animal=cat, color=pink} {fruit=pear, animal=dog, color=green} "
    .. "{fruit=banana} {fruit=banana, animal=cat}")
end)

T.case("include after exclude adds an excluded combination back", function()
  local cells = expand.expand({
    a = { 1, 2 }, b = { "x", "y" },
    exclude = { { a = 2 } },
    include = { { a = 2, b = "y" } },
  }, { "a", "b" })
  T.eq(show(cells), "{a=1, b=x} {a=1, b=y} {a=2, b=y}")
end)

T.case("only include: each entry is a cell", function()
  local cells = expand.expand({ include = { { strategy = "rolling" }, { strategy = "manual", x = 1 } } }, {})
  T.eq(show(cells), "{strategy=rolling} {strategy=manual, x=1}")
end)

T.case("bad declarations name the field", function()
  T.raises('matrix.exclude[1]: "nope" is not an axis', expand.expand,
           { a = { 1 }, exclude = { { nope = 1 } } }, { "a" })
  T.raises("matrix.a: expects a non-empty list", expand.expand, { a = {} }, { "a" })
  T.raises("matrix.a[2]: expects a string", expand.expand, { a = { 1, { 2 } } }, { "a" })
  T.raises("matrix.include[1]: expects a non-empty mapping", expand.expand, { a = { 1 }, include = { "x" } },
           { "a" })
end)

T.case("ids are stable: they depend on a cell's values only", function()
  local cells = expand.expand({ scenario = { "dir/nova up.lua" }, strategy = { "rolling", "manual" } },
                              { "scenario", "strategy" })
  T.eq(expand.cell_id(cells[1]), "nova_up-rolling")
  T.eq(expand.cell_id(cells[2]), "nova_up-manual")
  local again = expand.expand({ scenario = { "dir/nova up.lua" }, strategy = { "manual" } }, { "scenario", "strategy" })
  T.eq(expand.cell_id(again[1]), "nova_up-manual", "same values, same id, whatever the position")
  local dots = expand.expand({ a = { "..", ".", ".x" } }, { "a" })
  T.eq(expand.cell_id(dots[1]), "_.", "never a parent directory")
  T.eq(expand.cell_id(dots[2]), "_"); T.eq(expand.cell_id(dots[3]), "_x")
  T.eq(expand.text(1.0), "1"); T.eq(expand.text(0.5), "0.5"); T.eq(expand.text(true), "true")
end)

T.case("shards: every cell exactly once, I/N parsed strictly", function()
  local cells = {}
  for i = 1, 7 do cells[i] = { id = "c" .. i } end
  local seen = {}
  for i = 1, 3 do
    for _, c in ipairs(expand.shard(cells, i, 3)) do
      T.ok(not seen[c.id], "once: " .. c.id); seen[c.id] = i
    end
  end
  for i = 1, 7 do T.eq(seen["c" .. i], (i - 1) % 3 + 1, "c" .. i) end
  T.eq(select(2, expand.parse_shard("1/2")), 2)
  for _, bad in ipairs { "3/2", "0/2", "1/0", "x", "1/2/3", "-1/2", "" } do
    local i, err = expand.parse_shard(bad)
    T.eq(i, nil, bad); T.ok(err:find("--shard", 1, true), err)
  end
end)

return T.done()
