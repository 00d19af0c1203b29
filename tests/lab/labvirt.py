# tests/lab/labvirt.py — the lab's "hypervisor": guests for the servers of the fake compute
# driver (persistfake.py asks for them over a unix socket, <lab>/run/labvirt.sock, which the
# chrooted 2025.1 nova-compute reaches through the bind-mounted lab dir). A guest is a network
# namespace `ugst-<uuid>` holding the server's port address and MAC on eth0, a veth into the
# bridge of the validation namespace `upgrun-lab-guests` (10.99.0.1/24; both veth ends are
# created inside namespaces, nothing in the root one), and an sshd on port 22 of that address
# (root, the server's key; hostname in its own UTS namespace; CPUs pinned with taskset to
# vCPUs). The sshd runs detached (setsid): a labvirt or nova-compute restart leaves guests
# running; their state is on disk (<lab>/guests/<uuid>/) and re-adopted at start.
#   labvirt.py serve                   the daemon (`svc start lab labvirt`)
#   labvirt.py call OP [JSON]          one request (ping, list, ensure, stop, destroy,
#                                      freeze, thaw, gc {"keep": [...]})
#   labvirt.py gc UUID...              destroy every guest but these servers' (`up`)
#   labvirt.py teardown                every guest and both kinds of namespace removed
#                                      (`down`, after the daemon stopped)
# Stdlib only; runs as root in the root namespace.
import ipaddress, json, os, shutil, signal, socket, socketserver, subprocess, sys, threading, time

LAB = os.environ.get("UPGRUN_LAB_DIR", "/var/lib/upgrun-lab")
SOCK = os.path.join(LAB, "run", "labvirt.sock")
GUESTS = os.path.join(LAB, "guests")
HUB = "upgrun-lab-guests"
BRIDGE = "br-lab"
NET = ipaddress.ip_network("10.99.0.0/24")
GATEWAY = "10.99.0.1"
LOCK = threading.Lock()


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def sh(*argv, check=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()))
    return r


def netns_exists(name):
    return os.path.exists("/run/netns/" + name)


def ensure_hub():
    if not netns_exists(HUB):
        sh("ip", "netns", "add", HUB)
    if sh("ip", "-n", HUB, "link", "show", BRIDGE, check=False).returncode != 0:
        sh("ip", "-n", HUB, "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "-n", HUB, "addr", "add", GATEWAY + "/24", "dev", BRIDGE)
    sh("ip", "-n", HUB, "link", "set", "lo", "up")
    sh("ip", "-n", HUB, "link", "set", BRIDGE, "up")


def gdir(uuid):
    return os.path.join(GUESTS, uuid)


def ns_of(uuid):
    return "ugst-" + uuid


def read_state(uuid):
    try:
        with open(os.path.join(gdir(uuid), "state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_state(uuid, st):
    p = os.path.join(gdir(uuid), "state.json")
    with open(p + ".new", "w") as f:
        json.dump(st, f)
    os.replace(p + ".new", p)


def starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else fields[19]


def alive(st):
    return bool(st and st.get("pid") and starttime(st["pid"]) == st.get("start"))


def guest_pids(uuid):
    """every process in the guest's network namespace (its sshd and the sessions it forked,
    which sshd puts into sessions of their own)"""
    try:
        want = "net:[%d]" % os.stat("/run/netns/" + ns_of(uuid)).st_ino
    except OSError:
        return []
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/ns/net" % d) == want:
                    out.append(int(d))
            except OSError:
                pass
    return out


def signal_guest(uuid, sig):
    for p in guest_pids(uuid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def validate(spec):
    ip = ipaddress.ip_address(spec["ip"])
    if ip not in NET or str(ip) == GATEWAY:
        raise ValueError("guest address %s is not on the lab network %s" % (ip, NET))
    if not all(c in "0123456789abcdef-" for c in spec["uuid"]) or len(spec["uuid"]) != 36:
        raise ValueError("bad uuid %r" % spec["uuid"])
    host = spec.get("hostname") or "guest"
    if not all(c.isalnum() or c in "-." for c in host):
        raise ValueError("bad hostname %r" % host)


def boot(uuid, st):
    """netns + veth + address + sshd for a guest whose spec is in st"""
    ensure_hub()
    ns, d = ns_of(uuid), gdir(uuid)
    veth = "g" + uuid.replace("-", "")[:12]
    if netns_exists(ns):
        sh("ip", "netns", "del", ns, check=False)
    sh("ip", "-n", HUB, "link", "del", veth, check=False)
    sh("ip", "netns", "add", ns)
    # both ends made inside namespaces: eth0 in the guest's, the peer straight into the hub's
    sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", veth, "netns", HUB)
    sh("ip", "-n", ns, "link", "set", "eth0", "address", st["mac"])
    sh("ip", "-n", ns, "addr", "add", st["ip"] + "/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "route", "add", "default", "via", GATEWAY)
    sh("ip", "-n", HUB, "link", "set", veth, "master", BRIDGE)
    sh("ip", "-n", HUB, "link", "set", veth, "up")
    key = os.path.join(d, "ssh_host_ed25519_key")
    if not os.path.exists(key):
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", st["hostname"], "-f", key)
    with open(os.path.join(d, "authorized_keys"), "w") as f:
        f.write((st.get("key") or "").strip() + "\n")
    ncpu = os.cpu_count() or 1
    vcpus = max(1, int(st.get("vcpus") or 1))
    cpus = "0-%d" % (min(vcpus, ncpu) - 1)
    # a guest's root has a home of its own (empty): the host's /root/.bashrc, which bash
    # sources for sshd's commands, is another machine's (pyenv's rehash there waits up to
    # 60 s on a stale lock); sshd honours only the first SetEnv line, so one line
    home = os.path.join(d, "home")
    os.makedirs(home, exist_ok=True)
    env = "SetEnv HOME=%s" % home
    if vcpus > ncpu:  # more vCPUs than this machine has: nproc honours OMP_NUM_THREADS
        env += " OMP_NUM_THREADS=%d" % vcpus
    env += "\n"
    with open(os.path.join(d, "sshd_config"), "w") as f:
        f.write("# sshd of lab guest %s (%s): key auth, root, its own address only\n"
                "Port 22\nListenAddress %s\nHostKey %s\nPidFile none\nAuthorizedKeysFile %s\n"
                "AuthenticationMethods publickey\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                "StrictModes no\nUsePAM no\nPrintMotd no\nUseDNS no\n%s"
                % (uuid, st["hostname"], st["ip"], key, os.path.join(d, "authorized_keys"), env))
    logf = open(os.path.join(d, "sshd.log"), "ab")
    # ip netns exec and unshare exec (no fork): the pid is sshd's; setsid makes it a session
    p = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c",
                          'hostname "$1" && exec taskset -c "$2" /usr/sbin/sshd -D -e -f "$3"',
                          "sh", st["hostname"], cpus, os.path.join(d, "sshd_config")],
                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
                         close_fds=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    logf.close()
    st.update(pid=p.pid, start=starttime(p.pid), running=True, frozen=False)
    # reaped by a thread so it never lingers as a zombie while labvirt runs
    threading.Thread(target=p.wait, daemon=True).start()
    write_state(uuid, st)
    # up once sshd listens on the guest's address (checked inside its namespace)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        r = sh("ip", "netns", "exec", ns, "ss", "-Htln", "sport", "= :22", check=False)
        if st["ip"] in r.stdout:
            return
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("guest %s: sshd did not listen on %s:22 (see %s/sshd.log)" % (uuid, st["ip"], d))


def halt(uuid, st):
    """sshd killed, namespace removed (its veth goes with it); the spec stays"""
    signal_guest(uuid, signal.SIGKILL)
    if st:
        st.update(pid=None, start=None, running=False, frozen=False)
        write_state(uuid, st)
    if netns_exists(ns_of(uuid)):
        sh("ip", "netns", "del", ns_of(uuid), check=False)


def owner_ok(st, req):
    # a host asks only for its own guests (a resize confirm on the source must not remove
    # the guest the destination runs now); no host: any
    return not req.get("host") or not st.get("host") or st["host"] == req["host"]


def op_ensure(req):
    """create the guest, or start it from the spec given; a running guest with the same
    address, MAC, key, name and vCPUs is left alone (only its owner host is updated)"""
    validate(req)
    uuid = req["uuid"]
    spec = {k: req.get(k) for k in ("ip", "mac", "hostname", "key", "vcpus")}
    os.makedirs(gdir(uuid), exist_ok=True)
    st = read_state(uuid) or {}
    same = all(st.get(k) == v for k, v in spec.items())
    st.update(spec, host=req.get("host") or st.get("host"))
    if same and alive(st) and netns_exists(ns_of(uuid)):
        if st.get("frozen"):
            signal_guest(uuid, signal.SIGCONT)
            st["frozen"] = False
        write_state(uuid, st)
        return {"created": False}
    halt(uuid, st)
    t0 = time.monotonic()
    boot(uuid, st)
    log("guest %s (%s, %s) up on %s in %.3f s" % (uuid, st["hostname"], st["ip"], st["host"],
                                                  time.monotonic() - t0))
    return {"created": True}


def with_state(fn):
    def op(req):
        st = read_state(req["uuid"])
        if st is None:
            return {"known": False}
        if not owner_ok(st, req):
            return {"known": True, "skipped": "owned by %s" % st["host"]}
        fn(req["uuid"], st)
        return {"known": True}
    return op


def _freeze(uuid, st):
    signal_guest(uuid, signal.SIGSTOP)
    st["frozen"] = True
    write_state(uuid, st)


def _thaw(uuid, st):
    signal_guest(uuid, signal.SIGCONT)
    st["frozen"] = False
    write_state(uuid, st)


def _start(uuid, st):
    if not (alive(st) and netns_exists(ns_of(uuid))):
        halt(uuid, st)
        boot(uuid, st)


def _destroy(uuid, st):
    halt(uuid, st)
    shutil.rmtree(gdir(uuid), ignore_errors=True)
    log("guest %s destroyed" % uuid)


def known():
    return sorted(os.listdir(GUESTS)) if os.path.isdir(GUESTS) else []


def op_list(req):
    out = []
    for uuid in known():
        st = read_state(uuid) or {}
        out.append({"uuid": uuid, "host": st.get("host"), "ip": st.get("ip"), "hostname": st.get("hostname"),
                    "running": alive(st) and netns_exists(ns_of(uuid)), "frozen": bool(st.get("frozen")),
                    "pid": st.get("pid") if alive(st) else None})
    return {"guests": out}


def op_gc(req):
    keep = set(req.get("keep") or [])
    gone = [u for u in known() if u not in keep]
    for u in gone:
        _destroy(u, read_state(u))
    return {"destroyed": gone}


OPS = {"ping": lambda req: {}, "list": op_list, "ensure": op_ensure, "gc": op_gc,
       "stop": with_state(halt), "start": with_state(_start), "destroy": with_state(_destroy),
       "freeze": with_state(_freeze), "thaw": with_state(_thaw)}


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            req = json.loads(self.rfile.readline(1 << 20))
            with LOCK:
                res = OPS[req["op"]](req)
            res["ok"] = True
        except Exception as e:  # the error goes back to the caller (nova-compute logs it)
            log("error: %r" % e)
            res = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        self.wfile.write((json.dumps(res) + "\n").encode())


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def readopt():
    """at start: guests whose sshd or namespace went away (a host reboot, `down`) come back"""
    ensure_hub()
    for uuid in known():
        st = read_state(uuid)
        if not st or "ip" not in st:
            shutil.rmtree(gdir(uuid), ignore_errors=True)
            continue
        if not st.get("running"):
            continue
        if alive(st) and netns_exists(ns_of(uuid)):
            log("guest %s adopted (pid %s)" % (uuid, st["pid"]))
            continue
        frozen = st.get("frozen")
        halt(uuid, st)
        boot(uuid, st)
        if frozen:
            _freeze(uuid, st)
        log("guest %s restarted" % uuid)


def serve():
    os.makedirs(GUESTS, exist_ok=True)
    with LOCK:
        readopt()
    if os.path.exists(SOCK):
        os.unlink(SOCK)
    srv = Server(SOCK, Handler)
    os.chmod(SOCK, 0o600)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
    log("labvirt serving on %s (%d guests known)" % (SOCK, len(known())))
    srv.serve_forever()
    os.unlink(SOCK)
    log("labvirt stopped (guests left running)")


def call(op, args=None, timeout=60):
    req = dict(args or {}, op=op)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(SOCK)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    res = json.loads(buf)
    if not res.get("ok"):
        raise RuntimeError("labvirt %s: %s" % (op, res.get("error")))
    return res


def teardown():
    for uuid in known():
        _destroy(uuid, read_state(uuid))
    for ns in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if ns.startswith("ugst-") or ns == HUB:
            sh("ip", "netns", "del", ns, check=False)


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "serve":
        serve()
    elif cmd == "call" and len(sys.argv) in (3, 4):
        print(json.dumps(call(sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) == 4 else None)))
    elif cmd == "gc":  # gc UUID...: destroy every guest but those of these servers
        print("%d stale guest(s) destroyed" % len(call("gc", {"keep": sys.argv[2:]})["destroyed"]))
    elif cmd == "teardown":
        teardown()
    else:
        sys.exit("usage: labvirt.py serve | call OP [JSON] | teardown")
