"""The per-number frequency cap on non-essential messages, on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.db.models import SmsOptOut
from callcenter.messaging.outbox import DEFERRED_CAP, DEFERRED_QUIET, Outbox
from tests.conftest import make_config

from .helpers import PHONE, FakeSender, dispatcher, enqueue, row

OTHER = "+8613900139000"
#: 09:00 in Shanghai: the day's first hours in UTC are outside quiet hours there.
START = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """The test configuration with the cap at 3, whatever the suite's default."""
    return make_config(database_url, tmp_path, messaging={"max_non_essential_per_day": 3})


@dataclass(frozen=True)
class Msg:
    """One message in a scenario: written (and dispatched) ``hours`` after :data:`START`."""

    hours: float
    to: str = PHONE
    essential: bool = False
    urgent: bool = False
    #: ``sent``, ``suppressed``, or ``deferred:N`` (until message N's sending + 24 h)
    expect: str = "sent"


def _article(outbox: Outbox, db: Database, now: datetime, key: str, m: Msg) -> int:
    return enqueue(
        outbox,
        db,
        now,
        key,
        to_e164=m.to,
        template="article",
        language="en",
        params={"title": "Flu", "text": "Rest."},
        sealed={},
        essential=m.essential,
        urgent=m.urgent,
    )


SCENARIOS: dict[str, list[Msg]] = {
    "under the cap all go": [Msg(0), Msg(1), Msg(2)],
    "the 4th within 24 h waits for the 1st to age out": [
        Msg(0),
        Msg(1),
        Msg(2),
        Msg(3, expect="deferred:0"),
    ],
    "essential and urgent are never capped": [
        Msg(0),
        Msg(1),
        Msg(2),
        Msg(3, essential=True),
        Msg(4, urgent=True),
        Msg(5, essential=True, urgent=True),
    ],
    "essential and urgent do not use the quota": [
        Msg(0, essential=True),
        Msg(0.5, urgent=True),
        Msg(1),
        Msg(2),
        Msg(3),
        Msg(4, expect="deferred:2"),
    ],
    "the window rolls": [Msg(0), Msg(1), Msg(2), Msg(24.5), Msg(24.6, expect="deferred:1")],
    "numbers are independent": [Msg(0), Msg(1), Msg(2), Msg(3, to=OTHER), Msg(4, to=OTHER)],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS), ids=list(SCENARIOS))
def test_frequency_cap_scenarios(
    config: Config, outbox: Outbox, msg_db: Database, scenario: str
) -> None:
    clock = FakeClock(START)
    sender = FakeSender()
    d = dispatcher(config, outbox, sender, clock)
    ids: list[int] = []
    for n, m in enumerate(SCENARIOS[scenario]):
        clock.set(START + timedelta(hours=m.hours))
        ids.append(_article(outbox, msg_db, clock.now(), f"{scenario}-{n}", m))
        d.drain()
    sent_ids = [s.outbox_id for s in sender.sent]
    for n, m in enumerate(SCENARIOS[scenario]):
        r = row(msg_db, ids[n])
        if m.expect == "sent":
            assert ids[n] in sent_ids, n
            assert r.sent_at is not None
            assert r.last_error is None
        else:
            assert ids[n] not in sent_ids, n
            first = row(msg_db, ids[int(m.expect.split(":")[1])]).sent_at
            assert first is not None
            assert r.status == "pending"
            assert r.not_before == first + timedelta(hours=24)
            assert r.last_error == DEFERRED_CAP
            assert r.attempts == 0


def test_deferred_message_goes_out_when_the_slot_frees(
    config: Config, outbox: Outbox, msg_db: Database
) -> None:
    clock = FakeClock(START)
    sender = FakeSender()
    d = dispatcher(config, outbox, sender, clock)
    ids = []
    for n in range(4):
        ids.append(_article(outbox, msg_db, clock.now(), f"k{n}", Msg(0)))
    d.drain()  # one batch: the cap also counts what this batch claims
    assert [s.outbox_id for s in sender.sent] == ids[:3]
    held = row(msg_db, ids[3])
    first = row(msg_db, ids[0]).sent_at
    assert first is not None
    # claimed in the same batch, the first one counts from its claim (a moment before sending)
    assert held.not_before is not None
    assert START + timedelta(hours=24) <= held.not_before <= first + timedelta(hours=24)
    assert held.last_error == DEFERRED_CAP
    clock.set(first + timedelta(hours=24) - timedelta(seconds=1))
    assert d.drain() == 0
    clock.set(first + timedelta(hours=24))
    d.drain()
    assert [s.outbox_id for s in sender.sent] == ids
    done = row(msg_db, ids[3])
    assert done.status == "queued"
    assert done.last_error is None


def test_opt_out_wins_over_the_cap(config: Config, outbox: Outbox, msg_db: Database) -> None:
    clock = FakeClock(START)
    sender = FakeSender()
    d = dispatcher(config, outbox, sender, clock)
    ids = [_article(outbox, msg_db, clock.now(), f"o{n}", Msg(0)) for n in range(3)]
    d.drain()
    with msg_db.transaction() as s:
        s.add(SmsOptOut(phone_e164=PHONE, opted_out_at=clock.now(), keyword="TD", source="sms"))
    late = _article(outbox, msg_db, clock.now(), "o-late", Msg(0))
    d.drain()
    assert [s.outbox_id for s in sender.sent] == ids
    assert row(msg_db, late).status == "suppressed"


def test_cap_follows_the_setting(msg_db: Database, database_url: str, tmp_path: Path) -> None:
    config = make_config(database_url, tmp_path, messaging={"max_non_essential_per_day": 1})
    outbox = Outbox.from_config(config, msg_db)
    clock = FakeClock(START)
    sender = FakeSender()
    d = dispatcher(config, outbox, sender, clock)
    a = _article(outbox, msg_db, clock.now(), "s1", Msg(0))
    b = _article(outbox, msg_db, clock.now(), "s2", Msg(0))
    d.drain()
    assert [s.outbox_id for s in sender.sent] == [a]
    assert row(msg_db, b).last_error == DEFERRED_CAP


def test_quiet_hours_deferral_records_its_reason(
    config: Config, outbox: Outbox, msg_db: Database
) -> None:
    clock = FakeClock(datetime(2026, 11, 26, 14, 30, tzinfo=UTC))  # 22:30 in Shanghai
    oid = _article(outbox, msg_db, clock.now(), "q", Msg(0))
    dispatcher(config, outbox, FakeSender(), clock).drain()
    r = row(msg_db, oid)
    assert (r.status, r.last_error) == ("pending", DEFERRED_QUIET)
