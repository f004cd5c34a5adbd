#!/usr/bin/env bash
# A Citus cluster for development and tests on one machine: a coordinator and two workers on
# loopback, configured as docs/citus.md says. Nothing is downloaded (CI has no network): you
# supply Citus's source, a tree or a tarball (e.g. `git archive v13.2.2` of citusdata/citus;
# Citus 13.x is the line that supports PostgreSQL 15).
#
#   scripts/citus-dev.sh build SRC        build and install Citus into the installed PostgreSQL
#                                         (needs postgresql-server-dev-NN, libzstd-dev, liblz4-dev, libkrb5-dev, libssl-dev)
#   scripts/citus-dev.sh start [DIR]      initialise (first time) and start the three nodes under
#                                         DIR (default /tmp/rowguard-citus), ports 9700-9702
#                                         (CITUS_DEV_PORT=N: ports N to N+2, for a second cluster)
#   scripts/citus-dev.sh stop [DIR]       stop them (data kept; `rm -rf DIR` to start afresh)
#   scripts/citus-dev.sh url              the superuser URL of the coordinator, for
#                                         ROWGUARD_TEST_CITUS_URL (tests) or migrations
#
# Then: ROWGUARD_TEST_CITUS_URL=$(scripts/citus-dev.sh url) cargo test
# As root the servers run as the `postgres` OS user (initdb refuses root). Authentication is
# `trust` on 127.0.0.1 only: a development cluster, never one to expose.
set -euo pipefail

base=${CITUS_DEV_PORT:-9700}
PORTS=("$base" $((base + 1)) $((base + 2)))
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "${pg_bin:-}" ] || pg_bin=$(dirname "$(command -v initdb)")
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(runuser -u postgres --)
fi
psql_at() { "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres "${@:2}"; }

build() {
  local src=${1:?"usage: $0 build SRC (a Citus source tree or tarball)"}
  local work
  if [ -f "$src" ]; then
    work=$(mktemp -d /tmp/citus-src.XXXXXX)
    tar -xf "$src" -C "$work"
    src=$(find "$work" -maxdepth 2 -name configure -printf '%h\n' | head -1)
    [ -n "$src" ] || { echo "no configure script in the tarball" >&2; exit 1; }
  fi
  [ -x "$src/configure" ] || { echo "$src is not a Citus source tree (no configure)" >&2; exit 1; }
  [ -f "$pg_bin/pg_config" ] || {
    echo "no $pg_bin/pg_config: install PostgreSQL's server headers (apt-get install postgresql-server-dev-$(basename "$(dirname "$pg_bin")"))" >&2
    exit 1
  }
  # Without the optional libcurl (anonymous statistics). Citus's columnar code includes zstd.h
  # and lz4.h whatever configure is told, so their headers are needed (libzstd-dev, liblz4-dev).
  (cd "$src" && PG_CONFIG="$pg_bin/pg_config" ./configure --without-libcurl >/dev/null \
    && make -j"$(nproc)" -s && make install -s)
  echo "citus installed into $("$pg_bin/pg_config" --pkglibdir)"
}

start() {
  local dir=${1:-/tmp/rowguard-citus}
  mkdir -p "$dir"
  chmod 755 "$dir"
  [ ${#as_pg[@]} -eq 0 ] || chown postgres "$dir"
  local fresh=()
  for port in "${PORTS[@]}"; do
    local data="$dir/node-$port"
    if [ ! -d "$data" ]; then
      "${as_pg[@]}" "$pg_bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
      cat >>"$data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'citus'
# The tenant is set with SET LOCAL; Citus forwards it to the workers only with this.
citus.propagate_set_commands = 'local'
# Moving and splitting shards online (rowguard tenants isolate) uses logical replication.
wal_level = logical
max_connections = 300
# Citus runs a maintenance worker per database: the tests make one database per test.
max_worker_processes = 128
max_prepared_transactions = 300
fsync = off
CONF
      fresh+=("$port")
    fi
    if ! "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null
    fi
  done
  if [ ${#fresh[@]} -gt 0 ]; then
    for port in "${PORTS[@]}"; do psql_at "$port" -d postgres -c "CREATE EXTENSION IF NOT EXISTS citus"; done
    psql_at "$base" -d postgres -c "SELECT citus_set_coordinator_host('127.0.0.1', $base)" >/dev/null
    for port in "${PORTS[@]:1}"; do
      psql_at "$base" -d postgres -c "SELECT citus_add_node('127.0.0.1', $port)" >/dev/null
    done
  fi
  echo "citus: coordinator 127.0.0.1:$base, workers $((base + 1)) and $((base + 2)) (data under $dir)"
  psql_at "$base" -d postgres -At -c "SELECT 'nodes: ' || string_agg(nodename || ':' || nodeport, ', ' ORDER BY nodeport) FROM pg_dist_node"
}

stop() {
  local dir=${1:-/tmp/rowguard-citus}
  for port in "${PORTS[@]}"; do
    [ -d "$dir/node-$port" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/node-$port" -m fast stop >/dev/null 2>&1 || true
  done
  echo "citus: stopped"
}

case "${1:-}" in
  build) build "${2:-}" ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  url) echo "postgres://postgres@127.0.0.1:$base/postgres" ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
