"""The catalog and protocol checks of real drivers, run against a real PostgreSQL (the oracle) and
against Lakegate holding the same tables; the answers must be equal.

    python3 catalog_matrix.py ORACLE_URL LAKEGATE_URL

Each check builds a plain value (lists, tuples, strings) from what a driver reports: SQLAlchemy's
inspector and pandas (psycopg2 and psycopg 3 dialects), asyncpg's type introspection, psycopg's
TypeInfo, psqlODBC through pyodbc (SQLTables, SQLColumns, parameters, Tableau's declare/fetch
connection string), pgjdbc (java/Meta.java: DatabaseMetaData, prepared statements past the
threshold, batches, fetch size, CopyManager), node-postgres (node/matrix.js), psql's backslash
commands and \copy, and the startup queries of BI tools replayed verbatim (replays.py). A check
fails when the two answers differ or either raises.

The oracle runs as a superuser named like Lakegate's user, in a database named like Lakegate's,
so user and database names are equal on both sides; object oids (Lakegate derives them from
names) and version strings are normalised before comparing.
"""
import asyncio
import decimal
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

import replays

import asyncpg
import pandas
import psycopg
import psycopg2
import pyodbc
import sqlalchemy

ORACLE, LAKEGATE = sys.argv[1], sys.argv[2]
ROWS = 5000

SETUP = [
    "CREATE SCHEMA shop",
    "CREATE TABLE shop.items (id BIGINT NOT NULL, name TEXT, price NUMERIC(10,2), qty INTEGER, "
    "small SMALLINT, ratio DOUBLE PRECISION, created TIMESTAMP, created_tz TIMESTAMPTZ, day DATE, "
    "ok BOOLEAN, code VARCHAR(12), payload BYTEA)",
    "INSERT INTO shop.items VALUES "
    "(1, 'apple', 1.25, 3, 1, 0.5, '2024-01-02 03:04:05', '2024-01-02 03:04:05+00', '2024-01-02', true, 'A1', '\\x0001'), "
    "(2, 'pear', 2.50, NULL, 2, NULL, NULL, NULL, NULL, false, NULL, NULL), "
    "(3, NULL, NULL, 7, NULL, 1.5, '2025-06-07 08:09:10', '2025-06-07 08:09:10+00', '2025-06-07', NULL, 'C3', NULL)",
    "CREATE VIEW shop.cheap AS SELECT id, name FROM shop.items WHERE price < 2",
    "CREATE TABLE shop.many (n BIGINT, label TEXT)",
    f"INSERT INTO shop.many SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) AS t(g)",
]


def parts(url):
    u = urllib.parse.urlparse(url)
    return dict(host=u.hostname, port=u.port, user=u.username, password=u.password or "",
                dbname=u.path.lstrip("/"))


def setup(url):
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS shop CASCADE") if url == ORACLE else None
        for s in SETUP:
            c.execute(s)


def sqlalchemy_inspector(url, driver):
    engine = sqlalchemy.create_engine(url.replace("postgresql://", f"postgresql+{driver}://"))
    try:
        insp = sqlalchemy.inspect(engine)
        cols = [(c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in insp.get_columns("items", schema="shop")]
        return {
            "schemas": "shop" in insp.get_schema_names(),
            "tables": sorted(insp.get_table_names(schema="shop")),
            "views": sorted(insp.get_view_names(schema="shop")),
            "view_columns": [c["name"] for c in insp.get_columns("cheap", schema="shop")],
            "columns": cols,
            "pk": insp.get_pk_constraint("items", schema="shop")["constrained_columns"],
            "fks": insp.get_foreign_keys("items", schema="shop"),
            "indexes": insp.get_indexes("items", schema="shop"),
            "unique": insp.get_unique_constraints("items", schema="shop"),
            "has_table": (insp.has_table("items", schema="shop"), insp.has_table("nope", schema="shop")),
            "comment": insp.get_table_comment("items", schema="shop"),
        }
    finally:
        engine.dispose()


def pandas_read_sql(url, driver):
    engine = sqlalchemy.create_engine(url.replace("postgresql://", f"postgresql+{driver}://"))
    try:
        q = pandas.read_sql("SELECT id, name, price, qty, ratio, created, day, ok FROM shop.items ORDER BY id", engine)
        t = pandas.read_sql_table("items", engine, schema="shop").sort_values("id").reset_index(drop=True)
        n = pandas.read_sql("SELECT count(*) AS n, sum(n) AS s FROM shop.many", engine)
        return (q.astype(str).values.tolist(), [str(d) for d in q.dtypes], list(t.columns),
                [str(d) for d in t.dtypes], t.astype(str).values.tolist(), n.to_dict("list"))
    finally:
        engine.dispose()


async def asyncpg_types(url):
    conn = await asyncpg.connect(url)
    try:
        out = {}
        out["int_array"] = await conn.fetchval("SELECT $1::int[]", [1, 2, 3])
        out["text_array"] = await conn.fetchval("SELECT ARRAY['a', 'b']")
        out["numeric"] = await conn.fetchval("SELECT $1::numeric + 1", decimal.Decimal("1.5"))
        await conn.set_type_codec("json", encoder=lambda v: v, decoder=lambda v: "json:" + v,
                                  schema="pg_catalog")
        out["json"] = await conn.fetchval("SELECT '{\"a\": 1}'::json")
        st = await conn.prepare("SELECT id, name, price, created, ok FROM shop.items WHERE id = $1")
        out["attributes"] = [(a.name, a.type.name, a.type.schema) for a in st.get_attributes()]
        out["parameters"] = [(t.name, t.schema) for t in st.get_parameters()]
        out["row"] = tuple(await st.fetchrow(1))
        n = 0
        async with conn.transaction():
            async for _ in conn.cursor("SELECT * FROM shop.many", prefetch=500):
                n += 1
        out["cursor_rows"] = n
        return out
    finally:
        await conn.close()


def psycopg_typeinfo(url):
    from psycopg.types import TypeInfo
    with psycopg.connect(url, autocommit=True) as c:
        out = {}
        for name in ["int4", "numeric", "text", "timestamptz", "bool", "jsonb", "uuid", "_int4"]:
            t = TypeInfo.fetch(c, name)
            out[name] = None if t is None else (t.name, t.oid, t.array_oid)
        cur = c.execute("SELECT * FROM shop.items ORDER BY id")
        out["description"] = [(d.name, d.type_code) for d in cur.description]
        with c.transaction():
            with c.cursor(name="named") as nc:
                nc.itersize = 700
                nc.execute("SELECT n FROM shop.many ORDER BY n")
                out["named_cursor"] = sum(r[0] for r in nc)
        out["copy"] = []
        with c.cursor().copy("COPY (SELECT id, name FROM shop.items ORDER BY id) TO STDOUT") as cp:
            for row in cp.rows():
                out["copy"].append(row)
        return out


def psycopg2_checks(url):
    c = psycopg2.connect(url)
    try:
        cur = c.cursor()
        cur.execute("SELECT id, name, price FROM shop.items WHERE id = %s", (1,))
        one = cur.fetchall()
        named = c.cursor(name="big")
        named.itersize = 1000
        named.execute("SELECT n FROM shop.many")
        total = sum(r[0] for r in named)
        named.close()
        c.rollback()
        cur = c.cursor()
        cur.execute("SELECT typname, oid FROM pg_type WHERE typname IN ('int4', 'text', 'numeric') ORDER BY 1")
        types = cur.fetchall()
        return one, total, types
    finally:
        c.close()


def odbc(url, extra):
    p = parts(url)
    conn = pyodbc.connect(
        "Driver={PostgreSQL Unicode};Server=%s;Port=%s;Database=%s;Uid=%s;Pwd=%s;%s"
        % (p["host"], p["port"], p["dbname"], p["user"], p["password"], extra), autocommit=True)
    try:
        cur = conn.cursor()
        tables = sorted((r.table_schem, r.table_name, r.table_type) for r in cur.tables(schema="shop"))
        cols = [(r.column_name, r.type_name, r.data_type, r.column_size, r.nullable, r.ordinal_position)
                for r in cur.columns(table="items", schema="shop")]
        cur.execute("SELECT name, price FROM shop.items WHERE id = ? OR name = ?", 2, "apple")
        params = sorted((r[0], str(r[1])) for r in cur.fetchall())
        cur.execute("SELECT n, label FROM shop.many ORDER BY n")
        many = cur.fetchall()
        stats = [(r[0], r[1]) for r in cur.execute("SELECT count(*), max(n) FROM shop.many").fetchall()]
        types = sorted({r.type_name for r in cur.getTypeInfo()} & {"int4", "int8", "text", "numeric",
                                                                  "varchar", "bool", "timestamp", "date"})
        return tables, cols, params, (len(many), many[0][0], many[-1][1]), stats, types
    finally:
        conn.close()


VERSION = re.compile(r"PostgreSQL 15\.\d+[^\n]*")


# Columns whose values differ between any two servers (transaction ids, start times).
VOLATILE = {"current_txid", "startup_time", "state_number", "transaction_id", "txid_current",
            "relfrozenxid", "relminmxid", "datfrozenxid", "datminmxid"}


# Known differences, reported on every run (not hidden). Columns whose values are not compared:
KNOWN_COLUMNS = {
    "reltoastrelid": "Lakegate keeps no TOAST tables (pg_class.reltoastrelid is 0)",
    "estimated_row_count": "no live-tuple statistics (pg_stat_user_tables.n_live_tup is NULL)",
    "n_live_tup": "no live-tuple statistics (pg_stat_user_tables.n_live_tup is NULL)",
}
# Statements of a replay whose answers are not compared: (tool, index) -> why.
KNOWN_STATEMENTS = {
    ("DBeaver", 10): "`word <> ALL('{..., null, ...}'::text[])`: DBeaver's keyword list holds an "
    "unquoted null, which PostgreSQL reads as a NULL element (no row then passes); Lakegate "
    "compares the elements without NULL semantics",
    ("DataGrip", 6): "extract(epoch ...) is numeric in PostgreSQL 15, double precision in Lakegate",
}


def norm_value(v, column=""):
    """A value as compared: object oids (>= 16384, assigned differently), version strings and
    volatile columns normalised."""
    if column in VOLATILE:
        return type(v).__name__
    if column in KNOWN_COLUMNS:
        return "(not compared)"
    if isinstance(v, str):
        return VERSION.sub("PostgreSQL 15", v)
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, (list, tuple)):
            return [norm_value(x, column) for x in v]
        return v
    if v >= 16384 and (column.endswith("oid") or column in ("id", "oid", "objid", "refobjid")
                       or column.startswith("rel") or column.startswith("att") or column == "pid"):
        return "OID"
    return v


def norm_result(cur):
    if cur.description is None:
        return ("status", cur.statusmessage)
    names = [d.name for d in cur.description]
    rows = [tuple(norm_value(v, n.lower()) for v, n in zip(r, names)) for r in cur.fetchall()]
    return (names, rows)


def unordered(result):
    """A result whose row order is not compared: the tools' queries order by keys with ties
    (Npgsql's `ORDER BY ord`) or not at all, and PostgreSQL's order among equals is its plan's."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], list):
        return (result[0], sorted(result[1], key=repr))
    return result


def replay_tool(url, tool, statements, simple):
    """The statements of one tool on one connection, each answered by its result (rows in any
    order) or SQLSTATE. `simple`: the simple query protocol (psycopg's ClientCursor), else the
    extended one."""
    out = []
    factory = psycopg.ClientCursor if simple else psycopg.Cursor
    with psycopg.connect(url, autocommit=True, cursor_factory=factory) as c:
        for i, s in enumerate(statements):
            try:
                result = unordered(norm_result(c.execute(s)))
            except psycopg.Error as e:
                result = ("error", e.sqlstate, s[:80])
            out.append("(known difference)" if (tool, i) in KNOWN_STATEMENTS else result)
    return out


def pipelined(url, statements):
    """Parse/Bind/Describe/Execute for each statement and one Sync, as Npgsql sends a batch."""
    with psycopg.connect(url, autocommit=True) as c:
        curs = [c.cursor() for _ in statements]
        with c.pipeline():
            for cur, s in zip(curs, statements):
                cur.execute(s)
        return [unordered(norm_result(cur)) for cur in curs]


HERE = os.path.dirname(os.path.abspath(__file__))
JDBC_JAR = "/usr/share/java/postgresql.jar"
_java_dir = None


def jdbc_meta(url):
    global _java_dir
    if _java_dir is None:
        _java_dir = tempfile.mkdtemp()
        subprocess.run(["javac", "-cp", JDBC_JAR, "-d", _java_dir, os.path.join(HERE, "java", "Meta.java")],
                       check=True, capture_output=True)
    p = parts(url)
    r = subprocess.run(["java", "-cp", f"{JDBC_JAR}:{_java_dir}", "Meta",
                        f"jdbc:postgresql://{p['host']}:{p['port']}/{p['dbname']}", p["user"], p["password"]],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    sections, name = {}, None
    for line in r.stdout.splitlines():
        if line.startswith("## "):
            name = line[3:]
            sections[name] = []
        else:
            sections[name].append(VERSION.sub("PostgreSQL 15", line))
    return sections


def node_matrix(url):
    r = subprocess.run(["node", os.path.join(HERE, "node", "matrix.js"), url],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout)


def psql(url, *commands, expect_ok=True):
    args = ["psql", "-X", "-v", "ON_ERROR_STOP=1" if expect_ok else "ON_ERROR_STOP=0", url]
    for c in commands:
        args += ["-c", c]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PGTZ": "UTC", "COLUMNS": "200"})
    if expect_ok and r.returncode != 0:
        raise RuntimeError(r.stderr)
    return r.stdout


def psql_commands(url):
    out = {}
    for cmd in ["\\dn shop", "\\dt shop.*", "\\dv shop.*", "\\d shop.items", "\\d shop.cheap",
                "\\d shop.*", "\\df shop.*", "\\dT shop.*", "\\du lakegate", "\\dp shop.items",
                "\\dm shop.*", "\\di shop.*", "\\ds shop.*", "\\dx plpgsql"]:
        out[cmd] = psql(url, cmd).splitlines()
    out["\\x"] = psql(url, "\\x on", "SELECT id, name, price FROM shop.items ORDER BY id").splitlines()
    work = tempfile.mkdtemp()
    try:
        path = os.path.join(work, "items.csv")
        out["\\copy"] = psql(
            url, "CREATE TABLE shop.psql_copy (id BIGINT, name TEXT, price NUMERIC(10,2))",
            f"\\copy (SELECT id, name, price FROM shop.items ORDER BY id) to '{path}' csv header",
            f"\\copy shop.psql_copy from '{path}' csv header",
            f"\\copy (SELECT id + 10, name FROM shop.items ORDER BY id) to '{path}2' csv",
            f"\\copy shop.psql_copy (id, name) from '{path}2' csv",
            "SELECT * FROM shop.psql_copy ORDER BY id, price NULLS LAST").splitlines()
        out["\\copy file"] = open(path).read().splitlines()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def psql_cancel(url):
    """Ctrl-C in psql during a long statement: psql sends a CancelRequest, the statement ends
    with 57014, and the session goes on with the next command."""
    p = subprocess.Popen(["psql", "-X", "-v", "ON_ERROR_STOP=0", url, "-c", "SELECT pg_sleep(60)",
                          "-c", "SELECT 'after cancel' AS next"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    started = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return {"stderr": err.strip().splitlines(), "next": "after cancel" in out,
            "prompt": time.monotonic() - started < 30}



def session_corners(url):
    """Protocol and session corners a driver meets: COPY FROM in a transaction (psycopg's default),
    SCROLL and BINARY cursors, session characteristics, DateStyle/TimeZone, DISCARD ALL,
    pg_cancel_backend from another connection, and a pipeline with an error in the middle."""
    import threading
    out = {}
    with psycopg.connect(url, autocommit=True) as a:
        a.execute("DROP TABLE IF EXISTS shop.corners")
        a.execute("CREATE TABLE shop.corners (id BIGINT NOT NULL, label TEXT)")
    c = psycopg.connect(url)  # autocommit off: COPY runs inside BEGIN
    try:
        with c.cursor().copy("COPY shop.corners FROM STDIN") as cp:
            cp.write_row((1, "one"))
        c.rollback()
        with c.cursor().copy("COPY shop.corners (id, label) FROM STDIN (FORMAT csv)") as cp:
            cp.write(b"2,two\n3,\"th,ree\"\n")
        c.execute("INSERT INTO shop.corners VALUES (4, 'four')")
        c.commit()
        out["copy in transaction"] = c.execute("SELECT * FROM shop.corners ORDER BY id").fetchall()
        c.commit()
        cur = c.cursor()
        cur.execute("DECLARE s SCROLL CURSOR FOR SELECT n FROM shop.many WHERE n <= 10 ORDER BY n")
        moves = []
        for f in ["FETCH 3 FROM s", "FETCH PRIOR FROM s", "FETCH ABSOLUTE 7 FROM s", "FETCH LAST FROM s",
                  "FETCH BACKWARD 3 FROM s", "FETCH RELATIVE -2 FROM s", "MOVE FORWARD 2 IN s", "FETCH NEXT FROM s",
                  "FETCH ABSOLUTE -1 FROM s", "FETCH BACKWARD ALL FROM s", "FETCH FIRST FROM s"]:
            cur.execute(f)
            moves.append((f, cur.fetchall() if cur.description else cur.statusmessage))
        out["scroll cursor"] = moves
        c.rollback()
    finally:
        c.close()
    with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as c:
        c.execute("BEGIN")
        c.execute("DECLARE b BINARY CURSOR FOR SELECT id, label FROM shop.corners ORDER BY id")
        cur = c.execute("FETCH 2 FROM b")
        out["binary cursor"] = (cur.fetchall(), [d.type_code for d in cur.description])
        c.execute("COMMIT")
        settings = []
        for q in ["SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                  "SHOW TRANSACTION ISOLATION LEVEL", "SHOW default_transaction_isolation",
                  "SET extra_float_digits = 3", "SELECT 0.1::float8 + 0.2::float8",
                  "SET DateStyle = 'ISO, DMY'", "SHOW DateStyle",
                  "SET TimeZone = 'America/New_York'", "SHOW TimeZone",
                  "SELECT TIMESTAMPTZ '2024-07-01 12:00:00+00'", "SET TIME ZONE 'UTC'",
                  "SELECT current_setting('TimeZone')", "DISCARD ALL", "SHOW TimeZone"]:
            cur = c.execute(q)
            settings.append((q, cur.fetchall() if cur.description else cur.statusmessage))
        out["settings"] = settings
    # pg_cancel_backend: a second connection cancels the first one's statement.
    with psycopg.connect(url, autocommit=True) as victim, psycopg.connect(url, autocommit=True) as other:
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
        result = {}

        def sleep():
            try:
                victim.execute("SELECT pg_sleep(30)")
                result["victim"] = "finished"
            except psycopg.Error as e:
                result["victim"] = e.sqlstate
        t = threading.Thread(target=sleep)
        t.start()
        time.sleep(1.5)
        result["cancel"] = other.execute("SELECT pg_cancel_backend(%s)", (pid,)).fetchone()[0]
        t.join(30)
        result["unknown pid"] = other.execute("SELECT pg_cancel_backend(1)").fetchone()[0]
        result["after"] = victim.execute("SELECT 1").fetchone()[0]
        out["pg_cancel_backend"] = result
    # A pipeline whose middle statement fails: the rest up to Sync is skipped, as PostgreSQL does.
    with psycopg.connect(url, autocommit=True) as c:
        got = []
        try:
            with c.pipeline():
                c1 = c.execute("SELECT 1")
                c.execute("SELECT * FROM shop.nope")
                c.execute("SELECT 3")
        except psycopg.Error as e:
            got.append(e.sqlstate)
        got.append(c1.fetchall())
        got.append(c.execute("SELECT 4").fetchone())
        out["pipeline error"] = got
    return out


def savepoint_status(url):
    """The block's status a driver sees (ReadyForQuery) around a failed statement and ROLLBACK TO
    SAVEPOINT, as psqlODBC's statement-level rollback uses it: in the simple protocol (psycopg2,
    PQexec) and the extended one (psycopg 3)."""
    out = {}
    c = psycopg2.connect(url)
    try:
        cur = c.cursor()
        seen = []
        for q in ["SAVEPOINT s1", "SELECT * FROM shop.nope", "ROLLBACK TO SAVEPOINT s1", "SELECT 2",
                  "SELECT * FROM shop.nope", "ROLLBACK TO s1", "RELEASE SAVEPOINT s1", "SELECT 3"]:
            try:
                cur.execute(q)
                seen.append((q, "ok"))
            except psycopg2.Error as e:
                seen.append((q, e.pgcode))
            seen.append(("status", c.get_transaction_status()))
        c.commit()
        seen.append(("status after COMMIT", c.get_transaction_status()))
        out["simple"] = seen
    finally:
        c.close()
    with psycopg.connect(url) as c:
        seen = []
        for q in ["SELECT 0", "SAVEPOINT s1", "SELECT * FROM shop.nope", "ROLLBACK TO SAVEPOINT s1", "SELECT 2",
                  "ROLLBACK TO SAVEPOINT nope", "ROLLBACK"]:
            try:
                c.execute(q)
                seen.append((q, "ok"))
            except psycopg.Error as e:
                seen.append((q, e.sqlstate))
            seen.append(("status", c.info.transaction_status.name))
        out["extended"] = seen
    return out


CHECKS = [
    ("sqlalchemy inspector (psycopg2)", lambda u: sqlalchemy_inspector(u, "psycopg2")),
    ("sqlalchemy inspector (psycopg)", lambda u: sqlalchemy_inspector(u, "psycopg")),
    ("pandas read_sql / read_sql_table", lambda u: pandas_read_sql(u, "psycopg2")),
    ("asyncpg type introspection", lambda u: asyncio.run(asyncpg_types(u))),
    ("psycopg TypeInfo, named cursor, COPY", psycopg_typeinfo),
    ("psycopg2 params, named cursor", psycopg2_checks),
    ("psqlODBC", lambda u: odbc(u, "")),
    ("psqlODBC UseDeclareFetch=1;Fetch=2048", lambda u: odbc(u, "UseDeclareFetch=1;Fetch=2048")),
    ("pgjdbc DatabaseMetaData, prepared, batch, fetch size, CopyManager", jdbc_meta),
    ("node-postgres", node_matrix),
    ("psql \\d commands, \\x, \\copy", psql_commands),
    ("psql Ctrl-C cancel", psql_cancel),
    ("transaction status around ROLLBACK TO SAVEPOINT (simple and extended)", savepoint_status),
    ("session corners: COPY in a block, SCROLL/BINARY cursors, settings, pg_cancel_backend, pipeline",
     session_corners),
] + [
    (f"replay {tool} ({'simple' if simple else 'extended'})",
     lambda u, t=tool, q=queries, simple=simple: replay_tool(u, t, q, simple))
    for tool, queries in replays.TOOLS.items() for simple in (False, True)
] + [(f"replay {tool} (pipelined)", lambda u, q=queries: pipelined(u, q))
     for tool, queries in replays.PIPELINED.items()]


# Known differences, reported on every run (not hidden): check name -> why.
KNOWN = {}


def main():
    only = os.environ.get("MATRIX_ONLY")
    setup(ORACLE)
    setup(LAKEGATE)
    failed = xfailed = ran = 0
    for name, check in CHECKS:
        if only and only not in name:
            continue
        ran += 1
        try:
            want = check(ORACLE)
        except Exception as e:  # the check itself is wrong if the oracle fails it
            print(f"FAIL {name}: PostgreSQL itself: {type(e).__name__}: {e}")
            failed += 1
            continue
        try:
            got = check(LAKEGATE)
        except Exception as e:
            if name in KNOWN:
                print(f"xfail {name}: {KNOWN[name]} ({type(e).__name__})")
                xfailed += 1
                continue
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            failed += 1
            continue
        if got == want:
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}: answers differ")
            diff(want, got)
    for why in sorted(set(KNOWN_COLUMNS.values())):
        print(f"known difference (column not compared): {why}")
    for (tool, i), why in sorted(KNOWN_STATEMENTS.items()):
        print(f"known difference ({tool} statement {i} not compared): {why}")
    print(f"catalog matrix: {ran - failed - xfailed} passed, {xfailed} known differences, "
          f"{failed} failed")
    sys.exit(1 if failed else 0)


def diff(want, got, path=""):
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got), key=str):
            if want.get(k) != got.get(k):
                diff(want.get(k), got.get(k), f"{path}.{k}")
    elif isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)) and len(want) == len(got):
        for i, (w, g) in enumerate(zip(want, got)):
            if w != g:
                diff(w, g, f"{path}[{i}]")
    else:
        print(f"     {path or '.'}:\n       postgres: {want!r}\n       lakegate: {got!r}")


main()
