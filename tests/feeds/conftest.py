"""Fixtures for the hospital feed tests: two hospitals with feed keys, bookings, a signer.

The fake clock stands at 2026-11-26 09:00 Shanghai time; requests are signed at that time
unless a test says otherwise. Names and numbers are fictional.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from callcenter.booking.models import Booking, Patient
from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.feeds.service import sign
from knowledge_base.models import Hospital
from tests.conftest import make_config

KEYS = {"h1": "k" * 40, "h2": "h2-feed-key-0123456789abcdef0123456789"}
PHONE_ZH = "+8613800000001"
PHONE_EN = "+8613800000002"
VISIT_ZH = "10000001"
VISIT_EN = "10000002"
VISIT_H2 = "20000001"


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """The test configuration with ``HOSPITAL_FEED_KEYS`` for h1 and h2."""
    base = make_config(database_url, tmp_path)
    keys = ",".join(f"{h}={k}" for h, k in KEYS.items())
    return replace(base, secrets=replace(base.secrets, hospital_feed_keys=keys))


def _booking(
    n: int, visit: str, hospital: str, phone: str, language: str, now: datetime
) -> Booking:
    starts = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    return Booking(
        visit_number=visit,
        patient_id=n,
        backend="sql",
        slot_id=f"slot-{n}",
        clinic_id=f"clinic-{n}",
        backend_ref=f"ref-{n}",
        hospital_id=hospital,
        department_id=f"{hospital}-lab",
        expert_id=None,
        visit_date=date(2026, 11, 25),
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30),
        fee=None,
        status="attended",
        password_hash="x",
        password_expires_at=starts,
        contact_phone=phone,
        language=language,
        channel="ivr",
        created_by="test",
        created_at=now,
        updated_at=now,
    )


@pytest.fixture
def seeded(services: Services, clock: FakeClock) -> Services:
    """Two hospitals, two patients; h1 bookings in zh-CN and en, one h2 booking."""
    now = clock.now()
    with services.db.transaction() as tx:
        tx.add_all(
            [
                Hospital(id="h1", name_zh="测试医院", name_en="Test Hospital", updated_at=now),
                Hospital(id="h2", name_zh="示例医院", name_en="Sample Hospital", updated_at=now),
            ]
        )
        for n, last4 in ((1, "0011"), (2, "0022")):
            tx.add(
                Patient(
                    id=n,
                    name=f"测试{n}",
                    id_type="cn_id",
                    id_hmac=f"{n:064d}",
                    id_last4=last4,
                    created_at=now,
                    updated_at=now,
                )
            )
        tx.flush()
        tx.add_all(
            [
                _booking(1, VISIT_ZH, "h1", PHONE_ZH, "zh-CN", now),
                _booking(2, VISIT_EN, "h1", PHONE_EN, "en", now),
                _booking(1, VISIT_H2, "h2", PHONE_ZH, "zh-CN", now),
            ]
        )
    return services


def event(**changes: Any) -> dict[str, Any]:
    """A valid "results ready" payload for the zh-CN h1 booking, with ``changes``."""
    payload: dict[str, Any] = {
        "event_id": "evt-0001",
        "visit_number": VISIT_ZH,
        "result_id": "res-0001",
        "test_name": {"zh": "血常规", "en": "Complete blood count"},
        "ready_at": "2026-11-26T08:30:00+08:00",
        "abnormal": False,
        "values": [{"name": "WBC", "value": 6.1, "unit": "10^9/L"}],
    }
    payload.update(changes)
    return payload


class FeedClient:
    """Posts feed events the way a hospital does: raw JSON, timestamp, HMAC signature."""

    def __init__(self, client: FlaskClient, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock

    def post(
        self,
        payload: dict[str, Any] | bytes,
        *,
        hospital: str = "h1",
        key: str | None = None,
        timestamp: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """POST ``payload`` to the hospital's results feed, signed unless ``headers`` say."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        ts = timestamp or str(int(self.clock.now().timestamp()))
        secret = (key or KEYS.get(hospital, "z" * 40)).encode()
        signed = {"X-Hotline-Timestamp": ts, "X-Hotline-Signature": sign(secret, ts, body)}
        return self.client.post(
            f"/api/hospitals/{hospital}/results",
            data=body,
            headers=signed if headers is None else headers,
            content_type="application/json",
        )


@pytest.fixture
def feed(client: FlaskClient, clock: FakeClock, seeded: Services) -> FeedClient:
    """A hospital-like signed client (the database is seeded)."""
    return FeedClient(client, clock)
