"""How a patient wants appointment reminders: by SMS (the default) or by a voice call.

The reminder job (:func:`schedulers.reminders.fill_reminders`) asks :func:`reminder_channel`
for each booking's patient; ``voice`` turns that reminder into an outbox call running
``ivr_flows/reminder_call.yaml`` (1 confirms, 2 cancels under the booking rules) under the
same dedupe key the SMS would have had, so each reminder still goes out once, either way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..clock import Clock
from ..db.engine import Database
from ..db.models import AuditEntry
from .models import REMINDER_CHANNELS, OutboundPreference


def reminder_channel(s: Session, patient_id: int) -> str:
    """``voice`` or ``sms`` (no preference recorded)."""
    found = s.scalar(
        select(OutboundPreference.reminder_channel).where(
            OutboundPreference.patient_id == patient_id
        )
    )
    return found or "sms"


def reminder_call_params(booking_id: int, key: str) -> dict[str, Any]:
    """The outbox params of a voice reminder (what :mod:`.outbound` needs to run it)."""
    return {"kind": "reminder_call", "ref": booking_id, "attempt": 1, "key": key}


def set_reminder_channel(
    db: Database, clock: Clock, patient_id: int, channel: str, *, operator: str
) -> None:
    """Record a patient's reminder preference (an audit row names the operator)."""
    if channel not in REMINDER_CHANNELS:
        raise ValueError(f"reminder channel must be one of {', '.join(REMINDER_CHANNELS)}")
    who = (operator or "").strip()
    if not who or len(who) > 64:
        raise ValueError("the operator's user name (1-64 chars) is needed")
    now = clock.now()
    with db.transaction() as s:
        row = s.get(OutboundPreference, patient_id, with_for_update=True)
        if row is None:
            s.add(
                OutboundPreference(
                    patient_id=patient_id, reminder_channel=channel, updated_at=now, updated_by=who
                )
            )
        else:
            row.reminder_channel, row.updated_at, row.updated_by = channel, now, who
        s.add(
            AuditEntry(
                at=now,
                actor=who,
                action="patient.reminder_channel",
                subject_type="patient",
                subject_id=str(patient_id),
                reason=None,
                detail={"channel": channel},
            )
        )
