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
