#!/usr/bin/env bash
# bench/probe_bench.sh — the probe path of a scenario run, beside the
# python3-requests reference, in one invocation on this machine:
#
#   bench/probe_bench.sh [UPGRUN_BIN]          (default: build/upgrun)
#   MODE=cpu  (default) CPU per sample: a scenario with one http probe at
#             ${HZ:-100} Hz run for ${SHORT:-10} s and ${LONG:-30} s; the cost per
#             sample is the CPU difference over the sample difference (start-up
#             and reports cancel out); the same for Debian's python3-requests
#             (keep-alive Session, same URL, same rate, same schedule). Also
#             prints the end-of-run analysis time of each run.
#   MODE=rss  RSS over a long run: ${PROBES:-4} probes at ${HZ:-50} Hz for
#             ${SECS:-600} s, VmRSS every 10 s, and the projection to
#             6 h x 4 probes x 20 Hz from the slope after the first minute.
#   MODE=analysis  the end-of-run analysis (bench/analysis_bench.lua) for
#             10,000 and 1,728,000 samples (6 h x 4 probes x 20 Hz), median of 3.
# Server: tests/integration/faultserver.py (/status/200, keep-alive) on
# 127.0.0.1; its own CPU is not counted. Prints lines for bench/RESULTS.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
UPGRUN=$(realpath "${1:-$here/../build/upgrun}")
MODE=${MODE:-cpu}
PY=/usr/bin/python3
tmp=$(mktemp -d /tmp/upgrun-probebench.XXXXXX)
srv=
cleanup() { [[ -n "$srv" ]] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
$PY "$here/../tests/integration/faultserver.py" --lifetime 7200 >"$tmp/port" &
srv=$!
for _ in $(seq 50); do [[ -s "$tmp/port" ]] && break; sleep 0.1; done
url="http://127.0.0.1:$(cut -d' ' -f1 "$tmp/port")/status/200"
echo "machine: $(lscpu | grep 'Model name' | sed 's/Model name: *//'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"

if [[ "$MODE" == analysis ]]; then
  for per in 2500 432000; do
    for _ in 1 2 3; do "$UPGRUN" "$here/analysis_bench.lua" "$per"; done | sort -k4 -g | sed -n 2p | awk '{
      printf "%d samples: analysis %.1f ms, writing report.json + junit.xml + report.html %.1f ms (median of 3; feeding the aggregates took %.2f s during the run)\n", $2, $4, $5, $3 }'
  done
  exit 0
fi
if [[ "$MODE" == cpu ]]; then
  HZ=${HZ:-100} SHORT=${SHORT:-10} LONG=${LONG:-30}
  u1=$("$UPGRUN" "$here/probe_scenario.lua" "$url" "$SHORT" 1 "$HZ" "$tmp/u1" | grep '^run ')
  u2=$("$UPGRUN" "$here/probe_scenario.lua" "$url" "$LONG" 1 "$HZ" "$tmp/u2" | grep '^run ')
  p1=$($PY "$here/requests_probe.py" "$url" "$SHORT" "$HZ")
  p2=$($PY "$here/requests_probe.py" "$url" "$LONG" "$HZ")
  echo "$u1" | cut -d' ' -f1-6; echo "$u2" | cut -d' ' -f1-6; echo "$p1"; echo "$p2"
  read -r _ _ _ _ un1 uc1 _ ua1 <<<"$u1"
  read -r _ _ _ _ un2 uc2 _ ua2 <<<"$u2"
  read -r _ _ _ pn1 pc1 <<<"$p1"
  read -r _ _ _ pn2 pc2 <<<"$p2"
  awk -v un1="$un1" -v uc1="$uc1" -v un2="$un2" -v uc2="$uc2" -v pn1="$pn1" -v pc1="$pc1" -v pn2="$pn2" \
      -v pc2="$pc2" -v ua1="$ua1" -v ua2="$ua2" -v hz="$HZ" 'BEGIN {
    u = (uc2 - uc1) * 1000 / (un2 - un1); p = (pc2 - pc1) * 1000 / (pn2 - pn1)
    printf "upgrun scenario path: %.4f ms CPU per sample (%d vs %d samples at %g Hz)\n", u, un2, un1, hz
    printf "python3-requests Session: %.4f ms CPU per sample (%d vs %d samples)\n", p, pn2, pn1
    printf "ratio: python3-requests / upgrun = %.1fx\n", p / u
    printf "end-of-run analysis + reports: %.1f ms (%d samples), %.1f ms (%d samples)\n", ua1, un1, ua2, un2
  }'
else
  PROBES=${PROBES:-4} HZ=${HZ:-50} SECS=${SECS:-600}
  line=$("$UPGRUN" "$here/probe_scenario.lua" "$url" "$SECS" "$PROBES" "$HZ" "$tmp/r" | grep '^run ')
  read -r _ _ _ _ n cpu series analysis <<<"$line"
  echo "samples $n in $SECS s ($PROBES probes at $HZ Hz), CPU $cpu s, analysis + reports $analysis ms"
  echo "VmRSS every 10 s (kB): $series"
  echo "$series" | tr ',' '\n' | awk -v secs="$SECS" -v probes="$PROBES" -v hz="$HZ" '
    { rss[NR] = $1 }
    END {
      # after the first minute (warm-up: connections, buffers, first GC cycles)
      first = (NR >= 9) ? 7 : 2; min = rss[first]; max = rss[first]
      n = 0; sx = 0; sy = 0; sxx = 0; sxy = 0
      for (i = first; i <= NR; i++) {
        if (rss[i] < min) min = rss[i]; if (rss[i] > max) max = rss[i]
        x = (i - 1) * 10; n++; sx += x; sy += rss[i]; sxx += x * x; sxy += x * rss[i]
      }
      slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)   # kB per second at probes*hz samples/s
      per_sample = slope / (probes * hz)                  # kB per sample
      proj = rss[NR] + per_sample * (6 * 3600 * 4 * 20)
      printf "RSS after the first minute: min %.1f MB, max %.1f MB, spread %.2f MB (target: flat within 5 MB)\n", \
        min / 1024, max / 1024, (max - min) / 1024
      printf "slope %.3f kB/s = %.4f kB per sample; projection for 6 h x 4 probes x 20 Hz (1.73 M samples): %.1f MB (target < 50 MB)\n", \
        slope, per_sample, proj / 1024
    }'
fi
