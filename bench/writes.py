"""Concurrent writers: single-row INSERTs into one table from 1, then N clients (default 16),
then M clients (default 64) mixing those INSERTs with reads of another table.

    python3 bench/writes.py [--clients 16] [--mixed 64] [--seconds 30]

Reports INSERTs per second (N clients against 1: group commit makes the ratio grow with the
clients), errors by SQLSTATE (there should be none: blind appends never conflict), rows
acknowledged against rows found (each exactly once), and the read latency under the write
load against the same reads with no writers.
"""
import argparse
import datetime
import json
import os
import threading
import time

import common


def run(url, clients, seconds, job):
    """`clients` threads running `job(conn, i, stop_at)` -> list of results; errors by code."""
    import psycopg
    stop_at = time.monotonic() + seconds
    results, errors, lock = [], {}, threading.Lock()

    def worker(i):
        with psycopg.connect(url, autocommit=True) as c:
            while time.monotonic() < stop_at:
                try:
                    r = job(c, i)
                    with lock:
                        results.append(r)
                except psycopg.Error as e:
                    with lock:
                        errors[e.sqlstate or "?"] = errors.get(e.sqlstate or "?", 0) + 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--mixed", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(common.ROOT, "bench-results"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import psycopg
    lg = common.Lakegate(common.workdir("writes"))
    with psycopg.connect(lg.url, autocommit=True) as c:
        c.execute("CREATE TABLE app (worker INT, n BIGINT)")
        c.execute("CREATE TABLE lookup AS SELECT x AS id, x * 2 AS v FROM generate_series(1, 10000) t(x)")
    counter = iter(range(1 << 62))
    lock = threading.Lock()

    def insert(c, i):
        with lock:
            n = next(counter)
        c.execute("INSERT INTO app VALUES (%s, %s)", (i, n))
        return ("insert", n)

    def read(c, i):
        started = time.perf_counter()
        c.execute("SELECT sum(v) FROM lookup WHERE id %% 7 = %s", (i % 7,)).fetchall()
        return ("read", time.perf_counter() - started)

    report = {}
    common.log("1 client inserting ...")
    one, e1 = run(lg.url, 1, args.seconds, insert)
    common.log(f"{args.clients} clients inserting ...")
    many, e2 = run(lg.url, args.clients, args.seconds, insert)
    common.log("reads alone ...")
    alone, e3 = run(lg.url, args.mixed // 2, args.seconds, read)
    common.log(f"{args.mixed} clients, half inserting, half reading ...")
    mixed, e4 = run(lg.url, args.mixed, args.seconds, lambda c, i: insert(c, i) if i % 2 else read(c, i))
    acknowledged = [r[1] for r in one + many + mixed if r[0] == "insert"]
    with psycopg.connect(lg.url, autocommit=True) as c:
        found, distinct = c.execute("SELECT count(*), count(DISTINCT n) FROM app").fetchone()
    reads_alone = [r[1] for r in alone]
    reads_mixed = [r[1] for r in mixed if r[0] == "read"]
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": args.seconds,
        "insert_per_s_1_client": len(one) / args.seconds,
        f"insert_per_s_{args.clients}_clients": len(many) / args.seconds,
        "ratio": (len(many) / max(len(one), 1)),
        "mixed_inserts_per_s": sum(1 for r in mixed if r[0] == "insert") / args.seconds,
        "read_median_ms_alone": 1000 * common.median(reads_alone) if reads_alone else None,
        "read_median_ms_mixed": 1000 * common.median(reads_mixed) if reads_mixed else None,
        "errors": {"1": e1, str(args.clients): e2, "reads": e3, "mixed": e4},
        "acknowledged": len(acknowledged),
        "found": found,
        "distinct": distinct,
        "peak_rss_mib": lg.peak_rss_mib(),
    }
    print(json.dumps(report, indent=2))
    with open(os.path.join(args.out, "writes.json"), "w") as f:
        json.dump(report, f, indent=2)
    ok = found == len(acknowledged) == distinct and not (e1 or e2 or e3 or e4)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
