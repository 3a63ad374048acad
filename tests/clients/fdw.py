#!/usr/bin/env python3
"""Foreign tables on a real PostgreSQL 15 (postgres_fdw's statements), full and incremental
loads, pushdown shown by EXPLAIN, governance, catalogs.

Starts its own PostgreSQL 15 and Lakegate (the binary given) on loopback ports in a temp
folder (the helpers of cdc.py), then over psycopg:
- CREATE SERVER / USER MAPPING (password_file) / IMPORT FOREIGN SCHEMA ... LIMIT TO /
  CREATE FOREIGN TABLE; listed in information_schema.tables as FOREIGN, pg_class relkind f;
- projections, filters and LIMIT pushed down (EXPLAIN shows the remote query); results equal
  the source's;
- a full load (CREATE TABLE AS) and an incremental load by watermark (MERGE ... WHERE
  updated_at > max(updated_at)), compared row for row;
- a table of 300,000 rows streamed;
- a non-administrator cannot create servers (42501), reads foreign tables through its
  grants and row filters, and through its own user mapping (else PUBLIC's, never another
  user's: 42704);
- DROP SERVER without CASCADE refuses (2BP01), with CASCADE drops the foreign tables;
- the source accepts TLS only: the default sslmode (prefer) and verify-full with sslrootcert
  connect; disable and verify-full against another root are refused with 08006.

usage: fdw.py path/to/lakegate
"""
import os
import subprocess
import sys

import psycopg

from cdc import PASSWORD, SECRET, Lakegate, Source, temp_root


def refused(conn, sql, error, why):
    """`sql` fails on `conn` with `error` (a psycopg.errors class); `why` when it does not."""
    try:
        conn.execute(sql)
    except error as e:
        return e
    raise AssertionError(why)


def main():
    root = temp_root()
    src_pg = Source(root, tls=True)
    pwfile = os.path.join(root, "pgpw")
    # A governed user: reads shop.* with a row filter on region.
    policies = os.path.join(root, "policies")
    os.makedirs(policies)
    with open(os.path.join(policies, "fdw.toml"), "w") as f:
        f.write("""
[[grant]]
to = "analyst"
on = "src.*"
actions = ["read"]

[[grant]]
to = "analyst"
on = "lake.*"
actions = ["read"]

[[row_filter]]
name = "eu_only"
table = "src.orders"
to = "analyst"
filter = "region = 'eu'"
""")
    os.environ["LAKEGATE__POLICY__DIR"] = policies
    os.environ["LAKEGATE__AUTH__USERS"] = '[{name="analyst",password_env="ANALYST_PW"}]'
    os.environ["ANALYST_PW"] = "analyst-pw"
    os.environ["LAKEGATE__DEMO__ENABLED"] = "false"
    lg = Lakegate(root, sys.argv[1])
    lg.start()
    try:
        src = psycopg.connect(src_pg.url(), autocommit=True)
        src.execute("""
            CREATE TABLE public.orders (id int PRIMARY KEY, region text, amount numeric(10,2),
                                        updated_at timestamp, tags text[], paid boolean);
            INSERT INTO public.orders SELECT g, CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END,
                   g * 1.25, TIMESTAMP '2024-01-01' + g * interval '1 minute',
                   ARRAY['t' || g], g % 2 = 0
              FROM generate_series(1, 1000) g;
            CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 300000) g;
            CREATE TABLE public.other (x int);
        """)
        lake = lg.connect()
        lake.execute("CREATE SCHEMA src")
        lake.execute("CREATE SCHEMA lake")
        lake.execute(f"CREATE SERVER shop FOREIGN DATA WRAPPER postgres_fdw "
                     f"OPTIONS (host '127.0.0.1', port '{src_pg.port}', dbname 'postgres')")
        lake.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER shop "
                     f"OPTIONS (user 'postgres', password_file '{pwfile}')")
        lake.execute("IMPORT FOREIGN SCHEMA public LIMIT TO (orders, big) FROM SERVER shop INTO src")
        lake.execute("CREATE FOREIGN TABLE src.other_t (x int) SERVER shop "
                     "OPTIONS (schema_name 'public', table_name 'other')")
        kinds = lake.execute("SELECT table_name, table_type FROM information_schema.tables "
                             "WHERE table_schema = 'src' ORDER BY 1").fetchall()
        assert kinds == [("big", "FOREIGN"), ("orders", "FOREIGN"), ("other_t", "FOREIGN")], kinds
        relkind = lake.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE c.relname = 'orders' AND n.nspname = 'src'").fetchall()
        assert relkind == [("f",)], relkind
        print("servers, mappings, IMPORT FOREIGN SCHEMA, CREATE FOREIGN TABLE: listed as foreign tables")

        # Pushdown: EXPLAIN shows the remote query with the projection, filter and limit.
        plan = "\n".join(r[-1] for r in lake.execute(
            "EXPLAIN SELECT id, amount FROM src.orders WHERE region = 'eu' AND id > 10 LIMIT 5").fetchall())
        assert "remote_query=SELECT" in plan and "WHERE" in plan and "LIMIT 5" in plan, plan
        assert "region" in plan.split("remote_query=")[1], plan
        q = "SELECT id, amount, CAST(updated_at AS TEXT), CAST(tags AS TEXT), paid FROM {} WHERE region = 'eu' AND id > 10 ORDER BY id"
        a = src.execute(q.format("public.orders")).fetchall()
        b = lake.execute(q.format("src.orders")).fetchall()
        assert a == b, (a[:3], b[:3])
        n = lake.execute("SELECT count(*) FROM src.big WHERE id % 7 = 0").fetchone()[0]
        assert n == 300000 // 7, n
        print(f"pushdown shown by EXPLAIN; filtered rows equal the source's; 300,000 rows streamed ({n} matched)")

        # Full load, then an incremental load by watermark.
        lake.execute("CREATE TABLE lake.orders AS SELECT * FROM src.orders")
        src.execute("UPDATE public.orders SET amount = amount + 1, updated_at = TIMESTAMP '2030-01-01' WHERE id <= 20")
        src.execute("INSERT INTO public.orders SELECT g, 'eu', g, TIMESTAMP '2030-01-02', ARRAY['n'], true "
                    "FROM generate_series(1001, 1010) g")
        lake.execute("""
            MERGE INTO lake.orders t
            USING (SELECT * FROM src.orders WHERE updated_at > (SELECT max(updated_at) FROM lake.orders)) s
            ON t.id = s.id
            WHEN MATCHED THEN UPDATE SET region = s.region, amount = s.amount, updated_at = s.updated_at,
                                         tags = s.tags, paid = s.paid
            WHEN NOT MATCHED THEN INSERT (id, region, amount, updated_at, tags, paid)
                 VALUES (s.id, s.region, s.amount, s.updated_at, s.tags, s.paid)""")
        q = "SELECT id, region, amount, CAST(updated_at AS TEXT), paid FROM {} ORDER BY id"
        a = src.execute(q.format("public.orders")).fetchall()
        b = lake.execute(q.format("lake.orders")).fetchall()
        assert a == b, [x for x in a if x not in b][:3]
        print(f"full load and incremental load by watermark: {len(b)} rows equal the source's")

        # Governance: only administrators manage servers; a governed user reads foreign tables
        # through its grants and row filter.
        analyst = psycopg.connect(f"postgresql://analyst:analyst-pw@127.0.0.1:{lg.port}/lakegate", autocommit=True)
        refused(analyst, "CREATE SERVER x FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h')",
                psycopg.errors.InsufficientPrivilege, "a non-administrator created a server")
        regions = analyst.execute("SELECT DISTINCT region FROM src.orders").fetchall()
        assert regions == [("eu",)], regions
        print("non-administrators: 42501 on CREATE SERVER; foreign rows through their row filter")

        # User mappings as postgres_fdw: the querying user's own, else PUBLIC's.
        lake.execute("CREATE USER MAPPING FOR analyst SERVER shop OPTIONS (user 'nobody', password 'x')")
        e = refused(analyst, "SELECT count(*) FROM src.orders", psycopg.errors.ConnectionFailure,
                    "the analyst's own mapping was not used")
        assert "nobody" in str(e), e
        assert lake.execute("SELECT count(*) FROM src.orders").fetchone()[0] > 0
        lake.execute("DROP USER MAPPING FOR analyst SERVER shop")
        assert analyst.execute("SELECT count(*) FROM src.orders").fetchone()[0] > 0
        lake.execute(f"CREATE SERVER own FOREIGN DATA WRAPPER postgres_fdw "
                     f"OPTIONS (host '127.0.0.1', port '{src_pg.port}', dbname 'postgres')")
        lake.execute(f"CREATE USER MAPPING FOR lakegate SERVER own OPTIONS (user 'postgres', password_file '{pwfile}')")
        lake.execute("CREATE FOREIGN TABLE src.own_t (x int) SERVER own OPTIONS (schema_name 'public', table_name 'other')")
        assert lake.execute("SELECT count(*) FROM src.own_t").fetchone()[0] == 0
        refused(analyst, "SELECT count(*) FROM src.own_t", psycopg.errors.UndefinedObject,
                "another user's mapping was used")
        lake.execute("DROP SERVER own CASCADE")
        print("user mappings: the querying user's own, else PUBLIC's; another user's never (42704)")

        # Credentials never shown; DROP SERVER needs CASCADE while tables depend on it.
        shown = str(lake.execute("SELECT * FROM lakegate.audit_log").fetchall())
        assert SECRET not in shown
        refused(lake, "DROP SERVER shop", psycopg.errors.DependentObjectsStillExist,
                "DROP SERVER without CASCADE dropped a server with tables")
        lake.execute("DROP SERVER shop CASCADE")
        left = lake.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'src'").fetchone()[0]
        assert left == 0, left
        print("DROP SERVER: 2BP01 without CASCADE; CASCADE drops the foreign tables")

        # TLS: verify-full against the source's certificate connects; disable, or a root that
        # did not sign it, is refused (08006), with the reason.
        other = os.path.join(root, "other.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", os.path.join(root, "other.key"),
                        "-out", other], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, opts, ok in [("v", f"sslmode 'verify-full', sslrootcert '{src_pg.cert}'", True),
                               ("d", "sslmode 'disable'", False),
                               ("w", f"sslmode 'verify-full', sslrootcert '{other}'", False)]:
            lake.execute(f"CREATE SERVER {name} FOREIGN DATA WRAPPER postgres_fdw "
                         f"OPTIONS (host '127.0.0.1', port '{src_pg.port}', dbname 'postgres', {opts})")
            lake.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {name} "
                         f"OPTIONS (user 'postgres', password_file '{pwfile}')")
            try:
                lake.execute(f"CREATE FOREIGN TABLE src.t_{name} (x int) SERVER {name} "
                             "OPTIONS (schema_name 'public', table_name 'other')")
                n = lake.execute(f"SELECT count(*) FROM src.t_{name}").fetchone()[0]
                assert ok and n == 0, (name, n)
            except psycopg.errors.ConnectionFailure as e:
                assert not ok, (name, e)
                print(f"  {opts.split(',')[0]}: {e}")
            lake.execute(f"DROP SERVER {name} CASCADE")
        print("TLS to the source: prefer and verify-full connect; disable and a wrong root: 08006")
        _ = PASSWORD
        lg.stop()
    finally:
        try:
            lg.kill()
        except Exception:  # noqa: BLE001
            pass
        src_pg.stop("immediate")


if __name__ == "__main__":
    main()
