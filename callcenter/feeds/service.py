"""Hospital feeds: check a signed event, store it once, and tell the patient by SMS.

Each hospital signs its requests with its own HMAC-SHA256 key (``HOSPITAL_FEED_KEYS``):
``X-Hotline-Timestamp`` is the Unix time in seconds and ``X-Hotline-Signature`` is
``sha256=<hex>`` of ``<timestamp>.<raw body>``. Timestamps more than five minutes away from
now are refused (a captured request cannot be replayed later); within the window a replay is
harmless, because events are idempotent on the hospital's event id.

"Results ready" (:meth:`FeedService.results_ready`) stores a :class:`~.models.LabResult` and
queues ``sms.results_ready`` to the booking's contact phone, in the booking's language. The
SMS says only that a result is ready at the hospital and how to get it: never the test, its
values or whether it is abnormal. Values a hospital sends are validated and stored only sealed
(``values_sealed``), for the phone to read a normal result after identity checks
(:mod:`callcenter.recall.results`); they are never logged, audited or put in a message. The
message is not ``essential`` (a number that opted out of SMS gets nothing: the result waits
at the hospital all the same) and not ``urgent`` (it respects quiet hours). With
``recall.results_call`` the patient is also called (template ``results``: the flow
``ivr_flows/results.yaml``), urgent, dedupe key ``results-call:<hospital>:<result id>``.

Queue events for waiting-room recall use the same signature and idempotency
(:mod:`callcenter.recall.queue`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from knowledge_base import models as kb

from ..booking.models import Booking
from ..clock import Clock
from ..config import ConfigError
from ..db.engine import Database
from ..db.models import AuditEntry
from ..db.sql import insert_ignore, inserted
from ..messaging.outbox import Outbox
from ..messaging.sealing import Sealer
from ..recall.results import seal_values
from .models import LabResult

log = logging.getLogger(__name__)

#: How far a request's timestamp may be from now.
MAX_SKEW = timedelta(minutes=5)
MIN_KEY_CHARS = 32
SMS_TEMPLATE = "results_ready"
_HOSPITAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_SIGNATURE = re.compile(r"^sha256=([0-9a-f]{64})$")


def parse_feed_keys(text: str | None) -> dict[str, bytes]:
    """Parse ``HOSPITAL_FEED_KEYS`` (``hospital=key,hospital=key``) into hospital -> key.

    Raises :class:`ConfigError` naming the problem (never a key).
    """
    keys: dict[str, bytes] = {}
    for number, entry in enumerate((text or "").split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        hospital, sep, key = entry.partition("=")
        hospital, key = hospital.strip(), key.strip()
        if not sep or not _HOSPITAL.match(hospital):
            raise ConfigError(
                f"HOSPITAL_FEED_KEYS: entry {number} is not <hospital id>=<key> "
                "(hospital ids: letters, digits, - and _)"
            )
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(
                f"HOSPITAL_FEED_KEYS: the key of {hospital} is shorter than {MIN_KEY_CHARS} "
                "characters"
            )
        if hospital in keys:
            raise ConfigError(f"HOSPITAL_FEED_KEYS: {hospital} is listed twice")
        keys[hospital] = key.encode("utf-8")
    return keys


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Hotline-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(frozen=True)
class FeedAnswer:
    """What to answer the hospital: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


class FeedRefused(Exception):
    """A request that is not accepted; ``status`` and ``message`` go back to the hospital."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def answer(self) -> FeedAnswer:
        """The refusal as an answer."""
        return FeedAnswer(self.status, {"error": self.message})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TestName(_Strict):
    """The test's name in both languages (kept for the hotline, never put in an SMS)."""

    __test__ = False  # not a pytest test class

    zh: StrictStr = Field(min_length=1, max_length=100)
    en: StrictStr = Field(min_length=1, max_length=100)

    @field_validator("zh", "en")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in value):
            raise ValueError("must not contain control characters")
        return value


class ResultsReadyEvent(_Strict):
    """The body of ``POST /api/hospitals/<hospital>/results``."""

    event_id: StrictStr = Field(pattern=_ID)
    visit_number: StrictStr = Field(pattern=r"^[0-9]{8}$")
    result_id: StrictStr = Field(pattern=_ID)
    test_name: TestName
    ready_at: AwareDatetime
    abnormal: StrictBool
    #: validated, then stored only sealed (never sent, logged or audited)
    values: list[dict[str, str | int | float | bool | None]] | None = Field(
        default=None, max_length=200
    )


def _validation_message(exc: ValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors(include_input=False)[:5]:
        if err["type"] == "json_invalid":
            return "the body is not valid JSON"
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "invalid payload: " + "; ".join(parts)


class FeedService:
    """Checks, stores and acts on hospital feed events. Knows nothing of the web framework."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Clock,
        keys: Mapping[str, bytes],
        *,
        sealer: Sealer | None = None,
        results_call: bool = False,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self._keys = dict(keys)
        self.sealer = sealer
        self.results_call = results_call

    @property
    def hospitals(self) -> frozenset[str]:
        """Hospitals that have a feed key."""
        return frozenset(self._keys)

    def authenticate(
        self, hospital: str, timestamp: str | None, signature: str | None, body: bytes
    ) -> None:
        """Raise :class:`FeedRefused` (404 unknown hospital, 403 otherwise) unless ``body`` is
        signed with ``hospital``'s key at a timestamp within five minutes of now."""
        key = self._keys.get(hospital)
        if key is None:
            raise FeedRefused(404, "unknown hospital (no feed key configured)")
        ts = (timestamp or "").strip()
        sig = (signature or "").strip()
        if not ts or not sig:
            raise FeedRefused(403, "missing X-Hotline-Timestamp or X-Hotline-Signature")
        if not ts.isascii() or not ts.isdigit() or len(ts) > 12:
            raise FeedRefused(403, "X-Hotline-Timestamp must be Unix time in seconds")
        sent = datetime.fromtimestamp(int(ts), tz=self.clock.now().tzinfo)
        if abs(self.clock.now() - sent) > MAX_SKEW:
            raise FeedRefused(403, "X-Hotline-Timestamp is more than 5 minutes from now")
        expected = sign(key, ts, body)
        if not _SIGNATURE.match(sig) or not hmac.compare_digest(expected, sig):
            raise FeedRefused(403, "bad signature")

    def results_ready(
        self, hospital: str, timestamp: str | None, signature: str | None, body: bytes
    ) -> FeedAnswer:
        """Authenticate, validate and store one "results ready" event; notify the patient.

        Idempotent on ``(hospital, event_id)``: a replay stores nothing new and gets the
        same answer; the same event id with a different body is refused (409).
        """
        try:
            self.authenticate(hospital, timestamp, signature, body)
            event = self._parse(body)
            with self.db.transaction() as s:
                answer = self._store(s, hospital, event, hashlib.sha256(body).hexdigest())
        except FeedRefused as refused:
            known = hospital if hospital in self._keys else "an unknown hospital"
            log.warning(
                "results feed from %s refused (%d): %s", known, refused.status, refused.message
            )
            return refused.answer()
        return answer

    @staticmethod
    def _parse(body: bytes) -> ResultsReadyEvent:
        try:
            return ResultsReadyEvent.model_validate_json(body)
        except ValidationError as exc:
            raise FeedRefused(400, _validation_message(exc)) from None

    @staticmethod
    def _accepted(row: LabResult) -> FeedAnswer:
        return FeedAnswer(
            200, {"status": "accepted", "event_id": row.event_id, "result_id": row.result_id}
        )

    def _replay(self, s: Session, hospital: str, event_id: str, digest: str) -> FeedAnswer | None:
        row = s.scalar(
            select(LabResult).where(
                LabResult.hospital_id == hospital, LabResult.event_id == event_id
            )
        )
        if row is None:
            return None
        if not hmac.compare_digest(row.payload_sha256, digest):
            raise FeedRefused(409, "this event id was already received with a different body")
        log.info("results feed from %s: event %s replayed, nothing new", hospital, event_id)
        return self._accepted(row)

    def _store(
        self, s: Session, hospital: str, event: ResultsReadyEvent, digest: str
    ) -> FeedAnswer:
        replay = self._replay(s, hospital, event.event_id, digest)
        if replay is not None:
            return replay
        booking = s.scalar(
            select(Booking).where(
                Booking.visit_number == event.visit_number, Booking.hospital_id == hospital
            )
        )
        if booking is None:
            raise FeedRefused(422, "no booking with this visit number at this hospital")
        now = self.clock.now()
        sealed = None
        if event.values and self.sealer is not None:
            sealed = seal_values(self.sealer, event.values)
        table = LabResult.__table__
        stmt = (
            insert_ignore(s.connection(), table)  # type: ignore[arg-type]
            .values(
                hospital_id=hospital,
                event_id=event.event_id,
                result_id=event.result_id,
                booking_id=booking.id,
                patient_id=booking.patient_id,
                test_name_zh=event.test_name.zh,
                test_name_en=event.test_name.en,
                ready_at=event.ready_at,
                abnormal=event.abnormal,
                had_values=bool(event.values),
                values_sealed=sealed,
                payload_sha256=digest,
                received_at=now,
            )
            .returning(table.c.id)
        )
        if not inserted(s.execute(stmt)):
            # Another request stored this event meanwhile, or the result id is taken.
            replay = self._replay(s, hospital, event.event_id, digest)
            if replay is not None:
                return replay
            raise FeedRefused(409, "this result id was already received under another event")
        row = s.scalar(
            select(LabResult).where(
                LabResult.hospital_id == hospital, LabResult.event_id == event.event_id
            )
        )
        assert row is not None
        language = "en" if booking.language == "en" else "zh-CN"
        names = s.execute(
            select(kb.Hospital.name_zh, kb.Hospital.name_en).where(kb.Hospital.id == hospital)
        ).first()
        hospital_name = (names[1] if language == "en" else names[0]) if names else hospital
        queued = self.outbox.enqueue(
            s,
            channel="sms",
            to_e164=booking.contact_phone,
            template=SMS_TEMPLATE,
            language=language,
            params={"hospital": hospital_name},
            dedupe_key=f"results:{hospital}:{event.result_id}",
            now=now,
        )
        called = False
        if self.results_call:
            key = f"results-call:{hospital}:{event.result_id}"
            called = self.outbox.enqueue(
                s,
                channel="call",
                to_e164=booking.contact_phone,
                template="results",
                language=language,
                params={"kind": "results", "ref": row.id, "attempt": 1, "key": key},
                dedupe_key=key,
                now=now,
                urgent=True,
            )
        s.add(
            AuditEntry(
                at=now,
                actor=f"feed:{hospital}"[:64],
                action="results.ready_received",
                subject_type="lab_result",
                subject_id=str(row.id),
                reason=None,
                detail={
                    "event_id": event.event_id,
                    "result_id": event.result_id,
                    "booking_id": booking.id,
                    "abnormal": event.abnormal,
                    "sms_queued": queued,
                    "call_queued": called,
                },
            )
        )
        log.info(
            "results feed from %s: event %s stored as result %d", hospital, event.event_id, row.id
        )
        return self._accepted(row)
