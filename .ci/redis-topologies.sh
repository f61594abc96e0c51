#!/usr/bin/env bash
# Real Redis topologies for the tests under test/redis/, from the Debian redis-server binary:
#   .ci/redis-topologies.sh start   a Sentinel group: master 6390, replica 6391, sentinels 26390-26392
#                                   (quorum 2, master name "sms-test"), and waits until it is ready
#   .ci/redis-topologies.sh stop    stops all of them and removes their files
# Nothing is saved to disk (--save '' --appendonly no); everything lives under $TOPOLOGY_DIR.
set -euo pipefail

DIR=${TOPOLOGY_DIR:-/tmp/sms-redis-topologies}
NAME=sms-test
DATA_PORTS=(6390 6391)
SENTINEL_PORTS=(26390 26391 26392)

ping() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

wait_until() {
  local what=$1
  shift
  for _ in $(seq 1 100); do "$@" && return 0; sleep 0.1; done
  echo "redis-topologies: timed out waiting for $what" >&2
  exit 1
}

start_server() {
  local port=$1
  shift
  mkdir -p "$DIR/$port"
  # No diskless-sync delay: a demoted master resyncs from the new one at once, not 5 s later.
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --repl-diskless-sync-delay 0 \
    --dir "$DIR/$port" --pidfile "$DIR/$port/redis.pid" --logfile "$DIR/$port/redis.log" "$@"
}

start_sentinel() {
  local port=$1
  mkdir -p "$DIR/$port"
  # A sentinel rewrites its config file as it learns the topology: each gets a fresh one.
  cat >"$DIR/$port/sentinel.conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
dir $DIR/$port
pidfile $DIR/$port/sentinel.pid
logfile $DIR/$port/sentinel.log
sentinel monitor $NAME 127.0.0.1 ${DATA_PORTS[0]} 2
sentinel down-after-milliseconds $NAME 1000
sentinel failover-timeout $NAME 3000
CONF
  redis-server "$DIR/$port/sentinel.conf" --sentinel
}

sentinels_ready() {
  for port in "${SENTINEL_PORTS[@]}"; do
    redis-cli -p "$port" SENTINEL get-master-addr-by-name "$NAME" 2>/dev/null | grep -q "${DATA_PORTS[0]}" || return 1
    # Each sentinel must know the replica and the two other sentinels, or it cannot vote for a failover.
    [ "$(redis-cli -p "$port" SENTINEL replicas "$NAME" 2>/dev/null | grep -c '^ip$')" -ge 1 ] || return 1
    [ "$(redis-cli -p "$port" SENTINEL sentinels "$NAME" 2>/dev/null | grep -c '^ip$')" -ge 2 ] || return 1
  done
}

replica_connected() { redis-cli -p "${DATA_PORTS[1]}" info replication | grep -q 'master_link_status:up'; }

stop() {
  for port in "${SENTINEL_PORTS[@]}" "${DATA_PORTS[@]}"; do
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  for port in "${SENTINEL_PORTS[@]}" "${DATA_PORTS[@]}"; do
    for pidfile in "$DIR/$port"/*.pid; do
      [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
  done
  rm -rf "$DIR"
}

start() {
  stop
  start_server "${DATA_PORTS[0]}"
  wait_until "the master" ping "${DATA_PORTS[0]}"
  start_server "${DATA_PORTS[1]}" --replicaof 127.0.0.1 "${DATA_PORTS[0]}"
  wait_until "the replica to connect" replica_connected
  for port in "${SENTINEL_PORTS[@]}"; do start_sentinel "$port"; done
  wait_until "the sentinels to know the group" sentinels_ready
  echo "redis-topologies: sentinel group $NAME up (master ${DATA_PORTS[0]}, replica ${DATA_PORTS[1]}, sentinels ${SENTINEL_PORTS[*]})"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
