"""dbt builds the same project on PostgreSQL 15 and on Lakegate; every model must match.

Usage: run.py DBT POSTGRES_URL LAKEGATE_URL [GOVERNED_ADMIN_URL GOVERNED_USER_URL]
  DBT: the dbt executable (dbt-core and dbt-postgres, pinned in .ci/run's venv).
  GOVERNED_*: a Lakegate whose policies (written by tests/clients/run.sh) give the user of
  GOVERNED_USER_URL admin on the schemas dbt builds and read on the sources (schema shop)
  through a row filter (status <> 'returned' on shop.raw_orders).

For each server, in a copy of tests/dbt/project: seed, run, test, snapshot, a second phase
(incremental runs by delete+insert and merge, appends, snapshot changes), seed again (the
TRUNCATE reload), source freshness, docs generate and a full refresh, with DBT_THREADS
threads (1, 4 and 8 by default, each from scratch). Then the rows of every seed, model and
snapshot (less the snapshot's timestamps) are compared. Also pandas DataFrame.to_sql with
if_exists='replace' and 'append' on both.

Governed: the project again, its sources in schema shop, built by a user whose policies filter
the source rows, beside PostgreSQL given the same sources with that filter applied to the data:
every model must match (the policies apply on every path dbt takes, and nothing else differs).
"""

import decimal
import os
import shutil
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlparse

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
PHASE2 = "{phase: 2}"
STEPS = [
    ["seed"],
    ["run"],
    ["test"],
    ["snapshot"],
    ["run", "--vars", PHASE2],
    ["snapshot", "--vars", PHASE2],
    ["seed"],
    ["test", "--vars", PHASE2],
    ["source", "freshness"],
    ["docs", "generate"],
    ["run", "--full-refresh", "--vars", PHASE2],
    ["run", "--vars", PHASE2],
]
# Snapshot columns whose values are the time the snapshot ran.
TIMES = {"dbt_scd_id", "dbt_updated_at", "dbt_valid_from"}


def env_for(url, threads):
    u = urlparse(url)
    env = dict(os.environ)
    env.update(
        DBT_HOST=u.hostname or "127.0.0.1",
        DBT_PORT=str(u.port),
        DBT_USER=u.username or "",
        DBT_PASSWORD=u.password or "",
        DBT_DBNAME=u.path.lstrip("/"),
        DBT_THREADS=str(threads),
        DBT_PROFILES_DIR=".",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    return env


def reset(url):
    with psycopg.connect(url, autocommit=True) as c:
        for s in ("analytics", "snapshots"):
            c.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")


# The governed run's row filter, as the policies on Lakegate state it and as PostgreSQL's copy
# of the sources is cut.
GOVERNED_FILTER = "status <> 'returned'"


def project_copy():
    """A fresh copy of the project to run dbt in (it writes target/ and logs/ there)."""
    work = tempfile.mkdtemp(prefix="dbt-")
    shutil.copytree(os.path.join(HERE, "project"), work, dirs_exist_ok=True)
    return work


def governed_sources(dbt, url, where):
    """Schema shop: the seeds raw_orders (rows `where` picks) and raw_customers."""
    reset(url)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS shop CASCADE")
    work = project_copy()
    subprocess.run(
        [dbt, "--no-use-colors", "seed", "--select", "raw_orders", "raw_customers"],
        cwd=work,
        env=env_for(url, 1),
        capture_output=True,
        check=True,
        timeout=600,
    )
    shutil.rmtree(work, ignore_errors=True)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE SCHEMA shop")
        c.execute(f"CREATE TABLE shop.raw_orders AS SELECT * FROM analytics.raw_orders{where}")
        c.execute("CREATE TABLE shop.raw_customers AS SELECT * FROM analytics.raw_customers")
    reset(url)


def build(dbt, url, threads, sources="analytics"):
    """Run every step; the failures (step, output tail)."""
    work = project_copy()
    env = env_for(url, threads)
    env["DBT_SOURCE_SCHEMA"] = sources
    failures = []
    for step in STEPS:
        p = subprocess.run(
            [dbt, "--no-use-colors", *step],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if p.returncode != 0:
            tail = "\n".join(p.stdout.splitlines()[-25:])
            failures.append((" ".join(step), tail))
    catalog = os.path.join(work, "target", "catalog.json")
    if not os.path.exists(catalog):
        failures.append(("docs generate", "no target/catalog.json"))
    shutil.rmtree(work, ignore_errors=True)
    return failures


def norm(v):
    if isinstance(v, decimal.Decimal):
        return format(v.normalize(), "f")
    if isinstance(v, float):
        return f"{v:.6g}"
    return v if v is None else str(v)


def contents(url):
    """{schema.table: sorted rows} of the dbt schemas."""
    out = {}
    with psycopg.connect(url, autocommit=True) as c:
        # (pg_class: PostgreSQL's information_schema.tables leaves materialized views out.)
        rels = c.execute(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('analytics', 'snapshots') AND c.relkind IN ('r', 'v', 'm', 'p') "
            "ORDER BY 1, 2"
        ).fetchall()
        for schema, table in rels:
            cur = c.execute(f'SELECT * FROM "{schema}"."{table}"')
            names = [d.name for d in cur.description]
            rows = []
            for r in cur.fetchall():
                row = []
                for n, v in zip(names, r):
                    if n in TIMES:
                        continue
                    if n == "dbt_valid_to":
                        v = v is not None
                    row.append((n, norm(v)))
                rows.append(tuple(row))
            out[f"{schema}.{table}"] = sorted(rows, key=repr)
    return out


def to_sql(url):
    """pandas: replace, then append; the table's rows."""
    import pandas as pd
    import sqlalchemy

    u = urlparse(url)
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg2://{u.username}:{u.password or ''}@{u.hostname}:{u.port}{u.path}"
    )
    df = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None], "score": [1.5, 2.0, None]})
    df.to_sql("pandas_t", engine, schema="analytics", if_exists="replace", index=False)
    df.to_sql("pandas_t", engine, schema="analytics", if_exists="replace", index=False)
    df.to_sql("pandas_t", engine, schema="analytics", if_exists="append", index=False)
    back = pd.read_sql("SELECT * FROM analytics.pandas_t ORDER BY id, name", engine)
    engine.dispose()
    return [tuple(norm(x) for x in r) for r in back.itertuples(index=False)]


def compare(dbt, pg, lg, n, what, sources="analytics"):
    """Build on both and compare every relation; whether anything failed."""
    failed = False
    built, took = {}, {}
    for name, url in (("postgres", pg), ("lakegate", lg)):
        reset(url)
        started = time.monotonic()
        failures = build(dbt, url, n, sources)
        took[name] = time.monotonic() - started
        for step, tail in failures:
            failed = True
            print(f"{name}, {what}: dbt {step} failed:\n{tail}")
        built[name] = contents(url)
    want, got = built["postgres"], built["lakegate"]
    for rel in sorted(set(want) | set(got)):
        if want.get(rel) != got.get(rel):
            failed = True
            w, g = want.get(rel), got.get(rel)
            print(f"{what}: {rel} differs: postgres {len(w or [])} rows, lakegate {len(g or [])}")
            for a, b in zip(w or [], g or []):
                if a != b:
                    print(f"  postgres: {a}\n  lakegate: {b}")
                    break
    # Measured, not asserted: dbt's own start-up dominates both.
    print(
        f"{what}: {len(want)} relations compared; {len(STEPS)} dbt steps took "
        f"{took['postgres']:.1f} s on PostgreSQL, {took['lakegate']:.1f} s on Lakegate "
        f"(ratio {took['lakegate'] / took['postgres']:.2f})"
    )
    return failed


def main():
    dbt, pg, lg = sys.argv[1:4]
    threads = [int(t) for t in os.environ.get("DBT_THREAD_COUNTS", "1,4,8").split(",") if t]
    failed = False
    for n in threads:
        failed |= compare(dbt, pg, lg, n, f"{n} threads")
    if len(sys.argv) > 5:
        governed_admin, governed_user = sys.argv[4:6]
        governed_sources(dbt, pg, f" WHERE {GOVERNED_FILTER}")
        governed_sources(dbt, governed_admin, "")
        failed |= compare(dbt, pg, governed_user, 4, "governed, 4 threads", "shop")
    frames = {name: to_sql(url) for name, url in (("postgres", pg), ("lakegate", lg))}
    if frames["postgres"] != frames["lakegate"]:
        failed = True
        print(f"pandas to_sql differs:\n  postgres: {frames['postgres']}\n  lakegate: {frames['lakegate']}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
