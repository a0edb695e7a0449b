"""Appointment reminders by voice for patients who prefer calls: 1 confirms, 2 cancels under
the booking rules; unanswered twice, a plain SMS instead. And answering-machine detection is
asked for on every call placed through Twilio's REST API."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from callcenter.booking.models import Booking
from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.messaging.dispatcher import Dispatcher
from callcenter.messaging.ports import OutgoingCall
from callcenter.recall.preferences import set_reminder_channel
from callcenter.telephony.twilio.rest import TwilioSender
from schedulers.reminders import fill_reminders
from tests.conftest import TwilioSigner
from tests.messaging.fake_provider import FakeProvider
from tests.messaging.helpers import FakeSender

from .conftest import PHONE_EN, PHONE_ZH, VISIT_EN, VISIT_ZH, outbox_rows, placed_calls, spoken
from .conftest import recall_config as _recall_config

EVENING = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # 18:00 Shanghai, the evening before


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """Bookings may be cancelled until 20:00 the day before (so the evening reminder may)."""
    return _recall_config(database_url, tmp_path, booking={"cancel_deadline": "20:00"})


@pytest.fixture
def reminded(seeded: Services, clock: FakeClock) -> Services:
    """Both bookings moved to tomorrow 11:00; the English patient prefers voice; the
    reminder job has run at 18:00 the evening before."""
    with seeded.db.transaction() as s:
        for b in s.scalars(select(Booking)):
            b.visit_date = date(2026, 11, 27)
            b.starts_at = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
            b.ends_at = datetime(2026, 11, 27, 3, 30, tzinfo=UTC)
    set_reminder_channel(seeded.db, clock, 2, "voice", operator="agent-demo")
    clock.set(EVENING)
    booking = seeded.booking
    assert booking is not None
    fill_reminders(seeded.db, seeded.outbox, booking, clock, seeded.config.settings)
    return seeded


def booking_of(services: Services, visit: str) -> Booking:
    with services.db.transaction() as s:
        found = s.scalar(select(Booking).where(Booking.visit_number == visit))
        assert found is not None
        return found


def test_voice_preference_writes_a_call_and_sms_preference_an_sms(reminded: Services) -> None:
    rows = {r.to_e164: r for r in outbox_rows(reminded)}
    call, sms = rows[PHONE_EN], rows[PHONE_ZH]
    assert (call.channel, call.template, call.dedupe_key) == (
        "call",
        "reminder_call",
        f"reminder:{VISIT_EN}:evening",
    )
    assert call.urgent is False  # reminders respect quiet hours
    assert call.reply_handler is None
    assert (sms.channel, sms.template) == ("sms", "booking_reminder")
    assert sms.dedupe_key == f"reminder:{VISIT_ZH}:evening"


@pytest.mark.parametrize(
    ("key", "heard", "status", "confirmed"),
    [("1", "confirmed", "booked", True), ("2", "cancelled", "cancelled", False)],
)
def test_press_1_confirms_and_2_cancels(
    reminded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    key: str,
    heard: str,
    status: str,
    confirmed: bool,
) -> None:
    dispatcher.drain()
    (phone,) = placed_calls(sender, twilio)
    said = spoken(phone.answer())
    assert "Test Hospital" in said
    assert "press 2" in said
    assert heard in spoken(phone.press(key))
    booking = booking_of(reminded, VISIT_EN)
    assert booking.status == status
    assert (booking.confirmed_at is not None) == confirmed
    if key == "2":
        assert "booking_cancelled" in [r.template for r in outbox_rows(reminded)]


def test_too_late_to_cancel_the_booking_stands(
    reminded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    clock: FakeClock,
) -> None:
    dispatcher.drain()
    (phone,) = placed_calls(sender, twilio)
    phone.answer()
    clock.set(datetime(2026, 11, 26, 12, 30, tzinfo=UTC))  # 20:30: past the deadline
    assert "booking stands" in spoken(phone.press("2"))
    assert booking_of(reminded, VISIT_EN).status == "booked"


def test_unanswered_twice_then_a_plain_sms(
    reminded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    clock: FakeClock,
) -> None:
    dispatcher.drain()
    placed_calls(sender, twilio)[0].status("no-answer")
    clock.advance(121)
    dispatcher.drain()
    placed_calls(sender, twilio)[1].status("busy")
    dispatcher.drain()
    assert len(placed_calls(sender, twilio)) == 2
    texts = [s for s in sender.sent if s.kind == "sms" and s.to == PHONE_EN]
    assert len(texts) == 1
    assert texts[0].body.startswith("Health Hotline: we tried to call you")


def test_twilio_calls_ask_for_answering_machine_detection() -> None:
    with FakeProvider() as provider:
        sender = TwilioSender(
            "AC" + "0" * 32,
            "token",
            api_base_url=provider.url,
            call_from="+8621000001",
        )
        sender.place_call(
            OutgoingCall(
                outbox_id=7,
                to_e164=PHONE_EN,
                answer_url="https://hotline.example.org/twilio/voice/outbound?o=7",
            )
        )
    (got,) = provider.received
    assert got.form["MachineDetection"] == "Enable"
