#!/usr/bin/env bash
# bench/probe_bench.sh — the probe path of a scenario run, beside the
# python3-requests reference, in one invocation on this machine:
#
#   bench/probe_bench.sh [UPGRUN_BIN]          (default: build/upgrun)
#   MODE=cpu  (default) CPU per sample: a scenario with one http probe at
#             ${HZ:-100} Hz run for ${SHORT:-10} s and ${LONG:-30} s; the cost per
#             sample is the CPU difference (user+sys) over the sample difference
#             (start-up and reports cancel out); the same for Debian's
#             python3-requests (keep-alive Session, same URL, same rate, same
#             schedule). ${RUNS:-1} rounds, each printed with the load average,
#             then median/min/max; BASE=/path/to/other/upgrun measures a second
#             binary (e.g. before a change) in the same rounds. Also prints the
#             end-of-run analysis time of each long run.
#   MODE=par  the same per-sample CPU with upgrun, BASE (if set) and
#             python3-requests probing side by side for ${SECS:-30} s, ${RUNS:-5}
#             rounds: each round's figures share one load, which the
#             difference of two runs in sequence (MODE=cpu) does not; the
#             probing part alone (the stage's CPU / the loop's CPU).
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
summarise() { # the rounds: upgrun, base (or -), python3-requests per line
  sort -n -k1 "$tmp/rounds" | awk '{ u[NR] = $1 } END { printf "upgrun scenario path: median %.4f ms, min %.4f, max %.4f ms CPU per sample\n", u[int((NR + 1) / 2)], u[1], u[NR] }'
  if [[ -n "${BASE:-}" ]]; then
    sort -n -k2 "$tmp/rounds" | awk '{ b[NR] = $2 } END { printf "base: median %.4f ms, min %.4f, max %.4f ms CPU per sample\n", b[int((NR + 1) / 2)], b[1], b[NR] }'
  fi
  sort -n -k3 "$tmp/rounds" | awk '{ p[NR] = $3 } END { printf "python3-requests Session: median %.4f ms, min %.4f, max %.4f ms CPU per sample\n", p[int((NR + 1) / 2)], p[1], p[NR] }'
  awk '{ r[NR] = $3 / $1 } END { n = asort(r); printf "ratio python3-requests / upgrun per round: median %.1fx, min %.1fx, max %.1fx\n", r[int((n + 1) / 2)], r[1], r[n] }' "$tmp/rounds"
}
echo "machine: $(lscpu | grep 'Model name' | sed 's/Model name: *//'), $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"

if [[ "$MODE" == analysis ]]; then
  for per in 2500 432000; do
    for _ in 1 2 3; do "$UPGRUN" "$here/analysis_bench.lua" "$per"; done | sort -k4 -g | sed -n 2p | awk '{
      printf "%d samples: analysis %.1f ms, writing report.json + junit.xml + report.html %.1f ms (median of 3; feeding the aggregates took %.2f s during the run)\n", $2, $4, $5, $3 }'
  done
  exit 0
fi
if [[ "$MODE" == par ]]; then
  # upgrun (and BASE) and python3-requests probe side by side, at the same
  # time, so each round's figures share the machine's load; CPU per sample of
  # the probing part alone (the stage / the loop), start-up excluded
  HZ=${HZ:-100} SECS=${SECS:-30} RUNS=${RUNS:-5}
  echo "CPU per sample, side by side for $SECS s at $HZ Hz, $RUNS round(s)${BASE:+; BASE=$BASE beside}"
  : >"$tmp/rounds"
  for r in $(seq "$RUNS"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$UPGRUN" "$here/probe_scenario.lua" "$url" "$SECS" 1 "$HZ" "$tmp/pu" >"$tmp/pu.out" &
    pu=$!
    pb=
    if [[ -n "${BASE:-}" ]]; then
      "$(realpath "$BASE")" "$here/probe_scenario.lua" "$url" "$SECS" 1 "$HZ" "$tmp/pb" >"$tmp/pb.out" &
      pb=$!
    fi
    $PY "$here/requests_probe.py" "$url" "$SECS" "$HZ" >"$tmp/pp.out" &
    pp=$!
    wait "$pu" "$pp" ${pb:+"$pb"}
    rm -rf "$tmp/pu" "$tmp/pb"
    load2=$(cut -d' ' -f1 /proc/loadavg)
    u=$(grep '^run ' "$tmp/pu.out" | awk '{ printf "%.4f %d", $9 * 1000 / $5, $5 }')
    b="- 0"
    [[ -n "$pb" ]] && b=$(grep '^run ' "$tmp/pb.out" | awk '{ printf "%.4f %d", $9 * 1000 / $5, $5 }')
    p=$(awk '{ printf "%.4f %d", $6 * 1000 / $4, $4 }' "$tmp/pp.out")
    read -r uu un <<<"$u"; read -r bb bn <<<"$b"; read -r pv pn <<<"$p"
    echo "$uu $bb $pv" >>"$tmp/rounds"
    awk -v r="$r" -v u="$uu" -v un="$un" -v b="$bb" -v bn="$bn" -v p="$pv" -v pn="$pn" -v l1="$load" -v l2="$load2" 'BEGIN {
      printf "round %d (load %s-%s): upgrun %.4f ms (%d samples)", r, l1, l2, u, un
      if (b != "-") printf ", base %.4f ms (%d samples)", b, bn
      printf ", python3-requests %.4f ms (%d samples), ratio %.1fx\n", p, pn, p / u }'
  done
  summarise
  exit 0
fi
if [[ "$MODE" == cpu ]]; then
  HZ=${HZ:-100} SHORT=${SHORT:-10} LONG=${LONG:-30} RUNS=${RUNS:-1}
  # per-sample CPU (user+sys, os.clock / process_time) of one binary or of
  # python3-requests: the difference of a LONG and a SHORT run over the
  # difference of their samples (start-up and reports cancel out)
  upgrun_per() { # BIN TAG -> "ms samples_long samples_short analysis_ms_long"
    local a b
    a=$("$1" "$here/probe_scenario.lua" "$url" "$SHORT" 1 "$HZ" "$tmp/$2s" | grep '^run ')
    b=$("$1" "$here/probe_scenario.lua" "$url" "$LONG" 1 "$HZ" "$tmp/$2l" | grep '^run ')
    rm -rf "$tmp/$2s" "$tmp/$2l"
    read -r _ _ _ _ n1 c1 _ _ <<<"$a"
    read -r _ _ _ _ n2 c2 _ a2 _ <<<"$b"
    awk -v n1="$n1" -v c1="$c1" -v n2="$n2" -v c2="$c2" -v a2="$a2" \
      'BEGIN { printf "%.4f %d %d %s\n", (c2 - c1) * 1000 / (n2 - n1), n2, n1, a2 }'
  }
  python_per() {
    local a b
    a=$($PY "$here/requests_probe.py" "$url" "$SHORT" "$HZ")
    b=$($PY "$here/requests_probe.py" "$url" "$LONG" "$HZ")
    read -r _ _ _ n1 c1 _ <<<"$a"
    read -r _ _ _ n2 c2 _ <<<"$b"
    awk -v n1="$n1" -v c1="$c1" -v n2="$n2" -v c2="$c2" \
      'BEGIN { printf "%.4f %d %d\n", (c2 - c1) * 1000 / (n2 - n1), n2, n1 }'
  }
  echo "CPU per sample, ${LONG} s run minus ${SHORT} s run at $HZ Hz, $RUNS round(s)${BASE:+; BASE=$BASE measured in the same rounds}"
  : >"$tmp/rounds"
  for r in $(seq "$RUNS"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    read -r u un2 un1 ua <<<"$(upgrun_per "$UPGRUN" u)"
    b=-
    if [[ -n "${BASE:-}" ]]; then read -r b _ _ _ <<<"$(upgrun_per "$(realpath "$BASE")" b)"; fi
    read -r p pn2 pn1 <<<"$(python_per)"
    load2=$(cut -d' ' -f1 /proc/loadavg)
    echo "$u $b $p" >>"$tmp/rounds"
    awk -v r="$r" -v u="$u" -v b="$b" -v p="$p" -v l1="$load" -v l2="$load2" -v un="$un2/$un1" -v pn="$pn2/$pn1" \
        -v ua="$ua" 'BEGIN {
      printf "round %d (load %s-%s): upgrun %.4f ms (%s samples)", r, l1, l2, u, un
      if (b != "-") printf ", base %.4f ms", b
      printf ", python3-requests %.4f ms (%s samples), ratio %.1fx; end-of-run analysis + reports %.1f ms\n", p, pn, p / u, ua }'
  done
  summarise
else
  PROBES=${PROBES:-4} HZ=${HZ:-50} SECS=${SECS:-600}
  line=$("$UPGRUN" "$here/probe_scenario.lua" "$url" "$SECS" "$PROBES" "$HZ" "$tmp/r" | grep '^run ')
  read -r _ _ _ _ n cpu series analysis _ <<<"$line"
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
