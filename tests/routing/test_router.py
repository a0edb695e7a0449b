"""The pure router, table-driven with a FakeClock: no database, no wall clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.clock import FakeClock
from callcenter.routing.router import (
    AGENT_TRANSITIONS,
    MISSED_OFFERS,
    Agent,
    AgentSetAway,
    AgentState,
    Caller,
    IllegalAgentTransition,
    Queue,
    RingNoAnswer,
    Router,
    RouterSettings,
    RoutingError,
    Strategy,
    WrapUpEnded,
    answer,
    caller_order,
    end_call,
    mark_tried,
    release,
    set_available,
    set_away,
    sign_in,
    sign_out,
    transition,
)

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
AV = AgentState.AVAILABLE


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def agent(
    aid: str,
    state: AgentState = AV,
    idle_since: float = -100,
    levels: Mapping[str, int] | None = None,
    skills: Mapping[str, int] | None = None,
    languages: frozenset[str] = frozenset({"zh", "en"}),
    calls: int = 0,
) -> Agent:
    return Agent(
        aid,
        state=state,
        state_since=at(idle_since),
        last_call_end=at(idle_since),
        levels=levels if levels is not None else {"general": 0},
        skills=skills or {},
        languages=languages,
        calls_today=calls,
    )


def caller(
    cid: str,
    waited: float = 10,
    queue: str = "general",
    priority: int = 0,
    red_flag: bool = False,
    callback: bool = False,
    tried: frozenset[str] = frozenset(),
) -> Caller:
    # The clock stands at T0 + 100 s in every case below.
    return Caller(cid, queue, at(100 - waited), priority, red_flag, callback, tried)


@dataclass(frozen=True)
class Case:
    name: str
    agents: tuple[Agent, ...]
    callers: tuple[Caller, ...]
    expected: tuple[tuple[str, str], ...]  # (caller, agent) in decision order
    queues: tuple[Queue, ...] = field(default=(Queue("general"),))


GENERAL = Queue("general")
CASES = [
    Case(
        "longest idle agent takes the caller",
        (agent("a1", idle_since=50), agent("a2", idle_since=10), agent("a3", idle_since=30)),
        (caller("c1"),),
        (("c1", "a2"),),
    ),
    Case(
        "no free agent: no offer",
        (agent("a1", AgentState.ON_CALL), agent("a2", AgentState.WRAP_UP)),
        (caller("c1"),),
        (),
    ),
    Case(
        "reserved, away and offline agents are not free",
        (
            agent("a1", AgentState.RESERVED),
            agent("a2", AgentState.AWAY),
            agent("a3", AgentState.OFFLINE),
            agent("a4"),
        ),
        (caller("c1"), caller("c2", waited=5)),
        (("c1", "a4"),),
    ),
    Case(
        "FIFO: longest waiting first, one agent per caller, one caller per agent",
        (agent("a1", idle_since=0), agent("a2", idle_since=5)),
        (caller("c1", waited=5), caller("c2", waited=50), caller("c3", waited=20)),
        (("c2", "a1"), ("c3", "a2")),
    ),
    Case(
        "priority before waiting time",
        (agent("a1"),),
        (caller("old", waited=90), caller("vip", waited=1, priority=5)),
        (("vip", "a1"),),
    ),
    Case(
        "red flag before any priority",
        (agent("a1"), agent("a2", idle_since=0)),
        (
            caller("vip", waited=90, priority=50),
            caller("red", waited=1, red_flag=True),
            caller("old", waited=95),
        ),
        (("red", "a1"), ("vip", "a2")),
    ),
    Case(
        "fewest calls today",
        (agent("a1", calls=9), agent("a2", calls=3, idle_since=50), agent("a3", calls=3)),
        (caller("c1"),),
        (("c1", "a3"),),
        (Queue("general", strategy=Strategy.FEWEST_CALLS),),
    ),
    Case(
        "most proficient in the queue's skills",
        (
            agent("a1", skills={"cardio": 2, "zh": 5}),
            agent("a2", skills={"cardio": 5}, idle_since=60),
            agent("a3", skills={"cardio": 3}),
        ),
        (caller("c1"),),
        (("c1", "a2"),),
        (Queue("general", skills=frozenset({"cardio"}), strategy=Strategy.SKILL_PROFICIENCY),),
    ),
    Case(
        "agents without a required skill or the language are not eligible",
        (
            agent("a1", skills={"peds": 1}),
            agent("a2", skills={"cardio": 1}, languages=frozenset({"en"})),
            agent("a3", skills={"cardio": 1}, idle_since=90),
        ),
        (caller("c1"),),
        (("c1", "a3"),),
        (Queue("general", language="zh", skills=frozenset({"cardio"})),),
    ),
    Case(
        "an agent not in the queue's tiers is not eligible",
        (agent("a1", levels={"other": 0}),),
        (caller("c1"),),
        (),
    ),
    Case(
        "level 1 is closed before level_wait_s of waiting",
        (agent("l0", AgentState.ON_CALL), agent("l1", levels={"general": 1})),
        (caller("c1", waited=29),),
        (),
        (Queue("general", level_wait_s=30),),
    ),
    Case(
        "level 1 opens after 1 x level_wait_s",
        (agent("l0", AgentState.ON_CALL), agent("l1", levels={"general": 1})),
        (caller("c1", waited=30),),
        (("c1", "l1"),),
        (Queue("general", level_wait_s=30),),
    ),
    Case(
        "level 2 opens after 2 x level_wait_s, not before",
        (
            agent("l0", AgentState.ON_CALL),
            agent("l1", AgentState.ON_CALL, levels={"general": 1}),
            agent("l2", levels={"general": 2}),
        ),
        (caller("c1", waited=59), caller("c2", waited=30)),
        (),
        (Queue("general", level_wait_s=30),),
    ),
    Case(
        "the lower open level wins over a longer idle higher level",
        (agent("l0", idle_since=90), agent("l1", levels={"general": 1}, idle_since=-500)),
        (caller("c1", waited=80),),
        (("c1", "l0"),),
        (Queue("general", level_wait_s=30),),
    ),
    Case(
        "an empty level (all offline or away) is skipped and not charged",
        (
            agent("l0", AgentState.OFFLINE),
            agent("l0b", AgentState.AWAY),
            agent("l1", levels={"general": 1}),
        ),
        (caller("c1", waited=0),),
        (("c1", "l1"),),
        (Queue("general", level_wait_s=30),),
    ),
    Case(
        "an empty level 0 below a busy level 1: level 2 opens after 1 x level_wait_s",
        (
            agent("l0", AgentState.AWAY),
            agent("l1", AgentState.ON_CALL, levels={"general": 1}),
            agent("l2", levels={"general": 2}),
        ),
        (caller("c1", waited=30), caller("c2", waited=29)),
        (("c1", "l2"),),
        (Queue("general", level_wait_s=30),),
    ),
    Case(
        "with skipping off, an empty level still costs its wait",
        (agent("l0", AgentState.OFFLINE), agent("l1", levels={"general": 1})),
        (caller("c1", waited=10),),
        (),
        (Queue("general", level_wait_s=30, skip_empty_levels=False),),
    ),
    Case(
        "a busy level is not empty: the overflow level waits",
        (agent("l0", AgentState.ON_CALL), agent("l1", levels={"general": 1})),
        (caller("c1", waited=10),),
        (),
        (Queue("general", level_wait_s=30),),
    ),
    Case(
        "the next offer after a ring-no-answer goes to another agent",
        (agent("a1", idle_since=0), agent("a2", idle_since=50)),
        (caller("c1", tried=frozenset({"a1"})),),
        (("c1", "a2"),),
    ),
    Case(
        "a caller whose offer is ringing is not offered a second agent",
        (agent("a1"), replace(agent("a2", AgentState.RESERVED), offer="c1")),
        (caller("c1", waited=90), caller("c2", waited=5)),
        (("c2", "a1"),),
    ),
    Case(
        "when every free agent has been tried, a tried one is offered again",
        (agent("a1"),),
        (caller("c1", tried=frozenset({"a1"})),),
        (("c1", "a1"),),
    ),
    Case(
        "callers of another queue get that queue's agents",
        (agent("g1", idle_since=0), agent("p1", levels={"peds": 0}, idle_since=50)),
        (caller("c1", waited=90), caller("k1", queue="peds", waited=5)),
        (("c1", "g1"), ("k1", "p1")),
        (GENERAL, Queue("peds")),
    ),
    Case(
        "a caller no agent can take does not block the callers behind",
        (agent("g1"),),
        (caller("k1", queue="peds", waited=90), caller("c1", waited=5)),
        (("c1", "g1"),),
        (GENERAL, Queue("peds")),
    ),
    # Callbacks: dialled only for a free agent, never before someone who waited longer,
    # never more than there are free agents.
    Case(
        "a callback waits behind a live caller who waited longer",
        (agent("a1"),),
        (caller("cb", waited=40, callback=True), caller("live", waited=60)),
        (("live", "a1"),),
    ),
    Case(
        "a callback keeps its original queue time and goes before newer live callers",
        (agent("a1"),),
        (caller("cb", waited=600, callback=True), caller("live", waited=60)),
        (("cb", "a1"),),
    ),
    Case(
        "no free agent: no callback is dialled",
        (agent("a1", AgentState.ON_CALL), agent("a2", AgentState.RESERVED)),
        (caller("cb1", waited=900, callback=True),),
        (),
    ),
    Case(
        "never more callbacks than free agents",
        (agent("a1", idle_since=0), agent("a2", idle_since=10), agent("a3", AgentState.ON_CALL)),
        tuple(caller(f"cb{i}", waited=900 - i, callback=True) for i in range(6)),
        (("cb0", "a1"), ("cb1", "a2")),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case) -> None:
    clock = FakeClock(at(100))
    router = Router(clock)
    offers = router.decide(case.queues, case.callers, case.agents)
    assert [(o.caller_id, o.agent_id) for o in offers] == list(case.expected)
    by_id = {c.id: c for c in case.callers}
    for offer in offers:
        assert offer.agent_after.state is AgentState.RESERVED
        assert offer.agent_after.offer == offer.caller_id
        assert offer.agent_after.state_since == at(100)
        assert offer.ring_deadline == at(115)
        assert offer.callback is by_id[offer.caller_id].callback
    callbacks = [o for o in offers if o.callback]
    free = [a for a in case.agents if a.state is AgentState.AVAILABLE]
    assert len(callbacks) <= len(free)
    assert len({o.agent_id for o in offers}) == len(offers)


def test_decide_rejects_an_unknown_queue_and_negative_levels() -> None:
    router = Router(FakeClock(at(100)))
    with pytest.raises(RoutingError):
        router.decide([GENERAL], [caller("c1", queue="nope")], [agent("a1")])
    with pytest.raises(RoutingError):
        router.decide([GENERAL], [caller("c1")], [agent("a1", levels={"general": -1})])
    with pytest.raises(RoutingError):
        router.decide([GENERAL, GENERAL], [caller("c1")], [agent("a1")])


def test_ring_no_answer_moves_to_the_next_agent_and_three_misses_set_away() -> None:
    clock = FakeClock(at(100))
    router = Router(clock, RouterSettings(ring_timeout_s=15, max_missed=3))
    agents = {"a1": agent("a1", idle_since=0), "a2": agent("a2", idle_since=50)}
    c1 = caller("c1", waited=10)
    for miss in (1, 2, 3):
        # a1 is the longest idle, so it is offered first each round; a2 must never ring
        # while the offer to a1 is still ringing.
        (offer,) = router.decide([GENERAL], [c1], [agents["a1"]])
        agents["a1"] = offer.agent_after
        clock.advance(14.9)
        assert router.tick(agents.values()) == []
        clock.advance(0.1)
        events = router.tick(agents.values())
        assert isinstance(events[0], RingNoAnswer)
        assert (events[0].caller_id, events[0].agent_id) == ("c1", "a1")
        agents["a1"] = events[-1].agent_after
        assert agents["a1"].missed_in_row == miss
        if miss < 3:
            assert len(events) == 1
            assert agents["a1"].state is AgentState.AVAILABLE
            # The caller remembers a1: the next offer goes to a2.
            tried = mark_tried(c1, "a1")
            (nxt,) = router.decide([GENERAL], [tried], agents.values())
            assert nxt.agent_id == "a2"
        else:
            assert isinstance(events[1], AgentSetAway)
            assert events[1].missed == 3
            assert agents["a1"].state is AgentState.AWAY
            assert agents["a1"].away_reason == MISSED_OFFERS
    # Away agents get no offers; back from away, the counter starts again.
    assert router.decide([GENERAL], [c1], [agents["a1"]]) == []
    back = set_available(agents["a1"], clock.now())
    assert back.missed_in_row == 0
    assert router.decide([GENERAL], [c1], [back])[0].agent_id == "a1"


def test_answering_resets_the_miss_counter() -> None:
    a = replace(agent("a1"), missed_in_row=2)
    reserved = transition(a, AgentState.RESERVED, at(0), offer="c1")
    assert answer(reserved, at(3)).missed_in_row == 0


def test_wrap_up_timer_returns_the_agent_to_available() -> None:
    clock = FakeClock(at(100))
    router = Router(clock, RouterSettings(wrap_up_s=30))
    a = answer(transition(agent("a1"), AgentState.RESERVED, at(0), offer="c1"), at(2))
    a = end_call(a, at(100), router.settings.wrap_up_s)
    assert (a.state, a.calls_today, a.last_call_end) == (AgentState.WRAP_UP, 1, at(100))
    assert router.decide([GENERAL], [caller("c2")], [a]) == []
    clock.advance(29)
    assert router.tick([a]) == []
    assert router.next_wakeup([GENERAL], [], [a]) == at(130)
    clock.advance(1)
    (event,) = router.tick([a])
    assert isinstance(event, WrapUpEnded)
    assert event.agent_after.state is AgentState.AVAILABLE
    assert event.agent_after.wrap_up_until is None


def test_next_wakeup_is_the_next_level_opening_or_ring_timeout() -> None:
    clock = FakeClock(at(100))
    router = Router(clock)
    queue = Queue("general", level_wait_s=30)
    agents = [agent("l0", AgentState.ON_CALL), agent("l1", levels={"general": 1})]
    assert router.next_wakeup([queue], [caller("c1", waited=10)], agents) == at(120)
    ringing = transition(agent("a9"), AgentState.RESERVED, at(95), offer="c9")
    assert router.next_wakeup([queue], [caller("c1", waited=10)], [*agents, ringing]) == at(110)
    assert router.next_wakeup([queue], [], []) is None


def test_release_returns_a_ringing_agent_without_a_miss() -> None:
    reserved = transition(agent("a1"), AgentState.RESERVED, at(0), offer="c1")
    freed = release(reserved, at(5))
    assert (freed.state, freed.offer, freed.missed_in_row) == (AV, None, 0)


# ---------------------------------------------------------------- presence transitions

ALL_MOVES = [(src, dst) for src in AgentState for dst in AgentState]


@pytest.mark.parametrize(("src", "dst"), ALL_MOVES, ids=[f"{s}->{d}" for s, d in ALL_MOVES])
def test_agent_transition_table(src: AgentState, dst: AgentState) -> None:
    a = agent("a1", src)
    if dst in AGENT_TRANSITIONS[src]:
        moved = transition(a, dst, at(1))
        assert (moved.state, moved.state_since) == (dst, at(1))
        assert a.state is src  # values are never mutated
    else:
        with pytest.raises(IllegalAgentTransition) as info:
            transition(a, dst, at(1))
        assert (info.value.current, info.value.target) == (src, dst)


def test_named_presence_changes() -> None:
    a = sign_in(agent("a1", AgentState.OFFLINE), at(0))
    assert a.state is AV
    away = set_away(a, at(1), "lunch")
    assert (away.state, away.away_reason) == (AgentState.AWAY, "lunch")
    assert sign_out(away, at(2)).state is AgentState.OFFLINE
    with pytest.raises(IllegalAgentTransition):
        end_call(a, at(3), 30)
    with pytest.raises(TypeError):
        transition(a, AgentState.AWAY, at(4), bogus=1)


# ---------------------------------------------------------------- invariants, any input

_STATES = st.sampled_from(list(AgentState))
_SKILLS = st.sampled_from(["peds", "cardio"])
_QUEUES = (
    Queue("general", level_wait_s=30),
    Queue("peds", language="zh", skills=frozenset({"peds"}), strategy=Strategy.FEWEST_CALLS),
    Queue("cardio", skills=frozenset({"cardio"}), strategy=Strategy.SKILL_PROFICIENCY),
)


@st.composite
def _scene(draw: st.DrawFn) -> tuple[list[Agent], list[Caller]]:
    agents = []
    for i in range(draw(st.integers(0, 12))):
        names = draw(st.lists(st.sampled_from([q.name for q in _QUEUES]), unique=True))
        agents.append(
            agent(
                f"a{i}",
                draw(_STATES),
                idle_since=draw(st.integers(-500, 100)),
                levels={n: draw(st.integers(0, 2)) for n in names},
                skills={
                    s: draw(st.integers(1, 5))
                    for s in draw(st.sets(st.sampled_from(["peds", "cardio"])))
                },
                languages=draw(st.sampled_from([frozenset({"zh"}), frozenset({"en"})])),
                calls=draw(st.integers(0, 5)),
            )
        )
    callers = [
        caller(
            f"c{i}",
            waited=draw(st.integers(0, 120)),
            queue=draw(st.sampled_from([q.name for q in _QUEUES])),
            priority=draw(st.sampled_from([0, 0, 5])),
            red_flag=draw(st.booleans()),
            callback=draw(st.booleans()),
        )
        for i in range(draw(st.integers(0, 12)))
    ]
    return agents, callers


@settings(max_examples=300, deadline=None)
@given(_scene())
def test_decide_invariants(scene: tuple[list[Agent], list[Caller]]) -> None:
    agents, callers = scene
    router = Router(FakeClock(at(100)))
    offers = router.decide(_QUEUES, callers, agents)
    by_agent = {a.id: a for a in agents}
    free = {a.id for a in agents if a.state is AV}
    assert len({o.agent_id for o in offers}) == len(offers)
    assert len({o.caller_id for o in offers}) == len(offers)
    assert {o.agent_id for o in offers} <= free
    assert sum(o.callback for o in offers) <= len(free)
    queues = {q.name: q for q in _QUEUES}
    for o in offers:
        a = by_agent[o.agent_id]
        q = queues[o.queue]
        assert q.name in a.levels
        assert q.skills <= a.skills.keys()
        assert q.language is None or q.language in a.languages
    # Greedy order: a caller of the same queue who waited at least as long could have taken
    # any agent a served caller got, so if left waiting it must rank behind that caller.
    served = {o.caller_id: o for o in offers}
    for c in callers:
        if c.id in served:
            continue
        for o in offers:
            other = next(x for x in callers if x.id == o.caller_id)
            if other.queue == c.queue and c.enqueued_at <= other.enqueued_at:
                assert caller_order(other) < caller_order(c)
