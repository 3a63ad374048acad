"""psycopg 3 (text and binary), psycopg2 and asyncpg against a running lakegate (PG* env vars)."""
import asyncio
import datetime
import decimal
import os
import uuid

import asyncpg
import psycopg
import psycopg2

URL = "postgresql://{PGUSER}:{PGPASSWORD}@{PGHOST}:{PGPORT}/{PGDATABASE}".format(**os.environ)
ROW = (
    1, "a", decimal.Decimal("1.25"), datetime.datetime(2024, 1, 2, 3, 4, 5),
    datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), datetime.date(2024, 1, 2),
    uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), {"a": 1}, b"\x00\x01", 1.5, True,
)


def psycopg3():
    with psycopg.connect(URL, autocommit=True) as c:
        c.execute(
            "CREATE TABLE py (id BIGINT NOT NULL, name TEXT, price NUMERIC(10,2), at TIMESTAMP, tz TIMESTAMPTZ, "
            "d DATE, u UUID, j JSONB, b BYTEA, f DOUBLE PRECISION, ok BOOLEAN)"
        )
        params = ROW[:7] + (psycopg.types.json.Jsonb(ROW[7]),) + ROW[8:]
        c.execute("INSERT INTO py VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", params)
        assert c.execute("SELECT * FROM py").fetchone() == ROW
        cur = c.cursor(binary=True)
        assert cur.execute("SELECT * FROM py WHERE id = %s", (1,)).fetchone() == ROW
        try:
            c.execute("SELECT * FROM no_such_table")
            raise AssertionError("expected an error")
        except psycopg.errors.UndefinedTable:
            pass
        assert c.execute("SELECT 1").fetchone() == (1,)


def psycopg2_check():
    c = psycopg2.connect(URL)
    cur = c.cursor()
    cur.execute("SELECT id, name, price FROM py")
    assert cur.fetchall() == [(1, "a", decimal.Decimal("1.25"))]
    c.commit()
    c.close()


async def asyncpg_check():
    conn = await asyncpg.connect(URL)
    rows = await conn.fetch("SELECT * FROM py WHERE id = $1", 1)
    assert tuple(rows[0].values())[:7] == ROW[:7], rows
    assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
    async with conn.transaction():
        n = 0
        async for _ in conn.cursor("SELECT * FROM demo.orders", prefetch=50):
            n += 1
        assert n == 800, n
    await conn.close()


psycopg3()
psycopg2_check()
asyncio.run(asyncpg_check())
print("python clients ok")
