"""The router (ACD): a pure function of (queues, waiting callers, agents, clock) to decisions.

The router never reads a database, waits or talks to a provider. A service loads the rows
(queues, callers waiting, agents with their presence), calls :meth:`Router.decide` and
:meth:`Router.tick`, persists the agent snapshots carried by the returned decisions and events
(under row locks) and acts on them (ring the agent, dial the callback, tell the console).
The same code drives the discrete-event simulation in :mod:`callcenter.routing.simulation`.

Agent presence is an explicit state machine (:data:`AGENT_TRANSITIONS`); every change goes
through :func:`transition`, which raises :class:`IllegalAgentTransition` otherwise.

Order of callers, across all queues: red-flag callers first, then higher ``priority``, then
the earliest original enqueue time (a callback keeps the time the caller first queued), then
the caller id. Callers are served greedily in that order: each takes the best free agent it
may have, so one offer per agent and one agent per caller, and a callback is only dialled
when an agent is actually free for it, never before a caller ahead of it in that order who
can take the same agent; callbacks dialled never outnumber free agents. A caller whose offer
is ringing (named by a reserved agent's ``offer``) is not offered a second agent.

Tiers follow FreeSWITCH mod_callcenter (``tier-rules-apply`` with ``tier-rule-wait-second`` =
``level_wait_s``, ``tier-rule-wait-multiply-level`` and ``tier-rule-no-agent-no-wait``), where
we differ:

* levels count from 0 and level N opens after N x ``level_wait_s`` of the caller's wait
  (FreeSWITCH numbers levels from 1 and, multiplying, makes level 1 wait too; here the first
  level answers at once, which is what a tier configuration means in practice);
* with ``skip_empty_levels``, a level with nobody signed in (every agent offline or away) is
  skipped and its wait is not charged: a level opens after (number of non-empty levels below
  it) x ``level_wait_s``. FreeSWITCH skips levels with no *available* agent, which lets a
  caller jump to the overflow tier as soon as the first tier is merely busy; we keep busy
  tiers first for their wait, since overflow agents are the scarcer ones;
* within the open levels, the lower level still wins (FreeSWITCH's order) and then the
  queue's strategy: ``longest_idle`` (default), ``fewest_calls`` or ``skill_proficiency``;
  the agent id breaks ties, so a decision is reproducible.

Ring-no-answer: an offer not answered within ``ring_timeout_s`` (Asterisk's 15 s) returns the
agent to available with one more consecutive miss, and the caller's ``tried`` set (kept by the
service) steers the next offer to another agent; an agent with ``max_missed`` consecutive
misses is set away instead. Asterisk's retry pause (5 s) is not modelled: the next agent is
offered at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum

from ..clock import Clock

# ---------------------------------------------------------------- data


class AgentState(StrEnum):
    """Presence of an agent."""

    OFFLINE = "offline"
    AVAILABLE = "available"
    RESERVED = "reserved"  # an offer is ringing
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    AWAY = "away"


class Strategy(StrEnum):
    """How a queue chooses among eligible agents of the same level."""

    LONGEST_IDLE = "longest_idle"
    FEWEST_CALLS = "fewest_calls"
    SKILL_PROFICIENCY = "skill_proficiency"


#: Legal presence changes: from -> allowed targets.
AGENT_TRANSITIONS: Mapping[AgentState, frozenset[AgentState]] = {
    AgentState.OFFLINE: frozenset({AgentState.AVAILABLE}),
    AgentState.AVAILABLE: frozenset({AgentState.RESERVED, AgentState.AWAY, AgentState.OFFLINE}),
    AgentState.RESERVED: frozenset({AgentState.ON_CALL, AgentState.AVAILABLE, AgentState.AWAY}),
    AgentState.ON_CALL: frozenset({AgentState.WRAP_UP}),
    AgentState.WRAP_UP: frozenset({AgentState.AVAILABLE, AgentState.AWAY, AgentState.OFFLINE}),
    AgentState.AWAY: frozenset({AgentState.AVAILABLE, AgentState.OFFLINE}),
}

#: Away reason the router sets after too many consecutive missed offers.
MISSED_OFFERS = "missed_offers"


@dataclass(frozen=True)
class Queue:
    """A call queue. ``skills`` are required of every agent; ``language`` too, if set."""

    name: str
    language: str | None = None
    skills: frozenset[str] = frozenset()
    strategy: Strategy = Strategy.LONGEST_IDLE
    level_wait_s: float = 30.0
    skip_empty_levels: bool = True


@dataclass(frozen=True)
class Caller:
    """A caller waiting in a queue, or a callback request (``callback=True``).

    ``enqueued_at`` is the original queue time, kept when a caller becomes a callback.
    ``tried`` holds the agents whose offer for this caller rang out.
    """

    id: str
    queue: str
    enqueued_at: datetime
    priority: int = 0
    red_flag: bool = False
    callback: bool = False
    tried: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Agent:
    """An agent and their presence.

    ``skills`` maps skill -> proficiency (higher is better); ``levels`` maps queue name ->
    tier level, 0 or more (an agent absent from ``levels`` does not serve that queue).
    ``state_since`` is when the current state began (the ring start when reserved). ``offer``
    is the caller ringing (reserved) or being talked to (on call). ``last_call_end`` (or else
    ``state_since``) orders longest-idle; ``calls_today`` orders fewest-calls.
    """

    id: str
    state: AgentState = AgentState.OFFLINE
    state_since: datetime | None = None
    skills: Mapping[str, int] = field(default_factory=dict)
    languages: frozenset[str] = frozenset()
    levels: Mapping[str, int] = field(default_factory=dict)
    last_call_end: datetime | None = None
    calls_today: int = 0
    missed_in_row: int = 0
    wrap_up_until: datetime | None = None
    away_reason: str | None = None
    offer: str | None = None


@dataclass(frozen=True)
class RouterSettings:
    """Router-wide settings (from configuration)."""

    ring_timeout_s: float = 15.0
    wrap_up_s: float = 30.0
    max_missed: int = 3


# ---------------------------------------------------------------- decisions and events


@dataclass(frozen=True)
class Offer:
    """Ring ``agent`` for the waiting caller (``callback=False``) or reserve ``agent`` and dial
    the caller back (``callback=True``). ``agent_after`` is the agent to persist."""

    caller_id: str
    agent_id: str
    queue: str
    level: int
    callback: bool
    at: datetime
    ring_deadline: datetime
    agent_after: Agent


@dataclass(frozen=True)
class RingNoAnswer:
    """An offer rang out: the caller goes back to waiting, the agent to ``agent_after``."""

    caller_id: str
    agent_id: str
    at: datetime
    agent_after: Agent


@dataclass(frozen=True)
class AgentSetAway:
    """An agent missed ``missed`` offers in a row and was set away."""

    agent_id: str
    reason: str
    missed: int
    at: datetime
    agent_after: Agent


@dataclass(frozen=True)
class WrapUpEnded:
    """An agent's wrap-up timer ran out: available again."""

    agent_id: str
    at: datetime
    agent_after: Agent


RouterEvent = RingNoAnswer | AgentSetAway | WrapUpEnded


class RoutingError(Exception):
    """Inconsistent input (an unknown queue, a duplicate id): a bug in the caller."""


class IllegalAgentTransition(RoutingError):
    """A presence change not in :data:`AGENT_TRANSITIONS`."""

    def __init__(self, agent_id: str, current: AgentState, target: AgentState) -> None:
        super().__init__(f"agent {agent_id}: {current} -> {target} is not allowed")
        self.agent_id = agent_id
        self.current = current
        self.target = target


_AGENT_FIELDS = frozenset(f.name for f in fields(Agent))

# ---------------------------------------------------------------- presence transitions


def transition(agent: Agent, target: AgentState, at: datetime, **changes: object) -> Agent:
    """The agent in state ``target`` since ``at`` (with ``changes``), if the move is legal."""
    if target not in AGENT_TRANSITIONS[agent.state]:
        raise IllegalAgentTransition(agent.id, agent.state, target)
    unknown = changes.keys() - _AGENT_FIELDS
    if unknown:
        raise TypeError(f"unknown agent fields {sorted(unknown)}")
    # A copy of the frozen value with fields replaced (dataclasses.replace re-runs __init__,
    # which is several times slower and this is the router's hot path).
    new = object.__new__(Agent)
    new.__dict__.update(agent.__dict__)
    new.__dict__.update(changes, state=target, state_since=at)
    return new


def sign_in(agent: Agent, at: datetime) -> Agent:
    """Offline -> available."""
    return transition(agent, AgentState.AVAILABLE, at, away_reason=None)


def sign_out(agent: Agent, at: datetime) -> Agent:
    """Available, wrap-up or away -> offline."""
    return transition(agent, AgentState.OFFLINE, at, away_reason=None, wrap_up_until=None)


def set_away(agent: Agent, at: datetime, reason: str) -> Agent:
    """Available, reserved or wrap-up -> away with ``reason`` (a ringing offer is dropped)."""
    return transition(
        agent, AgentState.AWAY, at, away_reason=reason, offer=None, wrap_up_until=None
    )


def set_available(agent: Agent, at: datetime) -> Agent:
    """Back from away or wrap-up (the agent pressed ready); clears the miss counter."""
    return transition(
        agent, AgentState.AVAILABLE, at, away_reason=None, wrap_up_until=None, missed_in_row=0
    )


def answer(agent: Agent, at: datetime) -> Agent:
    """The ringing agent answered: reserved -> on call; the miss counter resets."""
    return transition(agent, AgentState.ON_CALL, at, missed_in_row=0)


def release(agent: Agent, at: datetime) -> Agent:
    """The caller hung up or was taken elsewhere before the agent answered: back to available
    without counting a miss."""
    return transition(agent, AgentState.AVAILABLE, at, offer=None)


def end_call(agent: Agent, at: datetime, wrap_up_s: float) -> Agent:
    """The call ended: on call -> wrap-up until ``at + wrap_up_s``; counts the call."""
    return transition(
        agent,
        AgentState.WRAP_UP,
        at,
        offer=None,
        last_call_end=at,
        calls_today=agent.calls_today + 1,
        wrap_up_until=at + timedelta(seconds=wrap_up_s),
    )


# ---------------------------------------------------------------- callers


def mark_tried(caller: Caller, agent_id: str) -> Caller:
    """``caller`` after an offer to ``agent_id`` rang out (see :class:`RingNoAnswer`): the
    next offer prefers another agent."""
    return replace(caller, tried=caller.tried | {agent_id})


# ---------------------------------------------------------------- the router


def caller_order(caller: Caller) -> tuple[bool, int, datetime, str]:
    """Sort key: red flag first, then priority (high first), then original enqueue time."""
    return (not caller.red_flag, -caller.priority, caller.enqueued_at, caller.id)


class Router:
    """Decides offers and times out rings and wrap-ups; see the module docstring."""

    def __init__(self, clock: Clock, settings: RouterSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings or RouterSettings()

    # -- offers

    def decide(
        self,
        queues: Mapping[str, Queue] | Iterable[Queue],
        callers: Iterable[Caller],
        agents: Iterable[Agent],
    ) -> list[Offer]:
        """Offers to make now: pairs of (waiting caller, free agent), best first."""
        now = self.clock.now()
        qmap = _queue_map(queues)
        agent_list = list(agents)
        free_agents: list[Agent] = []
        # A caller whose offer is ringing (or who is talking to an agent) is not offered again.
        engaged: set[str] = set()
        available = AgentState.AVAILABLE
        for a in agent_list:
            if a.offer is not None:
                engaged.add(a.offer)
            elif a.state is available:
                free_agents.append(a)
        free = len(free_agents)
        if not free:
            return []
        waiting = sorted((c for c in callers if c.id not in engaged), key=caller_order)
        if not waiting:
            return []
        # Per queue: level -> eligible free agents, best first; and the non-empty levels.
        candidates: dict[str, list[tuple[int, list[Agent]]]] = {}
        open_after: dict[str, dict[int, float]] = {}
        # Per queue: the least wait that can still get one of its free agents (it only grows
        # as agents are taken; a stale value merely skips this shortcut).
        need: dict[str, float] = {}
        taken: set[str] = set()
        ring = timedelta(seconds=self.settings.ring_timeout_s)
        offers: list[Offer] = []
        for caller in waiting:
            if len(taken) == free:
                break
            queue = qmap.get(caller.queue)
            if queue is None:
                raise RoutingError(f"caller {caller.id}: unknown queue {caller.queue!r}")
            name = queue.name
            if name not in candidates:
                candidates[name], open_after[name] = _candidates(queue, free_agents, agent_list)
                need[name] = _first_open(candidates[name], open_after[name], taken)
            waited = (now - caller.enqueued_at).total_seconds()
            if waited < need[name]:
                continue  # no agent of this queue is free at a level open to this caller
            chosen = _pick(candidates[name], open_after[name], waited, caller, taken)
            if chosen is None:
                continue
            agent, level = chosen
            taken.add(agent.id)
            need[name] = _first_open(candidates[name], open_after[name], taken)
            after = transition(agent, AgentState.RESERVED, now, offer=caller.id)
            offers.append(
                Offer(
                    caller_id=caller.id,
                    agent_id=agent.id,
                    queue=queue.name,
                    level=level,
                    callback=caller.callback,
                    at=now,
                    ring_deadline=now + ring,
                    agent_after=after,
                )
            )
        return offers

    # -- timers

    def tick(self, agents: Iterable[Agent]) -> list[RouterEvent]:
        """Rings past their timeout and wrap-ups past their end, as events with new agents."""
        now = self.clock.now()
        ring = timedelta(seconds=self.settings.ring_timeout_s)
        events: list[RouterEvent] = []
        for agent in agents:
            if agent.state is AgentState.RESERVED:
                since = agent.state_since
                if since is None or since + ring > now:
                    continue
                events.extend(self.ring_missed(agent))
            elif agent.state is AgentState.WRAP_UP:
                until = agent.wrap_up_until
                if until is not None and until <= now:
                    after = transition(agent, AgentState.AVAILABLE, now, wrap_up_until=None)
                    events.append(WrapUpEnded(agent.id, now, after))
        return events

    def ring_missed(self, agent: Agent) -> list[RouterEvent]:
        """The ring offered to ``agent`` ended unanswered now (its timeout, or the phone said
        no answer or busy first): a miss; ``max_missed`` in a row set the agent away."""
        if agent.state is not AgentState.RESERVED:
            return []
        now = self.clock.now()
        missed = agent.missed_in_row + 1
        caller_id = agent.offer or ""
        if missed >= self.settings.max_missed:
            after = transition(
                agent,
                AgentState.AWAY,
                now,
                offer=None,
                missed_in_row=missed,
                away_reason=MISSED_OFFERS,
            )
            return [
                RingNoAnswer(caller_id, agent.id, now, after),
                AgentSetAway(agent.id, MISSED_OFFERS, missed, now, after),
            ]
        after = transition(agent, AgentState.AVAILABLE, now, offer=None, missed_in_row=missed)
        return [RingNoAnswer(caller_id, agent.id, now, after)]

    def next_wakeup(
        self,
        queues: Mapping[str, Queue] | Iterable[Queue],
        callers: Iterable[Caller],
        agents: Iterable[Agent],
    ) -> datetime | None:
        """The earliest future time a :meth:`tick` or :meth:`decide` could change something
        without new input: a ring timeout, a wrap-up end or a tier level opening."""
        now = self.clock.now()
        qmap = _queue_map(queues)
        agent_list = list(agents)
        ring = timedelta(seconds=self.settings.ring_timeout_s)
        times: list[datetime] = []
        for agent in agent_list:
            if agent.state is AgentState.RESERVED and agent.state_since is not None:
                times.append(agent.state_since + ring)
            elif agent.state is AgentState.WRAP_UP and agent.wrap_up_until is not None:
                times.append(agent.wrap_up_until)
        opens: dict[str, list[float]] = {}
        for caller in callers:
            queue = qmap.get(caller.queue)
            if queue is None:
                continue
            if queue.name not in opens:
                opens[queue.name] = sorted(set(_level_opening(queue, agent_list).values()))
            for delay in opens[queue.name]:
                at = caller.enqueued_at + timedelta(seconds=delay)
                if at > now:
                    times.append(at)
                    break
        future = [t for t in times if t > now]
        return min(future) if future else (min(times) if times else None)


# ---------------------------------------------------------------- helpers


def _queue_map(queues: Mapping[str, Queue] | Iterable[Queue]) -> Mapping[str, Queue]:
    if isinstance(queues, Mapping):
        return queues
    qmap: dict[str, Queue] = {}
    for queue in queues:
        if queue.name in qmap:
            raise RoutingError(f"duplicate queue {queue.name!r}")
        qmap[queue.name] = queue
    return qmap


def _level_opening(queue: Queue, agents: Sequence[Agent]) -> dict[int, float]:
    """Level -> seconds of waiting after which it opens (levels with anyone in the queue)."""
    return _scan(queue, agents)[1]


def _openings(queue: Queue, signed_in: Mapping[int, bool]) -> dict[int, float]:
    opening: dict[int, float] = {}
    rank = 0
    for level in sorted(signed_in):
        if queue.skip_empty_levels:
            opening[level] = rank * queue.level_wait_s
            if signed_in[level]:
                rank += 1
        else:
            opening[level] = level * queue.level_wait_s
    return opening


def _scan(
    queue: Queue, agents: Iterable[Agent]
) -> tuple[list[tuple[int, list[Agent]]], dict[int, float]]:
    """One pass over the agents: the queue's free eligible agents by level (best first) and
    when each level opens."""
    name = queue.name
    language = queue.language
    skills = queue.skills
    signed_in: dict[int, bool] = {}
    by_level: dict[int, list[Agent]] = {}
    for agent in agents:
        level = agent.levels.get(name)
        if level is None:
            continue
        if language is not None and language not in agent.languages:
            continue
        if skills and not all(skill in agent.skills for skill in skills):
            continue
        state = agent.state
        if state is AgentState.AVAILABLE and agent.offer is None:
            by_level.setdefault(level, []).append(agent)
            signed_in[level] = True
        elif state is AgentState.OFFLINE or state is AgentState.AWAY:
            signed_in.setdefault(level, False)
        else:
            signed_in[level] = True
    ordered = [(level, _best_first(queue, group)) for level, group in sorted(by_level.items())]
    return ordered, _openings(queue, signed_in)


def _eligible(queue: Queue, agent: Agent) -> bool:
    if queue.name not in agent.levels:
        return False
    if queue.language is not None and queue.language not in agent.languages:
        return False
    return all(skill in agent.skills for skill in queue.skills)


def _candidates(
    queue: Queue, free: Sequence[Agent], everyone: Sequence[Agent]
) -> tuple[list[tuple[int, list[Agent]]], dict[int, float]]:
    """The queue's free eligible agents by level (best first) and when those levels open.

    Only levels below the highest free one matter, and only whether each is empty, so the
    scan over every agent stops as soon as all of them are known to be staffed (usually at
    once: a free agent on the first level needs no scan at all).
    """
    name = queue.name
    by_level: dict[int, list[Agent]] = {}
    for agent in free:
        if _eligible(queue, agent):
            by_level.setdefault(agent.levels[name], []).append(agent)
    if not by_level:
        return [], {}
    ordered = [(level, _best_first(queue, group)) for level, group in sorted(by_level.items())]
    wait = queue.level_wait_s
    if not queue.skip_empty_levels:
        return ordered, {level: level * wait for level in by_level}
    if min(by_level) < 0:
        raise RoutingError(f"queue {name}: tier levels must not be negative")
    top = max(by_level)
    staffed: set[int] = set(by_level)
    # Levels below ``top`` still unknown; when none is left, the scan is over.
    unknown = top - sum(1 for level in staffed if 0 <= level < top)
    if unknown > 0:
        for agent in everyone:
            level = agent.levels.get(name)
            if level is None or level >= top or level in staffed:
                continue
            if agent.state is AgentState.OFFLINE or agent.state is AgentState.AWAY:
                continue
            if _eligible(queue, agent):
                staffed.add(level)
                unknown -= 1
                if unknown <= 0:
                    break
    below = sorted(staffed)
    opening = {}
    for level in by_level:
        opening[level] = sum(1 for x in below if x < level) * wait
    return ordered, opening


def _best_first(queue: Queue, group: list[Agent]) -> list[Agent]:
    if len(group) == 1:
        return group
    return sorted(group, key=lambda a: (*_strategy_key(queue, a), a.id))


def _strategy_key(queue: Queue, agent: Agent) -> tuple[float, ...]:
    idle = agent.last_call_end or agent.state_since
    idle_ts = idle.timestamp() if idle is not None else float("-inf")
    if queue.strategy is Strategy.FEWEST_CALLS:
        return (agent.calls_today, idle_ts)
    if queue.strategy is Strategy.SKILL_PROFICIENCY:
        score = sum(agent.skills.get(skill, 0) for skill in queue.skills)
        return (-score, idle_ts)
    return (idle_ts,)


def _first_open(
    levels: Sequence[tuple[int, list[Agent]]], opening: Mapping[int, float], taken: set[str]
) -> float:
    for level, group in levels:
        if any(agent.id not in taken for agent in group):
            return opening.get(level, 0.0)
    return math.inf


def _pick(
    levels: Sequence[tuple[int, list[Agent]]],
    opening: Mapping[int, float],
    waited_s: float,
    caller: Caller,
    taken: set[str],
) -> tuple[Agent, int] | None:
    fallback: tuple[Agent, int] | None = None
    for level, group in levels:
        if opening.get(level, 0.0) > waited_s:
            break
        for agent in group:
            if agent.id in taken:
                continue
            if agent.id in caller.tried:
                if fallback is None:
                    fallback = (agent, level)
                continue
            return agent, level
    return fallback
