# shellcheck shell=bash
# tests/lab/lib.sh — constants and helpers shared by the lab scripts (sourced, not run).
# Copied to <lab>/bin/ by `up`, so node-side commands (svc) work without the repo.
LAB=${UPGRUN_LAB_DIR:-/var/lib/upgrun-lab}
PY=/usr/bin/python3   # Debian's python has the OpenStack modules; a PATH python may not
LAB_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CONTROLLERS="ctl1 ctl2"; COMPUTES="cmp1 cmp2"; NODES="$CONTROLLERS $COMPUTES"
INFRA="mariadb epmd rabbitmq neutron keystone placement glance haproxy labvirt"
# ports, all on 127.0.0.1
P_MYSQL=13306 P_EPMD=14369 P_AMQP=15670 P_DIST=15671 P_KEYSTONE=15000 P_PLACEMENT=18778
P_GLANCE=19292 P_NEUTRON=19696 P_NOVA=18774
declare -A P_SSH=([ctl1]=22201 [ctl2]=22202 [cmp1]=22203 [cmp2]=22204)
declare -A P_NOVA_API=([ctl1]=18781 [ctl2]=18782)

die() { echo "lab: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# wait_for SECONDS WHAT CMD...: poll CMD every 0.3 s until it succeeds or time runs out
wait_for() {
  local t=$1 what=$2; shift 2; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { echo "lab: timed out after ${t}s waiting for $what" >&2; return 1; }
    sleep 0.3
  done
}
mysql_root() { mariadb --socket="$LAB/run/mysqld.sock" -uroot "$@"; }
# the Nova databases' schema versions (alembic heads of nova_api, nova, nova_cell0), one line
nova_db_versions() {
  mysql_root -N -e "SELECT version_num FROM nova_api.alembic_version; SELECT version_num FROM nova.alembic_version;
    SELECT version_num FROM nova_cell0.alembic_version" | paste -sd' '
}
