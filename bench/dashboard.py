"""A BI dashboard over TPC-H: a dozen tiles (revenue by month and region, top customers, order
status counts, average order value ...), each asked with its filter changed between runs, first
cold (no materialized view, no result cache), then with a materialized view per tile and the
cache on, as the administrator and as a user bound by a row filter; then rows are appended to
orders and lineitem, every view is refreshed (incrementally where its shape allows) and the
tiles are asked again.

    python3 bench/dashboard.py [--sf 1] [--repeats 5] [--data DIR] [--out DIR]

Reports per tile: the cold median, the refresh cost of its view (CREATE MATERIALIZED VIEW, and
REFRESH after the append, incremental or not), the median from the view alone (cache off) and
with the cache, and the speedups; and checks that every answer equals the cold one, and after
the append the answer with rewrite and cache off. Speedups are ratios measured in this run.
"""
import argparse
import datetime
import json
import os
import time

import common

# (tile, query with {p}, the values of {p} the dashboard picks, the view that serves it)
TILES = [
    ("revenue by month and region",
     "SELECT r_name, date_trunc('month', o_orderdate) AS month, sum(l_extendedprice * (1 - l_discount)) AS revenue "
     "FROM lineitem JOIN orders ON l_orderkey = o_orderkey JOIN customer ON o_custkey = c_custkey "
     "JOIN nation ON c_nationkey = n_nationkey JOIN region ON n_regionkey = r_regionkey "
     "WHERE extract(year FROM o_orderdate) = {p} GROUP BY r_name, date_trunc('month', o_orderdate) ORDER BY r_name, month",
     ["1994", "1995", "1996"],
     "SELECT extract(year FROM o_orderdate) AS yr, r_name, date_trunc('month', o_orderdate) AS month, "
     "sum(l_extendedprice * (1 - l_discount)) AS revenue "
     "FROM lineitem JOIN orders ON l_orderkey = o_orderkey JOIN customer ON o_custkey = c_custkey "
     "JOIN nation ON c_nationkey = n_nationkey JOIN region ON n_regionkey = r_regionkey "
     "GROUP BY extract(year FROM o_orderdate), r_name, date_trunc('month', o_orderdate)"),
    ("order status counts",
     "SELECT o_orderstatus, count(*) AS orders FROM orders WHERE extract(year FROM o_orderdate) = {p} "
     "GROUP BY o_orderstatus ORDER BY o_orderstatus",
     ["1993", "1995", "1997"],
     "SELECT extract(year FROM o_orderdate) AS yr, o_orderstatus, count(*) AS orders FROM orders "
     "GROUP BY extract(year FROM o_orderdate), o_orderstatus"),
    ("top customers of a nation",
     "SELECT c_name, sum(o_totalprice) AS spent FROM orders JOIN customer ON o_custkey = c_custkey "
     "WHERE c_nationkey = {p} GROUP BY c_name ORDER BY spent DESC, c_name LIMIT 10",
     ["3", "7", "21"],
     "SELECT c_nationkey, c_name, sum(o_totalprice) AS spent FROM orders JOIN customer ON o_custkey = c_custkey "
     "GROUP BY c_nationkey, c_name"),
    ("revenue by ship mode",
     "SELECT l_shipmode, sum(l_extendedprice) AS value, count(*) AS lines FROM lineitem "
     "WHERE extract(year FROM l_shipdate) = {p} GROUP BY l_shipmode ORDER BY l_shipmode",
     ["1994", "1996", "1998"],
     "SELECT extract(year FROM l_shipdate) AS yr, l_shipmode, sum(l_extendedprice) AS value, count(*) AS lines "
     "FROM lineitem GROUP BY extract(year FROM l_shipdate), l_shipmode"),
    ("returns by region",
     "SELECT r_name, sum(l_extendedprice) AS returned FROM lineitem JOIN orders ON l_orderkey = o_orderkey "
     "JOIN customer ON o_custkey = c_custkey JOIN nation ON c_nationkey = n_nationkey "
     "JOIN region ON n_regionkey = r_regionkey WHERE l_returnflag = 'R' AND extract(year FROM o_orderdate) = {p} "
     "GROUP BY r_name ORDER BY r_name",
     ["1993", "1994", "1995"],
     "SELECT extract(year FROM o_orderdate) AS yr, r_name, sum(l_extendedprice) AS returned "
     "FROM lineitem JOIN orders ON l_orderkey = o_orderkey JOIN customer ON o_custkey = c_custkey "
     "JOIN nation ON c_nationkey = n_nationkey JOIN region ON n_regionkey = r_regionkey "
     "WHERE l_returnflag = 'R' GROUP BY extract(year FROM o_orderdate), r_name"),
    ("orders by priority and month",
     "SELECT o_orderpriority, date_trunc('month', o_orderdate) AS month, count(*) AS orders FROM orders "
     "WHERE extract(year FROM o_orderdate) = {p} GROUP BY o_orderpriority, date_trunc('month', o_orderdate) "
     "ORDER BY o_orderpriority, month",
     ["1992", "1994", "1996"],
     "SELECT extract(year FROM o_orderdate) AS yr, o_orderpriority, date_trunc('month', o_orderdate) AS month, "
     "count(*) AS orders FROM orders GROUP BY extract(year FROM o_orderdate), o_orderpriority, "
     "date_trunc('month', o_orderdate)"),
    ("quantity by return flag and status",
     "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS qty, count(*) AS lines FROM lineitem "
     "WHERE extract(year FROM l_shipdate) = {p} GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus",
     ["1993", "1995", "1997"],
     "SELECT extract(year FROM l_shipdate) AS yr, l_returnflag, l_linestatus, sum(l_quantity) AS qty, count(*) AS lines "
     "FROM lineitem GROUP BY extract(year FROM l_shipdate), l_returnflag, l_linestatus"),
    ("brand revenue for a segment",
     "SELECT p_brand, sum(l_extendedprice) AS revenue FROM lineitem JOIN part ON l_partkey = p_partkey "
     "JOIN orders ON l_orderkey = o_orderkey JOIN customer ON o_custkey = c_custkey "
     "WHERE c_mktsegment = '{p}' GROUP BY p_brand ORDER BY revenue DESC, p_brand LIMIT 10",
     ["BUILDING", "MACHINERY", "HOUSEHOLD"],
     "SELECT c_mktsegment, p_brand, sum(l_extendedprice) AS revenue FROM lineitem JOIN part ON l_partkey = p_partkey "
     "JOIN orders ON l_orderkey = o_orderkey JOIN customer ON o_custkey = c_custkey "
     "GROUP BY c_mktsegment, p_brand"),
    ("supplier revenue by nation",
     "SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue FROM lineitem "
     "JOIN supplier ON l_suppkey = s_suppkey JOIN nation ON s_nationkey = n_nationkey "
     "WHERE extract(year FROM l_shipdate) = {p} GROUP BY n_name ORDER BY revenue DESC, n_name",
     ["1994", "1995", "1996"],
     "SELECT extract(year FROM l_shipdate) AS yr, n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue "
     "FROM lineitem JOIN supplier ON l_suppkey = s_suppkey JOIN nation ON s_nationkey = n_nationkey "
     "GROUP BY extract(year FROM l_shipdate), n_name"),
    ("customers per segment and nation",
     "SELECT n_name, count(*) AS customers, sum(c_acctbal) AS balance FROM customer "
     "JOIN nation ON c_nationkey = n_nationkey WHERE c_mktsegment = '{p}' GROUP BY n_name ORDER BY n_name",
     ["AUTOMOBILE", "FURNITURE", "BUILDING"],
     "SELECT c_mktsegment, n_name, count(*) AS customers, sum(c_acctbal) AS balance FROM customer "
     "JOIN nation ON c_nationkey = n_nationkey GROUP BY c_mktsegment, n_name"),
    ("late deliveries by year",
     "SELECT l_shipmode, count(*) AS late FROM lineitem WHERE l_receiptdate > l_commitdate "
     "AND extract(year FROM l_receiptdate) = {p} GROUP BY l_shipmode ORDER BY l_shipmode",
     ["1994", "1995", "1997"],
     "SELECT extract(year FROM l_receiptdate) AS yr, l_shipmode, count(*) AS late FROM lineitem "
     "WHERE l_receiptdate > l_commitdate GROUP BY extract(year FROM l_receiptdate), l_shipmode"),
    ("average order value by priority",
     "SELECT o_orderpriority, avg(o_totalprice) AS avg_value, count(*) AS orders FROM orders "
     "WHERE extract(year FROM o_orderdate) = {p} GROUP BY o_orderpriority ORDER BY o_orderpriority",
     ["1993", "1995", "1997"],
     "SELECT extract(year FROM o_orderdate) AS yr, o_orderpriority, avg(o_totalprice) AS avg_value, "
     "count(*) AS orders FROM orders GROUP BY extract(year FROM o_orderdate), o_orderpriority"),
    ("largest orders of a month",
     "SELECT o_orderdate, max(o_totalprice) AS largest, min(o_totalprice) AS smallest FROM orders "
     "WHERE date_trunc('month', o_orderdate) = DATE '{p}' GROUP BY o_orderdate ORDER BY o_orderdate",
     ["1995-03-01", "1996-07-01", "1997-11-01"],
     "SELECT date_trunc('month', o_orderdate) AS month, o_orderdate, max(o_totalprice) AS largest, "
     "min(o_totalprice) AS smallest FROM orders GROUP BY date_trunc('month', o_orderdate), o_orderdate"),
]

POLICY = """
[[principal]]
name = "analyst"
[principal.attributes]
region = "EUROPE"

[[grant]]
to = "analyst"
on = "tpch.*"
actions = ["read"]

[[row_filter]]
name = "regions_of_analyst"
table = "tpch.region"
to = "analyst"
filter = "r_name = $region"
"""


def timed(conn, sql):
    started = time.perf_counter()
    rows = conn.execute(sql).fetchall()
    return (time.perf_counter() - started) * 1000, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", default="1")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=os.path.join(common.ROOT, "bench-data"))
    ap.add_argument("--out", default=os.path.join(common.ROOT, "bench-results"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = common.tpch_data(args.sf, args.data)
    work = common.workdir("dashboard")
    policies = os.path.join(work, "policies")
    os.makedirs(policies)
    with open(os.path.join(policies, "dashboard.toml"), "w") as f:
        f.write(POLICY)
    # Every authenticated user may do everything, as in the shipped default, except analyst.
    with open(os.path.join(policies, "default.toml"), "w") as f:
        f.write('[[grant]]\nto = "lakegate"\non = "*"\nactions = ["read", "write", "admin"]\n')
    config = (f'[policy]\ndir = "{policies}"\n\n[[auth.users]]\nname = "analyst"\n'
              'password_env = "ANALYST_PASSWORD"\n')
    lg = common.Lakegate(work, {"ANALYST_PASSWORD": "analyst-pw"}, config=config)
    import tpch
    tpch.load_lakegate(lg.url, data, iceberg=False)
    import psycopg
    admin = psycopg.connect(lg.url, autocommit=True)
    admin.execute("SET search_path = tpch")
    analyst = psycopg.connect(lg.url.replace(f"lakegate:{common.PASSWORD}", "analyst:analyst-pw"),
                              autocommit=True)
    analyst.execute("SET search_path = tpch")

    def switch(conn, on):
        v = "on" if on else "off"
        conn.execute(f"SET lakegate.mv_rewrite = {v}")
        conn.execute(f"SET lakegate.result_cache = {v}")

    results = []
    for conn, who in [(admin, "administrator"), (analyst, "analyst (row filter on region)")]:
        switch(conn, False)
        for name, template, params, _ in TILES:
            cold = {}
            for p in params:
                t1, rows = timed(conn, template.format(p=p))
                t2, _ = timed(conn, template.format(p=p))
                cold[p] = (min(t1, t2), rows)
            results.append({"who": who, "tile": name, "cold_ms": common.median([c[0] for c in cold.values()]),
                            "answers": {p: c[1] for p, c in cold.items()}})
        common.log(f"cold done for {who}")
    refresh = {}
    for i, (name, _, _, view) in enumerate(TILES):
        started = time.perf_counter()
        admin.execute(f"CREATE MATERIALIZED VIEW tile_{i} AS {view}")
        refresh[name] = (time.perf_counter() - started) * 1000
    common.log("views created")
    mismatches = []
    for conn, who in [(admin, "administrator"), (analyst, "analyst (row filter on region)")]:
        for r in [r for r in results if r["who"] == who]:
            name, template, params, _ = next(t for t in TILES if t[0] == r["tile"])
            conn.execute("SET lakegate.result_cache = off")
            conn.execute("SET lakegate.mv_rewrite = on")
            view_only = []
            for p in params:
                ms, rows = timed(conn, template.format(p=p))
                view_only.append(ms)
                if [tuple(x) for x in rows] != [tuple(x) for x in r["answers"][p]]:
                    mismatches.append(f"{who}: {name} ({p}), view")
            conn.execute("SET lakegate.result_cache = on")
            warm = []
            for _ in range(args.repeats):
                for p in params:
                    ms, rows = timed(conn, template.format(p=p))
                    warm.append(ms)
                    if [tuple(x) for x in rows] != [tuple(x) for x in r["answers"][p]]:
                        mismatches.append(f"{who}: {name} ({p}), cached")
            plan = "\n".join(x[1] for x in conn.execute("EXPLAIN " + template.format(p=params[0])).fetchall())
            r.update({"view_ms": common.median(view_only), "warm_ms": common.median(warm),
                      "refresh_ms": refresh[name], "answered_from_view": "tile_" in plan})
            del r["answers"]
    # Appends (about 1% of orders and their lines, as new keys' copies), then every view
    # refreshed: views over orders or lineitem alone only read the appended files.
    admin.execute("INSERT INTO orders SELECT * FROM orders WHERE o_orderkey % 100 = 7")
    admin.execute("INSERT INTO lineitem SELECT * FROM lineitem WHERE l_orderkey % 100 = 7")
    after = {}
    for i, (name, _, _, _) in enumerate(TILES):
        started = time.perf_counter()
        admin.execute(f"REFRESH MATERIALIZED VIEW tile_{i}")
        ms = (time.perf_counter() - started) * 1000
        incremental = admin.execute("SELECT last_refresh_incremental FROM lakegate.materialized_views "
                                    "WHERE name = %s", (f"tile_{i}",)).fetchone()[0]
        after[name] = (ms, incremental)
    common.log("views refreshed after the append")
    for conn, who in [(admin, "administrator"), (analyst, "analyst (row filter on region)")]:
        for r in [r for r in results if r["who"] == who]:
            name, template, params, _ = next(t for t in TILES if t[0] == r["tile"])
            for p in params:
                switch(conn, True)
                rows = conn.execute(template.format(p=p)).fetchall()
                switch(conn, False)
                if [tuple(x) for x in rows] != [tuple(x) for x in conn.execute(template.format(p=p)).fetchall()]:
                    mismatches.append(f"{who}: {name} ({p}), after the append")
            r.update({"append_refresh_ms": after[name][0], "append_refresh_incremental": after[name][1]})
    stats = admin.execute("SELECT hits, misses, entries, bytes FROM lakegate.cache_stats").fetchone()
    lines = [f"### Dashboard: {len(TILES)} tiles over TPC-H SF{args.sf} ({datetime.date.today()})", "",
             "Cold: no view, no cache (median over the tile's 3 filter values). View: the tile's "
             "materialized view answers (cache off). Repeated: view and cache on, each filter value "
             f"asked {args.repeats} times. Refresh: CREATE MATERIALIZED VIEW of the tile's view; "
             "after append: REFRESH once ~1% of orders and lineitem were appended (inc: only the "
             "appended files read).", "",
             "| who | tile | cold ms | refresh ms | refresh after append ms | view ms | repeated ms | speedup (view) | speedup (repeated) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['who']} | {r['tile']}{'' if r['answered_from_view'] else ' (no view)'} | "
                     f"{r['cold_ms']:.0f} | {r['refresh_ms']:.0f} | {r['append_refresh_ms']:.0f}"
                     f"{' (inc)' if r['append_refresh_incremental'] else ''} | {r['view_ms']:.1f} | {r['warm_ms']:.2f} | "
                     f"{r['cold_ms'] / r['view_ms']:.1f}x | **{r['cold_ms'] / r['warm_ms']:.0f}x** |")
    for who in ["administrator", "analyst (row filter on region)"]:
        rs = [r for r in results if r["who"] == who]
        lines.append(f"| {who} | geometric mean | | | | | | "
                     f"{common.geomean([r['cold_ms'] / r['view_ms'] for r in rs]):.1f}x | "
                     f"**{common.geomean([r['cold_ms'] / r['warm_ms'] for r in rs]):.0f}x** |")
    lines.append("")
    lines.append(f"- answers equal to the cold ones: {'all' if not mismatches else 'NOT: ' + '; '.join(mismatches)}")
    lines.append(f"- result cache at the end: hits {stats[0]}, misses {stats[1]}, entries {stats[2]}, bytes {stats[3]}")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, f"dashboard-sf{args.sf}.json"), "w") as f:
        json.dump({"results": results, "mismatches": mismatches, "versions": common.versions()}, f, indent=1)
    with open(os.path.join(args.out, f"dashboard-sf{args.sf}.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
