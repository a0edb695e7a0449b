"""``POST /api/hospitals/<hospital>/queue-events``: signed like the results feed, idempotent,
and a bad request stores nothing and calls nobody."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.models import AuditEntry, OutboxMessage
from callcenter.recall.models import QueueEvent, RecallClinic, RecallVisit
from tests.recall.conftest import KEY, VISIT_ZH, Hospital1, queue_body, recall_config, seed


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """The recall tests' configuration (a feed key for h1)."""
    return recall_config(database_url, tmp_path)


@pytest.fixture
def seeded(services: Services, clock: FakeClock) -> Services:
    """The recall tests' hospital, patients and bookings."""
    return seed(services, clock)


@pytest.fixture
def hospital(client: FlaskClient, clock: FakeClock, seeded: Services) -> Hospital1:
    """Hospital h1's queue system."""
    return Hospital1(client, clock)


def stored(services: Services) -> tuple[int, int, int, int, int]:
    """(queue events, clinics, recall visits, outbox rows, audit rows)."""
    with services.db.transaction() as s:
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(t)) or 0
            for t in (QueueEvent, RecallClinic, RecallVisit, OutboxMessage, AuditEntry)
        )


NOTHING = (0, 0, 0, 0, 0)


def good() -> dict[str, Any]:
    return queue_body("q-1", 10, [(VISIT_ZH, 11, False)])


def test_a_signed_event_is_accepted_and_audited(hospital: Hospital1, seeded: Services) -> None:
    response = hospital.queue(good())
    assert response.status_code == 200
    assert response.get_json()["recalls_queued"] == [VISIT_ZH]
    assert stored(seeded) == (1, 1, 1, 1, 1)
    with seeded.db.transaction() as s:
        audit = s.scalars(select(AuditEntry)).one()
        assert (audit.actor, audit.action, audit.subject_id) == (
            "feed:h1",
            "recall.queue_event",
            "card-am",
        )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hotline-Timestamp": "1795650000"},
        {"X-Hotline-Signature": "sha256=" + "0" * 64},
        "wrong-key",
        "stale",
    ],
)
def test_forged_or_stale_signatures_are_403_and_store_nothing(
    hospital: Hospital1, seeded: Services, headers: Any
) -> None:
    body = json.dumps(good()).encode()
    if headers == "wrong-key":
        headers = hospital.headers(body, key="x" * 40)
    elif headers == "stale":
        headers = hospital.headers(body)
        headers["X-Hotline-Timestamp"] = str(int(headers["X-Hotline-Timestamp"]) - 301)
    response = hospital.queue(body, headers=headers)
    assert response.status_code == 403
    assert "error" in response.get_json()
    assert stored(seeded) == NOTHING


def test_a_body_changed_after_signing_is_403(hospital: Hospital1, seeded: Services) -> None:
    body = json.dumps(good()).encode()
    headers = hospital.headers(body)
    tampered = body.replace(b'"now_calling": 10', b'"now_calling": 9')
    assert tampered != body
    assert hospital.queue(tampered, headers=headers).status_code == 403
    assert stored(seeded) == NOTHING


def test_unknown_hospital_is_404(hospital: Hospital1, seeded: Services) -> None:
    body = json.dumps(good()).encode()
    response = hospital.client.post(
        "/api/hospitals/nowhere/queue-events",
        data=body,
        headers=hospital.headers(body),
        content_type="application/json",
    )
    assert response.status_code == 404
    assert stored(seeded) == NOTHING


def _without(key: str) -> dict[str, Any]:
    body = good()
    del body[key]
    return body


MALFORMED: list[tuple[Any, str]] = [
    (b"{not json", "not valid JSON"),
    (_without("event_id"), "event_id"),
    (_without("clinic"), "clinic"),
    ({**good(), "now_calling": "10"}, "now_calling"),
    ({**good(), "now_calling": -1}, "now_calling"),
    ({**good(), "waiting": [{"visit_number": "123", "queue_number": 1, "checked_in": False}]},
     "visit_number"),
    ({**good(), "waiting": [{"visit_number": VISIT_ZH, "queue_number": 1}]}, "checked_in"),
    ({**good(), "waiting": [{"visit_number": VISIT_ZH, "queue_number": 0, "checked_in": False}]},
     "queue_number"),
    (queue_body("q-1", 10, [(VISIT_ZH, 11, False), (VISIT_ZH, 12, False)]), "listed twice"),
    (queue_body("q-1", 10, [(VISIT_ZH, 11, False), ("30000009", 11, False)]), "listed twice"),
    ({**good(), "at": "2026-11-26T09:00:00"}, "at"),
    ({**good(), "extra": 1}, "extra"),
    ({**good(), "clinic": {"id": "card am", "name": {"zh": "心内科", "en": "Cardiology"}}},
     "clinic.id"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "named"), MALFORMED)
def test_malformed_payloads_are_400_naming_the_problem_and_store_nothing(
    hospital: Hospital1, seeded: Services, payload: Any, named: str
) -> None:
    response = hospital.queue(payload)
    assert response.status_code == 400
    assert named in response.get_json()["error"]
    assert stored(seeded) == NOTHING


def test_same_event_id_with_another_body_is_409(hospital: Hospital1, seeded: Services) -> None:
    assert hospital.queue(good()).status_code == 200
    before = stored(seeded)
    other = queue_body("q-1", 11, [(VISIT_ZH, 12, False)])
    response = hospital.queue(other)
    assert response.status_code == 409
    assert stored(seeded) == before


def test_replay_gets_the_same_answer_and_no_second_call(
    hospital: Hospital1, seeded: Services
) -> None:
    first = hospital.queue(good())
    second = hospital.queue(good())
    assert first.get_json() == second.get_json()
    assert stored(seeded) == (1, 1, 1, 1, 1)


def test_oversized_body_is_413(hospital: Hospital1, seeded: Services) -> None:
    limit = seeded.config.settings.web.max_body_bytes
    body = b" " * (limit + 1)
    assert hospital.queue(body).status_code == 413
    assert stored(seeded) == NOTHING


def test_recall_list_needs_a_signature(hospital: Hospital1, seeded: Services) -> None:
    forged = hospital.client.get(
        "/api/hospitals/h1/recalls",
        headers={**hospital.headers(b"", key="y" * 40)},
    )
    assert forged.status_code == 403
    assert hospital.recalls().status_code == 200
    assert KEY
