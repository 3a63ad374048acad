"""Open-table interop: tables Lakegate writes are read by DuckDB (delta and iceberg extensions
loaded from their PyPI wheels, nothing downloaded), pyiceberg and the deltalake package with the
same results; tables those engines write (appends, deletes, schema changes) are read by Lakegate
with the same results as the writer itself reads them.

Usage: interop.py WAREHOUSE_DIR  (PG* variables name the running server; it serves WAREHOUSE_DIR)
"""
import datetime
import decimal
import glob
import json
import os
import sys
import tempfile

import deltalake
import duckdb
import psycopg
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

WAREHOUSE = os.path.abspath(sys.argv[1])
URL = "postgresql://{PGUSER}:{PGPASSWORD}@{PGHOST}:{PGPORT}/{PGDATABASE}".format(**os.environ)


def norm(v):
    """One comparable text form per value, whichever engine produced it."""
    if v is None:
        return None
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, decimal.Decimal):
        return str(v.quantize(decimal.Decimal("0.01")))
    if isinstance(v, float):
        return repr(round(v, 6))
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.isoformat()
    if isinstance(v, datetime.date):
        return v.isoformat()
    return str(v)


def rows(seq):
    return sorted(tuple(norm(v) for v in r) for r in seq)


def arrow_rows(table, columns):
    d = table.select(columns).to_pylist()
    return rows([tuple(r[c] for c in columns) for r in d])


def lakegate(sql, *params):
    with psycopg.connect(URL, autocommit=True) as c:
        cur = c.execute(sql, params or None)
        return cur.fetchall() if cur.description else None


def check(name, got, want):
    if got != want:
        raise AssertionError(f"{name}:\n got  {got}\n want {want}")
    print(f"ok   interop: {name} ({len(got)} rows)")


def duck():
    import duckdb_extension_avro
    import duckdb_extension_delta
    import duckdb_extension_iceberg

    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    for mod, name in [
        (duckdb_extension_avro, "avro"),
        (duckdb_extension_iceberg, "iceberg"),
        (duckdb_extension_delta, "delta"),
    ]:
        path = glob.glob(
            os.path.join(os.path.dirname(mod.__file__), "extensions", "*", f"{name}.duckdb_extension")
        )[0]
        con.execute(f"LOAD '{path}'")
    return con


def location(schema, table):
    doc = json.load(open(os.path.join(WAREHOUSE, "_lakegate", "catalog.json")))
    loc = doc["schemas"][schema]["tables"][table]["location"]
    return loc[len("file://"):] if loc.startswith("file://") else loc


COLS = ["id", "name", "amount", "d", "ts", "ok"]
SELECT = "SELECT id, name, amount, d, ts, ok FROM {} "


def main():
    ice = SqlCatalog(
        "lakegate",
        uri=f"sqlite:///{WAREHOUSE}/_lakegate/iceberg.db",
        warehouse=f"file://{WAREHOUSE}",
    )
    con = duck()

    # 1. Lakegate writes a Delta and an Iceberg table with the same history.
    lakegate("CREATE SCHEMA interop")
    for fmt in ["delta", "iceberg"]:
        t = f"interop.{fmt[0]}"
        lakegate(
            f"CREATE TABLE {t} (id BIGINT NOT NULL, name TEXT, amount NUMERIC(10,2), d DATE, "
            f"ts TIMESTAMPTZ, ok BOOLEAN) USING {fmt}"
        )
        lakegate(
            f"INSERT INTO {t} VALUES (1, 'one', 1.50, '2026-01-01', '2026-01-01 10:00:00+00', true), "
            "(2, 'two', 2.25, '2026-02-01', '2026-02-01 11:30:00+00', false), "
            "(3, NULL, NULL, NULL, NULL, NULL)"
        )
        lakegate(f"INSERT INTO {t} SELECT id + 10, name, amount * 2, d, ts, ok FROM {t} WHERE id < 3")
    lakegate("UPDATE interop.d SET name = 'ONE' WHERE id = 1")
    lakegate("DELETE FROM interop.d WHERE id = 12")
    want_d = rows(lakegate(SELECT.format("interop.d")))
    want_i = rows(lakegate(SELECT.format("interop.i")))
    assert len(want_d) == 4 and len(want_i) == 5, (want_d, want_i)

    # 2. Others read what Lakegate wrote.
    d_loc = location("interop", "d")
    check("duckdb reads a Lakegate Delta table",
          rows(con.execute(f"SELECT {', '.join(COLS)} FROM delta_scan('{d_loc}')").fetchall()), want_d)
    check("deltalake reads a Lakegate Delta table",
          arrow_rows(deltalake.DeltaTable(d_loc).to_pyarrow_table(), COLS), want_d)
    it = ice.load_table(("interop", "i"))
    check("pyiceberg reads a Lakegate Iceberg table", arrow_rows(it.scan().to_arrow(), COLS), want_i)
    check("duckdb reads a Lakegate Iceberg table",
          rows(con.execute(f"SELECT {', '.join(COLS)} FROM iceberg_scan('{it.metadata_location}')").fetchall()),
          want_i)

    # 3. pyiceberg appends, deletes and evolves the schema of Lakegate's Iceberg table.
    with it.update_schema() as u:
        from pyiceberg.types import StringType
        u.add_column("extra", StringType())
    it = ice.load_table(("interop", "i"))
    arrow_schema = it.schema().as_arrow()
    batch = pa.Table.from_pylist(
        [{"id": 100, "name": "from pyiceberg", "amount": decimal.Decimal("9.99"),
          "d": datetime.date(2026, 3, 1),
          "ts": datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc),
          "ok": True, "extra": "x"}],
        schema=arrow_schema,
    )
    it.append(batch)
    it = ice.load_table(("interop", "i"))
    it.delete("id = 2")
    it = ice.load_table(("interop", "i"))
    cols = COLS + ["extra"]
    check("Lakegate reads pyiceberg's appends, deletes and new column",
          rows(lakegate("SELECT id, name, amount, d, ts, ok, extra FROM interop.i")),
          arrow_rows(it.scan().to_arrow(), cols))

    # 3b. Partition values Lakegate writes after schema changes are right for other readers.
    lakegate("CREATE TABLE interop.ip (id BIGINT, note TEXT, extra TEXT, region TEXT) USING iceberg PARTITIONED BY (region)")
    lakegate("INSERT INTO interop.ip (id, region) VALUES (1, 'EU'), (2, 'US')")
    lakegate("ALTER TABLE interop.ip DROP COLUMN extra")
    lakegate("ALTER TABLE interop.ip RENAME COLUMN region TO reg")
    lakegate("INSERT INTO interop.ip (id, note, reg) VALUES (3, 'n', 'EU')")
    ipt = ice.load_table(("interop", "ip"))
    check("pyiceberg prunes Lakegate's partitions by value after a drop and a rename",
          arrow_rows(ipt.scan(row_filter="reg = 'EU'").to_arrow(), ["id", "note", "reg"]),
          rows(lakegate("SELECT id, note, reg FROM interop.ip WHERE reg = 'EU'")))
    check("the partition values", sorted(str(f["partition"]) for f in ipt.inspect.files().to_pylist()),
          sorted(["{'region': 'EU'}", "{'region': 'US'}", "{'region': 'EU'}"]))

    # 4. A table pyiceberg creates in the shared catalog is found by name.
    made = ice.create_table(("interop", "py_made"), schema=pa.schema([("k", pa.int64()), ("v", pa.string())]))
    made.append(pa.Table.from_pylist([{"k": 1, "v": "a"}, {"k": 2, "v": "b"}],
                                     schema=made.schema().as_arrow()))
    check("Lakegate reads a table pyiceberg created", rows(lakegate("SELECT k, v FROM interop.py_made")),
          [("1", "a"), ("2", "b")])

    # 4b. An Iceberg table given by its metadata file is read in place (read-only).
    lakegate(f"CREATE EXTERNAL TABLE interop.ice_file STORED AS ICEBERG LOCATION '{made.metadata_location[len('file://'):]}'")
    check("Lakegate reads an Iceberg metadata file", rows(lakegate("SELECT k, v FROM interop.ice_file")),
          [("1", "a"), ("2", "b")])
    try:
        lakegate("INSERT INTO interop.ice_file VALUES (3, 'c')")
        raise AssertionError("an external Iceberg table must be read-only")
    except psycopg.errors.FeatureNotSupported:
        pass

    # 5. The deltalake package writes, evolves and deletes; Lakegate reads it in place.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dl")
        deltalake.write_deltalake(path, pa.table({"k": pa.array([1, 2, 3], pa.int64()),
                                                  "v": ["a", "b", "c"]}))
        lakegate(f"CREATE EXTERNAL TABLE interop.dl STORED AS DELTA LOCATION '{path}'")
        check("Lakegate reads a deltalake table", rows(lakegate("SELECT k, v FROM interop.dl")),
              arrow_rows(deltalake.DeltaTable(path).to_pyarrow_table(), ["k", "v"]))
        deltalake.write_deltalake(
            path, pa.table({"k": pa.array([4], pa.int64()), "v": ["d"], "w": [1.5]}),
            mode="append", schema_mode="merge")
        deltalake.DeltaTable(path).delete("k = 2")
        check("Lakegate reads deltalake's schema change and delete",
              rows(lakegate("SELECT k, v, w FROM interop.dl")),
              arrow_rows(deltalake.DeltaTable(path).to_pyarrow_table(), ["k", "v", "w"]))

        # 6. DuckDB writes Parquet; Lakegate reads the file in place.
        pq = os.path.join(tmp, "duck.parquet")
        con.execute(f"COPY (SELECT range AS k, 'v' || range AS v FROM range(50)) TO '{pq}' (FORMAT parquet)")
        lakegate(f"CREATE EXTERNAL TABLE interop.duck STORED AS PARQUET LOCATION '{pq}'")
        check("Lakegate reads DuckDB's Parquet", rows(lakegate("SELECT k, v FROM interop.duck")),
              rows(con.execute(f"SELECT k, v FROM '{pq}'").fetchall()))
        lakegate("DROP TABLE interop.dl")
        lakegate("DROP TABLE interop.duck")


if __name__ == "__main__":
    main()
