#!/usr/bin/env python3
"""rawhttp_server.py — answers HTTP requests with raw bytes chosen by path,
for comparing upgrun's two HTTP engines (tests/integration/test_http_lite.lua):
answers no HTTP library would send (truncated, garbage, HTTP/1.0 read to
EOF, interim 1xx, odd chunking). 127.0.0.1 only, one thread per connection,
keep-alive unless the case closes.

    python3 rawhttp_server.py [--lifetime SECONDS]

Prints "PORT" once listening. GET /case/NAME answers case NAME (CASES below);
GET /cases lists the names, one per line. Any request to /record/KEY is kept
(method, target, headers in order, body) and answered 200; GET /recorded/KEY
returns it as JSON. Exits on SIGTERM or after
--lifetime seconds (default 300).
"""
import json
import socket
import sys
import threading
import time

BIG_HEAD = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 100) for i in range(1100)) + \
    b"Content-Length: 0\r\n\r\n"

RECORDED = {}

# name -> (answer bytes, close the connection after it)
CASES = {
    "ok_length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", False),
    "ok_chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n"
                   b"0\r\nX-Trailer: 1\r\n\r\n", False),
    "ok_chunked_split": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"%x\r\n%s\r\n" % (n, b"z" * n) for n in (1, 7, 300, 4096)) + b"0\r\n\r\n", False),
    "ok_lowercase": (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok", False),
    "ok_no_reason": (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", False),
    "ok_close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", True),
    "http10_eof": (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nread to the end", True),
    "http10_keepalive": (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", False),
    "interim_then_204": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", False),
    "interim_103": (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
                    False),
    "not_modified": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", False),
    "status_503": (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown", False),
    "status_401": (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", False),
    "garbage": (b"SSH-2.0-OpenSSH_9.2\r\n", True),
    "empty": (b"", True),
    "truncated_head": (b"HTTP/1.1 200 OK\r\nContent-Le", True),
    "truncated_body": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", True),
    "truncated_chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", True),
    "bad_length": (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", True),
    "bad_chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", True),
    "big_length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"b" * 5000, False),
    "big_chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1000\r\n" + b"c" * 4096 +
                    b"\r\n0\r\n\r\n", False),
    "big_head": (BIG_HEAD, True),
    "lf_only": (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", False),
    "ok_then_drop": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),  # no "Connection: close"
}
# trickle_NAME: case NAME sent one byte at a time (the client parses in pieces)
for _name in ("ok_length", "ok_chunked", "interim_then_204", "http10_eof", "status_503"):
    CASES["trickle_" + _name] = CASES[_name]


def read_request(f):
    """The request head and its body (by Content-Length); None at EOF."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline(65536)
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, (f.read(length) if length else b"")


def parse_request(head, body):
    """{method, target, version, headers: [[lowercased name, value], ...] in order, body}."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = [[n.strip().lower(), v.strip()] for n, v in (l.split(":", 1) for l in lines[1:] if l)]
    return {"method": method, "target": target, "version": version, "headers": headers,
            "body": body.decode("latin-1")}


def serve(conn):
    with conn:
        f = conn.makefile("rb")
        while True:
            req = read_request(f)
            if req is None:
                return
            head, body = req
            path = head.split(b" ", 2)[1].decode()
            if path.startswith("/record/"):  # keeps the request for /recorded/KEY
                RECORDED[path[len("/record/"):].split("?")[0]] = parse_request(head, body)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                continue
            if path.startswith("/recorded/"):
                body = json.dumps(RECORDED.get(path[len("/recorded/"):])).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            if path == "/cases":
                body = "".join(n + "\n" for n in CASES).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            answer, close = CASES.get(path[len("/case/"):], (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                                                              False))
            try:
                if path.startswith("/case/trickle_"):
                    for i in range(len(answer)):
                        conn.sendall(answer[i:i + 1])
                        time.sleep(0.0005)
                else:
                    conn.sendall(answer)
                if close:
                    conn.shutdown(socket.SHUT_WR)
                    return
            except OSError:  # the client went away first
                return


def main():
    lifetime = float(sys.argv[sys.argv.index("--lifetime") + 1]) if "--lifetime" in sys.argv else 300
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print(srv.getsockname()[1], flush=True)
    threading.Timer(lifetime, lambda: __import__("os")._exit(0)).start()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
