"""The outbox dispatcher: claim due messages, pace them, send them, record what happened.

One :class:`Dispatcher` per worker process (``callcenter worker``); run any number of them on
any number of machines against the same database. Each round:

1. **Claim** (one short write transaction): rows whose lease ran out (their worker died)
   and due pending rows, oldest first (PostgreSQL ``FOR UPDATE SKIP LOCKED``, so workers
   never wait for each other's rows; SQLite serialises the transaction). In the same
   transaction each row is checked against opt-outs and quiet hours, its SMS text is
   rendered (sealed params opened in memory only) and counted in segments, and a sending
   moment is reserved in the shared rate limit (:mod:`.ratelimit`). Claimed rows get a lease
   that outlasts their reserved moment by ``messaging.lease_s``.
2. **Send**, message by message at the reserved moments, up to
   ``messaging.<channel>.concurrency`` requests at once (a provider's REST answer takes
   longer than the gap between two moments at full rate; one request at a time would leave
   most of the rate unused). Just before each one a short transaction checks the row is
   still ours, re-checks the opt-out list (an opt-out takes effect within a second) and
   quiet hours, counts the attempt and writes an ``outbox_attempts`` row, and commits, then
   the sender is called.
3. **Record** the result in a second transaction: the provider id and first status, or the
   error: permanent errors fail the message at once; transient ones are retried after an
   exponential backoff with full jitter (``backoff_base_s * 2**(n-1)`` capped at
   ``backoff_max_s``, a random delay up to that; a ``Retry-After`` is honoured) until
   ``max_attempts``, then the message fails with its last error for an operator to see.

Quiet hours (``messaging.quiet_start`` to ``quiet_end``, in the recipient's time zone: the
one zone of the number's region when it has a single one, else ``instance.timezone``; see
:mod:`.quiet_hours`) hold
non-urgent messages until they end. Urgent messages and messages written during a live call
(``call_id`` set: the caller asked for them a moment ago) are sent at once.

Frequency cap: at most ``messaging.max_non_essential_per_day`` non-essential, non-urgent
messages (reminders, results-ready notices, article SMS; calls too) go to one number in any
rolling 24 hours. Counted are such rows to that number handed to the provider (``sent_at``)
in the last 24 hours, rows another worker holds under a live lease, and rows claimed earlier
in the same batch. A message over the cap stays pending until the oldest counted one leaves
the window (its ``not_before`` moves there). The dispatcher always defers, never drops: it
cannot know when a message stops being useful, so the job that wrote it withdraws it
(:meth:`.outbox.Outbox.cancel`, e.g. a reminder whose visit has started or was cancelled).
Essential and urgent messages are neither capped nor counted. The check runs at claim time
only, so two workers claiming for the same number at the same instant may each let one
through (the cap can be exceeded by at most one message per concurrently claiming worker).

A message that asks for a reply (``reply_handler``) is withdrawn (``cancelled``,
:data:`EXPIRED_REPLY_WINDOW`) instead of sent once its reply window (``reply_until``) has
closed: a reminder of a visit that started while every worker was down.

A message held back keeps its reason in ``last_error`` while it waits
(:data:`DEFERRED_QUIET`, :data:`DEFERRED_CAP`); acceptance by the provider clears it.

A worker killed at any point loses nothing: what it had claimed comes back when the lease
ends. The one window where a message may go out twice is described in :mod:`.outbox`.
SIGTERM (:meth:`Dispatcher.stop`) lets the message being sent finish, hands the rest of the
batch back at once, and stops.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, case, func, insert, or_, select, true, update

from ..clock import Clock, SystemClock
from ..db.models import SmsOptOut
from ..db.sql import insert_ignore
from ..logs import mask_text
from ..phone import mask
from . import segments
from .outbox import (
    CANCELLED,
    CLAIMED,
    DEFERRED_CAP,
    DEFERRED_QUIET,
    FAILED,
    PENDING,
    STATUS_RANK,
    SUPPRESSED,
    Outbox,
    advance,
    attempts_t,
    outbox_t,
    status_t,
)
from .ports import OutgoingCall, OutgoingSms, Sender, SendError, SendResult
from .quiet_hours import quiet_until, recipient_zone
from .ratelimit import Entry, RateLimiter
from .sealing import SealingError
from .templates import TemplateError, Templates

log = logging.getLogger(__name__)

#: How long before its moment a message's last checks (opt-out, quiet hours) start, at least;
#: more when this worker's recent pre-send transactions took longer (a busy machine), so that
#: they are done by the moment (a message late for its moment gives it back: a lost slot).
PRE_SEND_S = 0.05
#: ... and at most.
MAX_PRE_SEND_S = 0.5
#: Messages falling due this close together are claimed in one round.
COALESCE_S = 0.05
#: A worker this late for its moment gives the moment back and reserves another.
MAX_RESCHEDULES = 5
_INITIAL_STEP_S = 0.01
#: The rolling window of the frequency cap.
CAP_WINDOW = timedelta(hours=24)
#: Statuses of rows handed to the provider (all ranked at or above ``accepted``).
_HANDED = tuple(sorted(s for s, r in STATUS_RANK.items() if r >= STATUS_RANK["accepted"]))
#: How far before ``sent_at`` a handed row's ``not_before`` (its last lease end, set at
#: claim time to the reserved moment plus ``lease_s``) can lie: bounds the index range.
_NOT_BEFORE_SLACK = timedelta(hours=1)


def _ewma(old: float, sample: float) -> float:
    return 0.7 * old + 0.3 * max(0.0, sample)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter.

    A uniformly random delay between 0 and ``min(max_s, base_s * 2**(attempt - 1))``, so
    workers retrying after a shared outage spread out instead of arriving together.
    """
    ceiling = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return rng.uniform(0.0, ceiling)


#: ``last_error`` of a message withdrawn because the answer it asks for is no longer taken.
EXPIRED_REPLY_WINDOW = "expired: reply window closed before sending"


def _before(moment: datetime | None, now: datetime) -> bool:
    """Whether ``moment`` (naive UTC from SQLite) is set and at or before ``now``."""
    if moment is None:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment <= now


def _capped(row: Row[Any]) -> bool:
    """Whether the frequency cap applies to (and counts) this outbox row."""
    return not row.essential and not row.urgent


@dataclass
class _Job:
    """A claimed message on its way out."""

    id: int
    token: str
    channel: str
    to_e164: str
    key: str
    units: int
    at: float
    body: str | None
    essential: bool
    exempt_quiet: bool
    reply: bool
    attempt: int = 0


class Dispatcher:
    """A worker that sends due outbox messages through ``sender``.

    ``clock`` tells the time for everything (due times, quiet hours, backoff, the rate
    schedule); ``sleep`` waits (default: a real, interruptible wait; tests pass a fake
    clock's ``advance``). ``worker_id`` names this worker in ``claimed_by`` and attempts.
    ``concurrency`` (per channel; default ``messaging.<channel>.concurrency``) bounds the
    messages in flight at once; a dispatcher given ``sleep`` sends one at a time, since one
    fake clock cannot be advanced by several threads.
    """

    def __init__(
        self,
        outbox: Outbox,
        sender: Sender,
        templates: Templates,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        sleep: Callable[[float], object] | None = None,
        rng: random.Random | None = None,
        batch_size: int | None = None,
        channels: Collection[str] | None = None,
        concurrency: Mapping[str, int] | None = None,
    ) -> None:
        self.outbox = outbox
        #: the channels this dispatcher claims (``None``: every channel). A worker runs one
        #: dispatcher per channel so that waiting for a call's moment (10 calls a second)
        #: never holds up SMS due at 100 a second.
        self.channels = tuple(sorted(channels)) if channels else None
        self.db = outbox.db
        self.sender = sender
        self.templates = templates
        self.settings = outbox.settings
        self.clock = clock or SystemClock()
        self.worker_id = (worker_id or f"worker-{uuid.uuid4().hex[:8]}")[:64]
        self._sleep = sleep
        self.rng = rng or random.Random()
        m = self.settings.messaging
        self.batch_size = batch_size or m.batch_size
        guard = m.rate_guard_ms / 1000
        self.guard_s = guard
        self.limiters = {
            "sms": RateLimiter(m.sms.per_second, guard),
            "call": RateLimiter(m.calls.per_second, guard),
        }
        self.keys = {"sms": f"{sender.name}:sms", "call": f"{sender.name}:call"}
        if concurrency is None:
            concurrency = {"sms": m.sms.concurrency, "call": m.calls.concurrency}
            if sleep is not None:
                concurrency = {"sms": 1, "call": 1}
        #: messages in flight at once, per channel
        self.concurrency = {c: max(1, int(concurrency.get(c, 1))) for c in ("sms", "call")}
        self._slots = {c: threading.BoundedSemaphore(n) for c, n in self.concurrency.items()}
        self._pool: ThreadPoolExecutor | None = None
        self.base_url = self.settings.web.public_base_url.rstrip("/")
        self.fallback_zone = self.settings.instance.timezone
        self._stop = threading.Event()
        # Moving averages of how long this worker's steps take, so that the moments it
        # reserves are moments it can keep: committing a claim, the pre-send transaction,
        # and calling the provider plus recording the result.
        self._commit_s = _INITIAL_STEP_S
        self._begin_s = _INITIAL_STEP_S
        self._work_s = _INITIAL_STEP_S
        #: when the next message falls due (learnt when a claim finds nothing to do)
        self._next_due: datetime | None = None

    # ------------------------------------------------------------------ running

    def stop(self) -> None:
        """Finish the message being sent, hand the rest back, stop (safe from a signal)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def run(self) -> None:
        """Send until stopped, polling every ``messaging.poll_interval_s`` when idle."""
        m = self.settings.messaging
        log.info("dispatcher %s started (sender %s)", self.worker_id, self.sender.name)
        while not self._stop.is_set():
            try:
                handled = self.run_once()
            except Exception:
                log.exception("dispatcher %s: round failed; trying again", self.worker_id)
                handled = 0
            if handled == 0:
                self._wait(self._idle_wait(m.poll_interval_s), interruptible=True)
        self.close()
        log.info("dispatcher %s stopped", self.worker_id)

    def close(self) -> None:
        """Let messages in flight finish and free the sending threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _idle_wait(self, poll_s: float) -> float:
        """How long to sleep with nothing to do: until the next message falls due (messages
        due within :data:`COALESCE_S` of each other are claimed together), at most ``poll_s``
        (for messages other processes write meanwhile), with jitter so idle workers spread.
        """
        wait = poll_s
        if self._next_due is not None:
            until = (self._next_due - self._now()).total_seconds() + COALESCE_S
            wait = min(wait, max(COALESCE_S, until))
        return wait * self.rng.uniform(0.8, 1.2)

    def drain(self, max_rounds: int = 1_000_000) -> int:
        """Send everything due now, then return how many messages were handled."""
        total = 0
        for _ in range(max_rounds):
            handled = self.run_once()
            total += handled
            if handled == 0 or self._stop.is_set():
                break
        return total

    def run_once(self) -> int:
        """Claim one batch and send it; the number of messages claimed or settled.

        Each message is handed to a sending thread just before its moment (at most the
        channel's ``concurrency`` in flight); the round ends when all of them are settled.
        """
        jobs, settled = self._claim()
        jobs.sort(key=lambda j: j.at)
        in_flight: list[Future[None]] = []
        for index, job in enumerate(jobs):
            if not self._wait_until(job.at - self._pre_send_s(), interruptible=True):
                self._release(jobs[index:])
                break
            if self.concurrency.get(job.channel, 1) == 1:
                self._send_logged(job)
                continue
            slots = self._slots[job.channel]
            slots.acquire()
            try:
                in_flight.append(self._threads().submit(self._send_in_slot, job, slots))
            except BaseException:
                slots.release()
                raise
        for future in in_flight:
            future.result()
        return len(jobs) + settled

    def _pre_send_s(self) -> float:
        """When to start a message's last checks: three times what they took lately."""
        return min(MAX_PRE_SEND_S, max(PRE_SEND_S, 3 * self._begin_s + 0.01))

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=sum(self.concurrency.values()),
                thread_name_prefix=f"send-{self.worker_id}",
            )
        return self._pool

    def _send_in_slot(self, job: _Job, slots: threading.BoundedSemaphore) -> None:
        try:
            self._send_logged(job)
        finally:
            slots.release()

    def _send_logged(self, job: _Job) -> None:
        try:
            self._send(job)
        except Exception:
            # Most likely the database went away. The message stays claimed and comes back
            # when its lease ends; if it had already been accepted, that is the duplicate
            # window described in the outbox module.
            log.exception("outbox %s: could not send or record; left for the lease", job.id)

    # ------------------------------------------------------------------ time

    def _now(self) -> datetime:
        return self.clock.now()

    def _wait(self, seconds: float, *, interruptible: bool) -> None:
        if seconds <= 0:
            return
        if self._sleep is not None:
            self._sleep(seconds)
        elif interruptible:
            self._stop.wait(seconds)
        else:
            time.sleep(seconds)

    def _wait_until(self, moment: float, *, interruptible: bool) -> bool:
        """Sleep until ``moment`` (Unix seconds); ``False`` if stopped first."""
        while True:
            if interruptible and self._stop.is_set():
                return False
            remaining = moment - self._now().timestamp()
            if remaining <= 0:
                return True
            # at least a microsecond: clocks count in microseconds, floats below that
            self._wait(max(remaining, 1e-6), interruptible=interruptible)

    # ------------------------------------------------------------------ claim

    def _locked(self, conn: Connection, query: Any) -> Any:
        if conn.dialect.name == "postgresql":
            return query.with_for_update(skip_locked=True)
        return query

    def _claim(self) -> tuple[list[_Job], int]:
        m = self.settings.messaging
        now = self._now()
        cols = (
            outbox_t.c.id,
            outbox_t.c.channel,
            outbox_t.c.to_e164,
            outbox_t.c.template,
            outbox_t.c.language,
            outbox_t.c.params,
            outbox_t.c.sealed,
            outbox_t.c.essential,
            outbox_t.c.urgent,
            outbox_t.c.call_id,
            outbox_t.c.attempts,
            outbox_t.c.reply_handler,
            outbox_t.c.reply_until,
        )
        jobs: list[_Job] = []
        settled = 0
        mine = outbox_t.c.channel.in_(self.channels) if self.channels else true()
        with self.db.connection() as conn:
            expired = conn.execute(
                self._locked(
                    conn,
                    select(*cols)
                    .where(outbox_t.c.status == CLAIMED, outbox_t.c.not_before <= now, mine)
                    .order_by(outbox_t.c.not_before)
                    .limit(self.batch_size),
                )
            ).all()
            for row in expired:
                closed = conn.execute(
                    update(attempts_t)
                    .where(attempts_t.c.outbox_id == row.id, attempts_t.c.finished_at.is_(None))
                    .values(finished_at=now, result="unknown")
                    .returning(attempts_t.c.attempt)
                ).all()
                log.warning(
                    "outbox %s: lease ran out; %s, sending again",
                    row.id,
                    f"attempt {closed[0][0]} outcome unknown" if closed else "no attempt started",
                )
            self._fill_not_before(conn)
            room = self.batch_size - len(expired)
            pending: list[Row[Any]] = []
            if room > 0:
                pending = list(
                    conn.execute(
                        self._locked(
                            conn,
                            select(*cols)
                            .where(outbox_t.c.status == PENDING, outbox_t.c.not_before <= now, mine)
                            .order_by(outbox_t.c.not_before, outbox_t.c.id)
                            .limit(room),
                        )
                    ).all()
                )
            candidates = [*expired, *pending]
            if not candidates:
                self._next_due = conn.execute(
                    select(func.min(outbox_t.c.not_before)).where(
                        outbox_t.c.status.in_((PENDING, CLAIMED)), mine
                    )
                ).scalar()
                return [], 0
            opted = self._opted_out(
                conn,
                {r.to_e164 for r in candidates if r.channel == "sms" and not r.essential},
            )
            usage = self._cap_usage(
                conn,
                {r.to_e164 for r in candidates if _capped(r)},
                now,
                exclude={int(r.id) for r in candidates},
            )
            ready: list[_Job] = []
            for row in candidates:
                outcome = self._prepare(conn, row, now, opted, usage)
                if outcome is None:
                    settled += 1
                else:
                    ready.append(outcome)
            if ready:
                self._reserve(conn, ready, now)
            reserved = time.monotonic()
            lease = timedelta(seconds=m.lease_s)
            for job in ready:
                until = datetime.fromtimestamp(job.at, UTC) + lease
                conn.execute(
                    update(outbox_t)
                    .where(outbox_t.c.id == job.id)
                    .values(
                        status=CLAIMED,
                        claimed_by=self.worker_id,
                        claim_token=job.token,
                        not_before=until,
                        lease_until=until,
                        segments=job.units if job.channel == "sms" else None,
                        updated_at=now,
                    )
                )
            jobs = ready
        if jobs:
            self._commit_s = _ewma(self._commit_s, time.monotonic() - reserved)
        return jobs, settled

    def _fill_not_before(self, conn: Connection) -> None:
        """Rows written without ``not_before`` (plain inserts) become eligible at ``due_at``."""
        missing = select(outbox_t.c.id).where(
            outbox_t.c.status == PENDING, outbox_t.c.not_before.is_(None)
        )
        if conn.dialect.name == "postgresql":
            missing = missing.limit(1000).with_for_update(skip_locked=True)
        conn.execute(
            update(outbox_t)
            .where(outbox_t.c.id.in_(missing.scalar_subquery()))
            .values(not_before=outbox_t.c.due_at)
        )

    def _opted_out(self, conn: Connection, numbers: set[str]) -> set[str]:
        if not numbers:
            return set()
        table = SmsOptOut.__table__
        rows = conn.execute(
            select(table.c.phone_e164).where(table.c.phone_e164.in_(sorted(numbers)))
        )
        return {str(r[0]) for r in rows}

    def _cap_usage(
        self, conn: Connection, numbers: set[str], now: datetime, *, exclude: set[int]
    ) -> dict[str, list[datetime]]:
        """When each number's counted non-essential messages went out (one query per batch).

        Handed rows count at ``sent_at``; rows under another worker's live lease count as
        going out now. ``exclude`` (this batch's candidates) is never counted. The query reads
        the ``(status, not_before)`` index: a handed row's ``not_before`` is its last lease
        end, within :data:`_NOT_BEFORE_SLACK` of its ``sent_at``.
        """
        usage: dict[str, list[datetime]] = {n: [] for n in numbers}
        if not numbers:
            return usage
        start = now - CAP_WINDOW
        handed = and_(
            outbox_t.c.status.in_(_HANDED),
            outbox_t.c.not_before > start - _NOT_BEFORE_SLACK,
            outbox_t.c.sent_at > start,
        )
        in_flight = and_(outbox_t.c.status == CLAIMED, outbox_t.c.not_before > now)
        rows = conn.execute(
            select(outbox_t.c.id, outbox_t.c.to_e164, outbox_t.c.sent_at).where(
                or_(handed, in_flight),
                outbox_t.c.to_e164.in_(sorted(numbers)),
                outbox_t.c.essential.is_(False),
                outbox_t.c.urgent.is_(False),
            )
        )
        for r in rows:
            if int(r.id) in exclude:
                continue
            sent = r.sent_at if r.sent_at is not None else now
            if sent.tzinfo is None:  # SQLite returns naive UTC
                sent = sent.replace(tzinfo=UTC)
            usage[str(r.to_e164)].append(sent)
        return usage

    def _cap_until(self, times: list[datetime], now: datetime) -> datetime | None:
        """When a number at or over the cap may get its next message; ``None`` if under it."""
        cap = self.settings.messaging.max_non_essential_per_day
        recent = sorted(t for t in times if t > now - CAP_WINDOW)
        if len(recent) < cap:
            return None
        return recent[len(recent) - cap] + CAP_WINDOW

    def _prepare(
        self,
        conn: Connection,
        row: Row[Any],
        now: datetime,
        opted: set[str],
        usage: dict[str, list[datetime]] | None = None,
    ) -> _Job | None:
        """Check, render and size one candidate; ``None`` when it was settled instead.

        ``usage`` (from :meth:`_cap_usage`) gains an entry for each capped message claimed.
        """
        m = self.settings.messaging
        if row.attempts >= m.max_attempts:
            advance(
                conn,
                row.id,
                FAILED,
                now=now,
                error_code="unknown",
                error=f"gave up after {row.attempts} attempts; the last one's outcome is unknown",
            )
            log.warning("outbox %s failed: attempts used up", row.id)
            return None
        if row.reply_handler is not None and _before(row.reply_until, now):
            # It asks for an answer nobody may give any more (a reminder whose visit has
            # started, held back while every worker was down): too late to be of use.
            advance(
                conn,
                row.id,
                CANCELLED,
                now=now,
                error_code="expired",
                error=EXPIRED_REPLY_WINDOW,
            )
            log.info("outbox %s withdrawn: its reply window closed before it went out", row.id)
            return None
        if row.channel == "sms" and not row.essential and row.to_e164 in opted:
            self._suppress(conn, row.id, now)
            return None
        exempt = bool(row.urgent or row.call_id is not None)
        if not exempt and self._defer_for_quiet(conn, row.id, row.to_e164, now, token=None):
            return None
        capped = usage is not None and _capped(row)
        if usage is not None and capped:
            until = self._cap_until(usage.get(row.to_e164, []), now)
            if until is not None:
                self._defer(conn, row.id, until, now, token=None, reason=DEFERRED_CAP)
                log.info(
                    "outbox %s to %s waits for the frequency cap (%s)",
                    row.id,
                    mask(row.to_e164),
                    until.isoformat(),
                )
                return None
        body: str | None = None
        units = 1
        if row.channel == "sms":
            try:
                params = dict(row.params or {})
                if row.sealed:
                    params.update(self.outbox.sealer.open(row.sealed))
                body = self.templates.render(row.template, row.language, params)
            except (TemplateError, SealingError) as exc:
                advance(conn, row.id, FAILED, now=now, error_code="template", error=str(exc))
                log.error("outbox %s failed permanently: %s", row.id, exc)
                return None
            units = segments.count(body)
        if usage is not None and capped:
            usage.setdefault(row.to_e164, []).append(now)
        return _Job(
            id=row.id,
            token=uuid.uuid4().hex,
            channel=row.channel,
            to_e164=row.to_e164,
            key=self.keys.get(row.channel, f"{self.sender.name}:{row.channel}"),
            units=units,
            at=0.0,
            body=body,
            essential=bool(row.essential),
            exempt_quiet=exempt,
            reply=row.reply_handler is not None,
        )

    def _reserve(self, conn: Connection, jobs: list[_Job], now: datetime) -> None:
        """Reserve a moment for each job; this worker's own pace spaces its jobs."""
        schedules: dict[str, list[Entry]] = {}
        for job in jobs:
            limiter = self.limiters.get(job.channel, self.limiters["sms"])
            if job.key not in schedules:
                schedules[job.key] = limiter.load(conn, job.key, now)
        # The first message can go once the claim is committed and its last checks are done;
        # the next ones as fast as this worker gets through messages.
        start = self._now().timestamp() + self._commit_s + self._begin_s + 0.002
        previous: float | None = None
        for job in jobs:
            limiter = self.limiters.get(job.channel, self.limiters["sms"])
            entries = schedules[job.key]
            pace = (self._begin_s + self._work_s) / self.concurrency.get(job.channel, 1)
            not_before = start if previous is None else max(start, previous + pace)
            job.at = limiter.place(entries, not_before, job.units)
            previous = job.at
        for key, entries in schedules.items():
            channel = "call" if key == self.keys["call"] else "sms"
            self.limiters[channel].save(conn, key, entries, now)

    # ------------------------------------------------------------------ send

    def _suppress(self, conn: Connection, outbox_id: int, now: datetime) -> None:
        advance(
            conn,
            outbox_id,
            SUPPRESSED,
            now=now,
            error_code="opted-out",
            error="recipient opted out of SMS",
        )
        log.info("outbox %s suppressed: recipient opted out", outbox_id)

    def _defer_for_quiet(
        self, conn: Connection, outbox_id: int, to_e164: str, now: datetime, token: str | None
    ) -> bool:
        m = self.settings.messaging
        zone = recipient_zone(to_e164, self.fallback_zone)
        until = quiet_until(now, zone, m.quiet_start, m.quiet_end)
        if until is None:
            return False
        self._defer(conn, outbox_id, until, now, token=token, reason=DEFERRED_QUIET)
        log.info("outbox %s waits for the end of quiet hours (%s)", outbox_id, until.isoformat())
        return True

    def _defer(
        self,
        conn: Connection,
        outbox_id: int,
        until: datetime,
        now: datetime,
        *,
        token: str | None,
        reason: str,
    ) -> None:
        """Put a message back to pending until ``until``, ``reason`` in ``last_error``."""
        stmt = update(outbox_t).where(outbox_t.c.id == outbox_id)
        if token is not None:
            stmt = stmt.where(outbox_t.c.claim_token == token)
        conn.execute(
            stmt.values(
                status=PENDING,
                not_before=until,
                lease_until=None,
                claim_token=None,
                last_error=reason,
                updated_at=now,
            )
        )

    def _begin(self, job: _Job) -> bool:
        """The last checks and the attempt row, committed before the provider is called."""
        now = self._now()
        with self.db.connection() as conn:
            query = select(outbox_t.c.status, outbox_t.c.claim_token, outbox_t.c.attempts).where(
                outbox_t.c.id == job.id
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None or row.status != CLAIMED or row.claim_token != job.token:
                log.info("outbox %s is no longer ours (%s)", job.id, row.status if row else "gone")
                return False
            if job.channel == "sms" and not job.essential and self._opted_out(conn, {job.to_e164}):
                self._suppress(conn, job.id, now)
                return False
            if not job.exempt_quiet and self._defer_for_quiet(
                conn, job.id, job.to_e164, now, token=job.token
            ):
                return False
            job.attempt = int(row.attempts) + 1
            conn.execute(
                update(outbox_t)
                .where(outbox_t.c.id == job.id)
                .values(attempts=job.attempt, updated_at=now)
            )
            conn.execute(
                insert(attempts_t).values(
                    outbox_id=job.id,
                    attempt=job.attempt,
                    worker=self.worker_id,
                    started_at=now,
                )
            )
        return True

    def _send(self, job: _Job) -> None:
        began = time.monotonic()
        if not self._begin(job):
            return
        self._begin_s = _ewma(self._begin_s, time.monotonic() - began)
        self._wait_until(job.at, interruptible=False)
        for _ in range(MAX_RESCHEDULES):
            late = self._now().timestamp() - job.at
            if late <= self.guard_s:
                break
            self._reschedule(job)
            self._wait_until(job.at, interruptible=False)
        working = time.monotonic()
        try:
            result = self._deliver(job)
        except SendError as exc:
            self._failed(job, exc)
        except Exception as exc:  # an adapter bug or an unexpected library error
            detail = mask_text(f"{type(exc).__name__}: {exc}")
            log.error(
                "outbox %s: sender raised %s",
                job.id,
                detail,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            self._failed(job, SendError(detail, code="error"))
        else:
            self._accepted(job, result)
        self._work_s = _ewma(self._work_s, time.monotonic() - working)

    def _deliver(self, job: _Job) -> SendResult:
        if job.channel == "call":
            return self.sender.place_call(
                OutgoingCall(
                    outbox_id=job.id,
                    to_e164=job.to_e164,
                    answer_url=f"{self.base_url}/twilio/voice/outbound?o={job.id}",
                    status_callback=(
                        f"{self.base_url}/twilio/voice/status?o={job.id}"
                        if self.settings.messaging.status_callbacks
                        else None
                    ),
                )
            )
        return self.sender.send_sms(
            OutgoingSms(
                outbox_id=job.id,
                to_e164=job.to_e164,
                body=job.body or "",
                segments=job.units,
                status_callback=(
                    f"{self.base_url}/twilio/sms/status?o={job.id}"
                    if self.settings.messaging.status_callbacks
                    else None
                ),
            )
        )

    def _reschedule(self, job: _Job) -> None:
        """Woke up too late for the reserved moment: give it back and take a new one."""
        now = self._now()
        limiter = self.limiters.get(job.channel, self.limiters["sms"])
        with self.db.connection() as conn:
            old = job.at
            job.at = limiter.reschedule(
                conn, job.key, old, job.units, now.timestamp() + self.guard_s / 2, now
            )
            until = datetime.fromtimestamp(job.at, UTC) + timedelta(
                seconds=self.settings.messaging.lease_s
            )
            conn.execute(
                update(outbox_t)
                .where(outbox_t.c.id == job.id, outbox_t.c.claim_token == job.token)
                .values(not_before=until, lease_until=until)
            )
        log.debug("outbox %s: late by %.3f s, moved to a new moment", job.id, now.timestamp() - old)

    # ------------------------------------------------------------------ record

    def _accepted(self, job: _Job, result: SendResult) -> None:
        now = self._now()
        status = result.status if STATUS_RANK.get(result.status, 0) >= 10 else "queued"
        window = timedelta(hours=self.settings.messaging.reply_window_hours)
        with self.db.connection() as conn:
            conn.execute(
                update(attempts_t)
                .where(attempts_t.c.outbox_id == job.id, attempts_t.c.attempt == job.attempt)
                .values(finished_at=now, result="accepted", provider_id=result.provider_id[:64])
            )
            extra: dict[str, Any] = {
                "sent_at": now,
                "claim_token": None,
                "last_error": None,
                "last_error_code": None,
            }
            if job.reply:
                extra["reply_until"] = case(
                    (outbox_t.c.reply_handler.is_not(None), now + window), else_=None
                )
            moved = advance(
                conn,
                job.id,
                status,
                now=now,
                provider=result.provider,
                provider_id=result.provider_id,
                extra=extra,
            )
            if not moved:
                # A status callback got here first: keep its status, add what only we know.
                conn.execute(
                    update(outbox_t)
                    .where(outbox_t.c.id == job.id)
                    .values(
                        provider=func.coalesce(outbox_t.c.provider, result.provider),
                        provider_id=func.coalesce(outbox_t.c.provider_id, result.provider_id),
                        sent_at=func.coalesce(outbox_t.c.sent_at, now),
                        claim_token=None,
                        sealed=None,
                    )
                )
            conn.execute(
                insert_ignore(conn, status_t).values(
                    provider=result.provider,
                    kind=job.channel,
                    provider_id=result.provider_id[:64],
                    status=status,
                    detail={"outbox_id": job.id, "attempt": job.attempt},
                    at=now,
                )
            )
        log.info(
            "outbox %s: %s to %s accepted as %s (%s%s)",
            job.id,
            job.channel,
            mask(job.to_e164),
            result.provider_id,
            status,
            f", {job.units} segments" if job.channel == "sms" else "",
        )

    def _failed(self, job: _Job, error: SendError) -> None:
        m = self.settings.messaging
        now = self._now()
        outcome = "permanent" if error.permanent else "transient"
        reason = mask_text(str(error))[:200]
        with self.db.connection() as conn:
            conn.execute(
                update(attempts_t)
                .where(attempts_t.c.outbox_id == job.id, attempts_t.c.attempt == job.attempt)
                .values(finished_at=now, result=outcome, error_code=(error.code or "")[:32])
            )
            query = select(outbox_t.c.status, outbox_t.c.claim_token).where(outbox_t.c.id == job.id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None or row.status != CLAIMED or row.claim_token != job.token:
                return  # reclaimed meanwhile: the worker holding it now decides
            if error.permanent or job.attempt >= m.max_attempts:
                why = reason if error.permanent else f"{reason} (after {job.attempt} attempts)"
                advance(conn, job.id, FAILED, now=now, error_code=error.code, error=why)
                log.warning("outbox %s failed: %s", job.id, why)
                return
            delay = backoff_delay(job.attempt, m.backoff_base_s, m.backoff_max_s, self.rng)
            if error.retry_after_s is not None:
                delay = max(delay, error.retry_after_s)
            conn.execute(
                update(outbox_t)
                .where(outbox_t.c.id == job.id)
                .values(
                    status=PENDING,
                    not_before=now + timedelta(seconds=delay),
                    lease_until=None,
                    claim_token=None,
                    last_error_code=error.code[:32] if error.code else None,
                    last_error=reason,
                    updated_at=now,
                )
            )
        log.info(
            "outbox %s: attempt %s failed (%s), retry in %.1f s",
            job.id,
            job.attempt,
            reason,
            delay,
        )

    def _release(self, jobs: list[_Job]) -> None:
        """Hand claimed messages back (stopping): due again at once, moments given back."""
        if not jobs:
            return
        now = self._now()
        with self.db.connection() as conn:
            for job in jobs:
                conn.execute(
                    update(outbox_t)
                    .where(
                        outbox_t.c.id == job.id,
                        outbox_t.c.status == CLAIMED,
                        outbox_t.c.claim_token == job.token,
                    )
                    .values(
                        status=PENDING,
                        not_before=now,
                        lease_until=None,
                        claim_token=None,
                        updated_at=now,
                    )
                )
            by_key: dict[str, list[tuple[float, int]]] = {}
            for job in jobs:
                by_key.setdefault(job.key, []).append((job.at, job.units))
            for key, reserved in by_key.items():
                channel = "call" if key == self.keys["call"] else "sms"
                self.limiters[channel].release(conn, key, reserved, now)
        log.info("dispatcher %s handed back %d messages", self.worker_id, len(jobs))
