"""Wire throughput: all of TPC-H's lineitem streamed to one client, in text and binary format,
from Lakegate and from PostgreSQL 15 holding the same rows on the same machine.

    python3 bench/wire.py [--sf 1] [--runs 3] [--data DIR] [--out DIR]

Clients: tokio-postgres (bench/wire-client, a crate of its own: text over the simple protocol,
binary over the extended protocol) and psycopg 3 (server-side streaming, text and binary). Reports rows/s
(median of --runs, after a warm-up) and the Lakegate/PostgreSQL ratio per client and format.
"""
import argparse
import datetime
import json
import os
import subprocess
import time

import common


def rust_client_binary():
    """bench/wire-client (tokio-postgres), a crate of its own: built once, in release."""
    manifest = os.path.join(common.ROOT, "bench", "wire-client", "Cargo.toml")
    target = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(common.ROOT, "target")),
                          "wire-client")
    if not getattr(rust_client_binary, "built", False):
        common.log("building the Rust client (bench/wire-client) ...")
        subprocess.run(["cargo", "build", "--release", "--locked", "--manifest-path", manifest,
                        "--target-dir", target], check=True)
        rust_client_binary.built = True
    return os.path.join(target, "release", "lakegate-wire-client")


def rust_client(url, query, fmt):
    env = dict(os.environ, BENCH_URL=url, BENCH_QUERY=query, BENCH_FORMAT=fmt)
    out = subprocess.run([rust_client_binary()], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def psycopg_client(url, query, fmt):
    import psycopg
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.cursor(binary=(fmt == "binary"))
        started = time.perf_counter()
        rows = 0
        for _ in cur.stream(query):
            rows += 1
        return {"rows": rows, "seconds": time.perf_counter() - started}


def load_postgres(pg, data):
    """lineitem into PostgreSQL: DuckDB writes CSV from the Parquet file, COPY reads it."""
    import duckdb
    csv = os.path.join(pg.dir, "lineitem.csv")
    duckdb.connect().execute(
        f"COPY (SELECT * FROM read_parquet('{data}/lineitem.parquet')) TO '{csv}' (HEADER false)")
    ddl = ("CREATE TABLE lineitem (l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, "
           "l_linenumber INTEGER, l_quantity NUMERIC(15,2), l_extendedprice NUMERIC(15,2), "
           "l_discount NUMERIC(15,2), l_tax NUMERIC(15,2), l_returnflag TEXT, l_linestatus TEXT, "
           "l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, l_shipinstruct TEXT, "
           "l_shipmode TEXT, l_comment TEXT)")
    subprocess.run(["psql", "-X", "-q", pg.url, "-c", ddl, "-c",
                    f"\\copy lineitem FROM '{csv}' CSV"], check=True)
    os.remove(csv)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", default="1")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data", default=os.path.join(common.ROOT, "bench-data"))
    ap.add_argument("--out", default=os.path.join(common.ROOT, "bench-results"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = common.tpch_data(args.sf, args.data)
    work = common.workdir("wire")
    lg = common.Lakegate(work)
    import psycopg
    with psycopg.connect(lg.url, autocommit=True) as c:
        c.execute(f"CREATE EXTERNAL TABLE lineitem_file STORED AS PARQUET LOCATION '{data}/lineitem.parquet'")
        c.execute("CREATE TABLE lineitem AS SELECT * FROM lineitem_file")
    pg = common.Postgres(work)
    load_postgres(pg, data)
    rust_client_binary()
    query = "SELECT * FROM lineitem"
    results = {}
    for run in range(args.runs + 1):
        for client, fn in [("tokio-postgres", rust_client), ("psycopg", psycopg_client)]:
            for fmt in ["text", "binary"]:
                for server, url in [("lakegate", lg.url), ("postgres", pg.url)]:
                    r = fn(url, query, fmt)
                    common.log(f"run {run} {client} {fmt} {server}: {r['rows']} rows in {r['seconds']:.2f} s")
                    if run > 0:
                        results.setdefault(f"{client}|{fmt}|{server}", []).append(r["rows"] / r["seconds"])
    med = {k: common.median(v) for k, v in results.items()}
    lines = [f"### Wire throughput: SELECT * FROM lineitem, SF{args.sf} ({datetime.date.today()}, "
             f"median of {args.runs} runs, rows/s)", "",
             "| client | format | Lakegate | PostgreSQL 15 | Lakegate / PostgreSQL |", "|---|---|---|---|---|"]
    for client in ["tokio-postgres", "psycopg"]:
        for fmt in ["text", "binary"]:
            a, b = med[f"{client}|{fmt}|lakegate"], med[f"{client}|{fmt}|postgres"]
            lines.append(f"| {client} | {fmt} | {a:,.0f} | {b:,.0f} | **{a / b:.2f}** |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, f"wire-sf{args.sf}.json"), "w") as f:
        json.dump({"rows_per_second": results, "median": med, "versions": common.versions()}, f, indent=1)
    with open(os.path.join(args.out, f"wire-sf{args.sf}.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
