#!/usr/bin/env python3
"""faultserver.py — a local HTTP/1.1 server that injects faults, for upgrun's
HTTP tests (Python 3 standard library only, one thread per connection,
keep-alive, 127.0.0.1 only).

    python3 faultserver.py [--tls CERT KEY] [--lifetime SECONDS]

Prints one line on stdout once listening: "PORT DEADPORT PID", where DEADPORT
is a port that was bound and closed again (nothing listens there: connecting
to it is refused). Exits on SIGTERM or after --lifetime seconds (default 300)
so a crashed test never leaves it behind.

Paths:
  /echo[...]        200, JSON {method, path, headers (lowercased), body};
                    with ?close=1 the connection is then closed without a
                    "Connection: close" header (a server dropping idle
                    keep-alive connections, e.g. on restart); with
                    &after=S it is closed after S seconds idle
  /status/N         answers status N with a short JSON body
  /delay?s=S        waits S seconds, then 200; if the client closes the
                    connection while waiting, counts it in stats.aborted
  /close            headers with Content-Length 1000, 10 bytes, then close
  /drop             closes the connection without answering
  /big?n=N          200 with N bytes (Content-Length known)
  /bigchunked?n=N   200 with N bytes, chunked (no Content-Length)
  /stats            JSON {connections, requests, aborted}
"""
import json
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STATS = {"connections": 0, "requests": 0, "aborted": 0}
LOCK = threading.Lock()


def bump(key):
    with LOCK:
        STATS[key] += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "faultserver/1"

    def log_message(self, fmt, *args):  # quiet: never log headers
        pass

    def setup(self):
        super().setup()
        bump("connections")

    # Answers go out at once (no Nagle wait for the client's delayed ACK, ~40 ms)
    # and a whole answer in one send, as a real API server writes a short answer.
    disable_nagle_algorithm = True

    def send_body(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")  # end_headers(), with the body in the same write
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        bump("requests")
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        path = url.path
        body = self.read_body()
        if path.startswith("/echo"):
            doc = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            self.send_body(200, json.dumps(doc).encode())
            if "close" in q:  # then drop the idle connection, unannounced
                self.wfile.flush()
                if "after" in q:  # ... once it has been idle for a while
                    time.sleep(float(q["after"][0]))
                self.close_connection = True
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            self.send_body(code, json.dumps({"status": code}).encode())
        elif path == "/delay":
            secs = float(q.get("s", ["1"])[0])
            # Wait, but notice a client that goes away meanwhile.
            r, _, _ = select.select([self.connection], [], [], secs)
            if r:
                try:
                    gone = self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    gone = True
                if gone:
                    bump("aborted")
                    self.close_connection = True
                    return
            self.send_body(200, b'{"delayed": true}')
        elif path == "/close":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path == "/drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path == "/big":
            n = int(q.get("n", ["1000000"])[0])
            self.send_body(200, b"x" * n, "application/octet-stream")
        elif path == "/bigchunked":
            n = int(q.get("n", ["1000000"])[0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 16384
            try:
                while n > 0:
                    part = chunk[: min(n, len(chunk))]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    n -= len(part)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
        elif path == "/stats":
            with LOCK:
                doc = dict(STATS)
            self.send_body(200, json.dumps(doc).encode())
        else:
            self.send_body(404, b'{"error": "not found"}')

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # 200 clients connect at once

    def handle_error(self, request, client_address):
        pass  # resets by clients are part of the tests


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    args = sys.argv[1:]
    lifetime = 300.0
    tls = None
    while args:
        a = args.pop(0)
        if a == "--tls":
            tls = (args.pop(0), args.pop(0))
        elif a == "--lifetime":
            lifetime = float(args.pop(0))
        else:
            sys.exit("usage: faultserver.py [--tls CERT KEY] [--lifetime S]")
    srv = Server(("127.0.0.1", 0), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Timer(lifetime, lambda: os._exit(0)).start()
    print(srv.server_address[1], dead_port(), os.getpid(), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
