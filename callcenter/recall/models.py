"""Recall and results tables. Created by migration ``0009_recall``.

* :class:`RecallClinic`: a hospital's clinic as its queue system names it, and how many places
  from the front its patients are recalled;
* :class:`QueueEvent`: one signed queue event, stored once per ``(hospital, event id)``;
* :class:`RecallVisit`: one waiting patient's recall, from the first time we saw the visit
  number to its end (confirmed, cannot come, number passed, checked in...);
* :class:`OutboundCall`: one placed outbound call (one outbox row) and what became of it;
* :class:`ClinicianTask`: a task for a clinician (an abnormal result the patient was told
  to ask their doctor about);
* :class:`OutboundPreference`: how a patient wants reminders (SMS or voice).

No row holds a phone number in clear beyond the outbox's own, and no result value: values
live sealed on ``lab_results.values_sealed``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db.models import Base

#: Statuses of a recall; the first two are open, the rest final.
RECALL_OPEN = ("waiting", "calling")
RECALL_STATUSES = (
    "waiting",
    "calling",
    "confirmed",
    "cannot_come",
    "unreachable",
    "passed",
    "checked_in",
)
TASK_STATUSES = ("open", "done")
REMINDER_CHANNELS = ("sms", "voice")


class RecallClinic(Base):
    """A clinic of a hospital's queue system; ``recall_places`` ``None`` uses the default."""

    __tablename__ = "recall_clinics"

    hospital_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    clinic_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    recall_places: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class QueueEvent(Base):
    """One queue event as received; ``answer`` is what the hospital was told (replayed)."""

    __tablename__ = "recall_queue_events"
    __table_args__ = (UniqueConstraint("hospital_id", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hospital_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    clinic_id: Mapped[str] = mapped_column(String(64))
    now_calling: Mapped[int] = mapped_column(Integer)
    waiting: Mapped[int] = mapped_column(Integer)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    answer: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime]


class RecallVisit(Base):
    """One patient waiting in a clinic queue, and their recall.

    ``status``: ``waiting`` (not near the front yet, or checked in), ``calling`` (a recall
    call is in the outbox or on the line), ``confirmed`` (pressed 1), ``cannot_come``
    (pressed 2: the clinic sees it), ``unreachable`` (no answer after the retries; an SMS
    went instead), ``passed`` (their number was called before we reached them),
    ``checked_in``. ``reason`` says why a recall ended or was dropped.
    """

    __tablename__ = "recall_visits"
    __table_args__ = (
        UniqueConstraint("hospital_id", "visit_number"),
        Index("ix_recall_visits_clinic_status", "hospital_id", "clinic_id", "status"),
        CheckConstraint(
            "status IN ('waiting', 'calling', 'confirmed', 'cannot_come', 'unreachable', "
            "'passed', 'checked_in')",
            name="status",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hospital_id: Mapped[str] = mapped_column(String(64))
    clinic_id: Mapped[str] = mapped_column(String(64))
    visit_number: Mapped[str] = mapped_column(String(16))
    queue_number: Mapped[int] = mapped_column(Integer)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking_bookings.id"))
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    reason: Mapped[str | None] = mapped_column(String(64))
    places_ahead: Mapped[int | None] = mapped_column(Integer)
    recall_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OutboundCall(Base):
    """One outbound call (one outbox row): which flow, for what, and how it ended.

    ``kind`` is the flow (``recall``, ``results``, ``reminder_call``) and ``ref_id`` the row
    it is about (a recall visit, a lab result, a booking). ``outcome``: ``answered``,
    ``machine``, ``busy``, ``no-answer``, ``failed``, ``confirmed``, ``cannot_come``...
    """

    __tablename__ = "outbound_calls"
    __table_args__ = (Index("ix_outbound_calls_kind_ref", "kind", "ref_id"),)

    outbox_id: Mapped[int] = mapped_column(
        ForeignKey("outbox.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    provider_call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    answered_by: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ClinicianTask(Base):
    """Something a clinician must do about a patient; one per ``(kind, lab result)``."""

    __tablename__ = "clinician_tasks"
    __table_args__ = (
        UniqueConstraint("kind", "lab_result_id"),
        Index("ix_clinician_tasks_hospital_status", "hospital_id", "status"),
        CheckConstraint("status IN ('open', 'done')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    hospital_id: Mapped[str] = mapped_column(String(64))
    lab_result_id: Mapped[int] = mapped_column(ForeignKey("lab_results.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("booking_patients.id"))
    booking_id: Mapped[int] = mapped_column(ForeignKey("booking_bookings.id"))
    status: Mapped[str] = mapped_column(String(16), default="open")
    note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(64))


class OutboundPreference(Base):
    """How a patient wants appointment reminders: ``sms`` (the default) or ``voice``."""

    __tablename__ = "outbound_preferences"
    __table_args__ = (CheckConstraint("reminder_channel IN ('sms', 'voice')", name="channel"),)

    patient_id: Mapped[int] = mapped_column(
        ForeignKey("booking_patients.id", ondelete="CASCADE"), primary_key=True
    )
    reminder_channel: Mapped[str] = mapped_column(String(8), default="sms")
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))
