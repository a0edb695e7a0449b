"""Enqueue writes the row in the caller's transaction, once per dedupe key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from callcenter.db.models import OutboxMessage, Resident
from callcenter.messaging.outbox import Outbox

PHONE = "+8613800138000"


def _enqueue(outbox: Outbox, session, clock: FakeClock, key: str = "booking:1:confirmed", **kw):
    args = {
        "channel": "sms",
        "to_e164": PHONE,
        "template": "booking_confirmed",
        "language": "zh-CN",
        "params": {"hospital": "瑞金医院", "visit_number": "0012"},
        "dedupe_key": key,
        "now": clock.now(),
        "sealed": {"password": "73915604"},
        "essential": True,
    }
    args.update(kw)
    return outbox.enqueue(session, **args)


def test_row_commits_with_its_cause(outbox: Outbox, msg_db: Database, clock: FakeClock) -> None:
    with msg_db.transaction() as s:
        s.add(Resident(phone_e164=PHONE, created_at=clock.now(), updated_at=clock.now()))
        assert _enqueue(outbox, s, clock) is True
    with msg_db.transaction() as s:
        row = s.scalars(select(OutboxMessage)).one()
        assert row.status == "pending"
        assert row.not_before == row.due_at == clock.now()
        assert row.essential
        assert not row.urgent
        assert row.attempts == 0
        assert row.status_rank == 0
        assert s.scalars(select(Resident)).one().phone_e164 == PHONE


def test_rollback_leaves_no_row(outbox: Outbox, msg_db: Database, clock: FakeClock) -> None:
    class Boom(Exception):
        pass

    def cause_then_crash() -> None:
        with msg_db.transaction() as s:
            s.add(Resident(phone_e164=PHONE, created_at=clock.now(), updated_at=clock.now()))
            assert _enqueue(outbox, s, clock)
            raise Boom

    with pytest.raises(Boom):
        cause_then_crash()
    with msg_db.transaction() as s:
        assert s.scalars(select(OutboxMessage)).all() == []
        assert s.scalars(select(Resident)).all() == []


def test_duplicate_dedupe_key_is_one_row(
    outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    with msg_db.transaction() as s:
        assert _enqueue(outbox, s, clock) is True
        assert _enqueue(outbox, s, clock) is False
    with msg_db.transaction() as s:
        assert _enqueue(outbox, s, clock, params={"other": "x"}) is False
        assert _enqueue(outbox, s, clock, key="booking:2:confirmed") is True
    with msg_db.transaction() as s:
        keys = s.scalars(select(OutboxMessage.dedupe_key).order_by(OutboxMessage.id)).all()
    assert keys == ["booking:1:confirmed", "booking:2:confirmed"]


def test_password_is_never_stored_in_clear(
    outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    with msg_db.transaction() as s:
        _enqueue(outbox, s, clock)
    with msg_db.connection() as conn:
        rows = conn.execute(text("SELECT * FROM outbox")).all()
    dump = repr([tuple(r) for r in rows])
    assert "73915604" not in dump
    with msg_db.transaction() as s:
        row = s.scalars(select(OutboxMessage)).one()
        assert row.sealed is not None
        assert outbox.sealer.open(row.sealed) == {"password": "73915604"}


def test_due_later_and_reply_window(outbox: Outbox, msg_db: Database, clock: FakeClock) -> None:
    later = clock.now() + timedelta(days=1)
    with msg_db.transaction() as s:
        _enqueue(
            outbox,
            s,
            clock,
            due_at=later,
            sealed=None,
            reply_handler="booking.reminder",
            reply_context={"booking_id": 7},
        )
    with msg_db.transaction() as s:
        row = s.scalars(select(OutboxMessage)).one()
    assert row.due_at == later
    assert row.not_before == later
    assert row.reply_handler == "booking.reminder"
    assert row.reply_context == {"booking_id": 7}
    assert row.reply_until == later + timedelta(hours=48)
    assert row.sealed is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("channel", "fax"),
        ("to_e164", "13800138000"),
        ("language", "fr"),
        ("dedupe_key", ""),
        ("template", ""),
        ("params", {"password": "1"}),
    ],
)
def test_bad_arguments_are_refused(
    outbox: Outbox, msg_db: Database, clock: FakeClock, field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=r"\w"), msg_db.transaction() as s:
        _enqueue(outbox, s, clock, **{field: value})


def test_cancel_withdraws_pending(outbox: Outbox, msg_db: Database, clock: FakeClock) -> None:
    with msg_db.transaction() as s:
        _enqueue(outbox, s, clock)
    with msg_db.transaction() as s:
        assert outbox.cancel(s, "booking:1:confirmed", now=clock.now()) is True
        assert outbox.cancel(s, "booking:1:confirmed", now=clock.now()) is False
        assert outbox.cancel(s, "no-such-key") is False
    with msg_db.transaction() as s:
        row = s.scalars(select(OutboxMessage)).one()
        assert row.status == "cancelled"
        assert row.sealed is None


def test_call_service_core_insert_still_works(msg_db: Database, clock: FakeClock) -> None:
    """Rows written without the new columns (the call service's Core insert) get defaults."""
    from callcenter.messaging.outbox import outbox_t

    with msg_db.connection() as conn:
        conn.execute(
            outbox_t.insert().values(
                channel="sms",
                to_e164=PHONE,
                template="service_guide",
                language="zh-CN",
                params={},
                dedupe_key="call:1:step:1:sms:0",
                essential=False,
                status="pending",
                due_at=clock.now(),
                created_at=clock.now(),
            )
        )
    with msg_db.transaction() as s:
        row = s.scalars(select(OutboxMessage)).one()
    assert row.urgent is False
    assert row.attempts == 0
    assert row.status_rank == 0
    assert row.not_before is None
