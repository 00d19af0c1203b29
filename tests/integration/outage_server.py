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
  outage_server.py --t0 MONO [--seed N | --schedule JSON] [--length S]
                   [--hold S] [--truth FILE]
Prints "PORT <n>" on stdout once listening. The schedule starts at monotonic
time --t0; offsets in the schedule are relative to it. With --seed a random
schedule is made: outages of random kinds and lengths (50 ms to 5 s, roughly
log-uniform) separated by at least 0.4 s of health, fitting in --length
seconds. After the schedule ends (+0.3 s), the truth is written as JSON to
--truth (or as one line on stdout), and the server keeps serving for --linger
seconds (default 1) before it exits:
  {"outages": [{"kind", "planned_start", "planned_end", "start", "end"}], ...}
where start/end are the monotonic times the server actually switched.
"""
import argparse
import json
import math
import random
import select
import socket
import sys
import threading
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
    def __init__(self, hold):
        self.hold = hold
        self.mode = "up"            # up | 503 | hang   (what requests get)
        self.want_listen = True     # the acceptor closes/reopens the socket
        self.listening_changed = threading.Event()
        self.changed_at = None
        self.stop = False
        self.stopped = threading.Event()
        self.sock = self._listen(0)
        self.port = self.sock.getsockname()[1]

    def _listen(self, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(128)
        return s

    def acceptor(self):
        while not self.stop:
            if not self.want_listen and self.sock is not None:
                self.sock.close()
                self.sock = None
                self.changed_at = time.monotonic()
                self.listening_changed.set()
            elif self.want_listen and self.sock is None:
                while True:
                    try:
                        self.sock = self._listen(self.port)
                        break
                    except OSError:
                        time.sleep(0.001)
                self.changed_at = time.monotonic()
                self.listening_changed.set()
            if self.sock is None:
                time.sleep(0.001)
                continue
            r, _, _ = select.select([self.sock], [], [], 0.002)
            if r:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    continue
                threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            mode = self.mode
            if mode == "hang":
                self.stopped.wait(self.hold)
                return
            if mode == "503":
                body = b"unavailable"
                head = b"HTTP/1.1 503 Service Unavailable\r\n"
            else:
                body = b"ok"
                head = b"HTTP/1.1 200 OK\r\n"
            conn.sendall(head + b"Content-Type: text/plain\r\nContent-Length: " +
                         str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def set_listening(self, on):
        self.listening_changed.clear()
        self.want_listen = on
        self.listening_changed.wait(2)
        return self.changed_at


def sleep_until(t):
    while True:
        d = t - time.monotonic()
        if d <= 0:
            return
        time.sleep(min(d, 0.05) if d > 0.002 else d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--t0", type=float, required=True)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--schedule")
    ap.add_argument("--length", type=float, default=6.0)
    ap.add_argument("--hold", type=float, default=1.0)
    ap.add_argument("--truth")
    ap.add_argument("--linger", type=float, default=1.0)
    a = ap.parse_args()
    schedule = json.loads(a.schedule) if a.schedule else make_schedule(a.seed, a.length)
    srv = Server(a.hold)
    threading.Thread(target=srv.acceptor, daemon=True).start()
    print("PORT %d" % srv.port, flush=True)
    truth = []
    for o in schedule:
        rec = {"kind": o["kind"], "planned_start": a.t0 + o["start"], "planned_end": a.t0 + o["end"]}
        sleep_until(a.t0 + o["start"])
        if o["kind"] == "refused":
            rec["start"] = srv.set_listening(False)
        else:
            srv.mode = o["kind"]
            rec["start"] = time.monotonic()
        sleep_until(a.t0 + o["end"])
        if o["kind"] == "refused":
            rec["end"] = srv.set_listening(True)
        else:
            srv.mode = "up"
            rec["end"] = time.monotonic()
        truth.append(rec)
    end = a.t0 + (schedule[-1]["end"] if schedule else 0) + 0.3
    if a.length:
        end = max(end, a.t0 + a.length)
    sleep_until(end)
    doc = {"t0": a.t0, "end": time.monotonic(), "port": srv.port, "outages": truth}
    text = json.dumps(doc)
    if a.truth:
        with open(a.truth, "w") as f:
            f.write(text)
    else:
        print(text, flush=True)
    # Keep serving a little: the probes are stopped when the truth arrives.
    time.sleep(a.linger)
    srv.stop = True
    srv.stopped.set()


if __name__ == "__main__":
    sys.exit(main())
