#!/usr/bin/env python3
"""CDC from a real PostgreSQL 15 into Lakegate, exactly once under faults.

Starts its own PostgreSQL 15 (wal_level = logical) and Lakegate (the binary given) on loopback
ports in a temp folder. Then, over psycopg:
- tables with every OLTP type (integers, numeric with scale, text/varchar/char, bool, bytea,
  date/time/timestamp/timestamptz, uuid, json/jsonb, an enum, one-dimensional arrays), one
  keyed by a replica identity FULL and no key; a publication; CREATE SUBSCRIPTION in mirror
  mode, a second one in changelog mode and a third in changelog mode into Iceberg tables;
- inserts, updates (key changes too), deletes, TRUNCATE, multi-table transactions;
- a schema change (ADD COLUMN, DROP COLUMN) mid-stream;
- Lakegate killed with SIGKILL while a writer streams transactions, and restarted; the source
  PostgreSQL restarted mid-stream;
- after catching up, every target table equals its source table row for row (a checksum
  query on both sides), no duplicates, nothing missing; pg_subscription never shows the
  password; DROP SUBSCRIPTION drops the slot.

usage: cdc.py path/to/lakegate
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

PGBIN = "/usr/lib/postgresql/15/bin"
PASSWORD = "cdc-test-pw"
SECRET = "s3cret-source-pw"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_as_postgres(args):
    if os.getuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


class Source:
    """A PostgreSQL 15 of its own. tls=True: TLS only (a self-signed certificate for
    127.0.0.1 in `self.cert`; connections without TLS are rejected)."""

    def __init__(self, root, settings="", tls=False):
        self.settings = settings
        self.dir = os.path.join(root, "pg")
        os.makedirs(self.dir)
        if os.getuid() == 0:
            subprocess.run(["chown", "postgres", self.dir], check=True)
        self.port = free_port()
        pwfile = os.path.join(root, "pgpw")
        with open(pwfile, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(pwfile, 0o644)
        run_as_postgres([f"{PGBIN}/initdb", "-D", f"{self.dir}/data", "-U", "postgres",
                         "--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={pwfile}",
                         "-E", "UTF8"])
        if tls:
            self.cert = os.path.join(root, "source.crt")
            key = os.path.join(self.dir, "source.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", key, "-out", self.cert], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.chmod(key, 0o600)
            if os.getuid() == 0:
                subprocess.run(["chown", "postgres", key], check=True)
            hba = f"{self.dir}/data/pg_hba.conf"
            with open(hba) as f:
                rules = f.read()
            with open(hba, "w") as f:
                f.write("hostnossl all all 0.0.0.0/0 reject\n" + rules)
            self.settings += f" -c ssl=on -c ssl_cert_file={self.cert} -c ssl_key_file={key}"
        self.start()

    def start(self):
        run_as_postgres([f"{PGBIN}/pg_ctl", "-D", f"{self.dir}/data", "-w", "-l", f"{self.dir}/log",
                         "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                               "-c wal_level=logical -c max_wal_senders=20 -c max_replication_slots=20 "
                               "-c timezone=UTC -c fsync=off " + self.settings, "start"])

    def stop(self, mode="fast"):
        run_as_postgres([f"{PGBIN}/pg_ctl", "-D", f"{self.dir}/data", "-m", mode, "-w", "stop"])

    def url(self):
        return f"postgresql://postgres:{SECRET}@127.0.0.1:{self.port}/postgres"


class Lakegate:
    def __init__(self, root, binary):
        self.bin = binary
        self.wh = os.path.join(root, "wh")
        self.log = open(os.path.join(root, "lakegate.log"), "ab")
        self.proc = None
        self.port = None

    def start(self):
        env = dict(os.environ, LAKEGATE_PASSWORD=PASSWORD, RUST_LOG="info")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.wh],
            env=env, stdout=subprocess.PIPE, stderr=self.log)
        for line in self.proc.stdout:
            line = line.decode(errors="replace")
            self.log.write(line.encode())
            if "listening on 127.0.0.1:" in line:
                self.port = int(re.match(r"\d+", line.split("listening on 127.0.0.1:")[1]).group(0))
                break
        threading.Thread(target=lambda: [self.log.write(l) for l in self.proc.stdout], daemon=True).start()
        assert self.port, "lakegate did not start"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()

    def connect(self):
        return psycopg.connect(f"postgresql://lakegate:{PASSWORD}@127.0.0.1:{self.port}/lakegate",
                               autocommit=True)


SCHEMA = """
CREATE TYPE mood AS ENUM ('ok', 'sad', 'happy');
CREATE SCHEMA shop;
CREATE TABLE shop.orders (
  id int PRIMARY KEY, customer bigint, small smallint, amount numeric(12,2), rate double precision,
  ratio real, note text, code varchar(10), grade char(2), paid boolean, blob bytea, day date,
  at_time time, made timestamp, made_tz timestamptz, ref uuid, doc json, docb jsonb, feel mood,
  tags text[], nums int[]);
CREATE TABLE shop.items (order_id int, line int, qty int, PRIMARY KEY (order_id, line));
CREATE TABLE shop.events (kind text, payload text);
ALTER TABLE shop.events REPLICA IDENTITY FULL;
CREATE PUBLICATION lake FOR TABLE shop.orders, shop.items, shop.events;
"""

ORDER_COLS = ("id, customer, small, amount, rate, ratio, note, code, grade, paid, blob, day, at_time, made, "
              "made_tz, ref, doc, docb, feel, tags, nums")


def order_values(i):
    return (f"({i}, {i * 7919}, {i % 300}, {i}.{i % 100:02d}, {i / 3.0}, {i % 17}.5, 'note {i} ''q''', 'c{i % 1000}', "
            f"'g{i % 10}', {str(i % 2 == 0).lower()}, '\\x{i:08x}', DATE '2024-01-01' + {i % 365}, "
            f"TIME '10:00:00' + interval '{i % 3600} seconds', TIMESTAMP '2024-01-01 00:00:00' + interval '{i} minutes', "
            f"TIMESTAMPTZ '2024-01-01 00:00:00+02' + interval '{i} seconds', md5('{i}')::uuid, "
            f"'{{\"i\": {i}}}', '{{\"k\": [{i}, \"x\"]}}', '{['ok', 'sad', 'happy'][i % 3]}', "
            f"ARRAY['a{i}', 'b c', NULL], ARRAY[{i}, {i + 1}])")


def rows_text(conn, table, cols, order):
    q = f"SELECT {', '.join(f'CAST({c} AS TEXT)' for c in cols)} FROM {table} ORDER BY {order}"
    return sorted(tuple("<null>" if v is None else v for v in r) for r in conn.execute(q).fetchall())


COMPARED = {
    # Columns compared as text: those whose text form both sides print alike.
    "shop.orders": (["id", "customer", "small", "amount", "note", "code", "grade", "paid", "day",
                     "made", "ref", "feel", "tags", "nums"], "id"),
    "shop.items": (["order_id", "line", "qty"], "order_id, line"),
    "shop.events": (["kind", "payload"], "kind, payload"),
}


def wait_caught_up(src, lake, timeout=180):
    """Until every compared table is equal on both sides (or the timeout)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            same = True
            for t, (cols, order) in COMPARED.items():
                a = rows_text(src, t, cols, order)
                b = rows_text(lake, t, cols, order)
                if a != b:
                    same = False
                    last = (t, len(a), len(b), [x for x in a if x not in b][:2], [x for x in b if x not in a][:2])
                    break
            if same:
                return
        except psycopg.Error as e:
            last = str(e)
        time.sleep(1)
    status = lake.execute("SELECT subscription, source_table, state, last_error FROM lakegate.subscriptions").fetchall()
    raise AssertionError(f"not caught up: {last}; status {status}")


def writer(url, start, count, stop, errors):
    """A stream of multi-table transactions on the source."""
    try:
        with psycopg.connect(url, autocommit=True) as c:
            i = start
            while i < start + count and not stop.is_set():
                with c.transaction():
                    c.execute(f"INSERT INTO shop.orders ({ORDER_COLS}) VALUES {order_values(i)}")
                    c.execute("INSERT INTO shop.items VALUES (%s, 1, %s), (%s, 2, 1)", (i, i % 9, i))
                    c.execute("UPDATE shop.orders SET amount = amount + 1, note = note || '+' WHERE id = %s", (i - 50,))
                    c.execute("DELETE FROM shop.items WHERE order_id = %s AND line = 2", (i - 30,))
                    c.execute("INSERT INTO shop.events VALUES ('w', %s)", (str(i),))
                i += 1
    except Exception as e:  # noqa: BLE001 (reported by the main thread)
        errors.append(e)


def temp_root():
    root = tempfile.mkdtemp(prefix="lakegate-cdc-")
    os.chmod(root, 0o755)  # the postgres OS user reads its folder below
    return root


def main():
    root = temp_root()
    src_pg = Source(root)
    lg = Lakegate(root, sys.argv[1])
    lg.start()
    try:
        src = psycopg.connect(src_pg.url(), autocommit=True)
        src.execute(SCHEMA)
        src.execute(f"INSERT INTO shop.orders ({ORDER_COLS}) VALUES " + ", ".join(order_values(i) for i in range(1, 2001)))
        src.execute("INSERT INTO shop.items SELECT g, l, g % 5 FROM generate_series(1, 2000) g, generate_series(1, 3) l")
        src.execute("INSERT INTO shop.events VALUES ('a', '1'), ('a', '1'), ('b', NULL)")
        lake = lg.connect()
        pwfile = os.path.join(root, "pgpw")
        lake.execute(
            f"CREATE SUBSCRIPTION lake CONNECTION 'host=127.0.0.1 port={src_pg.port} dbname=postgres "
            f"user=postgres password={SECRET}' PUBLICATION lake WITH (max_latency = '300ms')")
        lake.execute(
            f"CREATE SUBSCRIPTION bronze CONNECTION 'host=127.0.0.1 port={src_pg.port} dbname=postgres "
            f"user=postgres' PUBLICATION lake WITH (mode = 'changelog', target_schema = 'bronze', "
            f"password_file = '{pwfile}', copy_data = false)")
        # An Iceberg changelog (appends only), with the initial copy: its position lives in the
        # snapshot summary. A mirror needs row-level changes: refused for Iceberg.
        try:
            lake.execute(
                f"CREATE SUBSCRIPTION icemirror CONNECTION 'host=127.0.0.1 port={src_pg.port} "
                f"dbname=postgres user=postgres' PUBLICATION lake WITH (format = 'iceberg', connect = false)")
            raise AssertionError("an Iceberg mirror subscription was accepted")
        except psycopg.errors.FeatureNotSupported:
            pass
        lake.execute(
            f"CREATE SUBSCRIPTION icelog CONNECTION 'host=127.0.0.1 port={src_pg.port} dbname=postgres "
            f"user=postgres' PUBLICATION lake WITH (mode = 'changelog', format = 'iceberg', "
            f"target_schema = 'ice', password_file = '{pwfile}', max_latency = '300ms')")
        wait_caught_up(src, lake)
        print("initial copy: equal")

        # Credentials are never shown.
        shown = str(lake.execute("SELECT * FROM pg_subscription").fetchall())
        shown += str(lake.execute("SELECT * FROM lakegate.subscriptions").fetchall())
        assert SECRET not in shown, shown
        assert "lake" in shown and "bronze" in shown
        # pg_stat_subscription: the running workers have a pid, as PostgreSQL's apply workers.
        pids = lake.execute("SELECT subname, pid IS NOT NULL FROM pg_stat_subscription ORDER BY 1").fetchall()
        assert pids == [("bronze", True), ("icelog", True), ("lake", True)], pids

        # Row changes of every kind, with multi-table transactions.
        with src.transaction():
            src.execute(f"INSERT INTO shop.orders ({ORDER_COLS}) VALUES {order_values(5000)}")
            src.execute("UPDATE shop.orders SET id = 6000 WHERE id = 7")  # a key change
            src.execute("UPDATE shop.orders SET tags = ARRAY['x'], nums = NULL, note = NULL WHERE id BETWEEN 10 AND 20")
            src.execute("DELETE FROM shop.orders WHERE id BETWEEN 30 AND 40")
            src.execute("DELETE FROM shop.items WHERE order_id < 100")
        src.execute("UPDATE shop.events SET payload = 'two' WHERE kind = 'b'")
        src.execute("DELETE FROM shop.events WHERE kind = 'a'")
        src.execute("INSERT INTO shop.events VALUES ('a', '1')")
        src.execute("TRUNCATE shop.items")
        src.execute("INSERT INTO shop.items SELECT g, 1, 1 FROM generate_series(1, 500) g")
        wait_caught_up(src, lake)
        print("inserts, updates, key change, deletes, truncate: equal")

        # A schema change mid-stream: a new column arrives; a dropped one receives NULL.
        src.execute("ALTER TABLE shop.items ADD COLUMN note text")
        src.execute("UPDATE shop.items SET note = 'n' || order_id WHERE order_id <= 10")
        COMPARED["shop.items"] = (["order_id", "line", "qty", "note"], "order_id, line")
        wait_caught_up(src, lake)
        src.execute("ALTER TABLE shop.items DROP COLUMN note")
        src.execute("INSERT INTO shop.items VALUES (9999, 1, 1)")
        COMPARED["shop.items"] = (["order_id", "line", "qty"], "order_id, line")
        wait_caught_up(src, lake)
        dropped = lake.execute("SELECT note FROM shop.items WHERE order_id = 9999").fetchall()
        assert dropped == [(None,)], dropped
        print("schema change (add column, drop column): equal")

        # Kill -9 while a writer runs; restart; then restart the source mid-stream.
        stop, errors = threading.Event(), []
        w = threading.Thread(target=writer, args=(src_pg.url(), 10000, 1500, stop, errors))
        w.start()
        time.sleep(3)
        lg.kill()
        print("lakegate killed (SIGKILL) mid-stream")
        time.sleep(1)
        lg.start()
        lake = lg.connect()
        time.sleep(3)
        w.join()
        assert not errors, errors
        wait_caught_up(src, lake)
        print("after SIGKILL and restart: equal")
        src.close()
        src_pg.stop("immediate")
        time.sleep(2)
        src_pg.start()
        src = psycopg.connect(src_pg.url(), autocommit=True)
        stop, errors = threading.Event(), []
        w = threading.Thread(target=writer, args=(src_pg.url(), 20000, 400, stop, errors))
        w.start()
        w.join()
        assert not errors, errors
        wait_caught_up(src, lake)
        print("after the source's restart: equal")

        # The changelog holds every change once: as many rows per source transaction id as it has.
        n = lake.execute("SELECT count(*) FROM bronze.events").fetchone()[0]
        expected = src.execute("SELECT count(*) FROM shop.events WHERE kind = 'w'").fetchone()[0]
        # Every writer transaction inserted one 'w' event: no duplicates, none missing.
        # The changelog subscription catches up on its own (after the source's restart it
        # reconnects with backoff): wait for it as for the mirror tables.
        deadline = time.time() + 180
        while True:
            winserts = lake.execute("SELECT count(*) FROM bronze.events WHERE _op = 'I' AND kind = 'w'").fetchone()[0]
            if winserts >= expected or time.time() > deadline:
                break
            time.sleep(1)
        assert winserts == expected, (winserts, expected)
        print(f"changelog: {n} rows, 'w' inserts {winserts} = source {expected}")

        # The Iceberg changelog: the initial copy once, then every 'w' insert once.
        deadline = time.time() + 180
        while True:
            ice = lake.execute("SELECT count(*), count(DISTINCT payload) FROM ice.events "
                               "WHERE _op = 'I' AND kind = 'w'").fetchone()
            if ice[0] >= expected or time.time() > deadline:
                break
            time.sleep(1)
        assert ice == (expected, expected), (ice, expected)
        copied = lake.execute("SELECT count(*), count(DISTINCT id) FROM ice.orders WHERE _op IS NULL").fetchone()
        assert copied == (2000, 2000), copied
        fmt = lake.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ice'").fetchone()[0]
        assert fmt == 3, fmt
        print(f"Iceberg changelog: initial copy {copied[0]} rows once, 'w' inserts {ice[0]} = source {expected}")

        # The status shows each table streaming.
        status = lake.execute("SELECT source_table, state FROM lakegate.subscriptions WHERE subscription = 'lake'").fetchall()
        assert all(s == "streaming" for _, s in status), status
        lake.execute("DROP SUBSCRIPTION icelog")
        lake.execute("DROP SUBSCRIPTION bronze")
        lake.execute("DROP SUBSCRIPTION lake")
        slots = src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0]
        assert slots == 0, slots
        print("DROP SUBSCRIPTION dropped the slots")
        lg.stop()
    finally:
        try:
            lg.kill()
        except Exception:  # noqa: BLE001
            pass
        try:
            src_pg.stop("immediate")
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    main()
