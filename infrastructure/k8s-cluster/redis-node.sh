#!/bin/sh
# Runs one Redis Cluster node (redis:7 image). Used by ../docker-compose.cluster.yml and by this directory's
# StatefulSet (through a generated ConfigMap), so both run the same node.
#
# Env:
#   ANNOUNCE_HOSTNAME  this node's stable DNS name, handed to clients (MOVED, CLUSTER SLOTS) instead of its IP,
#                      which changes when the container or pod is replaced
#   PEERS              every node's host:port, comma-separated (REDIS_CLUSTER_NODES of the services)
#   PORT (6379), DATA_DIR (/data), MAXMEMORY (0: no limit; set it below the container's memory limit),
#   BIND (all interfaces)
#
# Durability as the single-Redis setup: AOF fsynced every second. noeviction: at maxmemory, writes fail (the
# ingestor answers 503) instead of Redis silently evicting queued messages.
set -eu
PORT=${PORT:-6379}
DATA_DIR=${DATA_DIR:-/data}
CONF="$DATA_DIR/nodes.conf"

# A node that was part of the cluster before (nodes.conf lists peers) may come back with a new IP, and so may
# its peers: then nobody knows where anybody is. Meeting every peer again by its DNS name fixes that (a node
# already known under another address just gets its address updated). A fresh node waits for
# redis-cluster-create.sh instead: that one needs empty nodes.
if [ -s "$CONF" ] && [ "$(grep -c . "$CONF")" -gt 2 ]; then
  (
    for _ in $(seq 1 60); do
      sleep 2
      state=$(redis-cli -p "$PORT" CLUSTER INFO 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p')
      [ "$state" = ok ] && exit 0
      for peer in $(echo "${PEERS:-}" | tr ',' ' '); do
        ip=$(getent hosts "${peer%:*}" | awk '{ print $1; exit }')
        if [ -n "$ip" ]; then redis-cli -p "$PORT" CLUSTER MEET "$ip" "${peer##*:}" >/dev/null 2>&1 || true; fi
      done
    done
    echo "redis-node.sh: cluster_state not ok 120 s after start" >&2
  ) &
fi

# Names for clients only when there is one (with no hostname, "hostname" endpoints would be "?").
if [ -n "${ANNOUNCE_HOSTNAME:-}" ]; then
  set -- --cluster-announce-hostname "$ANNOUNCE_HOSTNAME" --cluster-preferred-endpoint-type hostname
else
  set --
fi
# protected-mode no: the clients are other containers; keep the nodes on a private network.
set -f # BIND holds patterns like "*": they are for Redis, not for the shell
# shellcheck disable=SC2086 # BIND is a list of addresses, one argument each
exec redis-server --port "$PORT" --bind ${BIND:-* -::*} --protected-mode no --dir "$DATA_DIR" \
  --cluster-enabled yes --cluster-config-file "$CONF" --cluster-node-timeout 5000 "$@" \
  --appendonly yes --appendfsync everysec \
  --maxmemory "${MAXMEMORY:-0}" --maxmemory-policy noeviction
