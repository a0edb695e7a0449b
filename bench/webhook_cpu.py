"""CPU cost of one webhook, in process: the hotline's app against the fixed-TwiML baseline app.

Wall-clock figures from ``bench/webhook.py`` depend on whatever else the machine runs; CPU time
does not (much). This script drives both WSGI apps directly (no sockets, no gunicorn), one
request at a time, with the same signed requests ``bench/webhook.py`` sends (call in, 5, 1, 2,
9, 0, status callback), and reports per request:

* ``app CPU``: CPU time of this process inside the WSGI call (Flask, signature check, the call
  service, SQLAlchemy, the database driver, TwiML rendering; on SQLite also the database
  engine itself, which runs in process);
* ``db server CPU`` (PostgreSQL): CPU time the server's backend processes spent for the
  connections this process opened, read from ``/proc`` (the server must be on this machine);
* ``statements``: SQL statements sent through SQLAlchemy per request (its
  ``before_cursor_execute`` event; ``BEGIN`` and ``COMMIT`` are not counted);
* ``wall``: elapsed time per request (noisy when other programs share the CPUs).

Requests are built and signed before the clock starts; only the WSGI call and reading its body
are timed. The baseline app gets exactly the same requests.

    .venv/bin/python bench/webhook_cpu.py [--calls 300] [--only sqlite|postgresql|baseline]
    .venv/bin/python bench/webhook_cpu.py --profile sqlite   # cProfile of the hotline path
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import event, text
from twilio.request_validator import RequestValidator
from werkzeug.test import EnvironBuilder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOKEN = "bench-auth-token"
BASE = "http://bench.invalid"
STEPS = ["5", "1", "2", "9", "0"]
_ACTION = re.compile(r'action="[^"]*?(/twilio/voice/input\?step=\d+)"')
CLK_TCK = os.sysconf("SC_CLK_TCK")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def environ(path: str, params: dict[str, str], validator: RequestValidator) -> dict[str, Any]:
    """A WSGI environ for a signed, form-encoded POST, as Twilio sends it."""
    sig: str = validator.compute_signature(BASE + path, params)
    env: dict[str, Any] = EnvironBuilder(
        path=path,
        method="POST",
        base_url="http://127.0.0.1:8000",
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers=[("X-Twilio-Signature", sig)],
    ).get_environ()
    return env


class Meter:
    """Calls a WSGI app and adds up CPU time, wall time and statements per request."""

    def __init__(self, app: WsgiApp, backend_cpu: Callable[[], float] | None = None) -> None:
        self.app = app
        self.backend_cpu = backend_cpu
        self.cpu: list[float] = []
        self.wall: list[float] = []
        self.server = 0.0
        self.statements = 0
        self.errors = 0

    def __call__(self, env: dict[str, Any]) -> str:
        status: list[str] = []

        def start_response(s: str, _headers: Any, _exc: Any = None) -> None:
            status.append(s)

        s0 = self.backend_cpu() if self.backend_cpu else 0.0
        w0 = time.perf_counter()
        c0 = time.process_time()
        result = self.app(env, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:  # as a WSGI server does: it releases what the app holds
                close()
        c1 = time.process_time()
        w1 = time.perf_counter()
        if self.backend_cpu:
            self.server += self.backend_cpu() - s0
        self.cpu.append(c1 - c0)
        self.wall.append(w1 - w0)
        if not status or status[0][:3] not in ("200", "204"):
            self.errors += 1
        return body.decode()


def walk(meter: Meter, calls: int, follow: bool) -> None:
    """``calls`` simulated calls through ``meter``, one request at a time."""
    validator = RequestValidator(TOKEN)
    for _ in range(calls):
        sid = "CA" + uuid.uuid4().hex
        base = {
            "CallSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": "+8613800000001",
            "To": "+862155500100",
            "CallStatus": "ringing",
        }
        doc = meter(environ("/twilio/voice", base, validator))
        for digit in STEPS:
            path = "/twilio/voice/input?step=1"
            if follow:
                match = _ACTION.search(doc)
                if match is None:
                    meter.errors += 1
                    break
                path = match.group(1)
            params = {**base, "Digits": digit, "CallStatus": "in-progress"}
            doc = meter(environ(path, params, validator))
        if follow and "<Enqueue" not in doc:
            meter.errors += 1
        status = {**base, "CallStatus": "completed", "CallDuration": "42"}
        meter(environ("/twilio/voice/status", status, validator))


def database_url(kind: str, workdir: Path) -> str:
    """A fresh, migrated database of ``kind``."""
    from callcenter.db.engine import make_engine
    from callcenter.db.migrate import upgrade

    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        admin_url = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        admin = make_engine(admin_url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("DROP DATABASE IF EXISTS callcenter_bench_cpu WITH (FORCE)"))
            conn.execute(
                text("CREATE DATABASE callcenter_bench_cpu LOCALE 'C.UTF-8' TEMPLATE template0")
            )
        admin.dispose()
        url = admin_url.rsplit("/", 1)[0] + "/callcenter_bench_cpu"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def hotline(kind: str, workdir: Path) -> tuple[WsgiApp, Any]:
    """The hotline's WSGI app on a fresh database, and its services."""
    from agents_console import create_app
    from callcenter.bootstrap import build
    from callcenter.config import load_config

    env = {"TWILIO_AUTH_TOKEN": TOKEN, "SECRET_KEY": "bench", "PUBLIC_BASE_URL": BASE}
    config = load_config(
        ROOT / "config.yaml",
        environ=env,
        overrides={
            "instance": {"data_dir": str(workdir)},
            "database": {"url": database_url(kind, workdir)},
        },
    )
    services = build(config)
    return create_app(services), services


def backend_cpu_reader(engine: Any) -> Callable[[], float]:
    """A function returning the CPU seconds used so far by this engine's server backends."""
    pids: set[int] = set()

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        pids.add(int(cur.fetchone()[0]))
        cur.close()

    def read() -> float:
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        return total / CLK_TCK

    return read


def report(name: str, meter: Meter, requests_per_call: int) -> dict[str, float]:
    """Print one line of figures and return them."""
    n = len(meter.cpu)
    cpu = sum(meter.cpu) / n * 1000
    figures = {
        "cpu_ms": cpu,
        "cpu_p50_ms": statistics.median(meter.cpu) * 1000,
        "server_ms": meter.server / n * 1000,
        "wall_ms": statistics.median(meter.wall) * 1000,
        "statements": meter.statements / n,
    }
    server = f"  db server CPU {figures['server_ms']:5.2f} ms" if meter.backend_cpu else ""
    print(
        f"{name:>10}: app CPU {cpu:5.2f} ms/request (median {figures['cpu_p50_ms']:5.2f})"
        f"{server}  statements {figures['statements']:4.2f}/request  "
        f"wall median {figures['wall_ms']:5.2f} ms  ({n} requests, {meter.errors} errors)"
    )
    return figures


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="measured calls per target")
    parser.add_argument("--warmup", type=int, default=30, help="calls before measuring")
    parser.add_argument("--only", choices=["sqlite", "postgresql", "baseline"], action="append")
    parser.add_argument(
        "--profile",
        choices=["sqlite", "postgresql"],
        help="print a cProfile of the hotline path on this database instead",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("callcenter").setLevel(logging.WARNING)
    per_call = len(STEPS) + 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhook-cpu-"))
    try:
        if args.profile:
            app, services = hotline(args.profile, workdir)
            walk(Meter(app), args.warmup, True)
            meter = Meter(app)
            profile = cProfile.Profile()
            profile.enable()
            walk(meter, args.calls, True)
            profile.disable()
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out).strip_dirs()
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("tottime").print_stats(30)
            print(out.getvalue())
            services.db.dispose()
            return
        targets = args.only or ["baseline", "sqlite", "postgresql"]
        print(
            f"{args.calls} calls x {per_call} requests per target, one at a time, in process "
            f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
        )
        results: dict[str, dict[str, float]] = {}
        for target in targets:
            if target == "baseline":
                from baseline_app import application

                walk(Meter(application), args.warmup, False)
                meter = Meter(application)
                walk(meter, args.calls, False)
            else:
                app, services = hotline(target, workdir)
                engine = services.db.engine
                reader = backend_cpu_reader(engine) if target == "postgresql" else None
                walk(Meter(app), args.warmup, True)
                meter = Meter(app, reader)

                @event.listens_for(engine, "before_cursor_execute")
                def _count(*_args: Any, _meter: Meter = meter) -> None:
                    _meter.statements += 1

                walk(meter, args.calls, True)
                services.db.dispose()
            results[target] = report(target, meter, per_call)
        if "baseline" in results:
            base = results["baseline"]["cpu_ms"]
            for target in ("sqlite", "postgresql"):
                if target in results:
                    r = results[target]
                    total = r["cpu_ms"] + r["server_ms"]
                    print(
                        f"{target}: {total / base:.1f}x the baseline's CPU per request "
                        f"(app {r['cpu_ms']:.2f} + db server {r['server_ms']:.2f} ms "
                        f"vs {base:.2f} ms); at 100% of 2 CPUs that is at most "
                        f"{2000 / total:.0f} req/s vs {2000 / base:.0f} req/s"
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
