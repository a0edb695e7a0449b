"""Delivery statuses move a message forward only: idempotent, in any order, for any copy."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.db.models import ProviderStatus
from callcenter.messaging.outbox import STATUS_RANK, Outbox

from .helpers import FakeSender, dispatcher, enqueue, row

_counter = itertools.count()

# (provider id, status) pairs a provider may report for one message sent twice (the
# duplicate window): copy A delivered, copy B undelivered.
HISTORY = [
    ("SMa", "queued"),
    ("SMa", "sending"),
    ("SMa", "sent"),
    ("SMa", "delivered"),
    ("SMb", "queued"),
    ("SMb", "sent"),
    ("SMb", "undelivered"),
]


def _sent_message(config: Config, outbox: Outbox, db: Database, clock: FakeClock) -> int:
    oid = enqueue(outbox, db, clock.now(), f"status-{next(_counter)}")
    dispatcher(config, outbox, FakeSender(status="queued"), clock).drain()
    return oid


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(events=st.lists(st.sampled_from(HISTORY), min_size=1, max_size=12).flatmap(st.permutations))
def test_statuses_in_any_order_never_move_backwards(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock, events: list
) -> None:
    oid = _sent_message(config, outbox, msg_db, clock)
    ranks = [row(msg_db, oid).status_rank]
    for provider_id, status in events:
        outbox.record_status("fake", provider_id, status, outbox_id=oid, now=clock.now())
        ranks.append(row(msg_db, oid).status_rank)
    assert ranks == sorted(ranks)
    best = max(events, key=lambda e: STATUS_RANK[e[1]])[1]
    final = row(msg_db, oid)
    assert final.status == (best if STATUS_RANK[best] > STATUS_RANK["queued"] else "queued")
    if final.status in {"delivered", "undelivered"}:
        assert final.finished_at is not None


def test_duplicates_are_idempotent_and_recorded_once(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = _sent_message(config, outbox, msg_db, clock)
    pid = row(msg_db, oid).provider_id
    assert pid is not None
    assert outbox.record_status("fake", pid, "delivered", now=clock.now()) is True
    assert outbox.record_status("fake", pid, "delivered", now=clock.now()) is False
    assert outbox.record_status("fake", pid, "sent", now=clock.now()) is False
    assert row(msg_db, oid).status == "delivered"
    with msg_db.transaction() as s:
        count = s.scalar(
            select(func.count())
            .select_from(ProviderStatus)
            .where(ProviderStatus.provider_id == pid, ProviderStatus.status == "delivered")
        )
    assert count == 1


def test_found_by_any_attempts_provider_id(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = _sent_message(config, outbox, msg_db, clock)
    with msg_db.connection() as conn:
        from callcenter.messaging.outbox import attempts_t

        conn.execute(
            attempts_t.insert().values(
                outbox_id=oid,
                attempt=2,
                worker="w",
                started_at=clock.now(),
                result="accepted",
                provider_id="SMsecondcopy",
            )
        )
    assert outbox.record_status("fake", "SMsecondcopy", "delivered", now=clock.now()) is True
    assert row(msg_db, oid).status == "delivered"


def test_unknown_ids_and_statuses_change_nothing(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = _sent_message(config, outbox, msg_db, clock)
    assert outbox.record_status("fake", "SMnobody", "delivered", now=clock.now()) is False
    assert outbox.record_status("fake", "SMx", "receiving", outbox_id=oid, now=clock.now()) is False
    assert outbox.record_status("fake", "SMx", "pending", outbox_id=oid, now=clock.now()) is False
    assert row(msg_db, oid).status == "queued"


def test_a_late_delivery_report_overrides_our_failure(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    """We gave up (the copy sent in the crash window was not known), then it was delivered."""
    oid = enqueue(outbox, msg_db, clock.now(), "late-news")
    with msg_db.connection() as conn:
        from callcenter.messaging.outbox import FAILED, advance

        advance(conn, oid, FAILED, now=clock.now(), error="gave up")
    assert outbox.record_status("fake", "SMz", "delivered", outbox_id=oid, now=clock.now())
    r = row(msg_db, oid)
    assert r.status == "delivered"
    assert r.provider_id == "SMz"
