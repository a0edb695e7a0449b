"""The dispatcher on a fake clock: sending, retries, opt-outs, quiet hours, leases, sealing."""

from __future__ import annotations

import itertools
import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.db.models import SmsOptOut
from callcenter.messaging.dispatcher import backoff_delay
from callcenter.messaging.outbox import Outbox
from callcenter.messaging.ports import SendError
from callcenter.messaging.quiet_hours import quiet_until, recipient_zone
from tests.conftest import make_config

from .helpers import PHONE, FakeSender, attempts, dispatcher, enqueue, row

PASSWORD = "73915604"


def _all_columns(db: Database) -> str:
    with db.connection() as conn:
        rows = conn.execute(text("SELECT * FROM outbox")).all()
        rows += conn.execute(text("SELECT * FROM outbox_attempts")).all()
    return repr([tuple(r) for r in rows])


def test_sends_renders_and_records(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = enqueue(outbox, msg_db, clock.now(), "b1", essential=True)
    sender = FakeSender()
    assert dispatcher(config, outbox, sender, clock).drain() == 1
    [sent] = sender.sent
    assert sent.body.startswith("【健康热线】预约成功：瑞金医院心内科")
    assert f"密码{PASSWORD}" in sent.body
    assert sent.segments == 2
    assert sent.status_callback == f"https://hotline.example.org/twilio/sms/status?o={oid}"
    r = row(msg_db, oid)
    assert r.status == "queued"
    assert r.provider == "fake"
    assert r.provider_id is not None
    assert r.provider_id.startswith("SM")
    assert r.attempts == 1
    assert r.segments == 2
    assert r.sent_at is not None
    assert r.sealed is None
    assert PASSWORD not in _all_columns(msg_db)
    [a] = attempts(msg_db, oid)
    assert (a.result, a.provider_id, a.worker) == ("accepted", r.provider_id, "test-worker")
    assert a.finished_at is not None


def test_call_goes_to_the_answer_url(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = enqueue(
        outbox,
        msg_db,
        clock.now(),
        "recall",
        channel="call",
        template="waiting_room_recall",
        params={},
        sealed={},
        urgent=True,
    )
    sender = FakeSender()
    dispatcher(config, outbox, sender, clock).drain()
    [sent] = sender.sent
    assert sent.kind == "call"
    assert sent.answer_url == f"https://hotline.example.org/twilio/voice/outbound?o={oid}"
    assert sent.status_callback == f"https://hotline.example.org/twilio/voice/status?o={oid}"
    assert row(msg_db, oid).status == "queued"


def test_not_sent_before_due(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = enqueue(outbox, msg_db, clock.now(), "later", due_at=clock.now() + timedelta(hours=1))
    sender = FakeSender()
    d = dispatcher(config, outbox, sender, clock)
    assert d.drain() == 0
    clock.advance(3600)
    assert d.drain() == 1
    assert [s.outbox_id for s in sender.sent] == [oid]


# ---------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (SendError("server error", code="20500"), True),
        (SendError("too many", code="20429", retry_after_s=2), True),
        (SendError("timeout", code="timeout"), True),
        (SendError("invalid number", code="21211", permanent=True), False),
        (SendError("unsubscribed", code="21610", permanent=True), False),
        (SendError("landline", code="30006", permanent=True), False),
        (SendError("not mobile", code="21614", permanent=True), False),
        (SendError("region", code="21408", permanent=True), False),
    ],
)
def test_retry_or_fail(
    config: Config,
    outbox: Outbox,
    msg_db: Database,
    clock: FakeClock,
    error: SendError,
    retried: bool,
) -> None:
    oid = enqueue(outbox, msg_db, clock.now(), "r1")
    sender = FakeSender(script=lambda _id, n: error if n == 1 else None)
    d = dispatcher(config, outbox, sender, clock)
    d.drain()
    r = row(msg_db, oid)
    assert r.last_error_code == error.code
    if not retried:
        assert r.status == "failed"
        assert r.sealed is None
        assert r.finished_at is not None
        assert [a.result for a in attempts(msg_db, oid)] == ["permanent"]
        assert [m.id for m in _failed(outbox, msg_db)] == [oid]
        return
    assert r.status == "pending"
    assert r.sealed is not None
    assert r.not_before is not None
    assert r.not_before > clock.now()
    clock.set(r.not_before)
    d.drain()
    assert row(msg_db, oid).status == "queued"
    assert [a.result for a in attempts(msg_db, oid)] == ["transient", "accepted"]


def _failed(outbox: Outbox, db: Database) -> list:
    with db.transaction() as s:
        return outbox.failed(s)


def test_attempts_are_capped_then_failed_row_is_visible(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = enqueue(outbox, msg_db, clock.now(), "cap")
    sender = FakeSender(script=lambda _id, _n: SendError("provider down", code="20503"))
    d = dispatcher(config, outbox, sender, clock)
    for _ in range(20):
        d.drain()
        clock.advance(config.settings.messaging.backoff_max_s)
    cap = config.settings.messaging.max_attempts
    assert len(sender.sent) == cap
    r = row(msg_db, oid)
    assert r.status == "failed"
    assert r.attempts == cap
    assert "after 6 attempts" in (r.last_error or "")
    assert r.sealed is None
    [failed] = _failed(outbox, msg_db)
    assert failed.id == oid
    assert failed.last_error_code == "20503"
    assert failed.to_masked == "+86 138****8000"


def test_retry_after_is_honoured(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = enqueue(outbox, msg_db, clock.now(), "ra")
    error = SendError("slow down", code="20429", retry_after_s=600)
    dispatcher(
        config, outbox, FakeSender(script=lambda _i, n: error if n == 1 else None), clock
    ).drain()
    r = row(msg_db, oid)
    assert r.not_before is not None
    assert r.not_before >= clock.now() + timedelta(seconds=600)


def test_backoff_grows_with_full_jitter_within_bounds() -> None:
    rng = random.Random(7)
    base, cap = 5.0, 900.0
    means = []
    for attempt in range(1, 10):
        ceiling = min(cap, base * 2 ** (attempt - 1))
        samples = [backoff_delay(attempt, base, cap, rng) for _ in range(2000)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > 0.9 * ceiling  # spread over the whole range
        assert min(samples) < 0.1 * ceiling
        assert len(set(samples)) > 1900  # jittered, not a fixed schedule
        means.append(sum(samples) / len(samples))
    assert all(b > a for a, b in itertools.pairwise(means))
    assert means[-1] == pytest.approx(cap / 2, rel=0.1)


def test_unexpected_sender_exception_is_transient(
    config: Config,
    outbox: Outbox,
    msg_db: Database,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    oid = enqueue(outbox, msg_db, clock.now(), "boom")

    class Broken(FakeSender):
        def send_sms(self, message):  # type: ignore[no-untyped-def]
            raise RuntimeError(f"adapter bug for {message.to_e164}")

    with caplog.at_level(logging.INFO):
        dispatcher(config, outbox, Broken(), clock).drain()
    r = row(msg_db, oid)
    assert r.status == "pending"
    assert r.last_error_code == "error"
    assert PHONE not in (r.last_error or "")
    assert PHONE not in caplog.text


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("template", "params", "reason"),
    [
        ("no_such_template", {}, "unknown SMS template sms.no_such_template"),
        ("booking_confirmed", {"hospital": "瑞金医院"}, "needs a value for {department}"),
    ],
)
def test_bad_template_fails_that_message_only(
    config: Config,
    outbox: Outbox,
    msg_db: Database,
    clock: FakeClock,
    template: str,
    params: dict[str, str],
    reason: str,
) -> None:
    bad = enqueue(outbox, msg_db, clock.now(), "bad", template=template, params=params)
    good = enqueue(outbox, msg_db, clock.now(), "good")
    sender = FakeSender()
    dispatcher(config, outbox, sender, clock).drain()
    assert [s.outbox_id for s in sender.sent] == [good]
    r = row(msg_db, bad)
    assert r.status == "failed"
    assert r.last_error_code == "template"
    assert reason in (r.last_error or "")
    assert r.sealed is None


def test_changed_secret_key_fails_clearly(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock, tmp_path
) -> None:
    oid = enqueue(outbox, msg_db, clock.now(), "rotated")
    other = Outbox(msg_db, type(outbox.sealer)("another-key"), outbox.settings)
    sender = FakeSender()
    dispatcher(config, other, sender, clock).drain()
    assert sender.sent == []
    r = row(msg_db, oid)
    assert r.status == "failed"
    assert "cannot be opened" in (r.last_error or "")


# ---------------------------------------------------------------- opt-out


def _opt_out(db: Database, phone: str, at: datetime) -> None:
    with db.transaction() as s:
        s.add(SmsOptOut(phone_e164=phone, opted_out_at=at, keyword="TD", source="sms"))


def test_opted_out_number_gets_only_essential_messages(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    _opt_out(msg_db, PHONE, clock.now())
    reminder = enqueue(outbox, msg_db, clock.now(), "reminder", essential=False)
    confirmation = enqueue(outbox, msg_db, clock.now(), "confirmation", essential=True)
    sender = FakeSender()
    dispatcher(config, outbox, sender, clock).drain()
    assert [s.outbox_id for s in sender.sent] == [confirmation]
    r = row(msg_db, reminder)
    assert r.status == "suppressed"
    assert r.sealed is None
    assert r.finished_at is not None
    assert attempts(msg_db, reminder) == []


def test_opt_out_after_claim_is_checked_at_send_time(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    """Claimed, waiting for its moment, then the resident replies TD: not sent."""
    config = make_config(
        config.settings.database.url, config.data_dir, messaging={"sms": {"per_second": 1}}
    )
    outbox = Outbox.from_config(config, msg_db)
    first = enqueue(outbox, msg_db, clock.now(), "m1", to_e164="+8613900139000")
    second = enqueue(outbox, msg_db, clock.now(), "m2")  # 2 segments: waits for its moment
    opted = []

    def sleep(seconds: float) -> None:
        if not opted and seconds > 0.5:
            _opt_out(msg_db, PHONE, clock.now())
            opted.append(clock.now())
        clock.advance(seconds)

    sender = FakeSender()
    dispatcher(config, outbox, sender, clock, sleep=sleep).drain()
    assert opted, "the second message should have waited for the rate limit"
    assert [s.outbox_id for s in sender.sent] == [first]
    assert row(msg_db, second).status == "suppressed"


# ---------------------------------------------------------------- quiet hours


def test_quiet_hours_defer_non_urgent_until_quiet_end(
    config: Config, outbox: Outbox, msg_db: Database
) -> None:
    clock = FakeClock(datetime(2026, 11, 26, 14, 30, tzinfo=UTC))  # 22:30 in Shanghai
    reminder = enqueue(outbox, msg_db, clock.now(), "reminder")
    recall = enqueue(outbox, msg_db, clock.now(), "recall", urgent=True)
    sender = FakeSender()
    d = dispatcher(config, outbox, sender, clock)
    d.drain()
    assert [s.outbox_id for s in sender.sent] == [recall]
    r = row(msg_db, reminder)
    assert r.status == "pending"
    assert r.not_before == datetime(2026, 11, 27, 0, 0, tzinfo=UTC)  # 08:00 Shanghai
    assert r.attempts == 0
    clock.set(datetime(2026, 11, 26, 23, 59, tzinfo=UTC))
    assert d.drain() == 0
    clock.set(datetime(2026, 11, 27, 0, 0, tzinfo=UTC))
    d.drain()
    assert [s.outbox_id for s in sender.sent] == [recall, reminder]


def test_quiet_hours_use_the_recipients_zone(
    config: Config, outbox: Outbox, msg_db: Database
) -> None:
    clock = FakeClock(datetime(2026, 11, 26, 14, 30, tzinfo=UTC))  # 22:30 Shanghai, 09:30 NY
    ny = enqueue(
        outbox,
        msg_db,
        clock.now(),
        "ny",
        to_e164="+12125551234",
        language="en",
        params={"title": "Flu", "text": "Rest."},
        template="article",
        sealed={},
    )
    sender = FakeSender()
    dispatcher(config, outbox, sender, clock).drain()
    assert [s.outbox_id for s in sender.sent] == [ny]


def test_replies_during_a_call_are_not_held_for_quiet_hours(
    config: Config, outbox: Outbox, msg_db: Database
) -> None:
    """A caller who asks for the guide at 22:30 gets it now (the row names the call)."""
    clock = FakeClock(datetime(2026, 11, 26, 14, 30, tzinfo=UTC))
    with msg_db.connection() as conn:
        conn.execute(
            text(
                "INSERT INTO calls (provider, provider_call_id, direction, language, status,"
                " priority, red_flag, started_at) VALUES ('twilio', 'CA1', 'inbound', 'zh-CN',"
                " 'in-progress', 0, false, :t)"
            ),
            {"t": clock.now()},
        )
        call_id = conn.execute(text("SELECT id FROM calls")).scalar_one()
    oid = enqueue(
        outbox,
        msg_db,
        clock.now(),
        "guide",
        template="service_guide",
        params={},
        sealed={},
        call_id=call_id,
    )
    sender = FakeSender()
    dispatcher(config, outbox, sender, clock).drain()
    assert [s.outbox_id for s in sender.sent] == [oid]


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-11-26 20:59", None),
        ("2026-11-26 21:00", "2026-11-27 08:00"),
        ("2026-11-26 23:59", "2026-11-27 08:00"),
        ("2026-11-27 00:00", "2026-11-27 08:00"),
        ("2026-11-27 07:59", "2026-11-27 08:00"),
        ("2026-11-27 08:00", None),
        ("2026-11-27 12:00", None),
    ],
)
def test_quiet_window_table(local: str, expected: str | None) -> None:
    zone = recipient_zone("+8613800138000", "UTC")
    now = datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=zone)
    until = quiet_until(now, zone, "21:00", "08:00")
    if expected is None:
        assert until is None
    else:
        assert until == datetime.strptime(expected, "%Y-%m-%d %H:%M").replace(tzinfo=zone)
    assert quiet_until(now, zone, "08:00", "08:00") is None


def test_recipient_zone_falls_back_when_ambiguous() -> None:
    assert str(recipient_zone("+12125551234", "Asia/Shanghai")) == "America/New_York"
    assert str(recipient_zone("+15555550100", "Asia/Shanghai")) == "Asia/Shanghai"
    assert str(recipient_zone("+8621612345678", "Asia/Shanghai")) == "Asia/Shanghai"


# ---------------------------------------------------------------- leases and crashes


def test_a_dead_workers_claim_comes_back_after_the_lease(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = enqueue(outbox, msg_db, clock.now(), "lease")
    dead = dispatcher(config, outbox, FakeSender(), clock, worker_id="dead")
    jobs, _ = dead._claim()
    assert dead._begin(jobs[0])  # attempt row committed, then the worker is killed
    r = row(msg_db, oid)
    assert (r.status, r.claimed_by, r.attempts) == ("claimed", "dead", 1)
    sender = FakeSender()
    alive = dispatcher(config, outbox, sender, clock, worker_id="alive")
    assert alive.drain() == 0  # the lease still holds
    clock.advance(config.settings.messaging.lease_s + 1)
    assert alive.drain() == 1
    assert [s.outbox_id for s in sender.sent] == [oid]
    first, second = attempts(msg_db, oid)
    assert (first.worker, first.result) == ("dead", "unknown")
    assert (second.worker, second.result) == ("alive", "accepted")
    with msg_db.transaction() as s:
        unknown = outbox.unknown_attempts(s)
    assert [(u.outbox_id, u.attempt) for u in unknown] == [(oid, 1)]


def test_stale_worker_cannot_overwrite_the_new_owner(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    """A worker stalled past its lease reports a failure: the new owner's state stands."""
    oid = enqueue(outbox, msg_db, clock.now(), "stale")
    slow = dispatcher(config, outbox, FakeSender(), clock, worker_id="slow")
    jobs, _ = slow._claim()
    assert slow._begin(jobs[0])
    clock.advance(config.settings.messaging.lease_s + 1)
    dispatcher(config, outbox, FakeSender(), clock, worker_id="fast").drain()
    slow._failed(jobs[0], SendError("late failure", code="20500"))
    r = row(msg_db, oid)
    assert r.status == "queued"
    assert r.claimed_by == "fast"


def test_stop_hands_the_rest_of_the_batch_back(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    config = make_config(
        config.settings.database.url,
        config.data_dir,
        # four messages to one number: the daily cap is not what this test is about
        messaging={"sms": {"per_second": 1}, "max_non_essential_per_day": 100},
    )
    outbox = Outbox.from_config(config, msg_db)
    ids = [enqueue(outbox, msg_db, clock.now(), f"s{i}") for i in range(4)]
    sender = FakeSender()
    d = dispatcher(config, outbox, sender, clock)
    sender.hook = lambda _oid, _sid: d.stop()  # SIGTERM while the first message is sent
    d.run_once()
    assert [s.outbox_id for s in sender.sent] == ids[:1]
    assert row(msg_db, ids[0]).status == "queued"
    for oid in ids[1:]:
        r = row(msg_db, oid)
        assert (r.status, r.claim_token, r.attempts) == ("pending", None, 0)
    sender2 = FakeSender()
    dispatcher(config, outbox, sender2, clock).drain()
    assert sorted(s.outbox_id for s in sender2.sent) == ids[1:]


def test_cancelled_while_claimed_is_not_sent(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    oid = enqueue(outbox, msg_db, clock.now(), "gone")
    d = dispatcher(config, outbox, FakeSender(), clock)
    jobs, _ = d._claim()
    with msg_db.transaction() as s:
        assert outbox.cancel(s, "gone", now=clock.now())
    assert d._begin(jobs[0]) is False
    assert row(msg_db, oid).status == "cancelled"


def test_status_callback_racing_the_worker_is_kept(
    config: Config, outbox: Outbox, msg_db: Database, clock: FakeClock
) -> None:
    """The provider calls back 'sent' before the worker commits 'queued'."""
    oid = enqueue(outbox, msg_db, clock.now(), "race")
    sender = FakeSender()
    sender.hook = lambda o, sid: (
        outbox.record_status("fake", sid, "sent", outbox_id=o, now=clock.now()) and None
    )
    dispatcher(config, outbox, sender, clock).drain()
    r = row(msg_db, oid)
    assert r.status == "sent"
    assert r.provider_id is not None
    assert r.sent_at is not None
    assert r.claim_token is None
    assert r.sealed is None


# ---------------------------------------------------------------- channels


def _calls_then_sms(outbox: Outbox, db: Database, clock: FakeClock) -> tuple[list[int], list[int]]:
    """A burst of urgent calls written first, then SMS due at the same moment."""
    calls = [
        enqueue(
            outbox,
            db,
            clock.now(),
            f"recall-{n}",
            channel="call",
            template="waiting_room_recall",
            params={},
            sealed={},
            urgent=True,
            to_e164=f"+861380013{n:04d}",
        )
        for n in range(20)
    ]
    sms = [
        enqueue(outbox, db, clock.now(), f"sms-{n}", to_e164=f"+861390013{n:04d}")
        for n in range(10)
    ]
    return calls, sms


@pytest.mark.parametrize(
    ("channels", "sms_wait_at_least_s", "sms_wait_below_s"),
    [
        # one loop for both: the SMS wait behind the oldest calls, paced at 1 call a second
        (None, 15.0, None),
        # a loop of its own: the SMS go at their own rate while the calls wait for theirs
        (["sms"], None, 2.0),
    ],
)
def test_calls_paced_at_their_rate_hold_up_sms_only_in_a_shared_loop(
    database_url: str,
    tmp_path: Path,
    clock: FakeClock,
    channels: list[str] | None,
    sms_wait_at_least_s: float | None,
    sms_wait_below_s: float | None,
) -> None:
    config = make_config(
        database_url,
        tmp_path,
        messaging={"sms": {"per_second": 10}, "calls": {"per_second": 1}},
    )
    db = Database.from_url(config.database_url)
    try:
        outbox = Outbox.from_config(config, db)
        calls, sms = _calls_then_sms(outbox, db, clock)
        start = clock.now()
        sender = FakeSender()
        d = dispatcher(config, outbox, sender, clock, channels=channels)
        sent_at: dict[int, datetime] = {}
        sender.hook = lambda oid, _kind: sent_at.setdefault(oid, clock.now())
        d.drain()
        last_sms = max((sent_at[o] - start).total_seconds() for o in sms)
        if sms_wait_at_least_s is not None:
            assert last_sms >= sms_wait_at_least_s
        if sms_wait_below_s is not None:
            assert last_sms < sms_wait_below_s
            assert not any(o in sent_at for o in calls)  # left for the call loop
            dispatcher(config, outbox, sender, clock, channels=["call"]).drain()
            assert all(o in sent_at for o in calls)
        assert sorted(s.outbox_id for s in sender.sent) == sorted(calls + sms)
    finally:
        db.dispose()
