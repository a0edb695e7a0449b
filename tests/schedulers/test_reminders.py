"""Appointment reminders: the job called directly with a fake clock, the answers through the
real signed SMS webhook, and the ``callcenter scheduler`` command.

Visits are on Friday 2026-11-27 (tomorrow) unless a test says otherwise; the default offsets
are the evening before at 18:00 and 2 hours before, quiet hours 21:00-08:00, the cancellation
deadline 16:00 the day before.
"""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from callcenter.booking.models import Booking
from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import ReminderOffset, Settings
from callcenter.db.engine import Database
from callcenter.db.models import AuditEntry, OutboxMessage
from schedulers.reminders import (
    CANCELLED_REPLY,
    CONFIRMED_REPLY,
    HANDLER,
    FillResult,
    fill_reminders,
    unconfirmed,
)
from tests.booking.conftest import TZ, add_clinic, local, request
from tests.conftest import TwilioSigner

TOMORROW = date(2026, 11, 27)
HOTLINE = "+862162345678"


def book(services: Services, kb: Database, hhmm: str, n: int = 1, day: date = TOMORROW) -> str:
    """Book patient ``n`` into a one-slot clinic at ``hhmm`` on ``day``; the visit number."""
    end = f"{int(hhmm[:2]) + 1:02d}{hhmm[2:]}"
    clinic = f"c-{day:%m%d}-{hhmm.replace(':', '')}-{n}"
    (slot,) = add_clinic(kb, clinic, day, ((hhmm, end, 5),))
    assert services.booking is not None
    return services.booking.book(request(slot, n)).visit_number


def fill(services: Services, clock: FakeClock, settings: Settings | None = None) -> FillResult:
    assert services.booking is not None
    return fill_reminders(
        services.db,
        services.outbox,
        services.booking,
        clock,
        settings or services.config.settings,
    )


def reminders(db: Database) -> dict[str, OutboxMessage]:
    """Reminder rows by dedupe key."""
    with db.transaction() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("reminder:%")))
        return {r.dedupe_key: r for r in rows}


def queued(db: Database) -> dict[str, OutboxMessage]:
    return {k: r for k, r in reminders(db).items() if r.status == "pending"}


def skipped(db: Database) -> dict[str, str | None]:
    return {k: r.last_error for k, r in reminders(db).items() if r.status == "cancelled"}


def run_until(services: Services, clock: FakeClock, until: datetime, step_min: int = 30) -> None:
    """Run the job every ``step_min`` minutes from now until ``until`` (a scheduler that is up)."""
    while clock.now() < until:
        fill(services, clock)
        clock.advance(minutes=step_min)
    clock.set(until)
    fill(services, clock)


# ---------------------------------------------------------------- offsets and quiet hours


@pytest.mark.parametrize(
    ("visit", "evening_at", "two_h_at", "two_h_skip"),
    [
        # an ordinary visit: 18:00 the evening before, and 2 hours before
        ("10:00", "18:00", "08:00", None),
        ("14:30", "18:00", "12:30", None),
        # 2 h before falls in quiet hours (07:30): moved to 08:00, still 1 h before
        ("09:30", "18:00", "08:00", None),
        # 2 h before is 06:00: quiet until 08:00, the visit itself; the evening one covered it
        ("08:00", "18:00", None, "skipped: quiet_hours"),
        # 06:30 -> 08:00 leaves 30 minutes, under min_lead_minutes (60)
        ("08:30", "18:00", None, "skipped: quiet_hours"),
    ],
)
def test_offsets_and_quiet_hours(
    services: Services,
    kb: Database,
    clock: FakeClock,
    visit: str,
    evening_at: str,
    two_h_at: str | None,
    two_h_skip: str | None,
) -> None:
    number = book(services, kb, visit)
    evening, two_h = f"reminder:{number}:evening", f"reminder:{number}:2h"
    # nothing before the evening moment
    clock.set(local(TOMORROW - timedelta(days=1), "17:59"))
    assert fill(services, clock).queued == 0
    assert reminders(services.db) == {}
    clock.set(local(TOMORROW - timedelta(days=1), evening_at))
    assert fill(services, clock).queued == 1
    assert set(queued(services.db)) == {evening}
    if two_h_at is not None:
        moment = local(TOMORROW, two_h_at)
        clock.set(moment - timedelta(minutes=1))
        fill(services, clock)
        assert two_h not in reminders(services.db)
        clock.set(moment)
        assert fill(services, clock).queued == 1
        row = queued(services.db)[two_h]
        assert row.due_at == moment
        assert row.reply_handler == HANDLER
        # answers count until the visit starts at the latest
        assert row.reply_until == local(TOMORROW, visit)
    else:
        run_until(services, clock, local(TOMORROW, visit) - timedelta(minutes=1))
        assert skipped(services.db) == {two_h: two_h_skip}
    assert len(reminders(services.db)) == 2


def test_reminder_text_after_the_cancel_deadline_does_not_offer_cancelling(
    services: Services, kb: Database, clock: FakeClock
) -> None:
    number = book(services, kb, "10:00")
    two_days = services.config.settings.model_copy(
        update={
            "reminders": services.config.settings.reminders.model_copy(
                update={
                    "offsets": [
                        ReminderOffset(name="early", days_before=1, at="10:00"),
                        ReminderOffset(name="evening", days_before=1, at="18:00"),
                    ]
                }
            )
        }
    )
    # 10:00 the day before (the booking was made at 09:00): before the 16:00 deadline
    clock.set(local(TOMORROW - timedelta(days=1), "10:00"))
    assert fill(services, clock, two_days).queued == 1
    clock.set(local(TOMORROW - timedelta(days=1), "18:00"))
    assert fill(services, clock, two_days).queued == 1
    rows = reminders(services.db)
    assert rows[f"reminder:{number}:early"].template == "booking_reminder"
    assert rows[f"reminder:{number}:evening"].template == "booking_reminder_late"
    params = rows[f"reminder:{number}:early"].params
    assert params["hospital"] == "测试医院"
    assert params["visit_number"] == number
    assert params["when"].startswith("11月27日")


def test_cancelled_bookings_get_nothing(services: Services, kb: Database, clock: FakeClock) -> None:
    number = book(services, kb, "10:00")
    assert services.booking is not None
    services.booking.cancel(number, operator="agent1", reason="patient called")
    run_until(services, clock, local(TOMORROW, "09:59"))
    assert reminders(services.db) == {}


def test_a_waiting_reminder_of_a_cancelled_booking_is_withdrawn(
    services: Services, kb: Database, clock: FakeClock
) -> None:
    number = book(services, kb, "10:00")
    other = book(services, kb, "10:00", n=2)
    clock.set(local(TOMORROW - timedelta(days=1), "18:00"))
    assert fill(services, clock).queued == 2
    assert services.booking is not None
    services.booking.cancel(
        number, operator="agent1", reason="patient called", override_deadline=True
    )
    clock.advance(seconds=30)
    assert fill(services, clock).withdrawn == 1
    rows = reminders(services.db)
    assert rows[f"reminder:{number}:evening"].status == "cancelled"
    assert rows[f"reminder:{other}:evening"].status == "pending"
    assert fill(services, clock).withdrawn == 0


def test_a_booking_made_after_a_reminder_moment_gets_what_still_makes_sense(
    services: Services, kb: Database, clock: FakeClock
) -> None:
    clock.set(local(TOMORROW - timedelta(days=1), "19:00"))
    number = book(services, kb, "10:00")
    run_until(services, clock, local(TOMORROW, "09:59"))
    assert set(queued(services.db)) == {f"reminder:{number}:2h"}
    assert skipped(services.db) == {f"reminder:{number}:evening": "skipped: booked_after"}


def test_a_visit_booked_the_same_morning_gets_no_reminder_already_past(
    services: Services, kb: Database, clock: FakeClock
) -> None:
    clock.set(local(TOMORROW, "08:00"))
    number = book(services, kb, "15:00")
    run_until(services, clock, local(TOMORROW, "14:59"))
    assert set(queued(services.db)) == {f"reminder:{number}:2h"}
    assert set(skipped(services.db)) == {f"reminder:{number}:evening"}


# ---------------------------------------------------------------- downtime catch-up


@pytest.mark.parametrize(
    ("back_at", "expect_evening"),
    [
        ("18:00", "pending"),  # up on time
        ("19:30", "pending"),  # down for 1.5 h: caught up (limit 120 min)
        ("20:00", "pending"),  # exactly at the limit
        ("20:01", "skipped: late"),  # past the lateness limit
    ],
)
def test_downtime_catch_up_and_the_lateness_limit(
    services: Services, kb: Database, clock: FakeClock, back_at: str, expect_evening: str
) -> None:
    number = book(services, kb, "10:00")
    clock.set(local(TOMORROW - timedelta(days=1), back_at))
    fill(services, clock)
    row = reminders(services.db)[f"reminder:{number}:evening"]
    got = row.status if row.status == "pending" else row.last_error
    assert got == expect_evening
    if row.status == "pending":
        assert row.due_at == clock.now()


def test_nothing_is_caught_up_once_the_visit_started(
    services: Services, kb: Database, clock: FakeClock
) -> None:
    number = book(services, kb, "10:00")
    clock.set(local(TOMORROW, "10:00"))
    assert fill(services, clock).bookings == 0
    assert reminders(services.db) == {}
    assert number


def test_a_skip_is_recorded_and_logged_once(
    services: Services, kb: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    book(services, kb, "10:00", n=1)
    clock.set(local(TOMORROW, "08:00"))
    caplog.set_level("INFO", logger="schedulers.reminders")
    first = fill(services, clock)
    assert first.skipped == {"late": 1}
    assert first.queued == 1
    second = fill(services, clock)
    assert second.queued == 0
    assert second.skipped == {}
    assert second.existing == 2
    skips = [r.getMessage() for r in caplog.records if "skipped:" in r.getMessage()]
    assert skips == [skips[0]]
    assert "late" in skips[0]
    text = caplog.text
    assert "+86" not in text
    assert "138" not in text


# ---------------------------------------------------------------- idempotency


def test_running_twice_writes_one_row_per_reminder(
    services: Services, kb: Database, clock: FakeClock
) -> None:
    numbers = [book(services, kb, "10:00", n=i) for i in range(1, 4)]
    clock.set(local(TOMORROW - timedelta(days=1), "18:00"))
    assert fill(services, clock).queued == 3
    again = fill(services, clock)
    assert (again.queued, again.existing) == (0, 3)
    assert set(reminders(services.db)) == {f"reminder:{n}:evening" for n in numbers}


def test_two_schedulers_at_once_write_one_row_per_reminder(
    services: Services, kb: Database, clock: FakeClock
) -> None:
    numbers = [book(services, kb, "10:00", n=i) for i in range(1, 7)]
    clock.set(local(TOMORROW, "08:00"))  # evening skipped (late), 2h due
    assert services.booking is not None
    booking = services.booking
    barrier = threading.Barrier(2)
    results: list[FillResult] = []
    errors: list[BaseException] = []
    handles = [Database.from_url(services.config.database_url) for _ in range(2)]

    def run(db: Database) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(
                fill_reminders(db, services.outbox, booking, clock, services.config.settings)
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for h in handles:
        h.dispose()
    assert errors == []
    rows = reminders(services.db)
    assert set(rows) == {f"reminder:{n}:{o}" for n in numbers for o in ("evening", "2h")}
    assert sum(r.queued for r in results) == 6
    assert sum(sum(r.skipped.values()) for r in results) == 6
    assert len(queued(services.db)) == 6


# ---------------------------------------------------------------- answers (signed webhook)


def mark_sent(services: Services, clock: FakeClock) -> None:
    """The provider took every pending reminder (as the dispatcher would record)."""
    for i, row in enumerate(queued(services.db).values()):
        services.outbox.record_status(
            "twilio", f"SMr{i:030d}", "sent", outbox_id=row.id, now=clock.now()
        )


def text_in(twilio: TwilioSigner, body: str, sender: str, sid: str) -> list[str]:
    form = {"MessageSid": sid, "From": sender, "To": HOTLINE, "Body": body}
    response = twilio.post("/twilio/sms", form)
    assert response.status_code == 200, response.get_data(as_text=True)
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML, under test
    return [el.text or "" for el in root]


def booking_row(db: Database, number: str) -> Booking:
    with db.transaction() as s:
        row = s.scalar(select(Booking).where(Booking.visit_number == number))
        assert row is not None
        return row


def only_phone(n: int = 1) -> str:
    return f"+86138{n:08d}"


def test_reply_1_confirms_and_leaves_the_no_confirm_list(
    services: Services, kb: Database, clock: FakeClock, twilio: TwilioSigner
) -> None:
    assert HANDLER in services.replies  # registered by the composition root
    first = book(services, kb, "10:00", n=1)
    second = book(services, kb, "11:00", n=2)
    clock.set(local(TOMORROW - timedelta(days=1), "18:00"))
    fill(services, clock)
    mark_sent(services, clock)
    listed = unconfirmed(services.db, day=TOMORROW, tz=TZ, operator="nurse1", now=clock.now())
    assert [u.visit_number for u in listed] == [first, second]
    assert listed[0].contact_phone_masked != only_phone(1)
    assert "*" in listed[0].contact_phone_masked
    assert listed[0].reminders == 1
    clock.advance(minutes=5)
    (reply,) = text_in(twilio, "１", only_phone(1), "SM" + "1" * 32)
    assert reply == CONFIRMED_REPLY
    assert booking_row(services.db, first).confirmed_at == clock.now()
    later = unconfirmed(services.db, day=TOMORROW, tz=TZ, operator="nurse1", now=clock.now())
    assert [u.visit_number for u in later] == [second]
    with services.db.transaction() as s:
        audits = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "reminders.unconfirmed")
        ).all()
        assert [a.actor for a in audits] == ["nurse1", "nurse1"]
    # a retried webhook answers the same and changes nothing
    assert text_in(twilio, "１", only_phone(1), "SM" + "1" * 32) == [reply]


def test_reply_2_before_the_deadline_cancels(
    services: Services, kb: Database, clock: FakeClock, twilio: TwilioSigner
) -> None:
    day = TOMORROW + timedelta(days=1)
    number = book(services, kb, "10:00", day=day)
    settings = services.config.settings.model_copy(
        update={
            "reminders": services.config.settings.reminders.model_copy(
                update={"offsets": [ReminderOffset(name="2d", days_before=2, at="10:00")]}
            )
        }
    )
    clock.set(local(day - timedelta(days=2), "10:00"))
    assert fill(services, clock, settings).queued == 1
    assert reminders(services.db)[f"reminder:{number}:2d"].template == "booking_reminder"
    mark_sent(services, clock)
    (reply,) = text_in(twilio, "2", only_phone(1), "SM" + "2" * 32)
    assert reply == CANCELLED_REPLY
    row = booking_row(services.db, number)
    assert row.status == "cancelled"
    assert row.cancelled_by == "sms"
    with services.db.transaction() as s:
        sms = s.scalar(
            select(OutboxMessage).where(OutboxMessage.dedupe_key == f"booking:{number}:cancelled")
        )
        assert sms is not None
        assert sms.template == "booking_cancelled"


def test_reply_2_after_the_deadline_is_refused_politely(
    services: Services, kb: Database, clock: FakeClock, twilio: TwilioSigner
) -> None:
    number = book(services, kb, "10:00")
    clock.set(local(TOMORROW - timedelta(days=1), "18:00"))
    fill(services, clock)
    mark_sent(services, clock)
    (reply,) = text_in(twilio, "2", only_phone(1), "SM" + "3" * 32)
    assert "16:00" in reply
    assert "热线" in reply
    assert "call the hotline" in reply
    assert reply.index("健康热线") < reply.index("Health Hotline")
    assert "CANCEL" not in reply.upper().replace("CANCELLED", "").replace("CANCEL ", "")
    assert booking_row(services.db, number).status == "booked"
    with services.db.transaction() as s:
        assert (
            s.scalar(
                select(OutboxMessage).where(
                    OutboxMessage.dedupe_key == f"booking:{number}:cancelled"
                )
            )
            is None
        )


def test_reminder_texts_never_ask_for_the_cancel_keyword() -> None:
    from callcenter.messaging.templates import Templates
    from tests.conftest import FLOWS

    templates = Templates(FLOWS)
    for lang in ("zh-CN", "en"):
        for name in ("booking_reminder", "booking_reminder_late"):
            params: dict[str, Any] = dict.fromkeys(templates.fields(name, lang), "x")
            body = templates.render(name, lang, params)
            assert "CANCEL" not in body
            assert "1" in body


# ---------------------------------------------------------------- the command


def test_scheduler_help() -> None:
    from callcenter.cli import main

    result = CliRunner().invoke(main, ["scheduler", "--help"])
    assert result.exit_code == 0, result.output
    assert "--once" in result.output
    assert "--interval" in result.output


def test_scheduler_once(tmp_path: Path, database_url: str) -> None:
    """``--once`` runs the job with the system clock, prints its counts and exits."""
    from tests.test_cli import run_cli, write_config

    config = write_config(tmp_path / "config.yaml", database_url, tmp_path / "var")
    result = run_cli(config, "scheduler", "--once")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output.strip().splitlines()[-1])
    assert counts == {
        "reminders": {"bookings": 0, "queued": 0, "existing": 0, "withdrawn": 0, "skipped": {}}
    }


def test_scheduler_without_secret_key_is_a_clear_error(tmp_path: Path, database_url: str) -> None:
    from tests.test_cli import run_cli, write_config

    config = write_config(tmp_path / "config.yaml", database_url, tmp_path / "var")
    result = run_cli(config, "scheduler", "--once", secrets=False)
    assert result.exit_code != 0
    assert "SECRET_KEY" in result.output
