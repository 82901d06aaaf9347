# Shared by scripts/run and scripts/test: make sure Redis and PostgreSQL are reachable, and create the database.
#
# Uses the servers at REDIS_URL / DATABASE_URL when they answer; otherwise starts local ones from the installed
# binaries in a scratch directory (.run/), or says exactly what to install. Idempotent: running it again with
# everything up does nothing.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRATCH="$ROOT/.run"

export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/ingest}

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# host and port of a URL like scheme://[user[:pass]@]host[:port][/db]
url_host() { local u=${1#*://}; u=${u##*@}; u=${u%%/*}; u=${u%%\?*}; echo "${u%%:*}"; }
url_port() { local u=${1#*://}; u=${u##*@}; u=${u%%/*}; u=${u%%\?*}; [[ $u == *:* ]] && echo "${u##*:}" || echo "$2"; }
url_db() { local u=${1#*://}; [[ $u == */* ]] || { echo postgres; return; }; u=${u#*/}; u=${u%%\?*}; echo "${u:-postgres}"; }
is_loopback() { [[ $1 == 127.* || $1 == localhost || $1 == ::1 ]]; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port what
  for _ in $(seq 1 100); do port_open "$1" "$2" && return 0; sleep 0.1; done
  die "$3 did not come up on $1:$2 within 10 s"
}

# Installs Debian packages when we may (root with apt-get), otherwise tells the user what to install.
need_packages() { # reason packages...
  local reason=$1; shift
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing $* ($reason)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null ||
      die "apt-get install $* failed"
  else
    die "$reason: install $* (Debian/Ubuntu: sudo apt-get install $*; macOS: brew install ${*/postgresql/postgresql@15})"
  fi
}

ensure_redis() {
  local host port
  host=$(url_host "$REDIS_URL"); port=$(url_port "$REDIS_URL" 6379)
  port_open "$host" "$port" && return 0
  is_loopback "$host" || die "Redis at $REDIS_URL is not reachable (and it is not local, so it can't be started here)"
  command -v redis-server >/dev/null || need_packages "Redis is not running and redis-server is not installed" redis-server
  mkdir -p "$SCRATCH/redis"
  say "starting a local Redis on $host:$port (data and log in $SCRATCH/redis)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$SCRATCH/redis" \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --save "" --logfile "$SCRATCH/redis/redis.log" \
    --pidfile "$SCRATCH/redis/redis.pid" >/dev/null
  wait_port 127.0.0.1 "$port" Redis
}

pg_bin() { # the newest installed PostgreSQL's binary directory
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) /usr/local/bin /usr/bin; do
    [[ -x $dir/initdb && -x $dir/pg_ctl ]] && { echo "$dir"; return 0; }
  done
  return 1
}

ensure_postgres() {
  local host port bin
  host=$(url_host "$DATABASE_URL"); port=$(url_port "$DATABASE_URL" 5432)
  if ! port_open "$host" "$port"; then
    is_loopback "$host" || die "PostgreSQL at $DATABASE_URL is not reachable (and it is not local, so it can't be started here)"
    # A packaged cluster that merely stopped: start it the way the package does.
    if command -v pg_ctlcluster >/dev/null && [[ -n $(ls /etc/postgresql 2>/dev/null) && $(id -u) == 0 ]]; then
      say "starting the installed PostgreSQL cluster"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
    fi
    if ! port_open "$host" "$port"; then
      bin=$(pg_bin) || { need_packages "PostgreSQL is not running and not installed" postgresql; bin=$(pg_bin); } ||
        die "PostgreSQL installed but initdb not found"
      local data="$SCRATCH/postgres" as=()
      # initdb and postgres refuse to run as root: run them as the postgres user.
      [[ $(id -u) == 0 ]] && as=(runuser -u postgres --)
      mkdir -p "$data"; [[ $(id -u) == 0 ]] && chown postgres "$data"
      if [[ ! -f $data/PG_VERSION ]]; then
        say "creating a local PostgreSQL cluster in $data"
        "${as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
      fi
      say "starting a local PostgreSQL on 127.0.0.1:$port (data in $data)"
      "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $data" start >/dev/null
    fi
    wait_port "$host" "$port" PostgreSQL
  fi
  ensure_database
}

# Creates DATABASE_URL's database if it does not exist (the services apply the schema themselves).
ensure_database() {
  local db admin
  db=$(url_db "$DATABASE_URL")
  admin="${DATABASE_URL%/*}/postgres"
  command -v psql >/dev/null || need_packages "psql is needed to create the database" postgresql-client
  if [[ -z $(psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" 2>/dev/null) ]]; then
    say "creating database $db"
    psql "$admin" -qc "CREATE DATABASE \"$db\"" >/dev/null || die "cannot create database $db via $admin"
  fi
}

# ---------------------------------------------------------------------------------------------- Redis Cluster
# A 6-node Redis Cluster on loopback (3 masters + 3 replicas) for the cluster tests: ports CLUSTER_BASE_PORT ..
# CLUSTER_BASE_PORT+5, each node in $SCRATCH/cluster/<port>, nothing kept on disk but nodes.conf. Clusters on
# different base ports live side by side. CLUSTER_REPLICAS=0 makes it 3 masters alone (3 ports), to measure
# what the replicas cost.

CLUSTER_BASE_PORT=${CLUSTER_BASE_PORT:-7100}
CLUSTER_REPLICAS=${CLUSTER_REPLICAS:-1}
CLUSTER_MASTERS=3
CLUSTER_SIZE=$((CLUSTER_MASTERS * (1 + CLUSTER_REPLICAS)))
CLUSTER_DIR="$SCRATCH/cluster"

cluster_ports() { seq "$CLUSTER_BASE_PORT" $((CLUSTER_BASE_PORT + CLUSTER_SIZE - 1)); }

# Points the cluster functions below at the cluster on base port $1 with $2 replicas per master.
cluster_layout() {
  CLUSTER_BASE_PORT=$1
  CLUSTER_REPLICAS=$2
  CLUSTER_SIZE=$((CLUSTER_MASTERS * (1 + CLUSTER_REPLICAS)))
}

# The seeds, as REDIS_CLUSTER_NODES takes them: 127.0.0.1:P1,...,127.0.0.1:P6
cluster_seeds() { cluster_ports | sed 's/^/127.0.0.1:/' | paste -sd, -; }

cluster_cli() { # port args...: one command to one node, bounded
  local port=$1; shift
  timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}

# A field of CLUSTER INFO (the reply has CRLF line ends).
cluster_info_field() { cluster_cli "$1" CLUSTER INFO | tr -d '\r' | sed -n "s/^$2://p"; }

# Healthy: every node answers, sees all the nodes, all 16384 slots served, cluster_state:ok, and 3 masters.
cluster_healthy() {
  local port masters
  for port in $(cluster_ports); do
    [[ $(cluster_info_field "$port" cluster_state) == ok ]] || return 1
    [[ $(cluster_info_field "$port" cluster_known_nodes) == "$CLUSTER_SIZE" ]] || return 1
    [[ $(cluster_info_field "$port" cluster_slots_ok) == 16384 ]] || return 1
  done
  masters=$(cluster_cli "$CLUSTER_BASE_PORT" CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/' | wc -l)
  [[ $masters == "$CLUSTER_MASTERS" ]]
}

# Every node answers and the first one knows all of them (the cluster was created).
cluster_all_up() {
  local port
  for port in $(cluster_ports); do port_open 127.0.0.1 "$port" || return 1; done
  [[ $(cluster_info_field "$CLUSTER_BASE_PORT" cluster_known_nodes) == "$CLUSTER_SIZE" ]]
}

wait_cluster_healthy() { # seconds
  local deadline=$((SECONDS + $1))
  until cluster_healthy; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# The pid in a node's pidfile, if that process is alive and is a redis-server (so we only ever stop our own).
cluster_node_pid() {
  local pidfile="$CLUSTER_DIR/$1/redis.pid" pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null || ps -o comm= -p "$pid") == redis-server* ]] &&
    echo "$pid"
}

# Stops the nodes this scratch directory started on the cluster's ports (by their pidfiles) and removes their
# directories (a cluster on other base ports keeps its own).
stop_redis_cluster() {
  local port pid pids=()
  for port in $(cluster_ports); do
    if pid=$(cluster_node_pid "$port"); then pids+=("$pid"); fi
  done
  if ((${#pids[@]})); then
    say "stopping the Redis Cluster nodes (pids ${pids[*]})"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
      local alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  for port in $(cluster_ports); do rm -rf "${CLUSTER_DIR:?}/$port"; done
  rm -f "$CLUSTER_DIR/create-$CLUSTER_BASE_PORT.log"
  rmdir "$CLUSTER_DIR" 2>/dev/null || true
}

# Makes sure a healthy cluster answers on the cluster ports (reused if one does, else started from scratch),
# and sets REDIS_CLUSTER_SEEDS. Idempotent.
ensure_redis_cluster() {
  command -v redis-server >/dev/null || need_packages "the Redis Cluster needs redis-server" redis-server
  command -v redis-cli >/dev/null || need_packages "the Redis Cluster needs redis-cli" redis-tools
  REDIS_CLUSTER_SEEDS=$(cluster_seeds)
  # Every node up and the cluster formed: give a failover or slot move in progress a moment to settle.
  if cluster_healthy || { cluster_all_up && wait_cluster_healthy 10; }; then
    say "Redis Cluster healthy on $REDIS_CLUSTER_SEEDS (reused)"
    return 0
  fi
  # Not healthy: a port answering must be one of our own nodes (we restart those), never someone else's server.
  local port ports=()
  for port in $(cluster_ports); do
    ports+=("127.0.0.1:$port")
    if port_open 127.0.0.1 "$port" && ! cluster_node_pid "$port" >/dev/null; then
      die "port $port is in use by a process this script did not start, and the cluster there is not healthy: stop it, or set CLUSTER_BASE_PORT to a free range of $CLUSTER_SIZE ports"
    fi
  done
  stop_redis_cluster
  say "starting a $CLUSTER_SIZE-node Redis Cluster on 127.0.0.1:$CLUSTER_BASE_PORT-$((CLUSTER_BASE_PORT + CLUSTER_SIZE - 1)) (in $CLUSTER_DIR)"
  # repl-diskless-sync-delay 0: a replica that needs a full resync (after a failover) gets it at once, not after
  # the default 5 s, which is as long as a manual failover waits for it.
  for port in $(cluster_ports); do
    local dir="$CLUSTER_DIR/$port"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
      --cluster-node-timeout 2000 --save "" --appendonly no --dir "$dir" --repl-diskless-sync-delay 0 \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null ||
      die "redis-server on port $port did not start (see $dir/redis.log)"
  done
  for port in $(cluster_ports); do wait_port 127.0.0.1 "$port" "Redis Cluster node"; done
  # The nodes are not yet a cluster until this assigns the slots and pairs each master with a replica.
  timeout 60 redis-cli --cluster create "${ports[@]}" --cluster-replicas "$CLUSTER_REPLICAS" --cluster-yes >"$CLUSTER_DIR/create-$CLUSTER_BASE_PORT.log" 2>&1 ||
    die "redis-cli --cluster create failed (see $CLUSTER_DIR/create-$CLUSTER_BASE_PORT.log)"
  wait_cluster_healthy 30 || die "the Redis Cluster did not reach cluster_state:ok on every node within 30 s"
  say "Redis Cluster ready on $REDIS_CLUSTER_SEEDS"
}
