#!/usr/bin/env bash
# bench/http_bench.sh — upgrun.http throughput and probe cost beside wrk, and
# start-up time beside lua5.4, in one run on this machine.
#
#   bench/http_bench.sh [UPGRUN_BIN]      (default: build/upgrun)
#
# Starts nginx (Debian nginx-light/nginx) on 127.0.0.1 with its own config in
# a temp dir, serving a static 400-byte JSON document (like an API version
# document) with one worker process. Then, 3 runs each (median reported):
#   - wrk -t2 -c16 -d${SECS}s on the URL
#   - upgrun: 1 task sequential loop, and 16 tasks, for ${SECS}s each
#   - a 100 Hz probe for ${PROBE_SECS}s: CPU % of one core, CPU ms per sample
#   - start-up: hyperfine (or a loop) of `upgrun -e ''` vs `lua5.4 -e ''`
# Prints a Markdown block to paste into bench/RESULTS.md.
# Needs: nginx, wrk, python3 (free port), optionally hyperfine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
UPGRUN=$(realpath "${1:-$here/../build/upgrun}")
SECS=${SECS:-5}
PROBE_SECS=${PROBE_SECS:-20}
RUNS=${RUNS:-3}

for tool in nginx wrk python3; do
  command -v $tool >/dev/null || { echo "http_bench: $tool is missing (apt-get install nginx-light wrk)" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/upgrun-httpbench.XXXXXX)
chmod 755 "$tmp"
nginx_pid=
cleanup() {
  [[ -n "$nginx_pid" ]] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/www"
python3 - "$tmp/www/version.json" <<'EOF'
import json, sys
doc = {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.95",
       "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
       "links": [{"rel": "self", "href": "http://127.0.0.1/v2.1/"},
                 {"rel": "describedby", "type": "text/html",
                  "href": "http://docs.openstack.org/"}],
       "media-types": [{"base": "application/json",
                        "type": "application/vnd.openstack.compute+json;version=2.1"}]}}
open(sys.argv[1], "w").write(json.dumps(doc)[:400].ljust(400))
EOF
chmod -R a+rX "$tmp/www"
cat >"$tmp/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/body;
  proxy_temp_path $tmp/proxy;
  fastcgi_temp_path $tmp/fastcgi;
  uwsgi_temp_path $tmp/uwsgi;
  scgi_temp_path $tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  default_type application/json;
  server {
    listen 127.0.0.1:$port;
    root $tmp/www;
  }
}
EOF
nginx -c "$tmp/nginx.conf" -p "$tmp" &
nginx_pid=$!
url="http://127.0.0.1:$port/version.json"
for _ in $(seq 50); do
  curl -fs -o /dev/null "$url" 2>/dev/null && break
  sleep 0.1
done
curl -fs -o /dev/null "$url" || { echo "http_bench: nginx did not come up" >&2; cat "$tmp/error.log" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

wrk_rates=() seq_rates=() par_rates=() seq_cpu=() par_cpu=() ratios=()
for run in $(seq "$RUNS"); do
  w=$(wrk -t2 -c16 -d"${SECS}s" "$url" | awk '/Requests\/sec/ {print $2}')
  read -r _ _ r1 c1 e1 < <("$UPGRUN" "$here/http_bench.lua" rate "$url" "$SECS" 1)
  read -r _ _ r16 c16 e16 < <("$UPGRUN" "$here/http_bench.lua" rate "$url" "$SECS" 16)
  echo "run $run: wrk c16 $w req/s | upgrun 1 task $r1 req/s ($c1 ms cpu/req, $e1 errors)" \
       "| upgrun 16 tasks $r16 req/s ($c16 ms cpu/req, $e16 errors)" >&2
  ratios+=("$(awk -v a="$r16" -v b="$w" 'BEGIN {printf "%.0f", 100 * a / b}')")
  wrk_rates+=("$w"); seq_rates+=("$r1"); par_rates+=("$r16"); seq_cpu+=("$c1"); par_cpu+=("$c16")
done
wrk_m=$(printf '%s\n' "${wrk_rates[@]}" | median)
seq_m=$(printf '%s\n' "${seq_rates[@]}" | median)
par_m=$(printf '%s\n' "${par_rates[@]}" | median)
seqc_m=$(printf '%s\n' "${seq_cpu[@]}" | median)
parc_m=$(printf '%s\n' "${par_cpu[@]}" | median)
ratio=$(printf '%s\n' "${ratios[@]}" | median)

echo "probe: 100 Hz for ${PROBE_SECS}s ..." >&2
read -r _ hz samples cpu_pct cpu_ms rss late fails < <("$UPGRUN" "$here/http_bench.lua" probe "$url" "$PROBE_SECS" 100)

# The floor on this machine: a raw keep-alive socket at 100 Hz in Python,
# no HTTP parsing; what two wake-ups per sample cost here.
floor_ms=$(python3 - "$port" "$PROBE_SECS" <<'EOF2'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
req = b"GET /version.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
c0 = time.process_time(); t0 = nxt = time.monotonic(); n = 0
while nxt < t0 + float(sys.argv[2]):
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
    s.sendall(req); s.recv(65536); n += 1
    nxt += 0.01
print("%.4f" % ((time.process_time() - c0) * 1000 / n))
EOF2
)

startup=""
if command -v hyperfine >/dev/null; then
  hyperfine -N -w 20 -r 200 --export-json "$tmp/hf.json" "$UPGRUN -e ''" "lua5.4 -e ''" >/dev/null 2>&1
  startup=$(python3 - "$tmp/hf.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
for x in r:
    print("| `%s` | %.2f ms | %.2f ms | %.2f ms |" % (x["command"].replace("/work/main/", ""), x["mean"] * 1e3, x["median"] * 1e3, x["stddev"] * 1e3))
EOF
)
else
  for cmd in "$UPGRUN -e ''" "lua5.4 -e ''"; do
    t0=$(date +%s%N); for _ in $(seq 200); do eval "$cmd"; done; t1=$(date +%s%N)
    startup+="| \`$cmd\` | $(( (t1 - t0) / 200000 ))e-3 ms (loop of 200) | | |"$'\n'
  done
fi

cat <<EOF
### $(date -u +%Y-%m-%d) — $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)

Server: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), 1 worker, static 400-byte JSON, keep-alive, 127.0.0.1.
Medians of $RUNS runs of ${SECS} s (same run, same URL).

| client | req/s | upgrun CPU per request |
|---|---|---|
| wrk -t2 -c16 | $wrk_m | — |
| upgrun, 1 task sequential | $seq_m | $seqc_m ms |
| upgrun, 16 tasks | $par_m | $parc_m ms |

16-task rate = **$ratio %** of wrk's (median of the per-run ratios ${ratios[*]}; target ≥ 50 %).
Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes these numbers noisy).

100 Hz upgrun.probe for ${PROBE_SECS} s (open loop, one task per sample, as the scenarios run it): $samples samples, $fails failed, $late sent more than 1.5 intervals after the one before;
upgrun CPU **$cpu_pct %** of one core (target < 5 %), **$cpu_ms ms per sample** (goal < 0.2 ms), peak RSS $rss kB.
Floor on this machine: a raw keep-alive socket probe in Python (send, blocking recv, no parsing) at 100 Hz costs $floor_ms ms per sample.

Start-up (hyperfine -N, 200 runs):

| command | mean | median | stddev |
|---|---|---|---|
$startup
EOF
