#!/usr/bin/env python3
"""tests/integration/browser_check.py — loads an HTML file in headless
Chromium (Debian's chromium) and reports, as one JSON object on stdout:
  png:     {width, height, colors (distinct, capped), nonwhite (fraction)}
           of a screenshot (decoded here: zlib + PNG filters, no PIL)
  classes: {class name: count} of the elements in the DOM after scripts ran
  titles:  number of SVG <title> elements (hover texts)
  titles_by_class: {class name: [text of each <title> child of an element with that class]}
  rows_by_class: {class name: [[cell texts] of each <tr> with that class]}
  page_errors: the text window.onerror wrote into #page-errors
  console: console messages Chromium logged (errors, CSP refusals)
  network: requests for anything but the file itself (file:, data:, about: are local)
usage: browser_check.py FILE.html SCREENSHOT.png [WIDTHxHEIGHT]
Exit 0 when Chromium ran (the caller asserts on the JSON), 2 when it did not."""
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run(browser, args, profile, timeout=60):
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-extensions", "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0",
            "--log-level=0"] + args
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
    bpp = 4 if ctype == 6 else 3
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    colors, nonwhite = set(), 0
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                ul = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + paeth(left, prev[i], ul)) & 255
        prev = line
        if y % 2 == 0:  # every other row is enough for the statistics
            for x in range(0, stride, bpp * 2):
                px = bytes(line[x:x + 3])
                if px != b"\xff\xff\xff":
                    nonwhite += 1
                    if len(colors) < 5000:
                        colors.add(px)
    sampled = ((h + 1) // 2) * ((w + 1) // 2)
    return {"width": w, "height": h, "colors": len(colors), "nonwhite": nonwhite / max(1, sampled)}


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Dom(html.parser.HTMLParser):
    """Counts classes and titles; keeps the open elements (Chromium's
    --dump-dom closes every non-void element, SVG ones too) to give each
    <title> to its parent's classes and each cell to its row's."""

    def __init__(self):
        super().__init__()
        self.classes, self.titles, self.in_errors, self.page_errors = {}, 0, False, ""
        self.titles_by_class, self.rows_by_class = {}, {}
        self.stack = []  # [tag, classes, text or None]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        for c in classes:
            self.classes[c] = self.classes.get(c, 0) + 1
        if tag == "title":
            self.titles += 1
        self.in_errors = a.get("id") == "page-errors"
        if tag in VOID:
            return
        if tag == "tr":
            self.stack.append([tag, classes, []])
        else:
            self.stack.append([tag, classes, "" if tag in ("title", "td", "th") else None])

    def handle_endtag(self, tag):
        self.in_errors = False
        while self.stack:
            el = self.stack.pop()
            parent = self.stack[-1] if self.stack else None
            if el[0] == "title" and parent:
                for c in parent[1]:
                    self.titles_by_class.setdefault(c, []).append(el[2])
            elif el[0] in ("td", "th") and parent and parent[0] == "tr":
                parent[2].append(el[2].strip())
            elif el[0] == "tr":
                for c in el[1]:
                    self.rows_by_class.setdefault(c, []).append(el[2])
            if el[0] == tag:
                break

    def handle_data(self, data):
        if self.in_errors:
            self.page_errors += data
        for el in reversed(self.stack):
            if isinstance(el[2], str):
                el[2] += data
                break


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    page, shot = os.path.abspath(sys.argv[1]), sys.argv[2]
    size = sys.argv[3] if len(sys.argv) > 3 else "1280x1000"
    browser = chromium()
    if not browser:
        print("browser_check: no chromium (tests/setup installs Debian's chromium)", file=sys.stderr)
        return 2
    url = "file://" + page
    with tempfile.TemporaryDirectory(prefix="upgrun-chromium-") as profile:
        r1 = run(browser, ["--window-size=" + size.replace("x", ","), "--screenshot=" + shot, url], profile)
        r2 = run(browser, ["--dump-dom", url], profile)
    if r1.returncode != 0 or not os.path.exists(shot) or r2.returncode != 0:
        print("browser_check: chromium failed:\n" + r1.stderr[-3000:] + r2.stderr[-3000:], file=sys.stderr)
        return 2
    dom = Dom()
    dom.feed(r2.stdout)
    console, network = [], []
    for line in (r1.stderr + r2.stderr).splitlines():
        if "CONSOLE" in line or "Uncaught" in line or "Refused to" in line:
            console.append(line.strip()[-400:])
        for m in re.finditer(r"\b(https?|wss?|ftp)://[^\s\"')]+", line):
            network.append(m.group(0))
    out = {"png": decode_png(shot), "classes": dom.classes, "titles": dom.titles,
           "page_errors": dom.page_errors.strip(),
           "titles_by_class": dom.titles_by_class, "rows_by_class": dom.rows_by_class, "console": console, "network": network,
           "dom_bytes": len(r2.stdout)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
