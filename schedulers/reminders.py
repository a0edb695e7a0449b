"""Appointment reminders: the job that writes them into the outbox, and the answers to them.

:func:`fill_reminders` is the scheduler's job. It sends nothing: for every active booking it
works out each configured reminder moment (``reminders.offsets``: the evening before at 18:00
local and 2 hours before, by default) and, once a moment has come, inserts one outbox row with
the dedupe key ``reminder:<visit number>:<offset name>``. The key makes the job idempotent, so
any number of scheduler processes (or threads, or a rerun) write exactly one row per reminder.

When a reminder goes out, or why it does not:

* **quiet hours** (``messaging.quiet_start``-``quiet_end``, recipient-local; reminders are not
  urgent): a moment inside them moves to the end of quiet hours, the time the dispatcher
  would hold the message until anyway. If that leaves less than ``min_lead_minutes`` before
  the visit, the reminder is skipped (``quiet_hours``): the 2-hours-before reminder of an
  08:00 visit (06:00) is dropped, since the evening-before one covered it; that of a 09:30
  visit goes out at 08:00.
* **booked after the moment** (booked at 19:00 for tomorrow): that reminder is skipped
  (``booked_after``); the booking's own confirmation SMS was just sent. Later reminders of the
  booking still go out.
* **downtime catch-up**: a moment that passed while every scheduler was down is caught up on
  the next run, unless the visit has started (the booking is no longer looked at) or the
  moment is more than ``lateness_limit_minutes`` old (skipped, ``late``).
* cancelled (or attended / no-show) bookings get nothing; a reminder still waiting in the
  outbox (not yet handed to the provider) when its booking stops being active is withdrawn by
  the next run.

A skipped reminder is recorded once, as an outbox row with status ``cancelled`` and
``last_error`` ``skipped: <reason>`` under the same dedupe key, and logged once with its
reason by whichever process recorded it; later runs see the key and pass by.

A patient whose reminder preference is ``voice`` (:mod:`callcenter.recall.preferences`) gets
each reminder as an outbox call under the same key, running ``ivr_flows/reminder_call.yaml``
(1 confirms, 2 cancels under the booking rules; see ``docs/recall.md``).

A reminder asks "reply 1 to confirm, 2 to cancel" (``sms.booking_reminder``) while the booking
may still be cancelled, and only "reply 1 to confirm" (``sms.booking_reminder_late``) after the
cancellation deadline. Answers go to :func:`answer_reminder` (registered as
``reminder.answer`` by :func:`register_reply_handlers`) until ``reminders.reply_window_hours``
after the reminder, and never after the visit starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from callcenter.booking import rules
from callcenter.booking.models import Booking
from callcenter.booking.rules import BookingRefused
from callcenter.booking.service import BookingService
from callcenter.clock import Clock
from callcenter.config import ReminderOffset, Settings
from callcenter.db.engine import Database
from callcenter.db.models import AuditEntry, OutboxMessage
from callcenter.messaging.outbox import Outbox
from callcenter.messaging.quiet_hours import quiet_until, recipient_zone
from callcenter.messaging.replies import ASKED_STATUSES, ReplyHandler, ReplyHandlers
from callcenter.phone import mask
from callcenter.recall.preferences import reminder_call_params, reminder_channel

log = logging.getLogger(__name__)

outbox_t: Table = OutboxMessage.__table__  # type: ignore[assignment]

#: The reply handler name stored on reminder rows.
HANDLER = "reminder.answer"
KEY_PREFIX = "reminder:"

CONFIRMED_REPLY = (
    "【健康热线】已确认您的就诊，请按时就诊。\n"
    "Health Hotline: thank you, your visit is confirmed. Please arrive on time."
)
ALREADY_CANCELLED_REPLY = (
    "【健康热线】该预约已取消。如需重新预约请致电本热线。\n"
    "Health Hotline: this booking is already cancelled. Call the hotline to book again."
)
NOT_ACTIVE_REPLY = (
    "【健康热线】该预约已结束或已取消，如有疑问请致电本热线。\n"
    "Health Hotline: this booking is no longer active. Please call the hotline with questions."
)
CANCELLED_REPLY = (
    "【健康热线】已为您取消预约，稍后将收到取消短信。\n"
    "Health Hotline: your booking is cancelled; a confirmation text follows."
)
TOO_LATE_REPLY = (
    "【健康热线】抱歉，已过取消时限（就诊前一天{zh}），无法通过短信取消，预约仍然有效。"
    "如不能就诊，请致电本热线转人工服务。\n"
    "Health Hotline: sorry, bookings can only be cancelled until {en} the day before the visit, "
    "so your booking stands. If you cannot come, please call the hotline and ask for an agent."
)
CANNOT_CANCEL_REPLY = (
    "【健康热线】抱歉，暂时无法取消，预约仍然有效。请致电本热线转人工服务。\n"
    "Health Hotline: sorry, we could not cancel just now and your booking stands. "
    "Please call the hotline and ask for an agent."
)
HELP_REPLY = (
    "【健康热线】确认就诊请回复1，取消预约请回复2。\n"
    "Health Hotline: reply 1 to confirm your visit, or 2 to cancel it."
)


def reminder_key(visit_number: str, offset: str) -> str:
    """The outbox dedupe key of one reminder of one booking."""
    return f"{KEY_PREFIX}{visit_number}:{offset}"


def moment(offset: ReminderOffset, starts_at: datetime, visit_date: date, tz: tzinfo) -> datetime:
    """When ``offset`` reminds a visit (before quiet hours are applied)."""
    if offset.minutes_before is not None:
        return starts_at - timedelta(minutes=offset.minutes_before)
    assert offset.days_before is not None
    assert offset.at is not None
    day = visit_date - timedelta(days=offset.days_before)
    return datetime.combine(day, time.fromisoformat(offset.at), tzinfo=tz)


@dataclass(frozen=True)
class Plan:
    """What should become of one reminder of one booking at one run."""

    #: when it is meant to go out (after quiet hours), or ``None`` when it never will
    send_at: datetime | None
    #: why it is skipped (``quiet_hours``, ``booked_after``, ``late``), or ``None``
    skip: str | None = None


def plan(
    offset: ReminderOffset,
    booking: Booking,
    now: datetime,
    settings: Settings,
    tz: tzinfo,
) -> Plan | None:
    """The decision for one reminder at ``now``: ``None`` while its moment has not come."""
    raw = moment(offset, booking.starts_at, booking.visit_date, tz)
    m = settings.messaging
    zone = recipient_zone(booking.contact_phone, settings.instance.timezone)
    send_at = quiet_until(raw, zone, m.quiet_start, m.quiet_end) or raw
    if raw > now:
        return None
    r = settings.reminders
    if raw < booking.created_at:
        return Plan(None, "booked_after")
    if send_at > booking.starts_at - timedelta(minutes=r.min_lead_minutes):
        return Plan(None, "quiet_hours")
    if send_at > now:
        return None
    if now - send_at > timedelta(minutes=r.lateness_limit_minutes):
        return Plan(None, "late")
    return Plan(send_at)


@dataclass
class FillResult:
    """What one run of :func:`fill_reminders` did."""

    #: reminders written to the outbox
    queued: int = 0
    #: reminders recorded as skipped, by reason
    skipped: dict[str, int] = field(default_factory=dict)
    #: reminders another run (or process) had already written or skipped
    existing: int = 0
    #: bookings looked at
    bookings: int = 0
    #: waiting reminders withdrawn because their booking was cancelled meanwhile
    withdrawn: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counts, for logs and ``--once`` output."""
        return {
            "bookings": self.bookings,
            "queued": self.queued,
            "existing": self.existing,
            "withdrawn": self.withdrawn,
            "skipped": dict(sorted(self.skipped.items())),
        }


def _horizon(offsets: Sequence[ReminderOffset]) -> timedelta:
    """How far ahead a visit may be for one of its reminders to have come."""
    longest = timedelta(0)
    for o in offsets:
        ahead = (
            timedelta(minutes=o.minutes_before)
            if o.minutes_before is not None
            else timedelta(days=(o.days_before or 0) + 1)
        )
        longest = max(longest, ahead)
    return longest + timedelta(days=1)


def fill_reminders(
    db: Database,
    outbox: Outbox,
    booking: BookingService,
    clock: Clock,
    settings: Settings,
) -> FillResult:
    """Write every reminder whose moment has come into the outbox (see the module docstring).

    Safe to run any number of times, from any number of processes at once: each reminder is
    written (or recorded as skipped) once. Each booking with something to do gets its own short
    transaction.
    """
    result = FillResult()
    r = settings.reminders
    if not r.enabled or not r.offsets:
        return result
    now = clock.now()
    tz = booking.tz
    with db.transaction() as s:
        rows = list(
            s.scalars(
                select(Booking)
                .where(
                    Booking.status == "booked",
                    Booking.starts_at > now,
                    Booking.starts_at <= now + _horizon(r.offsets),
                )
                .order_by(Booking.id)
            )
        )
        s.expunge_all()
    result.bookings = len(rows)
    for b in rows:
        todo: list[tuple[ReminderOffset, Plan]] = []
        for offset in r.offsets:
            decision = plan(offset, b, now, settings, tz)
            if decision is not None:
                todo.append((offset, decision))
        if not todo:
            continue
        keys = [reminder_key(b.visit_number, o.name) for o, _ in todo]
        with db.transaction() as s:
            present = set(
                s.scalars(
                    select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(keys))
                )
            )
        todo = [(o, p) for o, p in todo if reminder_key(b.visit_number, o.name) not in present]
        result.existing += len(keys) - len(todo)
        if todo:
            _write(db, outbox, booking, b, todo, now, settings, result)
    result.withdrawn = _withdraw_stale(db, outbox, now)
    if result.queued or result.skipped or result.withdrawn:
        log.info("reminders: %s", result.as_dict())
    return result


def _withdraw_stale(db: Database, outbox: Outbox, now: datetime) -> int:
    """Withdraw reminders still waiting in the outbox whose booking is no longer active."""
    withdrawn = 0
    with db.transaction() as s:
        keys = list(
            s.scalars(
                select(OutboxMessage.dedupe_key)
                .join(
                    Booking,
                    OutboxMessage.reply_context["visit_number"].as_string() == Booking.visit_number,
                )
                .where(
                    OutboxMessage.dedupe_key.like(f"{KEY_PREFIX}%"),
                    OutboxMessage.status == "pending",
                    Booking.status != "booked",
                )
            )
        )
        for key in keys:
            if outbox.cancel(s, key, now=now):
                withdrawn += 1
                log.info("reminder %s withdrawn: booking no longer active", key.rsplit(":", 1)[-1])
    return withdrawn


def _write(
    db: Database,
    outbox: Outbox,
    service: BookingService,
    b: Booking,
    todo: Sequence[tuple[ReminderOffset, Plan]],
    now: datetime,
    settings: Settings,
    result: FillResult,
) -> None:
    """Write the reminders of one booking in one transaction."""
    language = "en" if b.language == "en" else "zh-CN"
    cfg = service.settings
    with db.transaction() as s:
        current = s.get(Booking, b.id)
        if current is None or current.status != "booked":
            return
        names = service.labels(s, b.hospital_id, b.department_id, b.expert_id, b.starts_at)[
            language
        ]
        cancellable = rules.check_cancel(now, b.visit_date, cfg, service.tz) is None
        params = {
            "hospital": names.hospital,
            "department": names.department,
            "doctor": names.doctor,
            "when": names.when,
            "visit_number": b.visit_number,
            "cancel_by": rules.cancel_by_text(b.visit_date, cfg, language),
        }
        reply_until = min(now + timedelta(hours=settings.reminders.reply_window_hours), b.starts_at)
        # Patients who prefer voice get a call running ivr_flows/reminder_call.yaml instead.
        voice = reminder_channel(s, b.patient_id) == "voice"
        for offset, decision in todo:
            key = reminder_key(b.visit_number, offset.name)
            if voice:
                written = outbox.enqueue(
                    s,
                    channel="call",
                    to_e164=b.contact_phone,
                    template="reminder_call",
                    language=language,
                    params=reminder_call_params(b.id, key),
                    dedupe_key=key,
                    now=now,
                )
            else:
                written = outbox.enqueue(
                    s,
                    channel="sms",
                    to_e164=b.contact_phone,
                    template="booking_reminder" if cancellable else "booking_reminder_late",
                    language=language,
                    params=params,
                    dedupe_key=key,
                    now=now,
                    reply_handler=HANDLER,
                    reply_context={"visit_number": b.visit_number, "offset": offset.name},
                )
            if not written:
                result.existing += 1
                continue
            if decision.skip is not None:
                outbox.cancel(s, key, now=now)
                s.execute(
                    update(outbox_t)
                    .where(outbox_t.c.dedupe_key == key)
                    .values(last_error=f"skipped: {decision.skip}", reply_until=None)
                )
                result.skipped[decision.skip] = result.skipped.get(decision.skip, 0) + 1
                log.info(
                    "reminder %s of booking id=%s skipped: %s", offset.name, b.id, decision.skip
                )
                continue
            if not voice:
                s.execute(
                    update(outbox_t)
                    .where(outbox_t.c.dedupe_key == key)
                    .values(reply_until=reply_until)
                )
            result.queued += 1
            log.info("reminder %s of booking id=%s queued", offset.name, b.id)


# ---------------------------------------------------------------- answers


def answer_reminder(
    service: BookingService,
) -> ReplyHandler:
    """The handler for answers to reminders: ``1`` confirms the visit, ``2`` cancels it under
    the booking rules (a too-late cancel is refused politely and the booking stands), anything
    else repeats the choices."""

    def handle(session: Session, context: Mapping[str, Any], text: str, clock: Clock) -> str | None:
        visit_number = str(context.get("visit_number", ""))
        if text == "1":
            outcome = service.confirm_by_reply(visit_number, tx=session)
            return CONFIRMED_REPLY if outcome != "not_active" else NOT_ACTIVE_REPLY
        if text == "2":
            try:
                result = service.cancel_by_reply(visit_number, tx=session)
            except BookingRefused as exc:
                code = exc.refusal.code
                if code == "cancel_too_late":
                    hhmm = service.settings.cancel_deadline
                    return TOO_LATE_REPLY.format(zh=hhmm, en=hhmm)
                if code == "not_active":
                    return NOT_ACTIVE_REPLY
                return CANNOT_CANCEL_REPLY
            if result.outcome == "already_cancelled":
                return ALREADY_CANCELLED_REPLY
            return CANCELLED_REPLY
        return HELP_REPLY

    return handle


def register_reply_handlers(replies: ReplyHandlers, booking: BookingService | None) -> None:
    """Register the reminder answer handler (nothing without a booking service)."""
    if booking is not None:
        replies.register(HANDLER, answer_reminder(booking))


# ---------------------------------------------------------------- the no-confirm list


@dataclass(frozen=True)
class Unconfirmed:
    """A reminded booking whose patient has not confirmed (for the clinic's list)."""

    visit_number: str
    clinic_id: str
    starts_at: datetime
    contact_phone_masked: str
    reminders: int


def unconfirmed(
    db: Database,
    *,
    day: date,
    tz: tzinfo,
    clinic_id: str | None = None,
    operator: str,
    now: datetime,
) -> list[Unconfirmed]:
    """Active bookings on ``day`` (local) that were sent a reminder and not confirmed, by start,
    for ``operator`` (an audit row ``reminders.unconfirmed`` is written).

    A reminder counts once the provider took it (the statuses a reply is accepted for).
    """
    actor = operator.strip()
    if not actor or len(actor) > 64:
        raise ValueError("the no-confirm list needs the operator's user name (1-64 chars)")
    start = datetime.combine(day, time(0), tzinfo=tz)
    with db.transaction() as s:
        q = (
            select(Booking)
            .where(
                Booking.status == "booked",
                Booking.confirmed_at.is_(None),
                Booking.starts_at >= start,
                Booking.starts_at < start + timedelta(days=1),
            )
            .order_by(Booking.starts_at, Booking.id)
        )
        if clinic_id is not None:
            q = q.where(Booking.clinic_id == clinic_id)
        bookings = list(s.scalars(q))
        found: list[Unconfirmed] = []
        for b in bookings:
            sent = list(
                s.scalars(
                    select(OutboxMessage.dedupe_key).where(
                        OutboxMessage.dedupe_key.like(f"{KEY_PREFIX}{b.visit_number}:%"),
                        OutboxMessage.status.in_(ASKED_STATUSES),
                    )
                )
            )
            if sent:
                found.append(
                    Unconfirmed(
                        b.visit_number, b.clinic_id, b.starts_at, mask(b.contact_phone), len(sent)
                    )
                )
        s.add(
            AuditEntry(
                at=now,
                actor=actor,
                action="reminders.unconfirmed",
                subject_type="clinic" if clinic_id else "day",
                subject_id=clinic_id or day.isoformat(),
                detail={"day": day.isoformat(), "count": len(found)},
            )
        )
        return found
