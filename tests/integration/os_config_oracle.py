#!/usr/bin/python3
"""os_config_oracle.py CASES.json — what openstacksdk (Debian's
python3-openstacksdk) resolves for each case: {"cwd", "env", "cloud"}.

Each case runs in a forked child that changes to the case's directory,
replaces the environment and reloads openstack.config.loader (its search path
is computed at import from getcwd() and the XDG variables), then calls
OpenStackConfig().get_one(cloud). Prints one JSON list: per case either
{"ok": true, "name", "region_name", "auth", "interface", "auth_type",
"verify", "cert"} (verify and cert as requests gets them) or
{"ok": false, "error"}.
"""
import importlib
import json
import os
import sys
import warnings

import openstack.config.loader as loader


def resolve(case):
    os.chdir(case["cwd"])
    os.environ.clear()
    os.environ.update(case["env"])
    warnings.simplefilter("ignore")
    mod = importlib.reload(loader)
    try:
        region = mod.OpenStackConfig().get_one(case.get("cloud") or None)
        verify, cert = region.get_requests_verify_args()
        return {
            "ok": True, "name": region.name, "region_name": region.region_name,
            "auth": {k: v for k, v in region.config["auth"].items() if v is not None},
            "interface": region.config.get("interface"),
            "auth_type": region.config.get("auth_type"),
            "verify": verify, "cert": list(cert) if isinstance(cert, tuple) else cert,
        }
    except Exception as e:  # every failure is an answer: "sdk refuses"
        return {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}


def main():
    cases = json.load(open(sys.argv[1]))
    out = []
    for case in cases:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                data = json.dumps(resolve(case)).encode()
            except Exception as e:
                data = json.dumps({"ok": False, "error": "oracle: %s" % e}).encode()
            with os.fdopen(w, "wb") as f:
                f.write(data)
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        out.append(json.loads(data))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
