-- test_report_html — report.json against its schema (docs/report.schema.json,
-- tests/validate_report.py) and the timeline page (report.html) and the
-- compare page (`upgrun compare --html`) rendered in headless Chromium
-- (tests/integration/browser_check.py): a non-blank screenshot, the DOM's
-- latency bands, outages with their uncertainty, legend, service markers and
-- axes, no script error, no console error, no network fetch. The runs are
-- real upgrun runs of fixtures/scenarios/timeline.lua and budget.lua.
local T = require "testlib"
local cjson = require "cjson"
local proc = require "upgrun.proc"

local BIN = os.getenv("UPGRUN_BIN") or T.src("build/upgrun")
local FIX = T.src("tests/integration/fixtures/scenarios/")
local TMP = T.tmpdir()
local read = T.read
local CHAR_W = require("upgrun.report.timeline_svg").CHAR_W

local function upgrun(args)
  local argv = { BIN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = proc.run(argv, { timeout = 60 * T.slack, cwd = TMP })
  return r.status, r.stdout or "", r.stderr or ""
end

-- Runs browser_check.py on a page; returns its JSON report.
local function browser(page, size)
  local r = proc.run({ "python3", T.src("tests/integration/browser_check.py"), page, page .. ".png",
                       size or "1280x1000" }, { timeout = 120 * T.slack })
  T.eq(r.status, 0, "browser_check ran (chromium: tests/setup installs it): " .. tostring(r.stderr))
  return cjson.decode(r.stdout)
end

local function clean(b, what)
  T.eq(b.page_errors, "", what .. ": no script error")
  T.eq(#b.console, 0, what .. ": no console message: " .. table.concat(b.console, "\n"))
  T.eq(#b.network, 0, what .. ": no network fetch: " .. table.concat(b.network, ", "))
end

local out = TMP .. "/timeline"
local code, so = upgrun { FIX .. "timeline.lua", "-o", out, "-q" }
local doc = cjson.decode((assert(read(out .. "/report.json"), "report.json written: " .. so)))

T.case("report.json validates against docs/report.schema.json; probes carry service, kind, url", function()
  T.eq(code, 0, so)
  T.valid_report(out)
  T.eq(doc.schema_version, 1)
  local api = doc.probes[1]
  T.eq(api.service, "compute"); T.eq(api.kind, "function"); T.eq(api.url, "GET /servers")
  local other = doc.probes[2]
  T.eq(other.service, "slow", "default service: the name's first word"); T.eq(other.kind, "function")
  T.eq(#api.series.fields, 8)
  T.ok(#api.series.columns > 10, "chart buckets in the report")
end)

T.case("an http probe's defaults: service host:port, kind http, url without its user info", function()
  local p = require("upgrun.probe").new { name = "n", http = { url = "http://admin:pw@ctl1:8774/v2.1?x=1" } }
  T.eq(p.service, "ctl1:8774"); T.eq(p.kind, "http"); T.eq(p.url, "http://ctl1:8774/v2.1?x=1")
  T.raises("service must be a string", require("upgrun.probe").new, { name = "n", fn = print, service = 3 })
end)

T.case("run.t0_wall keeps the milliseconds of run.started", function()
  local t0 = doc.run.t0_wall
  T.ok(math.type(t0) == "float" or t0 % 1 ~= 0 or doc.run.started:match("%.000Z$"), "t0_wall has a fraction")
  local ms = tonumber(doc.run.started:match("%.(%d%d%d)Z$"))
  T.ok(math.abs((t0 % 1) * 1000 - ms) < 1.5, string.format("t0_wall %.6f vs started %s", t0, doc.run.started))
  local text = read(out .. "/report.json")
  T.ok(text:find('"t0_wall": %d+%.%d'), "written with its fraction")
end)

T.case("the validator rejects a report missing a field or with a wrong type, naming the field", function()
  local bad = cjson.decode(read(out .. "/report.json"))
  bad.probes[1].service = nil
  bad.run.t0_wall = "yesterday"
  local f = assert(io.open(TMP .. "/bad.json", "w")); f:write(cjson.encode(bad)); f:close()
  local r = proc.run({ "/usr/bin/python3", T.src("tests/validate_report.py"), TMP .. "/bad.json" }, { timeout = 60 })
  T.eq(r.status, 1)
  T.ok(r.stderr:find("/probes/0: 'service' is a required property", 1, true), r.stderr)
  T.ok(r.stderr:find("/run/t0_wall", 1, true), r.stderr)
end)

T.case("report.html in headless Chromium: bands, outage with uncertainty, legend, markers, axes, no errors", function()
  local b = browser(out .. "/report.html")
  clean(b, "report.html")
  T.ok(b.png.width == 1280 and b.png.nonwhite > 0.1 and b.png.colors > 50,
    "the screenshot is not blank: " .. cjson.encode(b.png))
  local c = b.classes
  T.eq(c["band-minmax"] and c["band-minmax"] > 0 and c["band-minmax"] == c["band-p50p95"], true, "min-max and "
    .. "p50-p95 bands, as many")
  T.ok((c["line-p50"] or 0) >= 2, "a p50 line in each probe lane")
  T.eq(c.outage, 1, "one outage")
  T.ok((c["outage-unc"] or 0) >= 1, "its uncertainty drawn")
  T.ok((c.bad or 0) >= 1, "failed samples marked")
  T.eq(c["legend-item"], 10, "legend")
  T.eq(c["svc-stop"], 1, "the stop marker on the node lane"); T.eq(c["svc-start"], 1, "the start marker")
  T.eq(c["node-cmd"], 1, "the command tick")
  T.ok((c["axis-run"] or 0) >= 3 and c["axis-run"] == c["axis-wall"], "run-time and wall-clock axes")
  T.ok(b.titles >= 10, "hover texts")
end)

T.case("step labels fit their bands (cut with an ellipsis) and the full path shows on hover", function()
  local html = read(out .. "/report.html")
  local n, cut = 0, 0
  for w, title, label in html:gmatch('<g class="step"><rect x="[%d.]+" y="%d+" width="([%d.]+)"[^>]*/><title>'
    .. '([^\n<]*)[^<]*</title>\n<text[^>]*>([^<]*)</text>') do
    n = n + 1
    local chars = utf8.len(label)
    T.ok(chars * CHAR_W <= tonumber(w) + 1, string.format("label %q (%d chars) fits in %s px", label, chars, w))
    if label:find("…", 1, true) then
      cut = cut + 1
      T.ok(title:find(label:gsub("…$", ""), 1, true), "the title holds the whole name: " .. title)
    end
  end
  T.ok(n >= 3, "labelled steps: " .. n)
  T.ok(cut >= 1, "the long step name is cut")
  T.ok(html:find("<title>controllers / switch the code of the controllers to the new release\n", 1, true),
    "the long name in full on hover")
  T.ok(not html:find('src="') and not html:find('href="http') and not html:find("url%(['\"]?http")
    and not html:find("@import"), "nothing to fetch in the page")
end)

T.case("the browser check catches a script error and a blocked fetch", function()
  local page = TMP .. "/bad.html"
  local f = assert(io.open(page, "w"))
  f:write(require("upgrun.report.html").head("bad"), '<img src="http://192.0.2.1/x.png">',
    "<script>no_such_function();</script></body></html>")
  f:close()
  local b = browser(page, "400x300")
  T.ok(b.page_errors:find("no_such_function", 1, true), "the error is in the DOM: " .. b.page_errors)
  T.ok(#b.console >= 1, "console messages")
  T.ok(#b.network >= 1, "the fetch is seen")
end)

T.case("upgrun compare --html: both runs' timelines on one page, in Chromium", function()
  local out2 = TMP .. "/budget"
  local c2 = upgrun { FIX .. "budget.lua", "-o", out2, "-q" }
  T.eq(c2, 1, "budget.lua fails its budget")
  T.valid_report(out2)
  local page = TMP .. "/compare.html"
  local c, o, e = upgrun { "compare", out, out2, "--html", page }
  T.eq(c, 0, e)
  T.ok(o:find("compare: " .. page, 1, true), o)
  local b = browser(page)
  clean(b, "compare.html")
  T.eq(b.classes.timeline, 2, "two timelines")
  T.eq(b.classes.run, 2, "two run headings")
  T.eq(b.classes.compare, 1, "the comparison table")
  T.eq(b.classes.outage, 2, "each run's outage")
  T.ok(b.png.nonwhite > 0.1, "not blank")
  local html = read(page)
  T.ok(html:find("A: timeline", 1, true) and html:find("B: budget", 1, true), "labels")
  local c3, _, e3 = upgrun { "compare", out, out2, "--htm", page }
  T.eq(c3, 2); T.ok(e3:find("unknown option --htm", 1, true), e3)
end)

return T.done()
