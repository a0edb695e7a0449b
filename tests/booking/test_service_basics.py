"""The booking service end to end on the SQL backend: book, verify, look up, cancel, SMS."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from callcenter.booking import crypto
from callcenter.booking.models import Booking, Patient, PinAttempt
from callcenter.booking.models import Slot as SlotRow
from callcenter.booking.rules import BookingRefused
from callcenter.booking.service import BookingService
from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from callcenter.db.models import AuditEntry, OutboxMessage
from tests.booking.conftest import TODAY, add_call, add_clinic, cn_id, request


def outbox(db: Database) -> list[OutboxMessage]:
    with db.transaction() as tx:
        return list(tx.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_book_gives_visit_number_password_and_one_sms(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    call = add_call(kb, 1)
    receipt = service.book(request(slot_ids[0], call_id=call))
    assert len(receipt.visit_number) == 8
    assert receipt.visit_number.isdigit()
    assert len(receipt.password) == 6
    assert receipt.password.isdigit()
    assert receipt.sms_queued
    assert "password='******'" in repr(receipt)
    view = receipt.booking
    assert view.status == "booked"
    assert view.cancellable
    assert view.labels["zh-CN"].hospital == "测试医院"
    assert view.labels["zh-CN"].when == "11月27日（周五）上午08:00"
    assert view.labels["en"].when == "Fri 27 Nov 08:00"
    assert view.labels["zh-CN"].doctor == "普通门诊"
    assert view.contact_phone_masked == "+86 138****0001"
    [sms] = outbox(kb)
    assert (sms.template, sms.language, sms.to_e164) == (
        "booking_confirmed",
        "zh-CN",
        "+8613800000001",
    )
    assert sms.dedupe_key == f"booking:{receipt.visit_number}:confirmed"
    assert sms.essential
    assert sms.urgent
    assert sms.call_id == call
    assert sms.params["visit_number"] == receipt.visit_number
    assert sms.params["cancel_by"] == "11月26日16:00"
    assert "password" not in sms.params
    assert sms.sealed
    assert service.outbox.sealer.open(sms.sealed) == {"password": receipt.password}  # type: ignore[attr-defined]
    with kb.transaction() as tx:
        assert tx.scalar(select(SlotRow.booked).where(SlotRow.id == slot_ids[0])) == 1


def test_english_booking_sms(service: BookingService, slot_ids: list[str], kb: Database) -> None:
    service.book(request(slot_ids[0], language="en"))
    [sms] = outbox(kb)
    assert sms.language == "en"
    assert sms.params["hospital"] == "Test Hospital"
    assert sms.params["doctor"] == "general clinic"
    assert sms.params["cancel_by"] == "16:00 on 26 Nov"


def test_expert_labels(service: BookingService, kb: Database) -> None:
    [sid] = add_clinic(kb, "e1-c", TODAY + timedelta(days=2), expert="e1", fee="60.00")
    receipt = service.book(request(sid))
    assert receipt.booking.labels["zh-CN"].doctor == "周演示主任医师"
    assert receipt.booking.labels["en"].doctor == "Dr Zhou Yanshi"
    assert str(receipt.booking.fee) == "60.00"


def test_verify_lookup_cancel_in_one_call(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    receipt = service.book(request(slot_ids[0]))
    call = add_call(kb, 2)
    with pytest.raises(BookingRefused) as refused:
        service.lookup(receipt.visit_number, call_id=call)
    assert refused.value.refusal.code == "not_verified"
    result = service.verify(receipt.visit_number, receipt.password, call_id=call)
    assert result.outcome == "ok"
    assert result.booking is not None
    assert result.booking.visit_number == receipt.visit_number
    assert service.lookup(receipt.visit_number, call_id=call).status == "booked"
    # another call has not verified
    with pytest.raises(BookingRefused):
        service.cancel(receipt.visit_number, call_id=add_call(kb, 3))
    cancelled = service.cancel(receipt.visit_number, call_id=call)
    assert cancelled.outcome == "cancelled"
    assert cancelled.sms_queued
    again = service.cancel(receipt.visit_number, call_id=call)
    assert again.outcome == "already_cancelled"
    assert not again.sms_queued
    templates = [m.template for m in outbox(kb)]
    assert templates == ["booking_confirmed", "booking_cancelled"]
    with kb.transaction() as tx:
        assert tx.scalar(select(SlotRow.booked).where(SlotRow.id == slot_ids[0])) == 0
        assert tx.scalar(select(func.count()).select_from(PinAttempt)) == 1


def test_verify_outcomes(
    service: BookingService, slot_ids: list[str], kb: Database, clock: FakeClock
) -> None:
    receipt = service.book(request(slot_ids[0]))
    call = add_call(kb, 2)
    assert service.verify("99999999", "123456", call_id=call).outcome == "unknown"
    assert service.verify("１２３", "123456", call_id=call).outcome == "unknown"
    wrong = "000000" if receipt.password != "000000" else "111111"
    result = service.verify(receipt.visit_number, wrong, call_id=add_call(kb, 3))
    assert (result.outcome, result.attempts_left) == ("wrong", 2)
    spaced = " ".join(receipt.visit_number)
    assert service.verify(spaced, receipt.password, operator="agent7").outcome == "ok"
    # the password works until the end of the day after the visit (password_valid_days 1)
    clock.set(receipt.booking.password_expires_at - timedelta(seconds=1))
    assert service.verify(receipt.visit_number, receipt.password, operator="agent7").outcome == "ok"
    clock.set(receipt.booking.password_expires_at)
    assert (
        service.verify(receipt.visit_number, receipt.password, operator="agent7").outcome
        == "expired"
    )
    with pytest.raises(ValueError, match="call_id"):
        service.verify(receipt.visit_number, receipt.password)


def test_resend_sms_reseals_the_password_once_per_request(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    receipt = service.book(request(slot_ids[0]))
    call = add_call(kb, 2)
    first = service.resend_sms(receipt.visit_number, receipt.password, call_id=call)
    assert first.outcome == "ok"
    assert first.sms_queued
    repeat = service.resend_sms(receipt.visit_number, receipt.password, call_id=call)
    assert repeat.outcome == "ok"
    assert not repeat.sms_queued
    wrong = "000000" if receipt.password != "000000" else "111111"
    refused = service.resend_sms(receipt.visit_number, wrong, call_id=add_call(kb, 3))
    assert refused.outcome == "wrong"
    assert not refused.sms_queued
    messages = outbox(kb)
    assert [m.dedupe_key for m in messages] == [
        f"booking:{receipt.visit_number}:confirmed",
        f"booking:{receipt.visit_number}:resend:call-{call}",
    ]
    assert service.outbox.sealer.open(messages[1].sealed) == {"password": receipt.password}  # type: ignore[attr-defined]


def test_reset_password_by_operator(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    receipt = service.book(request(slot_ids[0]))
    with pytest.raises(BookingRefused) as refused:
        service.reset_password(receipt.visit_number, operator="agent7", reason=" ")
    assert refused.value.refusal.code == "reason_required"
    new = service.reset_password(receipt.visit_number, operator="agent7", reason="caller lost SMS")
    assert service.verify(receipt.visit_number, new.password, operator="agent7").outcome == "ok"
    if new.password != receipt.password:
        assert (
            service.verify(receipt.visit_number, receipt.password, operator="agent7").outcome
            == "wrong"
        )
    messages = outbox(kb)
    assert messages[-1].template == "booking_password"
    assert messages[-1].dedupe_key == f"booking:{receipt.visit_number}:password:2"
    with kb.transaction() as tx:
        audit = tx.scalars(select(AuditEntry)).all()
    assert [(a.actor, a.action, a.subject_id, a.reason) for a in audit] == [
        ("agent7", "booking.reset_password", receipt.visit_number, "caller lost SMS")
    ]


def test_operator_booking_lookup_and_cancel_are_audited(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    receipt = service.book(request(slot_ids[0], channel="operator", created_by="agent7"))
    view = service.lookup(receipt.visit_number, operator="agent9")
    assert view.channel == "operator"
    assert view.created_by == "agent7"
    with pytest.raises(BookingRefused) as refused:
        service.cancel(receipt.visit_number, operator="agent9")
    assert refused.value.refusal.code == "reason_required"
    service.cancel(receipt.visit_number, operator="agent9", reason="patient asked")
    with kb.transaction() as tx:
        audit = [
            (a.actor, a.action, a.reason)
            for a in tx.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
    assert audit == [
        ("agent7", "booking.book", None),
        ("agent9", "booking.view", None),
        ("agent9", "booking.cancel", "patient asked"),
    ]


def test_same_person_is_one_patient_and_a_different_name_is_refused(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    service.book(request(slot_ids[0], 1, id_number=cn_id(1).lower()))
    other_day = add_clinic(kb, "c-later", TODAY + timedelta(days=3))
    # the same ID number typed with full-width digits and spaces is the same patient
    full_width = " ".join(cn_id(1)).translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789X"})
    service.book(request(other_day[0], 1, id_number=full_width))
    with kb.transaction() as tx:
        assert tx.scalar(select(func.count()).select_from(Patient)) == 1
    with pytest.raises(BookingRefused) as refused:
        service.book(request(slot_ids[1], 1, name="另一个人"))
    assert refused.value.refusal.code == "identity_mismatch"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("name", "", "invalid_name"),
        ("name", "张3", "invalid_name"),
        ("id_number", "110105198001010010", "invalid_id_number"),
        ("id_number", "12345", "invalid_id_number"),
        ("contact", "12345", "invalid_phone"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    service: BookingService, slot_ids: list[str], kb: Database, field: str, value: str, code: str
) -> None:
    with pytest.raises(BookingRefused) as refused:
        service.book(request(slot_ids[0], 1, **{field: value}))
    assert refused.value.refusal.code == code
    assert refused.value.refusal.zh
    assert refused.value.refusal.en
    with kb.transaction() as tx:
        assert tx.scalar(select(func.count()).select_from(Booking)) == 0
        assert tx.scalar(select(func.count()).select_from(Patient)) == 0


def test_passport_patient(service: BookingService, slot_ids: list[str]) -> None:
    receipt = service.book(
        request(slot_ids[0], name="Test Person", id_type="passport", id_number="e 1234 5678")
    )
    assert receipt.booking.id_type == "passport"
    assert receipt.booking.id_last4 == "5678"


def test_unknown_full_and_cancelled_slots(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    with pytest.raises(BookingRefused) as refused:
        service.book(request("no-such-slot"))
    assert refused.value.refusal.code == "slot_unknown"
    service.book(request(slot_ids[0], 1))
    service.book(request(slot_ids[0], 2))
    with pytest.raises(BookingRefused) as refused:
        service.book(request(slot_ids[0], 3))
    assert refused.value.refusal.code == "slot_full"
    service.cancel_clinic("c-tomorrow", operator="agent7", reason="doctor ill")
    with pytest.raises(BookingRefused) as refused:
        service.book(request(slot_ids[1], 4))
    assert refused.value.refusal.code == "clinic_cancelled"


def test_visit_numbers_are_random_and_a_clash_draws_again(
    service: BookingService, kb: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = add_clinic(kb, "c-big", TODAY + timedelta(days=4), (("08:00", "12:00", 50),))
    first = service.book(request(ids[0], 1))
    draws = iter([first.visit_number, first.visit_number, "23456789"])
    monkeypatch.setattr("callcenter.booking.service.new_visit_number", lambda: next(draws))
    second = service.book(request(ids[0], 2))
    assert second.visit_number == "23456789"
    monkeypatch.undo()
    numbers = [service.book(request(ids[0], n)).visit_number for n in range(3, 12)]
    assert len(set(numbers)) == len(numbers)
    ordered = sorted(int(n) for n in numbers)
    assert any(b - a != 1 for a, b in itertools.pairwise(ordered))
    assert all(10_000_000 <= int(n) <= 99_999_999 for n in numbers)


def test_crypto_draws() -> None:
    numbers = {crypto.new_visit_number() for _ in range(2000)}
    assert len(numbers) > 1990
    assert all(len(n) == 8 and n[0] != "0" for n in numbers)
    passwords = [crypto.new_password() for _ in range(2000)]
    assert all(len(p) == 6 and p.isdigit() for p in passwords)
    assert any(p.startswith("0") for p in passwords)


def test_mark_no_show_and_attended(
    service: BookingService, slot_ids: list[str], kb: Database, clock: FakeClock
) -> None:
    a = service.book(request(slot_ids[0], 1))
    b = service.book(request(slot_ids[0], 2))
    with pytest.raises(BookingRefused) as refused:
        service.mark_no_show(a.visit_number, operator="nurse1")
    assert refused.value.refusal.code == "visit_not_started"
    clock.set(a.booking.starts_at + timedelta(hours=2))
    assert service.mark_no_show(a.visit_number, operator="nurse1").status == "no_show"
    assert service.mark_no_show(a.visit_number, operator="nurse1").status == "no_show"
    assert service.mark_attended(b.visit_number, operator="nurse1").status == "attended"
    with pytest.raises(BookingRefused) as refused:
        service.mark_no_show(b.visit_number, operator="nurse1")
    assert refused.value.refusal.code == "not_active"
    with pytest.raises(BookingRefused) as refused:
        service.cancel(b.visit_number, operator="nurse1", reason="x", override_deadline=True)
    assert refused.value.refusal.code == "not_active"


def test_find_slots_applies_the_window(
    service: BookingService, slot_ids: list[str], kb: Database, clock: FakeClock
) -> None:
    add_clinic(kb, "c-today", TODAY, (("08:00", "09:00", 2), ("10:00", "11:00", 2)))
    add_clinic(kb, "c-far", TODAY + timedelta(days=15))
    add_clinic(kb, "c-edge", TODAY + timedelta(days=14))
    found = [s.id for s in service.find_slots("h1", "h1-card")]
    # 08:00 today has started (it is 09:00); day 15 is beyond the horizon
    assert found == ["c-today-1000", *slot_ids, "c-edge-0800"]
    clock.set(clock.now().replace(hour=23, minute=30) - timedelta(days=1))  # 07:30 local today
    found = [s.id for s in service.find_slots("h1", "h1-card")]
    assert "c-edge-0800" not in found  # the 14th day opens at 08:00
    assert service.find_slots("h1", "h1-card", expert_id="e1") == []
    labels = service.describe_slot(service.find_slots("h1", "h1-card")[0])
    assert labels["en"].department == "Cardiology"
