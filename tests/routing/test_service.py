"""The routing service on a real database: presence persisted, offers under row locks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import RoutingConfig
from callcenter.db.engine import Database, is_sqlite
from callcenter.routing.models import RoutingAgent, RoutingCaller
from callcenter.routing.router import (
    MISSED_OFFERS,
    AgentSetAway,
    AgentState,
    IllegalAgentTransition,
    Offer,
    RingNoAnswer,
    WrapUpEnded,
)
from callcenter.routing.service import RoutingService, UnknownQueue


@pytest.fixture
def routing(services: Services) -> RoutingService:
    """The wired routing service on the test database and fake clock."""
    return services.routing


def _agent(db: Database, agent_id: str) -> RoutingAgent:
    with db.transaction() as session:
        row = session.get(RoutingAgent, agent_id)
        assert row is not None
        return row


def _caller(db: Database, caller_id: str) -> RoutingCaller:
    with db.transaction() as session:
        row = session.get(RoutingCaller, caller_id)
        assert row is not None
        return row


def test_sign_in_enqueue_dispatch_offers_the_right_agent_and_persists_it(
    routing: RoutingService, db: Database, clock: FakeClock
) -> None:
    routing.agent_sign_in("gen", levels={"general": 0})
    routing.agent_sign_in("book", skills={"booking": 5}, levels={"booking": 0, "general": 1})
    routing.enqueue_caller("CA1", "booking")
    clock.advance(1)
    offers = routing.dispatch()
    assert [(o.caller_id, o.agent_id, o.queue) for o in offers] == [("CA1", "book", "booking")]
    agent = _agent(db, "book")
    assert agent.state == "reserved"
    assert agent.offer == "CA1"
    assert agent.state_since == clock.now()
    caller = _caller(db, "CA1")
    assert caller.status == "offered"
    assert caller.offered_agent == "book"
    assert caller.offered_at == clock.now()
    assert _agent(db, "gen").state == "available"
    # Nothing more to offer: the caller is ringing, the other agent does not serve booking.
    assert routing.dispatch() == []


def test_sign_in_refuses_an_unknown_queue_and_a_second_sign_in(routing: RoutingService) -> None:
    with pytest.raises(UnknownQueue):
        routing.agent_sign_in("a", levels={"nope": 0})
    routing.agent_sign_in("a", levels={"general": 0})
    with pytest.raises(IllegalAgentTransition):
        routing.agent_sign_in("a")
    with pytest.raises(UnknownQueue):
        routing.enqueue_caller("CA1", "nope")


def test_answer_end_call_and_wrap_up_through_tick(
    routing: RoutingService, db: Database, clock: FakeClock
) -> None:
    routing.agent_sign_in("a", levels={"general": 0})
    routing.enqueue_caller("CA1", "general")
    clock.advance(5)
    (offer,) = routing.dispatch()
    clock.advance(3)
    assert routing.answer(offer)
    assert _agent(db, "a").state == "on_call"
    caller = _caller(db, "CA1")
    assert (caller.status, caller.answered_by) == ("answered", "a")
    clock.advance(60)
    agent = routing.end_call("a")
    assert agent.state is AgentState.WRAP_UP
    row = _agent(db, "a")
    assert (row.state, row.calls_today, row.offer) == ("wrap_up", 1, None)
    assert row.wrap_up_until == clock.now() + timedelta(seconds=30)
    assert _caller(db, "CA1").ended_at == clock.now()
    clock.advance(29)
    assert routing.tick() == []
    clock.advance(1)
    (event,) = routing.tick()
    assert isinstance(event, WrapUpEnded)
    row = _agent(db, "a")
    assert (row.state, row.wrap_up_until) == ("available", None)


def test_ring_no_answer_returns_the_caller_and_offers_the_next_agent(
    routing: RoutingService, db: Database, clock: FakeClock
) -> None:
    routing.agent_sign_in("a", levels={"general": 0})
    clock.advance(1)
    routing.agent_sign_in("b", levels={"general": 0})
    routing.enqueue_caller("CA1", "general")
    (offer,) = routing.dispatch()
    assert offer.agent_id == "a"  # longest idle
    clock.advance(15)
    (event,) = routing.tick()
    assert isinstance(event, RingNoAnswer)
    assert (event.caller_id, event.agent_id) == ("CA1", "a")
    row = _agent(db, "a")
    assert (row.state, row.missed_in_row, row.offer) == ("available", 1, None)
    caller = _caller(db, "CA1")
    assert (caller.status, caller.offered_agent, caller.tried) == ("waiting", None, ["a"])
    # A stale offer cannot be answered.
    assert not routing.answer(offer)
    (again,) = routing.dispatch()
    assert again.agent_id == "b"


def test_away_after_missed_offers_persists(
    routing: RoutingService, db: Database, clock: FakeClock
) -> None:
    routing.agent_sign_in("a", levels={"general": 0})
    routing.enqueue_caller("CA1", "general")
    events = []
    for _ in range(3):
        assert len(routing.dispatch()) == 1
        clock.advance(15)
        events = routing.tick()
    assert [type(e) for e in events] == [RingNoAnswer, AgentSetAway]
    row = _agent(db, "a")
    assert (row.state, row.state_reason, row.missed_in_row) == ("away", MISSED_OFFERS, 3)
    assert _caller(db, "CA1").status == "waiting"
    assert routing.dispatch() == []
    routing.set_state("a", AgentState.AVAILABLE)
    row = _agent(db, "a")
    assert (row.state, row.state_reason, row.missed_in_row) == ("available", None, 0)
    assert len(routing.dispatch()) == 1


def test_away_with_reason_drops_a_ringing_offer_and_sign_out(
    routing: RoutingService, db: Database
) -> None:
    routing.agent_sign_in("a", levels={"general": 0})
    routing.enqueue_caller("CA1", "general")
    routing.dispatch()
    routing.set_state("a", AgentState.AWAY, "lunch")
    row = _agent(db, "a")
    assert (row.state, row.state_reason, row.offer) == ("away", "lunch", None)
    assert _caller(db, "CA1").status == "waiting"
    routing.agent_sign_out("a")
    assert _agent(db, "a").state == "offline"
    with pytest.raises(ValueError, match="set by calls"):
        routing.set_state("a", AgentState.ON_CALL)


def test_caller_left_while_ringing_releases_the_agent(
    routing: RoutingService, db: Database
) -> None:
    routing.agent_sign_in("a", levels={"general": 0})
    routing.enqueue_caller("CA1", "general", callback_number="+8613800000000")
    (offer,) = routing.dispatch()
    assert offer.callback
    assert routing.caller_left("CA1")
    assert not routing.caller_left("CA1")
    row = _agent(db, "a")
    assert (row.state, row.offer, row.missed_in_row) == ("available", None, 0)
    assert _caller(db, "CA1").status == "abandoned"


def test_status_figures(routing: RoutingService, clock: FakeClock) -> None:
    routing.agent_sign_in("a", levels={"general": 0})
    routing.agent_sign_in("b", levels={"general": 0}, skills={"booking": 1})
    routing.set_state("b", AgentState.AWAY, "meeting")
    # Answered after 10 s (in target) and after 30 s (not); one abandoned; one waiting.
    routing.enqueue_caller("CA1", "general")
    clock.advance(10)
    (offer,) = routing.dispatch()
    assert routing.answer(offer)
    routing.end_call("a")
    clock.advance(30)
    routing.tick()
    routing.enqueue_caller("CA2", "general")
    clock.advance(30)
    (offer,) = routing.dispatch()
    assert routing.answer(offer)
    routing.enqueue_caller("CA3", "general")
    clock.advance(5)
    routing.caller_left("CA3")
    routing.enqueue_caller("CA4", "general")
    clock.advance(12)
    status = routing.status()
    general = next(q for q in status.queues if q.queue == "general")
    assert (general.waiting, general.offered, general.longest_wait_s) == (1, 0, 12.0)
    assert general.agents["on_call"] == 1
    assert general.agents["away"] == 1
    assert (general.answered, general.answered_in_target, general.abandoned) == (2, 1, 1)
    assert general.service_level == 0.5
    assert general.service_level2 == pytest.approx(1 / 3)
    assert general.abandon_rate == pytest.approx(1 / 3)
    assert general.asa_s == 20.0
    assert [q.queue for q in status.queues] == ["general", "info", "booking", "urgent"]


def test_queues_status_command(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    from callcenter import cli

    services.routing.agent_sign_in("a", levels={"general": 0})
    services.routing.enqueue_caller("CA1", "urgent", red_flag=True)
    monkeypatch.setattr(cli, "_services", lambda _state: services)
    runner = CliRunner()
    table = runner.invoke(cli.main, ["queues", "status"])
    assert table.exit_code == 0, table.output
    assert "general" in table.output
    assert "urgent" in table.output
    as_json = runner.invoke(cli.main, ["queues", "status", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert '"queue": "urgent"' in as_json.output


# ---------------------------------------------------------------- concurrency


@pytest.fixture
def handles(database_url: str, clock: FakeClock) -> Iterator[list[RoutingService]]:
    """Two routing services, each with its own database handle (two web workers)."""
    dbs = [Database.from_url(database_url) for _ in range(2)]
    yield [RoutingService(d, clock, RoutingConfig()) for d in dbs]
    for d in dbs:
        d.dispose()


def _race(services: list[RoutingService]) -> list[Offer]:
    barrier = threading.Barrier(len(services))
    results: list[list[Offer]] = [[] for _ in services]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = services[i].dispatch()
        except BaseException as exc:  # reported by the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(services))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return [o for offers in results for o in offers]


@pytest.mark.parametrize("callers", [1, 2])
def test_concurrent_dispatch_makes_one_offer_per_agent_and_caller(
    handles: list[RoutingService], clock: FakeClock, callers: int
) -> None:
    first, _ = handles
    for round_ in range(5):
        agent_id = f"a{round_}"
        first.agent_sign_in(agent_id, levels={"general": 0})
        for n in range(callers):
            first.enqueue_caller(f"CA{round_}-{n}", "general")
        offers = _race(handles)
        assert len(offers) == 1, offers
        assert offers[0].agent_id == agent_id
        with first.db.transaction() as session:
            offered = session.scalars(
                select(RoutingCaller).where(RoutingCaller.status == "offered")
            ).all()
            assert [c.id for c in offered] == [offers[0].caller_id]
            agent = session.get(RoutingAgent, agent_id)
            assert agent is not None
            assert agent.offer == offers[0].caller_id
        # Clear the round: the call is answered and the agent signs out after wrap-up.
        assert first.answer(offers[0])
        first.end_call(agent_id)
        first.agent_sign_out(agent_id)
        for n in range(callers):
            first.caller_left(f"CA{round_}-{n}")


def test_dispatch_skips_an_agent_another_worker_holds(
    handles: list[RoutingService], clock: FakeClock
) -> None:
    first, second = handles
    if is_sqlite(first.db.engine):
        pytest.skip("SQLite serialises whole transactions; row locks are PostgreSQL's")
    first.agent_sign_in("a", levels={"general": 0})
    first.enqueue_caller("CA1", "general")
    with first.db.connection() as conn:
        conn.execute(text("SELECT id FROM routing_agents WHERE id = 'a' FOR UPDATE"))
        assert second.dispatch() == []
    first.enqueue_caller("CA2", "general")
    with first.db.connection() as conn:
        conn.execute(text("SELECT id FROM routing_callers WHERE id = 'CA1' FOR UPDATE"))
        (offer,) = second.dispatch()
    assert (offer.caller_id, offer.agent_id) == ("CA2", "a")


def test_queues_agent_commands(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    from callcenter import cli

    monkeypatch.setattr(cli, "_services", lambda _state: services)
    runner = CliRunner()
    args = ["queues", "agent", "sign-in", "a", "--queue", "general", "--queue", "booking:1"]
    result = runner.invoke(cli.main, [*args, "--skill", "booking:4", "--language", "en"])
    assert result.exit_code == 0, result.output
    assert "agent a: available" in result.output
    row = _agent(services.db, "a")
    assert (row.levels, row.skills, row.languages) == (
        {"general": 0, "booking": 1},
        {"booking": 4},
        ["en"],
    )
    result = runner.invoke(cli.main, ["queues", "agent", "away", "a", "--reason", "lunch"])
    assert "agent a: away (lunch)" in result.output
    result = runner.invoke(cli.main, ["queues", "agent", "available", "a"])
    assert "agent a: available" in result.output
    result = runner.invoke(cli.main, ["queues", "agent", "sign-out", "a"])
    assert "agent a: offline" in result.output
    refused = runner.invoke(cli.main, ["queues", "agent", "sign-out", "a"])
    assert refused.exit_code == 1
    assert "refused" in refused.output
    unknown = runner.invoke(cli.main, ["queues", "agent", "away", "nobody"])
    assert unknown.exit_code == 1
    bad = runner.invoke(cli.main, ["queues", "agent", "sign-in", "b", "--queue", "general:x"])
    assert bad.exit_code == 2
