#!/bin/bash
# bench/ssh_bench.sh — `true` and `sleep 1` on N = 1, 10, 50 local sshd (the
# tests' sshd_harness: 127.0.0.1 ports, ed25519 host and client keys, host keys
# checked) with upgrun, parallel-ssh and ansible (-m command, -m raw, forks = N),
# median of 5 wall times and peak RSS (/usr/bin/time -v, max over runs) of each;
# then the cost of a further command on a connected node and of a second
# fan-out to 50 connected nodes. Login shell: the harness sets SHLVL=1 in sshd
# (SetEnv) so Debian bash does not source ~/.bashrc for ssh commands (root's
# runs pyenv init here, ~0.5 s per command); set LOGIN_SHELL=full to keep it.
#   bench/ssh_bench.sh [build-dir]       prints a markdown table
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); SRC=$(dirname "$HERE")
BUILD=${1:-$SRC/build-ssh}; UPGRUN=$BUILD/upgrun
export UPGRUN_SRC=$SRC
RUNS=${RUNS:-5}; NS=${NS:-"1 10 50"}
PSSH=$(command -v parallel-ssh || command -v pssh || true)
ANSIBLE=$(command -v ansible || true)

tmp=$(mktemp -d /tmp/upgrun-sshbench.XXXXXX)
cleanup() { touch "$tmp"/*/stop 2>/dev/null || true; sleep 1; rm -rf "$tmp"; }
trap cleanup EXIT

# median wall time and max RSS (MB) of RUNS runs of a command
measure() {
  local walls=() rss=0 i w r
  for ((i = 0; i < RUNS; i++)); do
    if ! /usr/bin/time -f "%e %M" -o "$tmp/t" "$@" >/dev/null 2>"$tmp/err"; then
      echo "FAILED" ; sed -n 1,5p "$tmp/err" >&2; return
    fi
    read -r w r < <(tail -1 "$tmp/t")
    walls+=("$w"); (( r > rss )) && rss=$r
  done
  local med; med=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  echo "$med s | $((rss / 1024)) MB"
}

echo "| tool | N | true (wall, median of $RUNS) | peak RSS | sleep 1 | peak RSS |"
echo "|---|---|---|---|---|---|"
for N in $NS; do
  d=$tmp/n$N; mkdir -p "$d"
  "$UPGRUN" "$HERE/ssh_bench.lua" start "$d" "$N" >"$d/log" 2>&1 &
  for _ in $(seq 1 300); do [ -f "$d/ready" ] && break; sleep 0.1; done
  [ -f "$d/ready" ] || { echo "sshd start failed"; cat "$d/log"; exit 1; }
  KEY=$d/id_ed25519 KH=$d/known_hosts
  SSHOPTS=(-O "IdentityFile=$KEY" -O "UserKnownHostsFile=$KH" -O StrictHostKeyChecking=yes -O BatchMode=yes)
  u_true=$(measure "$UPGRUN" "$HERE/ssh_bench.lua" fanout "$d/inventory.yml" true)
  u_sleep=$(measure "$UPGRUN" "$HERE/ssh_bench.lua" fanout "$d/inventory.yml" "sleep 1")
  echo "| upgrun | $N | $u_true | $u_sleep |"
  if [ -n "$PSSH" ]; then
    p_true=$(measure "$PSSH" -p "$N" -h "$d/hosts" -l "$(id -un)" "${SSHOPTS[@]}" -t 60 true)
    p_sleep=$(measure "$PSSH" -p "$N" -h "$d/hosts" -l "$(id -un)" "${SSHOPTS[@]}" -t 60 "sleep 1")
    echo "| parallel-ssh -p N | $N | $p_true | $p_sleep |"
  fi
  if [ -n "$ANSIBLE" ]; then
    export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_PRIVATE_KEY_FILE=$KEY ANSIBLE_REMOTE_USER=$(id -un)
    export ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=$KH -o StrictHostKeyChecking=yes -o ControlMaster=no"
    export ANSIBLE_FORKS=$N ANSIBLE_GATHERING=explicit ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3
    export ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_DEPRECATION_WARNINGS=False
    for m in command raw; do
      a_true=$(measure "$ANSIBLE" all -i "$d/ansible_hosts" -m "$m" -a true)
      a_sleep=$(measure "$ANSIBLE" all -i "$d/ansible_hosts" -m "$m" -a "sleep 1")
      echo "| ansible -m $m, forks N | $N | $a_true | $a_sleep |"
    done
  fi
  if [ "$N" = 50 ] || [ "$N" = "${NS##* }" ]; then
    warm=$("$UPGRUN" "$HERE/ssh_bench.lua" warm "$d/inventory.yml")
    echo; echo "upgrun on connected nodes (N = $N): $warm"; echo
  fi
  touch "$d/stop"
done
