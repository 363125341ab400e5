"""Shared pieces of the benchmarks: the server under test, the load generator, stats, results.

Nothing here needs more than the project's own dependencies (pyproject.toml).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATEST = RESULTS_DIR / "latest.json"
QUICK = RESULTS_DIR / "quick.json"
PG_ADMIN_URL = os.environ.get(
    "CHAINTRACE_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


# ------------------------------------------------------------------------------------------------ stats
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of ``values`` (same unit in, same unit out)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# ---------------------------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One acceptance target of the issue (a figure against a threshold), or an info line (no threshold)."""

    key: str
    label: str
    value: float | None
    threshold: float | None
    unit: str
    higher_is_better: bool = True
    note: str = ""

    @property
    def status(self) -> str:
        if self.threshold is None:
            return "INFO"
        if self.value is None or self.value != self.value:  # None or NaN
            return "NOT RUN"
        ok = self.value >= self.threshold if self.higher_is_better else self.value <= self.threshold
        return "PASS" if ok else "MISS"

    @property
    def op(self) -> str:
        return ">=" if self.higher_is_better else "<="

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "label": self.label, "value": self.value, "threshold": self.threshold,
            "unit": self.unit, "op": self.op, "status": self.status, "note": self.note,
        }


def fmt_num(value: float | None, unit: str = "") -> str:
    if value is None or value != value:
        return "n/a"
    if unit in ("x", "ratio"):
        text = f"{value:.2f}x"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    if unit and unit not in ("x", "ratio"):
        text += f" {unit}"
    return text


def target_line(t: Target | dict[str, Any]) -> tuple[str, str, str, str]:
    """(status, label, figure, target) of a target or its JSON form."""
    d = t.to_json() if isinstance(t, Target) else t
    goal = "" if d["threshold"] is None else f"{d['op']} {fmt_num(d['threshold'], d['unit'])}"
    return d["status"], d["label"], fmt_num(d["value"], d["unit"]), goal


def print_targets(title: str, targets: Sequence[Target]) -> None:
    print(f"\n== {title}")
    for t in targets:
        status, label, figure, goal = target_line(t)
        line = f"  [{status:<4}] {label}: {figure}" + (f"  (target {goal})" if goal else "")
        if t.note:
            line += f"  -- {t.note}"
        print(line, flush=True)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------- results
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def pg_server_version() -> str | None:
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar()
        engine.dispose()
        return str(version)
    except Exception:
        return None


def run_info() -> dict[str, Any]:
    """Machine, software and code identity of this run."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "mem_gb": _mem_total_gb(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "postgresql": pg_server_version(),
        },
        "packages": {p: _version(p) for p in (
            "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "sqlalchemy", "psycopg", "orjson",
            "jsonschema-rs",
        )},
        "argv": sys.argv[1:],
    }


def finish_section(section: str, title: str, figures: Any, targets: Sequence[Target], *, quick: bool,
                   info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print a section's targets, merge its figures into the results file and return what was written."""
    print_targets(title, targets)
    data = {"figures": figures, "targets": targets_json(targets)}
    path = write_section(section, data, quick=quick, info=info)
    log(f"{section}: results merged into {path}")
    return data


def write_section(section: str, data: dict[str, Any], *, quick: bool,
                  info: dict[str, Any] | None = None) -> Path:
    """Merge ``data`` as ``sections[section]`` into bench/results/latest.json (atomic replace).

    ``info`` is :func:`run_info` taken when the section started (the code it measured); default: now.
    A ``--quick`` run goes to quick.json instead, so it never replaces the full figures the README shows.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    target = QUICK if quick else LATEST
    current: dict[str, Any] = {}
    if target.exists():
        with contextlib.suppress(ValueError, OSError):
            current = json.loads(target.read_text())
    if not isinstance(current, dict):
        current = {}
    info = info or run_info()
    info["finished"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stored = current.get("sections")
    sections: dict[str, Any] = stored if isinstance(stored, dict) else {}
    sections[section] = {"run": info, "quick": quick, **data}
    merged = {"updated": info["date"], "git_commit": info["git_commit"], "machine": info["machine"],
              "sections": sections}
    tmp = target.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(merged, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                                 | orjson.OPT_NON_STR_KEYS) + b"\n")
    tmp.replace(target)
    return target


def targets_json(targets: Sequence[Target]) -> list[dict[str, Any]]:
    return [t.to_json() for t in targets]


# ---------------------------------------------------------------------------------------------- stores
@contextlib.contextmanager
def sqlite_store(tag: str) -> Iterator[str]:
    """A fresh SQLite store URL in a temporary folder (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix=f"chaintrace-bench-{tag}-") as folder:
        yield f"sqlite:///{folder}/lineage.db"


@contextlib.contextmanager
def pg_store(tag: str) -> Iterator[str]:
    """A throw-away PostgreSQL database (created now, dropped WITH (FORCE) afterwards)."""
    with throwaway_pg_database(f"chaintrace_bench_{tag}") as url:
        yield url


@contextlib.contextmanager
def throwaway_pg_database(prefix: str, admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new database ``<prefix>_<pid>_<random>`` on the server of ``admin_url``; dropped on exit."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def store(backend: str, tag: str) -> Iterator[str]:
    if backend == "sqlite":
        with sqlite_store(tag) as url:
            yield url
    elif backend == "postgres":
        with pg_store(tag) as url:
            yield url
    else:
        raise ValueError(backend)


def pg_available() -> bool:
    return pg_server_version() is not None


# ---------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("CHAINTRACE_LOG_LEVEL", "warning")
    env.pop("CHAINTRACE_DB_URL", None)
    if extra:
        env.update(extra)
    return env


def _children(pid: int) -> list[int]:
    """Child pids of ``pid`` (scans /proc: /proc/PID/task/*/children is not always compiled in)."""
    kids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _proc_cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of ``pid`` and its descendants (alive ones, plus reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    seen: set[int] = set()
    while pids:
        p = pids.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime, cutime, cstime are fields 14-17 (1-based) -> index 11..14 after the ")"
            total += sum(int(x) for x in fields[11:15]) / tick
            pids.extend(_children(p))
        except (OSError, ValueError, IndexError):
            continue
    return total


#: Environment variable that hands the load generator its API key (never a command-line argument:
#: those are visible to every user of the machine in ``ps``).
API_KEY_ENV = "CHAINTRACE_BENCH_API_KEY"


def make_keys(db_url: str) -> tuple[str, str]:
    """A producer key and an L4 reader key in the store at ``db_url`` (migrated first).

    The benchmarks measure the real configuration: keys on, writes with a producer key, reads with a
    reader key.
    """
    from lineage.store.db import create_store_engine, migrate
    from lineage.store.keys import create_key

    engine = create_store_engine(db_url)
    try:
        migrate(engine)
        producer = create_key(engine, name="bench-producer", role="producer")[1]
        reader = create_key(engine, name="bench-reader", role="reader", clearance="L4")[1]
    finally:
        engine.dispose()
    return producer, reader


@dataclass
class Server:
    """``chaintrace lineage serve`` in a subprocess (own process group), on a free port, with a producer
    and a reader key made in its store before it starts."""

    db_url: str
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    workdir: tempfile.TemporaryDirectory[str] | None = None
    log_path: Path | None = None
    producer_key: str = field(default="", repr=False)
    reader_key: str = field(default="", repr=False)

    def start(self, timeout: float = 90.0) -> Server:
        if not self.producer_key:
            self.producer_key, self.reader_key = make_keys(self.db_url)
        self.workdir = tempfile.TemporaryDirectory(prefix="chaintrace-bench-srv-")
        self.log_path = Path(self.workdir.name) / "server.log"
        cmd = [sys.executable, "-m", "chaintrace_cli.main", "lineage", "serve", "--db", self.db_url,
               "--port", str(self.port), "--workers", str(self.workers)]
        env = _subprocess_env({"CHAINTRACE_DATA_ROOT": self.workdir.name})
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(cmd, cwd=self.workdir.name, env=env, stdout=log_file,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = http_get(self.port, "/healthz", timeout=2)
                if status == 200:
                    if self.workers > 1:
                        self._wait_workers(deadline)
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout}s:\n{self.log_tail()}")

    def _wait_workers(self, deadline: float) -> None:
        """With --workers N, wait until N worker processes answer (each builds its own context)."""
        assert self.process is not None
        while time.monotonic() < deadline:
            kids = _children(self.process.pid)
            # uvicorn's supervisor spawns the workers (plus, with spawn, a resource tracker maybe)
            if len(kids) >= self.workers:
                ok = 0
                for _ in range(4 * self.workers):
                    with contextlib.suppress(OSError):
                        if http_get(self.port, "/healthz", timeout=5)[0] == 200:
                            ok += 1
                if ok >= 4 * self.workers:
                    time.sleep(1.0)
                    return
            time.sleep(0.3)

    def cpu_seconds(self) -> float:
        return _proc_cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            pgid = process.pid  # start_new_session: the server leads its own process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                process.wait(timeout=10)
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def http_get(port: int, path: str, timeout: float = 30.0, *, api_key: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=auth_headers(api_key))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def http_post(port: int, path: str, body: bytes, timeout: float = 120.0, *,
              api_key: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body,
                           headers={"Content-Type": "application/json", **auth_headers(api_key)})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# -------------------------------------------------------------------------------------- load generator
@dataclass
class LoadResult:
    requests: int
    events: int
    wall_s: float
    latencies_ms: list[float]
    statuses: dict[str, int]
    cpu_s: float  # the load generator's own CPU
    server_cpu_s: float = 0.0
    error: str | None = None

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else float("nan")

    def brief(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "events": self.events, "wall_s": round(self.wall_s, 3),
            "events_per_s": round(self.events_per_s, 1),
            "requests_per_s": round(self.requests / self.wall_s, 1) if self.wall_s > 0 else None,
            "latency_ms": summary(self.latencies_ms), "statuses": self.statuses,
            "loadgen_cpu_s": round(self.cpu_s, 2),
            "loadgen_cpu_share": round(self.cpu_s / self.wall_s, 2) if self.wall_s > 0 else None,
            "server_cpu_s": round(self.server_cpu_s, 2),
            "server_cpu_share": round(self.server_cpu_s / self.wall_s, 2) if self.wall_s > 0 else None,
            "error": self.error,
        }


def write_bodies(path: Path, bodies: Sequence[bytes]) -> None:
    """One pre-serialised JSON body per line (orjson never emits a raw newline)."""
    with open(path, "wb") as out:
        for body in bodies:
            out.write(body)
            out.write(b"\n")


def run_load(port: int, path: str, bodies_file: Path, *, clients: int, start: int, count: int,
             events_per_body: int, expect: Sequence[int], server: Server | None = None,
             max_seconds: float = 0.0, timeout: float = 600.0, api_key: str | None = None) -> LoadResult:
    """Run bench.loadgen in its own process (so its CPU is its own) and collect its figures.

    The requests carry ``api_key``, by default the producer key of ``server`` (the load is writes).
    """
    api_key = api_key or (server.producer_key if server is not None else None)
    out_file = bodies_file.with_name(f"load-{uuid.uuid4().hex[:8]}.json")
    cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--path", path,
           "--bodies", str(bodies_file), "--clients", str(clients), "--start", str(start),
           "--count", str(count), "--events-per-body", str(events_per_body),
           "--expect", ",".join(str(e) for e in expect), "--max-seconds", str(max_seconds),
           "--out", str(out_file)]
    before = server.cpu_seconds() if server else 0.0
    proc = subprocess.run(cmd, cwd=ROOT, env=_subprocess_env({API_KEY_ENV: api_key} if api_key else None),
                          capture_output=True, text=True, timeout=timeout)
    after = server.cpu_seconds() if server else 0.0
    if proc.returncode != 0 or not out_file.exists():
        raise RuntimeError(f"load generator failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(out_file.read_text())
    out_file.unlink()
    return LoadResult(data["requests"], data["events"], data["wall_s"], data["latencies_ms"],
                      data["statuses"], data["cpu_s"], after - before, data.get("error"))


FILL_CHUNK = 2_000


def fill_store(url: str, events: list[dict[str, Any]], chunk: int = FILL_CHUNK) -> dict[str, Any]:
    """Ingest ``events`` in process (``ingest_sync`` in chunks) into the store at ``url``, timed."""
    from lineage.context import LineageContext
    from lineage.settings import LineageSettings

    created = rejected = 0
    with tempfile.TemporaryDirectory() as root:
        ctx = LineageContext.build(LineageSettings(db_url=url, data_root=Path(root)))
        ctx.start()
        started = time.perf_counter()
        try:
            for i in range(0, len(events), chunk):
                results = ctx.ingest.ingest_sync(events[i:i + chunk])
                created += sum(r.status == "created" for r in results)
                rejected += sum(not r.accepted for r in results)
        finally:
            ctx.close()
        wall = time.perf_counter() - started
    return {"events": len(events), "created": created, "rejected": rejected, "wall_s": round(wall, 3),
            "events_per_s": round(len(events) / wall, 1)}
