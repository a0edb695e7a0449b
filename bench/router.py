"""Router benchmark: routing decisions with 1,000 agents and 500 waiting callers, and the
simulator's speed.

Steady state (what a live call center does all day): 1,000 agents in 4 language/skill
queues with two tier levels each, nearly all busy; 500 callers waiting (some red-flag, some
priority, some callbacks). Each round one busy agent finishes and becomes available, the
router decides on the full picture (every agent, every caller), the offer is applied (agent
on call, caller gone) and a new caller arrives, so the sizes stay put. Each ``decide`` call
is timed alone; it makes one decision per round.

Burst: 500 agents sign in at once in front of 500 callers; one ``decide`` makes all offers
(decisions/s = offers / time).

In the same run, the baseline: a naive linear scan that takes the longest-waiting caller and
the longest-idle available agent, with no skills, languages, levels, priorities or callbacks
(what a single FIFO queue needs, and no less than any router must do), over the same state.

Then the simulator: simulated calls per second (8 agents, 100 calls/h, 180 s; and 100 agents
at 1,850 calls/h), against Erlang C.

    .venv/bin/python bench/router.py [--agents 1000] [--callers 500] [--rounds 3000] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callcenter.clock import FakeClock  # noqa: E402
from callcenter.routing.erlang import erlang_c_metrics  # noqa: E402
from callcenter.routing.router import (  # noqa: E402
    Agent,
    AgentState,
    Caller,
    Queue,
    Router,
    Strategy,
    answer,
    end_call,
    set_available,
)
from callcenter.routing.simulation import SimulationSettings, simulate  # noqa: E402

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
QUEUES = (
    Queue("general-zh", language="zh", level_wait_s=30),
    Queue("general-en", language="en", level_wait_s=30, strategy=Strategy.FEWEST_CALLS),
    Queue(
        "cardio",
        language="zh",
        skills=frozenset({"cardio"}),
        level_wait_s=20,
        strategy=Strategy.SKILL_PROFICIENCY,
    ),
    Queue("peds", language="zh", skills=frozenset({"peds"}), level_wait_s=20),
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_agents(n: int, rng: random.Random) -> dict[str, Agent]:
    agents: dict[str, Agent] = {}
    for i in range(n):
        langs = frozenset({"zh", "en"}) if i % 5 == 0 else frozenset({"zh"})
        skills = {"cardio": rng.randint(1, 5)} if i % 4 == 1 else {}
        if i % 4 == 2:
            skills["peds"] = rng.randint(1, 5)
        levels = {"general-zh": i % 2, "general-en": i % 2}
        levels.update(dict.fromkeys(skills, i % 2))
        since = T0 - timedelta(seconds=rng.uniform(0, 600))
        agents[f"a{i:04d}"] = Agent(
            f"a{i:04d}",
            state=AgentState.ON_CALL,
            state_since=since,
            skills=skills,
            languages=langs,
            levels=levels,
            last_call_end=since - timedelta(seconds=rng.uniform(0, 600)),
            calls_today=rng.randint(0, 40),
        )
    return agents


def new_caller(k: int, now: datetime, rng: random.Random) -> Caller:
    queue = rng.choice(("general-zh", "general-zh", "general-en", "cardio", "peds"))
    return Caller(
        f"c{k}",
        queue,
        now - timedelta(seconds=rng.uniform(0, 120)),
        priority=rng.choice((0, 0, 0, 0, 5)),
        red_flag=rng.random() < 0.01,
        callback=rng.random() < 0.1,
    )


def naive(callers: list[Caller], agents: list[Agent]) -> tuple[str, str] | None:
    head = None
    for c in callers:
        if head is None or c.enqueued_at < head.enqueued_at:
            head = c
    best = None
    best_idle = None
    for a in agents:
        if a.state is AgentState.AVAILABLE:
            idle = a.last_call_end or a.state_since
            if best is None or (idle is not None and best_idle is not None and idle < best_idle):
                best, best_idle = a, idle
    if head is None or best is None:
        return None
    return head.id, best.id


def steady(n_agents: int, n_callers: int, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock(T0)
    router = Router(clock)
    agents = make_agents(n_agents, rng)
    callers = {c.id: c for c in (new_caller(k, T0, rng) for k in range(n_callers))}
    next_id = n_callers
    ids = list(agents)
    ours: list[float] = []
    base: list[float] = []
    made = 0
    gc.collect()
    gc.freeze()
    for _ in range(rounds):
        now = clock.advance(0.5)
        aid = rng.choice(ids)
        a = agents[aid]
        if a.state is AgentState.ON_CALL:
            agents[aid] = set_available(end_call(a, now, 0.0), now)
        agent_list = list(agents.values())
        caller_list = list(callers.values())
        t = time.perf_counter()
        pair = naive(caller_list, agent_list)
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        offers = router.decide(QUEUES, caller_list, agent_list)
        ours.append(time.perf_counter() - t)
        assert pair is not None or not offers
        for offer in offers:
            made += 1
            agents[offer.agent_id] = answer(offer.agent_after, now)
            del callers[offer.caller_id]
            c = new_caller(next_id, now, rng)
            callers[c.id] = c
            next_id += 1
    gc.unfreeze()
    print(
        f"steady state: {n_agents} agents, {n_callers} callers, {rounds} rounds "
        f"(one decide call each, at most one decision), {made} offers made"
    )
    for name, times in (("router.decide", ours), ("naive baseline", base)):
        p50, p99 = pct(times, 0.5) * 1e3, pct(times, 0.99) * 1e3
        rate = len(times) / sum(times)
        print(f"  {name:<16} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  {rate:8,.0f} calls/s")
    print(f"  router: {made / sum(ours):,.0f} offers per second of decide time")


def burst(n_agents: int, n_callers: int, seed: int) -> None:
    rng = random.Random(seed)
    router = Router(FakeClock(T0))
    agents = make_agents(n_agents, rng)
    for i, (aid, a) in enumerate(list(agents.items())):
        if i % 2 == 0:
            agents[aid] = replace(a, state=AgentState.AVAILABLE, state_since=T0)
    callers = [new_caller(k, T0, rng) for k in range(n_callers)]
    times = []
    offers = []
    for _ in range(20):
        t = time.perf_counter()
        offers = router.decide(QUEUES, callers, agents.values())
        times.append(time.perf_counter() - t)
    took = statistics.median(times)
    print(
        f"burst: {n_agents // 2} free agents, {n_callers} callers: {len(offers)} offers in "
        f"{took * 1e3:.1f} ms ({len(offers) / took:,.0f} decisions/s, "
        f"{took / max(1, len(offers)) * 1e6:.1f} us per decision)"
    )


def simulator() -> None:
    for cph, agents, calls in ((100.0, 8, 200_000), (1850.0, 100, 200_000)):
        s = SimulationSettings(cph, 180.0, agents, calls, seed=1)
        t = time.perf_counter()
        r = simulate(s)
        took = time.perf_counter() - t
        c = erlang_c_metrics(agents, cph, 180.0)
        print(
            f"simulator: {agents} agents, {cph:g} calls/h, {calls:,} calls in {took:.2f} s "
            f"= {calls / took:,.0f} simulated calls/s; SL {r.service_level:.1%} "
            f"(Erlang C {c.service_level:.1%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--callers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    steady(args.agents, args.callers, args.rounds, args.seed)
    burst(args.agents, args.callers, args.seed)
    simulator()


if __name__ == "__main__":
    main()
