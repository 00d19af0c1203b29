#!/usr/bin/env bash
# bench/db_migration.sh [N ...] — what Nova's database migrations cost against the size of
# the database, on the lab's real release change (zed → epoxy, Nova 26 → 31). For each N
# (default 0 1000 10000 50000): tests/lab/reset (old release, saved databases), then
# tests/lab/seed-db --instances N (which stops every nova service, as an offline upgrade
# has them), then ctl1's code pointer to the new release and, timed, the commands the Nova
# scenario runs there through `<lab>/bin/svc run ctl1 nova-manage`: `api_db sync`,
# `db sync`, and `db online_data_migrations` (in one run without --max-count: Nova runs
# batches of 50 until nothing is left; repeated until it exits 0). The Nova databases'
# size on disk (du of nova, nova_api, nova_cell0 under the MariaDB datadir) is read
# before and after. Then tests/lab/reset puts the lab back (the saved databases, zed).
#
# Each N runs under the lab lock ($UPGRUN_LAB_LOCK, default /tmp/upgrun-lab.lock), taken
# and released per N so other lab users get a turn. Writes bench/db_migration.tsv and
# bench/db_migration.svg (bench/db_migration_plot.py, which prints the growth per 1,000
# instances); nova-manage's output per N in $OUT/db_migration-logs/. Env: TO (epoxy),
# OUT (bench/), UPGRUN_LAB_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LABSRC=$here/../tests/lab
source "$LABSRC/lib.sh"
SIZES=${*:-0 1000 10000 50000}
TO=${TO:-epoxy} NODE=ctl1 OUT=${OUT:-$here}
LOCK=${UPGRUN_LAB_LOCK:-/tmp/upgrun-lab.lock}
SVC=$LAB/bin/svc
for n in $SIZES; do [[ $n =~ ^[0-9]+$ ]] || { echo "db_migration.sh: N must be a count, got '$n'" >&2; exit 2; }; done
logs=$OUT/db_migration-logs; mkdir -p "$logs"
tsv=$OUT/db_migration.tsv

now() { date +%s.%N; }
db_bytes() { du -sb "$LAB/mysql/nova" "$LAB/mysql/nova_api" "$LAB/mysql/nova_cell0" | awk '{ s += $1 } END { print s }'; }
# manage NAME ARGS...: runs nova-manage on $NODE, output to the log; prints the seconds it took
manage() {
  local name=$1; shift; local t; t=$(now)
  local rc=0; "$SVC" run "$NODE" nova-manage "$@" > "$logs/$N-$name.log" 2>&1 || rc=$?
  if [ $rc != 0 ]; then
    echo "db_migration.sh: N=$N: nova-manage $* failed (exit $rc); the end of its output:" >&2
    tail -n 20 "$logs/$N-$name.log" >&2; return 1
  fi
  awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'
}
# the "Completed" column of online_data_migrations' table, summed
migrated() { awk -F'|' 'NF >= 5 && $4 ~ /^ *[0-9]+ *$/ { s += $4 } END { print s + 0 }' "$1"; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB;" \
  "load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
[ -s "$tsv" ] || printf 'instances\tapi_db_sync_s\tdb_sync_s\tonline_migrations_s\tonline_rows\tdb_bytes_before\tdb_bytes_after\tseed_s\tdate\n' > "$tsv"
for N in $SIZES; do
  exec {fd}>"$LOCK"
  flock -w 3600 "$fd" || { echo "db_migration.sh: the lab lock stayed taken for an hour" >&2; exit 1; }
  trap '"$LABSRC/reset" >/dev/null 2>&1 || echo "db_migration.sh: reset failed: run tests/lab/reset" >&2' EXIT
  "$LABSRC/reset" > "$logs/$N-reset.log" 2>&1 || { echo "db_migration.sh: tests/lab/reset failed ($logs/$N-reset.log)" >&2; exit 1; }
  t=$(now)
  "$LABSRC/seed-db" --instances "$N" > "$logs/$N-seed.log" 2>&1 || { echo "db_migration.sh: seed-db failed ($logs/$N-seed.log)" >&2; exit 1; }
  seed=$(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  before=$(db_bytes)
  "$SVC" switch "$NODE" "$TO" >/dev/null
  api=$(manage api_db_sync api_db sync)
  db=$(manage db_sync db sync)
  odm=0 rows=0 pass=0
  while :; do
    pass=$((pass + 1)) t=$(now) rc=0
    "$SVC" run "$NODE" nova-manage db online_data_migrations > "$logs/$N-online-$pass.log" 2>&1 || rc=$?
    odm=$(awk -v s="$odm" -v a="$t" -v b="$(now)" 'BEGIN { printf "%.2f", s + b - a }')
    rows=$((rows + $(migrated "$logs/$N-online-$pass.log")))
    [ $rc = 0 ] && break
    [ $rc = 1 ] && [ $pass -lt 20 ] && continue
    echo "db_migration.sh: N=$N: online_data_migrations exit $rc (pass $pass); the end of its output:" >&2
    tail -n 20 "$logs/$N-online-$pass.log" >&2; exit 1
  done
  after=$(db_bytes)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$N" "$api" "$db" "$odm" "$rows" "$before" "$after" "$seed" \
    "$(date -u +%Y-%m-%dT%H:%MZ)" >> "$tsv"
  printf 'N=%-6s api_db sync %6ss  db sync %6ss  online migrations %7ss (%s rows, %s pass(es))  DB %s -> %s MB  (seed %ss)\n' \
    "$N" "$api" "$db" "$odm" "$rows" "$pass" "$((before / 1048576))" "$((after / 1048576))" "$seed"
  "$LABSRC/reset" > "$logs/$N-reset-after.log" 2>&1 || { echo "db_migration.sh: tests/lab/reset failed ($logs/$N-reset-after.log)" >&2; exit 1; }
  trap - EXIT
  flock -u "$fd"; exec {fd}>&-
done
$PY "$here/db_migration_plot.py" "$tsv" "$OUT/db_migration.svg"
