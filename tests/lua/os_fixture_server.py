#!/usr/bin/python3
# tests/lua/os_fixture_server.py — a local stand-in for Keystone, Nova and Glance that
# serves responses recorded from the lab (tests/lua/os_fixtures/*.json) for the unit tests
# of lualib/upgrun/openstack. Stdlib only, 127.0.0.1 only. Prints "PORT <n>" when ready.
#
#   /identity/v3/auth/tokens   POST issues a token (password "fixture-pw" or application
#                              credential secret "fixture-app-secret"), GET validates
#                              (X-Subject-Token), DELETE revokes. Catalog rewritten to point
#                              here, with a second region for compute.
#   /compute/v2.1/...          version document, os-services (+ PUT), os-hypervisors,
#                              flavors, servers (paged, with next links on a foreign host),
#                              server create/get/action/delete with a small state machine.
#   /image/v2/images...        list/find, create, PUT file, get, delete.
#   /_requests                 GET: every request seen (method, path, headers, body).
#   /_control                  POST JSON: settings (token_ttl, nova_max, broken=...);
#                              servers_add {n, prefix, host} adds n ACTIVE servers (replies
#                              their ids), servers_set {id: {field: value}} changes fields,
#                              servers_remove [id...] makes servers vanish (the resource watch tests),
#                              deleted_gets n: a deleted server answers status DELETED to its next
#                              n GETs before its 404 (-1: for ever).
# Every reply carries x-openstack-request-id "req-fixture-<n>".
import json, os, sys, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "os_fixtures")
PASSWORD = "fixture-pw"
APP_SECRET = "fixture-app-secret"
LOCK = threading.RLock()
STATE = {
    "seq": 0, "tokens": {}, "requests": [], "token_ttl": 3600, "nova_max": "2.93",
    "servers": {}, "images": {}, "services": None, "auths": 0, "deleted_gets": 0,
}


def fixture(name):
    with open(os.path.join(HERE, name + ".json")) as f:
        return json.load(f)


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t))


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes

    def log_message(self, *a):
        pass

    def base(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def reply(self, code, body=None, headers=None, raw=None, ctype="application/json"):
        with LOCK:
            STATE["seq"] += 1
            rid = "req-fixture-%d" % STATE["seq"]
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(code)
        self.send_header("x-openstack-request-id", rid)
        if self.path.startswith("/compute"):
            self.send_header("x-compute-request-id", rid)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        self._raw = raw
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def record(self, body):
        with LOCK:
            STATE["requests"].append({
                "method": self.command, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body if body is not None else (self._raw.decode("latin-1") if getattr(self, "_raw", b"") else None),
            })

    def token_ok(self, tok):
        with LOCK:
            exp = STATE["tokens"].get(tok)
        return exp is not None and exp > time.time()

    def authed(self):
        if self.token_ok(self.headers.get("X-Auth-Token")):
            return True
        self.reply(401, {"error": {"code": 401, "title": "Unauthorized",
                                   "message": "The request you have made requires authentication."}},
                   {"WWW-Authenticate": "Keystone uri=\"%s/identity/v3\"" % self.base()})
        return False

    def handle_any(self):
        body = self.body_json() if self.command in ("POST", "PUT", "PATCH") else None
        if self.command in ("POST", "PUT", "PATCH") and body is None:
            body_rec = None
        else:
            body_rec = body
        url = urlsplit(self.path)
        path, q = url.path, parse_qs(url.query)
        if path.startswith("/_"):
            return self.control(path, body)
        self.record(body_rec)
        if path.startswith("/identity"):
            return self.identity(path[len("/identity"):], q, body)
        if path.startswith("/compute"):
            return self.compute(path[len("/compute"):], q, body)
        if path.startswith("/image"):
            return self.image(path[len("/image"):], q, body)
        self.reply(404, raw=b"<html><body><h1>404 Not Found</h1>nothing here</body></html>", ctype="text/html")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    # ---- control ---------------------------------------------------------------
    def control(self, path, body):
        if path == "/_requests":
            with LOCK:
                reqs = list(STATE["requests"])
                if self.command == "DELETE":
                    STATE["requests"].clear()
            return self.reply(200, {"requests": reqs, "auths": STATE["auths"]})
        if path == "/_control":
            added = []
            with LOCK:
                for k, v in (body or {}).items():
                    if k == "revoke_all" and v:
                        STATE["tokens"].clear()
                    elif k == "servers_add":
                        for i in range(int(v.get("n", 1))):
                            sid = str(uuid.uuid4())
                            STATE["servers"][sid] = {
                                "id": sid, "name": "%s%d" % (v.get("prefix", "srv-"), i), "status": "ACTIVE",
                                "OS-EXT-STS:task_state": None, "OS-EXT-STS:vm_state": "active",
                                "OS-EXT-STS:power_state": 1, "OS-EXT-SRV-ATTR:host": v.get("host", "cmp1"),
                                "_gets": 0}
                            added.append(sid)
                    elif k == "servers_set":
                        for sid, fields in v.items():
                            STATE["servers"][sid].update(fields)
                    elif k == "servers_remove":
                        for sid in v:
                            STATE["servers"].pop(sid, None)
                    else:
                        STATE[k] = v
            return self.reply(200, {"ok": True, "added": added})
        self.reply(404, {"error": "no such control"})

    # ---- keystone --------------------------------------------------------------
    def catalog(self):
        b = self.base()
        doc = fixture("token")["token"]["catalog"]
        for svc in doc:
            eps = []
            for ep in svc["endpoints"]:
                ep = dict(ep)
                if svc["type"] == "compute":
                    ep["url"] = b + "/compute/v2.1"
                elif svc["type"] == "image":
                    ep["url"] = b + "/image"
                elif svc["type"] == "identity":
                    ep["url"] = b + "/identity/v3"
                else:
                    ep["url"] = b + "/" + svc["type"]
                eps.append(ep)
            if svc["type"] == "compute":
                # a second region whose public endpoint must not be picked for RegionOne
                eps.append({"id": "r2", "interface": "public", "region": "RegionTwo",
                            "region_id": "RegionTwo", "url": b + "/compute-r2/v2.1"})
            svc["endpoints"] = eps
        return doc

    def identity(self, path, q, body):
        if path != "/v3/auth/tokens":
            return self.reply(404, {"error": {"code": 404, "title": "Not Found", "message": "no route"}})
        if self.command == "POST":
            ident = ((body or {}).get("auth") or {}).get("identity") or {}
            ok = False
            if "password" in ident.get("methods", []):
                ok = ident.get("password", {}).get("user", {}).get("password") == PASSWORD
            elif "application_credential" in ident.get("methods", []):
                ok = ident.get("application_credential", {}).get("secret") == APP_SECRET
            if not ok or STATE.get("refuse_auth"):
                return self.reply(401, fixture("ks_401"))
            tok = "fixture-token-" + uuid.uuid4().hex
            with LOCK:
                STATE["auths"] += 1
                STATE["tokens"][tok] = time.time() + STATE["token_ttl"]
            t = fixture("token")
            t["token"]["expires_at"] = iso(time.time() + STATE["token_ttl"])
            t["token"]["catalog"] = self.catalog()
            return self.reply(201, t, {"X-Subject-Token": tok})
        if not self.authed():
            return
        subject = self.headers.get("X-Subject-Token")
        if self.command == "GET":
            if not self.token_ok(subject):
                return self.reply(404, fixture("ks_validate_404"))
            t = fixture("token")
            del t["token"]["catalog"]
            t["token"]["expires_at"] = iso(STATE["tokens"][subject])
            return self.reply(200, t, {"X-Subject-Token": subject})
        if self.command == "DELETE":
            with LOCK:
                STATE["tokens"].pop(subject, None)
            return self.reply(204)
        self.reply(405, {"error": {"code": 405, "title": "Method Not Allowed", "message": "no"}})

    # ---- nova ------------------------------------------------------------------
    def services(self):
        with LOCK:
            if STATE["services"] is None:
                STATE["services"] = fixture("nova_services")["services"]
            return STATE["services"]

    def server_doc(self, s):
        d = dict(s)
        d.pop("_gets", None)
        return d

    def compute(self, path, q, body):
        if path in ("/v2.1", "/v2.1/"):
            v = fixture("nova_version")
            v["version"]["version"] = STATE["nova_max"]
            return self.reply(200, v)
        if not path.startswith("/v2.1/"):
            return self.reply(404, raw=b"404 Not Found\n\nThe resource could not be found.\n", ctype="text/plain")
        if not self.authed():
            return
        p = path[len("/v2.1"):]
        parts = [x for x in p.split("/") if x]
        if p == "/broken/truncated":
            return self.reply(200, raw=b'{"servers": [{"id": "abc", "na')
        if p == "/broken/html503":
            return self.reply(503, raw=b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available "
                              b"to handle this request.\n</body></html>\n", ctype="text/html")
        if p == "/broken/neutron":
            return self.reply(404, {"NeutronError": {"type": "PortNotFound", "message": "Port x could not be found.",
                                                     "detail": ""}})
        if p == "/broken/conflict":
            return self.reply(409, {"conflictingRequest": {"code": 409, "message":
                                    "Cannot 'pause' instance abc while it is in vm_state paused"}})
        if p == "/broken/forbidden":
            return self.reply(403, {"forbidden": {"code": 403, "message":
                                    "Policy doesn't allow os_compute_api:os-services:list to be performed."}})
        if parts[0] == "os-services":
            svcs = self.services()
            if self.command == "GET":
                out = [s for s in svcs if all(s.get(k) == v[0] for k, v in q.items())]
                return self.reply(200, {"services": out})
            if self.command == "PUT":
                for s in svcs:
                    if len(parts) == 2 and s["id"] == parts[1]:
                        s.update(body or {})
                        return self.reply(200, {"service": s})
                return self.reply(404, {"itemNotFound": {"code": 404, "message": "Service not found."}})
        if p == "/os-hypervisors/detail":
            return self.reply(200, fixture("nova_hypervisors"))
        if p == "/flavors/detail":
            return self.reply(200, fixture("nova_flavors"))
        if p == "/flavors" and self.command == "POST":
            f = dict(body["flavor"])
            f["id"] = f.get("id") or uuid.uuid4().hex
            return self.reply(200, {"flavor": f})
        if parts[0] == "servers":
            return self.servers(parts[1:], q, body)
        self.reply(404, fixture("nova_404"))

    def servers(self, parts, q, body):
        S = STATE["servers"]
        if not parts and self.command == "POST":
            sid = str(uuid.uuid4())
            srv = body["server"]
            status = "ERROR" if srv.get("name") == "doomed" else "BUILD"
            with LOCK:
                S[sid] = {"id": sid, "name": srv.get("name"), "status": status,
                          "OS-EXT-STS:task_state": "spawning" if status == "BUILD" else None,
                          "OS-EXT-SRV-ATTR:host": srv.get("host") or (srv.get("availability_zone") or ":").split(":")[1] or "cmp1",
                          "_gets": 0}
                if status == "ERROR":
                    S[sid]["fault"] = {"code": 500, "message": "No valid host was found. There are not enough hosts available."}
            return self.reply(202, {"server": {"id": sid, "adminPass": "Adm1nPassw0rd", "links": []}})
        if parts in (["detail"], []):
            limit = int(q.get("limit", ["1000"])[0])
            marker = q.get("marker", [None])[0]
            ids = sorted(k for k in S)
            if marker:
                ids = [i for i in ids if i > marker]
            page = ids[:limit]
            doc = {"servers": [self.server_doc(S[i]) for i in page]}
            if len(ids) > limit:
                doc["servers_links"] = [{"rel": "next", "href":
                                         "http://public.example.invalid:8774/v2.1/servers/detail?limit=%d&marker=%s" % (limit, page[-1])}]
            return self.reply(200, doc)
        sid = parts[0]
        srv = S.get(sid)
        if srv is None:
            nf = fixture("nova_404")
            nf["itemNotFound"]["message"] = "Instance %s could not be found." % sid
            return self.reply(404, nf)
        if len(parts) == 1 and self.command == "GET":
            with LOCK:
                srv["_gets"] += 1
                if srv["status"] == "BUILD" and srv["_gets"] >= 2:
                    srv["status"], srv["OS-EXT-STS:task_state"] = "ACTIVE", None
                if srv.get("_deleting") and srv["_deleted_left"] != 0:
                    # nova-compute's window between vm_state "deleted" and the record's end
                    srv["_deleted_left"] -= 1
                    srv["status"], srv["OS-EXT-STS:task_state"] = "DELETED", None
                elif srv.get("_deleting"):
                    S.pop(sid, None)
                    return self.reply(404, fixture("nova_404"))
            return self.reply(200, {"server": self.server_doc(srv)})
        if len(parts) == 1 and self.command == "DELETE":
            srv["_deleting"] = True
            srv["_deleted_left"] = int(STATE["deleted_gets"])
            return self.reply(204)
        if parts[1:] == ["action"]:
            action = next(iter(body))
            target = {"pause": "PAUSED", "unpause": "ACTIVE", "os-stop": "SHUTOFF", "os-start": "ACTIVE"}.get(action)
            if target:
                srv["status"] = target
            return self.reply(202)
        self.reply(404, fixture("nova_404"))

    # ---- glance ----------------------------------------------------------------
    def image(self, path, q, body):
        if not self.authed():
            return
        I = STATE["images"]
        if not I:
            for im in fixture("glance_images")["images"]:
                I[im["id"]] = im
        parts = [x for x in path.split("/") if x]
        if parts[:2] != ["v2", "images"]:
            return self.reply(404, raw=b"404 Not Found\n\nThe resource could not be found.\n", ctype="text/plain")
        rest = parts[2:]
        if not rest and self.command == "GET":
            out = [im for im in I.values() if "name" not in q or im["name"] == q["name"][0]]
            return self.reply(200, {"images": out, "schema": "/v2/schemas/images", "first": "/v2/images"})
        if not rest and self.command == "POST":
            iid = str(uuid.uuid4())
            im = dict(body or {})
            im.update({"id": iid, "status": "queued", "size": None})
            I[iid] = im
            return self.reply(201, im)
        im = I.get(rest[0])
        if im is None:
            return self.reply(404, fixture("glance_404"))
        if rest[1:] == ["file"] and self.command == "PUT":
            im.update({"status": "active", "size": len(self._raw)})
            return self.reply(204)
        if self.command == "GET":
            return self.reply(200, im)
        if self.command == "DELETE":
            I.pop(rest[0], None)
            return self.reply(204)
        self.reply(405, raw=b"405 Method Not Allowed\n", ctype="text/plain")


def main():
    lifetime = float(sys.argv[1]) if len(sys.argv) > 1 else 300
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Timer(lifetime, srv.shutdown).start()
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
