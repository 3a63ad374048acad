#!/usr/bin/env python3
"""A hostile client: malformed, truncated, oversized and random PostgreSQL protocol messages,
before and after authentication, against a running server. After every case the server must
still accept a new connection and answer `SELECT 1`; with --pid, its resident memory must stay
under --max-rss-mib. Seeded, and bounded by --seconds.

Usage: protocol_fuzz.py --port P [--host H] [--user U] [--password PW] [--seconds S]
                        [--seed N] [--pid PID] [--max-rss-mib M]
"""
import argparse
import random
import socket
import struct
import sys
import time

import scramp


def msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def startup(user: str, extra=()) -> bytes:
    body = struct.pack("!i", 196608) + cstr("user") + cstr(user) + cstr("database") + cstr("lakegate")
    for k, v in extra:
        body += cstr(k) + cstr(v)
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


class Conn:
    def __init__(self, host, port, timeout=10.0):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes):
        self.s.sendall(data)

    def read_msg(self):
        while len(self.buf) < 5:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        kind = self.buf[:1]
        (n,) = struct.unpack("!i", self.buf[1:5])
        while len(self.buf) < 1 + n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        body = self.buf[5 : 1 + n]
        self.buf = self.buf[1 + n :]
        return kind, body

    def until(self, kinds):
        """Messages up to one of `kinds`; returns (that kind, body, all seen)."""
        seen = []
        while True:
            k, b = self.read_msg()
            seen.append((k, b))
            if k in kinds:
                return k, b, seen

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def login(host, port, user, password) -> Conn:
    c = Conn(host, port)
    c.send(startup(user))
    k, b = c.read_msg()
    if k != b"R":
        raise RuntimeError(f"expected authentication, got {k!r} {b[:200]!r}")
    (code,) = struct.unpack("!i", b[:4])
    if code == 10:
        mechs = [m.decode() for m in b[4:].split(b"\0") if m]
        client = scramp.ScramClient([m for m in mechs if m == "SCRAM-SHA-256"], user, password)
        first = client.get_client_first().encode()
        c.send(msg(b"p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
        k, b = c.read_msg()
        client.set_server_first(b[4:].decode())
        c.send(msg(b"p", client.get_client_final().encode()))
        k, b = c.read_msg()
        if k == b"E":
            raise RuntimeError(f"login refused: {b!r}")
        client.set_server_final(b[4:].decode())
    elif code == 3:
        c.send(msg(b"p", cstr(password)))
    elif code != 0:
        raise RuntimeError(f"unsupported authentication {code}")
    k, b, _ = c.until([b"Z", b"E"])
    if k == b"E":
        raise RuntimeError(f"login failed: {b!r}")
    return c


def healthy(args) -> None:
    """A new connection logs in and answers SELECT 1, or the run fails."""
    c = login(args.host, args.port, args.user, args.password)
    try:
        c.send(msg(b"Q", cstr("SELECT 1")))
        k, b, seen = c.until([b"Z"])
        rows = [body for kind, body in seen if kind == b"D"]
        if not rows or not rows[0].endswith(b"1"):
            raise RuntimeError(f"SELECT 1 answered {seen!r}")
    finally:
        c.close()


def drain(c: Conn, seconds=2.0):
    """Read what the server answers until it closes, goes quiet, or says ReadyForQuery."""
    c.s.settimeout(seconds)
    try:
        while True:
            k, _ = c.read_msg()
            if k == b"Z":
                return "ready"
    except (ConnectionError, OSError):
        return "closed"
    except struct.error:
        return "garbled"


def pre_auth_cases():
    big = 0x7FFFFFFF
    return {
        "startup length 0": struct.pack("!i", 0),
        "startup length 3": struct.pack("!i", 3) + b"abc",
        "startup length 7": struct.pack("!i", 7) + b"\0\3\0\0",
        "startup length negative": struct.pack("!i", -5) + b"x" * 16,
        "startup length 2^31-1": struct.pack("!i", big) + b"x" * 64,
        "startup over 10000": struct.pack("!i", 20000) + b"\0\3\0\0" + b"a" * 19992,
        "startup bad version": struct.pack("!ii", 8, 0x00090000),
        "startup unterminated": struct.pack("!i", 20) + struct.pack("!i", 196608) + b"user" + b"x" * 8,
        "startup no user": startup("")[:4] + startup("")[4:],
        "startup 3000 params": startup("x", [(f"k{i}", "v") for i in range(900)]),
        "ssl request then garbage": struct.pack("!ii", 8, 80877103) + b"\x16\x03\x01garbage" * 10,
        "gss request": struct.pack("!ii", 8, 80877104),
        "cancel short": struct.pack("!ii", 12, 80877102) + b"\0\0\0\1",
        "cancel unknown": struct.pack("!iiii", 16, 80877102, 12345, 678),
        "password before startup": msg(b"p", cstr("x")),
        "random bytes": bytes(random.Random(7).randrange(256) for _ in range(4096)),
    }


def post_auth_cases():
    q = b"Q"
    return {
        "length 0": q + struct.pack("!i", 0),
        "length 3": q + struct.pack("!i", 3),
        "length negative": q + struct.pack("!i", -1) + b"SELECT 1\0",
        "length 2^31-1, body trickles": q + struct.pack("!i", 0x7FFFFFFF) + b"S" * 1024,
        "length 1GB+, body trickles": b"d" + struct.pack("!i", 0x40000010) + b"S" * 1024,
        "unknown message type": msg(b"\xff", b"abc"),
        "query unterminated": msg(q, b"SELECT 1"),
        "query empty": msg(q, b""),
        "query not utf8": msg(q, b"SELECT '\xff\xfe'\0"),
        "query with NUL inside": msg(q, b"SELECT 1\0SELECT 2\0"),
        "parse unterminated name": msg(b"P", b"stmt"),
        "parse negative param count": msg(b"P", cstr("s") + cstr("SELECT $1") + struct.pack("!h", -1)),
        "parse 30000 param types": msg(b"P", cstr("s") + cstr("SELECT $1") + struct.pack("!h", 30000)),
        "parse bogus type oids": msg(b"P", cstr("") + cstr("SELECT $1") + struct.pack("!hi", 1, -7)) + msg(b"S", b""),
        "bind to nothing": msg(b"B", cstr("") + cstr("nope") + struct.pack("!hhh", 0, 0, 0)) + msg(b"S", b""),
        "bind negative lengths": msg(b"P", cstr("s1") + cstr("SELECT $1::int") + struct.pack("!h", 0))
        + msg(b"B", cstr("") + cstr("s1") + struct.pack("!hhhi", 0, 1, 0, -7)) + msg(b"S", b""),
        "bind huge value length": msg(b"P", cstr("s2") + cstr("SELECT $1::text") + struct.pack("!h", 0))
        + msg(b"B", cstr("") + cstr("s2") + struct.pack("!hhhi", 0, 1, 0, 0x7FFFFFF0) + b"x" * 10)
        + msg(b"S", b""),
        "bind format count mismatch": msg(b"P", cstr("s3") + cstr("SELECT $1::int") + struct.pack("!h", 0))
        + msg(b"B", cstr("") + cstr("s3") + struct.pack("!hhhhh", 5, 1, 1, 1, 1) + struct.pack("!h", 0))
        + msg(b"S", b""),
        "bind binary garbage int": msg(b"P", cstr("s4") + cstr("SELECT $1::int") + struct.pack("!h", 1) + struct.pack("!i", 23))
        + msg(b"B", cstr("") + cstr("s4") + struct.pack("!hhhi", 1, 1, 1, 3) + b"abc" + struct.pack("!h", 0))
        + msg(b"E", cstr("") + struct.pack("!i", 0)) + msg(b"S", b""),
        "bind binary garbage numeric": msg(b"P", cstr("s5") + cstr("SELECT $1::numeric") + struct.pack("!h", 1) + struct.pack("!i", 1700))
        + msg(b"B", cstr("") + cstr("s5") + struct.pack("!hhhi", 1, 1, 1, 8) + struct.pack("!hhhh", 30000, -30000, 0x4000, 20000) + struct.pack("!h", 0))
        + msg(b"E", cstr("") + struct.pack("!i", 0)) + msg(b"S", b""),
        "bind binary garbage timestamp": msg(b"P", cstr("s6") + cstr("SELECT $1::timestamp") + struct.pack("!h", 1) + struct.pack("!i", 1114))
        + msg(b"B", cstr("") + cstr("s6") + struct.pack("!hhhi", 1, 1, 1, 8) + struct.pack("!q", 0x7FFFFFFFFFFFFFFF) + struct.pack("!h", 0))
        + msg(b"E", cstr("") + struct.pack("!i", 0)) + msg(b"S", b""),
        "bind binary array garbage": msg(b"P", cstr("s7") + cstr("SELECT $1::int[]") + struct.pack("!h", 1) + struct.pack("!i", 1007))
        + msg(b"B", cstr("") + cstr("s7") + struct.pack("!hhhi", 1, 1, 1, 20) + struct.pack("!iiiii", 1000, 0, 23, 0x7FFFFFFF, 1) + struct.pack("!h", 0))
        + msg(b"E", cstr("") + struct.pack("!i", 0)) + msg(b"S", b""),
        "execute unknown portal": msg(b"E", cstr("nope") + struct.pack("!i", 0)) + msg(b"S", b""),
        "execute negative rows": msg(b"P", cstr("") + cstr("SELECT 1") + struct.pack("!h", 0))
        + msg(b"B", cstr("") + cstr("") + struct.pack("!hhh", 0, 0, 0)) + msg(b"E", cstr("") + struct.pack("!i", -5)) + msg(b"S", b""),
        "describe bad kind": msg(b"D", b"X" + cstr("x")) + msg(b"S", b""),
        "close bad kind": msg(b"C", b"Z" + cstr("x")) + msg(b"S", b""),
        "copy data outside copy": msg(b"d", b"1,2\n") + msg(b"c", b"") + msg(b"S", b""),
        "copy fail outside copy": msg(b"f", cstr("no")) + msg(b"S", b""),
        "function call": msg(b"F", struct.pack("!ihhih", 1598, 0, 1, 4, 0) + b"\0\0\0\0" + struct.pack("!h", 0)),
        "password after login": msg(b"p", cstr("again")) + msg(b"S", b""),
        "sync flood": msg(b"S", b"") * 5000,
        "flush flood": msg(b"H", b"") * 5000,
        "10000 prepared statements": b"".join(
            msg(b"P", cstr(f"p{i}") + cstr("SELECT 1") + struct.pack("!h", 0)) for i in range(10000)
        ) + msg(b"S", b""),
        "terminate mid-batch": msg(b"P", cstr("") + cstr("SELECT 1") + struct.pack("!h", 0)) + msg(b"X", b""),
    }


def statement_cases():
    """Hostile statements: each must fail or run, never take the server down or its memory up."""
    q = lambda sql: msg(b"Q", cstr(sql))  # noqa: E731
    return {
        "20000-arm UNION": q("SELECT 1" + " UNION ALL SELECT 1" * 20000),
        "20000 nested parentheses": q("SELECT " + "(" * 20000 + "1" + ")" * 20000),
        "20000 nested subqueries": q("SELECT * FROM " + "(SELECT * FROM " * 20000 + "(SELECT 1 AS x) AS t" + ") AS t" * 20000),
        "100000-term sum": q("SELECT 1" + "+1" * 100000),
        "lpad to 2 GB": q("SELECT lpad('a', 2147483647)"),
        "repeat to 1.2 GB": q("SELECT repeat('abc', 400000000)"),
        "string_agg to 1.1 GB": q("SELECT length(string_agg(repeat('x', 1000000), ',')) FROM generate_series(1, 1100)"),
        "cross join count": q("SET statement_timeout = '20s'; SELECT count(*) FROM generate_series(1,100000) a, generate_series(1,100000) b"),
        "5000 statements in one message": q(";".join(["SELECT repeat('x', 100000)"] * 5000)),
        "10000-value IN list": q("SELECT 1 WHERE 1 IN (" + ",".join(str(i) for i in range(10000)) + ")"),
    }


def run_case(args, name, data, authed, seconds=1.5):
    if authed:
        c = login(args.host, args.port, args.user, args.password)
    else:
        c = Conn(args.host, args.port)
    try:
        c.send(data)
        # A body the server waits for may never come: stop listening after `seconds`.
        outcome = drain(c, seconds)
    except (ConnectionError, OSError):
        outcome = "closed"
    finally:
        c.close()
    return outcome


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            i = rng.randrange(len(b))
            b[i : i + 4] = struct.pack("!i", rng.choice([0, 1, 3, 4, -1, 0x7FFFFFFF, rng.randrange(1 << 20)]))
        elif op == 2 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 3:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        else:
            i = rng.randrange(len(b) + 1)
            b[i:i] = b[i : i + rng.randint(1, 200)] * rng.randint(1, 20)
    return bytes(b)


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="lakegate")
    ap.add_argument("--password", default="")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--max-rss-mib", type=float, default=2048)
    args = ap.parse_args()
    failures = []
    peak = 0.0

    def check(label):
        nonlocal peak
        try:
            healthy(args)
        except Exception as e:  # noqa: BLE001 - any failure to answer is the finding
            failures.append(f"{label}: server did not answer SELECT 1 afterwards: {e}")
            print(f"FAIL {label}: {e}", flush=True)
            return False
        if args.pid:
            r = rss_mib(args.pid)
            if r is None:
                failures.append(f"{label}: server process {args.pid} is gone")
                return False
            peak = max(peak, r)
            if r > args.max_rss_mib:
                failures.append(f"{label}: resident memory {r:.0f} MiB over {args.max_rss_mib:.0f}")
        return True

    check("before anything")
    seeds = []
    for authed, cases in ((False, pre_auth_cases()), (True, post_auth_cases())):
        for name, data in cases.items():
            outcome = run_case(args, name, data, authed)
            print(f"case {'post' if authed else 'pre '}-auth {name}: {outcome}", flush=True)
            if not check(name):
                return report(failures, peak, 0)
            seeds.append((authed, data))
    for name, data in statement_cases().items():
        outcome = run_case(args, name, data, True, seconds=300)
        print(f"case statement {name}: {outcome}", flush=True)
        if not check(name):
            return report(failures, peak, 0)
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < deadline:
        authed, data = rng.choice(seeds)
        data = mutate(rng, data)
        run_case(args, "mutation", data, authed)
        n += 1
        if n % 10 == 0 and not check(f"mutation {n} (seed {args.seed})"):
            break
    check("at the end")
    return report(failures, peak, n)


def report(failures, peak, n):
    print(f"{n} random mutations; peak resident memory {peak:.0f} MiB", flush=True)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
