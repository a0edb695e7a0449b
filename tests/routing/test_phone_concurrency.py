"""Routing on the phone under concurrency, on the real database (run it with
``TEST_DATABASE=postgresql``: row locks with SKIP LOCKED; SQLite serialises writers):
several router loops and webhooks at once still make one offer per agent and per caller,
one connect per answer, one expert per escalation, one dial per expert. And the callback
rules: never ahead of a caller who waited longer, never more dialled than free agents."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.db.models import Call
from callcenter.routing.escalation import EscalationError
from callcenter.routing.models import RoutingCaller

THREADS = 4


@dataclass
class FakeControl:
    """A thread-safe recording call-control port."""

    dials: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def dial(self, to: str, answer_url: str, status_url: str, timeout_s: int) -> str:
        with self.lock:
            self.dials.append((to, answer_url))
            return f"CL{len(self.dials):032d}"

    def redirect(self, call_id: str, url: str) -> None:
        return None

    def hangup(self, call_id: str) -> None:
        return None


@pytest.fixture
def control(services: Services) -> FakeControl:
    fake = FakeControl()
    services.phone.control = fake
    return fake


def at_once(work: Callable[[int], Any], n: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads released together; results (or exceptions) by i."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def agents(services: Services, clock: FakeClock, *ids: str) -> None:
    for agent_id in ids:
        services.routing.agent_sign_in(agent_id, levels={"general": 0})
        services.phone.set_agent_contact(agent_id, f"sip:{agent_id}@pbx.example.org")
        clock.advance(1)


def rows(services: Services) -> dict[str, RoutingCaller]:
    with services.db.transaction() as session:
        return {c.id: c for c in session.query(RoutingCaller)}


def test_loops_racing_for_one_caller_dial_one_agent(
    services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agents(services, clock, "a1", "a2", "a3", "a4")
    services.routing.enqueue_caller("CA1", "general")
    reports = at_once(lambda _i: services.phone.run_once())
    assert not [r for r in reports if isinstance(r, Exception)], reports
    assert sum(r.offers for r in reports) == 1
    assert len(control.dials) == 1
    states = [a.state for a in services.phone.agents()]
    assert sorted(states) == ["available", "available", "available", "reserved"]


def test_loops_racing_for_one_agent_offer_it_once(
    services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agents(services, clock, "a1")
    for n in range(4):
        services.routing.enqueue_caller(f"CA{n}", "general")
        clock.advance(1)
    reports = at_once(lambda _i: services.phone.run_once())
    assert not [r for r in reports if isinstance(r, Exception)], reports
    assert len(control.dials) == 1
    offered = [c.id for c in rows(services).values() if c.status == "offered"]
    assert offered == ["CA0"]  # the one who waited longest


def test_an_agent_pressing_several_times_at_once_connects_the_caller_once(
    services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agents(services, clock, "a1")
    services.routing.enqueue_caller("CA1", "general")
    services.phone.run_once()
    results = at_once(lambda _i: services.phone.agent_accepted("CA1", "a1"))
    # Every press hears the same conference; only one moves the caller.
    assert results == ["hh-CA1"] * THREADS
    assert services.phone.pending_tasks() == [("connect", {"call": "CA1"})]


def test_experts_racing_to_accept_one_escalation_one_wins(
    services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agents(services, clock, "a1")
    services.routing.enqueue_caller("CA1", "general")
    (offer,) = services.routing.dispatch()
    services.routing.accept(offer.agent_id, offer.caller_id)
    esc = services.escalations
    for n in range(THREADS):
        esc.expert_sign_in(f"dr{n}", specialty="cardiology", contact=f"sip:dr{n}@pbx.example.org")
    opened = esc.open("CA1", "a1", "cardiology", None, "question")
    results = at_once(lambda i: esc.accept(f"dr{i}", opened.id))
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(e, EscalationError) for e in losers), losers
    busy = [e.id for e in esc.experts() if e.state == "busy"]
    assert busy == [winners[0].expert_id]
    # Loops racing to dial the expert dial once.
    reports = at_once(lambda _i: services.phone.run_once())
    assert sum(r.experts_dialled for r in reports) == 1
    assert [to for to, _url in control.dials if to.startswith("sip:dr")] == [
        f"sip:{winners[0].expert_id}@pbx.example.org"
    ]


def test_a_callback_never_overtakes_a_caller_who_waited_longer(
    services: Services, clock: FakeClock, control: FakeControl
) -> None:
    routing = services.routing
    routing.enqueue_caller("CA-early", "general")
    clock.advance(30)
    # A caller who queued later and asked for a callback keeps that later time.
    routing.enqueue_caller("CA-cb", "general")
    with services.db.transaction() as session:
        session.add(
            Call(
                provider="twilio",
                provider_call_id="CA-cb",
                from_e164="+8613800138000",
                language="zh-CN",
                started_at=clock.now(),
            )
        )
    assert services.phone.request_callback("CA-cb").accepted
    clock.advance(30)
    agents(services, clock, "a1")
    services.phone.run_once()
    status = {c.id: c.status for c in rows(services).values()}
    assert status == {"CA-early": "offered", "CA-cb": "waiting"}


def test_never_more_callbacks_dialled_than_free_agents(
    services: Services, clock: FakeClock, control: FakeControl
) -> None:
    routing = services.routing
    for n in range(5):
        routing.enqueue_caller(f"CB{n}", "general", callback_number=f"+861380013{n:04d}")
        clock.advance(1)
    agents(services, clock, "a1", "a2")
    reports = at_once(lambda _i: services.phone.run_once())
    assert sum(r.offers for r in reports) == 2
    offered = sorted(c.id for c in rows(services).values() if c.status == "offered")
    assert offered == ["CB0", "CB1"]
    # Each callback reserves its agent first: the agents are rung, no caller is dialled yet.
    assert sorted(to for to, _url in control.dials) == [
        "sip:a1@pbx.example.org",
        "sip:a2@pbx.example.org",
    ]
