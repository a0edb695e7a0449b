"""Downtime catch-up, end to end: the reminder job and a dispatcher, both down for a while.

A reminder that came due while schedulers and workers were down goes out within a minute of
them coming back, unless its moment has passed: more than ``lateness_limit_minutes`` (120)
late, or the visit has started. Quiet hours still hold a late reminder back.

Each case runs a simulated night with a fake clock: every 10 minutes (and at the moment a
process comes back) whatever is up runs: the reminder job (``fill_reminders``), then a
dispatcher (the real :class:`~callcenter.messaging.dispatcher.Dispatcher` with a sender that
notes the time it was handed each message), then the dispatcher again a second later (its
poll interval). ``tests/schedulers/test_reminders.py`` checks the job's own decisions.

The visit is Friday 2026-11-27 10:00, booked on Thursday morning: its reminders are the
evening before at 18:00 and 2 hours before (08:00).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from callcenter.db.models import OutboxMessage
from callcenter.messaging.dispatcher import Dispatcher
from callcenter.messaging.ports import OutgoingCall, OutgoingSms, SendResult
from callcenter.messaging.templates import Templates
from schedulers.reminders import fill_reminders
from tests.booking.conftest import add_clinic, local, request

THU = date(2026, 11, 26)
FRI = date(2026, 11, 27)
START = local(THU, "17:00")
END = local(FRI, "11:00")
TICK = timedelta(minutes=10)


@dataclass
class ClockSender:
    """Accepts everything; notes the fake clock's time for each outbox id."""

    clock: FakeClock
    name: str = "clock"
    sent: list[tuple[int, datetime]] = field(default_factory=list)

    def send_sms(self, message: OutgoingSms) -> SendResult:
        """Note an SMS."""
        self.sent.append((message.outbox_id, self.clock.now()))
        return SendResult(self.name, f"SM{len(self.sent):032d}", "queued")

    def place_call(self, call: OutgoingCall) -> SendResult:
        """Note a call."""
        self.sent.append((call.outbox_id, self.clock.now()))
        return SendResult(self.name, f"CA{len(self.sent):032d}", "queued")


Window = tuple[datetime, datetime]


def up(windows: tuple[Window, ...], moment: datetime) -> bool:
    return not any(down <= moment < back for down, back in windows)


def simulate(
    services: Services,
    clock: FakeClock,
    scheduler_down: tuple[Window, ...],
    workers_down: tuple[Window, ...],
) -> ClockSender:
    """Run the night from START to END with the given outages."""
    assert services.booking is not None
    sender = ClockSender(clock)
    worker = Dispatcher(
        services.outbox,
        sender,
        Templates(services.config.flows_dir),
        clock=clock,
        sleep=clock.advance,
        worker_id="catch-up",
    )
    moments = {START + TICK * i for i in range((END - START) // TICK + 1)}
    moments |= {back for _down, back in (*scheduler_down, *workers_down)}
    for moment in sorted(moments):
        if clock.now() < moment:
            clock.set(moment)
        if up(scheduler_down, moment):
            fill_reminders(
                services.db, services.outbox, services.booking, clock, services.config.settings
            )
        if up(workers_down, moment):
            worker.drain()
            clock.advance(1)
            worker.drain()
    return sender


def by_key(db: Database) -> dict[str, OutboxMessage]:
    with db.transaction() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("reminder:%")))
        found = {r.dedupe_key.rsplit(":", 1)[1]: r for r in rows}
        s.expunge_all()
        return found


ALL = "all"
WORKERS = "workers"


@pytest.mark.parametrize(
    ("who", "down", "back", "evening", "two_h"),
    [
        # nobody down: each at its moment
        (None, None, None, (THU, "18:00"), (FRI, "08:00")),
        # everything down over 18:00, back 1.5 h later: caught up at once
        (ALL, (THU, "17:30"), (THU, "19:30"), (THU, "19:30"), (FRI, "08:00")),
        # back exactly at the lateness limit (120 minutes)
        (ALL, (THU, "17:30"), (THU, "20:00"), (THU, "20:00"), (FRI, "08:00")),
        # a minute past it: that moment has passed
        (ALL, (THU, "17:30"), (THU, "20:01"), "skipped: late", (FRI, "08:00")),
        # down all night, back 1.5 h after the 2-hour moment: that one is caught up
        (ALL, (THU, "17:30"), (FRI, "09:30"), "skipped: late", (FRI, "09:30")),
        # down overnight, back half an hour after 08:00
        (ALL, (THU, "20:30"), (FRI, "08:30"), (THU, "18:00"), (FRI, "08:30")),
        # back after the visit started: nothing at all
        (ALL, (THU, "17:30"), (FRI, "10:30"), None, None),
        # only the workers down, back in quiet hours: the written reminder waits for 08:00
        (WORKERS, (THU, "17:30"), (THU, "21:30"), (FRI, "08:00"), (FRI, "08:00")),
        # only the workers down, back after the visit started: what was written is withdrawn
        (WORKERS, (THU, "17:30"), (FRI, "10:30"), "withdrawn", "withdrawn"),
    ],
)
def test_a_reminder_due_during_downtime_goes_out_within_a_minute_unless_its_moment_passed(
    services: Services,
    kb: Database,
    clock: FakeClock,
    who: str | None,
    down: tuple[date, str] | None,
    back: tuple[date, str] | None,
    evening: tuple[date, str] | str | None,
    two_h: tuple[date, str] | str | None,
) -> None:
    assert services.booking is not None
    (slot,) = add_clinic(kb, "c-catch-up", FRI, (("10:00", "11:00", 1),))
    number = services.booking.book(request(slot, 1)).visit_number
    outage: tuple[Window, ...] = ()
    if down is not None and back is not None:
        outage = ((local(*down), local(*back)),)
    sender = simulate(
        services,
        clock,
        scheduler_down=outage if who == ALL else (),
        workers_down=outage if who in (ALL, WORKERS) else (),
    )
    rows = by_key(services.db)
    sent_at = dict(sender.sent)
    assert len(sent_at) == len(sender.sent), "a message went out twice"
    for offset, want in (("evening", evening), ("2h", two_h)):
        row = rows.get(offset)
        if want is None:
            assert row is None, offset
        elif want == "withdrawn":
            assert row is not None
            assert row.status == "cancelled"
            assert row.id not in sent_at
        elif isinstance(want, str):
            assert row is not None
            assert (row.status, row.last_error) == ("cancelled", want)
            assert row.id not in sent_at
        else:
            assert row is not None, offset
            moment = local(*want)
            assert row.id in sent_at, (offset, row.status, row.last_error)
            assert moment <= sent_at[row.id] < moment + timedelta(minutes=1), offset
    assert number
