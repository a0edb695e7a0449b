"""Outbound calls as IVR flows: answering, the flows' actions, retries and SMS fallbacks.

The dispatcher places every outbound call with the answer URL
``/twilio/voice/outbound?o=<outbox id>`` and the status callback
``/twilio/voice/status?o=<outbox id>``. The outbox row says which flow to run (its
``template``: ``recall``, ``results`` or ``reminder_call``) and, in its params, what the call is
about (``kind``, ``ref``: a recall visit, a lab result or a booking), which attempt it is and
the dedupe key its retries and fallback extend.

* **Answered** (:meth:`OutboundService.answer`): the call begins in the named flow
  (:meth:`~callcenter.calls.service.CallService.begin_outbound`) with the vars ``outbox_id``,
  ``kind``, ``ref`` and ``answered_by``; every flow starts with ``outbound_context``, which
  checks the call is still wanted (``passed``: the number was called meanwhile; ``gone``)
  and whether a person answered. Twilio's answering-machine detection (``AnsweredBy``)
  sends a machine to ``outbound.machine``: a short message with no name and nothing
  medical, after which a recall gets its SMS fallback.
* **Not reached** (:meth:`OutboundService.status`, status ``busy`` / ``no-answer`` /
  ``failed``): the call is placed again ``recall.retry_after_s`` later, up to
  ``recall.call_retries`` times, then an SMS without medical details goes instead
  (``sms.recall_missed`` for a recall, ``sms.outbound_missed`` for a reminder; a results
  call has had its ``results_ready`` SMS already). A recall that ended meanwhile (number
  passed, checked in) stops here.

Every write is keyed (outbox dedupe keys, one ``outbound_calls`` row per outbox row), so a
repeated webhook changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from knowledge_base import models as kb

from ..booking.models import Booking
from ..booking.rules import BookingRefused
from ..booking.service import BookingService
from ..calls.actions import ActionContext, ActionRegistry
from ..calls.service import CallService, Reply
from ..clock import Clock
from ..config import RecallConfig
from ..db.engine import Database
from ..db.models import AuditEntry, OutboxMessage
from ..db.sql import insert_ignore
from ..feeds.models import LabResult
from ..ivr.engine import ActionResult
from ..messaging.outbox import Outbox
from .models import RECALL_OPEN, OutboundCall, RecallClinic, RecallVisit
from .queue import withdraw
from .results import ResultsService, sealed_vars

log = logging.getLogger(__name__)

#: outbox template -> flow name
FLOWS = {"recall": "recall", "results": "results", "reminder_call": "reminder_call"}
#: Twilio ``AnsweredBy`` values that mean nobody is listening
MACHINE = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)
#: call statuses after which the patient was not reached
UNREACHED = frozenset({"busy", "no-answer", "failed"})
FINAL = UNREACHED | {"completed", "canceled"}
ACTION_NAMES = frozenset(
    {"outbound_context", "recall_answer", "results_verify", "results_read", "reminder_answer"}
)
calls_t = cast(Table, OutboundCall.__table__)


@dataclass(frozen=True)
class Target:
    """What an outbound call (one outbox row) is about."""

    outbox_id: int
    kind: str
    ref: int
    attempt: int
    key: str
    to_e164: str
    language: str
    urgent: bool

    @classmethod
    def of(cls, row: OutboxMessage) -> Target | None:
        """The target of ``row``, or ``None`` when it is not an outbound flow call."""
        params = row.params or {}
        if row.channel != "call" or row.template not in FLOWS:
            return None
        try:
            ref, attempt = int(params["ref"]), int(params.get("attempt", 1))
        except (KeyError, TypeError, ValueError):
            return None
        return cls(
            outbox_id=row.id,
            kind=row.template,
            ref=ref,
            attempt=attempt,
            key=str(params.get("key") or row.dedupe_key),
            to_e164=row.to_e164,
            language=row.language,
            urgent=bool(row.urgent),
        )


def _hospital_name(s: Session, hospital_id: str, language: str) -> str:
    names = s.execute(
        select(kb.Hospital.name_zh, kb.Hospital.name_en).where(kb.Hospital.id == hospital_id)
    ).first()
    if names is None:
        return hospital_id
    return str(names[1] if language == "en" else names[0])


def _record(
    s: Session,
    target: Target,
    now: datetime,
    *,
    provider_call_id: str | None = None,
    answered_by: str | None = None,
    outcome: str | None = None,
    overwrite: bool = False,
) -> None:
    """Create or update the ``outbound_calls`` row of ``target``. ``outcome`` replaces an
    earlier one only with ``overwrite`` (a patient's answer outranks the call's end)."""
    s.execute(
        insert_ignore(s.connection(), calls_t).values(
            outbox_id=target.outbox_id,
            kind=target.kind,
            ref_id=target.ref,
            attempt=target.attempt,
            created_at=now,
            updated_at=now,
        )
    )
    values: dict[str, Any] = {"updated_at": now}
    if provider_call_id is not None:
        values["provider_call_id"] = provider_call_id[:64]
    if answered_by:
        values["answered_by"] = answered_by[:32]
    stmt = update(calls_t).where(calls_t.c.outbox_id == target.outbox_id)
    s.execute(stmt.values(**values))
    if outcome is not None:
        if not overwrite:
            stmt = stmt.where(calls_t.c.outcome.is_(None))
        s.execute(stmt.values(outcome=outcome))


class OutboundActions:
    """The service actions of the outbound flows (registered under :data:`ACTION_NAMES`)."""

    def __init__(
        self,
        outbox: Outbox,
        results: ResultsService,
        booking: BookingService | None,
        settings: RecallConfig,
    ) -> None:
        self.outbox = outbox
        self.results = results
        self.booking = booking
        self.settings = settings

    def register(self, registry: ActionRegistry) -> None:
        """Add every outbound action to ``registry``."""
        registry.register("outbound_context", self.outbound_context)
        registry.register("recall_answer", self.recall_answer)
        registry.register("results_verify", self.results_verify)
        registry.register("results_read", self.results_read)
        registry.register("reminder_answer", self.reminder_answer)

    @staticmethod
    def _ref(ctx: ActionContext) -> int | None:
        try:
            return int(ctx.vars["ref"])
        except (KeyError, TypeError, ValueError):
            return None

    def outbound_context(self, ctx: ActionContext) -> ActionResult:
        """Is the call still wanted, and who answered? Outcomes: ``inbound`` (no outbox row:
        a caller who dialled in), ``machine``, ``passed`` (a recall whose number was called
        meanwhile), ``gone`` (nothing to say any more), ``human``; data: names to speak."""
        s, lang = ctx.session, ctx.language
        kind, ref = ctx.vars.get("kind"), self._ref(ctx)
        if "outbox_id" not in ctx.vars:
            return ActionResult("inbound", {})
        if ctx.vars.get("answered_by") == "machine":
            return ActionResult("machine", {})
        if kind == "recall" and ref is not None:
            visit = s.get(RecallVisit, ref)
            if visit is None:
                return ActionResult("gone", {})
            clinic = s.get(RecallClinic, (visit.hospital_id, visit.clinic_id))
            data = {
                "hospital": _hospital_name(s, visit.hospital_id, lang),
                "clinic": (clinic.name_en if lang == "en" else clinic.name_zh) if clinic else "",
            }
            if visit.status in ("passed", "checked_in"):
                return ActionResult("passed", data)
            return ActionResult("human" if visit.status in RECALL_OPEN else "gone", data)
        if kind == "results" and ref is not None:
            result = s.get(LabResult, ref)
            if result is None:
                return ActionResult("gone", {})
            return ActionResult("human", {"hospital": _hospital_name(s, result.hospital_id, lang)})
        if kind == "reminder_call" and ref is not None and self.booking is not None:
            booking = s.get(Booking, ref)
            if (
                booking is None
                or booking.status != "booked"
                or booking.starts_at <= ctx.clock.now()
            ):
                return ActionResult("gone", {})
            labels = self.booking.labels(
                s, booking.hospital_id, booking.department_id, booking.expert_id, booking.starts_at
            )["en" if lang == "en" else "zh-CN"]
            return ActionResult(
                "human",
                {
                    "hospital": labels.hospital,
                    "department": labels.department,
                    "doctor": labels.doctor,
                    "when": labels.when,
                },
            )
        return ActionResult("gone", {})

    def recall_answer(self, ctx: ActionContext) -> ActionResult:
        """1 (``confirmed``) or 2 (``cannot_come``: the clinic sees it in the feed answers
        and ``GET /api/hospitals/<hospital>/recalls``). Outcomes ``ok``, ``passed``."""
        s, now = ctx.session, ctx.clock.now()
        answer = ctx.args.get("answer")
        ref = self._ref(ctx)
        if answer not in ("confirmed", "cannot_come") or ref is None:
            return ActionResult("error", {})
        visit = s.get(RecallVisit, ref, with_for_update=True)
        if visit is None:
            return ActionResult("error", {})
        if visit.status in ("passed", "checked_in"):
            return ActionResult("passed", {})
        visit.status = answer
        visit.reason = "pressed 1" if answer == "confirmed" else "pressed 2: cannot come"
        visit.answered_at = now
        visit.updated_at = now
        base = f"recall:{visit.hospital_id}:{visit.visit_number}"
        for key in withdraw(self.outbox, s, base, "patient answered", now):
            log.info("recall %s: pending %s withdrawn, the patient answered", visit.id, key)
        outbox_id = ctx.vars.get("outbox_id")
        if isinstance(outbox_id, int):
            s.execute(
                update(calls_t)
                .where(calls_t.c.outbox_id == outbox_id)
                .values(outcome=answer, updated_at=now)
            )
        s.add(
            AuditEntry(
                at=now,
                actor="ivr",
                action=f"recall.{answer}",
                subject_type="recall_visit",
                subject_id=str(visit.id),
                reason=None,
                detail={"call_id": ctx.call_id, "clinic_id": visit.clinic_id},
            )
        )
        return ActionResult("ok", {})

    def results_verify(self, ctx: ActionContext) -> ActionResult:
        """Check identity (``method`` ``pin`` or ``id``); outcomes ``ok``, ``wrong``,
        ``locked``. For a call about one result, only its patient passes."""
        sealed = sealed_vars(ctx)
        if ctx.args.get("method") == "id":
            outcome, patient = self.results.verify_id(
                ctx.session,
                ctx.call_id,
                str(sealed.get("id_number", "")),
                str(sealed.get("dob", "")),
            )
        else:
            outcome, patient = self.results.verify_pin(
                ctx.session,
                ctx.call_id,
                str(ctx.vars.get("visit_number", "")),
                str(sealed.get("pin", "")),
            )
        if outcome != "ok" or patient is None:
            return ActionResult(outcome if outcome in ("wrong", "locked") else "wrong", {})
        ref = self._ref(ctx)
        if ctx.vars.get("kind") == "results" and ref is not None:
            owner = ctx.session.scalar(select(LabResult.patient_id).where(LabResult.id == ref))
            if owner != patient:
                log.info("call id=%s verified a patient who is not the result's", ctx.call_id)
                return ActionResult("wrong", {})
        return ActionResult("ok", {"patient": patient, "method": ctx.args.get("method", "pin")})

    def results_read(self, ctx: ActionContext) -> ActionResult:
        """The verified patient's result: ``normal``, ``normal_no_values``, ``abnormal`` or
        ``none`` (the data is stored sealed in the call: see :class:`ResultsService`)."""
        verified = ctx.vars.get("v")
        if not isinstance(verified, dict) or not isinstance(verified.get("patient"), int):
            return ActionResult("error", {})
        ref = self._ref(ctx) if ctx.vars.get("kind") == "results" else None
        return self.results.read(
            ctx.session,
            call_id=ctx.call_id,
            patient_id=int(verified["patient"]),
            result_id=ref,
            language=ctx.language,
            method=str(verified.get("method", "pin")),
        )

    def reminder_answer(self, ctx: ActionContext) -> ActionResult:
        """1 confirms the visit, 2 cancels it under the booking rules. Outcomes:
        ``confirmed``, ``cancelled``, ``already_cancelled``, ``too_late``, ``not_active``."""
        ref = self._ref(ctx)
        if self.booking is None or ref is None:
            return ActionResult("error", {})
        visit_number = ctx.session.scalar(select(Booking.visit_number).where(Booking.id == ref))
        if visit_number is None:
            return ActionResult("not_active", {})
        if ctx.args.get("answer") == "confirm":
            done = self.booking.confirm_by_reply(visit_number, tx=ctx.session)
            return ActionResult("not_active" if done == "not_active" else "confirmed", {})
        try:
            result = self.booking.cancel_by_reply(visit_number, tx=ctx.session)
        except BookingRefused as exc:
            code = exc.refusal.code
            if code == "cancel_too_late":
                return ActionResult("too_late", {})
            if code == "not_active":
                return ActionResult("not_active", {})
            return ActionResult("error", {})
        return ActionResult(result.outcome, {})


class OutboundService:
    """Answers outbound calls with their flows, and retries or falls back when unreached."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        calls: CallService,
        clock: Clock,
        settings: RecallConfig,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.calls = calls
        self.clock = clock
        self.settings = settings

    def answer(
        self,
        *,
        provider: str,
        outbox_id: int,
        provider_call_id: str,
        answered_by: str | None,
        idempotency_key: str | None = None,
    ) -> Reply | None:
        """The patient's phone answered call ``outbox_id``: run its flow. ``None`` when the
        outbox row is not an outbound flow call (answer with a plain hang-up)."""
        machine = (answered_by or "").strip().lower() in MACHINE
        now = self.clock.now()
        with self.db.transaction() as s:
            row = s.get(OutboxMessage, outbox_id)
            target = Target.of(row) if row is not None else None
            if target is None:
                log.warning("outbound answer for outbox %s: not an outbound call", outbox_id)
                return None
            _record(
                s,
                target,
                now,
                provider_call_id=provider_call_id,
                answered_by=answered_by,
                outcome="machine" if machine else "answered",
                overwrite=True,
            )
            if machine:
                self._unreached(s, target, "answering machine", now)
        return self.calls.begin_outbound(
            provider=provider,
            provider_call_id=provider_call_id,
            party=target.to_e164,
            flow=FLOWS[target.kind],
            variables={
                "outbox_id": target.outbox_id,
                "kind": target.kind,
                "ref": target.ref,
                "answered_by": "machine" if machine else "human",
            },
            language=target.language,
            idempotency_key=idempotency_key,
        )

    def status(
        self,
        *,
        provider: str,
        outbox_id: int,
        provider_call_id: str,
        status: str,
        answered_by: str | None = None,
    ) -> None:
        """A status callback of call ``outbox_id``: record it on the outbox row, and when the
        patient was not reached, retry or fall back to SMS (idempotent)."""
        status = (status or "").strip().lower()
        now = self.clock.now()
        self.outbox.record_status(provider, provider_call_id, status, outbox_id=outbox_id, now=now)
        if status not in FINAL:
            return
        with self.db.transaction() as s:
            row = s.get(OutboxMessage, outbox_id)
            target = Target.of(row) if row is not None else None
            if target is None:
                return
            _record(
                s,
                target,
                now,
                provider_call_id=provider_call_id,
                answered_by=answered_by,
                outcome=status,
            )
            if status in UNREACHED:
                self._retry_or_fallback(s, target, status, now)

    # ------------------------------------------------------------------ internals

    def _still_wanted(self, s: Session, target: Target, now: datetime) -> bool:
        if target.kind == "recall":
            visit = s.get(RecallVisit, target.ref, with_for_update=True)
            return visit is not None and visit.status in RECALL_OPEN
        if target.kind == "reminder_call":
            booking = s.get(Booking, target.ref)
            return booking is not None and booking.status == "booked" and booking.starts_at > now
        return s.get(LabResult, target.ref) is not None

    def _retry_or_fallback(self, s: Session, target: Target, why: str, now: datetime) -> None:
        if not self._still_wanted(s, target, now):
            log.info("outbox %s: %s, and the call is no longer wanted", target.outbox_id, why)
            return
        if target.attempt <= self.settings.call_retries:
            attempt = target.attempt + 1
            written = self.outbox.enqueue(
                s,
                channel="call",
                to_e164=target.to_e164,
                template=target.kind,
                language=target.language,
                params={
                    "kind": target.kind,
                    "ref": target.ref,
                    "attempt": attempt,
                    "key": target.key,
                },
                dedupe_key=f"{target.key}:retry:{attempt}",
                now=now,
                due_at=now + timedelta(seconds=self.settings.retry_after_s),
                urgent=target.urgent,
            )
            if written:
                log.info("outbox %s: %s, call again as attempt %d", target.outbox_id, why, attempt)
            return
        self._unreached(s, target, why, now)

    def _unreached(self, s: Session, target: Target, why: str, now: datetime) -> None:
        """The patient could not be reached by phone: the SMS fallback (no medical details)."""
        if target.kind == "recall":
            visit = s.get(RecallVisit, target.ref, with_for_update=True)
            if visit is None or visit.status not in RECALL_OPEN:
                return
            visit.status, visit.reason, visit.updated_at = "unreachable", why[:64], now
            self.outbox.enqueue(
                s,
                channel="sms",
                to_e164=target.to_e164,
                template="recall_missed",
                language=target.language,
                params={"hospital": _hospital_name(s, visit.hospital_id, target.language)},
                dedupe_key=f"{target.key}:sms",
                now=now,
                urgent=True,
            )
        elif target.kind == "reminder_call":
            self.outbox.enqueue(
                s,
                channel="sms",
                to_e164=target.to_e164,
                template="outbound_missed",
                language=target.language,
                params={},
                dedupe_key=f"{target.key}:sms",
                now=now,
            )
        log.info("outbox %s: not reached (%s), SMS fallback", target.outbox_id, why)
