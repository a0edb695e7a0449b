"""Crash test: real ``callcenter worker`` processes, SIGKILLed at random moments, lose nothing.

Two workers send through :class:`TwilioSender` to a local fake Twilio (it records the outbox
id from each StatusCallback URL). Every moment or so one of them is killed with SIGKILL and
a new one started, with a short lease so the dead worker's messages come back quickly. At the
end: every message reached the provider at least once, every row is final, duplicates are at
most one per kill, and each duplicate shows in ``outbox_attempts`` as an attempt whose outcome
is unknown (the documented window between the provider's answer and our commit).

Runs on the database the suite runs on (``TEST_DATABASE``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from callcenter.clock import SystemClock
from callcenter.db.engine import Database
from callcenter.db.models import OutboxAttempt, OutboxMessage
from callcenter.messaging.outbox import Outbox
from tests.conftest import FLOWS, ROOT, SECRET_KEY, make_config

from .fake_provider import FakeProvider
from .helpers import BOOKING_PARAMS, enqueue

MESSAGES = 150
RATE = 25
KILL_FOR_S = 12.0
DEADLINE_S = 38.0


def _env(database_url: str, provider: FakeProvider, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env.update(
        {
            "CALLCENTER_CONFIG": str(ROOT / "config.yaml"),
            "CALLCENTER_DATABASE_URL": database_url,
            "CALLCENTER_INSTANCE_DATA_DIR": str(data_dir),
            "CALLCENTER_IVR_FLOWS_DIR": str(FLOWS),
            "CALLCENTER_MESSAGING_SENDER": "twilio",
            "CALLCENTER_MESSAGING_SMS_FROM": "+862161234567",
            "CALLCENTER_MESSAGING_SMS_PER_SECOND": str(RATE),
            "CALLCENTER_MESSAGING_LEASE_S": "1.5",
            "CALLCENTER_MESSAGING_MAX_NON_ESSENTIAL_PER_DAY": "100000",
            "CALLCENTER_MESSAGING_POLL_INTERVAL_S": "0.2",
            "CALLCENTER_MESSAGING_BACKOFF_BASE_S": "0.2",
            "CALLCENTER_MESSAGING_QUIET_START": "00:00",
            "CALLCENTER_MESSAGING_QUIET_END": "00:00",
            "CALLCENTER_TWILIO_API_BASE_URL": provider.url,
            "CALLCENTER_LOGGING_LEVEL": "WARNING",
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": "crash-test-token",
            "SECRET_KEY": SECRET_KEY,
            "PUBLIC_BASE_URL": "https://hotline.example.org",
        }
    )
    return env


def _start(env: dict[str, str], name: str, logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "callcenter.cli", "worker", "--worker-id", name, "--batch", "10"],
        env=env,
        cwd=str(logs),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _open_rows(db: Database) -> int:
    with db.transaction() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status.in_(("pending", "claimed")))
            )
            or 0
        )


@pytest.mark.slow
def test_sigkilled_workers_lose_nothing(database_url: str, tmp_path: Path) -> None:
    config = make_config(database_url, tmp_path)
    db = Database.from_url(database_url)
    outbox = Outbox.from_config(config, db)
    now = SystemClock().now()
    ids = []
    for i in range(MESSAGES):
        if i % 3 == 0:
            ids.append(enqueue(outbox, db, now, f"crash-{i}", params=BOOKING_PARAMS))
        else:
            ids.append(
                enqueue(
                    outbox, db, now, f"crash-{i}", template="service_guide", params={}, sealed={}
                )
            )
    rng = random.Random()
    kills = 0
    workers: dict[str, subprocess.Popen[bytes]] = {}
    generation = 0
    with FakeProvider() as provider:
        env = _env(database_url, provider, tmp_path)

        def spawn() -> None:
            nonlocal generation
            generation += 1
            name = f"w{generation}"
            workers[name] = _start(env, name, tmp_path)

        spawn()
        spawn()
        started = time.monotonic()
        try:
            while time.monotonic() - started < KILL_FOR_S:
                time.sleep(rng.uniform(0.3, 1.2))
                if len(set(provider.outbox_ids())) == MESSAGES:
                    break
                victim = rng.choice(sorted(workers))
                workers.pop(victim).send_signal(signal.SIGKILL)
                kills += 1
                spawn()
            while _open_rows(db) and time.monotonic() - started < DEADLINE_S:
                time.sleep(0.2)
        finally:
            for proc in workers.values():
                proc.send_signal(signal.SIGTERM)
            for proc in workers.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        received = provider.outbox_ids()
        bodies = {r.outbox_id: r.body for r in provider.received}

    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("w*.log"))
    assert kills >= 5, "the test should have killed workers several times"
    assert set(received) == set(ids), f"messages never sent; worker logs:\n{logs}"
    assert _open_rows(db) == 0, f"rows left pending or claimed; worker logs:\n{logs}"
    assert "73915604" in bodies[ids[0]]  # the sealed password went out...
    with db.transaction() as s:
        statuses = Counter(s.scalars(select(OutboxMessage.status)))
        sealed_left = s.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sealed.is_not(None))
        )
        attempt_rows = list(s.scalars(select(OutboxAttempt)))
    assert statuses == {"queued": MESSAGES}
    assert sealed_left == 0  # ... and is erased from the database
    copies = Counter(received)
    duplicates = sum(n - 1 for n in copies.values())
    assert duplicates <= kills
    unknown = Counter(a.outbox_id for a in attempt_rows if a.result in ("unknown", None))
    for oid, n in copies.items():
        if n > 1:
            assert unknown[oid] >= n - 1, f"duplicate of {oid} not visible in outbox_attempts"
    print(
        f"\n{MESSAGES} messages, {kills} kills, {duplicates} duplicates, "
        f"{sum(unknown.values())} attempts with unknown outcome, "
        f"{len(attempt_rows)} attempts in all"
    )
    db.dispose()
