#!/usr/bin/env python3
"""outage_server.py — an HTTP server (127.0.0.1 only) that follows a scripted
schedule of outages and reports when each one really began and ended, on
CLOCK_MONOTONIC (time.monotonic() on Linux, the clock of upgrun.time.mono()).

Outage kinds:
  refused  the listening socket is closed, then reopened on the same port
  503      every request is answered 503
  hang     requests are read but not answered for --hold seconds (past the
           probe's timeout), then the connection is closed

Usage:
  outage_server.py (--t0 MONO | --trigger PATH) [--seed N | --schedule JSON]
                   [--length S] [--hold S] [--truth FILE] [--linger S]

One thread, asyncio: switching a mode and stamping the time happen in the
same loop that handles requests, so the truth is what the server really did
even when the machine is busy.

Prints "PORT <n>" on stdout once listening. The schedule starts at monotonic
time --t0, or with --trigger when the first request for PATH arrives (it is
answered 200 "go"): a client starts the schedule from the step it tests, so a
slow start of the client (a sanitizer build) cannot move the outages out of
it. Offsets in the schedule are relative to that start. With --seed a random
schedule is made: outages of random kinds and lengths (50 ms to 5 s, roughly
log-uniform) separated by at least 0.4 s of health, fitting in --length
seconds. After the schedule ends (+0.3 s), the truth is written as JSON to
--truth (or as one line on stdout), and the server keeps serving for --linger
seconds (default 1) before it exits:
  {"outages": [{"kind", "planned_start", "planned_end", "start", "end"}], ...}
where start/end are the monotonic times the server actually switched.
"""
import argparse
import asyncio
import json
import math
import random
import sys
import time

KINDS = ("refused", "503", "hang")


def make_schedule(seed, length):
    rnd = random.Random(seed)
    out, t = [], 0.3 + rnd.random() * 0.3
    while True:
        dur = math.exp(rnd.uniform(math.log(0.05), math.log(min(5.0, max(0.05, length - t - 0.4)))))
        if t + dur + 0.4 > length:
            break
        out.append({"kind": rnd.choice(KINDS), "start": round(t, 4), "end": round(t + dur, 4)})
        t += dur + 0.4 + rnd.random() * 0.8
    return out


class Server:
    def __init__(self, hold, trigger):
        self.hold = hold
        self.trigger = trigger  # the path whose first request starts the schedule, or None
        self.triggered = asyncio.Event()
        self.mode = "up"  # up | 503 | hang: what requests get
        self.server = None
        self.port = 0
        self.writers = set()

    async def listen(self):
        while True:
            try:
                self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port,
                                                         reuse_address=True, backlog=128)
                break
            except OSError:
                await asyncio.sleep(0.001)
        self.port = self.server.sockets[0].getsockname()[1]

    def close_listener(self):
        self.server.close()  # closes the listening socket now
        self.server = None

    async def handle(self, reader, writer):
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            mode = self.mode
            if self.trigger and request.split(b" ", 2)[1:2] == [self.trigger.encode()]:
                self.triggered.set()
                mode = "go"
            if mode == "hang":
                await asyncio.sleep(self.hold)
                return
            if mode == "503":
                body, head = b"unavailable", b"HTTP/1.1 503 Service Unavailable\r\n"
            else:
                body, head = (b"go" if mode == "go" else b"ok"), b"HTTP/1.1 200 OK\r\n"
            writer.write(head + b"Content-Type: text/plain\r\nContent-Length: " + str(len(body)).encode() +
                         b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def sleep_until(t):
    d = t - time.monotonic()
    if d > 0:
        await asyncio.sleep(d)


async def amain(a):
    schedule = json.loads(a.schedule) if a.schedule else make_schedule(a.seed, a.length)
    srv = Server(a.hold, a.trigger)
    await srv.listen()
    print("PORT %d" % srv.port, flush=True)
    if a.trigger:
        await asyncio.wait_for(srv.triggered.wait(), 120)  # a client that never triggers: exit, not hang
        a.t0 = time.monotonic()
    truth = []
    for o in schedule:
        rec = {"kind": o["kind"], "planned_start": a.t0 + o["start"], "planned_end": a.t0 + o["end"]}
        await sleep_until(a.t0 + o["start"])
        if o["kind"] == "refused":
            srv.close_listener()
        else:
            srv.mode = o["kind"]
        rec["start"] = time.monotonic()
        await sleep_until(a.t0 + o["end"])
        if o["kind"] == "refused":
            await srv.listen()
        else:
            srv.mode = "up"
        rec["end"] = time.monotonic()
        truth.append(rec)
    end = a.t0 + (schedule[-1]["end"] if schedule else 0) + 0.3
    if a.length:
        end = max(end, a.t0 + a.length)
    await sleep_until(end)
    text = json.dumps({"t0": a.t0, "end": time.monotonic(), "port": srv.port, "outages": truth})
    if a.truth:
        with open(a.truth, "w") as f:
            f.write(text)
    else:
        print(text, flush=True)
    # Keep serving a little: the probes are stopped when the truth arrives.
    await asyncio.sleep(a.linger)


def main():
    ap = argparse.ArgumentParser()
    start = ap.add_mutually_exclusive_group(required=True)
    start.add_argument("--t0", type=float)
    start.add_argument("--trigger")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--schedule")
    ap.add_argument("--length", type=float, default=6.0)
    ap.add_argument("--hold", type=float, default=1.0)
    ap.add_argument("--truth")
    ap.add_argument("--linger", type=float, default=1.0)
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
