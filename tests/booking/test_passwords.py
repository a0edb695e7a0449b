"""Visit passwords: never stored or logged in clear; attempts limited per call and per
patient (across caller ids and operators), then locked until an operator unlocks."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from callcenter.booking.crypto import BookingSecrets
from callcenter.booking.models import Booking, Patient, PinAttempt
from callcenter.booking.rules import BookingRefused
from callcenter.booking.service import BookingReceipt, BookingService
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.db.models import AuditEntry, Base
from callcenter.logs import MaskingFilter
from tests.booking.conftest import add_call, cn_id, make_service, request


def wrong(receipt: BookingReceipt, n: int = 0) -> str:
    """A wrong password (``n`` picks among several)."""
    candidates = [f"{(int(receipt.password) + k) % 1_000_000:06d}" for k in range(1, 10)]
    return candidates[n]


def all_values(db: Database) -> list[str]:
    """Every value of every column of every table, as text."""
    values: list[str] = []
    with db.transaction() as tx:
        for table in Base.metadata.sorted_tables:
            for row in tx.execute(text(f"SELECT * FROM {table.name}")):  # noqa: S608
                values += [str(v) for v in row if v is not None]
    return values


def test_passwords_and_identity_numbers_are_never_stored_or_logged_in_clear(
    service: BookingService,
    slot_ids: list[str],
    kb: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    id_number = cn_id(7)
    call = add_call(kb, 1)
    receipt = service.book(request(slot_ids[0], 7, call_id=call, id_number=id_number))
    reset = service.reset_password(receipt.visit_number, operator="agent7", reason="lost")
    service.resend_sms(receipt.visit_number, reset.password, call_id=call)
    service.verify(receipt.visit_number, receipt.password, call_id=add_call(kb, 2))
    secrets_ = {receipt.password, reset.password}
    values = all_values(kb)
    assert values, "the scan read nothing"
    for secret in secrets_:
        assert not [v for v in values if secret in v], "a password is stored in clear"
    assert not [v for v in values if id_number in v or id_number[:-1] in v]
    with kb.transaction() as tx:
        stored = tx.scalar(select(Booking.password_hash))
        patient = tx.scalars(select(Patient)).one()
    assert stored is not None
    assert stored.startswith("scrypt$4$8$1$")
    assert patient.id_last4 == id_number[-4:]
    assert len(patient.id_hmac) == 64
    # the log (masked as in production) holds no password, name, ID number or phone number
    masking = MaskingFilter()
    for record in caplog.records:
        masking.filter(record)
        line = record.getMessage()
        for secret in (*secrets_, id_number, "+8613800000007", patient.name):
            assert secret not in line, line
    # and neither do the raw messages the service itself wrote
    raw = " ".join(str(r.msg) % r.args if r.args else str(r.msg) for r in caplog.records)
    for secret in (*secrets_, id_number, "13800000007", patient.name):
        assert secret not in raw


def test_production_hash_cost(config: Config) -> None:
    assert config.settings.booking.password_hash_cost == 14
    secrets_ = BookingSecrets("k", cost=14)
    stored = secrets_.hash_password("012345")
    assert stored.startswith("scrypt$14$8$1$")
    assert secrets_.check_password("012345", stored)
    assert not secrets_.check_password("012346", stored)
    # the pepper comes from SECRET_KEY: another key cannot check it
    assert not BookingSecrets("other", cost=14).check_password("012345", stored)
    # two hashes of one password differ (salt)
    assert secrets_.hash_password("012345") != stored
    assert not secrets_.check_password("012345", "garbage")


def test_per_call_limit_then_another_call_may_try(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    receipt = service.book(request(slot_ids[0]))
    call_a = add_call(kb, 1)
    results = [
        service.verify(receipt.visit_number, wrong(receipt, k), call_id=call_a) for k in range(3)
    ]
    assert [(r.outcome, r.attempts_left, r.locked_scope) for r in results] == [
        ("wrong", 2, None),
        ("wrong", 1, None),
        ("locked", None, "call"),
    ]
    # the call may not try again, not even with the right password or another visit number
    again = service.verify(receipt.visit_number, receipt.password, call_id=call_a)
    assert (again.outcome, again.locked_scope) == ("locked", "call")
    # another call (same patient) still may: 2 wrong left for the day
    call_b = add_call(kb, 2)
    ok = service.verify(receipt.visit_number, receipt.password, call_id=call_b)
    assert ok.outcome == "ok"


def test_unknown_visit_numbers_count_against_the_call(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    call = add_call(kb, 1)
    outcomes = [service.verify(f"1234567{k}", "123456", call_id=call).outcome for k in range(3)]
    assert outcomes == ["unknown", "unknown", "locked"]


def test_per_patient_limit_across_caller_ids_locks_until_unlocked(
    service: BookingService, slot_ids: list[str], kb: Database, clock: FakeClock
) -> None:
    receipt = service.book(request(slot_ids[0]))
    callers = [add_call(kb, n, caller=f"+861390000000{n}") for n in range(1, 7)]
    outcomes = []
    for k, call in enumerate(callers[:4]):
        outcomes.append(service.verify(receipt.visit_number, wrong(receipt, k), call_id=call))
        clock.advance(minutes=30)
    # one more wrong, typed by an operator: the fifth in 24 hours
    outcomes.append(service.verify(receipt.visit_number, wrong(receipt, 5), operator="agent7"))
    assert [(o.outcome, o.attempts_left) for o in outcomes[:4]] == [
        ("wrong", 2),  # per call: 3 allowed; per patient: 4 left
        ("wrong", 2),
        ("wrong", 2),
        ("wrong", 1),
    ]
    assert (outcomes[4].outcome, outcomes[4].locked_scope) == ("locked", "patient")
    # now even the right password is refused, from any call
    locked = service.verify(receipt.visit_number, receipt.password, call_id=callers[5])
    assert (locked.outcome, locked.locked_scope) == ("locked", "patient")
    assert service.lookup(receipt.visit_number, operator="agent7").patient_locked
    # an operator unlocks (audited), and the count starts afresh
    patient_id = receipt.booking.patient_id
    with pytest.raises(BookingRefused):
        service.unlock(patient_id, operator="agent7", reason="")
    assert service.unlock(patient_id, operator="agent7", reason="caller identified by agent")
    assert not service.unlock(patient_id, operator="agent7", reason="twice")
    with kb.transaction() as tx:
        audit = tx.scalars(
            select(AuditEntry).where(AuditEntry.action == "patient.unlock").order_by(AuditEntry.id)
        ).all()
    assert [(a.actor, a.subject_type, a.subject_id, a.reason, a.detail) for a in audit] == [
        ("agent7", "patient", str(patient_id), "caller identified by agent", {"was_locked": True}),
        ("agent7", "patient", str(patient_id), "twice", {"was_locked": False}),
    ]
    late = add_call(kb, 9)
    assert service.verify(receipt.visit_number, wrong(receipt), call_id=late).attempts_left == 2
    assert service.verify(receipt.visit_number, receipt.password, call_id=late).outcome == "ok"
    with kb.transaction() as tx:
        attempts = tx.scalars(select(PinAttempt).order_by(PinAttempt.id)).all()
    assert len(attempts) == 8
    assert [a.success for a in attempts].count(True) == 1
    assert {a.call_id for a in attempts if a.operator} == {None}
    assert all(a.patient_id == patient_id for a in attempts)


def test_wrong_attempts_older_than_24_hours_do_not_count(
    service: BookingService, slot_ids: list[str], kb: Database, clock: FakeClock
) -> None:
    receipt = service.book(request(slot_ids[1]))
    for k in range(4):
        service.verify(receipt.visit_number, wrong(receipt, k), call_id=add_call(kb, k))
    clock.advance(hours=24, seconds=1)
    result = service.verify(receipt.visit_number, wrong(receipt, 5), call_id=add_call(kb, 10))
    assert (result.outcome, result.attempts_left) == ("wrong", 2)


def test_limits_are_configurable(
    kb: Database, config: Config, clock: FakeClock, slot_ids: list[str]
) -> None:
    strict = make_service(kb, config, clock, pin_attempts_per_call=1, pin_attempts_per_day=2)
    receipt = strict.book(request(slot_ids[0]))
    first = strict.verify(receipt.visit_number, wrong(receipt), call_id=add_call(kb, 1))
    assert (first.outcome, first.locked_scope) == ("locked", "call")
    second = strict.verify(receipt.visit_number, wrong(receipt, 1), call_id=add_call(kb, 2))
    assert (second.outcome, second.locked_scope) == ("locked", "patient")


def test_find_patient_for_unlock_is_audited(
    service: BookingService, slot_ids: list[str], kb: Database
) -> None:
    receipt = service.book(request(slot_ids[0], 3))
    found = service.find_patient("cn_id", cn_id(3).lower(), operator="agent7")
    assert found is not None
    assert found.id == receipt.booking.patient_id
    assert not found.locked
    assert service.find_patient("cn_id", cn_id(4), operator="agent7") is None
    with kb.transaction() as tx:
        actions = list(tx.scalars(select(AuditEntry.action)))
    assert actions == ["patient.view"]


def test_verification_authorises_the_call_for_an_hour_only(
    service: BookingService, slot_ids: list[str], kb: Database, clock: FakeClock
) -> None:
    receipt = service.book(request(slot_ids[0]))
    call = add_call(kb, 1)
    service.verify(receipt.visit_number, receipt.password, call_id=call)
    clock.advance(minutes=59)
    assert service.lookup(receipt.visit_number, call_id=call).status == "booked"
    clock.advance(minutes=2)
    with pytest.raises(BookingRefused):
        service.lookup(receipt.visit_number, call_id=call)
    assert timedelta(hours=1)
