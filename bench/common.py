"""Shared pieces of the benchmark suite (bench/README.md): servers on ephemeral ports, TPC-H data
and queries, timing statistics. Every server is started here, in a temporary folder, and stopped
when the script ends."""
import atexit
import contextlib
import glob
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
PASSWORD = "bench-password"
_procs = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cleanup():
    for p, stop in reversed(_procs):
        try:
            stop(p)
        except Exception:
            pass


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def lakegate_binary():
    """The release binary (cargo build --release, built when out of date), or $BENCH_LAKEGATE."""
    if os.environ.get("BENCH_LAKEGATE"):
        return os.environ["BENCH_LAKEGATE"]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    path = os.path.join(target, "release", "lakegate")
    if not getattr(lakegate_binary, "built", False):
        log("building lakegate (cargo build --release --locked) ...")
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
        lakegate_binary.built = True
    return path


class Lakegate:
    """A lakegate server on an ephemeral port with its own warehouse; `env` adds settings
    (LAKEGATE__ENGINE__MEMORY_LIMIT=4GiB ...)."""

    def __init__(self, workdir, env=None, config=None, binary=None, warehouse=None,
                 name="lakegate"):
        """`binary`: another build (an A/B baseline); `warehouse`: another server's folder,
        read by this one too (a baseline on the very same tables)."""
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        extra = []
        if config:
            path = os.path.join(self.dir, "lakegate.toml")
            with open(path, "w") as f:
                f.write(config)
            extra = ["--config", path]
        e = dict(os.environ, LAKEGATE_PASSWORD=PASSWORD, LAKEGATE__DEMO__ENABLED="false",
                 LAKEGATE_LOG=os.environ.get("LAKEGATE_LOG", "warn"))
        e.update(env or {})
        self.out = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary or lakegate_binary(), "serve", *extra, "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", warehouse or os.path.join(self.dir, "warehouse")],
            stdout=self.out, stderr=subprocess.STDOUT, env=e)
        _procs.append((self.proc, lambda p: (p.terminate(), p.wait(30))))
        self._wait()
        self.url = f"postgresql://lakegate:{PASSWORD}@127.0.0.1:{self.port}/lakegate"

    def _wait(self):
        for _ in range(600):
            with contextlib.closing(socket.socket()) as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(open(self.out.name).read())
            time.sleep(0.1)
        raise RuntimeError("lakegate did not start")

    def peak_rss_mib(self):
        """The server's peak resident memory so far (VmHWM)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")


class Postgres:
    """A PostgreSQL 15 cluster (Debian's postgresql-15) in a temp folder, run as the postgres OS
    user when this script runs as root; trust authentication on loopback."""
    BIN = "/usr/lib/postgresql/15/bin"

    def __init__(self, workdir, settings=()):
        self.dir = os.path.join(workdir, "postgres")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if runas:
            shutil.chown(self.dir, "postgres")
            shutil.chown(workdir, "postgres")
        self.runas = runas
        subprocess.run(runas + [f"{self.BIN}/initdb", "-D", f"{self.dir}/data", "-U", "lakegate",
                                "--auth=trust", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 " + " ".join(
            f"-c {s}" for s in settings)
        subprocess.run(runas + [f"{self.BIN}/pg_ctl", "-D", f"{self.dir}/data", "-w", "-l",
                                f"{self.dir}/log", "-o", opts, "start"], check=True,
                       stdout=subprocess.DEVNULL)
        _procs.append((self, lambda p: p.stop()))
        subprocess.run(["psql", "-X", "-q", f"postgresql://lakegate@127.0.0.1:{self.port}/postgres",
                        "-c", "CREATE DATABASE lakegate"], check=True)
        self.url = f"postgresql://lakegate@127.0.0.1:{self.port}/lakegate"

    def stop(self):
        subprocess.run(self.runas + [f"{self.BIN}/pg_ctl", "-D", f"{self.dir}/data", "-m", "fast",
                                     "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tpch_data(sf, data_root):
    """TPC-H tables at scale factor `sf` as Parquet files (tpchgen-cli), generated once."""
    d = os.path.join(data_root, f"sf{sf}")
    if all(os.path.exists(os.path.join(d, f"{t}.parquet")) for t in TABLES):
        return d
    os.makedirs(d, exist_ok=True)
    log(f"generating TPC-H SF{sf} with tpchgen-cli into {d} ...")
    subprocess.run(["tpchgen-cli", "parquet", "-s", str(sf), f"--output-dir={d}"], check=True)
    return d


def duckdb_with_tpch():
    """A DuckDB connection with the tpch extension (from its PyPI wheel) loaded."""
    import duckdb
    import duckdb_extension_tpch
    con = duckdb.connect()
    path = glob.glob(os.path.join(os.path.dirname(duckdb_extension_tpch.__file__), "extensions",
                                  "*", "tpch.duckdb_extension"))[0]
    con.execute(f"LOAD '{path}'")
    return con


def tpch_queries():
    """The 22 TPC-H queries with the specification's validation parameters (DuckDB's tpch
    extension gives their text)."""
    return dict(duckdb_with_tpch().execute(
        "SELECT query_nr, query FROM tpch_queries() ORDER BY query_nr").fetchall())


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def geomean(xs):
    xs = [x for x in xs if x and x > 0 and not math.isnan(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def workdir(name):
    d = tempfile.mkdtemp(prefix=f"lakegate-{name}-")
    _procs.insert(0, (d, lambda p: shutil.rmtree(p, ignore_errors=True)))
    return d


def versions():
    import duckdb
    import datafusion
    import psycopg
    out = {"duckdb": duckdb.__version__, "datafusion (python)": datafusion.__version__,
           "psycopg": psycopg.__version__}
    for cmd, name in [(["psql", "--version"], "psql"), (["rustc", "--version"], "rustc")]:
        with contextlib.suppress(Exception):
            out[name] = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    with contextlib.suppress(Exception):
        out["lakegate"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True).stdout.strip()
    out["cpus"] = os.cpu_count()
    return out
