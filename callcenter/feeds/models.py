"""Feed tables: lab results a hospital reported ready. Created by migration ``0006_results``.

A row records that a result exists and who it belongs to. Values a hospital sends are kept
only sealed (``values_sealed``: encrypted with a key derived from ``SECRET_KEY``, see
:mod:`callcenter.messaging.sealing`), so that a caller can hear a normal result on the phone
after identity checks (migration ``0009_recall``); they never go into an SMS, a voicemail, a
log or an audit row. The patient is found through the booking whose visit number the
hospital gave.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db.models import Base


class LabResult(Base):
    """One result a hospital reported ready, stored once per ``(hospital, event id)``.

    ``payload_sha256`` is the hash of the signed body: a replay of the same event with the
    same body gets the same answer; the same event id with another body is refused.
    """

    __tablename__ = "lab_results"
    __table_args__ = (
        UniqueConstraint("hospital_id", "event_id"),
        UniqueConstraint("hospital_id", "result_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hospital_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    result_id: Mapped[str] = mapped_column(String(64))
    booking_id: Mapped[int] = mapped_column(ForeignKey("booking_bookings.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("booking_patients.id"), index=True)
    test_name_zh: Mapped[str] = mapped_column(String(100))
    test_name_en: Mapped[str] = mapped_column(String(100))
    ready_at: Mapped[datetime]
    abnormal: Mapped[bool] = mapped_column(Boolean)
    had_values: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the values, sealed (``None`` when none came)
    values_sealed: Mapped[str | None] = mapped_column(Text)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
