#!/usr/bin/env python3
"""requests_probe.py — the reference for upgrun's per-sample CPU: Debian's
python3-requests with a keep-alive Session, GET URL at HZ for SECONDS on a
fixed schedule (as an open-loop probe with one request in flight), checking
the status. Prints "requests SECONDS HZ SAMPLES CPU_S LOOP_CPU_S" where CPU_S
is the process CPU time (user+sys) of the whole invocation (start-up
included) and LOOP_CPU_S that of the probing loop alone."""
import sys
import time

import requests

url, secs, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = requests.Session()
n = 0
c0 = time.process_time()
t0 = time.monotonic()
k = 0
while True:
    due = t0 + k / hz
    now = time.monotonic()
    if due - t0 >= secs:
        break
    if due > now:
        time.sleep(due - now)
    r = s.get(url, timeout=2)
    if r.status_code == 200:
        n += 1
    k += 1
c1 = time.process_time()
print("requests %g %g %d %.3f %.4f" % (secs, hz, n, c1, c1 - c0))
