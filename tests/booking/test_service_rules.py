"""The rules as the service applies them, with the fake clock: horizon and release time,
per day, per phone, no-show block, cancellation deadline, and 停诊 (mass cancellation)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from callcenter.booking.models import Booking, Clinic
from callcenter.booking.models import Slot as SlotRow
from callcenter.booking.rules import BookingRefused
from callcenter.booking.service import BookingService
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.db.models import AuditEntry, OutboxMessage
from tests.booking.conftest import TODAY, add_call, add_clinic, local, make_service, request


def refused(service: BookingService, slot_id: str, n: int = 1, **kw: Any) -> str | None:
    """The refusal code of booking ``slot_id`` for patient ``n``, or ``None`` if booked."""
    try:
        service.book(request(slot_id, n, **kw))
    except BookingRefused as exc:
        return exc.refusal.code
    return None


HORIZON = [
    # clock (local, on TODAY), visit day offset, slot start, expected
    ("09:00", 14, "08:00", None),
    ("07:59", 14, "08:00", "not_yet_released"),
    ("08:00", 14, "08:00", None),
    ("07:59", 13, "16:00", None),
    ("09:00", 15, "08:00", "too_far_ahead"),
    ("09:00", 0, "08:30", "slot_started"),
    ("09:00", 0, "09:00", "slot_started"),
    ("09:00", 0, "09:30", None),
]


@pytest.mark.parametrize(("now", "offset", "start", "expected"), HORIZON)
def test_horizon_release_time_and_started_slots(
    service: BookingService,
    kb: Database,
    clock: FakeClock,
    now: str,
    offset: int,
    start: str,
    expected: str | None,
) -> None:
    day = TODAY + timedelta(days=offset)
    end = f"{int(start[:2]) + 1:02d}{start[2:]}"
    [sid] = add_clinic(kb, "c", day, ((start, end, 5),))
    clock.set(local(TODAY, now))
    assert refused(service, sid) == expected


def test_one_booking_per_patient_per_day(
    service: BookingService, slot_ids: list[str], kb: Database, config: Config, clock: FakeClock
) -> None:
    other = add_clinic(kb, "c-derm", TODAY + timedelta(days=1), department="h1-derm")
    assert refused(service, slot_ids[0], 1) is None
    assert refused(service, slot_ids[0], 1) == "already_booked"
    assert refused(service, slot_ids[1], 1) == "per_day_limit"
    assert refused(service, other[0], 1) == "per_day_limit"
    later = add_clinic(kb, "c-later", TODAY + timedelta(days=2))
    assert refused(service, later[0], 1) is None
    two = make_service(kb, config, clock, per_patient_per_day=2)
    assert refused(two, other[0], 1) is None
    assert refused(two, slot_ids[1], 1) == "per_day_limit"


def test_a_cancelled_booking_frees_the_day(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    receipt = service.book(request(slot_ids[0], 1))
    service.cancel(receipt.visit_number, operator="agent7", reason="changed mind")
    assert refused(service, slot_ids[1], 1) is None


def test_patients_per_phone(
    service: BookingService, kb: Database, config: Config, clock: FakeClock
) -> None:
    ids = add_clinic(kb, "c", TODAY + timedelta(days=1), (("08:00", "12:00", 20),))
    family = "+8613900000001"
    assert refused(service, ids[0], 1, contact=family) is None
    assert refused(service, ids[0], 2, contact=family) is None
    assert refused(service, ids[0], 3, contact=family) == "phone_limit"
    # the same number in national format is the same number
    assert refused(service, ids[0], 3, contact="139 0000 0001") == "phone_limit"
    # a patient already booked with the number may book again (another day)
    later = add_clinic(kb, "c2", TODAY + timedelta(days=2), (("08:00", "12:00", 20),))
    assert refused(service, later[0], 1, contact=family) is None
    # bookings in the past do not count
    clock.advance(days=3)
    far = add_clinic(kb, "c3", TODAY + timedelta(days=5), (("08:00", "12:00", 20),))
    assert refused(service, far[0], 3, contact=family) is None
    three = make_service(kb, config, clock, patients_per_phone=3)
    assert refused(three, far[0], 4, contact=family) is None


def test_no_show_block(service: BookingService, kb: Database, clock: FakeClock) -> None:
    visits = []
    for week in range(3):
        ids = add_clinic(kb, f"c{week}", TODAY + timedelta(days=1 + 4 * week))
        visits.append(service.book(request(ids[0], 1)))
    for receipt in visits:
        clock.set(receipt.booking.starts_at + timedelta(hours=3))
        service.mark_no_show(receipt.visit_number, operator="nurse1")
    last = visits[-1].booking.visit_date
    day = clock.now().astimezone(visits[0].booking.starts_at.tzinfo).date()
    ids = add_clinic(kb, "c-next", day + timedelta(days=2))
    assert refused(service, ids[0], 1) == "no_show_blocked"
    assert refused(service, ids[0], 2) is None  # other patients are not blocked
    # 90 days from the last no-show the block ends
    unblock = last + timedelta(days=90)
    clock.set(local(unblock - timedelta(days=1), "09:00"))
    ids = add_clinic(kb, "c-before", unblock + timedelta(days=1))
    assert refused(service, ids[0], 1) == "no_show_blocked"
    clock.set(local(unblock, "09:00"))
    assert refused(service, ids[0], 1) is None


CANCEL = [
    # clock (local date offset from TODAY, time), visit offset, expected
    (0, "09:00", 1, None),
    (0, "15:59", 1, None),
    (0, "16:00", 1, "cancel_too_late"),
    (1, "07:00", 1, "cancel_too_late"),
    (0, "16:00", 2, None),
]


@pytest.mark.parametrize(("now_day", "now", "visit", "expected"), CANCEL)
def test_cancellation_deadline(
    service: BookingService,
    kb: Database,
    clock: FakeClock,
    now_day: int,
    now: str,
    visit: int,
    expected: str | None,
) -> None:
    [sid] = add_clinic(kb, "c", TODAY + timedelta(days=visit), (("10:00", "11:00", 2),))
    receipt = service.book(request(sid))
    clock.set(local(TODAY + timedelta(days=now_day), now))
    call = add_call(kb, 1)
    assert service.verify(receipt.visit_number, receipt.password, call_id=call).outcome == "ok"
    if expected is None:
        assert service.cancel(receipt.visit_number, call_id=call).outcome == "cancelled"
        return
    with pytest.raises(BookingRefused) as exc:
        service.cancel(receipt.visit_number, call_id=call)
    assert exc.value.refusal.code == expected
    # an operator may override the deadline (audited)
    result = service.cancel(
        receipt.visit_number,
        operator="agent7",
        reason="admitted to hospital",
        override_deadline=True,
    )
    assert result.outcome == "cancelled"
    with kb.transaction() as tx:
        audit = tx.scalars(select(AuditEntry)).one()
    assert audit.detail == {"override_deadline": True}


def test_clinic_cancellation_cancels_every_booking_with_one_sms_each(
    service: BookingService, kb: Database, clock: FakeClock
) -> None:
    ids = add_clinic(
        kb, "c-stop", TODAY + timedelta(days=1), (("08:00", "09:00", 3), ("09:00", "10:00", 3))
    )
    other = add_clinic(kb, "c-other", TODAY + timedelta(days=2), (("08:00", "09:00", 3),))
    receipts = [service.book(request(ids[n % 2], n)) for n in range(1, 6)]
    cancelled_before = receipts[0]
    service.cancel(cancelled_before.visit_number, operator="agent7", reason="asked")
    kept = service.book(request(other[0], 9))
    result = service.cancel_clinic("c-stop", operator="agent7", reason="专家临时出诊任务")
    assert (result.newly_cancelled, result.bookings_cancelled, result.sms_queued) == (True, 4, 4)
    with kb.transaction() as tx:
        clinic = tx.get(Clinic, "c-stop")
        assert clinic is not None
        assert clinic.status == "cancelled"
        assert clinic.cancel_reason == "专家临时出诊任务"
        assert clinic.cancelled_by == "agent7"
        slots = tx.scalars(select(SlotRow).where(SlotRow.clinic_id == "c-stop")).all()
        assert all(s.closed and s.booked == 0 for s in slots)
        statuses = {
            row[0]: row[1] for row in tx.execute(select(Booking.visit_number, Booking.status))
        }
        sms = tx.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "clinic_cancelled")
        ).all()
    assert statuses[kept.visit_number] == "booked"
    assert all(statuses[r.visit_number] == "cancelled" for r in receipts)
    assert sorted(m.dedupe_key for m in sms) == sorted(
        f"booking:{r.visit_number}:clinic-cancelled" for r in receipts[1:]
    )
    assert all(m.urgent and m.essential for m in sms)  # the visit is tomorrow
    assert {m.params["visit_number"] for m in sms} == {r.visit_number for r in receipts[1:]}
    # idempotent: nothing more happens the second time
    again = service.cancel_clinic("c-stop", operator="agent7", reason="专家临时出诊任务")
    assert (again.newly_cancelled, again.bookings_cancelled, again.sms_queued) == (False, 0, 0)
    with kb.transaction() as tx:
        assert (
            tx.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.template == "clinic_cancelled")
            )
            == 4
        )
        assert (
            tx.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "clinic.cancel")
            )
            == 1
        )
    with pytest.raises(BookingRefused) as exc:
        service.cancel_clinic("no-such", operator="agent7", reason="x")
    assert exc.value.refusal.code == "unknown_clinic"


def test_clinic_cancellation_later_in_the_horizon_respects_quiet_hours(
    service: BookingService, kb: Database
) -> None:
    ids = add_clinic(kb, "c-week", TODAY + timedelta(days=7))
    service.book(request(ids[0], 1))
    service.cancel_clinic("c-week", operator="agent7", reason="holiday")
    with kb.transaction() as tx:
        sms = tx.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "clinic_cancelled")
        ).one()
    assert sms.essential
    assert not sms.urgent


def test_clinic_cancellation_is_all_or_nothing(
    service: BookingService, kb: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = add_clinic(kb, "c-stop", TODAY + timedelta(days=1), (("08:00", "09:00", 3),))
    for n in range(1, 4):
        service.book(request(ids[0], n))
    real = service.outbox.enqueue
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("outbox broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(service.outbox, "enqueue", failing)
    with pytest.raises(RuntimeError):
        service.cancel_clinic("c-stop", operator="agent7", reason="x")
    with kb.transaction() as tx:
        assert tx.get(Clinic, "c-stop").status == "open"  # type: ignore[union-attr]
        assert tx.scalar(select(SlotRow.booked).where(SlotRow.id == ids[0])) == 3
        assert set(tx.scalars(select(Booking.status))) == {"booked"}
        assert (
            tx.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.template == "clinic_cancelled")
            )
            == 0
        )


def test_past_visit_date_helper() -> None:
    assert date(2026, 11, 26) == TODAY
