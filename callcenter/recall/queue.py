"""Waiting-room recall (候诊提示): hospital queue events in, urgent recall calls out.

A hospital's queue system posts ``POST /api/hospitals/<hospital>/queue-events`` (signed like
the results feed: see :mod:`callcenter.feeds.service`) whenever a clinic's queue moves::

    {"event_id": "q-20261127-0042",
     "clinic": {"id": "card-am", "name": {"zh": "心内科门诊", "en": "Cardiology clinic"}},
     "now_calling": 12,
     "waiting": [{"visit_number": "94987253", "queue_number": 15, "checked_in": false}, ...],
     "at": "2026-11-27T09:41:00+08:00"}

The clinic may carry ``"recall_places": k`` (kept until changed). For each waiting patient
the service works out their **position**: 1 + the number of waiting
patients with a queue number between the one being called and theirs (1 is next). A patient
who has not checked in, whose position is at most the clinic's ``recall_places`` (default
``recall.default_places``, 5), and who booked through the hotline (the booking gives the
phone and language) gets one urgent outbox call (template ``recall``: the flow
``ivr_flows/recall.yaml``), dedupe key ``recall:<hospital>:<visit number>``, so a replayed or
repeated event never calls twice. A patient whose number was called (queue number at or below
``now_calling``) before we reached them, or who checked in, has every pending attempt of their
recall (calls, the retry, the SMS fallback) withdrawn with the reason ``number passed`` or
``checked in``: that also covers recalls written while every dispatcher was down.

The answer tells the hospital what the hotline did and what patients answered (``cannot_come``
is how the clinic hears that a patient pressed 2); a replay gets the stored answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from pydantic import (
    AwareDatetime,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from ..booking.models import Booking
from ..clock import Clock
from ..config import RecallConfig
from ..db.engine import Database, retry_once
from ..db.models import AuditEntry, OutboxMessage
from ..db.sql import insert_ignore
from ..feeds.service import (
    _ID,
    FeedAnswer,
    FeedRefused,
    FeedService,
    TestName,
    _Strict,
    _validation_message,
)
from ..messaging.outbox import CLAIMED, PENDING, Outbox
from .models import RECALL_OPEN, QueueEvent, RecallClinic, RecallVisit

log = logging.getLogger(__name__)

outbox_t = cast(Table, OutboxMessage.__table__)
MAX_WAITING = 2000
#: why a recall's pending attempts were withdrawn
PASSED = "number passed"
CHECKED_IN = "checked in"


class ClinicRef(_Strict):
    """The clinic as the hospital's queue system names it."""

    id: StrictStr = Field(pattern=_ID)
    name: TestName
    #: recall patients at most this many places from the front (kept for the clinic until
    #: changed; absent: what the clinic had, else ``recall.default_places``)
    recall_places: StrictInt | None = Field(default=None, ge=0, le=100)


class Waiting(_Strict):
    """One patient in the clinic's queue."""

    visit_number: StrictStr = Field(pattern=r"^[0-9]{8}$")
    queue_number: StrictInt = Field(ge=1, le=1_000_000)
    checked_in: StrictBool


class QueueEventBody(_Strict):
    """The body of ``POST /api/hospitals/<hospital>/queue-events``."""

    event_id: StrictStr = Field(pattern=_ID)
    clinic: ClinicRef
    now_calling: StrictInt = Field(ge=0, le=1_000_000)
    waiting: list[Waiting] = Field(max_length=MAX_WAITING)
    at: AwareDatetime

    @model_validator(mode="after")
    def _distinct(self) -> QueueEventBody:
        visits = [w.visit_number for w in self.waiting]
        if len(set(visits)) != len(visits):
            raise ValueError("waiting: a visit number is listed twice")
        numbers = [w.queue_number for w in self.waiting]
        if len(set(numbers)) != len(numbers):
            raise ValueError("waiting: a queue number is listed twice")
        return self


def recall_key(hospital: str, visit_number: str) -> str:
    """The outbox dedupe key of a visit's first recall call (retries and the SMS extend it)."""
    return f"recall:{hospital}:{visit_number}"


def positions(now_calling: int, waiting: Iterable[Waiting]) -> dict[str, int]:
    """Each not-yet-called patient's position (1 = next) among those still waiting."""
    ahead = sorted(w.queue_number for w in waiting if w.queue_number > now_calling)
    rank = {number: index + 1 for index, number in enumerate(ahead)}
    return {w.visit_number: rank[w.queue_number] for w in waiting if w.queue_number in rank}


def withdraw(outbox: Outbox, s: Session, base_key: str, reason: str, now: datetime) -> list[str]:
    """Withdraw every pending outbox row of one recall (``base_key`` and its retries and SMS),
    recording ``reason`` on each; returns the withdrawn keys."""
    keys = list(
        s.scalars(
            select(OutboxMessage.dedupe_key).where(
                OutboxMessage.dedupe_key.startswith(base_key, autoescape=True),
                OutboxMessage.status.in_((PENDING, CLAIMED)),
            )
        )
    )
    done: list[str] = []
    for key in keys:
        if key != base_key and not key.startswith(base_key + ":"):
            continue
        if outbox.cancel(s, key, now=now):
            s.execute(
                update(outbox_t)
                .where(outbox_t.c.dedupe_key == key)
                .values(last_error=f"cancelled: {reason}")
            )
            done.append(key)
    return done


class RecallService:
    """Turns queue events into recall calls, and tells hospitals what patients answered."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        feeds: FeedService,
        clock: Clock,
        settings: RecallConfig,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.feeds = feeds
        self.clock = clock
        self.settings = settings

    # ------------------------------------------------------------------ the feed

    def queue_event(
        self, hospital: str, timestamp: str | None, signature: str | None, body: bytes
    ) -> FeedAnswer:
        """Authenticate, validate and apply one queue event (idempotent on its event id)."""
        try:
            self.feeds.authenticate(hospital, timestamp, signature, body)
            event = self._parse(body)
            digest = hashlib.sha256(body).hexdigest()

            def work() -> FeedAnswer:
                with self.db.transaction() as s:
                    return self._apply(s, hospital, event, digest)

            # Two deliveries of one event at once: the loser's unique-key conflict rolls it
            # back whole, and its second run replays the winner's answer.
            answer = retry_once(work)
        except FeedRefused as refused:
            known = hospital if hospital in self.feeds.hospitals else "an unknown hospital"
            log.warning(
                "queue feed from %s refused (%d): %s", known, refused.status, refused.message
            )
            return refused.answer()
        return answer

    @staticmethod
    def _parse(body: bytes) -> QueueEventBody:
        try:
            return QueueEventBody.model_validate_json(body)
        except ValidationError as exc:
            raise FeedRefused(400, _validation_message(exc)) from None

    def _replay(self, s: Session, hospital: str, event_id: str, digest: str) -> FeedAnswer | None:
        row = s.scalar(
            select(QueueEvent).where(
                QueueEvent.hospital_id == hospital, QueueEvent.event_id == event_id
            )
        )
        if row is None:
            return None
        if not hmac.compare_digest(row.payload_sha256, digest):
            raise FeedRefused(409, "this event id was already received with a different body")
        log.info("queue feed from %s: event %s replayed, nothing new", hospital, event_id)
        return FeedAnswer(200, dict(row.answer))

    def _clinic(self, s: Session, hospital: str, event: QueueEventBody, now: datetime) -> int:
        """Record the clinic's names; its recall places (the clinic's own or the default)."""
        clinic = s.get(RecallClinic, (hospital, event.clinic.id), with_for_update=True)
        if clinic is None:
            s.execute(
                insert_ignore(s.connection(), cast(Table, RecallClinic.__table__)).values(
                    hospital_id=hospital,
                    clinic_id=event.clinic.id,
                    name_zh=event.clinic.name.zh,
                    name_en=event.clinic.name.en,
                    recall_places=None,
                    updated_at=now,
                )
            )
            clinic = s.get(RecallClinic, (hospital, event.clinic.id))
            assert clinic is not None
        else:
            clinic.name_zh, clinic.name_en = event.clinic.name.zh, event.clinic.name.en
            clinic.updated_at = now
        if event.clinic.recall_places is not None:
            clinic.recall_places = event.clinic.recall_places
        places = clinic.recall_places
        return self.settings.default_places if places is None else places

    def _visit(
        self, s: Session, hospital: str, clinic_id: str, w: Waiting, now: datetime
    ) -> RecallVisit:
        stmt = select(RecallVisit).where(
            RecallVisit.hospital_id == hospital, RecallVisit.visit_number == w.visit_number
        )
        visit = s.scalar(stmt.with_for_update())
        if visit is None:
            booking_id = s.scalar(
                select(Booking.id).where(
                    Booking.visit_number == w.visit_number, Booking.hospital_id == hospital
                )
            )
            s.execute(
                insert_ignore(s.connection(), cast(Table, RecallVisit.__table__)).values(
                    hospital_id=hospital,
                    clinic_id=clinic_id,
                    visit_number=w.visit_number,
                    queue_number=w.queue_number,
                    booking_id=booking_id,
                    status="waiting",
                    created_at=now,
                    updated_at=now,
                )
            )
            visit = s.scalar(stmt.with_for_update())
            assert visit is not None
        visit.clinic_id = clinic_id
        visit.queue_number = w.queue_number
        visit.updated_at = now
        return visit

    def _end(
        self, s: Session, visit: RecallVisit, status: str, reason: str, now: datetime
    ) -> list[str]:
        """End an open recall and withdraw its pending attempts."""
        visit.status = status
        visit.reason = reason
        visit.updated_at = now
        return withdraw(
            self.outbox, s, recall_key(visit.hospital_id, visit.visit_number), reason, now
        )

    def _apply(self, s: Session, hospital: str, event: QueueEventBody, digest: str) -> FeedAnswer:
        replay = self._replay(s, hospital, event.event_id, digest)
        if replay is not None:
            return replay
        now = self.clock.now()
        places = self._clinic(s, hospital, event, now)
        where = positions(event.now_calling, event.waiting)
        queued: list[str] = []
        stopped: dict[str, str] = {}
        unknown: list[str] = []
        listed: set[str] = set()
        for w in sorted(event.waiting, key=lambda item: item.queue_number):
            listed.add(w.visit_number)
            visit = self._visit(s, hospital, event.clinic.id, w, now)
            visit.places_ahead = where[w.visit_number] - 1 if w.visit_number in where else None
            is_open = visit.status in RECALL_OPEN
            if w.checked_in:
                if is_open:
                    if visit.status == "calling":
                        stopped[w.visit_number] = CHECKED_IN
                    self._end(s, visit, "checked_in", CHECKED_IN, now)
                continue
            if w.visit_number not in where:  # its number was called already
                if is_open:
                    self._end(s, visit, "passed", PASSED, now)
                    stopped[w.visit_number] = PASSED
                continue
            if visit.status != "waiting" or where[w.visit_number] > places:
                continue
            if visit.booking_id is None:
                unknown.append(w.visit_number)
                continue
            if self._call(s, hospital, visit, now):
                queued.append(w.visit_number)
        # Patients no longer listed whose number has been called: their number passed.
        gone = s.scalars(
            select(RecallVisit)
            .where(
                RecallVisit.hospital_id == hospital,
                RecallVisit.clinic_id == event.clinic.id,
                RecallVisit.status.in_(RECALL_OPEN),
                RecallVisit.queue_number <= event.now_calling,
            )
            .with_for_update()
        )
        for visit in gone:
            if visit.visit_number in listed:
                continue
            if visit.status == "calling":
                stopped[visit.visit_number] = PASSED
            self._end(s, visit, "passed", PASSED, now)
        answers = {
            v.visit_number: v.status
            for v in s.scalars(
                select(RecallVisit).where(
                    RecallVisit.hospital_id == hospital,
                    RecallVisit.clinic_id == event.clinic.id,
                    RecallVisit.status.in_(("confirmed", "cannot_come", "unreachable")),
                )
            )
        }
        body: dict[str, Any] = {
            "status": "accepted",
            "event_id": event.event_id,
            "recall_places": places,
            "recalls_queued": queued,
            "recalls_stopped": stopped,
            "not_booked_here": unknown,
            "answers": answers,
        }
        s.add(
            QueueEvent(
                hospital_id=hospital,
                event_id=event.event_id,
                clinic_id=event.clinic.id,
                now_calling=event.now_calling,
                waiting=len(event.waiting),
                payload_sha256=digest,
                answer=body,
                received_at=now,
            )
        )
        s.add(
            AuditEntry(
                at=now,
                actor=f"feed:{hospital}"[:64],
                action="recall.queue_event",
                subject_type="clinic",
                subject_id=event.clinic.id,
                reason=None,
                detail={
                    "event_id": event.event_id,
                    "now_calling": event.now_calling,
                    "waiting": len(event.waiting),
                    "recalls_queued": len(queued),
                    "recalls_stopped": len(stopped),
                },
            )
        )
        s.flush()
        log.info(
            "queue feed from %s: event %s, %d waiting, %d recalls queued, %d stopped",
            hospital,
            event.event_id,
            len(event.waiting),
            len(queued),
            len(stopped),
        )
        return FeedAnswer(200, body)

    def _call(self, s: Session, hospital: str, visit: RecallVisit, now: datetime) -> bool:
        """Queue the first recall call of ``visit`` (urgent: it ignores quiet hours)."""
        booking = s.get(Booking, visit.booking_id)
        if booking is None or booking.status not in ("booked", "attended"):
            return False
        language = "en" if booking.language == "en" else "zh-CN"
        key = recall_key(hospital, visit.visit_number)
        written = self.outbox.enqueue(
            s,
            channel="call",
            to_e164=booking.contact_phone,
            template="recall",
            language=language,
            params={"kind": "recall", "ref": visit.id, "attempt": 1, "key": key},
            dedupe_key=key,
            now=now,
            urgent=True,
        )
        visit.status = "calling"
        visit.recall_at = now
        return written

    # ------------------------------------------------------------------ operators and clinics

    def set_places(
        self, hospital: str, clinic_id: str, places: int | None, *, actor: str = "system"
    ) -> None:
        """Set how many places from the front a clinic's patients are recalled (``None``:
        the default). The clinic must have sent a queue event before. Audited."""
        if places is not None and not 0 <= places <= 100:
            raise ValueError("recall places must be from 0 to 100")
        now = self.clock.now()
        with self.db.transaction() as s:
            clinic = s.get(RecallClinic, (hospital, clinic_id), with_for_update=True)
            if clinic is None:
                raise LookupError("no queue event from this clinic yet")
            before = clinic.recall_places
            clinic.recall_places = places
            clinic.updated_at = now
            s.add(
                AuditEntry(
                    at=now,
                    actor=actor[:64],
                    action="recall.places_set",
                    subject_type="recall_clinic",
                    subject_id=f"{hospital}/{clinic_id}"[:64],
                    reason=None,
                    detail={"before": before, "after": places},
                )
            )

    def clinics(self, hospital: str) -> list[dict[str, Any]]:
        """The clinics of ``hospital`` that have sent queue events, with the places from the
        front at which their patients are recalled (``default``: ``recall.default_places``)."""
        with self.db.sessions() as s:
            rows = s.scalars(
                select(RecallClinic)
                .where(RecallClinic.hospital_id == hospital)
                .order_by(RecallClinic.clinic_id)
            ).all()
            return [
                {
                    "clinic_id": c.clinic_id,
                    "name_zh": c.name_zh,
                    "name_en": c.name_en,
                    "recall_places": (
                        self.settings.default_places if c.recall_places is None else c.recall_places
                    ),
                    "own_setting": c.recall_places is not None,
                    "updated_at": c.updated_at.isoformat(),
                }
                for c in rows
            ]

    def answers(self, hospital: str, *, since: datetime | None = None) -> list[dict[str, Any]]:
        """What recalled patients of ``hospital`` answered or what became of their recall
        (for the hospital's queue system), newest first."""
        with self.db.transaction() as s:
            query = (
                select(RecallVisit)
                .where(
                    RecallVisit.hospital_id == hospital,
                    RecallVisit.status.not_in(("waiting",)),
                )
                .order_by(RecallVisit.updated_at.desc(), RecallVisit.id.desc())
                .limit(500)
            )
            if since is not None:
                query = query.where(RecallVisit.updated_at >= since)
            return [
                {
                    "visit_number": v.visit_number,
                    "clinic_id": v.clinic_id,
                    "status": v.status,
                    "reason": v.reason,
                    "updated_at": v.updated_at.isoformat(),
                }
                for v in s.scalars(query)
            ]
