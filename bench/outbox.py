"""Outbox dispatcher benchmark: N messages through 1, 2 and 4 worker processes at the limit.

A local fake Twilio REST API (``tests/messaging/fake_provider.py``) enforces a rate limit the
way Twilio does: more than ``--rate`` messages accepted in the last second and it answers 429
with error code 20429. The messages are due in a steady stream at exactly that rate
(message i due at t0 + i/rate), so a dispatcher that keeps up sends at 100% of the limit with
a small delay; one that cannot keep up falls behind and its delay grows. The workers are real
``callcenter worker`` processes sending through ``TwilioSender``, with the configuration's
defaults (batch 20, lease 60 s, rate guard 20 ms, 1 s idle poll) except the rate, and quiet
hours switched off.

Printed per database and worker count: achieved rate as % of the limit (messages / (last
first-arrival - first due)), p50/p99 delay from due to the provider's first receipt,
duplicates (requests accepted more than once for one message), and 429s the provider
returned (each one is retried by the dispatcher after a backoff).

Baseline, in the same run: one process, no database, sending the same messages straight to
the same provider with ``TwilioSender`` in a naive loop: send, then ``sleep(1/rate)``.

    .venv/bin/python bench/outbox.py [--db sqlite|postgresql|both] [--messages 10000]
        [--workers 1,2,4] [--rate 100]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callcenter.config import load_config  # noqa: E402
from callcenter.db.engine import Database, make_engine  # noqa: E402
from callcenter.db.migrate import upgrade  # noqa: E402
from callcenter.messaging.outbox import Outbox  # noqa: E402
from callcenter.messaging.ports import OutgoingSms, SendError  # noqa: E402
from callcenter.telephony.twilio.rest import TwilioSender  # noqa: E402
from tests.messaging.fake_provider import FakeProvider  # noqa: E402

ACCOUNT = "AC" + "0" * 32
SECRET = "bench-secret"


def recipient(i: int) -> str:
    """A different mobile number for every message, as in a real mass send (one number gets
    at most ``messaging.max_non_essential_per_day`` non-essential messages a day)."""
    return f"+86138{i:08d}"


BODY = "【健康热线】服务指南：人工服务每天7:00-22:00；拨打热线按2可预约14天内号源。"


def prepare_database(kind: str, workdir: Path, tag: str) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{tag}.db'}"
    else:
        admin_url = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        name = f"callcenter_bench_outbox_{tag}"
        admin = make_engine(admin_url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name} LOCALE 'C.UTF-8' TEMPLATE template0"))
        admin.dispose()
        url = admin_url.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def drop_database(kind: str, tag: str) -> None:
    if kind != "postgresql":
        return
    admin_url = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = make_engine(admin_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS callcenter_bench_outbox_{tag} WITH (FORCE)"))
    admin.dispose()


def worker_env(url: str, provider: FakeProvider, rate: float, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env.update(
        {
            "CALLCENTER_CONFIG": str(ROOT / "config.yaml"),
            "CALLCENTER_DATABASE_URL": url,
            "CALLCENTER_INSTANCE_DATA_DIR": str(workdir),
            "CALLCENTER_MESSAGING_SENDER": "twilio",
            "CALLCENTER_MESSAGING_SMS_FROM": "+862161234567",
            "CALLCENTER_MESSAGING_SMS_PER_SECOND": str(rate),
            "CALLCENTER_MESSAGING_QUIET_START": "00:00",
            "CALLCENTER_MESSAGING_QUIET_END": "00:00",
            "CALLCENTER_TWILIO_API_BASE_URL": provider.url,
            "CALLCENTER_LOGGING_LEVEL": "WARNING",
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": "bench-token",
            "SECRET_KEY": SECRET,
            "PUBLIC_BASE_URL": "https://hotline.example.org",
        }
    )
    return env


def enqueue_stream(url: str, messages: int, rate: float, t0: datetime) -> None:
    """Message i due at t0 + i/rate, written through ``Outbox.enqueue`` 500 to a transaction."""
    config = load_config(
        ROOT / "config.yaml",
        environ={"SECRET_KEY": SECRET},
        overrides={"database": {"url": url}},
    )
    db = Database.from_url(url)
    outbox = Outbox.from_config(config, db)
    now = datetime.now(UTC)
    for start in range(0, messages, 500):
        with db.transaction() as session:
            for i in range(start, min(messages, start + 500)):
                outbox.enqueue(
                    session,
                    channel="sms",
                    to_e164=recipient(i),
                    template="service_guide",
                    language="zh-CN",
                    params={},
                    dedupe_key=f"bench:{i}",
                    now=now,
                    due_at=t0 + timedelta(seconds=i / rate),
                )
    db.dispose()


def report(
    name: str, provider: FakeProvider, messages: int, rate: float, t0: float, due: dict[int, float]
) -> dict[str, float]:
    first: dict[int, float] = {}
    for r in provider.received:
        if r.outbox_id is not None and r.outbox_id not in first:
            first[r.outbox_id] = r.wall
    copies = Counter(provider.outbox_ids())
    delivered = len(first)
    delays = sorted(first[k] - due[k] for k in first)
    span = max(first.values()) - t0 if first else float("nan")
    achieved = delivered / span if span > 0 else float("nan")
    q = statistics.quantiles(delays, n=100) if len(delays) > 1 else [float("nan")] * 99
    result = {
        "pct": achieved / rate * 100,
        "p50": q[49],
        "p99": q[98],
        "dups": sum(n - 1 for n in copies.values()),
        "r429": provider.count_429(),
        "sent": delivered,
    }
    print(
        f"{name:>24}: {result['pct']:5.1f}% of limit ({achieved:6.1f}/s)  "
        f"delay p50 {result['p50']:6.3f} s  p99 {result['p99']:6.3f} s  "
        f"duplicates {result['dups']:3d}  429s {result['r429']:4d}  "
        f"({delivered}/{messages} sent)",
        flush=True,
    )
    return result


def run_dispatcher(kind: str, workers: int, messages: int, rate: float, workdir: Path) -> None:
    tag = f"{kind}_{workers}"
    url = prepare_database(kind, workdir, tag)
    procs: list[subprocess.Popen[bytes]] = []
    with FakeProvider(limit_per_s=rate) as provider:
        env = worker_env(url, provider, rate, workdir)
        try:
            for n in range(workers):
                log = (workdir / f"{tag}-w{n}.log").open("wb")
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "callcenter.cli", "worker", "--worker-id", f"w{n}"],
                        env=env,
                        cwd=str(workdir),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            # time for the workers to start and for the rows to be written before they fall due
            lead = 5 + messages / 1000
            t0 = datetime.now(UTC) + timedelta(seconds=lead)
            enqueue_stream(url, messages, rate, t0)
            due = {}
            # outbox ids are 1..N in insertion order on a fresh database
            for i in range(messages):
                due[i + 1] = t0.timestamp() + i / rate
            deadline = time.time() + lead + messages / rate * 1.5 + 30
            while len(set(provider.outbox_ids())) < messages and time.time() < deadline:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"a worker died; see {workdir}/{tag}-w*.log")
                time.sleep(0.2)
            time.sleep(1.0)  # anything still in flight
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        report(f"{kind} {workers} worker(s)", provider, messages, rate, t0.timestamp(), due)
    drop_database(kind, tag)


def run_baseline(messages: int, rate: float) -> None:
    with FakeProvider(limit_per_s=rate) as provider:
        sender = TwilioSender(
            ACCOUNT, "bench-token", api_base_url=provider.url, sms_from="+862161234567"
        )
        t0 = time.time()
        due = {i + 1: t0 + i / rate for i in range(messages)}
        for i in range(messages):
            # a naive loop has nowhere to put a refused message
            with contextlib.suppress(SendError):
                sender.send_sms(
                    OutgoingSms(
                        outbox_id=i + 1,
                        to_e164=recipient(i),
                        body=BODY,
                        segments=1,
                        status_callback=f"https://hotline.example.org/twilio/sms/status?o={i + 1}",
                    )
                )
            time.sleep(1 / rate)
        report("baseline sleep(1/rate)", provider, messages, rate, t0, due)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, e.g. 1,2,4")
    parser.add_argument("--rate", type=float, default=100.0, help="provider limit, messages/s")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    counts = [int(n) for n in args.workers.split(",")]
    print(
        f"{args.messages} SMS due at {args.rate:g}/s, provider limit {args.rate:g}/s "
        f"(429 + 20429 above it), {os.cpu_count()} CPUs",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    try:
        if not args.no_baseline:
            run_baseline(args.messages, args.rate)
        for kind in kinds:
            for workers in counts:
                run_dispatcher(kind, workers, args.messages, args.rate, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
