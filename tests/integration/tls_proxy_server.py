#!/usr/bin/env python3
"""tls_proxy_server.py DIR — two real peers for test_cloud_tls_proxy.lua.

Makes, with the openssl command, a CA, a server certificate for 127.0.0.1
and a client certificate (files in DIR), then serves on 127.0.0.1:
  - an HTTPS server that REQUIRES a client certificate signed by the CA and
    answers {"client": "<the client certificate's CN>"};
  - an HTTP proxy that answers every proxied request itself with
    {"via": "proxy", "target": "<the absolute URL asked for>"}.
Prints "TLS_PORT PROXY_PORT" on one line, then serves until killed or
--lifetime seconds pass.
"""
import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
import time


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
       "-days", "2", "-subj", "/CN=upgrun test CA")
    for name, cn, ext in (("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                          ("client", "upgrun-client", "extendedKeyUsage=clientAuth")):
        key, csr, crt = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem"))
        extfile = os.path.join(d, name + ".ext")
        with open(extfile, "w") as f:
            f.write(ext + "\n")
        sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
           "-subj", "/CN=" + cn)
        sh("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
           "-out", crt, "-days", "2", "-extfile", extfile)


class TLSHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        cert = self.connection.getpeercert() or {}
        cn = dict(x[0] for x in cert.get("subject", ())).get("commonName")
        body = json.dumps({"client": cn}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"via": "proxy", "target": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    d = sys.argv[1]
    lifetime = float(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--lifetime" else 120
    make_certs(d)
    tls = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TLSHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    ctx.load_verify_locations(os.path.join(d, "ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ProxyHandler)
    for srv in (tls, proxy):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(tls.server_address[1], proxy.server_address[1], flush=True)
    deadline = time.time() + lifetime
    while time.time() < deadline:
        time.sleep(0.2)


if __name__ == "__main__":
    main()
