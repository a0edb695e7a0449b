"""The booking backend port: where slot inventory lives.

The booking service (rules, patients, visit numbers, passwords, SMS) is ours and the same for
every hospital; the *inventory* of clinic slots lives either in our database
(:class:`~callcenter.booking.sql_backend.SqlBookingBackend`, the default) or in the hospital's
own system reached over FHIR R4 (:class:`~callcenter.booking.fhir_backend.FhirBookingBackend`).
Both pass the same contract tests (``tests/booking/test_backend_contract.py``).

Every method takes the caller's open database session ``tx``: the SQL backend works inside it
(so a reservation commits or rolls back with the booking row); remote backends ignore it and
the service calls :meth:`BookingBackend.release` if its own transaction fails afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, Protocol

from sqlalchemy.orm import Session

IdType = Literal["cn_id", "passport"]


@dataclass(frozen=True)
class Slot:
    """One bookable time slot of one clinic session."""

    id: str
    clinic_id: str
    hospital_id: str
    department_id: str
    #: ``None``: a general clinic (any doctor of the department)
    expert_id: str | None
    starts_at: datetime
    ends_at: datetime
    capacity: int
    available: int
    fee: Decimal | None = None
    #: ``open`` or ``cancelled`` (停诊)
    status: str = "open"


@dataclass(frozen=True)
class SlotQuery:
    """Which slots to list: one department, optionally one expert, a date range (inclusive)."""

    hospital_id: str
    department_id: str
    start: date
    end: date
    #: ``None`` with ``any_doctor=False``: only general clinics; with ``any_doctor=True``:
    #: general and expert clinics alike
    expert_id: str | None = None
    any_doctor: bool = True
    only_available: bool = True


@dataclass(frozen=True)
class PatientRef:
    """Who a reservation is for, as the hospital's system needs to see them."""

    name: str
    id_type: IdType
    id_number: str
    phone_e164: str | None


class SlotUnavailable(Exception):
    """The slot is full, closed, cancelled or unknown; nothing was reserved."""


class BackendUnavailable(Exception):
    """The backend could not be reached or answered nonsense; nothing is known to be reserved."""


class BookingBackend(Protocol):
    """Slot inventory: list, reserve and release."""

    name: str

    def find_slots(self, tx: Session, query: SlotQuery) -> list[Slot]:
        """Slots matching ``query``, ordered by start time then expert."""
        ...

    def get_slot(self, tx: Session, slot_id: str) -> Slot | None:
        """One slot by id, or ``None``."""
        ...

    def reserve(self, tx: Session, slot_id: str, patient: PatientRef) -> str:
        """Take one place in the slot; return the backend's reference for it.

        Raises :class:`SlotUnavailable` when no place is left (never over-books, whatever
        the concurrency) and :class:`BackendUnavailable` when the backend cannot answer.
        """
        ...

    def release(self, tx: Session, slot_id: str, reference: str) -> None:
        """Give the place back (cancellation). Releasing twice is harmless."""
        ...
