#!/usr/bin/env bash
# Real PostgreSQL clients against a running lakegate: psql, psycopg 3, psycopg2, asyncpg,
# pgjdbc and node-postgres; and open-table interop with DuckDB, pyiceberg and deltalake.
# Starts the built binary on an ephemeral port with a temp warehouse.
# Usage: tests/clients/run.sh PATH_TO_LAKEGATE_BINARY
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:?usage: run.sh path/to/lakegate}"
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT

export LAKEGATE_PASSWORD=client-test-pw
# start_lakegate NAME [VAR=value ...]: a server on an ephemeral port with its own warehouse
# under $work/NAME; sets $port.
start_lakegate() {
  local name="$1"; shift
  mkdir -p "$work/$name"
  env "$@" "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/$name/wh" \
    >"$work/$name/out" 2>"$work/$name/err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q "listening on" "$work/$name/out" 2>/dev/null && break
    sleep 0.1
  done
  port="$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/$name/out")"
  if [ -z "$port" ]; then
    echo "server $name did not start:"; cat "$work/$name/err"; exit 1
  fi
}
start_lakegate main LAKEGATE__DEMO__CUSTOMERS=200 LAKEGATE__DEMO__ORDERS=800
export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=lakegate PGPASSWORD="$LAKEGATE_PASSWORD" PGDATABASE=lakegate

passed=0; failed=0
check() { # name, command...
  local name="$1"; shift
  if out="$("$@" 2>&1)"; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; echo "$out" | sed 's/^/     /'
  fi
}

psql_check() {
  local got
  got="$(psql -X -v ON_ERROR_STOP=1 -qAt -c "CREATE TABLE psql_t (id BIGINT, name TEXT)" \
    -c "INSERT INTO psql_t VALUES (1, 'one'), (2, 'two')" -c "SELECT name FROM psql_t ORDER BY id" \
    -c "SELECT count(*) FROM demo.customers")" || return 1
  [ "$got" = "$(printf 'one\ntwo\n200')" ] || { echo "unexpected: $got"; return 1; }
}

# psql's catalog commands and \copy both ways (they read pg_catalog, and COPY ... STDIN/STDOUT).
psql_catalog_check() {
  local got
  got="$(psql -X -v ON_ERROR_STOP=1 -qAt -c '\dn' -c '\dt public.psql_t' \
    -c "\\copy psql_t to '$work/psql_t.csv' csv" -c "\\copy psql_t from '$work/psql_t.csv' csv" \
    -c "SELECT count(*) FROM psql_t")" || return 1
  echo "$got" | grep -q '^demo|' || { echo "no demo schema in \\dn: $got"; return 1; }
  echo "$got" | grep -q '^public|psql_t|table|' || { echo "no psql_t in \\dt: $got"; return 1; }
  [ "$(echo "$got" | tail -1)" = "4" ] || { echo "copy round trip: $got"; return 1; }
}
check "psql" psql_check
check "psql: \\dn, \\dt, \\copy" psql_catalog_check
check "python: psycopg, psycopg2, asyncpg" python3 "$here/python_clients.py"
check "interop: duckdb, pyiceberg, deltalake" python3 "$here/interop.py" "$work/main/wh"
if command -v javac >/dev/null 2>&1 && [ -f /usr/share/java/postgresql.jar ]; then
  check "pgjdbc" bash -c "cd '$work' && javac -d . '$here/java/Smoke.java' && java -cp /usr/share/java/postgresql.jar:. Smoke"
else
  failed=$((failed + 1)); echo "FAIL pgjdbc: javac or /usr/share/java/postgresql.jar missing"
fi
if [ -d "$here/node/node_modules/pg" ]; then
  check "node-postgres" node "$here/node/smoke.js"
else
  failed=$((failed + 1)); echo "FAIL node-postgres: run npm ci in tests/clients/node"
fi

# The catalog matrix: the same driver checks against a real PostgreSQL 15 (the oracle, started
# here on a temp cluster as the postgres OS user when run as root, its superuser and database
# named like Lakegate's) and against a lakegate without demo data, so both hold the same tables.
main_port="$port"
start_lakegate matrix LAKEGATE__DEMO__ENABLED=false
matrix_port="$port"
port="$main_port"
# start_oracle NAME: a PostgreSQL 15 on a temp cluster (as the postgres OS user when run as
# root, its superuser and database named like Lakegate's); sets $oport and $pgdir.
start_oracle() {
  local pgbin=/usr/lib/postgresql/15/bin runas=()
  pgdir="$work/$1"
  [ -x "$pgbin/postgres" ] || { echo "PostgreSQL 15 server missing (scripts/install-test-deps)"; return 1; }
  mkdir -p "$pgdir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$pgdir" "$work"; runas=(runuser -u postgres --); fi
  "${runas[@]}" "$pgbin/initdb" -D "$pgdir/data" -U "$PGUSER" --auth=trust -E UTF8 >/dev/null || return 1
  oport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "${runas[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -w -l "$pgdir/log" \
    -o "-p $oport -k $pgdir -c listen_addresses=127.0.0.1 -c timezone=UTC -c autovacuum=off" start >/dev/null || { cat "$pgdir/log"; return 1; }
  psql -X -q "postgresql://$PGUSER@127.0.0.1:$oport/postgres" -c "CREATE DATABASE $PGDATABASE"
}
stop_oracle() {
  local runas=()
  [ "$(id -u)" = 0 ] && runas=(runuser -u postgres --)
  "${runas[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$pgdir/data" -m immediate stop >/dev/null
}
catalog_matrix() {
  start_oracle oracle || return 1
  python3 "$here/catalog_matrix.py" "postgresql://$PGUSER@127.0.0.1:$oport/$PGDATABASE" \
    "postgresql://$PGUSER:$PGPASSWORD@127.0.0.1:$matrix_port/$PGDATABASE"
  local rc=$?
  stop_oracle
  return $rc
}
check "catalog matrix vs PostgreSQL 15: SQLAlchemy, pandas, asyncpg, psycopg, psqlODBC, pgjdbc, node-postgres, psql, tool replays" catalog_matrix

# dbt (tests/dbt/run.py): the same project built with dbt-postgres on PostgreSQL 15 and on a
# lakegate of its own, with 1, 4 and 8 threads; every seed, model and snapshot compared, and
# pandas to_sql.
start_lakegate dbt LAKEGATE__DEMO__ENABLED=false
dbt_port="$port"
# The governed run: dbt_gov builds analytics and snapshots, and reads the sources (schema
# shop) through a row filter.
mkdir -p "$work/dbt_policies"
cat >"$work/dbt_policies/dbt.toml" <<'EOF'
[[grant]]
to = "dbt_gov"
on = "analytics.*"
actions = ["read", "write", "admin"]

[[grant]]
to = "dbt_gov"
on = "snapshots.*"
actions = ["read", "write", "admin"]

[[grant]]
to = "dbt_gov"
on = "shop.*"
actions = ["read"]

[[row_filter]]
name = "no_returns"
table = "shop.raw_orders"
to = "dbt_gov"
filter = "status <> 'returned'"
EOF
start_lakegate dbt_gov LAKEGATE__DEMO__ENABLED=false LAKEGATE__POLICY__DIR="$work/dbt_policies" \
  'LAKEGATE__AUTH__USERS=[{name="dbt_gov",password_env="DBT_GOV_PASSWORD"}]' DBT_GOV_PASSWORD=dbt-gov-pw
gov_port="$port"
port="$main_port"
dbt_check() {
  local dbt="${LAKEGATE_DBT_VENV:-$HOME/.cache/lakegate/dbt-venv}/bin/dbt"
  [ -x "$dbt" ] || { echo "dbt missing (scripts/install-test-deps)"; return 1; }
  start_oracle dbt-oracle || return 1
  python3 "$here/../dbt/run.py" "$dbt" "postgresql://$PGUSER@127.0.0.1:$oport/$PGDATABASE" \
    "postgresql://$PGUSER:$PGPASSWORD@127.0.0.1:$dbt_port/$PGDATABASE" \
    "postgresql://$PGUSER:$PGPASSWORD@127.0.0.1:$gov_port/$PGDATABASE" \
    "postgresql://dbt_gov:dbt-gov-pw@127.0.0.1:$gov_port/$PGDATABASE"
  local rc=$?
  stop_oracle
  return $rc
}
check "dbt: seed, run, test, snapshot, incremental, freshness, docs, also as a governed user; pandas to_sql (vs PostgreSQL 15)" dbt_check

# A hostile client: malformed, truncated, oversized and random protocol messages before and
# after authentication (tests/clients/protocol_fuzz.py), against a server of its own with a
# memory limit; it must keep serving fresh connections and stay under the limit plus overhead.
start_lakegate fuzz LAKEGATE__DEMO__ENABLED=false LAKEGATE__ENGINE__MEMORY_LIMIT=512MiB
fuzz_pid="${pids[-1]}"
# CDC (tests/clients/cdc.py): CREATE SUBSCRIPTION from a PostgreSQL 15 of its own (wal_level =
# logical), every row change, schema changes, SIGKILL of Lakegate and a restart of the source
# mid-stream; each target table compared row for row with its source.
check "CDC: subscriptions from PostgreSQL 15, mirror and changelog, exactly once under kill -9 and restarts" \
  python3 "$here/cdc.py" "$bin"
check "foreign tables on PostgreSQL 15: postgres_fdw statements, pushdown in EXPLAIN, full and incremental loads, governance" \
  python3 "$here/fdw.py" "$bin"
check "protocol fuzzer (${FUZZ_SECONDS:-60} s of random messages)" python3 "$here/protocol_fuzz.py" \
  --port "$port" --user lakegate --password "$LAKEGATE_PASSWORD" --seconds "${FUZZ_SECONDS:-60}" \
  --seed "${FUZZ_SEED:-$RANDOM}" --pid "$fuzz_pid" --max-rss-mib 1536

echo "clients: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
