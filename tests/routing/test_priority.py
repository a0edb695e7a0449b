"""Caller priority rules (elderly callers, repeat callers today), ``calls_today`` starting
again at local midnight, and "today" figures in the instance's time zone.

The fake clock stands at Thursday 2026-11-26 09:00 Shanghai (01:00 UTC); local midnight is
16:00 UTC the day before.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import RoutingPriorityConfig
from callcenter.db.engine import Database
from callcenter.db.models import Call
from callcenter.routing.models import RoutingAgent, RoutingCaller
from callcenter.routing.priority import (
    CallerFacts,
    age_on,
    birth_date_from_id,
    caller_priority,
)
from callcenter.routing.service import RoutingService
from tests.booking.conftest import cn_id

TZ = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 11, 26)
RULES = RoutingPriorityConfig()  # elderly_age 75 -> 5, repeat caller -> 3


def local(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=TZ)


def born(years_ago: int, days: int = 0) -> str:
    """YYYYMMDD of someone ``years_ago`` years old today, born ``days`` later than that."""
    return (TODAY.replace(year=TODAY.year - years_ago) + timedelta(days=days)).strftime("%Y%m%d")


# ---------------------------------------------------------------- the rules (pure)


@pytest.mark.parametrize(
    ("facts", "asked", "value", "reasons"),
    [
        (CallerFacts(), 0, 0, ()),
        # by the ID number keyed in the menu
        (CallerFacts(id_number=cn_id(1, born(80))), 0, 5, ("elderly",)),
        (CallerFacts(id_number=cn_id(2, born(75))), 0, 5, ("elderly",)),  # 75 today
        (CallerFacts(id_number=cn_id(3, born(75, days=1))), 0, 0, ()),  # 75 tomorrow
        (CallerFacts(id_number=cn_id(4, born(40))), 0, 0, ()),
        # a wrong check character is not an ID number: nothing is read from it
        (CallerFacts(id_number=cn_id(5, born(80))[:17] + "0"), 0, 0, ()),
        (CallerFacts(id_number="1101051940"), 0, 0, ()),
        # a known resident's birth date
        (CallerFacts(birth_date=date(1945, 3, 1)), 0, 5, ("elderly",)),
        (CallerFacts(birth_date=date(1990, 3, 1)), 0, 0, ()),
        # called earlier today from the same number
        (CallerFacts(earlier_calls_today=1), 0, 3, ("repeat_caller",)),
        (CallerFacts(earlier_calls_today=4), 0, 3, ("repeat_caller",)),
        # both: the highest rule wins
        (
            CallerFacts(earlier_calls_today=1, birth_date=date(1940, 1, 1)),
            0,
            5,
            ("elderly",),
        ),
        # the IVR's own priority stays when higher
        (CallerFacts(birth_date=date(1940, 1, 1)), 9, 9, ()),
        (CallerFacts(earlier_calls_today=2), 1, 3, ("repeat_caller",)),
    ],
)
def test_caller_priority(
    facts: CallerFacts, asked: int, value: int, reasons: tuple[str, ...]
) -> None:
    got = caller_priority(RULES, facts, TODAY, asked=asked)
    assert (got.value, got.reasons) == (value, reasons)


@pytest.mark.parametrize(
    ("rules", "facts", "value"),
    [
        (RoutingPriorityConfig(elderly=0), CallerFacts(birth_date=date(1930, 1, 1)), 0),
        (RoutingPriorityConfig(repeat_caller=0), CallerFacts(earlier_calls_today=3), 0),
        (RoutingPriorityConfig(elderly_age=65), CallerFacts(birth_date=date(1960, 1, 1)), 5),
        (
            RoutingPriorityConfig(elderly=2, repeat_caller=7),
            CallerFacts(birth_date=date(1930, 1, 1), earlier_calls_today=1),
            7,
        ),
    ],
)
def test_rules_come_from_the_configuration(
    rules: RoutingPriorityConfig, facts: CallerFacts, value: int
) -> None:
    assert caller_priority(rules, facts, TODAY).value == value


@pytest.mark.parametrize(
    ("born_on", "on", "age"),
    [
        (date(1951, 11, 26), date(2026, 11, 26), 75),
        (date(1951, 11, 27), date(2026, 11, 26), 74),
        (date(1952, 2, 29), date(2027, 2, 28), 74),
        (date(1952, 2, 29), date(2027, 3, 1), 75),
    ],
)
def test_age_on(born_on: date, on: date, age: int) -> None:
    assert age_on(born_on, on) == age


def test_birth_date_from_id() -> None:
    assert birth_date_from_id(cn_id(7, "19500102")) == date(1950, 1, 2)
    assert birth_date_from_id(cn_id(7, "19500102").lower()) == date(1950, 1, 2)
    assert birth_date_from_id("") is None
    assert birth_date_from_id("11010519501302001X") is None


# ---------------------------------------------------------------- applied when enqueued


def add_call(db: Database, sid: str, caller: str | None, at: datetime) -> None:
    with db.transaction() as s:
        s.add(
            Call(
                provider="twilio",
                provider_call_id=sid,
                direction="inbound",
                from_e164=caller,
                language="zh-CN",
                started_at=at,
            )
        )


def priority_of(db: Database, call_id: str) -> int:
    with db.transaction() as s:
        row = s.get(RoutingCaller, call_id)
        assert row is not None
        return row.priority


CALLER = "+8613812345678"


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        ([], 0),
        ([("08:30", CALLER)], 3),  # this morning
        ([("00:05", CALLER)], 3),  # just after local midnight (16:05 UTC the day before)
        ([("-23:55", CALLER)], 0),  # yesterday evening, local time
        ([("08:30", "+8613900000000")], 0),  # someone else
        ([("08:30", None)], 0),  # a withheld number
    ],
)
def test_a_repeat_caller_today_is_enqueued_with_priority(
    services: Services,
    clock: FakeClock,
    earlier: list[tuple[str, str | None]],
    expected: int,
) -> None:
    for n, (at, number) in enumerate(earlier):
        day = TODAY - timedelta(days=1) if at.startswith("-") else TODAY
        add_call(services.db, f"CAold{n}", number, local(day, at.lstrip("-")))
    add_call(services.db, "CAnow", CALLER, clock.now())
    services.routing.enqueue_caller("CAnow", "general")
    assert priority_of(services.db, "CAnow") == expected


def test_an_elderly_caller_by_id_number_is_offered_before_an_earlier_caller(
    services: Services, clock: FakeClock
) -> None:
    routing = services.routing
    add_call(services.db, "CAyoung", "+8613800000001", clock.now())
    routing.enqueue_caller("CAyoung", "general")
    clock.advance(30)
    add_call(services.db, "CAold", "+8613800000002", clock.now())
    routing.enqueue_caller("CAold", "general", facts=CallerFacts(id_number=cn_id(9, born(78))))
    routing.agent_sign_in("a1", levels={"general": 0})
    (offer,) = routing.dispatch()
    assert offer.caller_id == "CAold"
    assert priority_of(services.db, "CAold") == 5
    assert priority_of(services.db, "CAyoung") == 0


def test_red_flag_still_goes_first(services: Services, clock: FakeClock) -> None:
    routing = services.routing
    routing.enqueue_caller("CAold", "general", facts=CallerFacts(birth_date=date(1930, 1, 1)))
    clock.advance(5)
    routing.enqueue_caller("CAred", "general", red_flag=True)
    routing.agent_sign_in("a1", levels={"general": 0})
    (offer,) = routing.dispatch()
    assert offer.caller_id == "CAred"


# ---------------------------------------------------------------- calls today, local midnight


def one_call(routing: RoutingService, clock: FakeClock, agent: str, call_id: str) -> int:
    """Enqueue, offer, answer and end one call for ``agent``; their calls_today after it."""
    routing.enqueue_caller(call_id, "general")
    offers = routing.dispatch()
    assert [(o.caller_id, o.agent_id) for o in offers] == [(call_id, agent)]
    assert routing.accept(agent, call_id)
    clock.advance(60)
    ended = routing.end_call(agent)
    clock.advance(routing.settings.wrap_up_s)
    routing.tick()
    return ended.calls_today


@pytest.mark.parametrize(
    ("first_end", "second_end", "count"),
    [
        ((0, "21:00"), (0, "21:30"), 2),  # the same evening
        ((0, "23:50"), (1, "00:10"), 1),  # across local midnight: a new day
        ((0, "15:00"), (1, "09:00"), 1),  # the next morning
        ((0, "07:59"), (0, "08:01"), 2),  # across UTC midnight (00:00 UTC = 08:00 local)
    ],
)
def test_calls_today_starts_again_at_local_midnight(
    services: Services,
    clock: FakeClock,
    first_end: tuple[int, str],
    second_end: tuple[int, str],
    count: int,
) -> None:
    routing = services.routing
    clock.set(local(TODAY + timedelta(days=first_end[0]), first_end[1]) - timedelta(seconds=61))
    routing.agent_sign_in("a1", levels={"general": 0})
    assert one_call(routing, clock, "a1", "CA1") == 1
    clock.set(local(TODAY + timedelta(days=second_end[0]), second_end[1]) - timedelta(seconds=61))
    assert one_call(routing, clock, "a1", "CA2") == count


def test_fewest_calls_counts_only_today(services: Services, clock: FakeClock) -> None:
    """Yesterday's busy agent has taken no call today: they are offered the first one."""
    settings = services.config.settings.routing
    queues = {"general": settings.queues["general"].model_copy(update={"strategy": "fewest_calls"})}
    routing = RoutingService(
        services.db, clock, settings.model_copy(update={"queues": queues}), timezone=TZ
    )
    routing.agent_sign_in("busy_yesterday", levels={"general": 0})
    routing.agent_sign_in("one_today", levels={"general": 0})
    with services.db.transaction() as s:
        s.execute(
            update(RoutingAgent)
            .where(RoutingAgent.id == "busy_yesterday")
            .values(calls_today=40, last_call_end=local(TODAY - timedelta(days=1), "21:50"))
        )
        s.execute(
            update(RoutingAgent)
            .where(RoutingAgent.id == "one_today")
            .values(calls_today=1, last_call_end=local(TODAY, "08:30"))
        )
    routing.enqueue_caller("CA1", "general")
    (offer,) = routing.dispatch()
    assert offer.agent_id == "busy_yesterday"
    with services.db.transaction() as s:
        row = s.get(RoutingAgent, "busy_yesterday")
        assert row is not None
        assert row.calls_today == 0


# ---------------------------------------------------------------- today's figures, local day


@pytest.mark.parametrize(
    ("queued_at", "counted"),
    [
        ((0, "08:30"), True),
        ((0, "00:30"), True),  # 16:30 UTC the day before: still today in Shanghai
        ((-1, "23:30"), False),  # yesterday evening local (15:30 UTC)
    ],
)
def test_today_figures_are_for_the_local_day(
    services: Services, clock: FakeClock, queued_at: tuple[int, str], counted: bool
) -> None:
    at = local(TODAY + timedelta(days=queued_at[0]), queued_at[1])
    with services.db.transaction() as s:
        s.add(
            RoutingCaller(
                id="CA1",
                queue="general",
                enqueued_at=at,
                status="answered",
                answered_at=at + timedelta(seconds=5),
                tried=[],
            )
        )
    status = services.routing.status()
    assert status.since == local(TODAY, "00:00")
    assert status.since.astimezone(UTC) == datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    general = next(q for q in status.queues if q.queue == "general")
    assert general.answered == (1 if counted else 0)
