"""Concurrency and memory: N clients (default 16) run TPC-H queries at once for a fixed time
against one Lakegate with a memory limit, under which sorts, joins and aggregations spill.

    python3 bench/concurrency.py [--sf 1] [--clients 16] [--seconds 120] [--memory-limit 4GiB]

Each client runs the 22 queries in its own shuffled order, over and over. Reports queries
completed, queries per minute, errors (by SQLSTATE; there should be none) and the server's peak
resident memory.
"""
import argparse
import datetime
import json
import os
import random
import threading
import time

import common
import tpch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", default="1")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--memory-limit", default="4GiB")
    ap.add_argument("--data", default=os.path.join(common.ROOT, "bench-data"))
    ap.add_argument("--out", default=os.path.join(common.ROOT, "bench-results"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = common.tpch_data(args.sf, args.data)
    queries = common.tpch_queries()
    work = common.workdir("concurrency")
    spill = os.path.join(work, "spill")
    os.makedirs(spill)
    lg = common.Lakegate(work, {"LAKEGATE__ENGINE__MEMORY_LIMIT": args.memory_limit,
                                "LAKEGATE__ENGINE__SPILL_DIR": spill})
    tpch.load_lakegate(lg.url, data, iceberg=False)
    deadline = time.monotonic() + args.seconds
    done, errors, failures, lock = [], {}, [], threading.Lock()

    def client(i):
        import psycopg
        order = list(queries)
        random.Random(i).shuffle(order)
        with psycopg.connect(lg.url, autocommit=True) as c:
            c.execute("SET search_path = tpch")
            # Every query computed (the repeated queries would otherwise come from the cache).
            c.execute("SET lakegate.result_cache = off")
            while time.monotonic() < deadline:
                for q in order:
                    if time.monotonic() >= deadline:
                        return
                    started = time.perf_counter()
                    try:
                        c.execute(queries[q]).fetchall()
                        with lock:
                            done.append((q, time.perf_counter() - started))
                    except psycopg.Error as e:
                        with lock:
                            errors[e.sqlstate] = errors.get(e.sqlstate, 0) + 1
                            failures.append({"query": q, "sqlstate": e.sqlstate,
                                             "after_s": round(time.perf_counter() - started, 2),
                                             "message": str(e)[:300]})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    rss = lg.peak_rss_mib()
    result = {"date": datetime.date.today().isoformat(), "sf": args.sf, "clients": args.clients,
              "seconds": elapsed, "memory_limit": args.memory_limit, "completed": len(done),
              "per_minute": len(done) / elapsed * 60, "errors": errors, "failures": failures,
              "peak_rss_mib": rss,
              "median_query_seconds": common.median([d for _, d in done]),
              "versions": common.versions()}
    md = (f"### Concurrency: {args.clients} clients running TPC-H SF{args.sf} for {args.seconds} s, "
          f"memory limit {args.memory_limit} ({result['date']})\n\n"
          f"| completed | queries/min | errors | median query s | peak RSS MiB |\n|---|---|---|---|---|\n"
          f"| {len(done)} | {result['per_minute']:.1f} | {errors or 'none'} | "
          f"{result['median_query_seconds']:.2f} | {rss:.0f} |\n")
    with open(os.path.join(args.out, f"concurrency-sf{args.sf}.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, f"concurrency-sf{args.sf}.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
