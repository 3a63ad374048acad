#!/usr/bin/env bash
# Real PostgreSQL clients against a running lakegate: psql, psycopg 3, psycopg2, asyncpg,
# pgjdbc and node-postgres; and open-table interop with DuckDB, pyiceberg and deltalake.
# Starts the built binary on an ephemeral port with a temp warehouse.
# Usage: tests/clients/run.sh PATH_TO_LAKEGATE_BINARY
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:?usage: run.sh path/to/lakegate}"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT

export LAKEGATE_PASSWORD=client-test-pw
LAKEGATE__DEMO__CUSTOMERS=200 LAKEGATE__DEMO__ORDERS=800 \
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/wh" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 200); do
  grep -q "listening on" "$work/out" 2>/dev/null && break
  sleep 0.1
done
port="$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/out")"
if [ -z "$port" ]; then
  echo "server did not start:"; cat "$work/err"; exit 1
fi
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
check "interop: duckdb, pyiceberg, deltalake" python3 "$here/interop.py" "$work/wh"
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
# here on a temp cluster as the postgres user when run as root) and against lakegate.
catalog_matrix() {
  local pgbin=/usr/lib/postgresql/15/bin pgdir="$work/oracle" runas=()
  [ -x "$pgbin/postgres" ] || { echo "PostgreSQL 15 server missing (scripts/install-test-deps)"; return 1; }
  mkdir -p "$pgdir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$pgdir" "$work"; runas=(runuser -u postgres --); fi
  "${runas[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 >/dev/null || return 1
  local oport=$((port + 1))
  "${runas[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -w -l "$pgdir/log" \
    -o "-p $oport -k $pgdir -c listen_addresses=127.0.0.1" start >/dev/null || { cat "$pgdir/log"; return 1; }
  python3 "$here/catalog_matrix.py" "postgresql://postgres@127.0.0.1:$oport/postgres" \
    "postgresql://$PGUSER:$PGPASSWORD@127.0.0.1:$port/$PGDATABASE"
  local rc=$?
  "${runas[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null
  return $rc
}
check "catalog matrix vs PostgreSQL 15: SQLAlchemy, pandas, asyncpg, psycopg, psqlODBC" catalog_matrix

echo "clients: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
