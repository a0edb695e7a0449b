"""The transactional outbox: every SMS and outbound call is a row before it is anything else.

Whoever causes a message (a booking, a results feed, a reminder job, a call's menu choice)
calls :meth:`Outbox.enqueue` with its own database session, so the row commits or rolls back
with the cause, and a unique ``dedupe_key`` makes a repeated cause (a retried request, a second
scheduler process) write one row. Nothing is sent here: dispatcher workers
(:mod:`callcenter.messaging.dispatcher`, ``callcenter worker``) claim due rows and send them.

Life of a row (``status``; ``status_rank`` only ever grows once the provider is involved)::

    pending --claim--> claimed --provider accepted--> queued -> sent -> delivered
       ^                  |  \\--permanent error / attempts used up--> failed
       |                  |   \\--opted out (non-essential SMS)--> suppressed
       +--retry/backoff---+    \\--quiet hours (non-urgent)--> pending until quiet_end
       +--frequency cap (non-essential, non-urgent)--> pending until a slot frees up
    pending --cancel()--> cancelled

Delivery guarantee: at least once, never silently lost
--------------------------------------------------------
A worker writes an ``outbox_attempts`` row and commits it *before* calling the provider, and
records the provider's answer in a second transaction. A claimed row carries a lease; when a
worker dies (SIGKILL, power loss, lost database connection) its rows become due again when the
lease ends, and the unfinished attempt is closed with ``result = 'unknown'``.

**The duplicate window.** If a worker dies after the provider accepted a message but before
its own commit recorded that, nobody can know the message went out: the row is retried when
the lease ends and the recipient may get the message twice. The window runs from the moment
the provider accepts the request to our commit of its answer: milliseconds per message. The
same holds for a worker alive but stalled past its lease (keep ``lease_s`` well above the
provider timeout) and for a request that timed out after reaching the provider (recorded as a
``transient`` attempt with code ``timeout``, then retried). Nothing else sends twice.

Reconciliation. Every duplicate is visible: its message has an attempt with
``result = 'unknown'`` (or a timed-out attempt) followed by another attempt, and
:meth:`Outbox.unknown_attempts` lists them for an operator, who can find the copy in the
provider's message log by recipient and time. Status callbacks carry the outbox id in their
URL (``?o=<id>``), so the statuses of *both* provider ids land on the same row, and since the
status only moves forward, the row ends on the best news either copy had (``delivered`` wins
over ``undelivered``) whatever order the callbacks come in.

Sealed params (a visit password) are encrypted at enqueue (:mod:`.sealing`) and erased once the
message leaves the dispatcher's hands (accepted by the provider, failed, suppressed,
cancelled). Statuses the provider reports arrive through :meth:`Outbox.record_status`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Table, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from ..config import SUPPORTED_LANGUAGES, Config, Settings
from ..db.engine import Database
from ..db.models import OutboxAttempt, OutboxMessage, ProviderStatus
from ..db.sql import insert_ignore, inserted
from ..phone import mask
from .sealing import Sealer

log = logging.getLogger(__name__)

outbox_t = cast(Table, OutboxMessage.__table__)
attempts_t = cast(Table, OutboxAttempt.__table__)
status_t = cast(Table, ProviderStatus.__table__)

Channel = Literal["sms", "call"]
CHANNELS = ("sms", "call")

#: Waiting for (or being handled by) a dispatcher.
PENDING = "pending"
CLAIMED = "claimed"
#: Final without reaching the provider.
FAILED = "failed"
SUPPRESSED = "suppressed"
CANCELLED = "cancelled"

#: The order statuses may move in. Dispatcher-internal states are 0; states where the
#: dispatcher is done are >= :data:`DONE_RANK`. Among final delivery states the "best news"
#: ranks highest, so two copies of one message (the duplicate window) settle on the truth
#: whatever order their callbacks arrive in.
STATUS_RANK: dict[str, int] = {
    PENDING: 0,
    CLAIMED: 0,
    CANCELLED: 5,
    SUPPRESSED: 6,
    # SMS (Twilio's names; the local sender uses the same)
    "accepted": 10,
    "scheduled": 11,
    "queued": 20,
    "sending": 30,
    "sent": 40,
    "canceled": 45,
    FAILED: 50,
    "undelivered": 51,
    "delivered": 55,
    "read": 56,
    # voice calls
    "initiated": 25,
    "ringing": 31,
    "in-progress": 41,
    "busy": 52,
    "no-answer": 53,
    "completed": 57,
}
DONE_RANK = 5
#: ``last_error`` of a pending message the dispatcher is holding back, by reason.
DEFERRED_QUIET = "deferred: quiet hours"
DEFERRED_CAP = "deferred: frequency cap"
#: Statuses in which a message did not reach its recipient.
FAILURES = ("failed", "undelivered", "busy", "no-answer", "canceled")
#: Statuses after which nothing more will happen to the message.
TERMINAL = frozenset(
    {
        CANCELLED,
        SUPPRESSED,
        FAILED,
        "canceled",
        "undelivered",
        "delivered",
        "read",
        "busy",
        "no-answer",
        "completed",
    }
)

_E164 = re.compile(r"\+[1-9]\d{6,14}")
_PROVIDER_KIND = {"sms": "sms", "call": "call"}


def rank(status: str) -> int | None:
    """The rank of ``status`` (``None`` for a status this module does not know)."""
    return STATUS_RANK.get(status)


@dataclass(frozen=True)
class MessageView:
    """One outbox row as an operator screen or the CLI shows it (mask the number to display)."""

    id: int
    channel: str
    to_e164: str
    template: str
    language: str
    status: str
    essential: bool
    urgent: bool
    attempts: int
    due_at: datetime
    not_before: datetime | None
    provider_id: str | None
    last_error_code: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime | None

    @property
    def to_masked(self) -> str:
        """The recipient, masked for display."""
        return mask(self.to_e164)


@dataclass(frozen=True)
class AttemptView:
    """One try at sending a message."""

    outbox_id: int
    attempt: int
    worker: str
    started_at: datetime
    finished_at: datetime | None
    result: str | None
    error_code: str | None
    provider_id: str | None


def _view(row: OutboxMessage) -> MessageView:
    return MessageView(
        id=row.id,
        channel=row.channel,
        to_e164=row.to_e164,
        template=row.template,
        language=row.language,
        status=row.status,
        essential=row.essential,
        urgent=row.urgent,
        attempts=row.attempts,
        due_at=row.due_at,
        not_before=row.not_before,
        provider_id=row.provider_id,
        last_error_code=row.last_error_code,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class Outbox:
    """Writes messages into the outbox with their cause, and follows them to a final state."""

    def __init__(self, db: Database, sealer: Sealer, settings: Settings) -> None:
        self.db = db
        self.sealer = sealer
        self.settings = settings

    @classmethod
    def from_config(cls, config: Config, db: Database) -> Outbox:
        """The outbox for ``config`` (sealing key from ``SECRET_KEY``)."""
        return cls(db, Sealer(config.secrets.secret_key), config.settings)

    # ------------------------------------------------------------------ writing

    def enqueue(
        self,
        session: Session,
        *,
        channel: Channel,
        to_e164: str,
        template: str,
        language: str,
        params: Mapping[str, Any],
        dedupe_key: str,
        now: datetime,
        due_at: datetime | None = None,
        sealed: Mapping[str, str] | None = None,
        essential: bool = False,
        urgent: bool = False,
        call_id: int | None = None,
        reply_handler: str | None = None,
        reply_context: Mapping[str, Any] | None = None,
    ) -> bool:
        """Add a message in the caller's transaction; ``False`` if ``dedupe_key`` exists already.

        ``params`` fill the template (stored as they are: never put a secret there);
        ``sealed`` params are encrypted and erased once the message is final. ``essential``
        messages (a booking's password) go out even to a number that opted out of SMS;
        ``urgent`` ones ignore quiet hours. ``reply_handler`` names what should handle a
        text reply to this message (with ``reply_context``) during the reply window. Invalid
        arguments raise :class:`ValueError` (a programming error, not a delivery problem).
        """
        if channel not in CHANNELS:
            raise ValueError(f"channel must be sms or call, not {channel!r}")
        if not _E164.fullmatch(to_e164 or ""):
            raise ValueError("to_e164 must be an E.164 number such as +8613800138000")
        if language not in SUPPORTED_LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(SUPPORTED_LANGUAGES)}")
        if not template or len(template) > 64:
            raise ValueError("template must be a name of 1-64 characters")
        if not dedupe_key or len(dedupe_key) > 200:
            raise ValueError("dedupe_key must be 1-200 characters")
        if now.tzinfo is None or (due_at is not None and due_at.tzinfo is None):
            raise ValueError("now and due_at must be timezone-aware")
        if reply_handler is not None and not 0 < len(reply_handler) <= 64:
            raise ValueError("reply_handler must be a name of 1-64 characters")
        clear = {str(k): v for k, v in params.items()}
        secret = dict(sealed or {})
        overlap = set(clear) & set(secret)
        if overlap:
            raise ValueError(f"params given both in clear and sealed: {', '.join(sorted(overlap))}")
        due = due_at or now
        window = timedelta(hours=self.settings.messaging.reply_window_hours)
        values: dict[str, Any] = {
            "channel": channel,
            "to_e164": to_e164,
            "template": template,
            "language": language,
            "params": clear,
            "dedupe_key": dedupe_key,
            "essential": essential,
            "urgent": urgent,
            "status": PENDING,
            "status_rank": 0,
            "attempts": 0,
            "due_at": due,
            "not_before": due,
            "created_at": now,
            "updated_at": now,
            "call_id": call_id,
            "sealed": self.sealer.seal(secret) if secret else None,
            "reply_handler": reply_handler,
            "reply_context": dict(reply_context) if reply_context is not None else None,
            "reply_until": due + window if reply_handler else None,
        }
        stmt = (
            insert_ignore(session.connection(), outbox_t).values(**values).returning(outbox_t.c.id)
        )
        return inserted(session.execute(stmt))

    def cancel(self, session: Session, dedupe_key: str, *, now: datetime | None = None) -> bool:
        """Withdraw a message nobody has started sending; ``True`` if it was withdrawn.

        A message already handed to the provider (or being handed over right now) is not
        recalled: its own status follows it.
        """
        stmt = (
            update(outbox_t)
            .where(
                outbox_t.c.dedupe_key == dedupe_key,
                outbox_t.c.status.in_((PENDING, CLAIMED)),
            )
            .values(
                status=CANCELLED,
                status_rank=STATUS_RANK[CANCELLED],
                sealed=None,
                lease_until=None,
                claim_token=None,
                finished_at=now or func.now(),
                updated_at=now or func.now(),
            )
            .returning(outbox_t.c.id)
        )
        return session.execute(stmt).first() is not None

    def record_status(
        self,
        provider: str,
        provider_id: str,
        status: str,
        *,
        error_code: str | None = None,
        outbox_id: int | None = None,
        now: datetime,
    ) -> bool:
        """Apply a delivery or call status the provider reported; ``True`` if it moved forward.

        Idempotent and order-free: a status at or below the current one changes nothing. The
        message is found by ``outbox_id`` (from the callback URL) or else by ``provider_id``
        (of any attempt). Every status is also recorded once in ``provider_status``.
        """
        status = (status or "").strip().lower()
        new_rank = STATUS_RANK.get(status)
        with self.db.connection() as conn:
            target = outbox_id
            if target is None:
                target = conn.execute(
                    select(outbox_t.c.id).where(outbox_t.c.provider_id == provider_id).limit(1)
                ).scalar()
            if target is None:
                target = conn.execute(
                    select(attempts_t.c.outbox_id)
                    .where(attempts_t.c.provider_id == provider_id)
                    .limit(1)
                ).scalar()
            if target is None:
                log.info("status %s for unknown %s message %s", status, provider, provider_id)
                return False
            channel = conn.execute(
                select(outbox_t.c.channel).where(outbox_t.c.id == target)
            ).scalar()
            if channel is None:
                return False
            conn.execute(
                insert_ignore(conn, status_t).values(
                    provider=provider,
                    kind=_PROVIDER_KIND.get(channel, channel),
                    provider_id=provider_id[:64],
                    status=status[:32],
                    detail={"outbox_id": target, "error_code": error_code},
                    at=now,
                )
            )
            if new_rank is None or new_rank < DONE_RANK:
                log.info("ignoring status %r for outbox %s", status, target)
                return False
            return advance(
                conn,
                target,
                status,
                now=now,
                provider=provider,
                provider_id=provider_id,
                error_code=error_code,
            )

    # ------------------------------------------------------------------ reading

    def get(self, session: Session, outbox_id: int) -> MessageView | None:
        """One message, or ``None``."""
        row = session.get(OutboxMessage, outbox_id)
        return _view(row) if row is not None else None

    def list_messages(
        self, session: Session, *, status: str | None = None, limit: int = 50
    ) -> list[MessageView]:
        """The newest messages (optionally with one status), newest first."""
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
        if status is not None:
            query = query.where(OutboxMessage.status == status)
        return [_view(r) for r in session.scalars(query)]

    def failed(self, session: Session, *, limit: int = 50) -> list[MessageView]:
        """Messages the dispatcher gave up on, newest first: for an operator to follow up."""
        return self.list_messages(session, status=FAILED, limit=limit)

    def counts(self, session: Session) -> dict[str, int]:
        """How many messages are in each status."""
        rows = session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
        return {str(s): int(n) for s, n in rows}

    def counts_by_template(
        self, session: Session, *, since: datetime, now: datetime
    ) -> dict[str, dict[str, int]]:
        """Messages per template and state: written since ``since``, or still in the dispatcher.

        The state is the status, except that a pending message is ``due`` when it may go now
        and ``waiting`` when it is held (not yet due, backing off or deferred).
        """
        state = case(
            (
                and_(
                    OutboxMessage.status == PENDING,
                    or_(OutboxMessage.not_before.is_(None), OutboxMessage.not_before <= now),
                ),
                "due",
            ),
            (OutboxMessage.status == PENDING, "waiting"),
            else_=OutboxMessage.status,
        )
        rows = session.execute(
            select(OutboxMessage.template, state, func.count())
            .where(
                or_(
                    OutboxMessage.created_at >= since,
                    OutboxMessage.status.in_((PENDING, CLAIMED)),
                )
            )
            .group_by(OutboxMessage.template, state)
        )
        out: dict[str, dict[str, int]] = {}
        for template, st, n in rows:
            out.setdefault(str(template), {})[str(st)] = int(n)
        return out

    def top_failures(
        self, session: Session, *, since: datetime, limit: int = 10
    ) -> list[tuple[str | None, str | None, int]]:
        """The commonest ``(error code, error text, count)`` of messages that failed since
        ``since`` (status in :data:`FAILURES`), most frequent first. Texts are as stored
        (already masked); mask again before display."""
        count = func.count().label("n")
        rows = session.execute(
            select(OutboxMessage.last_error_code, OutboxMessage.last_error, count)
            .where(OutboxMessage.status.in_(FAILURES), OutboxMessage.updated_at >= since)
            .group_by(OutboxMessage.last_error_code, OutboxMessage.last_error)
            .order_by(count.desc(), OutboxMessage.last_error_code)
            .limit(limit)
        )
        return [(code, text, int(n)) for code, text, n in rows]

    def deferred_counts(self, session: Session, *, now: datetime) -> dict[str, int]:
        """Pending messages held back now, by reason (:data:`DEFERRED_QUIET`, ...)."""
        rows = session.execute(
            select(OutboxMessage.last_error, func.count())
            .where(
                OutboxMessage.status == PENDING,
                OutboxMessage.not_before > now,
                OutboxMessage.last_error.like("deferred:%"),
            )
            .group_by(OutboxMessage.last_error)
        )
        return {str(reason): int(n) for reason, n in rows}

    def attempts(self, session: Session, outbox_id: int) -> list[AttemptView]:
        """Every try at sending one message, in order."""
        rows = session.scalars(
            select(OutboxAttempt)
            .where(OutboxAttempt.outbox_id == outbox_id)
            .order_by(OutboxAttempt.attempt)
        )
        return [_attempt_view(a) for a in rows]

    def unknown_attempts(self, session: Session, *, limit: int = 100) -> list[AttemptView]:
        """Attempts whose outcome nobody knows (the worker died mid-send): the duplicate window.

        Each may have reached the provider; its message was retried. Reconcile against the
        provider's message log (same recipient, around ``started_at``).
        """
        rows = session.scalars(
            select(OutboxAttempt)
            .where(OutboxAttempt.result == "unknown")
            .order_by(OutboxAttempt.id.desc())
            .limit(limit)
        )
        return [_attempt_view(a) for a in rows]


def _attempt_view(a: OutboxAttempt) -> AttemptView:
    return AttemptView(
        outbox_id=a.outbox_id,
        attempt=a.attempt,
        worker=a.worker,
        started_at=a.started_at,
        finished_at=a.finished_at,
        result=a.result,
        error_code=a.error_code,
        provider_id=a.provider_id,
    )


def advance(
    conn: Any,
    outbox_id: int,
    status: str,
    *,
    now: datetime,
    provider: str | None = None,
    provider_id: str | None = None,
    error_code: str | None = None,
    error: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Move a message to ``status`` if that is forward; one conditional UPDATE, no read.

    The provider and its id are filled in when the row has none yet (a callback may arrive
    before the worker that sent the message has committed). Sealed params are erased, and a
    terminal status stamps ``finished_at``.
    """
    new_rank = STATUS_RANK[status]
    values: dict[str, Any] = {
        "status": status,
        "status_rank": new_rank,
        "updated_at": now,
        "sealed": None,
        "lease_until": None,
    }
    if provider is not None:
        values["provider"] = func.coalesce(outbox_t.c.provider, provider)
    if provider_id is not None:
        values["provider_id"] = func.coalesce(outbox_t.c.provider_id, provider_id[:64])
    if error_code is not None:
        values["last_error_code"] = error_code[:32]
    if error is not None:
        values["last_error"] = error[:200]
    if status in TERMINAL:
        values["finished_at"] = func.coalesce(outbox_t.c.finished_at, now)
    values.update(extra or {})
    result = conn.execute(
        update(outbox_t)
        .where(outbox_t.c.id == outbox_id, outbox_t.c.status_rank < new_rank)
        .values(**values)
        .returning(outbox_t.c.id)
    )
    return result.first() is not None
