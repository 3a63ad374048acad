"""Small-query rate: pgbench (Debian's postgresql-client) with custom scripts, 8 clients, in the
simple, extended and prepared protocols, against Lakegate and PostgreSQL 15 holding TPC-H's
nation and customer tables.

    python3 bench/small_queries.py [--sf 1] [--seconds 20] [--clients 8] [--data DIR] [--out DIR]

Scripts: `SELECT count(*) FROM nation` and a point lookup `SELECT * FROM customer WHERE
c_custkey = :k` (k random). Reports transactions per second and the Lakegate/PostgreSQL ratio.
"""
import argparse
import datetime
import json
import os
import re
import subprocess

import common

SCRIPTS = {
    "count(*) FROM nation": "SELECT count(*) FROM nation;\n",
    "point lookup in customer": "\\set k random(1, 150000)\nSELECT * FROM customer WHERE c_custkey = :k;\n",
}


def pgbench(url, script_path, mode, seconds, clients):
    env = dict(os.environ, PGPASSWORD=common.PASSWORD)
    out = subprocess.run(["pgbench", "-n", "-M", mode, "-c", str(clients), "-j", "2", "-T",
                          str(seconds), "-f", script_path, url], capture_output=True, text=True,
                         env=env)
    m = re.search(r"tps = ([0-9.]+)", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if not m:
        return {"tps": 0.0, "error": (out.stderr or out.stdout).strip()[-300:]}
    return {"tps": float(m.group(1)), "failed": int(failed.group(1)) if failed else 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", default="1")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--data", default=os.path.join(common.ROOT, "bench-data"))
    ap.add_argument("--out", default=os.path.join(common.ROOT, "bench-results"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = common.tpch_data(args.sf, args.data)
    work = common.workdir("small")
    lg = common.Lakegate(work)
    import psycopg
    with psycopg.connect(lg.url, autocommit=True) as c:
        for t in ["nation", "customer"]:
            c.execute(f"CREATE EXTERNAL TABLE {t}_file STORED AS PARQUET LOCATION '{data}/{t}.parquet'")
            c.execute(f"CREATE TABLE {t} AS SELECT * FROM {t}_file")
    pg = common.Postgres(work, settings=["max_connections=50"])
    import duckdb
    for t, ddl in [("nation", "n_nationkey INTEGER PRIMARY KEY, n_name TEXT, n_regionkey INTEGER, n_comment TEXT"),
                   ("customer", "c_custkey BIGINT PRIMARY KEY, c_name TEXT, c_address TEXT, c_nationkey INTEGER, "
                                "c_phone TEXT, c_acctbal NUMERIC(15,2), c_mktsegment TEXT, c_comment TEXT")]:
        csv = os.path.join(pg.dir, f"{t}.csv")
        duckdb.connect().execute(f"COPY (SELECT * FROM read_parquet('{data}/{t}.parquet')) TO '{csv}' (HEADER false)")
        subprocess.run(["psql", "-X", "-q", pg.url, "-c", f"CREATE TABLE {t} ({ddl})", "-c",
                        f"\\copy {t} FROM '{csv}' CSV", "-c", f"ANALYZE {t}"], check=True)
    results = {}
    for name, text in SCRIPTS.items():
        path = os.path.join(work, re.sub(r"\W+", "_", name) + ".sql")
        with open(path, "w") as f:
            f.write(text)
        for mode in ["simple", "extended", "prepared"]:
            for server, url in [("lakegate", lg.url), ("postgres", pg.url)]:
                r = pgbench(url, path, mode, args.seconds, args.clients)
                common.log(f"{name} {mode} {server}: {r}")
                results[f"{name}|{mode}|{server}"] = r
    lines = [f"### Small queries: pgbench, {args.clients} clients, {args.seconds} s each "
             f"({datetime.date.today()}, transactions/s)", "",
             "| script | mode | Lakegate | PostgreSQL 15 | Lakegate / PostgreSQL |", "|---|---|---|---|---|"]
    for name in SCRIPTS:
        for mode in ["simple", "extended", "prepared"]:
            a, b = results[f"{name}|{mode}|lakegate"], results[f"{name}|{mode}|postgres"]
            ratio = a["tps"] / b["tps"] if b["tps"] else float("nan")
            note = f" ({a['error']})" if "error" in a else ""
            lines.append(f"| {name} | {mode} | {a['tps']:,.0f}{note} | {b['tps']:,.0f} | **{ratio:.2f}** |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "small-queries.json"), "w") as f:
        json.dump({"results": results, "versions": common.versions()}, f, indent=1)
    with open(os.path.join(args.out, "small-queries.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
