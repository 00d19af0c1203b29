-- test_yaml — upgrun.yaml: Ansible inventory shapes (hosts with no value),
-- scalar typing by YAML 1.1 rules, anchors/aliases/merge keys, several
-- documents, errors with line and column, files, hostile input.
local T = require "testlib"
local yaml = require "upgrun.yaml"
local time = require "upgrun.time"

local NULL = yaml.null

local function keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = tostring(k) end
  table.sort(ks)
  return table.concat(ks, ",")
end

T.case("an Ansible YAML inventory keeps hosts that have no value", function()
  local inv = assert(yaml.decode([[
all:
  vars:
    ansible_user: stack
    ansible_become: yes
  children:
    controllers:
      hosts:
        ctl1:
        ctl2: ~
        ctl3: null
    computes:
      hosts:
        cmp1: {ansible_host: 127.0.0.1, ansible_port: 2201}
        cmp2:
          ansible_host: 127.0.0.1
          ansible_port: 2202
          release: "26.2.2"
      vars:
        nova_services: [nova-compute]
]], "inventory.yml"))
  local ctl = inv.all.children.controllers.hosts
  T.eq(keys(ctl), "ctl1,ctl2,ctl3")
  T.eq(ctl.ctl1, NULL); T.eq(ctl.ctl2, NULL); T.eq(ctl.ctl3, NULL)
  local cmp = inv.all.children.computes
  T.eq(cmp.hosts.cmp1.ansible_host, "127.0.0.1")
  T.eq(cmp.hosts.cmp1.ansible_port, 2201); T.eq(math.type(cmp.hosts.cmp1.ansible_port), "integer")
  T.eq(cmp.hosts.cmp2.ansible_port, 2202)
  T.eq(cmp.hosts.cmp2.release, "26.2.2")
  T.eq(cmp.vars.nova_services[1], "nova-compute"); T.eq(#cmp.vars.nova_services, 1)
  T.eq(inv.all.vars.ansible_become, true)
end)

T.case("plain scalars are typed as YAML 1.1 (Ansible) types them; quoted ones are strings", function()
  local v = assert(yaml.decode([[
t: [true, True, TRUE, yes, Yes, on, ON]
f: [false, no, NO, off, Off]
ints: [0, 42, -7, +3, 0x1F, 0b101, 0755, 1_000, 1:30, 190:20:30]
floats: [1.5, -0.25, 1.0e+3, .5, 2.]
strs: ["yes", 'no', "42", '1.5', "null", 1e3, 0o17, 1.2.3, 10.0.0.1, "1:30", y, n, 1.0e3, 01:30]
nulls: [~, null, NULL, ]
version: 1.10
block: |
  line one
  line two
folded: >
  a
  b
str_tag: !!str 123
float_tag: !!float 2
vault: !vault |
  $ANSIBLE_VAULT;1.1;AES256
]]))
  for _, b in ipairs(v.t) do T.eq(b, true) end
  T.eq(#v.t, 7)
  for _, b in ipairs(v.f) do T.eq(b, false) end
  local ints = { 0, 42, -7, 3, 31, 5, 493, 1000, 90, 685230 } -- sexagesimal as PyYAML
  for i, n in ipairs(ints) do
    T.eq(v.ints[i], n, "ints[" .. i .. "]"); T.eq(math.type(v.ints[i]), "integer")
  end
  local floats = { 1.5, -0.25, 1000.0, 0.5, 2.0 }
  for i, n in ipairs(floats) do
    T.eq(v.floats[i], n, "floats[" .. i .. "]"); T.eq(math.type(v.floats[i]), "float")
  end
  local strs = { "yes", "no", "42", "1.5", "null", "1e3", "0o17", "1.2.3", "10.0.0.1", "1:30", "y", "n", "1.0e3",
    "01:30" }
  for i, s in ipairs(strs) do T.eq(v.strs[i], s, "strs[" .. i .. "]") end
  T.eq(#v.nulls, 3) -- [~, null, NULL, ] has three items
  for i = 1, 3 do T.eq(v.nulls[i], NULL) end
  T.eq(v.version, 1.1) -- unquoted versions are floats, as in Ansible: quote them
  T.eq(v.block, "line one\nline two\n")
  T.eq(v.folded, "a b\n")
  T.eq(v.str_tag, "123")
  T.eq(v.float_tag, 2.0); T.eq(math.type(v.float_tag), "float")
  T.eq(v.vault, "$ANSIBLE_VAULT;1.1;AES256\n")
end)

T.case("anchors, aliases and merge keys", function()
  local v = assert(yaml.decode([[
defaults: &defaults
  user: stack
  port: 22
  tags: &tags [a, b]
name: &n ctl1
hosts:
  h1:
    <<: *defaults
    port: 2201
  h2:
    port: 2202
    <<: [*defaults, {extra: 1, user: other}]
  h3: *defaults
copy_of_name: *n
also_tags: *tags
]]))
  T.eq(v.hosts.h1.user, "stack"); T.eq(v.hosts.h1.port, 2201) -- explicit key wins
  T.eq(v.hosts.h1["<<"], nil)
  T.eq(v.hosts.h2.port, 2202); T.eq(v.hosts.h2.user, "stack"); T.eq(v.hosts.h2.extra, 1)
  T.eq(v.hosts.h3, v.defaults) -- an alias is the same table
  T.eq(v.copy_of_name, "ctl1")
  T.eq(v.also_tags[2], "b")
  T.eq(v.defaults.port, 22, "merging did not change the source")
end)

T.case("an alias bomb is cheap: aliases share tables", function()
  local lines = { "a0: &a0 [x, x, x, x, x, x, x, x, x, x]" }
  for i = 1, 30 do
    local prev = "*a" .. (i - 1)
    lines[#lines + 1] = string.format("a%d: &a%d [%s]", i, i, string.rep(prev, 10, ", "))
  end
  local t0 = time.mono()
  local v = assert(yaml.decode(table.concat(lines, "\n")))
  T.ok(time.mono() - t0 < 0.5)
  T.eq(v.a30[1], v.a29)
  T.eq(v.a3[10][10][10][1], "x")
end)

T.case("several documents: decode takes the first, decode_all takes all", function()
  T.eq(yaml.decode("--- 1\n--- 2\n"), 1)
  local docs = assert(yaml.decode_all("--- a\n---\n--- {k: v}\n"))
  T.eq(#docs, 3); T.eq(docs[1], "a"); T.eq(docs[2], NULL); T.eq(docs[3].k, "v")
  T.eq(#assert(yaml.decode_all("")), 0)
  -- an empty text or a null document is nil (one value, not an error)
  local v, err = yaml.decode("")
  T.eq(v, nil); T.eq(err, nil)
  v, err = yaml.decode("~\n")
  T.eq(v, nil); T.eq(err, nil)
  v, err = yaml.decode("# just a comment\n")
  T.eq(v, nil); T.eq(err, nil)
end)

T.case("bad YAML is a yaml error naming the source, line and column", function()
  local err = T.err("yaml", yaml.decode("all:\n  hosts:\n    ctl1:\n  a: b: c\n", "inventory.yml"))
  T.eq(err.message, "inventory.yml:4:7: mapping values are not allowed in this context")
  T.eq(err.line, 4); T.eq(err.column, 7); T.eq(err.name, "inventory.yml")
  err = T.err("yaml", yaml.decode("a: [1, 2\nb: 3\n"))
  T.eq(err.message, "<string>:2:2: did not find expected ',' or ']' (while parsing a flow sequence, line 1)")
  T.eq(err.line, 2); T.eq(err.column, 2)
  err = T.err("yaml", yaml.decode("x: *missing\n", "y.yml"))
  T.eq(err.message, "y.yml:1:4: found undefined alias 'missing'")
  err = T.err("yaml", yaml.decode("a: \"unterminated\n"))
  T.ok(err.message:find("quoted scalar", 1, true), err.message)
  err = T.err("yaml", yaml.decode("ok: 1\nbad utf8: \xff\xfe\n"))
  T.eq(err.message, "<string>:2:11: invalid leading UTF-8 octet")
  err = T.err("yaml", yaml.decode("<<: 3\n"))
  T.ok(err.message:find("merge", 1, true), err.message)
end)

T.case("nesting past the depth limit is an error, not a crash", function()
  local err = T.err("yaml", yaml.decode(string.rep("[", 100000)))
  T.ok(err.message:find("nesting deeper than", 1, true), err.message)
  err = T.err("yaml", yaml.decode(string.rep("- ", 500) .. "x\n"))
  T.ok(err.message:find("nesting", 1, true), err.message)
  local ok = assert(yaml.decode(string.rep("[", 150) .. string.rep("]", 150)))
  T.eq(type(ok[1][1][1]), "table")
end)

T.case("decode_file reads a file, names it in errors; a missing file is an io error", function()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write("hosts:\n  ctl1:\n  bad: [\n")
  f:close()
  local err = T.err("yaml", yaml.decode_file(path))
  T.ok(err.message:find(path .. ":", 1, true) == 1, err.message)
  f = assert(io.open(path, "w"))
  f:write("hosts:\n  ctl1:\n")
  f:close()
  local v = assert(yaml.decode_file(path))
  T.eq(v.hosts.ctl1, NULL)
  os.remove(path)
  err = T.err("io", yaml.decode_file(path))
  T.ok(err.message:find(path, 1, true), err.message)
  T.err("io", yaml.decode_file("/"))
end)

T.case("positions: each mapping's keys in document order with line and column", function()
  local text = "b: 1\na:\n  z: &m {q: 1}\n  y: 2\n  <<: *m\nc: [1, {k: v}]\nb: 3\n"
  local doc, pos = yaml.decode(text, "p.yml", { positions = true })
  T.eq(doc.b, 3)
  local top = pos[doc]
  T.eq(table.concat(top.keys, ","), "b,a,c") -- a repeated key keeps its first place
  T.eq(top.lines.b, 7); T.eq(top.lines.a, 2); T.eq(top.cols.c, 1)
  T.eq(table.concat(pos[doc.a].keys, ","), "z,y,q")
  T.eq(pos[doc.a].lines.y, 4); T.eq(pos[doc.a].cols.y, 3)
  T.eq(pos[doc.c[2]].lines.k, 6)
  T.eq(pos[doc.a].line, 3)
  local all, apos = yaml.decode_all("x: 1\n---\ny: 2\n", "d", { positions = true })
  T.eq(apos[all[2]].lines.y, 3)
  T.eq(select("#", yaml.decode("x: 1")), 1) -- without the option: one result
end)

T.case("integers beyond 2^53 stay exact strings", function()
  local v = assert(yaml.decode("a: 12345678901234567890123456789012\nb: 9007199254740993\n"
    .. "c: 9007199254740992\nd: -9007199254740993\n"))
  T.eq(v.a, "12345678901234567890123456789012"); T.eq(v.b, "9007199254740993")
  T.eq(math.type(v.c), "integer"); T.eq(v.c, 9007199254740992); T.eq(v.d, "-9007199254740993")
end)

T.case("misuse raises", function()
  T.raises("string expected", yaml.decode, nil)
  T.raises("string expected", yaml.decode, {})
end)

return T.done()
