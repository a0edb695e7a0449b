"""Concurrency: 50 callers at once on the last place get exactly one booking.

Each thread runs its own transaction. On SQLite the database is a file; besides the threads
sharing one ``Database`` (whose writers queue on a lock of ours), a second test spreads them
over several ``Database`` handles, as separate processes would be, so SQLite's own locking
(``BEGIN IMMEDIATE``) is what keeps them apart. On PostgreSQL the row lock of the conditional
UPDATE does.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select

from callcenter.booking.models import Booking, Place
from callcenter.booking.models import Slot as SlotRow
from callcenter.booking.ports import PatientRef, SlotUnavailable
from callcenter.booking.rules import BookingRefused
from callcenter.booking.service import BookingService
from callcenter.booking.sql_backend import SqlBookingBackend
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.db.models import OutboxMessage
from tests.booking.conftest import TODAY, add_clinic, make_service, request

THREADS = 50


def race(work: Callable[[int], str]) -> Counter[str]:
    """Run ``work(n)`` in THREADS threads released together; count what they return."""
    barrier = threading.Barrier(THREADS)
    results: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        barrier.wait()
        try:
            outcome = work(n)
        except Exception as exc:  # the test reports any unexpected error as an outcome
            outcome = f"error: {type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return Counter(results)


def fill_but_one(service: BookingService, slot_id: str, capacity: int) -> None:
    for n in range(500, 500 + capacity - 1):
        service.book(request(slot_id, n))


def book_outcome(service: BookingService, slot_id: str) -> Callable[[int], str]:
    def work(n: int) -> str:
        try:
            service.book(request(slot_id, n))
        except BookingRefused as exc:
            return exc.refusal.code
        return "booked"

    return work


def check_one_more(db: Database, slot_id: str, capacity: int) -> None:
    with db.transaction() as tx:
        assert tx.scalar(select(SlotRow.booked).where(SlotRow.id == slot_id)) == capacity
        assert (
            tx.scalar(select(func.count()).select_from(Booking).where(Booking.slot_id == slot_id))
            == capacity
        )
        assert (
            tx.scalar(select(func.count()).select_from(Place).where(Place.slot_id == slot_id))
            == capacity
        )
        assert tx.scalar(select(func.count()).select_from(OutboxMessage)) == capacity


def test_fifty_callers_on_the_last_place_one_database(
    service: BookingService, kb: Database
) -> None:
    [sid] = add_clinic(kb, "c", TODAY + timedelta(days=1), (("08:00", "09:00", 3),))
    fill_but_one(service, sid, 3)
    outcomes = race(book_outcome(service, sid))
    assert outcomes == Counter({"booked": 1, "slot_full": THREADS - 1})
    check_one_more(kb, sid, 3)


def test_fifty_callers_on_the_last_place_many_handles(
    kb: Database, config: Config, clock: FakeClock
) -> None:
    """Five independent ``Database`` handles (like five worker processes), ten threads each."""
    [sid] = add_clinic(kb, "c", TODAY + timedelta(days=1), (("08:00", "09:00", 2),))
    handles = [Database.from_url(config.database_url) for _ in range(5)]
    try:
        services = [make_service(h, config, clock) for h in handles]
        fill_but_one(services[0], sid, 2)

        def work(n: int) -> str:
            return book_outcome(services[n % len(services)], sid)(n)

        outcomes = race(work)
    finally:
        for h in handles:
            h.dispose()
    assert outcomes == Counter({"booked": 1, "slot_full": THREADS - 1})
    check_one_more(kb, sid, 2)


def test_fifty_bare_reservations_on_the_last_place(kb: Database, clock: FakeClock) -> None:
    """The backend alone: 50 conditional UPDATEs on a slot with one place left."""
    [sid] = add_clinic(kb, "c", TODAY + timedelta(days=1), (("08:00", "09:00", 1),))
    backend = SqlBookingBackend(clock)
    patient = PatientRef("张测试", "cn_id", "11010519800101001X", "+8613800000001")

    def work(n: int) -> str:
        try:
            with kb.transaction() as tx:
                backend.reserve(tx, sid, patient)
        except SlotUnavailable:
            return "full"
        return "reserved"

    assert race(work) == Counter({"reserved": 1, "full": THREADS - 1})
    with kb.transaction() as tx:
        assert tx.scalar(select(SlotRow.booked).where(SlotRow.id == sid)) == 1


def test_one_patient_racing_for_two_slots_the_same_day(
    service: BookingService, kb: Database
) -> None:
    """The per-day rule holds under concurrency: the patient row is locked while checking."""
    ids = add_clinic(
        kb, "c", TODAY + timedelta(days=1), (("08:00", "09:00", 60), ("09:00", "10:00", 60))
    )

    def work(n: int) -> str:
        try:
            service.book(request(ids[n % 2], 7))
        except BookingRefused as exc:
            return exc.refusal.code
        return "booked"

    outcomes = race(work)
    assert outcomes["booked"] == 1
    assert set(outcomes) <= {"booked", "per_day_limit", "already_booked"}
