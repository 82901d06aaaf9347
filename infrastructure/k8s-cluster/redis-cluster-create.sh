#!/bin/sh
# Makes the Redis Cluster out of the nodes in REDIS_CLUSTER_NODES (host:port, comma-separated; the services'
# own setting), with CLUSTER_REPLICAS replicas per master (default 1): 6 nodes give 3 masters + 3 replicas.
# Idempotent: nodes that already form a healthy cluster are left alone, so the one-shot service or Job may run
# again. Used by ../docker-compose.cluster.yml and by this directory's Job.
set -eu
NODES=$(echo "${REDIS_CLUSTER_NODES:?REDIS_CLUSTER_NODES is not set}" | tr ',' ' ')
WAIT_SECONDS=${WAIT_SECONDS:-300}

info() { redis-cli -h "${1%:*}" -p "${1##*:}" CLUSTER INFO 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }

# Every node must answer first (containers and pods start in any order).
addrs=
for node in $NODES; do
  waited=0
  until redis-cli -h "${node%:*}" -p "${node##*:}" PING >/dev/null 2>&1; do
    [ "$waited" -lt "$WAIT_SECONDS" ] || { echo "$node did not answer within $WAIT_SECONDS s" >&2; exit 1; }
    sleep 2; waited=$((waited + 2))
  done
  # redis-cli --cluster create takes addresses; clients get the names (the nodes announce them).
  ip=$(getent hosts "${node%:*}" | awk '{ print $1; exit }')
  addrs="$addrs ${ip:-${node%:*}}:${node##*:}"
done

first=${NODES%% *}
if [ "$(info "$first" cluster_known_nodes)" -gt 1 ]; then
  # Formed before: after a restart the nodes find each other again (redis-node.sh); wait for that, bounded.
  waited=0
  until [ "$(info "$first" cluster_state)" = ok ]; do
    [ "$waited" -lt 120 ] || { echo "the nodes know each other but cluster_state is not ok after 120 s" >&2; exit 1; }
    sleep 2; waited=$((waited + 2))
  done
  echo "the Redis Cluster already exists and is healthy"
  exit 0
fi

# shellcheck disable=SC2086 # one argument per node
redis-cli --cluster create $addrs --cluster-replicas "${CLUSTER_REPLICAS:-1}" --cluster-yes
waited=0
for node in $NODES; do
  until [ "$(info "$node" cluster_state)" = ok ]; do
    [ "$waited" -lt 60 ] || { echo "$node: cluster_state not ok 60 s after create" >&2; exit 1; }
    sleep 1; waited=$((waited + 1))
  done
done
echo "Redis Cluster created: $REDIS_CLUSTER_NODES"
