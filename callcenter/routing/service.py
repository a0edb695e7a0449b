"""The routing service: agents' presence and waiting callers in the database, decided by the
pure :class:`~callcenter.routing.router.Router`.

Every operation is one transaction on locked rows. On PostgreSQL, :meth:`RoutingService.dispatch`
and :meth:`RoutingService.tick` lock the rows they consider with ``SELECT ... FOR UPDATE SKIP
LOCKED``: two workers dispatching at once never see the same available agent or waiting caller,
so an agent gets one offer and a caller one agent. Presence changes of one agent lock its row
(``FOR UPDATE``). On SQLite every transaction begins with ``BEGIN IMMEDIATE`` (see
:mod:`callcenter.db.engine`), which serialises writers the same way.

Callback numbers are personal data: they are stored, never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..clock import Clock
from ..config import RoutingConfig
from ..db.engine import Database
from ..db.models import Call, CallEvent
from ..events import topics
from . import router as r
from .models import RoutingAgent, RoutingCaller
from .priority import CallerFacts, caller_priority

if TYPE_CHECKING:
    from ..events import EventBus

log = logging.getLogger(__name__)

#: A presence change: (agent, now) -> agent.
_Change = Callable[[r.Agent, datetime], r.Agent]


class UnknownAgent(LookupError):
    """No agent with that id."""


class UnknownQueue(LookupError):
    """No queue with that name in the configuration."""


@dataclass(frozen=True)
class QueueStatus:
    """One queue now and since ``since``: callers waiting, agents by state, service figures.

    ``service_level`` is answered within the target / answered (Asterisk's SL);
    ``service_level2`` counts abandoned calls too: answered within the target / (answered +
    abandoned). ``None`` when nothing was answered (or ended) yet.
    """

    queue: str
    waiting: int
    offered: int
    longest_wait_s: float
    agents: Mapping[str, int]
    answered: int
    answered_in_target: int
    abandoned: int
    service_level: float | None
    service_level2: float | None
    abandon_rate: float | None
    asa_s: float | None


@dataclass(frozen=True)
class Status:
    """Every configured queue's :class:`QueueStatus`, at ``at``."""

    at: datetime
    since: datetime
    target_s: float
    queues: list[QueueStatus] = field(default_factory=list)


def router_settings(settings: RoutingConfig) -> r.RouterSettings:
    """The pure router's settings from the configuration."""
    return r.RouterSettings(
        ring_timeout_s=settings.ring_timeout_s,
        wrap_up_s=settings.wrap_up_s,
        max_missed=settings.max_missed,
    )


def router_queues(settings: RoutingConfig) -> dict[str, r.Queue]:
    """The pure router's queues from the configuration."""
    return {
        name: r.Queue(
            name=name,
            language=q.language,
            skills=frozenset(q.skills),
            strategy=r.Strategy(q.strategy),
            level_wait_s=q.level_wait_s,
            skip_empty_levels=q.skip_empty_levels,
        )
        for name, q in settings.queues.items()
    }


def to_agent(row: RoutingAgent) -> r.Agent:
    """The router's view of an agent row."""
    return r.Agent(
        id=row.id,
        state=r.AgentState(row.state),
        state_since=row.state_since,
        skills={str(k): int(v) for k, v in row.skills.items()},
        languages=frozenset(row.languages),
        levels={str(k): int(v) for k, v in row.levels.items()},
        last_call_end=row.last_call_end,
        calls_today=row.calls_today,
        missed_in_row=row.missed_in_row,
        wrap_up_until=row.wrap_up_until,
        away_reason=row.state_reason,
        offer=row.offer,
    )


def _store_agent(row: RoutingAgent, agent: r.Agent) -> None:
    row.state = agent.state.value
    row.state_since = agent.state_since
    row.state_reason = agent.away_reason
    row.last_call_end = agent.last_call_end
    row.calls_today = agent.calls_today
    row.missed_in_row = agent.missed_in_row
    row.wrap_up_until = agent.wrap_up_until
    row.offer = agent.offer
    row.version = (row.version or 0) + 1


def to_caller(row: RoutingCaller) -> r.Caller:
    """The router's view of a caller row."""
    return r.Caller(
        id=row.id,
        queue=row.queue,
        enqueued_at=row.enqueued_at,
        priority=row.priority,
        red_flag=row.red_flag,
        callback=row.callback,
        tried=frozenset(row.tried),
    )


class RoutingService:
    """Agents' presence, the waiting callers and the offers between them, in the database."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: RoutingConfig,
        *,
        events: EventBus | None = None,
        timezone: tzinfo | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        #: the instance's time zone: "today" (calls today, today's figures) is local
        self.tz = timezone or UTC
        self.queues = router_queues(settings)
        self.router = r.Router(clock, router_settings(settings))
        #: live events for the console, published in the same transaction as each change
        self.events = events

    # -- live events (ids and states only; heard only if the transaction commits)

    def _publish(self, session: Session, topic: str, data: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(topic, data, tx=session)

    def _agent_event(self, session: Session, row: RoutingAgent, **extra: Any) -> None:
        data: dict[str, Any] = {
            "kind": "agent_state",
            "agent": row.id,
            "state": row.state,
            "reason": row.state_reason,
            "call": row.offer,
            "version": row.version,
            **extra,
        }
        self._publish(session, topics.agent(row.id), data)
        self._publish(session, topics.AGENTS, data)

    def _queue_event(self, session: Session, queue: str, change: str, call_id: str) -> None:
        data = {"kind": "queue", "queue": queue, "change": change, "call": call_id}
        self._publish(session, topics.queue(queue), data)
        self._publish(session, topics.QUEUES, data)

    # -- helpers

    def _today(self, now: datetime) -> tuple[date, datetime]:
        """The local day of ``now`` and when it began (local midnight)."""
        day = now.astimezone(self.tz).date()
        return day, datetime.combine(day, datetime.min.time(), tzinfo=self.tz)

    def _roll_day(self, row: RoutingAgent, now: datetime) -> None:
        """Start ``calls_today`` again at local midnight: the count grows only when a call
        ends (``last_call_end``), so a last call ended before today's midnight means none
        today."""
        if row.calls_today and row.last_call_end is not None:
            ended = row.last_call_end
            if ended.tzinfo is None:  # SQLite returns naive UTC
                ended = ended.replace(tzinfo=UTC)
            if ended < self._today(now)[1]:
                row.calls_today = 0

    def caller_facts(self, session: Session, call_id: str, now: datetime) -> CallerFacts:
        """What the database knows about the caller of ``call_id`` (a provider call id):
        their age if the call service recorded one (an ID number keyed in the menu), and how
        many calls came from the same number earlier today (local)."""
        call = session.execute(
            select(Call.id, Call.from_e164).where(Call.provider_call_id == call_id)
        ).first()
        if call is None:
            return CallerFacts()
        detail = session.scalar(
            select(CallEvent.detail)
            .where(CallEvent.call_id == call.id, CallEvent.kind == "caller_age")
            .order_by(CallEvent.id.desc())
            .limit(1)
        )
        raw_age = detail.get("age") if isinstance(detail, dict) else None
        age = raw_age if isinstance(raw_age, int) and 0 <= raw_age < 150 else None
        if call.from_e164 is None:
            return CallerFacts(age_years=age)
        earlier = session.scalar(
            select(func.count())
            .select_from(Call)
            .where(
                Call.from_e164 == call.from_e164,
                Call.id != call.id,
                Call.direction == "inbound",
                Call.started_at >= self._today(now)[1],
                Call.started_at <= now,
            )
        )
        return CallerFacts(earlier_calls_today=int(earlier or 0), age_years=age)

    def _agent(self, session: Session, agent_id: str) -> RoutingAgent:
        row = session.scalars(
            select(RoutingAgent).where(RoutingAgent.id == agent_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise UnknownAgent(agent_id)
        return row

    def _caller(self, session: Session, caller_id: str) -> RoutingCaller | None:
        return session.scalars(
            select(RoutingCaller).where(RoutingCaller.id == caller_id).with_for_update()
        ).one_or_none()

    # -- agents

    def agent_sign_in(
        self,
        agent_id: str,
        *,
        name: str | None = None,
        skills: Mapping[str, int] | None = None,
        languages: Iterable[str] | None = None,
        levels: Mapping[str, int] | None = None,
    ) -> r.Agent:
        """Sign ``agent_id`` in (creating the agent the first time); profile fields given are
        updated. Raises :class:`~callcenter.routing.router.IllegalAgentTransition` unless the
        agent is offline."""
        now = self.clock.now()
        for queue in levels or {}:
            if queue not in self.queues:
                raise UnknownQueue(queue)
        with self.db.transaction() as session:
            row = session.scalars(
                select(RoutingAgent).where(RoutingAgent.id == agent_id).with_for_update()
            ).one_or_none()
            if row is None:
                row = RoutingAgent(
                    id=agent_id,
                    name=name or agent_id,
                    state=r.AgentState.OFFLINE.value,
                    skills={},
                    languages=[],
                    levels={},
                    calls_today=0,
                    missed_in_row=0,
                    version=0,
                )
                session.add(row)
            if name is not None:
                row.name = name
            if skills is not None:
                row.skills = dict(skills)
            if languages is not None:
                row.languages = sorted(set(languages))
            if levels is not None:
                row.levels = dict(levels)
            agent = r.sign_in(to_agent(row), now)
            _store_agent(row, agent)
            self._agent_event(session, row)
        log.info("agent %s signed in", agent_id)
        return agent

    def agent_sign_out(self, agent_id: str) -> r.Agent:
        """Available, wrap-up or away -> offline."""
        return self._change(agent_id, lambda a, now: r.sign_out(a, now))

    def set_state(self, agent_id: str, state: r.AgentState, reason: str | None = None) -> r.Agent:
        """The agent goes ``away`` (with ``reason``) or ``available`` (back from away or
        wrap-up); other states change only through calls and the timers."""
        if state is r.AgentState.AWAY:
            why = reason or "away"
            return self._change(agent_id, lambda a, now: r.set_away(a, now, why))
        if state is r.AgentState.AVAILABLE:
            return self._change(agent_id, lambda a, now: r.set_available(a, now))
        if state is r.AgentState.OFFLINE:
            return self.agent_sign_out(agent_id)
        raise ValueError(f"state {state} is set by calls, not by the agent")

    def update_profile(
        self,
        agent_id: str,
        *,
        skills: Mapping[str, int] | None = None,
        levels: Mapping[str, int] | None = None,
        languages: Iterable[str] | None = None,
    ) -> r.Agent:
        """Change an agent's skills, queue levels or languages (a supervisor's edit), in any
        state; the next dispatch uses them. Fields not given stay as they are."""
        for queue in levels or {}:
            if queue not in self.queues:
                raise UnknownQueue(queue)
        with self.db.transaction() as session:
            row = self._agent(session, agent_id)
            if skills is not None:
                row.skills = {str(k): int(v) for k, v in skills.items()}
            if levels is not None:
                row.levels = {str(k): int(v) for k, v in levels.items()}
            if languages is not None:
                row.languages = sorted(set(languages))
            row.version = (row.version or 0) + 1
            self._agent_event(session, row)
            agent = to_agent(row)
        log.info("agent %s profile changed", agent_id)
        return agent

    def _change(self, agent_id: str, change: _Change) -> r.Agent:
        now = self.clock.now()
        with self.db.transaction() as session:
            row = self._agent(session, agent_id)
            before = to_agent(row)
            agent = change(before, now)
            _store_agent(row, agent)
            if before.offer is not None and agent.offer is None:
                # A ringing offer dropped (the agent went away): the caller waits again.
                self._return_caller(session, before.offer, agent_id, tried=True)
            self._agent_event(session, row)
        log.info("agent %s is %s", agent_id, agent.state)
        return agent

    def _return_caller(
        self, session: Session, caller_id: str, agent_id: str, *, tried: bool
    ) -> None:
        caller = self._caller(session, caller_id)
        if caller is None or caller.status != "offered" or caller.offered_agent != agent_id:
            return
        caller.status = "waiting"
        caller.offered_agent = None
        caller.offered_at = None
        if tried and agent_id not in caller.tried:
            caller.tried = [*caller.tried, agent_id]
        self._queue_event(session, caller.queue, "waiting", caller_id)

    # -- callers

    def enqueue_caller(
        self,
        call_id: str,
        queue: str,
        *,
        language: str | None = None,
        priority: int = 0,
        red_flag: bool = False,
        callback_number: str | None = None,
        enqueued_at: datetime | None = None,
        facts: CallerFacts | None = None,
    ) -> None:
        """Put a call (or, with ``callback_number``, a callback request) in ``queue``.

        Enqueuing a call already known does nothing. ``enqueued_at`` keeps the original
        queue time when a waiting caller becomes a callback. The caller's priority is the
        highest of ``priority`` (what the IVR asked for) and the ``routing.priority`` rules
        (:mod:`.priority`) for ``facts`` (an ID number keyed in the menu, a known birth date)
        and for what the database knows (an earlier call from the same number today).
        """
        if queue not in self.queues:
            raise UnknownQueue(queue)
        now = self.clock.now()
        with self.db.transaction() as session:
            if self._caller(session, call_id) is not None:
                return
            known = self.caller_facts(session, call_id, now)
            given = facts or CallerFacts()
            decided = caller_priority(
                self.settings.priority,
                CallerFacts(
                    id_number=given.id_number,
                    birth_date=given.birth_date,
                    earlier_calls_today=max(given.earlier_calls_today, known.earlier_calls_today),
                    age_years=given.age_years if given.age_years is not None else known.age_years,
                ),
                self._today(now)[0],
                asked=priority,
            )
            if decided.reasons:
                log.info(
                    "call %s priority %d (%s)", call_id, decided.value, ", ".join(decided.reasons)
                )
            priority = decided.value
            session.add(
                RoutingCaller(
                    id=call_id,
                    queue=queue,
                    language=language,
                    enqueued_at=enqueued_at or now,
                    priority=priority,
                    red_flag=red_flag,
                    callback=callback_number is not None,
                    callback_number=callback_number,
                    status="waiting",
                    tried=[],
                )
            )
            self._queue_event(session, queue, "waiting", call_id)
        log.info("call %s queued in %s", call_id, queue)

    def caller_left(self, call_id: str) -> bool:
        """The caller hung up before being answered: abandoned; a ringing agent is released.
        False if the call was not waiting or ringing."""
        now = self.clock.now()
        with self.db.transaction() as session:
            # Agent rows are locked before caller rows everywhere (no lock-order deadlock):
            # find the ringing agent first, lock it, then lock and re-read the caller.
            ringing = session.scalar(
                select(RoutingCaller.offered_agent).where(RoutingCaller.id == call_id)
            )
            row = None
            if ringing is not None:
                row = session.scalars(
                    select(RoutingAgent).where(RoutingAgent.id == ringing).with_for_update()
                ).one_or_none()
            caller = self._caller(session, call_id)
            if caller is None or caller.status not in ("waiting", "offered"):
                return False
            if (
                row is not None
                and caller.offered_agent == row.id
                and row.offer == call_id
                and row.state == r.AgentState.RESERVED.value
            ):
                _store_agent(row, r.release(to_agent(row), now))
                self._agent_event(session, row, offer_ended="caller_left")
            caller.status = "abandoned"
            caller.abandoned_at = now
            caller.offered_agent = None
            self._queue_event(session, caller.queue, "abandoned", call_id)
        log.info("call %s left the queue", call_id)
        return True

    # -- offers

    def dispatch(self) -> list[r.Offer]:
        """Offer waiting callers to free agents; persist and return the offers.

        The available agents and waiting callers are locked (skipping rows another
        dispatcher holds), so concurrent dispatchers never make two offers for one agent or
        one caller.
        """
        with self.db.transaction() as session:
            free = list(
                session.scalars(
                    select(RoutingAgent)
                    .where(RoutingAgent.state == r.AgentState.AVAILABLE.value)
                    .order_by(RoutingAgent.id)
                    .with_for_update(skip_locked=True)
                )
            )
            if not free:
                return []
            waiting = list(
                session.scalars(
                    select(RoutingCaller)
                    .where(
                        RoutingCaller.status == "waiting",
                        # a callback that did not answer waits out its retry delay
                        or_(
                            RoutingCaller.callback_not_before.is_(None),
                            RoutingCaller.callback_not_before <= self.clock.now(),
                        ),
                    )
                    .order_by(RoutingCaller.enqueued_at, RoutingCaller.id)
                    .with_for_update(skip_locked=True)
                )
            )
            if not waiting:
                return []
            # Busy, away and offline agents only tell the router which tier levels are
            # staffed; they are read, not locked.
            others = session.scalars(
                select(RoutingAgent).where(RoutingAgent.state != r.AgentState.AVAILABLE.value)
            )
            for a in free:
                self._roll_day(a, self.clock.now())  # fewest-calls counts today's calls
            agents = [to_agent(a) for a in free] + [to_agent(a) for a in others]
            callers = [to_caller(c) for c in waiting if c.queue in self.queues]
            offers = self.router.decide(self.queues, callers, agents)
            rows = {a.id: a for a in free}
            caller_rows = {c.id: c for c in waiting}
            for offer in offers:
                _store_agent(rows[offer.agent_id], offer.agent_after)
                caller = caller_rows[offer.caller_id]
                caller.status = "offered"
                caller.offered_agent = offer.agent_id
                caller.offered_at = offer.at
                self._agent_event(session, rows[offer.agent_id], offer=True)
                self._queue_event(session, caller.queue, "offered", caller.id)
        for offer in offers:
            log.info("offer: call %s -> agent %s", offer.caller_id, offer.agent_id)
        return offers

    def tick(self) -> list[r.RouterEvent]:
        """Persist rings past their timeout (the caller waits again) and wrap-ups past their
        end; return the events."""
        states = (r.AgentState.RESERVED.value, r.AgentState.WRAP_UP.value)
        with self.db.transaction() as session:
            rows = {
                a.id: a
                for a in session.scalars(
                    select(RoutingAgent)
                    .where(RoutingAgent.state.in_(states))
                    .order_by(RoutingAgent.id)
                    .with_for_update(skip_locked=True)
                )
            }
            events = self.router.tick([to_agent(a) for a in rows.values()])
            self._store_events(session, rows, events)
        for event in events:
            log.info("%s: agent %s", type(event).__name__, event.agent_id)
        return events

    def _store_events(
        self, session: Session, rows: dict[str, RoutingAgent], events: list[r.RouterEvent]
    ) -> None:
        for event in events:
            _store_agent(rows[event.agent_id], event.agent_after)
            extra = {"offer_ended": "no_answer"} if isinstance(event, r.RingNoAnswer) else {}
            self._agent_event(session, rows[event.agent_id], **extra)
            if isinstance(event, r.RingNoAnswer):
                self._return_caller(session, event.caller_id, event.agent_id, tried=True)

    def ring_ended(self, agent_id: str, call_id: str) -> bool:
        """The phone ringing ``agent_id`` for ``call_id`` stopped unanswered before the ring
        timeout (no answer, busy, or hung up without taking the call): a miss, as at the
        timeout, and the caller waits again at once, offered to other agents first. False if
        that call is no longer ringing for them (taken, or already timed out)."""
        with self.db.transaction() as session:
            row = self._agent(session, agent_id)
            if row.state != r.AgentState.RESERVED.value or row.offer != call_id:
                return False
            events = self.router.ring_missed(to_agent(row))
            self._store_events(session, {agent_id: row}, events)
        log.info("agent %s did not answer call %s", agent_id, call_id)
        return True

    def answer(self, offer: r.Offer) -> bool:
        """The agent answered ``offer``: agent on call, caller answered. False if the offer is
        no longer ringing (it rang out or the caller left)."""
        return self.accept(offer.agent_id, offer.caller_id)

    def accept(self, agent_id: str, call_id: str) -> bool:
        """The agent answered the call ringing for them (by phone, or "accept" in the
        console). False if that call is no longer ringing for them."""
        now = self.clock.now()
        with self.db.transaction() as session:
            row = self._agent(session, agent_id)
            caller = self._caller(session, call_id)
            if (
                row.state != r.AgentState.RESERVED.value
                or row.offer != call_id
                or caller is None
                or caller.status != "offered"
            ):
                return False
            _store_agent(row, r.answer(to_agent(row), now))
            caller.status = "answered"
            caller.answered_at = now
            caller.answered_by = agent_id
            self._agent_event(session, row)
            self._queue_event(session, caller.queue, "answered", caller.id)
        return True

    def reject(self, agent_id: str, call_id: str) -> bool:
        """The agent declined the call ringing for them ("reject" in the console): they are
        available again without counting a miss, and the caller waits again, offered to
        other agents first. False if that call is no longer ringing for them."""
        now = self.clock.now()
        with self.db.transaction() as session:
            row = self._agent(session, agent_id)
            if row.state != r.AgentState.RESERVED.value or row.offer != call_id:
                return False
            _store_agent(row, r.release(to_agent(row), now))
            self._return_caller(session, call_id, agent_id, tried=True)
            self._agent_event(session, row, offer_ended="rejected")
        log.info("agent %s rejected call %s", agent_id, call_id)
        return True

    def end_call(self, agent_id: str) -> r.Agent:
        """The agent's call ended: wrap-up for the configured time."""
        now = self.clock.now()
        with self.db.transaction() as session:
            row = self._agent(session, agent_id)
            self._roll_day(row, now)
            before = to_agent(row)
            agent = r.end_call(before, now, self.settings.wrap_up_s)
            _store_agent(row, agent)
            if before.offer is not None:
                caller = self._caller(session, before.offer)
                if caller is not None and caller.ended_at is None:
                    caller.ended_at = now
            self._agent_event(session, row, call_ended=before.offer)
        return agent

    # -- figures

    def status(self, since: datetime | None = None) -> Status:
        """Per configured queue: callers waiting and ringing, the longest wait, agents by state
        and, for calls queued since ``since`` (default: local midnight, instance time zone), the
        service level, abandonment and average speed of answer."""
        now = self.clock.now()
        start = since or self._today(now)[1]
        target = timedelta(seconds=self.settings.service_level_s)
        with self.db.transaction() as session:
            agents = list(session.scalars(select(RoutingAgent)))
            current = list(
                session.scalars(
                    select(RoutingCaller).where(RoutingCaller.status.in_(("waiting", "offered")))
                )
            )
            recent = list(
                session.scalars(
                    select(RoutingCaller).where(
                        RoutingCaller.enqueued_at >= start,
                        RoutingCaller.status.in_(("answered", "abandoned")),
                    )
                )
            )
        result = Status(at=now, since=start, target_s=self.settings.service_level_s)
        for name in self.settings.queues:
            mine = [c for c in current if c.queue == name]
            waits = [(now - c.enqueued_at).total_seconds() for c in mine]
            by_state = dict.fromkeys(r.AgentState.__members__.values(), 0)
            for a in agents:
                if name in a.levels:
                    by_state[r.AgentState(a.state)] += 1
            answered = [c for c in recent if c.queue == name and c.answered_at is not None]
            abandoned = sum(1 for c in recent if c.queue == name and c.status == "abandoned")
            delays = [c.answered_at - c.enqueued_at for c in answered if c.answered_at is not None]
            in_target = sum(1 for d in delays if d <= target)
            ended = len(answered) + abandoned
            result.queues.append(
                QueueStatus(
                    queue=name,
                    waiting=sum(1 for c in mine if c.status == "waiting"),
                    offered=sum(1 for c in mine if c.status == "offered"),
                    longest_wait_s=max(waits, default=0.0),
                    agents={str(s): n for s, n in by_state.items()},
                    answered=len(answered),
                    answered_in_target=in_target,
                    abandoned=abandoned,
                    service_level=in_target / len(answered) if answered else None,
                    service_level2=in_target / ended if ended else None,
                    abandon_rate=abandoned / ended if ended else None,
                    asa_s=(
                        sum(d.total_seconds() for d in delays) / len(delays) if delays else None
                    ),
                )
            )
        return result
