# tests/lab/labapi.py — a tiny stdlib-only OpenStack client for the lab scripts: Keystone
# tokens, JSON requests, and the catalog/users/image/flavor set-up `up` does once
# (`python3 labapi.py keystone|cloud|warm-neutron|seed-templates|network|gc-ports`, password from $LAB_PASSWORD) and one
# pass of the readiness check `ready` loops on (`labapi.py check`). Also imported by `smoke`.
import json, os, sys, time, urllib.error, urllib.request

KEYSTONE = "http://127.0.0.1:15000/v3"


class Http(Exception):
    pass


def req(method, url, token=None, body=None, headers=None, raw=None, timeout=60):
    h = {"Accept": "application/json"}
    if token:
        h["X-Auth-Token"] = token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if raw is not None:
        data = raw
        h["Content-Type"] = "application/octet-stream"
    h.update(headers or {})
    r = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            text = resp.read()
            return resp.status, (json.loads(text) if text.strip() else None), resp.headers
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            j = json.loads(text)
        except ValueError:
            j = text.decode(errors="replace")
        return e.code, j, e.headers


def token(user, password, project="admin", project_domain="Default"):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": project_domain}}}}}
    st, j, hd = req("POST", KEYSTONE + "/auth/tokens", body=body)
    if st != 201:
        raise Http("keystone token for %s: HTTP %s %s" % (user, st, j))
    return hd["X-Subject-Token"], j["token"]


def ok(st, j, what, codes=(200, 201, 202, 204)):
    if st not in codes:
        raise Http("%s: HTTP %s %s" % (what, st, j))
    return j


def ensure(tok, coll, key, match, body):
    """GET coll?filters, create with body if nothing matches; returns the object."""
    q = "&".join("%s=%s" % kv for kv in match.items())
    st, j, _ = req("GET", "%s/%s?%s" % (KEYSTONE, coll, q), tok)
    items = ok(st, j, "list " + coll)[coll]
    if items:
        return items[0]
    st, j, _ = req("POST", "%s/%s" % (KEYSTONE, coll), tok, {key: body})
    return ok(st, j, "create " + key)[key]


ENDPOINTS = [  # type, name, url
    ("compute", "nova", "http://127.0.0.1:18774/v2.1"),
    ("placement", "placement", "http://127.0.0.1:18778"),
    ("image", "glance", "http://127.0.0.1:19292"),
    ("network", "neutron", "http://127.0.0.1:19696"),
]
USERS = ["nova", "placement", "glance", "neutron"]


def init_keystone(pw):
    tok, _ = token("admin", pw)
    proj = ensure(tok, "projects", "project", {"name": "service"}, {"name": "service", "domain_id": "default"})
    admin_role = ensure(tok, "roles", "role", {"name": "admin"}, {"name": "admin"})
    service_role = ensure(tok, "roles", "role", {"name": "service"}, {"name": "service"})
    for u in USERS:
        user = ensure(tok, "users", "user", {"name": u}, {"name": u, "domain_id": "default", "password": pw})
        for role in (admin_role, service_role):
            st, j, _ = req("PUT", "%s/projects/%s/users/%s/roles/%s" % (KEYSTONE, proj["id"], user["id"], role["id"]), tok)
            ok(st, j, "grant role to " + u)
    for typ, name, url in ENDPOINTS:
        svc = ensure(tok, "services", "service", {"type": typ}, {"type": typ, "name": name})
        for iface in ("public", "internal", "admin"):
            ensure(tok, "endpoints", "endpoint", {"service_id": svc["id"], "interface": iface},
                   {"service_id": svc["id"], "interface": iface, "url": url, "region_id": "RegionOne"})


def init_cloud(pw):
    """image and flavor: needs glance and nova-api up."""
    tok, _ = token("admin", pw)
    g = "http://127.0.0.1:19292/v2/images"
    st, j, _ = req("GET", g + "?name=lab-image", tok)
    imgs = ok(st, j, "list images")["images"]
    if not imgs or imgs[0]["status"] != "active":
        for i in imgs:
            req("DELETE", "%s/%s" % (g, i["id"]), tok)
        st, j, _ = req("POST", g, tok, {"name": "lab-image", "disk_format": "raw",
                                         "container_format": "bare", "visibility": "public"})
        img = ok(st, j, "create image")
        st, j, _ = req("PUT", "%s/%s/file" % (g, img["id"]), tok, raw=os.urandom(1 << 20))
        ok(st, j, "upload image")
    n = "http://127.0.0.1:18774/v2.1/flavors"
    st, j, _ = req("GET", n + "/lab-tiny", tok)
    if st == 404:
        st, j, _ = req("POST", n, tok, {"flavor": {"name": "lab.tiny", "id": "lab-tiny",
                                                    "ram": 64, "vcpus": 1, "disk": 1}})
        ok(st, j, "create flavor")
    else:
        ok(st, j, "show flavor")


def warm_neutron(pw, timeout=180):
    """neutron-server 21 (this build) fails every GET /v2.0/ports with AttributeError 'Port' has
    no attribute 'port_forwardings' until its process has run some other DB query (the ORM
    backrefs are configured by the first query); Nova's first call is a ports list, so a
    fresh neutron-server puts servers into ERROR. One networks list first avoids it."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            tok, _ = token("admin", pw)
            st, j, _ = req("GET", "http://127.0.0.1:19696/v2.0/networks?limit=1", tok, timeout=10)
            if st == 200:
                st, j, _ = req("GET", "http://127.0.0.1:19696/v2.0/ports?limit=1", tok, timeout=10)
                if st == 200:
                    return
            last = "HTTP %s %s" % (st, j)
        except Exception as e:  # keystone or neutron not up yet
            last = repr(e)
        time.sleep(1)
    raise Http("neutron warm-up: no good ports list within %ds: %s" % (timeout, last))


NEUTRON = "http://127.0.0.1:19696/v2.0"


def lab_network(pw):
    """upgrun-lab-net (flat, physical network lab, shared) and its subnet (10.99.0.0/24, no
    DHCP), made when missing; prints the network's id"""
    tok, _ = token("admin", pw)
    st, j, _ = req("GET", NEUTRON + "/networks?name=upgrun-lab-net", tok)
    nets = ok(st, j, "list networks")["networks"]
    if nets:
        net = nets[0]
    else:
        st, j, _ = req("POST", NEUTRON + "/networks", tok, {"network": {
            "name": "upgrun-lab-net", "shared": True, "admin_state_up": True,
            "provider:network_type": "flat", "provider:physical_network": "lab"}})
        net = ok(st, j, "create network")["network"]
    st, j, _ = req("GET", NEUTRON + "/subnets?name=upgrun-lab-subnet&network_id=" + net["id"], tok)
    if not ok(st, j, "list subnets")["subnets"]:
        st, j, _ = req("POST", NEUTRON + "/subnets", tok, {"subnet": {
            "name": "upgrun-lab-subnet", "network_id": net["id"], "ip_version": 4,
            "cidr": "10.99.0.0/24", "gateway_ip": "10.99.0.1", "enable_dhcp": False,
            "allocation_pools": [{"start": "10.99.0.10", "end": "10.99.0.250"}]}})
        ok(st, j, "create subnet")
    print(net["id"])


def gc_ports(pw):
    """deletes the compute ports whose server is not one of argv[2:] (the Nova database's)"""
    keep = set(sys.argv[2:])
    tok, _ = token("admin", pw)
    st, j, _ = req("GET", NEUTRON + "/ports?fields=id&fields=device_id&fields=device_owner", tok)
    n = 0
    for p in ok(st, j, "list ports")["ports"]:
        if p["device_owner"].startswith("compute:") and p["device_id"] not in keep:
            st, j, _ = req("DELETE", NEUTRON + "/ports/" + p["id"], tok)
            ok(st, j, "delete port", codes=(204, 404))
            n += 1
    print("%d stale port(s) deleted" % n)


def api_check(pw, computes=("cmp1", "cmp2"), nova_ports=(18774, 18781, 18782)):
    """One pass over every API as a client sees it; returns what is not ready (empty: ready).
    Nova's service list through HAProxy and straight from each nova-api; every Nova service
    up; each compute's resource provider in Placement; Glance and Neutron answer lists."""
    bad = []
    try:
        tok, _ = token("admin", pw)
    except Exception as e:
        return ["keystone: %s" % e]
    mv = {"X-OpenStack-Nova-API-Version": "2.53"}
    for port in nova_ports:
        where = "through HAProxy" if port == 18774 else "on :%d" % port
        try:
            st, j, _ = req("GET", "http://127.0.0.1:%d/v2.1/os-services" % port, tok, headers=mv, timeout=20)
        except Exception as e:
            bad.append("nova-api %s: %s" % (where, e))
            continue
        if st != 200:
            bad.append("nova-api %s: HTTP %s" % (where, st))
            continue
        if port == 18774:
            for s in j["services"]:
                if s["state"] != "up":
                    bad.append("%s on %s reports %s" % (s["binary"], s["host"], s["state"]))
            hosts = {s["host"] for s in j["services"] if s["binary"] == "nova-compute"}
            bad += ["nova-compute on %s has no service record" % c for c in computes if c not in hosts]
    checks = [("placement", "http://127.0.0.1:18778/resource_providers", {"OpenStack-API-Version": "placement 1.14"}),
              ("glance", "http://127.0.0.1:19292/v2/images?limit=1", None),
              ("neutron", "http://127.0.0.1:19696/v2.0/ports?limit=1", None)]
    for name, url, hd in checks:
        try:
            st, j, _ = req("GET", url, tok, headers=hd, timeout=20)
        except Exception as e:
            bad.append("%s: %s" % (name, e))
            continue
        if st != 200:
            bad.append("%s: HTTP %s" % (name, st))
        elif name == "placement":
            rps = {r["name"] for r in j["resource_providers"]}
            bad += ["no resource provider for %s in placement" % c for c in computes if c not in rps]
    return bad


def seed_templates(pw, hosts=("cmp1", "cmp2"), timeout=120):
    """tests/lab/seed-db's templates: one ACTIVE server per compute (seed-template-<host>),
    booted, stopped and started through the API (so it has actions and events), reused when
    there; prints their uuids."""
    tok, _ = token("admin", pw)
    nova = "http://127.0.0.1:18774/v2.1"
    mv = {"OpenStack-API-Version": "compute 2.74", "X-OpenStack-Nova-API-Version": "2.74"}

    def call(method, path, body=None):
        st, j, _ = req(method, nova + path, tok, body, mv)
        return ok(st, j, "%s %s" % (method, path))

    def wait(sid, status):
        end = time.time() + timeout
        while True:
            s = call("GET", "/servers/" + sid)["server"]
            if s["status"] == "ERROR":
                raise Http("seed template %s went to ERROR: %s" % (sid, s.get("fault")))
            if s["status"] == status and not s.get("OS-EXT-STS:task_state"):
                return
            if time.time() > end:
                raise Http("seed template %s not %s after %ss (%s)" % (sid, status, timeout, s["status"]))
            time.sleep(0.5)

    img = None
    for host in hosts:
        name = "seed-template-" + host
        found = call("GET", "/servers?name=^%s$" % name)["servers"]
        if found:
            sid = found[0]["id"]
        else:
            if img is None:
                st, j, _ = req("GET", "http://127.0.0.1:19292/v2/images?name=lab-image", tok)
                img = ok(st, j, "find lab-image")["images"][0]["id"]
            sid = call("POST", "/servers", {"server": {
                "name": name, "imageRef": img, "flavorRef": "lab-tiny", "networks": "none", "host": host,
                "metadata": {"seeded-by": "tests/lab/seed-db"}}})["server"]["id"]
            wait(sid, "ACTIVE")
            for act, status in (("os-stop", "SHUTOFF"), ("os-start", "ACTIVE")):
                call("POST", "/servers/%s/action" % sid, {act: None})
                wait(sid, status)
        wait(sid, "ACTIVE")
        print(sid)


def check(pw):
    bad = api_check(pw)
    for b in bad:
        print(b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    pw = os.environ["LAB_PASSWORD"]
    {"keystone": init_keystone, "cloud": init_cloud, "warm-neutron": warm_neutron,
     "check": check, "seed-templates": seed_templates, "network": lab_network,
     "gc-ports": gc_ports}[sys.argv[1]](pw)
