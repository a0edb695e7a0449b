"""Discrete-event simulation of a queue, driving the real :class:`~.router.Router`.

Callers arrive as a Poisson process, each needs an exponential (or log-normal) handle time
and, with ``patience_s``, hangs up after an exponential patience if not answered by then.
``agents`` identical agents answer offers at once (optionally split into tier levels). The
simulated clock is a :class:`~callcenter.clock.FakeClock` moved from event to event (a heap),
so the router sees exactly what it would see live; randomness comes from
``random.Random(seed)``, so a run is reproducible.

Figures (after a warm-up of the first ``warmup_calls`` arrivals, which are not counted):

* ``service_level``: answered within T / answered (Asterisk SL);
* ``service_level2``: (answered + abandoned within T) / (answered + abandoned) (Asterisk SL2);
* ``answered_within``: answered within T / offered (comparable with Erlang A's);
* ``asa_s``: mean wait of answered calls; ``abandon_rate``: abandoned / offered, and
  ``abandon_rate_after``: abandoned after ``abandon_after_s`` (NHS 111 counts after 30 s) /
  offered; ``occupancy``: talk time / (agents x time from the first counted arrival to the end).
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..clock import FakeClock
from .router import (
    Agent,
    AgentState,
    Caller,
    Queue,
    Router,
    RouterSettings,
    answer,
    end_call,
)

_ARRIVAL = 0
_END = 1
_WRAP = 2
_ABANDON = 3
_WAKE = 4

_QUEUE = "sim"
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SimulationSettings:
    """What to simulate. ``levels`` splits the agents into tier levels (counts per level,
    lowest first; their sum must equal ``agents``); empty means all on level 0."""

    calls_per_hour: float
    aht_s: float
    agents: int
    calls: int = 50_000
    seed: int = 1
    patience_s: float | None = None
    handle: str = "exponential"  # or "lognormal"
    lognormal_sigma: float = 0.8
    wrap_up_s: float = 0.0
    target_s: float = 20.0
    abandon_after_s: float = 30.0
    warmup_calls: int | None = None
    levels: tuple[int, ...] = ()
    level_wait_s: float = 30.0


@dataclass
class SimulationResult:
    """Counts and figures of one run (see the module docstring)."""

    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    abandoned_within: int = 0
    abandoned_after: int = 0
    total_wait_answered_s: float = 0.0
    talk_time_s: float = 0.0
    elapsed_s: float = 0.0
    agents: int = 0
    target_s: float = 20.0
    decisions: int = 0
    waits: list[float] = field(default_factory=list, repr=False)

    @property
    def service_level(self) -> float:
        """Answered within T / answered."""
        return self.answered_within / self.answered if self.answered else 0.0

    @property
    def service_level2(self) -> float:
        """(Answered + abandoned within T) / (answered + abandoned)."""
        done = self.answered + self.abandoned
        return (self.answered_within + self.abandoned_within) / done if done else 0.0

    @property
    def answered_within_rate(self) -> float:
        """Answered within T / offered."""
        return self.answered_within / self.offered if self.offered else 0.0

    @property
    def asa_s(self) -> float:
        """Average speed of answer (answered calls)."""
        return self.total_wait_answered_s / self.answered if self.answered else 0.0

    @property
    def abandon_rate(self) -> float:
        """Abandoned / offered."""
        return self.abandoned / self.offered if self.offered else 0.0

    @property
    def abandon_rate_after(self) -> float:
        """Abandoned after the NHS threshold / offered."""
        return self.abandoned_after / self.offered if self.offered else 0.0

    @property
    def occupancy(self) -> float:
        """Talk time over agent time."""
        denom = self.agents * self.elapsed_s
        return self.talk_time_s / denom if denom else 0.0


def simulate(settings: SimulationSettings) -> SimulationResult:
    """Run one simulation; see :class:`SimulationSettings` and :class:`SimulationResult`."""
    s = settings
    if s.agents <= 0 or s.calls <= 0 or s.calls_per_hour <= 0 or s.aht_s <= 0:
        raise ValueError("agents, calls, rate and handle time must be positive")
    if s.levels and sum(s.levels) != s.agents:
        raise ValueError("levels must add up to the number of agents")
    rng = random.Random(s.seed)
    clock = FakeClock(_EPOCH)
    router = Router(clock, RouterSettings(wrap_up_s=s.wrap_up_s))
    queues = {_QUEUE: Queue(_QUEUE, level_wait_s=s.level_wait_s)}
    level_of: list[int] = []
    for level, count in enumerate(s.levels or (s.agents,)):
        level_of.extend([level] * count)
    agents: dict[str, Agent] = {}
    for i in range(s.agents):
        aid = f"a{i:05d}"
        agents[aid] = Agent(
            aid,
            state=AgentState.AVAILABLE,
            state_since=_EPOCH - timedelta(seconds=s.agents - i),
            levels={_QUEUE: level_of[i]},
        )
    free = s.agents
    waiting: dict[str, Caller] = {}
    arrived_at: dict[str, float] = {}
    warmup = s.warmup_calls if s.warmup_calls is not None else s.calls // 100
    result = SimulationResult(agents=s.agents, target_s=s.target_s)

    lam = s.calls_per_hour / 3600.0
    if s.handle == "exponential":
        mean = s.aht_s

        def handle_time() -> float:
            return rng.expovariate(1.0 / mean)

    elif s.handle == "lognormal":
        sigma = s.lognormal_sigma
        mu = math.log(s.aht_s) - sigma * sigma / 2.0

        def handle_time() -> float:
            return rng.lognormvariate(mu, sigma)

    else:
        raise ValueError(f"unknown handle time distribution {s.handle!r}")

    heap: list[tuple[float, int, int, str]] = []
    seq = 0
    arrivals = 0
    t = 0.0
    heapq.heappush(heap, (rng.expovariate(lam), seq, _ARRIVAL, ""))
    counted: set[str] = set()
    wake_at = math.inf
    counted_from = 0.0

    while heap:
        t, _, kind, ident = heapq.heappop(heap)
        now = _EPOCH + timedelta(seconds=t)
        clock.set(now)
        if kind == _ARRIVAL:
            arrivals += 1
            cid = f"c{arrivals}"
            waiting[cid] = Caller(cid, _QUEUE, now)
            arrived_at[cid] = t
            if arrivals > warmup:
                if not counted:
                    counted_from = t
                counted.add(cid)
                result.offered += 1
            if s.patience_s is not None:
                seq += 1
                patience = rng.expovariate(1.0 / s.patience_s)
                heapq.heappush(heap, (t + patience, seq, _ABANDON, cid))
            if arrivals < s.calls:
                seq += 1
                heapq.heappush(heap, (t + rng.expovariate(lam), seq, _ARRIVAL, ""))
        elif kind == _END:
            agent = end_call(agents[ident], now, s.wrap_up_s)
            if s.wrap_up_s > 0:
                agents[ident] = agent
                seq += 1
                heapq.heappush(heap, (t + s.wrap_up_s, seq, _WRAP, ident))
                continue
            for event in router.tick((agent,)):
                agent = event.agent_after
            agents[ident] = agent
            free += 1
        elif kind == _WRAP:
            for event in router.tick((agents[ident],)):
                agents[ident] = event.agent_after
            free += 1
        elif kind == _ABANDON:
            if waiting.pop(ident, None) is None:
                continue
            start = arrived_at.pop(ident)
            if ident in counted:
                waited = t - start
                result.abandoned += 1
                if waited <= s.target_s:
                    result.abandoned_within += 1
                if waited > s.abandon_after_s:
                    result.abandoned_after += 1
            continue
        elif kind == _WAKE:
            wake_at = math.inf
        if free and waiting:
            offers = router.decide(queues, waiting.values(), agents.values())
            result.decisions += len(offers)
            for offer in offers:
                agents[offer.agent_id] = answer(offer.agent_after, now)
                free -= 1
                del waiting[offer.caller_id]
                start = arrived_at.pop(offer.caller_id)
                talk = handle_time()
                seq += 1
                heapq.heappush(heap, (t + talk, seq, _END, offer.agent_id))
                if offer.caller_id in counted:
                    waited = t - start
                    result.answered += 1
                    result.total_wait_answered_s += waited
                    result.talk_time_s += talk
                    if waited <= s.target_s:
                        result.answered_within += 1
            if s.levels and free and waiting:
                wake = router.next_wakeup(queues, waiting.values(), agents.values())
                if wake is not None:
                    wt = (wake - _EPOCH).total_seconds()
                    if t < wt < wake_at:
                        wake_at = wt
                        seq += 1
                        heapq.heappush(heap, (wt, seq, _WAKE, ""))
    result.elapsed_s = t - counted_from
    return result
