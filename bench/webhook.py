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

Prints requests/s, p50/p95/p99 latency and the peak resident memory of the server's process
tree. The load generator runs on the same machine, so it competes for the same CPUs.

    .venv/bin/python bench/webhook.py [--callers 50] [--calls 600] [--workers 2] [--threads 8]
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
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import text
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOKEN = "bench-auth-token"
BASE = "http://bench.invalid"  # PUBLIC_BASE_URL: signatures are computed against it
STEPS = ["5", "1", "2", "9", "0"]
_ACTION = re.compile(r'action="[^"]*?(/twilio/voice/input\?step=\d+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children, from /proc."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
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
                    raise RuntimeError(
                        proc.stderr.read().decode() if proc.stderr else "died"
                    ) from None
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        time.sleep(1.0)  # let every worker boot
        yield proc
    finally:
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
    port: int, pid: int, callers: int, calls: int, follow: bool, think: float = 0.0
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
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if errors:
        print(f"  !! {len(errors)} errors, first: {errors[0]}")
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": q[49] * 1000,
        "p95": q[94] * 1000,
        "p99": q[98] * 1000,
        "peak_mib": peak / 1024,
        "errors": len(errors),
    }


def prepare_database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    from callcenter.db.engine import make_engine

    admin_url = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = make_engine(admin_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("DROP DATABASE IF EXISTS callcenter_bench WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE callcenter_bench LOCALE 'C.UTF-8' TEMPLATE template0"))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/callcenter_bench"


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
    parser.add_argument("--only", choices=["sqlite", "postgresql", "baseline"], action="append")
    args = parser.parse_args()
    targets = args.only or ["baseline", "sqlite", "postgresql"]
    print(
        f"{args.callers} concurrent callers, {args.calls} calls x {len(STEPS) + 2} requests, "
        f"gunicorn {args.workers} workers x {args.threads} threads, {os.cpu_count()} CPUs"
    )
    results: dict[str, dict[str, float]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    try:
        for target in targets:
            port = free_port()
            env = {
                **os.environ,
                "TWILIO_AUTH_TOKEN": TOKEN,
                "SECRET_KEY": "bench",
                "PUBLIC_BASE_URL": BASE,
                "CALLCENTER_LOGGING_LEVEL": "WARNING",
                "CALLCENTER_INSTANCE_DATA_DIR": str(workdir),
            }
            if target == "baseline":
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
                    "baseline_app:application",
                ]
            else:
                env["CALLCENTER_DATABASE_URL"] = prepare_database(target, workdir)
                subprocess.run(
                    [str(BIN / "callcenter"), "db", "upgrade"],
                    env=env,
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                )
                cmd = [str(BIN / "callcenter"), "serve", "--host", "127.0.0.1", "--port", str(port)]
                env["CALLCENTER_WEB_WORKERS"] = str(args.workers)
                env["CALLCENTER_WEB_THREADS"] = str(args.threads)
            follow = target != "baseline"
            with server(cmd, env, port) as proc:
                load(port, proc.pid, min(args.callers, 10), 20, follow)  # warm-up
                results[target] = load(port, proc.pid, args.callers, args.calls, follow)
                paced = load(port, proc.pid, args.callers, args.paced_calls, follow, args.think)
            for mode, r in (("saturated", results[target]), ("paced", paced)):
                print(
                    f"{target:>10} {mode:>9}: {r['rps']:6.0f} req/s  p50 {r['p50']:6.1f} ms  "
                    f"p95 {r['p95']:6.1f} ms  p99 {r['p99']:6.1f} ms  "
                    f"peak RSS {r['peak_mib']:4.0f} MiB  "
                    f"({int(r['requests'])} requests, {int(r['errors'])} errors)"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if "baseline" in results:
        for target in ("sqlite", "postgresql"):
            if target in results:
                share = results[target]["rps"] / results["baseline"]["rps"] * 100
                print(f"{target}: saturated throughput = {share:.0f}% of the fixed-TwiML baseline")


if __name__ == "__main__":
    main()
