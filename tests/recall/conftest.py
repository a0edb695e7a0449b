"""Fixtures for recall, results-by-phone and voice-reminder tests.

Two fictional patients booked at the fictional hospital h1 (zh-CN and en), a feed key for
h1, real visit-password hashes (cheap scrypt cost), a dispatcher with a fake sender on the
fake clock (2026-11-26 09:00 Shanghai), and helpers that play Twilio: signed answer and
input webhooks, signed status callbacks. Names, numbers and results are made up.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.booking.identity import check_char
from callcenter.booking.models import Booking, Patient
from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.models import OutboxMessage
from callcenter.feeds.service import sign
from callcenter.messaging.dispatcher import Dispatcher
from callcenter.messaging.templates import Templates
from knowledge_base.models import Hospital
from tests.conftest import PUBLIC_BASE_URL, TwilioSigner, make_config
from tests.messaging.helpers import FakeSender

KEY = "recall-test-feed-key-0123456789abcdef"
PHONE_ZH = "+8613800000001"
PHONE_EN = "+8613800000002"
VISIT_ZH = "30000001"
VISIT_EN = "30000002"
PIN_ZH = "135790"
PIN_EN = "246802"


def cn_id(seq: int, born: str) -> str:
    """A checksummed resident ID number of a fictional person."""
    body = f"110105{born}{seq:03d}"
    return body + check_char(body)


ID_ZH = cn_id(11, "19800101")
ID_EN = cn_id(12, "19750615")


def recall_config(database_url: str, tmp_path: Path, **overrides: Any) -> Config:
    """Test configuration: a feed key for h1, cheap password hashing."""
    booking = {"password_hash_cost": 4, **overrides.pop("booking", {})}
    base = make_config(database_url, tmp_path, booking=booking, **overrides)
    return replace(base, secrets=replace(base.secrets, hospital_feed_keys=f"h1={KEY}"))


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """Test configuration: a feed key for h1, cheap password hashing."""
    return recall_config(database_url, tmp_path)


def _booking(
    patient: int, visit: str, phone: str, language: str, pw_hash: str, now: datetime
) -> Booking:
    starts = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # 11:00 Shanghai, today
    return Booking(
        visit_number=visit,
        patient_id=patient,
        backend="sql",
        slot_id=f"slot-{patient}",
        clinic_id=f"clinic-{patient}",
        backend_ref=f"ref-{patient}",
        hospital_id="h1",
        department_id="h1-card",
        expert_id=None,
        visit_date=date(2026, 11, 26),
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30),
        fee=None,
        status="booked",
        password_hash=pw_hash,
        password_expires_at=datetime(2026, 11, 27, 16, 0, tzinfo=UTC),
        contact_phone=phone,
        language=language,
        channel="ivr",
        created_by="test",
        created_at=now,
        updated_at=now,
    )


@pytest.fixture
def seeded(services: Services, clock: FakeClock) -> Services:
    """The hospital, two patients and their bookings (today 11:00 local)."""
    return seed(services, clock)


def seed(services: Services, clock: FakeClock) -> Services:
    """Add the hospital, two patients and their bookings (today 11:00 local)."""
    now = clock.now()
    booking = services.booking
    assert booking is not None
    with services.db.transaction() as tx:
        tx.add(Hospital(id="h1", name_zh="测试医院", name_en="Test Hospital", updated_at=now))
        for n, id_number in ((1, ID_ZH), (2, ID_EN)):
            tx.add(
                Patient(
                    id=n,
                    name=f"测试{n}",
                    id_type="cn_id",
                    id_hmac=booking.secrets.id_hmac("cn_id", id_number),
                    id_last4=id_number[-4:],
                    created_at=now,
                    updated_at=now,
                )
            )
        tx.flush()
        tx.add_all(
            [
                _booking(
                    1, VISIT_ZH, PHONE_ZH, "zh-CN", booking.secrets.hash_password(PIN_ZH), now
                ),
                _booking(2, VISIT_EN, PHONE_EN, "en", booking.secrets.hash_password(PIN_EN), now),
            ]
        )
    return services


def queue_body(
    event_id: str,
    now_calling: int,
    waiting: list[tuple[str, int, bool]],
    *,
    clinic: str = "card-am",
) -> dict[str, Any]:
    """A queue event: ``waiting`` as (visit number, queue number, checked in)."""
    return {
        "event_id": event_id,
        "clinic": {"id": clinic, "name": {"zh": "心内科门诊", "en": "Cardiology clinic"}},
        "now_calling": now_calling,
        "waiting": [{"visit_number": v, "queue_number": q, "checked_in": c} for v, q, c in waiting],
        "at": "2026-11-26T09:00:00+08:00",
    }


class Hospital1:
    """Posts signed feed requests as hospital h1 does."""

    def __init__(self, client: FlaskClient, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock

    def headers(self, body: bytes, key: str = KEY) -> dict[str, str]:
        """Timestamp and signature headers for ``body`` now."""
        ts = str(int(self.clock.now().timestamp()))
        return {"X-Hotline-Timestamp": ts, "X-Hotline-Signature": sign(key.encode(), ts, body)}

    def post(
        self,
        path: str,
        payload: dict[str, Any] | bytes,
        *,
        key: str = KEY,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """POST ``payload`` to ``/api/hospitals/h1/<path>``, signed with ``key``."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.client.post(
            f"/api/hospitals/h1/{path}",
            data=body,
            headers=self.headers(body, key) if headers is None else headers,
            content_type="application/json",
        )

    def queue(self, payload: dict[str, Any] | bytes, **kw: Any) -> Any:
        """POST a queue event."""
        return self.post("queue-events", payload, **kw)

    def result(self, payload: dict[str, Any], **kw: Any) -> Any:
        """POST a results-ready event."""
        return self.post("results", payload, **kw)

    def recalls(self) -> Any:
        """GET what recalled patients answered (signed, empty body)."""
        return self.client.get("/api/hospitals/h1/recalls", headers=self.headers(b""))


@pytest.fixture
def hospital(client: FlaskClient, clock: FakeClock, seeded: Services) -> Hospital1:
    """Hospital h1's systems (the database is seeded)."""
    return Hospital1(client, clock)


@pytest.fixture
def sender() -> FakeSender:
    """A provider that accepts everything and records it."""
    return FakeSender(name="twilio")


@pytest.fixture
def dispatcher(
    config: Config, services: Services, sender: FakeSender, clock: FakeClock
) -> Dispatcher:
    """A dispatcher on the fake clock (its sleeps advance the clock)."""
    return Dispatcher(
        services.outbox,
        sender,
        Templates(config.flows_dir),
        clock=clock,
        sleep=clock.advance,
        worker_id="test-worker",
    )


def twiml(response: Any) -> ET.Element:
    """The TwiML of a webhook answer."""
    assert response.status_code == 200, response.get_data(as_text=True)
    return ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML, under test


def spoken(root: ET.Element) -> str:
    """Everything said, in order, as one text."""
    return " ".join(el.text or "" for el in root.iter("Say"))


def _path(url: str) -> str:
    assert url.startswith(PUBLIC_BASE_URL + "/"), url
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Phone:
    """One outbound call as the patient's phone and Twilio play it."""

    twilio: TwilioSigner
    sid: str
    answer_url: str
    status_url: str | None
    root: ET.Element | None = None

    def answer(self, answered_by: str = "human") -> ET.Element:
        """The call is answered (Twilio fetches the answer URL)."""
        params = {"CallSid": self.sid, "CallStatus": "in-progress", "AnsweredBy": answered_by}
        self.root = twiml(self.twilio.post(_path(self.answer_url), params))
        return self.root

    def press(self, digits: str) -> ET.Element:
        """The patient answers the current question with keys."""
        assert self.root is not None
        gather = self.root.find("Gather")
        assert gather is not None, ET.tostring(self.root, encoding="unicode")
        path = _path(gather.attrib["action"])
        self.root = twiml(self.twilio.post(path, {"CallSid": self.sid, "Digits": digits}))
        return self.root

    def status(self, call_status: str, **extra: str) -> Any:
        """Twilio's status callback for this call."""
        assert self.status_url is not None
        params = {"CallSid": self.sid, "CallStatus": call_status, **extra}
        response = self.twilio.post(_path(self.status_url), params)
        assert response.status_code == 204
        return response


def placed_calls(sender: FakeSender, twilio: TwilioSigner) -> list[Phone]:
    """Every call the fake provider was asked to place, as phones (oldest first)."""
    return [
        Phone(twilio, f"CA{s.outbox_id:04d}{i:028d}", s.answer_url or "", s.status_callback)
        for i, s in enumerate(sender.sent)
        if s.kind == "call"
    ]


def outbox_rows(services: Services) -> list[OutboxMessage]:
    """Every outbox row, oldest first."""
    with services.db.transaction() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def gather_step(root: ET.Element) -> int:
    """The step number of the question asked."""
    gather = root.find("Gather")
    assert gather is not None
    found = re.search(r"step=(\d+)", gather.attrib["action"])
    assert found is not None
    return int(found.group(1))
