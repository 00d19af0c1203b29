#!/usr/bin/env python3
"""junit_check.py — reads a junit.xml as CI does, for test_junit.lua.

    python3 junit_check.py FILE

1. junitparser (python3-junitparser, a real consumer library) loads the file;
   every suite's and case's result, time, properties and system-out come from
   it.
2. The structure the JUnit XSD used by Jenkins (junit-10.xsd / Ant's
   junit.xsd) asks for is checked element by element: root <testsuites>;
   each <testsuite> has name, tests, failures, errors, skipped (integers that
   match its testcases), time (a decimal), timestamp (xs:dateTime without a
   zone) and its children in the order properties?, testcase*, system-out?,
   system-err?; each <testcase> has classname, name, time and its children
   in the order (skipped | error | failure)?, system-out?, system-err?; each
   <property> has name and value.
3. Jenkins' split of a classname at its last dot gives its package and class.

Prints JSON: {"suites": {name: {tests, failures, errors, skipped, time,
properties: {name: value}, cases: [{classname, name, time, result, message,
text, system_out, package, class}]}}, "time": <testsuites time>}; exits 1
with the reason on stderr when the file breaks a rule.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

from junitparser import Error, Failure, JUnitXml, Skipped

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


def fail(msg):
    print("junit_check: " + msg, file=sys.stderr)
    sys.exit(1)


def order_ok(children, allowed):
    """children tags follow `allowed` (a list of (tag-set, max count))."""
    i = 0
    for group, most in allowed:
        n = 0
        while i < len(children) and children[i] in group:
            i, n = i + 1, n + 1
        if most is not None and n > most:
            return False
    return i == len(children)


def check_structure(path):
    root = ET.parse(path).getroot()
    if root.tag != "testsuites":
        fail("root is <%s>, not <testsuites>" % root.tag)
    if not DECIMAL.match(root.get("time", "")):
        fail("testsuites time %r is not a decimal" % root.get("time"))
    for s in root:
        if s.tag != "testsuite":
            fail("<%s> inside <testsuites>" % s.tag)
        for a in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp"):
            if s.get(a) is None:
                fail("testsuite %s has no %s" % (s.get("name"), a))
        if not DATETIME.match(s.get("timestamp")):
            fail("testsuite timestamp %r is not an xs:dateTime without zone" % s.get("timestamp"))
        if not DECIMAL.match(s.get("time")):
            fail("testsuite time %r" % s.get("time"))
        tags = [c.tag for c in s]
        if not order_ok(tags, [({"properties"}, 1), ({"testcase"}, None), ({"system-out"}, 1),
                               ({"system-err"}, 1)]):
            fail("testsuite %s: children out of order: %s" % (s.get("name"), tags))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for p in s.iter("property"):
            if p.get("name") is None or p.get("value") is None:
                fail("a property without name or value")
        for c in s.findall("testcase"):
            counts["tests"] += 1
            for a in ("classname", "name", "time"):
                if c.get(a) is None:
                    fail("testcase without %s" % a)
            if not DECIMAL.match(c.get("time")):
                fail("testcase time %r" % c.get("time"))
            ctags = [x.tag for x in c]
            if not order_ok(ctags, [({"skipped", "error", "failure"}, 1), ({"system-out"}, 1),
                                    ({"system-err"}, 1)]):
                fail("testcase %s: children %s" % (c.get("name"), ctags))
            for kind, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
                if c.find(kind) is not None:
                    counts[key] += 1
        for k, v in counts.items():
            if int(s.get(k)) != v:
                fail("testsuite %s: %s=%s but %d testcases say so" % (s.get("name"), k, s.get(k), v))
    return float(root.get("time"))


def main():
    path = sys.argv[1]
    total_time = check_structure(path)
    xml = JUnitXml.fromfile(path)
    out = {"suites": {}, "time": total_time}
    for suite in xml:
        props = {p.name: p.value for p in suite.properties()}
        cases = []
        for case in suite:
            result, message, text = "passed", None, None
            for r in case.result:
                if isinstance(r, Failure):
                    result = "failure"
                elif isinstance(r, Error):
                    result = "error"
                elif isinstance(r, Skipped):
                    result = "skipped"
                message, text = r.message, r.text
            package, _, cls = case.classname.rpartition(".")
            cases.append({"classname": case.classname, "name": case.name, "time": case.time,
                          "result": result, "message": message, "text": text,
                          "system_out": case.system_out, "package": package, "class": cls})
        out["suites"][suite.name] = {"tests": suite.tests, "failures": suite.failures, "errors": suite.errors,
                                     "skipped": suite.skipped, "time": suite.time, "properties": props,
                                     "cases": cases}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
