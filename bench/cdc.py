#!/usr/bin/env python3
"""CDC from PostgreSQL 15 into Lakegate: initial copy rate and sustained apply rate with lag.

Starts a PostgreSQL 15 (wal_level = logical) and Lakegate (BENCH_LAKEGATE, default the release
binary) on loopback ports in a temp folder (the helpers of tests/clients/cdc.py), then:

1. initial copy: `pgbench -i -s SCALE` accounts (100,000 rows per scale unit); PostgreSQL's own
   `COPY pgbench_accounts TO STDOUT` read by psycopg and by psql into /dev/null (rows/s)
   beside CREATE SUBSCRIPTION's initial copy of the same table until it streams (rows/s) - the
   ratio to the faster of the two is the result;
2. sustained apply: pgbench-style update traffic on the source (each transaction updates
   ROWS_PER_TXN accounts and inserts a history row) for SECONDS; the changed rows per second
   the subscription applied, and its lag (now - commit time of the last applied source
   transaction, sampled every 0.25 s) p50 / p99.

usage: python3 bench/cdc.py [--scale 10] [--seconds 30] [--clients 2] [--rows-per-txn 20] [--rate TPS]
"""
import argparse
import os
import subprocess
import sys
import threading
import time

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "clients"))
from cdc import PGBIN, Lakegate, Source, temp_root  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--rows-per-txn", type=int, default=20)
    ap.add_argument("--max-latency", default="500ms")
    ap.add_argument("--rate", type=int, default=0,
                    help="source transactions per second (pgbench -R; 0: as fast as it goes)")
    args = ap.parse_args()
    binary = os.environ.get("BENCH_LAKEGATE", "target/release/lakegate")
    root = temp_root()
    src_pg = Source(root, "-c shared_buffers=512MB -c max_wal_size=4GB -c synchronous_commit=off")
    lg = Lakegate(root, binary)
    lg.start()
    try:
        url = src_pg.url()
        env = dict(os.environ, PGPASSWORD=url.split(":")[2].split("@")[0])
        subprocess.run([f"{PGBIN}/pgbench", "-i", "-q", "-s", str(args.scale), "-h", "127.0.0.1",
                        "-p", str(src_pg.port), "-U", "postgres", "postgres"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        src = psycopg.connect(url, autocommit=True)
        src.execute("CREATE PUBLICATION bench FOR TABLE pgbench_accounts, pgbench_history")
        rows = src.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]

        # PostgreSQL's own COPY TO, read whole by a client.
        t0 = time.perf_counter()
        n = 0
        with src.cursor() as cur:
            with cur.copy("COPY pgbench_accounts TO STDOUT") as copy:
                for chunk in copy:
                    n += bytes(chunk).count(b"\n")
        py_secs = time.perf_counter() - t0
        assert n == rows, (n, rows)
        # And by psql (libpq, C) into /dev/null: no per-message Python in the way. The ratio is
        # taken against the faster of the two.
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as null:
            subprocess.run([f"{PGBIN}/psql", "-h", "127.0.0.1", "-p", str(src_pg.port), "-U", "postgres",
                            "-d", "postgres", "-c", "COPY pgbench_accounts TO STDOUT"],
                           check=True, env=env, stdout=null)
        psql_secs = time.perf_counter() - t0
        pg_secs = min(py_secs, psql_secs)

        lake = lg.connect()
        t0 = time.perf_counter()
        lake.execute(
            f"CREATE SUBSCRIPTION bench CONNECTION 'host=127.0.0.1 port={src_pg.port} dbname=postgres "
            f"user=postgres password={env['PGPASSWORD']}' PUBLICATION bench "
            f"WITH (max_latency = '{args.max_latency}')")
        while True:
            st = lake.execute("SELECT state, rows_copied FROM lakegate.subscriptions "
                              "WHERE source_table = 'public.pgbench_accounts'").fetchall()
            if st and st[0][0] == "streaming" and st[0][1] == rows:
                break
            if st and st[0][0] in ("paused", "error"):
                raise SystemExit(f"subscription failed: {st}")
            time.sleep(0.1)
        lg_secs = time.perf_counter() - t0
        print(f"initial copy of {rows:,} rows: PostgreSQL COPY TO read by psycopg {rows / py_secs:,.0f} rows/s "
              f"({py_secs:.2f} s), by psql into /dev/null {rows / psql_secs:,.0f} rows/s ({psql_secs:.2f} s); "
              f"Lakegate subscription {rows / lg_secs:,.0f} rows/s ({lg_secs:.2f} s); "
              f"ratio to the faster {pg_secs / lg_secs:.2f}")

        # Sustained update traffic.
        script = os.path.join(root, "update.sql")
        with open(script, "w") as f:
            f.write(f"\\set aid random(1, {rows - args.rows_per_txn})\n"
                    "\\set delta random(-5000, 5000)\n"
                    "BEGIN;\n"
                    f"UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid BETWEEN :aid AND :aid + {args.rows_per_txn - 1};\n"
                    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);\n"
                    "END;\n")
        lags = []
        done = threading.Event()

        def sample():
            with lg.connect() as c:
                while not done.is_set():
                    r = c.execute("SELECT max(lag_seconds) FROM lakegate.subscriptions").fetchone()[0]
                    lags.append(r or 0.0)
                    time.sleep(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        before = src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        t0 = time.perf_counter()
        rate = ["-R", str(args.rate)] if args.rate else []
        out = subprocess.run([f"{PGBIN}/pgbench", "-n", "-T", str(args.seconds), "-c", str(args.clients),
                              *rate, "-f", script, "-h", "127.0.0.1", "-p", str(src_pg.port), "-U", "postgres",
                              "postgres"], check=True, env=env, capture_output=True, text=True).stdout
        txns = int([l for l in out.splitlines() if "transactions actually processed" in l][0].split(":")[1].split("/")[0])
        end_lsn = src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        # Caught up: the subscription has applied everything up to the WAL end of the run.
        while True:
            r = lake.execute("SELECT min(last_lsn_int) FROM lakegate.subscriptions").fetchone()[0] or 0
            hi, lo = end_lsn.split("/")
            if r >= (int(hi, 16) << 32 | int(lo, 16)) - 1_000_000 and \
                    lake.execute("SELECT count(*) FROM public.pgbench_history").fetchone()[0] >= txns:
                break
            time.sleep(0.1)
        total = time.perf_counter() - t0
        done.set()
        sampler.join()
        changed = txns * (args.rows_per_txn + 1)
        lags.sort()
        p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] if lags else 0.0  # noqa: E731
        print(f"sustained: {txns:,} source transactions ({changed:,} changed rows) in {args.seconds} s "
              f"= {changed / args.seconds:,.0f} rows/s offered; all applied after {total:.1f} s = "
              f"{changed / total:,.0f} rows/s applied; lag p50 {p(0.5):.2f} s, p99 {p(0.99):.2f} s, "
              f"max {lags[-1] if lags else 0:.2f} s (from {before} to {end_lsn})")
        # Row for row: balances equal.
        a = src.execute("SELECT sum(abalance), count(*) FROM pgbench_accounts").fetchone()
        b = lake.execute("SELECT sum(abalance), count(*) FROM public.pgbench_accounts").fetchone()
        print(f"check: source {a}, lakegate {b}: {'equal' if tuple(a) == tuple(b) else 'DIFFERENT'}")
        lake.execute("DROP SUBSCRIPTION bench")
        lg.stop()
    finally:
        try:
            lg.kill()
        except Exception:  # noqa: BLE001
            pass
        src_pg.stop("immediate")


if __name__ == "__main__":
    main()
