"""Webhook benchmark: concurrent simulated callers walk the menu through signed webhooks.

The hotline is started the way the README runs it (``callcenter serve``, gunicorn, gthread
workers) on SQLite and on PostgreSQL; in the same run, the same load goes to a minimal Flask
app returning a fixed TwiML document under the same gunicorn settings (the baseline).

Each simulated call: POST /twilio/voice, then the caller presses 5 (service guide), 1 (hours),
2 (back), 9 (main menu), 0 (a person), then the status callback. Two loads per target:

* ``saturated``: every caller sends its next request as soon as the last one is answered
  (closed loop, no think time): the most requests per second the server can take;
* ``paced``: every caller waits a random 0.25-0.75 s before each request, like a person
  listening to a prompt (real callers take several seconds): latency under the load of N
  callers, about 2N requests per second.

Prints requests/s, p50/p95/p99 latency (p99: 99% of the requests were answered within it,
measured by the caller from sending the request to reading the whole answer), the peak
resident memory of the server's process tree, and the CPU time used per request by the
server's processes, by the PostgreSQL server processes serving its database, and by the load
generator. The load generator runs on the same machine (one process, a thread per caller), so
it competes for the same CPUs: wall-clock figures move with everything else the machine runs,
the CPU time per request much less. All servers run at once and the saturated load runs in
rounds that interleave the targets (``--rounds``), so a change in the machine's other load
hits every target alike; the summary gives the median and the spread of the rounds.

    .venv/bin/python bench/webhook.py [--callers 50] [--calls 600] [--rounds 3] [--threads 8]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import text
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOKEN = "bench-auth-token"
BASE = "http://bench.invalid"  # PUBLIC_BASE_URL: signatures are computed against it
STEPS = ["5", "1", "2", "9", "0"]
_ACTION = re.compile(r'action="[^"]*?(/twilio/voice/input\?step=\d+)"')
#: the hotline's targets (their answers are followed: each step's action URL is the next)
HOTLINE = ("sqlite", "postgresql")
#: the floor app on each database (bench/floor_app.py): signature check plus one durable step
FLOORS = {"floor-sqlite": "sqlite", "floor-postgresql": "postgresql"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its children (gunicorn's master and workers)."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    return pids


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU time (user + system) used so far by each of ``pids``, from /proc."""
    out: dict[int, float] = {}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two :func:`cpu_seconds` readings (new processes from 0)."""
    return sum(t - before.get(p, 0.0) for p, t in after.items())


def database_pids(url: str | None) -> list[int]:
    """The PostgreSQL server processes serving ``url``'s database (empty for SQLite)."""
    if not url or not url.startswith("postgresql"):
        return []
    from callcenter.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return [int(r[0]) for r in rows]
    finally:
        engine.dispose()


def tree_rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children, from /proc."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    # The server's output goes to a file: a pipe nobody reads would stall it once full.
    with tempfile.TemporaryFile() as log:
        yield from _serve(cmd, env, port, log)


def _serve(
    cmd: list[str], env: dict[str, str], port: int, log: Any
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(log.read().decode(errors="replace")[-4000:]) from None
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        time.sleep(1.0)  # let every worker boot
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


class Caller(threading.Thread):
    """One simulated caller making calls back to back on a keep-alive connection."""

    def __init__(
        self,
        port: int,
        calls: int,
        latencies: list[float],
        errors: list[str],
        follow: bool,
        think: float,
    ) -> None:
        super().__init__(daemon=True)
        self.think = think
        self.rng = random.Random()
        self.port = port
        self.calls = calls
        self.latencies = latencies
        self.errors = errors
        self.follow = follow
        self.validator = RequestValidator(TOKEN)

    def post(self, conn: http.client.HTTPConnection, path: str, params: dict[str, str]) -> str:
        if self.think:
            time.sleep(self.rng.uniform(self.think / 2, self.think * 1.5))
        body = urlencode(params)
        sig = self.validator.compute_signature(BASE + path, params)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig}
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read().decode()
        self.latencies.append(time.perf_counter() - t0)
        if resp.status not in (200, 204):
            self.errors.append(f"{path}: HTTP {resp.status}")
        return data

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        for _ in range(self.calls):
            sid = "CA" + uuid.uuid4().hex
            base = {
                "CallSid": sid,
                "AccountSid": "AC" + "0" * 32,
                "From": "+8613800000001",
                "To": "+862155500100",
                "CallStatus": "ringing",
            }
            doc = self.post(conn, "/twilio/voice", base)
            for digit in STEPS:
                path = "/twilio/voice/input?step=1"
                if self.follow:
                    match = _ACTION.search(doc)
                    if match is None:
                        self.errors.append(f"no Gather before pressing {digit}")
                        break
                    path = match.group(1)
                doc = self.post(conn, path, {**base, "Digits": digit, "CallStatus": "in-progress"})
            if self.follow and "<Enqueue" not in doc:
                self.errors.append("call did not reach the queue")
            self.post(
                conn,
                "/twilio/voice/status",
                {**base, "CallStatus": "completed", "CallDuration": "42"},
            )
        conn.close()


def load(
    port: int,
    pid: int,
    callers: int,
    calls: int,
    follow: bool,
    think: float = 0.0,
    database_url: str | None = None,
) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    per = max(1, calls // callers)
    threads = [Caller(port, per, latencies, errors, follow, think) for _ in range(callers)]
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    server_pids = tree_pids(pid)
    db_before = cpu_seconds(database_pids(database_url))
    server_before = cpu_seconds(server_pids)
    client_before = time.process_time()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    client_cpu = time.process_time() - client_before
    server_cpu = used(server_before, cpu_seconds(server_pids))
    db_cpu = used(db_before, cpu_seconds(database_pids(database_url)))
    stop.set()
    sampler.join()
    if errors:
        print(f"  !! {len(errors)} errors, first: {errors[0]}")
    # p99: the value below which 99% of the latencies fall (linear interpolation between the
    # two nearest samples; ``statistics.quantiles``' "exclusive" method).
    q = statistics.quantiles(latencies, n=100)
    n = len(latencies)
    return {
        "server_cpu_ms": server_cpu / n * 1000,
        "db_cpu_ms": db_cpu / n * 1000,
        "client_cpu_ms": client_cpu / n * 1000,
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": q[49] * 1000,
        "p95": q[94] * 1000,
        "p99": q[98] * 1000,
        "peak_mib": peak / 1024,
        "errors": len(errors),
    }


def prepare_database(kind: str, workdir: Path, name: str = "callcenter_bench") -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / (name + '.db')}"
    from callcenter.db.engine import make_engine

    admin_url = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = make_engine(admin_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name} LOCALE 'C.UTF-8' TEMPLATE template0"))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def start_target(
    target: str, args: argparse.Namespace, workdir: Path, stack: ExitStack
) -> tuple[int, int, str | None]:
    """Start ``target``'s server; return its port, pid and database URL."""
    port = free_port()
    env = {
        **os.environ,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "SECRET_KEY": "bench",
        "PUBLIC_BASE_URL": BASE,
        "CALLCENTER_LOGGING_LEVEL": "WARNING",
        "CALLCENTER_INSTANCE_DATA_DIR": str(workdir),
    }
    url = None
    if target not in HOTLINE:
        module = "baseline_app"
        if target in FLOORS:
            from floor_app import create_schema

            url = env["FLOOR_DATABASE_URL"] = prepare_database(
                FLOORS[target], workdir, "callcenter_bench_floor"
            )
            create_schema(url)
            module = "floor_app"
        cmd = [
            str(BIN / "gunicorn"),
            "--chdir",
            str(ROOT / "bench"),
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(args.workers),
            "-k",
            "gthread",
            "--threads",
            str(args.threads),
            f"{module}:application",
        ]
    else:
        url = env["CALLCENTER_DATABASE_URL"] = prepare_database(target, workdir)
        subprocess.run(
            [str(BIN / "callcenter"), "db", "upgrade"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        # As the README runs it: `callcenter serve` picks the worker count for the database.
        cmd = [str(BIN / "callcenter"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        env["CALLCENTER_WEB_WORKERS"] = str(args.workers)
        env["CALLCENTER_WEB_THREADS"] = str(args.threads)
    proc = stack.enter_context(server(cmd, env, port))
    return port, proc.pid, url


def line(target: str, mode: str, r: dict[str, float]) -> str:
    """One result line."""
    db = f" + db {r['db_cpu_ms']:4.2f}" if r["db_cpu_ms"] else ""
    return (
        f"{target:>16} {mode:>9}: {r['rps']:6.0f} req/s  p50 {r['p50']:6.1f} ms  "
        f"p95 {r['p95']:6.1f} ms  p99 {r['p99']:6.1f} ms  peak RSS {r['peak_mib']:4.0f} MiB  "
        f"CPU/request: server {r['server_cpu_ms']:4.2f}{db} ms, load generator "
        f"{r['client_cpu_ms']:4.2f} ms  ({int(r['requests'])} requests, "
        f"{int(r['errors'])} errors)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--calls", type=int, default=600, help="calls in total per target")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--think", type=float, default=0.5, help="mean think time of the paced load, seconds"
    )
    parser.add_argument(
        "--paced-calls", type=int, default=150, help="calls in total for the paced load"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="saturated runs per target, interleaved across targets (shows the noise)",
    )
    parser.add_argument(
        "--only", choices=["baseline", *FLOORS, *HOTLINE], action="append", help="repeatable"
    )
    args = parser.parse_args()
    targets = args.only or ["baseline", *FLOORS, *HOTLINE]
    print(
        f"{args.callers} concurrent callers, {args.calls} calls x {len(STEPS) + 2} requests "
        f"x {args.rounds} rounds, gunicorn gthread {args.workers} workers (hotline: as "
        f"`callcenter serve` decides) x {args.threads} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    saturated: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    paced: dict[str, dict[str, float]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    try:
        with ExitStack() as stack:
            servers = {t: start_target(t, args, workdir, stack) for t in targets}
            for target, (port, pid, _url) in servers.items():
                workers = len(tree_pids(pid)) - 1
                print(f"{target:>16}: {workers} worker process(es)")
                load(port, pid, min(args.callers, 10), 20, target in HOTLINE)  # warm-up
            # Rounds interleave the targets, so a change in the machine's other load hits
            # every target alike.
            for _ in range(args.rounds):
                for target, (port, pid, url) in servers.items():
                    r = load(port, pid, args.callers, args.calls, target in HOTLINE, 0, url)
                    saturated[target].append(r)
                    print(line(target, "saturated", r), flush=True)
            for target, (port, pid, url) in servers.items():
                paced[target] = load(
                    port, pid, args.callers, args.paced_calls, target in HOTLINE, args.think, url
                )
                print(line(target, "paced", paced[target]), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nsummary (saturated: median of the rounds [lowest-highest]):")
    medians: dict[str, dict[str, float]] = {}
    for target in targets:
        runs = saturated[target]
        medians[target] = {
            k: statistics.median(r[k] for r in runs)
            for k in ("rps", "p99", "server_cpu_ms", "db_cpu_ms")
        }
        rps = [r["rps"] for r in runs]
        m = medians[target]
        print(
            f"{target:>16}: saturated {m['rps']:5.0f} req/s [{min(rps):.0f}-{max(rps):.0f}], "
            f"p99 {m['p99']:5.1f} ms; paced p99 {paced[target]['p99']:5.1f} ms; server CPU "
            f"{m['server_cpu_ms'] + m['db_cpu_ms']:4.2f} ms/request"
        )
    if "baseline" in medians:
        base = medians["baseline"]
        for target in (*FLOORS, *HOTLINE):
            if target in medians:
                m = medians[target]
                share = m["rps"] / base["rps"] * 100
                cpu = (base["server_cpu_ms"] + base["db_cpu_ms"]) / (
                    m["server_cpu_ms"] + m["db_cpu_ms"]
                )
                print(
                    f"{target:>16}: saturated throughput = {share:.0f}% of the fixed-TwiML "
                    f"baseline; server CPU per request: the baseline needs {cpu * 100:.0f}% "
                    f"of the hotline's"
                )


if __name__ == "__main__":
    main()
