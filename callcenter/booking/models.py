"""Booking tables: clinics and slots (the SQL backend's inventory), patients, bookings,
reserved places and visit-password attempts. Created by migration ``0004_booking``.

Personal data is kept to what the hospital needs: the patient's name (shown at the visit,
never logged), an HMAC of the identity number (for look-up; the key is derived from
``SECRET_KEY``) and its last four characters (for display). Visit passwords are stored only
as salted, peppered scrypt hashes.
"""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from knowledge_base.models import Money

from ..db.models import Base

SESSIONS = ("am", "pm", "evening")
CLINIC_STATUSES = ("open", "cancelled")
BOOKING_STATUSES = ("booked", "cancelled", "attended", "no_show")
CHANNELS = ("ivr", "operator")


class Clinic(Base):
    """One clinic session (门诊): a department's general clinic or an expert's, on one date.

    ``expert_id`` ``None`` is a general clinic (any doctor of the department). Cancelling a
    clinic (停诊) closes its slots and cancels every booking in it.
    """

    __tablename__ = "booking_clinics"
    __table_args__ = (
        Index("ix_booking_clinics_department_date", "department_id", "date"),
        CheckConstraint("session IN ('am', 'pm', 'evening')", name="session"),
        CheckConstraint("status IN ('open', 'cancelled')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("kb_hospitals.id"), index=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("kb_departments.id"))
    expert_id: Mapped[str | None] = mapped_column(ForeignKey("kb_experts.id"), index=True)
    date: Mapped[dt.date] = mapped_column(Date)
    session: Mapped[str] = mapped_column(String(8))
    fee: Mapped[Decimal | None] = mapped_column(Money())
    status: Mapped[str] = mapped_column(String(16), default="open")
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class Slot(Base):
    """A time slot of a clinic with ``capacity`` places, ``booked`` of them taken.

    ``booked`` only changes through one conditional UPDATE (see
    :meth:`~callcenter.booking.sql_backend.SqlBookingBackend.reserve`); the check constraint
    is a second line of defence against over-booking. ``closed`` is set when the clinic is
    cancelled, on the slot row itself, so that a reservation racing the cancellation waits
    for it and then sees the slot closed.
    """

    __tablename__ = "booking_slots"
    __table_args__ = (
        UniqueConstraint("clinic_id", "starts_at"),
        CheckConstraint("booked >= 0 AND booked <= capacity", name="places"),
        CheckConstraint("capacity >= 0", name="capacity"),
        Index("ix_booking_slots_starts_at", "starts_at"),
    )

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    clinic_id: Mapped[str] = mapped_column(
        ForeignKey("booking_clinics.id", ondelete="CASCADE"), index=True
    )
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)


class Place(Base):
    """One reserved place in a slot: the SQL backend's reservation reference.

    Releasing marks the row released and gives the place back exactly once, whatever the
    number of releases.
    """

    __tablename__ = "booking_places"

    reference: Mapped[str] = mapped_column(String(40), primary_key=True)
    slot_id: Mapped[str] = mapped_column(
        ForeignKey("booking_slots.id", ondelete="CASCADE"), index=True
    )
    reserved_at: Mapped[datetime]
    released_at: Mapped[datetime | None]


class Patient(Base):
    """A patient booked under their real name (实名制).

    ``id_hmac`` is HMAC-SHA256 of ``id_type:normalised number`` with a key derived from
    ``SECRET_KEY``; ``id_last4`` is shown to operators. ``locked_at`` is set when too many
    wrong visit passwords were tried; only an operator unlocks (``unlocked_at`` then starts
    a fresh count).
    """

    __tablename__ = "booking_patients"
    __table_args__ = (UniqueConstraint("id_type", "id_hmac"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    id_type: Mapped[str] = mapped_column(String(16))
    id_hmac: Mapped[str] = mapped_column(String(64))
    id_last4: Mapped[str] = mapped_column(String(4))
    locked_at: Mapped[datetime | None]
    unlocked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Booking(Base):
    """An appointment: who, which slot (with what the SMS needs copied in), its visit number
    and password hash, and what became of it.

    ``slot_id`` and ``backend_ref`` are the backend's (no foreign key: a remote backend's
    slots are not in this database). ``visit_number`` is 8 random digits, unique.
    """

    __tablename__ = "booking_bookings"
    __table_args__ = (
        Index("ix_booking_bookings_patient_date", "patient_id", "visit_date"),
        Index("ix_booking_bookings_phone_status", "contact_phone", "status"),
        Index("ix_booking_bookings_clinic_status", "clinic_id", "status"),
        CheckConstraint("status IN ('booked', 'cancelled', 'attended', 'no_show')", name="status"),
        CheckConstraint("channel IN ('ivr', 'operator')", name="channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_number: Mapped[str] = mapped_column(String(8), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("booking_patients.id"))
    backend: Mapped[str] = mapped_column(String(16))
    slot_id: Mapped[str] = mapped_column(String(120), index=True)
    clinic_id: Mapped[str] = mapped_column(String(100))
    backend_ref: Mapped[str] = mapped_column(String(200))
    hospital_id: Mapped[str] = mapped_column(String(64))
    department_id: Mapped[str] = mapped_column(String(64))
    expert_id: Mapped[str | None] = mapped_column(String(64))
    visit_date: Mapped[date] = mapped_column(Date)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    fee: Mapped[Decimal | None] = mapped_column(Money())
    status: Mapped[str] = mapped_column(String(16), default="booked")
    password_hash: Mapped[str] = mapped_column(String(200))
    password_expires_at: Mapped[datetime]
    contact_phone: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    #: when the outcome (attended / no_show) was recorded
    outcome_at: Mapped[datetime | None]
    #: incremented on every password reset (dedupe keys of the resulting SMS)
    password_version: Mapped[int] = mapped_column(Integer, default=1)
    #: when the patient confirmed the visit by answering a reminder ("reply 1")
    confirmed_at: Mapped[datetime | None]


class PinAttempt(Base):
    """One visit-password attempt, right or wrong, on the phone or by an operator.

    ``call_id`` is ``calls.id`` for attempts made in a call (the per-call limit counts
    them); ``operator`` names the agent otherwise. ``booking_id`` and ``patient_id`` are
    empty when the visit number was unknown.
    """

    __tablename__ = "booking_pin_attempts"
    __table_args__ = (
        Index("ix_booking_pin_attempts_patient_at", "patient_id", "at"),
        Index("ix_booking_pin_attempts_call", "call_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    visit_number: Mapped[str] = mapped_column(String(16))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking_bookings.id"))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("booking_patients.id"))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    operator: Mapped[str | None] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    #: ok, wrong, locked, expired or unknown
    outcome: Mapped[str] = mapped_column(String(16))
