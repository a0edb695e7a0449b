"""The built-in booking backend: clinics and slots in this application's own database.

Reserving a place is one conditional UPDATE::

    UPDATE booking_slots SET booked = booked + 1
     WHERE id = :slot AND booked < capacity AND NOT closed

It either takes a place or changes nothing, so concurrent callers can never over-book: on
PostgreSQL the row lock makes the second UPDATE wait and re-check ``booked < capacity`` on
the committed row; on SQLite writers are serialised (``BEGIN IMMEDIATE``). A ``CHECK
(booked <= capacity)`` constraint backs it up. Each reservation also gets a row in
``booking_places`` whose random reference is returned, so that a release gives back exactly
one place however often it is repeated.

Everything runs in the caller's transaction (``transactional = True``): a reservation
commits or rolls back with the booking that made it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, and_, func, select, update
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.orm import Session

from ..clock import Clock
from ..db.models import Base
from . import models as m
from .ports import PatientRef, Slot, SlotQuery, SlotUnavailable


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


SLOTS = _table(m.Slot)
CLINICS = _table(m.Clinic)
PLACES = _table(m.Place)


@dataclass(frozen=True)
class ClinicClosure:
    """What closing a clinic did: whether it was open until now, and its slot ids."""

    clinic_id: str
    newly_cancelled: bool
    slot_ids: list[str]


class UnknownClinic(LookupError):
    """No clinic has this id."""


class SqlBookingBackend:
    """Slot inventory in the ``booking_clinics`` / ``booking_slots`` tables."""

    name = "sql"
    #: reservations live in the caller's transaction (nothing to undo if it rolls back)
    transactional = True

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def _select(self) -> Select[Any]:
        return select(
            SLOTS.c.id,
            SLOTS.c.clinic_id,
            CLINICS.c.hospital_id,
            CLINICS.c.department_id,
            CLINICS.c.expert_id,
            SLOTS.c.starts_at,
            SLOTS.c.ends_at,
            SLOTS.c.capacity,
            SLOTS.c.booked,
            SLOTS.c.closed,
            CLINICS.c.fee,
            CLINICS.c.status,
        ).join(CLINICS, CLINICS.c.id == SLOTS.c.clinic_id)

    @staticmethod
    def _slot(row: Row[Any]) -> Slot:
        r = row._mapping
        cancelled = bool(r["closed"]) or r["status"] != "open"
        return Slot(
            id=r["id"],
            clinic_id=r["clinic_id"],
            hospital_id=r["hospital_id"],
            department_id=r["department_id"],
            expert_id=r["expert_id"],
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
            capacity=r["capacity"],
            available=0 if cancelled else max(r["capacity"] - r["booked"], 0),
            fee=r["fee"],
            status="cancelled" if cancelled else "open",
        )

    def find_slots(self, tx: Session, query: SlotQuery) -> list[Slot]:
        """Slots of one department (optionally one expert) between two dates, inclusive."""
        conditions = [
            CLINICS.c.hospital_id == query.hospital_id,
            CLINICS.c.department_id == query.department_id,
            CLINICS.c.date >= query.start,
            CLINICS.c.date <= query.end,
        ]
        if query.expert_id is not None:
            conditions.append(CLINICS.c.expert_id == query.expert_id)
        elif not query.any_doctor:
            conditions.append(CLINICS.c.expert_id.is_(None))
        if query.only_available:
            conditions += [
                SLOTS.c.booked < SLOTS.c.capacity,
                SLOTS.c.closed.is_(False),
                CLINICS.c.status == "open",
            ]
        stmt = (
            self._select()
            .where(and_(*conditions))
            .order_by(SLOTS.c.starts_at, func.coalesce(CLINICS.c.expert_id, ""), SLOTS.c.id)
        )
        return [self._slot(row) for row in tx.execute(stmt)]

    def get_slot(self, tx: Session, slot_id: str) -> Slot | None:
        """One slot by id (closed and full ones too), or ``None``."""
        row = tx.execute(self._select().where(SLOTS.c.id == slot_id)).first()
        return None if row is None else self._slot(row)

    def reserve(self, tx: Session, slot_id: str, patient: PatientRef) -> str:
        """Take one place with the conditional UPDATE; the reference names the place.

        ``patient`` is not stored here: the booking row the service writes holds who it is.
        """
        result = tx.execute(
            update(SLOTS)
            .where(
                SLOTS.c.id == slot_id,
                SLOTS.c.booked < SLOTS.c.capacity,
                SLOTS.c.closed.is_(False),
            )
            .values(booked=SLOTS.c.booked + 1)
        )
        assert isinstance(result, CursorResult)
        if result.rowcount != 1:
            raise SlotUnavailable(slot_id)
        reference = secrets.token_hex(10)
        tx.execute(
            PLACES.insert().values(
                reference=reference, slot_id=slot_id, reserved_at=self.clock.now()
            )
        )
        return reference

    def release(self, tx: Session, slot_id: str, reference: str) -> None:
        """Give the place back once: a second release (or an unknown reference) is a no-op."""
        result = tx.execute(
            update(PLACES)
            .where(
                PLACES.c.reference == reference,
                PLACES.c.slot_id == slot_id,
                PLACES.c.released_at.is_(None),
            )
            .values(released_at=self.clock.now())
        )
        assert isinstance(result, CursorResult)
        if result.rowcount == 1:
            tx.execute(
                update(SLOTS)
                .where(SLOTS.c.id == slot_id, SLOTS.c.booked > 0)
                .values(booked=SLOTS.c.booked - 1)
            )

    def close_clinic(
        self, tx: Session, clinic_id: str, *, reason: str, by: str, now: datetime
    ) -> ClinicClosure:
        """Cancel a clinic (停诊) and close its slots; closing twice changes nothing more.

        The slots are closed first with one UPDATE: it waits for reservations in flight on
        them, and every later reservation sees them closed.
        """
        tx.execute(update(SLOTS).where(SLOTS.c.clinic_id == clinic_id).values(closed=True))
        result = tx.execute(
            update(CLINICS)
            .where(CLINICS.c.id == clinic_id, CLINICS.c.status == "open")
            .values(
                status="cancelled",
                cancel_reason=reason,
                cancelled_at=now,
                cancelled_by=by,
                updated_at=now,
            )
        )
        assert isinstance(result, CursorResult)
        newly = result.rowcount == 1
        if not newly and tx.scalar(select(CLINICS.c.id).where(CLINICS.c.id == clinic_id)) is None:
            raise UnknownClinic(clinic_id)
        slot_ids = list(
            tx.scalars(
                select(SLOTS.c.id).where(SLOTS.c.clinic_id == clinic_id).order_by(SLOTS.c.id)
            )
        )
        return ClinicClosure(clinic_id, newly, slot_ids)
