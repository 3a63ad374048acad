"""TPC-H through Lakegate's wire beside DataFusion in process and DuckDB on the same files.

    python3 bench/tpch.py --sf 1 [--runs 3] [--engines lakegate,lakegate-parquet,datafusion,duckdb,duckdb-delta]
    BENCH_BASELINE=/path/to/other/lakegate python3 bench/tpch.py ...   (adds lakegate-baseline: A/B)
                          [--data DIR] [--out docs/bench-results] [--memory-limit 4GiB]

Generates TPC-H at the scale factor with tpchgen-cli (once, into --data), starts a release
lakegate on an ephemeral port and loads the tables as Delta (CREATE TABLE with the files'
columns, NOT NULL as in the specification's DDL, `lineitem` and `orders` with a sort order on
their date column (SORT_ORDER below), then INSERT ... SELECT from the Parquet files;
`--iceberg` also as Iceberg, CREATE TABLE AS), and runs the 22 queries:
- lakegate: through the wire (psycopg, text results) on the Delta tables, with the result cache
  and materialized-view rewrite turned off for the session (every run computes its answer);
- lakegate-parquet: through the wire on the Parquet files themselves (external tables);
- lakegate-iceberg: through the wire on the Iceberg tables (with --iceberg);
- datafusion: DataFusion in process (datafusion-python of Lakegate's DataFusion major) on the
  Parquet files;
- duckdb: DuckDB in process on the generator's Parquet files;
- duckdb-delta: DuckDB in process on the Parquet files of Lakegate's Delta tables
  (the same rows in the same layout: what the layout gives DuckDB too).
Each query runs once as a warm-up, then --runs times, the engines interleaved (q1 on every
engine, then q2 ...), and the median is kept. Every engine's answer is compared with DuckDB's
(numbers to 6 significant digits). Writes tpch-sfN.json (all timings), tpch-sfN.md (the table:
ms per query per engine, ratios to DataFusion and DuckDB, geometric means) and tpch-sfN.png.
No number is judged here: the ratios are for people to read.
"""
import argparse
import datetime
import decimal
import json
import math
import os
import time

import common


def normalise(rows):
    """Rows comparable across engines: numbers as floats, dates as ISO text, CHAR padding
    dropped; sorted (on coarsely rounded numbers, so engines that round differently sort alike)."""
    def v(x):
        if isinstance(x, (float, decimal.Decimal)):
            return float(x)
        if isinstance(x, (datetime.date, datetime.datetime)):
            return x.isoformat()[:10]
        if isinstance(x, str):
            return x.rstrip()
        return x

    def key(r):
        return repr(tuple(f"{x:.3g}" if isinstance(x, float) else x for x in r))
    return sorted((tuple(v(x) for x in r) for r in rows), key=key)


def same_answer(a, b):
    """Equal rows, numbers within a relative 1e-4 (DataFusion's decimal avg keeps 6 decimals,
    DuckDB's is a double)."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if len(ra) != len(rb):
            return False
        for x, y in zip(ra, rb):
            if isinstance(x, float) or isinstance(y, float):
                try:
                    if not math.isclose(float(x), float(y), rel_tol=1e-4, abs_tol=1e-6):
                        return False
                except (TypeError, ValueError):
                    return False
            elif x != y:
                return False
    return True


class WireEngine:
    def __init__(self, name, url, schema):
        import psycopg
        self.name = name
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f"SET search_path = {schema}")
        # Every run computes its answer: no result cache, no materialized view (bench/dashboard.py
        # measures those).
        self.conn.execute("SET lakegate.result_cache = off")
        self.conn.execute("SET lakegate.mv_rewrite = off")

    def run(self, sql):
        return self.conn.execute(sql).fetchall()


class DataFusionEngine:
    name = "datafusion"

    def __init__(self, data):
        import datafusion
        self.ctx = datafusion.SessionContext()
        for t in common.TABLES:
            self.ctx.register_parquet(t, os.path.join(data, f"{t}.parquet"))

    def run(self, sql):
        table = self.ctx.sql(sql).to_arrow_table()
        return [tuple(r.values()) for r in table.to_pylist()]


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, files):
        """`files(t)`: the Parquet file (or glob) of table t."""
        import duckdb
        self.con = duckdb.connect()
        for t in common.TABLES:
            self.con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{files(t)}')")

    def run(self, sql):
        return self.con.execute(sql).fetchall()


def table_columns(parquet_path):
    """The column list of a TPC-H table's CREATE TABLE, from its Parquet file: the
    specification's DDL declares every column NOT NULL, and so do the files (a CREATE TABLE AS
    would make the columns nullable, as in PostgreSQL, and DataFusion then plans q16's NOT IN
    as a null-aware anti join, which cannot put the small side in its hash table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def sql_type(t):
        if pa.types.is_int64(t):
            return "BIGINT"
        if pa.types.is_int32(t):
            return "INTEGER"
        if pa.types.is_decimal(t):
            return f"NUMERIC({t.precision},{t.scale})"
        if pa.types.is_date32(t):
            return "DATE"
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return "VARCHAR"
        raise ValueError(f"no SQL type for {t}")
    schema = pq.read_schema(parquet_path)
    return ", ".join(f"{f.name} {sql_type(f.type)}" + ("" if f.nullable else " NOT NULL")
                     for f in schema)


# The sort order of the Delta tables' writes (CREATE TABLE ... WITH (sort_order = ...)): the
# fact tables by their date, the layout a lakehouse usually gives them (and TPC-H's clause
# 1.5.4 allows: clustering by a date column). The generator writes them in key order, and so
# DuckDB, DataFusion and lakegate-parquet read them; duckdb-delta reads Lakegate's files.
SORT_ORDER = {"lineitem": "l_shipdate", "orders": "o_orderdate"}


def load_lakegate(url, data, iceberg):
    import psycopg
    with psycopg.connect(url, autocommit=True) as c:
        for schema in ["tpch_files", "tpch"] + (["tpch_iceberg"] if iceberg else []):
            c.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for t in common.TABLES:
            path = os.path.join(data, f"{t}.parquet")
            c.execute(f"CREATE EXTERNAL TABLE tpch_files.{t} STORED AS PARQUET LOCATION '{path}'")
            started = time.monotonic()
            sort = f" WITH (sort_order = '{SORT_ORDER[t]}')" if t in SORT_ORDER else ""
            c.execute(f"CREATE TABLE tpch.{t} ({table_columns(path)}){sort}")
            c.execute(f"INSERT INTO tpch.{t} SELECT * FROM tpch_files.{t}")
            common.log(f"  loaded tpch.{t} (Delta) in {time.monotonic() - started:.1f} s")
            if iceberg:
                started = time.monotonic()
                c.execute(f"CREATE TABLE tpch_iceberg.{t} USING iceberg AS SELECT * FROM tpch_files.{t}")
                common.log(f"  loaded tpch_iceberg.{t} in {time.monotonic() - started:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", default="1")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engines", default="lakegate,lakegate-parquet,datafusion,duckdb,duckdb-delta")
    ap.add_argument("--iceberg", action="store_true", help="also load and query Iceberg tables")
    ap.add_argument("--queries", default="", help="e.g. 1,3,6 (default: all 22)")
    ap.add_argument("--data", default=os.path.join(common.ROOT, "bench-data"))
    ap.add_argument("--out", default=os.path.join(common.ROOT, "bench-results"))
    ap.add_argument("--memory-limit", default=None, help="lakegate's engine.memory_limit")
    args = ap.parse_args()
    engines = args.engines.split(",")
    if args.iceberg and "lakegate-iceberg" not in engines:
        engines.insert(2, "lakegate-iceberg")
    os.makedirs(args.out, exist_ok=True)
    data = common.tpch_data(args.sf, args.data)
    queries = common.tpch_queries()
    if args.queries:
        queries = {int(q): queries[int(q)] for q in args.queries.split(",")}
    work = common.workdir("tpch")
    env = {"LAKEGATE__ENGINE__MEMORY_LIMIT": args.memory_limit} if args.memory_limit else {}
    runners = {}
    if any(e.startswith("lakegate") or e == "duckdb-delta" for e in engines):
        server = common.Lakegate(work, env)
        started = time.monotonic()
        load_lakegate(server.url, data, "lakegate-iceberg" in engines)
        load_seconds = time.monotonic() - started
        for e, schema in [("lakegate", "tpch"), ("lakegate-parquet", "tpch_files"),
                          ("lakegate-iceberg", "tpch_iceberg")]:
            if e in engines:
                runners[e] = WireEngine(e, server.url, schema)
            # An A/B baseline: another build ($BENCH_BASELINE) on the same tables, its runs
            # interleaved with this build's (q1 on one, then on the other ...).
            if e == "lakegate" and e in engines and os.environ.get("BENCH_BASELINE"):
                baseline = common.Lakegate(work, env, binary=os.environ["BENCH_BASELINE"],
                                           warehouse=os.path.join(server.dir, "warehouse"),
                                           name="lakegate-baseline")
                runners["lakegate-baseline"] = WireEngine("lakegate-baseline", baseline.url, schema)
    else:
        server, load_seconds = None, 0.0
    if "datafusion" in engines:
        runners["datafusion"] = DataFusionEngine(data)
    if "duckdb" in engines:
        runners["duckdb"] = DuckDBEngine(lambda t: os.path.join(data, f"{t}.parquet"))
    if "duckdb-delta" in engines:
        # (a freshly loaded Delta table's folder holds exactly its current files)
        warehouse = os.path.join(server.dir, "warehouse", "tpch")
        runners["duckdb-delta"] = DuckDBEngine(lambda t: os.path.join(warehouse, f"{t}-*", "*.parquet"))
    times = {e: {q: [] for q in queries} for e in runners}
    answers = {e: {} for e in runners}
    errors = {e: {} for e in runners}
    for run in range(args.runs + 1):
        for q, sql in queries.items():
            for e, r in runners.items():
                if q in errors[e]:
                    continue
                started = time.perf_counter()
                try:
                    rows = r.run(sql)
                except Exception as ex:  # the error is reported, the suite goes on
                    errors[e][q] = f"{type(ex).__name__}: {str(ex).splitlines()[0][:200]}"
                    common.log(f"q{q} {e}: {errors[e][q]}")
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                if run == 0:
                    answers[e][q] = normalise(rows)
                else:
                    times[e][q].append(elapsed)
        common.log(f"run {run} done" + (" (warm-up)" if run == 0 else ""))
    reference = "duckdb" if "duckdb" in runners else next(iter(runners))
    mismatches = {e: [q for q in queries if q in answers[e] and q in answers[reference]
                      and not same_answer(answers[e][q], answers[reference][q])] for e in runners}
    medians = {e: {q: common.median(times[e][q]) for q in queries} for e in runners}
    result = {
        "date": datetime.date.today().isoformat(), "sf": args.sf, "runs": args.runs,
        "memory_limit": args.memory_limit, "versions": common.versions(),
        "load_seconds": load_seconds, "times_ms": times, "median_ms": medians,
        "errors": errors, "answer_mismatches": mismatches,
        "peak_rss_mib": server.peak_rss_mib() if server else None,
    }
    name = f"tpch-sf{args.sf}"
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = markdown(result, list(runners), list(queries))
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write(md)
    chart(result, list(runners), list(queries), os.path.join(args.out, f"{name}.png"))
    print(md)


def markdown(r, engines, queries):
    med = r["median_ms"]
    base = [e for e in ("datafusion", "duckdb", "duckdb-delta") if e in engines]
    # (duckdb-delta reads the Delta tables' files: a base for the Delta engine only)
    pairs = [(e, b) for e in engines if e.startswith("lakegate") for b in base
             if b != "duckdb-delta" or e == "lakegate"]
    head = ["query"] + [f"{e} ms" for e in engines] + [f"{e} / {b}" for e, b in pairs]
    lines = [f"### TPC-H SF{r['sf']} ({r['date']}, median of {r['runs']} runs after a warm-up)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(e, q):
        if q in r["errors"][e]:
            return "error"
        return f"{med[e][q]:.0f}" + (" (≠)" if q in r["answer_mismatches"][e] else "")

    for q in queries:
        row = [f"q{q}"] + [cell(e, q) for e in engines]
        for e, b in pairs:
            row.append(f"{med[e][q] / med[b][q]:.2f}" if med[e][q] and med[b][q] else "")
        lines.append("| " + " | ".join(row) + " |")
    gm = {e: common.geomean([med[e][q] for q in queries if q not in r["errors"][e]]) for e in engines}
    row = ["geomean"] + [f"{gm[e]:.0f}" for e in engines]
    for e, b in pairs:
        both = [q for q in queries if q not in r["errors"][e] and q not in r["errors"][b]]
        ratio = common.geomean([med[e][q] / med[b][q] for q in both if med[b][q]])
        row.append(f"**{ratio:.2f}**")
    lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for e in engines:
        if r["errors"][e]:
            lines.append(f"- {e} errors: " + "; ".join(f"q{q}: {m}" for q, m in r["errors"][e].items()))
        if r["answer_mismatches"][e]:
            lines.append(f"- {e} answers differ from DuckDB's on: " +
                         ", ".join(f"q{q}" for q in r["answer_mismatches"][e]))
    lines.append(f"- load into Lakegate (Delta{', Iceberg' if 'lakegate-iceberg' in engines else ''}): "
                 f"{r['load_seconds']:.0f} s; lakegate peak RSS {r['peak_rss_mib'] or 0:.0f} MiB")
    return "\n".join(lines) + "\n"


def chart(r, engines, queries, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(14, 5))
    width = 0.8 / len(engines)
    for i, e in enumerate(engines):
        ys = [r["median_ms"][e][q] if q not in r["errors"][e] else 0 for q in queries]
        ax.bar([x + i * width for x in range(len(queries))], ys, width, label=e)
    ax.set_xticks([x + width * (len(engines) - 1) / 2 for x in range(len(queries))])
    ax.set_xticklabels([f"q{q}" for q in queries])
    ax.set_yscale("log")
    ax.set_ylabel("median ms (log)")
    ax.set_title(f"TPC-H SF{r['sf']}, {r['versions'].get('cpus')} cores ({r['date']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
