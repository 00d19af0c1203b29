#!/usr/bin/env bash
# bench/inventory_bench.sh — loading a large Ansible YAML inventory with
# upgrun.inventory beside `ansible-inventory --list` on the same file, in one
# run on this machine.
#
#   bench/inventory_bench.sh [UPGRUN_BIN]      (default: build/upgrun)
#   HOSTS=10000 RUNS=3 bench/inventory_bench.sh
#
# Generates a YAML inventory of $HOSTS hosts (4 groups under all with group
# vars, each host with ansible_host and one more variable), then, $RUNS times
# each (median reported): upgrun's inventory.load (wall and CPU seconds, from
# inside the process, so start-up is not counted) and `ansible-inventory -i
# FILE --list > /dev/null` (wall and user+sys CPU of the process). Also loads
# 500/1000/2000 hosts with upgrun (the sizes that were quadratic). Prints a
# Markdown block to paste into bench/RESULTS.md. Needs ansible-core.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
UPGRUN=$(realpath "${1:-$here/../build/upgrun}")
HOSTS=${HOSTS:-10000}
RUNS=${RUNS:-3}
command -v ansible-inventory >/dev/null || { echo "inventory_bench: ansible-inventory is missing (apt-get install ansible-core)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/upgrun-invbench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

gen() { # gen N FILE
  python3 - "$1" "$2" <<'EOF'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
out = ["all:", "  vars:", "    ansible_user: root", "  children:"]
groups = ["controller", "compute", "network", "storage"]
for gi, g in enumerate(groups):
    out += ["    %s:" % g, "      vars:", "        role: %s" % g, "      hosts:"]
    for i in range(gi, n, len(groups)):
        out += ["        node%05d:" % i,
                "          ansible_host: 10.%d.%d.%d" % (i // 65536, (i // 256) % 256, i % 256),
                "          rack: r%d" % (i % 40)]
open(path, "w").write("\n".join(out) + "\n")
EOF
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

upgrun_load() { # upgrun_load FILE -> "wall cpu"
  "$UPGRUN" -e '
    local time, inventory = require "upgrun.time", require "upgrun.inventory"
    local c0, t0 = os.clock(), time.mono()
    local inv = assert(inventory.load(arg[1]))
    assert(#inv:hosts() > 0)
    print(string.format("%.3f %.3f", time.mono() - t0, os.clock() - c0))' "$1"
}

gen "$HOSTS" "$tmp/inv.yml"
uw=(); uc=(); aw=(); ac=()
for _ in $(seq "$RUNS"); do
  read -r w c < <(upgrun_load "$tmp/inv.yml"); uw+=("$w"); uc+=("$c")
  /usr/bin/time -o "$tmp/time" -f "%e %U %S" ansible-inventory -i "$tmp/inv.yml" --list >/dev/null 2>&1
  read -r w u s < "$tmp/time"; aw+=("$w"); ac+=("$(echo "$u + $s" | bc)")
done
UW=$(printf '%s\n' "${uw[@]}" | median); UC=$(printf '%s\n' "${uc[@]}" | median)
AW=$(printf '%s\n' "${aw[@]}" | median); AC=$(printf '%s\n' "${ac[@]}" | median)

sizes=""
for n in 500 1000 2000; do
  gen "$n" "$tmp/inv$n.yml"
  read -r w c < <(upgrun_load "$tmp/inv$n.yml")
  sizes+="| upgrun, $n hosts | $w s | $c s |"$'\n'
done

echo "### $(date -u +%Y-%m-%d) — inventory load, $HOSTS-host YAML inventory ($(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'))"
echo
echo "| | wall (median of $RUNS) | CPU |"
echo "|---|---|---|"
echo "| upgrun inventory.load | $UW s | $UC s |"
echo "| ansible-inventory --list (same file) | $AW s | $AC s |"
printf '%s' "$sizes"
echo
echo "CPU ratio ansible/upgrun: $(echo "scale=1; $AC / $UC" | bc)x; wall ratio: $(echo "scale=1; $AW / $UW" | bc)x; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
