#!/usr/bin/env bash
# Real Redis topologies for the tests under test/redis/, from the Debian redis-server binary, all on
# 127.0.0.1:
#   Sentinel group  master 6390, replica 6391, sentinels 26390-26392 (quorum 2, master name "sms-test")
#   Cluster         masters 7000 (slots 0-5460), 7001 (5461-10922), 7002 (10923-16383), with the
#                   replicas 7003 (of 7000), 7004 (of 7001), 7005 (of 7002); cluster bus on 17000-17005
#
#   .ci/redis-topologies.sh start            both topologies, and waits until they are ready
#   .ci/redis-topologies.sh stop             stops all of them and removes their files
#   .ci/redis-topologies.sh start-sentinel   (re)starts the Sentinel group alone
#   .ci/redis-topologies.sh stop-sentinel
#   .ci/redis-topologies.sh start-cluster    (re)starts the Cluster alone
#   .ci/redis-topologies.sh stop-cluster
#   .ci/redis-topologies.sh restart-node P   starts the data node on port P again after a test killed it,
#                                            with its files: it rejoins as a replica of whoever took over
# Every start stops what it is about to start first (a previous run or a test that killed nodes may
# have left processes or files behind), so it can be run again at any time.
# Nothing is saved to disk (--save '' --appendonly no); everything lives under $TOPOLOGY_DIR.
set -euo pipefail

DIR=${TOPOLOGY_DIR:-/tmp/sms-redis-topologies}
NAME=sms-test
DATA_PORTS=(6390 6391)
SENTINEL_PORTS=(26390 26391 26392)
# Replica i of CLUSTER_REPLICAS follows master i of CLUSTER_MASTERS.
CLUSTER_MASTERS=(7000 7001 7002)
CLUSTER_REPLICAS=(7003 7004 7005)
CLUSTER_PORTS=("${CLUSTER_MASTERS[@]}" "${CLUSTER_REPLICAS[@]}")
# What redis-cli gives 3 masters listed in this order: even thirds of the 16384 slots.
CLUSTER_SLOTS=(0-5460 5461-10922 10923-16383)

ping() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

# Anything accepting connections on the port, even a process too stuck to answer PING.
listening() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
closed() { ! listening "$1"; }

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

# Stops whatever serves these ports and removes their directories. A test may have paused a node
# (SIGSTOP) or removed its files, so: SHUTDOWN with a time limit, then the pid file's process (woken
# first, or it would never act on SIGTERM), then the redis-server still listening on the port.
stop_ports() {
  local port pidfile pid
  for port in "$@"; do
    timeout 2 redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  for port in "$@"; do
    for pidfile in "$DIR/$port"/*.pid; do
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill -CONT "$pid" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
    done
    for pid in $(ss -Htlnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
      [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ] || continue
      kill -CONT "$pid" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
    done
  done
  # A node still exiting could write its files (a cluster node rewrites nodes.conf) into the next run's.
  for port in "$@"; do wait_until "port $port to close" closed "$port"; done
  for port in "$@"; do rm -rf "${DIR:?}/$port"; done
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

stop_sentinel_group() { stop_ports "${SENTINEL_PORTS[@]}" "${DATA_PORTS[@]}"; }

start_sentinel_group() {
  stop_sentinel_group
  start_server "${DATA_PORTS[0]}"
  wait_until "the master" ping "${DATA_PORTS[0]}"
  start_server "${DATA_PORTS[1]}" --replicaof 127.0.0.1 "${DATA_PORTS[0]}"
  wait_until "the replica to connect" replica_connected
  for port in "${SENTINEL_PORTS[@]}"; do start_sentinel "$port"; done
  wait_until "the sentinels to know the group" sentinels_ready
  echo "redis-topologies: sentinel group $NAME up (master ${DATA_PORTS[0]}, replica ${DATA_PORTS[1]}, sentinels ${SENTINEL_PORTS[*]})"
}

# The slots a master serves, as `redis-cli cluster nodes` on 7000 lists them ("0-5460").
cluster_slots_of() {
  redis-cli -p "${CLUSTER_MASTERS[0]}" cluster nodes |
    awk -v addr="127.0.0.1:$1@" 'index($2, addr) == 1 && $3 ~ /master/ { $1 = $2 = $3 = $4 = $5 = $6 = $7 = $8 = ""; print }' |
    xargs
}

replica_master_port() { redis-cli -p "$1" info replication | tr -d '\r' | sed -n 's/^master_port://p'; }
has_master() { [ -n "$(replica_master_port "$1")" ]; }

# Ready: every node sees all six and all slots served, and every replica follows its own master
# (in its own view and in 7000's, which gossip updates a moment later) with the link up.
cluster_ready() {
  local i port master_id
  for port in "${CLUSTER_PORTS[@]}"; do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || return 1
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q "cluster_known_nodes:${#CLUSTER_PORTS[@]}" || return 1
  done
  for i in "${!CLUSTER_REPLICAS[@]}"; do
    port=${CLUSTER_REPLICAS[$i]}
    [ "$(replica_master_port "$port")" = "${CLUSTER_MASTERS[$i]}" ] || return 1
    redis-cli -p "$port" info replication | grep -q 'master_link_status:up' || return 1
    master_id=$(redis-cli -p "${CLUSTER_MASTERS[$i]}" cluster myid)
    redis-cli -p "${CLUSTER_MASTERS[0]}" cluster nodes |
      awk -v addr="127.0.0.1:$port@" -v id="$master_id" 'index($2, addr) == 1 && $3 ~ /slave/ && $4 == id { found = 1 } END { exit !found }' ||
      return 1
  done
}

stop_cluster() {
  stop_ports "${CLUSTER_PORTS[@]}"
  rm -f "$DIR/cluster-create.log"
}

start_cluster() {
  local i port master_id args=()
  stop_cluster
  for port in "${CLUSTER_PORTS[@]}"; do
    start_server "$port" --cluster-enabled yes --cluster-config-file "$DIR/$port/nodes.conf" --cluster-node-timeout 1000
    args+=("127.0.0.1:$port")
  done
  for port in "${CLUSTER_PORTS[@]}"; do wait_until "cluster node $port" ping "$port"; done
  # redis-cli makes masters of the first three, in order, but does not pair the replicas with them
  # in order when all share one host (7.0 puts 7004 under 7000, and its "anti-affinity" step may
  # shuffle them): they are moved below. Its chatter only matters when it fails.
  if ! redis-cli --cluster create "${args[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/cluster-create.log" 2>&1; then
    cat "$DIR/cluster-create.log" >&2
    echo "redis-topologies: redis-cli --cluster create failed" >&2
    exit 1
  fi
  for i in "${!CLUSTER_MASTERS[@]}"; do
    port=${CLUSTER_MASTERS[$i]}
    if [ "$(cluster_slots_of "$port")" != "${CLUSTER_SLOTS[$i]}" ]; then
      redis-cli -p "${CLUSTER_MASTERS[0]}" cluster nodes >&2
      echo "redis-topologies: master $port serves slots '$(cluster_slots_of "$port")', not ${CLUSTER_SLOTS[$i]}" >&2
      exit 1
    fi
  done
  # Move each replica under its own master, so that tests can rely on the layout. All three moves
  # happen well within the 5 s a master must stay orphaned before another replica migrates to it.
  for i in "${!CLUSTER_REPLICAS[@]}"; do
    port=${CLUSTER_REPLICAS[$i]}
    wait_until "replica $port to have a master" has_master "$port"
    if [ "$(replica_master_port "$port")" != "${CLUSTER_MASTERS[$i]}" ]; then
      master_id=$(redis-cli -p "${CLUSTER_MASTERS[$i]}" cluster myid)
      [ "$(redis-cli -p "$port" cluster replicate "$master_id")" = OK ] || {
        echo "redis-topologies: replica $port cannot follow master ${CLUSTER_MASTERS[$i]}" >&2
        exit 1
      }
    fi
  done
  wait_until "the cluster to be ready" cluster_ready
  echo "redis-topologies: cluster up (masters ${CLUSTER_MASTERS[*]} with slots ${CLUSTER_SLOTS[*]}, replicas ${CLUSTER_REPLICAS[*]})"
}

stop() {
  stop_sentinel_group
  stop_cluster
  rm -rf "$DIR"
}

start() {
  stop
  start_sentinel_group
  start_cluster
}

# A killed data node, back with its own files: a cluster node finds its cluster in nodes.conf; the
# sentinels turn a returning old master into a replica of the new one.
restart_node() {
  local port=$1
  if [[ " ${CLUSTER_PORTS[*]} " == *" $port "* ]]; then
    start_server "$port" --cluster-enabled yes --cluster-config-file "$DIR/$port/nodes.conf" --cluster-node-timeout 1000
  elif [[ " ${DATA_PORTS[*]} " == *" $port "* ]]; then
    start_server "$port"
  else
    echo "redis-topologies: $port is not a data node" >&2
    exit 2
  fi
  wait_until "node $port" ping "$port"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  start-sentinel) start_sentinel_group ;;
  stop-sentinel) stop_sentinel_group ;;
  start-cluster) start_cluster ;;
  stop-cluster) stop_cluster ;;
  restart-node) restart_node "${2:?usage: $0 restart-node PORT}" ;;
  *)
    echo "usage: $0 start|stop|start-sentinel|stop-sentinel|start-cluster|stop-cluster|restart-node PORT" >&2
    exit 2
    ;;
esac
