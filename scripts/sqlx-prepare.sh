#!/usr/bin/env bash
# Regenerate .sqlx/: the query descriptions sqlx's `query!` macros check the code against when
# they build offline (always, here: .cargo/config.toml sets SQLX_OFFLINE=true, so a
# DATABASE_URL in the environment never turns a build into a live connection).
#
# Run it after adding or changing a `query!`/`query_as!`/`query_scalar!`, and commit .sqlx/.
# It needs no rowguard binary (one would need .sqlx/ to build): it starts a throwaway
# PostgreSQL, creates the roles bootstrap creates, applies sql/ then policies/ in version
# order with psql, and builds every target against it with the macros online.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "${bin:-}" ] || bin=$(dirname "$(command -v initdb)")
work=$(mktemp -d /tmp/rowguard-sqlx.XXXXXX)
chmod 755 "$work"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$work"
  as_pg=(runuser -u postgres --)
fi
port=$((20000 + RANDOM % 20000))
cleanup() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"${as_pg[@]}" "$bin/initdb" -D "$work/data" -U postgres --auth=trust >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -l "$work/log" -w \
  -o "-p $port -k $work -c listen_addresses='' -c fsync=off" start >/dev/null
psql=("$bin/psql" -h "$work" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1)

"${psql[@]}" -d postgres <<'SQL'
CREATE ROLE rowguard_owner NOLOGIN;
CREATE ROLE rowguard_app LOGIN;
CREATE ROLE rowguard_platform NOLOGIN;
CREATE ROLE rowguard_platform_login LOGIN INHERIT IN ROLE rowguard_platform;
CREATE ROLE rowguard_audit NOLOGIN;
GRANT rowguard_audit TO rowguard_owner;
CREATE ROLE rowguard_jobs NOLOGIN;
GRANT rowguard_jobs TO rowguard_owner;
CREATE DATABASE rowguard OWNER rowguard_owner;
SQL
apply() {
  for file in $(ls "$1"/V*__*.sql | sed -E 's#.*/V([0-9]+)__.*#\1 &#' | sort -n | cut -d' ' -f2); do
    "${psql[@]}" -d rowguard -c 'SET ROLE rowguard_owner' -f "$file" >/dev/null
  done
}
apply sql
apply policies
# refinery's history tables (it creates them itself when it migrates; `/readyz` reads them).
for history in rowguard_schema_history rowguard_policy_history; do
  "${psql[@]}" -d rowguard -c "SET ROLE rowguard_owner" -c "CREATE TABLE $history (
    version int4 PRIMARY KEY, name varchar(255), applied_on varchar(255), checksum varchar(255))" >/dev/null
done

rm -rf "$root/.sqlx"
mkdir -p "$root/.sqlx"
# Touch the sources so every macro expands again (cargo would reuse expansions otherwise).
find src bench/src tests -name '*.rs' -exec touch {} +
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$root/.sqlx" \
  DATABASE_URL="postgres://postgres@localhost/rowguard?host=$work&port=$port" \
  cargo check --workspace --all-targets --quiet
echo "wrote $(ls "$root/.sqlx" | wc -l) query descriptions to .sqlx/"
