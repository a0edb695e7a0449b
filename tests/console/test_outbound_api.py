"""The outbound JSON API: what is due, sent, failed and why, for supervisors and admins only,
recipients masked, parameters checked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.db.models import OutboxMessage
from callcenter.messaging.outbox import DEFERRED_CAP, DEFERRED_QUIET
from tests.console.conftest import Login
from tests.messaging.helpers import enqueue

NUMBER = "+8613912345678"


def add(
    services: Services, clock: FakeClock, key: str, template: str, **row: Any
) -> tuple[int, str]:
    """An outbox message to ``NUMBER`` with ``row`` columns set afterwards."""
    oid = enqueue(
        services.outbox,
        services.db,
        clock.now(),
        key,
        template=template,
        params={},
        sealed={},
        to_e164=NUMBER,
    )
    if row:
        with services.db.transaction() as s:
            s.execute(update(OutboxMessage).where(OutboxMessage.id == oid).values(**row))
    return oid, key


@pytest.fixture
def outbox_rows(services: Services, clock: FakeClock) -> dict[str, int]:
    """One message in each interesting state."""
    now = clock.now()
    later = now + timedelta(hours=3)
    rows = {
        "due": add(services, clock, "k-due", "booking_reminder"),
        "quiet": add(
            services,
            clock,
            "k-quiet",
            "booking_reminder",
            not_before=later,
            last_error=DEFERRED_QUIET,
        ),
        "cap": add(
            services, clock, "k-cap", "results_ready", not_before=later, last_error=DEFERRED_CAP
        ),
        "sent": add(services, clock, "k-sent", "results_ready", status="delivered", status_rank=55),
        "failed": add(
            services,
            clock,
            "k-failed",
            "booking_reminder",
            status="failed",
            status_rank=50,
            last_error_code="21211",
            last_error=f"invalid number {NUMBER}",
        ),
        "busy": add(
            services,
            clock,
            "k-busy",
            "waiting_room_recall",
            channel="call",
            status="busy",
            status_rank=52,
            last_error_code="busy",
            last_error="the line was busy",
        ),
    }
    return {name: oid for name, (oid, _key) in rows.items()}


@pytest.mark.parametrize(
    ("role", "code"),
    [(None, 401), ("agent", 403), ("expert", 403), ("supervisor", 200), ("admin", 200)],
)
@pytest.mark.parametrize("path", ["/api/outbound/status", "/api/outbound/messages"])
def test_only_supervisors_and_admins_see_the_outbox(
    client: FlaskClient, login: Login, role: str | None, code: int, path: str
) -> None:
    if role is not None:
        login(client, role)
    response = client.get(path)
    assert response.status_code == code
    assert response.is_json
    if code == 401:
        assert response.get_json() == {"error": "sign-in required"}


def test_status_counts_due_sent_failed_and_why(
    client: FlaskClient, login: Login, outbox_rows: dict[str, int]
) -> None:
    login(client, "supervisor")
    data = client.get("/api/outbound/status").get_json()
    assert data["by_template"] == {
        "booking_reminder": {"due": 1, "failed": 1, "waiting": 1},
        "results_ready": {"delivered": 1, "waiting": 1},
        "waiting_room_recall": {"busy": 1},
    }
    assert data["totals"] == {
        "due": 1,
        "waiting": 2,
        "in_progress": 0,
        "sent": 1,
        "failed": 2,
        "other": 0,
    }
    assert data["deferred"] == {"quiet hours": 1, "frequency cap": 1}
    failures = {f["code"]: f for f in data["top_failures"]}
    assert set(failures) == {"21211", "busy"}
    assert failures["busy"]["error"] == "the line was busy"
    # the number in the provider's error text is masked
    assert NUMBER not in failures["21211"]["error"]
    assert "invalid number" in failures["21211"]["error"]


def test_since_limits_the_look_back_but_pending_messages_always_count(
    client: FlaskClient,
    login: Login,
    services: Services,
    clock: FakeClock,
    outbox_rows: dict[str, int],
) -> None:
    clock.advance(hours=5)  # (before signing in: a session idles out in 15 minutes)
    login(client, "admin")
    data = client.get("/api/outbound/status?since_hours=1").get_json()
    # finished messages are older than an hour; the three pending ones are still there
    assert data["by_template"] == {
        "booking_reminder": {"due": 2},
        "results_ready": {"due": 1},
    }
    assert data["top_failures"] == []
    assert data["deferred"] == {}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("failed", ["busy", "failed"]),
        ("due", ["due"]),
        ("waiting", ["cap", "quiet"]),
        ("sent", ["sent"]),
        ("delivered", ["sent"]),
        ("pending", ["cap", "quiet", "due"]),
    ],
)
def test_messages_in_one_state_newest_first_masked(
    client: FlaskClient,
    login: Login,
    outbox_rows: dict[str, int],
    state: str,
    expected: list[str],
) -> None:
    login(client, "supervisor")
    response = client.get(f"/api/outbound/messages?state={state}")
    assert response.status_code == 200
    data = response.get_json()
    names = {oid: name for name, oid in outbox_rows.items()}
    assert [names[m["id"]] for m in data["messages"]] == expected
    text = response.get_data(as_text=True)
    assert NUMBER not in text
    for m in data["messages"]:
        assert m["to"].startswith("+86")
        assert "*" in m["to"]
        assert "params" not in m
        assert "body" not in m


def test_a_failed_message_says_why(
    client: FlaskClient, login: Login, outbox_rows: dict[str, int]
) -> None:
    login(client, "supervisor")
    (failed,) = [
        m
        for m in client.get("/api/outbound/messages?state=failed").get_json()["messages"]
        if m["id"] == outbox_rows["failed"]
    ]
    assert failed["status"] == "failed"
    assert failed["error_code"] == "21211"
    assert failed["error"].startswith("invalid number")
    assert NUMBER not in failed["error"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("/api/outbound/status?since_hours=abc", "since_hours must be a number"),
        ("/api/outbound/status?since_hours=0", "since_hours must be from"),
        ("/api/outbound/status?since_hours=nan", "since_hours must be from"),
        ("/api/outbound/status?since_hours=99999", "since_hours must be from"),
        ("/api/outbound/messages?limit=0", "limit must be from 1 to 500"),
        ("/api/outbound/messages?limit=2.5", "limit must be a whole number"),
        ("/api/outbound/messages?state=lost", "state must be one of"),
    ],
)
def test_bad_parameters_get_a_clear_400(
    client: FlaskClient, login: Login, query: str, message: str
) -> None:
    login(client, "supervisor")
    response = client.get(query)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
