"""Inbound SMS through the real, signed ``POST /twilio/sms`` webhook.

Opt-out and re-subscribe keywords change ``sms_opt_outs`` and the audit trail; numbered
answers reach the handler of the question that asked for them; a retried webhook changes
nothing twice. The service is built here with its reply handlers and the real outbox (the
composition root wires the same objects), behind the real Twilio blueprint; the SMS routes need
no IVR flows, so none are loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, cast

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callcenter.calls.service import CallService
from callcenter.clock import Clock, FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.db.models import AuditEntry, InboundSms, OutboxMessage, SmsOptOut
from callcenter.messaging.dispatcher import Dispatcher
from callcenter.messaging.inbound import (
    OPT_IN_REPLY,
    OPT_OUT_REPLY,
    POLITE_REPLY,
    REPLY_FAILED,
    InboundSmsService,
)
from callcenter.messaging.outbox import Outbox
from callcenter.messaging.ports import OutgoingCall, OutgoingSms, SendResult
from callcenter.messaging.replies import ReplyHandlers
from callcenter.messaging.templates import Templates
from callcenter.telephony.twilio.webhooks import create_blueprint
from tests.conftest import TwilioSigner

CALLER = "+8613800138000"
OTHER = "+8613900139000"
HOTLINE = "+862162345678"


class Recorder:
    """A reply handler for tests: records its calls, writes through the session it is given."""

    def __init__(
        self, reply: str | None = "【健康热线】已确认。\nHealth Hotline: confirmed."
    ) -> None:
        self.reply = reply
        self.calls: list[tuple[dict[str, Any], str]] = []
        self.fail = False

    def __call__(
        self, session: Session, context: Mapping[str, Any], text: str, clock: Clock
    ) -> str | None:
        self.calls.append((dict(context), text))
        session.add(
            AuditEntry(
                at=clock.now(),
                actor="test",
                action="test.handled",
                subject_type="outbox",
                subject_id=str(context.get("booking_id")),
                detail={"answer": text},
            )
        )
        session.flush()
        if self.fail:
            raise RuntimeError("the booking system is down")
        return self.reply


@dataclasses.dataclass
class Sms:
    """The app with a fully wired inbound SMS service, and what tests need to drive it."""

    twilio: TwilioSigner
    db: Database
    config: Config
    inbound: InboundSmsService
    outbox: Outbox
    handlers: ReplyHandlers
    confirm: Recorder
    other: Recorder
    clock: FakeClock
    sids: int = 0

    def send(self, body: str, *, sid: str | None = None, sender: str = CALLER) -> list[str]:
        """Text ``body`` to the hotline; return the texts of the reply's <Message>s."""
        if sid is None:
            self.sids += 1
            sid = f"SMtest{self.sids:028d}"
        form = {"MessageSid": sid, "From": sender, "To": HOTLINE, "Body": body}
        response = self.twilio.post("/twilio/sms", form)
        assert response.status_code == 200, response.get_data(as_text=True)
        root = ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML, under test
        assert root.tag == "Response"
        assert all(el.tag == "Message" for el in root)
        return [el.text or "" for el in root]

    def ask(
        self,
        handler: str = "test.confirm",
        *,
        to: str = CALLER,
        context: Mapping[str, Any] | None = None,
        status: str | None = "sent",
    ) -> int:
        """Put a question in the outbox (as a feature would) and let the provider report it."""
        self.sids += 1
        with self.db.transaction() as s:
            assert self.outbox.enqueue(
                s,
                channel="sms",
                to_e164=to,
                template="visit_reminder",
                language="zh-CN",
                params={},
                dedupe_key=f"question:{self.sids}",
                now=self.clock.now(),
                reply_handler=handler,
                reply_context=dict(context or {"booking_id": self.sids}),
            )
            outbox_id = s.scalar(select(func.max(OutboxMessage.id)))
        assert outbox_id is not None
        if status is not None:
            self.outbox.record_status(
                "twilio", f"SMq{self.sids:030d}", status, outbox_id=outbox_id, now=self.clock.now()
            )
        return int(outbox_id)

    def opted_out(self, phone: str = CALLER) -> SmsOptOut | None:
        with self.db.sessions() as s:
            return s.get(SmsOptOut, phone)

    def audit(self, action: str | None = None) -> list[AuditEntry]:
        with self.db.sessions() as s:
            query = select(AuditEntry).order_by(AuditEntry.id)
            if action is not None:
                query = query.where(AuditEntry.action == action)
            return list(s.scalars(query))

    def inbound_count(self) -> int:
        with self.db.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(InboundSms)) or 0)


@pytest.fixture
def sms(config: Config, clock: FakeClock) -> Iterator[Sms]:
    """The Twilio webhooks around an inbound service with test handlers and the real outbox."""
    db = Database.from_url(config.database_url)
    handlers = ReplyHandlers()
    confirm, other = Recorder(), Recorder("【健康热线】已改期。\nHealth Hotline: rescheduled.")
    handlers.register("test.confirm", confirm)
    handlers.register("test.other", other)
    outbox = Outbox.from_config(config, db)
    inbound = InboundSmsService(
        db, clock, config.settings.instance.default_region, replies=handlers, outbox=outbox
    )
    app = Flask(__name__)
    app.config["TESTING"] = True
    # The SMS routes never touch the call service.
    app.register_blueprint(create_blueprint(config, cast(CallService, object()), inbound))
    yield Sms(
        TwilioSigner(app.test_client()),
        db,
        config,
        inbound,
        outbox,
        handlers,
        confirm,
        other,
        clock,
    )
    db.dispose()


def zh_then_en(text: str) -> None:
    """A reply in both languages, Chinese first, never asking for the CANCEL keyword."""
    assert "健康热线" in text
    assert "Health Hotline" in text
    assert text.index("健康热线") < text.index("Health Hotline")
    assert "CANCEL" not in text.upper()


# ---------------------------------------------------------------- opt-out


CHINESE_OPT_OUTS = [
    ("TD", "td"),
    ("td", "td"),
    ("ＴＤ", "td"),
    ("Ｔ Ｄ", "td"),
    ("T D", "td"),
    ("TD。", "td"),
    ("td!", "td"),
    ("退订", "退订"),
    ("退订！", "退订"),
    ("【退订】", "退订"),
    ("退订短信", "退订短信"),
]


@pytest.mark.parametrize(("body", "word"), CHINESE_OPT_OUTS)
def test_chinese_opt_out_gets_a_confirmation(sms: Sms, body: str, word: str) -> None:
    assert sms.send(body) == [OPT_OUT_REPLY]
    zh_then_en(OPT_OUT_REPLY)
    row = sms.opted_out()
    assert row is not None
    assert (row.keyword, row.source, row.opted_out_at) == (word, "sms", sms.clock.now())
    [entry] = sms.audit("sms.opt_out")
    assert (entry.actor, entry.subject_type, entry.subject_id) == ("resident:sms", "phone", CALLER)
    assert entry.detail == {
        "message_id": "SMtest" + "1".zfill(28),
        "keyword": word,
        "changed": True,
    }
    assert entry.at == sms.clock.now()


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        " Stop ",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
        "opt out",
    ],
)
def test_twilio_keywords_opt_out_and_twilio_answers(sms: Sms, body: str) -> None:
    assert sms.send(body) == []  # Twilio sends its own confirmation
    row = sms.opted_out()
    assert row is not None
    assert row.keyword == "".join(body.lower().split())
    assert len(sms.audit("sms.opt_out")) == 1


def test_opt_out_only_affects_the_sender(sms: Sms) -> None:
    sms.send("TD", sender=OTHER)
    assert sms.opted_out(CALLER) is None
    assert sms.opted_out(OTHER) is not None


def test_a_retried_opt_out_changes_nothing_twice(sms: Sms) -> None:
    sid = "SMretry0000000000000000000000000001"
    first = sms.send("退订", sid=sid)
    when = sms.clock.now()
    sms.clock.advance(30)
    assert sms.send("退订", sid=sid) == first == [OPT_OUT_REPLY]
    assert sms.inbound_count() == 1
    assert len(sms.audit("sms.opt_out")) == 1
    row = sms.opted_out()
    assert row is not None
    assert row.opted_out_at == when


def test_a_second_opt_out_keeps_the_first(sms: Sms) -> None:
    sms.send("TD")
    first = sms.opted_out()
    sms.clock.advance(3600)
    assert sms.send("STOP") == []
    again = sms.opted_out()
    assert again is not None
    assert first is not None
    assert (again.opted_out_at, again.keyword) == (first.opted_out_at, "td")
    assert [e.detail["changed"] for e in sms.audit("sms.opt_out")] == [True, False]


def test_concurrent_copies_of_one_opt_out_count_once(sms: Sms) -> None:
    sid = "SMrace00000000000000000000000000001"
    replies: list[str | None] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def post() -> None:
        try:
            start.wait()
            replies.append(
                sms.inbound.receive(
                    provider="twilio", message_id=sid, sender=CALLER, recipient=HOTLINE, body="TD"
                )
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert replies == [OPT_OUT_REPLY] * 4
    assert sms.inbound_count() == 1
    assert len(sms.audit("sms.opt_out")) == 1
    assert sms.opted_out() is not None


@pytest.mark.parametrize(
    "body", ["请问退订以后还能预约吗", "stop by tomorrow?", "我想退订", "退号", "T"]
)
def test_sentences_are_not_opt_outs(sms: Sms, body: str) -> None:
    assert sms.send(body) == [POLITE_REPLY]
    assert sms.opted_out() is None
    assert sms.audit() == []


def test_a_hidden_sender_cannot_opt_out(sms: Sms) -> None:
    assert sms.send("TD", sender="anonymous") == []
    assert sms.send("你好", sender="anonymous") == [POLITE_REPLY]
    with sms.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(SmsOptOut)) == 0
    assert sms.inbound_count() == 2


class Phone:
    """A sender that only notes which outbox messages it was handed."""

    name = "test"

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send_sms(self, message: OutgoingSms) -> SendResult:
        self.sent.append(message.outbox_id)
        return SendResult(self.name, f"SMsent{message.outbox_id:028d}", "queued")

    def place_call(self, call: OutgoingCall) -> SendResult:  # pragma: no cover - SMS only
        raise AssertionError("no calls here")


def test_the_dispatcher_honours_td_and_resubscribe(sms: Sms) -> None:
    """End to end: TD stops reminders (not essential messages); 订阅 brings them back."""
    phone = Phone()
    worker = Dispatcher(
        sms.outbox, phone, Templates(sms.config.flows_dir), clock=sms.clock, sleep=sms.clock.advance
    )

    def message(key: str, *, essential: bool) -> int:
        with sms.db.transaction() as s:
            assert sms.outbox.enqueue(
                s,
                channel="sms",
                to_e164=CALLER,
                template="service_guide",
                language="zh-CN",
                params={},
                dedupe_key=key,
                now=sms.clock.now(),
                essential=essential,
            )
            return int(s.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)))

    sms.send("退订")
    reminder = message("reminder-1", essential=False)
    code = message("booking-code", essential=True)
    worker.drain()
    assert phone.sent == [code]
    with sms.db.sessions() as s:
        suppressed = s.get(OutboxMessage, reminder)
        assert suppressed is not None
        assert suppressed.status == "suppressed"

    sms.send("订阅")
    again = message("reminder-2", essential=False)
    worker.drain()
    assert phone.sent == [code, again]


# ---------------------------------------------------------------- re-subscribe


@pytest.mark.parametrize("body", ["订阅", "恢复订阅", "【订阅】", "重新订阅。"])
def test_chinese_resubscribe_gets_a_confirmation(sms: Sms, body: str) -> None:
    sms.send("TD")
    assert sms.send(body) == [OPT_IN_REPLY]
    zh_then_en(OPT_IN_REPLY)
    assert sms.opted_out() is None
    [entry] = sms.audit("sms.opt_in")
    assert (entry.subject_type, entry.subject_id, entry.detail["changed"]) == (
        "phone",
        CALLER,
        True,
    )


@pytest.mark.parametrize("body", ["START", "start", "UNSTOP", "Yes"])
def test_twilio_resubscribe_words_resubscribe_and_twilio_answers(sms: Sms, body: str) -> None:
    sms.send("STOP")
    assert sms.send(body) == []
    assert sms.opted_out() is None
    assert len(sms.audit("sms.opt_in")) == 1


def test_resubscribing_without_an_opt_out_is_audited_as_no_change(sms: Sms) -> None:
    assert sms.send("订阅") == [OPT_IN_REPLY]
    [entry] = sms.audit("sms.opt_in")
    assert entry.detail["changed"] is False


def test_a_retried_resubscribe_after_a_new_opt_out_does_not_undo_it(sms: Sms) -> None:
    sms.send("TD")
    sms.send("订阅", sid="SMresub000000000000000000000000001")
    sms.send("TD")  # opted out again
    assert sms.send("订阅", sid="SMresub000000000000000000000000001") == [OPT_IN_REPLY]
    assert sms.opted_out() is not None  # the old message did not run again


# ---------------------------------------------------------------- numbered answers


@pytest.mark.parametrize("body", ["1", "１", "1。", " 1 ", "【1】", "1!"])
def test_a_numbered_answer_reaches_its_handler(sms: Sms, body: str) -> None:
    outbox_id = sms.ask(context={"booking_id": 42})
    assert sms.send(body) == [sms.confirm.reply]
    assert sms.confirm.calls == [({"booking_id": 42}, "1")]
    assert sms.other.calls == []
    [handled] = sms.audit("test.handled")  # written by the handler, committed with the message
    assert handled.detail == {"answer": "1"}
    [entry] = sms.audit("sms.reply")
    assert (entry.subject_type, entry.subject_id) == ("sms_inbound", "SMtest" + "2".zfill(28))
    assert entry.detail == {
        "outbox_id": outbox_id,
        "handler": "test.confirm",
        "answer": "1",
        "reply": sms.confirm.reply,
    }


def test_a_retried_answer_runs_the_handler_once_and_replays_its_reply(sms: Sms) -> None:
    sms.ask()
    sid = "SManswer00000000000000000000000001"
    first = sms.send("2", sid=sid)
    sms.confirm.reply = "something else"
    assert sms.send("2", sid=sid) == first == ["【健康热线】已确认。\nHealth Hotline: confirmed."]
    assert len(sms.confirm.calls) == 1
    assert len(sms.audit("test.handled")) == 1
    assert sms.inbound_count() == 1


def test_concurrent_copies_of_one_answer_run_the_handler_once(sms: Sms) -> None:
    sms.ask()
    sid = "SMrace00000000000000000000000000002"
    replies: list[str | None] = []
    start = threading.Barrier(3)

    def post() -> None:
        start.wait()
        replies.append(
            sms.inbound.receive(
                provider="twilio", message_id=sid, sender=CALLER, recipient=HOTLINE, body="1"
            )
        )

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [sms.confirm.reply] * 3
    assert len(sms.audit("test.handled")) == 1
    assert len(sms.audit("sms.reply")) == 1


def test_the_most_recent_question_to_that_number_gets_the_answer(sms: Sms) -> None:
    sms.ask("test.confirm", context={"booking_id": 1})
    sms.clock.advance(60)
    sms.ask("test.other", context={"booking_id": 2})
    sms.clock.advance(60)
    sms.ask("test.confirm", to=OTHER, context={"booking_id": 3})
    assert sms.send("1") == [sms.other.reply]
    assert sms.other.calls == [({"booking_id": 2}, "1")]
    assert sms.confirm.calls == []


def test_an_answer_after_the_reply_window_gets_the_polite_reply(sms: Sms) -> None:
    sms.ask()
    window = sms.config.settings.messaging.reply_window_hours
    sms.clock.advance(timedelta(hours=window).total_seconds() - 1)
    sms.send("1")
    assert len(sms.confirm.calls) == 1
    sms.clock.advance(1)
    assert sms.send("1") == [POLITE_REPLY]
    assert len(sms.confirm.calls) == 1


@pytest.mark.parametrize("status", [None, "undelivered", "failed"], ids=str)
def test_a_question_that_was_not_sent_is_not_answered(sms: Sms, status: str | None) -> None:
    sms.ask(status=status)
    assert sms.send("1") == [POLITE_REPLY]
    assert sms.confirm.calls == []


@pytest.mark.parametrize("status", ["queued", "sent", "delivered"])
def test_a_question_the_provider_took_can_be_answered(sms: Sms, status: str) -> None:
    sms.ask(status=status)
    assert sms.send("1") == [sms.confirm.reply]


def test_a_handler_may_answer_nothing(sms: Sms) -> None:
    sms.confirm.reply = None
    sms.ask()
    assert sms.send("1") == []
    assert len(sms.confirm.calls) == 1


def test_a_failing_handler_keeps_the_message_and_undoes_only_its_own_work(
    sms: Sms, caplog: pytest.LogCaptureFixture
) -> None:
    sms.confirm.fail = True
    sms.ask()
    sid = "SMfail0000000000000000000000000001"
    assert sms.send("1", sid=sid) == [REPLY_FAILED]
    zh_then_en(REPLY_FAILED)
    assert sms.audit("test.handled") == []  # rolled back with the handler
    assert sms.inbound_count() == 1  # the resident's message is kept
    [entry] = sms.audit("sms.reply_failed")
    assert entry.detail["reply"] == REPLY_FAILED
    assert "test.confirm" in caplog.text
    # A retry does not run the handler again and gets the same answer.
    sms.confirm.fail = False
    assert sms.send("1", sid=sid) == [REPLY_FAILED]
    assert len(sms.confirm.calls) == 1


def test_an_unregistered_handler_gets_the_polite_reply(sms: Sms) -> None:
    sms.ask("test.nobody")
    assert sms.send("1") == [POLITE_REPLY]


def test_without_a_question_numbers_get_the_polite_reply(sms: Sms) -> None:
    assert sms.send("1") == [POLITE_REPLY]
    sms.ask(to=OTHER)
    assert sms.send("1") == [POLITE_REPLY]
    assert sms.confirm.calls == []


@pytest.mark.parametrize("body", ["好的", "1 2", "123", "one", "1号"])
def test_other_text_to_a_question_gets_the_polite_reply(sms: Sms, body: str) -> None:
    sms.ask()
    assert sms.send(body) == [POLITE_REPLY]
    assert sms.confirm.calls == []


def test_an_opt_out_wins_over_a_waiting_question(sms: Sms) -> None:
    sms.ask()
    assert sms.send("TD") == [OPT_OUT_REPLY]
    assert sms.confirm.calls == []
    assert sms.opted_out() is not None


def test_logs_hold_no_phone_number_or_message_text(
    sms: Sms, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sms.ask()
    for body in ["TD", "订阅", "1", "我的名字是张三"]:
        sms.send(body)
    assert caplog.records
    assert CALLER not in caplog.text
    assert CALLER[3:] not in caplog.text
    assert "张三" not in caplog.text
