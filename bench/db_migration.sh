#!/usr/bin/env bash
# bench/db_migration.sh [--private] [N ...] — what Nova's database migrations cost against the
# size of the database, on the lab's real release change (zed → epoxy, Nova 26 → 31). For each
# N (default 0 1000 10000 50000): the old release's databases (zed), N instances added by
# tests/lab/seed-db (clones of real servers, see there), then, timed, the commands the Nova
# scenario runs with the new release's code: `nova-manage api_db sync`, `db sync`, and
# `db online_data_migrations` (one run without --max-count: Nova runs batches of 50 until
# nothing is left; repeated until it exits 0). The Nova databases' size on disk (du of the
# nova, nova_api and nova_cell0 directories in MariaDB's datadir) is read before and after.
#
# On the lab (default): tests/lab/reset, seed-db (which stops every nova service, as an
# offline upgrade has them), ctl1's code pointer to the new release, the commands through
# `<lab>/bin/svc run ctl1 nova-manage`, then tests/lab/reset puts the lab back (saved
# databases, zed). Each N runs under the lab lock ($UPGRUN_LAB_LOCK, default
# /tmp/upgrun-lab.lock), taken and released per N so other lab users get a turn.
# --private: the same on a MariaDB of its own (the lab's mariadbd binary and settings, a
# temporary datadir and socket) loaded with the lab's saved Zed databases
# (<lab>/state/nova-db-old.sql), nova-manage from the lab's epoxy root in a private mount
# namespace with a config naming that MariaDB; the running lab is not touched (no lock).
#
# Writes bench/db_migration.tsv (appends; the plot takes the newest row per N) and
# bench/db_migration.svg (bench/db_migration_plot.py, which prints the Markdown table and the
# growth per 1,000 instances); nova-manage's output per N in $OUT/db_migration-logs/.
# Env: TO (epoxy), OUT (bench/), UPGRUN_LAB_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LABSRC=$here/../tests/lab
source "$LABSRC/lib.sh"
PRIVATE=0; [ "${1-}" = --private ] && { PRIVATE=1; shift; }
SIZES=${*:-0 1000 10000 50000}
TO=${TO:-epoxy} NODE=ctl1 OUT=${OUT:-$here}
LOCK=${UPGRUN_LAB_LOCK:-/tmp/upgrun-lab.lock}
SVC=$LAB/bin/svc
for n in $SIZES; do [[ $n =~ ^[0-9]+$ ]] || { echo "db_migration.sh: N must be a count, got '$n'" >&2; exit 2; }; done
logs=$OUT/db_migration-logs; mkdir -p "$logs"
tsv=$OUT/db_migration.tsv

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
if [ $PRIVATE = 0 ]; then
  DATADIR=$LAB/mysql
  nm() { "$SVC" run "$NODE" nova-manage "$@" {fd}>&-; }
else
  ROOT=$LAB/roots/$TO
  [ -f "$ROOT/.built" ] || { echo "db_migration.sh: no $TO root ($ROOT): run tests/lab/install" >&2; exit 1; }
  [ -s "$LAB/state/nova-db-old.sql" ] || { echo "db_migration.sh: no saved Zed databases: run tests/lab/up" >&2; exit 1; }
  P=$(mktemp -d /tmp/upgrun-dbbench.XXXXXX) DATADIR=$P/data SOCK=$P/mysqld.sock
  cleanup() { [ -s "$P/mariadbd.pid" ] && kill "$(cat "$P/mariadbd.pid")" 2>/dev/null
    for _ in $(seq 100); do [ -e "$SOCK" ] || break; sleep 0.2; done; rm -rf "$P"; }
  trap cleanup EXIT
  mariadb-install-db --no-defaults --datadir="$DATADIR" --skip-test-db --auth-root-authentication-method=socket \
    > "$P/install.log" 2>&1 || { echo "db_migration.sh: mariadb-install-db failed ($P/install.log)" >&2; exit 1; }
  # the lab's mariadbd settings (tests/lab/svc), on a socket only
  setsid /usr/sbin/mariadbd --no-defaults --user=root --datadir="$DATADIR" --socket="$SOCK" --skip-networking \
    --pid-file="$P/mariadbd.pid" --skip-name-resolve --skip-log-bin --max-connections=1000 \
    --innodb-buffer-pool-size=128M --innodb-log-file-size=32M --innodb-flush-log-at-trx-commit=2 \
    --character-set-server=utf8mb4 > "$P/mariadbd.log" 2>&1 < /dev/null &
  wait_for 60 "the private mariadbd" mariadb --socket="$SOCK" -uroot -e "SELECT 1"
  url() { echo "mysql+pymysql://nova:bench@localhost/$1?unix_socket=$SOCK&charset=utf8"; }
  printf '[api_database]\nconnection = %s\n[database]\nconnection = %s\n' "$(url nova_api)" "$(url nova)" > "$P/nova.conf"
  # the root's python in a mount namespace of its own: /proc, /dev and /tmp (the socket and
  # config) mounted into the root there only
  nm() {
    unshare -m --propagation private bash -c 'r=$1; shift
      mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" && mount --bind /tmp "$r/tmp" || exit 1
      exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8 chroot "$r" /usr/bin/python3 \
        -c "import sys; from nova.cmd.manage import main; sys.exit(main())" "$@"' _ "$ROOT" \
      --config-file "$P/nova.conf" "$@"
  }
fi
db_bytes() { du -sb "$DATADIR/nova" "$DATADIR/nova_api" "$DATADIR/nova_cell0" | awk '{ s += $1 } END { print s }'; }
# manage NAME ARGS...: runs nova-manage, output to the log; prints the seconds it took
manage() {
  local name=$1; shift; local t; t=$(now)
  local rc=0; nm "$@" > "$logs/$N-$name.log" 2>&1 || rc=$?
  if [ $rc != 0 ]; then
    echo "db_migration.sh: N=$N: nova-manage $* failed (exit $rc); the end of its output:" >&2
    tail -n 20 "$logs/$N-$name.log" >&2; return 1
  fi
  since "$t"
}
# the "Completed" column of online_data_migrations' table, summed
migrated() { awk -F'|' 'NF >= 5 && $4 ~ /^ *[0-9]+ *$/ { s += $4 } END { print s + 0 }' "$1"; }
# prepare: the old release's databases with N more instances, nova services stopped
prepare() {
  if [ $PRIVATE = 0 ]; then
    "$LABSRC/reset" > "$logs/$N-reset.log" 2>&1 {fd}>&- || { echo "db_migration.sh: tests/lab/reset failed ($logs/$N-reset.log)" >&2; return 1; }
    "$LABSRC/seed-db" --instances "$N" > "$logs/$N-seed.log" 2>&1 {fd}>&- || { echo "db_migration.sh: seed-db failed ($logs/$N-seed.log)" >&2; return 1; }
    "$SVC" switch "$NODE" "$TO" >/dev/null
  else
    local m=(mariadb --socket="$SOCK" -uroot)
    "${m[@]}" < "$LAB/state/nova-db-old.sql"
    # the cells point at this server (their saved URLs name the lab's, with its password)
    "${m[@]}" -e "CREATE USER IF NOT EXISTS 'nova'@'localhost' IDENTIFIED BY 'bench';
      GRANT ALL ON nova.* TO 'nova'@'localhost'; GRANT ALL ON nova_api.* TO 'nova'@'localhost';
      GRANT ALL ON nova_cell0.* TO 'nova'@'localhost';
      UPDATE nova_api.cell_mappings SET transport_url = 'rabbit://none:none@127.0.0.1:1/',
        database_connection = IF(name = 'cell0', '$(url nova_cell0)', '$(url nova)')"
    "$LABSRC/seed-db" --instances "$N" --socket "$SOCK" > "$logs/$N-seed.log" 2>&1 ||
      { echo "db_migration.sh: seed-db failed ($logs/$N-seed.log)" >&2; return 1; }
  fi
}
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB;" \
  "load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
[ -s "$tsv" ] || printf 'instances\tapi_db_sync_s\tdb_sync_s\tonline_migrations_s\tonline_rows\tdb_bytes_before\tdb_bytes_after\tseed_s\tdate\n' > "$tsv"
for N in $SIZES; do
  if [ $PRIVATE = 0 ]; then
    exec {fd}>"$LOCK"
    flock -w 3600 "$fd" || { echo "db_migration.sh: the lab lock stayed taken for an hour" >&2; exit 1; }
    trap '"$LABSRC/reset" >/dev/null 2>&1 {fd}>&- || echo "db_migration.sh: reset failed: run tests/lab/reset" >&2' EXIT
  fi
  t=$(now)
  prepare
  seed=$(since "$t")
  before=$(db_bytes)
  api=$(manage api_db_sync api_db sync)
  db=$(manage db_sync db sync)
  odm=0 rows=0 pass=0
  while :; do
    pass=$((pass + 1)) t=$(now) rc=0
    nm db online_data_migrations > "$logs/$N-online-$pass.log" 2>&1 || rc=$?
    odm=$(awk -v s="$odm" -v d="$(since "$t")" 'BEGIN { printf "%.2f", s + d }')
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
  if [ $PRIVATE = 0 ]; then
    "$LABSRC/reset" > "$logs/$N-reset-after.log" 2>&1 {fd}>&- || { echo "db_migration.sh: tests/lab/reset failed ($logs/$N-reset-after.log)" >&2; exit 1; }
    trap - EXIT
    flock -u "$fd"; exec {fd}>&-
  fi
done
$PY "$here/db_migration_plot.py" "$tsv" "$OUT/db_migration.svg"
