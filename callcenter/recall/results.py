"""Results by phone: sealed values, identity checks in the call, disclosure, clinician tasks.

* :func:`seal_values` keeps a result's values encrypted on ``lab_results.values_sealed``
  (:class:`~callcenter.messaging.sealing.Sealer`, key derived from ``SECRET_KEY``); they are
  opened only in :meth:`ResultsService.read`, inside the call that verified the patient, and
  spoken from the call's sealed session values (encrypted at rest, dropped when the call ends).
* Identity, in the same call: the visit number and password
  (:meth:`~callcenter.booking.service.BookingService.verify`, whose limits apply), or the
  resident ID number and date of birth. Both count against the same limits (rows in
  ``booking_pin_attempts``: ``pin_attempts_per_call`` failures per call,
  ``pin_attempts_per_day`` per patient in 24 hours, then the patient is locked until an agent
  unlocks). A right password past its booking-use expiry still proves who the caller is.
* A result flagged abnormal is never read: the caller hears "please contact your doctor"
  and an open :class:`~.models.ClinicianTask` is created (once per result).
* Every disclosure (a normal result read, an abnormal one announced) writes an audit row with
  the call, the result and the method of verification, never the values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from ..booking.identity import InvalidIdNumber, normalize_cn_id
from ..booking.models import Booking, Patient, PinAttempt
from ..booking.service import BookingService, call_failures, patient_failures
from ..calls.actions import ActionContext
from ..clock import Clock
from ..db.engine import Database
from ..db.models import AuditEntry
from ..db.sql import insert_ignore
from ..feeds.models import LabResult
from ..ivr.engine import SEALED, ActionResult
from ..messaging.sealing import Sealer, SealingError
from .models import ClinicianTask

log = logging.getLogger(__name__)

#: ``booking_pin_attempts.visit_number`` of an ID-number + date-of-birth attempt
ID_ATTEMPT = "id+dob"
#: how long a verification in a call lets that call hear results
VERIFIED_FOR = timedelta(hours=1)
TASK_ABNORMAL = "abnormal_result"


def seal_values(sealer: Sealer, values: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The values as one sealed token (``None`` when there are none)."""
    if not values:
        return None
    return sealer.seal({"values": json.dumps(list(values), ensure_ascii=False)})


def spoken_values(items: Sequence[Mapping[str, Any]], language: str) -> str:
    """Values as a sentence: "WBC 6.1 10^9/L; ..." (name, value and unit of each item)."""
    parts: list[str] = []
    for item in items[:20]:
        name, value = item.get("name"), item.get("value")
        if name in (None, "") or value in (None, ""):
            continue
        unit = item.get("unit")
        parts.append(" ".join(str(p) for p in (name, value, unit) if p not in (None, "")))
    if not parts:
        return ""
    if language == "en":
        return "The values: " + "; ".join(parts) + "."
    return "各项数值：" + "；".join(parts) + "。"


class ResultsService:
    """Identity checks for results in a call, disclosure of normal results, clinician tasks."""

    def __init__(
        self, db: Database, sealer: Sealer, booking: BookingService | None, clock: Clock
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.booking = booking
        self.clock = clock

    # ------------------------------------------------------------------ identity

    def _attempt(
        self, s: Session, call_id: int, outcome: str, patient: Patient | None, now: datetime
    ) -> None:
        s.add(
            PinAttempt(
                at=now,
                visit_number=ID_ATTEMPT,
                booking_id=None,
                patient_id=patient.id if patient else None,
                call_id=call_id,
                operator=None,
                success=outcome == "ok",
                outcome=outcome,
            )
        )

    def verify_id(
        self, s: Session, call_id: int, id_number: str, birth: str
    ) -> tuple[str, int | None]:
        """Check a resident ID number and date of birth (``YYYYMMDD``) in a call.

        Returns ``(outcome, patient id)``: ``ok``, ``wrong`` or ``locked``. An unknown ID
        number counts as a failure of the call; a known one with the wrong birth date counts
        against the patient too, and locks them at the daily limit.
        """
        if self.booking is None:
            raise RuntimeError("identity checks need SECRET_KEY (no booking service)")
        cfg = self.booking.settings
        now = self.clock.now()
        failed = call_failures(s, call_id)
        if failed >= cfg.pin_attempts_per_call:
            self._attempt(s, call_id, "locked", None, now)
            return "locked", None
        try:
            number = normalize_cn_id(id_number)
            born = date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
        except (InvalidIdNumber, ValueError):
            number, born = "", date.min
        patient = None
        if number:
            key = self.booking.secrets.id_hmac("cn_id", number)
            patient = s.scalar(
                select(Patient)
                .where(Patient.id_type == "cn_id", Patient.id_hmac == key)
                .with_for_update()
            )
        if patient is None:
            self._attempt(s, call_id, "unknown", None, now)
            return ("locked" if failed + 1 >= cfg.pin_attempts_per_call else "wrong"), None
        if patient.locked_at is not None:
            self._attempt(s, call_id, "locked", patient, now)
            return "locked", None
        if number[6:14] != born.strftime("%Y%m%d"):
            self._attempt(s, call_id, "wrong", patient, now)
            if patient_failures(s, patient, now) >= cfg.pin_attempts_per_day:
                patient.locked_at = now
                patient.updated_at = now
                log.warning("patient id=%s locked after wrong identity checks", patient.id)
                return "locked", None
            if failed + 1 >= cfg.pin_attempts_per_call:
                return "locked", None
            return "wrong", None
        self._attempt(s, call_id, "ok", patient, now)
        return "ok", patient.id

    def verify_pin(
        self, s: Session, call_id: int, visit_number: str, pin: str
    ) -> tuple[str, int | None]:
        """Check a visit number and password in a call (the booking service's limits)."""
        if self.booking is None:
            raise RuntimeError("identity checks need SECRET_KEY (no booking service)")
        result = self.booking.verify(visit_number, pin, call_id=call_id, tx=s)
        if result.outcome in ("ok", "expired"):
            patient_id = s.scalar(
                select(Booking.patient_id).where(Booking.visit_number == result.visit_number)
            )
            return "ok", patient_id
        if result.outcome == "locked":
            return "locked", None
        return "wrong", None

    def _verified(self, s: Session, call_id: int, patient_id: int) -> bool:
        """Whether this call proved it is ``patient_id`` within the last hour."""
        since = self.clock.now() - VERIFIED_FOR
        # "expired": the right password of a booking past its use; it still proves identity.
        found = s.scalar(
            select(PinAttempt.id)
            .where(
                PinAttempt.call_id == call_id,
                PinAttempt.outcome.in_(("ok", "expired")),
                PinAttempt.at >= since,
                PinAttempt.patient_id == patient_id,
            )
            .limit(1)
        )
        return found is not None

    # ------------------------------------------------------------------ disclosure

    def read(
        self,
        s: Session,
        *,
        call_id: int,
        patient_id: int,
        result_id: int | None,
        language: str,
        method: str,
    ) -> ActionResult:
        """What the verified caller may hear: ``normal`` (test and values, to be sealed in the
        call), ``normal_no_values``, ``abnormal`` (never the values; a clinician task is
        created) or ``none``. Every disclosure is audited."""
        if not self._verified(s, call_id, patient_id):
            raise PermissionError("this call has not verified the patient")
        query = select(LabResult).where(LabResult.patient_id == patient_id)
        if result_id is not None:
            query = query.where(LabResult.id == result_id)
        row = s.scalar(query.order_by(LabResult.ready_at.desc(), LabResult.id.desc()).limit(1))
        if row is None:
            return ActionResult("none", {})
        test = row.test_name_en if language == "en" else row.test_name_zh
        now = self.clock.now()
        detail = {"call_id": call_id, "method": method, "abnormal": row.abnormal}
        if row.abnormal:
            self._task(s, row, now)
            self._audit(s, "results.abnormal_told", row, now, detail)
            log.info("call id=%s: abnormal result %s announced, not read", call_id, row.id)
            return ActionResult("abnormal", {"test": test})
        values = ""
        if row.values_sealed:
            try:
                items = json.loads(self.sealer.open(row.values_sealed)["values"])
                values = spoken_values(items, language)
            except (SealingError, KeyError, ValueError, TypeError):
                log.error("result %s: sealed values cannot be opened", row.id)
        self._audit(s, "results.disclosed", row, now, {**detail, "values_read": bool(values)})
        log.info("call id=%s: normal result %s disclosed", call_id, row.id)
        if not values:
            return ActionResult("normal_no_values", {"test": test})
        return ActionResult("normal", {"test": test, "values": values})

    @staticmethod
    def _audit(
        s: Session, action: str, row: LabResult, now: datetime, detail: dict[str, Any]
    ) -> None:
        s.add(
            AuditEntry(
                at=now,
                actor="ivr",
                action=action,
                subject_type="lab_result",
                subject_id=str(row.id),
                reason=None,
                detail=detail,
            )
        )

    def _task(self, s: Session, row: LabResult, now: datetime) -> None:
        table = cast(Table, ClinicianTask.__table__)
        s.execute(
            insert_ignore(s.connection(), table).values(
                kind=TASK_ABNORMAL,
                hospital_id=row.hospital_id,
                lab_result_id=row.id,
                patient_id=row.patient_id,
                booking_id=row.booking_id,
                status="open",
                note="patient told by phone to contact their doctor",
                created_at=now,
            )
        )

    # ------------------------------------------------------------------ clinician tasks

    def open_tasks(self, hospital: str, *, operator: str) -> list[dict[str, Any]]:
        """Open clinician tasks of ``hospital``, oldest first (an audit row is written)."""
        with self.db.transaction() as s:
            rows = list(
                s.scalars(
                    select(ClinicianTask)
                    .where(ClinicianTask.hospital_id == hospital, ClinicianTask.status == "open")
                    .order_by(ClinicianTask.created_at, ClinicianTask.id)
                )
            )
            out = [
                {
                    "id": t.id,
                    "kind": t.kind,
                    "lab_result_id": t.lab_result_id,
                    "booking_id": t.booking_id,
                    "note": t.note,
                    "created_at": t.created_at.isoformat(),
                }
                for t in rows
            ]
            s.add(
                AuditEntry(
                    at=self.clock.now(),
                    actor=operator[:64],
                    action="clinician_tasks.list",
                    subject_type="hospital",
                    subject_id=hospital,
                    reason=None,
                    detail={"count": len(out)},
                )
            )
            return out

    def close_task(self, task_id: int, *, operator: str, note: str | None = None) -> bool:
        """Mark a task done; ``False`` if it was done already (an audit row either way)."""
        who = (operator or "").strip()
        if not who or len(who) > 64:
            raise ValueError("closing a task needs the operator's user name (1-64 chars)")
        now = self.clock.now()
        with self.db.transaction() as s:
            task = s.get(ClinicianTask, task_id, with_for_update=True)
            if task is None:
                raise LookupError(f"no clinician task {task_id}")
            changed = task.status == "open"
            if changed:
                task.status, task.closed_at, task.closed_by = "done", now, who
                if note:
                    task.note = note[:200]
            s.add(
                AuditEntry(
                    at=now,
                    actor=who,
                    action="clinician_tasks.close",
                    subject_type="clinician_task",
                    subject_id=str(task_id),
                    reason=(note or None) and note[:200],
                    detail={"changed": changed},
                )
            )
            return changed


def sealed_vars(ctx: ActionContext) -> Mapping[str, Any]:
    """The call's sealed values (PIN, ID number, date of birth) as the engine keeps them."""
    value = ctx.vars.get(SEALED)
    return value if isinstance(value, Mapping) else {}
