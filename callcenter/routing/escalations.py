"""Tier-2 escalations, persisted: an agent on a call asks a hospital expert for help.

Every change is one transaction on locked rows and goes through the pure
:class:`~callcenter.routing.escalation.EscalationMachine`; each transition is written to
``routing_escalation_transitions`` (who, when, from, to) and an illegal one raises
:class:`~callcenter.routing.escalation.IllegalEscalationTransition` with nothing changed.

How an escalation moves:

* :meth:`EscalationService.open`: the agent (on the call) writes the question, notes and the
  knowledge-base articles used, and picks a specialty (and optionally a hospital). The
  escalation is requested and at once **offered to the pool** of experts of that specialty
  (and hospital): every available expert of the pool sees it in :meth:`~EscalationService.
  offers_for`, the question first; experts who come online while it is offered see it too.
* :meth:`~EscalationService.accept`: the first expert to accept takes it (row locks: two
  experts accepting at once, one wins) and is busy with it; the phone side dials them into
  the caller's conference.
* :meth:`~EscalationService.decline`: the expert is taken out of the pool for this
  escalation; when no available expert of the pool is left, it is declined and becomes an
  **expert callback** with a deadline.
* :meth:`~EscalationService.tick`: an offer nobody accepted within the offer timeout (default
  60 s) times out and becomes an expert callback (deadline default 30 min); a callback past
  its deadline expires.
* :meth:`~EscalationService.complete_callback` (an expert of the pool called back) and
  :meth:`~EscalationService.complete` (the conference ended) finish it.

Experts are rows of their own (``routing_experts``), not routing agents: they never take
queue calls, they are chosen by specialty and hospital rather than queue skills and levels,
and they are busy with one escalation at a time.

Questions, notes and answers are what agents and experts wrote about a patient: stored and
shown, never logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ..clock import Clock
from ..config import RoutingConfig
from ..db.engine import Database
from .escalation import (
    FINAL_STATES,
    Escalation,
    EscalationAction,
    EscalationError,
    EscalationMachine,
    EscalationSettings,
    EscalationState,
    IllegalEscalationTransition,
)
from .models import RoutingAgent, RoutingEscalation, RoutingEscalationTransition, RoutingExpert

if TYPE_CHECKING:
    from ..events import EventBus

log = logging.getLogger(__name__)

S = EscalationState
A = EscalationAction

#: The action that leads into each state (every state has exactly one).
_ACTION_INTO: dict[EscalationState, EscalationAction] = {
    S.OFFERED: A.OFFER,
    S.ACCEPTED: A.ACCEPT,
    S.DECLINED: A.DECLINE,
    S.TIMED_OUT: A.TIME_OUT,
    S.CALLBACK_SCHEDULED: A.SCHEDULE_CALLBACK,
    S.COMPLETED: A.COMPLETE,
    S.EXPIRED: A.EXPIRE,
}
#: Escalations still waiting for someone (shown on the wallboard).
OPEN_STATES = (S.REQUESTED, S.OFFERED, S.ACCEPTED, S.DECLINED, S.TIMED_OUT, S.CALLBACK_SCHEDULED)
EXPERT_STATES = ("offline", "available", "busy")
MAX_QUESTION = 2000
#: why an accepted escalation went back to the pool or to a callback
UNREACHABLE = "expert could not be reached by phone"
MAX_NOTES = 4000
MAX_ARTICLES = 20
TIMER = "timer"


class UnknownEscalation(LookupError):
    """No escalation with that id."""


class UnknownExpert(LookupError):
    """No expert with that id."""


class ExpertNotAvailable(EscalationError):
    """The expert is offline or busy with another escalation."""


class NotForThisExpert(EscalationError):
    """The escalation is for another specialty or hospital, or this expert declined it."""


class OfferTimedOut(EscalationError):
    """The offer's time ran out (the timer turns it into a callback)."""


class InvalidEscalation(EscalationError, ValueError):
    """The request is incomplete (no question, no specialty) or the agent is not on the call."""


@dataclass(frozen=True)
class ExpertView:
    """An expert and their presence."""

    id: str
    name: str
    specialty: str
    hospital: str | None
    state: str
    state_since: datetime | None
    escalation: str | None
    has_contact: bool


@dataclass(frozen=True)
class EscalationView:
    """An escalation as the console and wallboard show it; ``age_s`` is since it was asked."""

    id: str
    call_id: str
    agent_id: str
    specialty: str
    hospital: str | None
    question: str
    notes: str
    article_ids: tuple[str, ...]
    state: EscalationState
    expert_id: str | None
    declined_by: tuple[str, ...]
    requested_at: datetime
    offered_at: datetime | None
    offer_deadline: datetime | None
    callback_deadline: datetime | None
    completed_at: datetime | None
    answer_note: str | None
    conference: str | None
    expert_leg: str | None
    age_s: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (times in ISO 8601)."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            if isinstance(value, datetime):
                out[name] = value.isoformat()
            elif isinstance(value, tuple):
                out[name] = list(value)
            else:
                out[name] = str(value) if isinstance(value, S) else value
        return out


@dataclass(frozen=True)
class TransitionView:
    """One logged transition."""

    at: datetime
    from_state: str | None
    action: str
    to_state: str
    actor: str
    detail: dict[str, Any]


def pool_id(specialty: str, hospital: str | None) -> str:
    """The offer target the state machine records: the pool of experts of a specialty."""
    return f"pool:{specialty}@{hospital}" if hospital else f"pool:{specialty}"


def conference_name(call_id: str) -> str:
    """The conference a call's caller, agent and expert talk in."""
    return f"hh-{call_id}"


def _expert_view(row: RoutingExpert) -> ExpertView:
    return ExpertView(
        id=row.id,
        name=row.name,
        specialty=row.specialty,
        hospital=row.hospital,
        state=row.state,
        state_since=row.state_since,
        escalation=row.escalation,
        has_contact=bool(row.contact),
    )


def _view(row: RoutingEscalation, now: datetime) -> EscalationView:
    return EscalationView(
        id=row.id,
        call_id=row.call_id,
        agent_id=row.agent_id,
        specialty=row.specialty,
        hospital=row.hospital,
        question=row.question,
        notes=row.notes,
        article_ids=tuple(str(a) for a in row.article_ids),
        state=S(row.state),
        expert_id=row.expert_id,
        declined_by=tuple(row.declined_by),
        requested_at=row.requested_at,
        offered_at=row.offered_at,
        offer_deadline=row.offer_deadline,
        callback_deadline=row.callback_deadline,
        completed_at=row.completed_at,
        answer_note=row.answer_note,
        conference=row.conference,
        expert_leg=row.expert_leg,
        age_s=max(0.0, (now - row.requested_at).total_seconds()),
    )


def _machine_value(row: RoutingEscalation) -> Escalation:
    return Escalation(
        id=row.id,
        caller_id=row.call_id,
        state=S(row.state),
        requested_at=row.requested_at,
        expert_id=row.expert_id or pool_id(row.specialty, row.hospital),
        offered_at=row.offered_at,
        offer_deadline=row.offer_deadline,
        callback_deadline=row.callback_deadline,
        updated_at=row.updated_at,
        history=((S(row.state), row.updated_at),),
    )


def _eligible(expert: RoutingExpert, row: RoutingEscalation) -> bool:
    if expert.specialty != row.specialty:
        return False
    return row.hospital is None or row.hospital == expert.hospital


class EscalationService:
    """Persisted escalations and expert presence; see the module docstring."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: RoutingConfig,
        *,
        events: EventBus | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.machine = EscalationMachine(
            clock,
            EscalationSettings(
                offer_timeout_s=settings.escalation_offer_timeout_s,
                callback_deadline_s=settings.escalation_callback_deadline_s,
            ),
        )
        self.events = events

    # ------------------------------------------------------------ helpers

    def _publish(self, session: Session, row: RoutingEscalation, experts: Iterable[str]) -> None:
        if self.events is None:
            return
        from ..events import topics

        data = {
            "kind": "escalation",
            "id": row.id,
            "state": row.state,
            "call": row.call_id,
            "agent": row.agent_id,
            "specialty": row.specialty,
            "hospital": row.hospital,
            "expert": row.expert_id,
            "version": row.version,
        }
        self.events.publish(topics.ESCALATIONS, data, tx=session)
        for expert_id in experts:
            self.events.publish(topics.expert(expert_id), data, tx=session)

    def _expert(self, session: Session, expert_id: str, *, lock: bool = True) -> RoutingExpert:
        query = select(RoutingExpert).where(RoutingExpert.id == expert_id)
        row = session.scalars(query.with_for_update() if lock else query).one_or_none()
        if row is None:
            raise UnknownExpert(expert_id)
        return row

    def _escalation(self, session: Session, escalation_id: str) -> RoutingEscalation:
        row = session.scalars(
            select(RoutingEscalation).where(RoutingEscalation.id == escalation_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise UnknownEscalation(escalation_id)
        return row

    def _pool(
        self, session: Session, row: RoutingEscalation, *, available_only: bool = True
    ) -> list[RoutingExpert]:
        query = select(RoutingExpert).where(RoutingExpert.specialty == row.specialty)
        if row.hospital is not None:
            query = query.where(RoutingExpert.hospital == row.hospital)
        if available_only:
            query = query.where(RoutingExpert.state == "available")
        return list(session.scalars(query.order_by(RoutingExpert.id)))

    def _apply(
        self,
        session: Session,
        row: RoutingEscalation,
        actions: Sequence[EscalationAction],
        actor: str,
        detail: dict[str, Any] | None = None,
    ) -> Escalation:
        """Run ``actions`` through the machine (raising on an illegal one, nothing changed),
        store the result on ``row`` and log every transition."""
        value = _machine_value(row)
        for action in actions:
            value = self.machine.apply(value, action, value.expert_id)
        self._store(session, row, value, actor, detail)
        return value

    def _store(
        self,
        session: Session,
        row: RoutingEscalation,
        value: Escalation,
        actor: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        previous = S(row.state)
        for state, at in value.history[1:]:
            session.add(
                RoutingEscalationTransition(
                    escalation_id=row.id,
                    at=at,
                    from_state=previous.value,
                    action=_ACTION_INTO[state].value,
                    to_state=state.value,
                    actor=actor[:64],
                    detail=dict(detail or {}),
                )
            )
            previous = state
        row.state = value.state.value
        row.offered_at = value.offered_at
        row.offer_deadline = value.offer_deadline
        row.callback_deadline = value.callback_deadline
        row.updated_at = value.updated_at or self.clock.now()
        row.version = (row.version or 0) + 1

    # ------------------------------------------------------------ experts

    def expert_sign_in(
        self,
        expert_id: str,
        *,
        name: str | None = None,
        specialty: str | None = None,
        hospital: str | None = None,
        contact: str | None = None,
    ) -> ExpertView:
        """The expert is available (created the first time, which needs ``specialty``).
        Profile fields given are updated. A busy expert stays busy."""
        now = self.clock.now()
        with self.db.transaction() as session:
            row = session.scalars(
                select(RoutingExpert).where(RoutingExpert.id == expert_id).with_for_update()
            ).one_or_none()
            if row is None:
                if not specialty:
                    raise InvalidEscalation("a new expert needs a specialty")
                row = RoutingExpert(id=expert_id, name=name or expert_id, state="offline")
                row.version = 0
                session.add(row)
            if name is not None:
                row.name = name
            if specialty:
                row.specialty = specialty
            if hospital is not None:
                row.hospital = hospital or None
            if contact is not None:
                row.contact = contact or None
            if row.state != "busy":
                row.state = "available"
                row.state_since = now
            row.version = (row.version or 0) + 1
            view = _expert_view(row)
        log.info("expert %s available", expert_id)
        return view

    def expert_sign_out(self, expert_id: str) -> ExpertView:
        """The expert is offline. A busy expert cannot sign out until their call ends."""
        now = self.clock.now()
        with self.db.transaction() as session:
            row = self._expert(session, expert_id)
            if row.state == "busy":
                raise ExpertNotAvailable(f"expert {expert_id} is busy with an escalation")
            row.state = "offline"
            row.state_since = now
            row.version = (row.version or 0) + 1
            return _expert_view(row)

    def expert(self, expert_id: str) -> ExpertView:
        """One expert."""
        with self.db.transaction() as session:
            return _expert_view(self._expert(session, expert_id, lock=False))

    def expert_contact(self, expert_id: str) -> str | None:
        """How the phone reaches the expert (personal data: not logged)."""
        with self.db.transaction() as session:
            return self._expert(session, expert_id, lock=False).contact

    def experts(self) -> list[ExpertView]:
        """Every expert."""
        with self.db.transaction() as session:
            rows = session.scalars(select(RoutingExpert).order_by(RoutingExpert.id))
            return [_expert_view(r) for r in rows]

    def available_experts(self, specialty: str, hospital: str | None = None) -> list[ExpertView]:
        """Available experts of ``specialty`` (at ``hospital``, if given), longest idle first."""
        with self.db.transaction() as session:
            query = select(RoutingExpert).where(
                RoutingExpert.specialty == specialty, RoutingExpert.state == "available"
            )
            if hospital:
                query = query.where(RoutingExpert.hospital == hospital)
            rows = list(session.scalars(query))
        rows.sort(key=lambda r: (r.state_since or self.clock.now(), r.id))
        return [_expert_view(r) for r in rows]

    # ------------------------------------------------------------ escalations

    def open(
        self,
        call_id: str,
        agent_id: str,
        specialty: str,
        hospital: str | None,
        question: str,
        notes: str = "",
        article_ids: Iterable[str | int] = (),
    ) -> EscalationView:
        """The agent on ``call_id`` asks for an expert of ``specialty``: requested, then offered
        to the pool at once. Raises :class:`InvalidEscalation` for an empty question or
        specialty, an agent not on that call, or a call that already has one open."""
        question = (question or "").strip()
        specialty = (specialty or "").strip()
        hospital = (hospital or "").strip() or None
        articles = [str(a) for a in article_ids]
        if not question:
            raise InvalidEscalation("the question is empty")
        if len(question) > MAX_QUESTION or len(notes or "") > MAX_NOTES:
            raise InvalidEscalation(
                f"question or notes too long (at most {MAX_QUESTION} / {MAX_NOTES} characters)"
            )
        if not specialty:
            raise InvalidEscalation("choose a specialty")
        if len(articles) > MAX_ARTICLES:
            raise InvalidEscalation(f"at most {MAX_ARTICLES} articles")
        now = self.clock.now()
        with self.db.transaction() as session:
            agent = session.scalars(
                select(RoutingAgent).where(RoutingAgent.id == agent_id).with_for_update()
            ).one_or_none()
            if agent is None or agent.state != "on_call" or agent.offer != call_id:
                raise InvalidEscalation(f"agent {agent_id} is not on call {call_id}")
            existing = session.scalar(
                select(RoutingEscalation.id).where(
                    RoutingEscalation.call_id == call_id,
                    RoutingEscalation.state.in_(
                        [S.REQUESTED.value, S.OFFERED.value, S.ACCEPTED.value]
                    ),
                )
            )
            if existing is not None:
                raise InvalidEscalation(f"call {call_id} already has escalation {existing} open")
            escalation_id = str(uuid.uuid4())
            value = self.machine.request(escalation_id, call_id)
            row = RoutingEscalation(
                id=escalation_id,
                call_id=call_id,
                agent_id=agent_id,
                specialty=specialty,
                hospital=hospital,
                question=question,
                notes=(notes or "").strip(),
                article_ids=articles,
                state=S.REQUESTED.value,
                declined_by=[],
                requested_at=now,
                updated_at=now,
                version=0,
            )
            session.add(row)
            session.add(
                RoutingEscalationTransition(
                    escalation_id=escalation_id,
                    at=value.requested_at,
                    from_state=None,
                    action="request",
                    to_state=S.REQUESTED.value,
                    actor=agent_id,
                    detail={"specialty": specialty, "hospital": hospital},
                )
            )
            session.flush()
            self._apply(session, row, [A.OFFER], agent_id, {"pool": pool_id(specialty, hospital)})
            pool = [e.id for e in self._pool(session, row)]
            self._publish(session, row, pool)
            view = _view(row, now)
        log.info(
            "escalation %s opened for %s, offered to %d experts",
            escalation_id,
            specialty,
            len(pool),
        )
        return view

    def get(self, escalation_id: str) -> EscalationView:
        """One escalation."""
        with self.db.transaction() as session:
            row = session.get(RoutingEscalation, escalation_id)
            if row is None:
                raise UnknownEscalation(escalation_id)
            return _view(row, self.clock.now())

    def history(self, escalation_id: str) -> list[TransitionView]:
        """The escalation's logged transitions, in order."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(RoutingEscalationTransition)
                .where(RoutingEscalationTransition.escalation_id == escalation_id)
                .order_by(RoutingEscalationTransition.id)
            )
            return [
                TransitionView(r.at, r.from_state, r.action, r.to_state, r.actor, dict(r.detail))
                for r in rows
            ]

    def for_call(self, call_id: str) -> list[EscalationView]:
        """Every escalation of a call, oldest first."""
        now = self.clock.now()
        with self.db.transaction() as session:
            rows = session.scalars(
                select(RoutingEscalation)
                .where(RoutingEscalation.call_id == call_id)
                .order_by(RoutingEscalation.requested_at, RoutingEscalation.id)
            )
            return [_view(r, now) for r in rows]

    def offers_for(self, expert_id: str) -> list[EscalationView]:
        """Escalations offered to this expert now (none unless the expert is available)."""
        now = self.clock.now()
        with self.db.transaction() as session:
            expert = self._expert(session, expert_id, lock=False)
            if expert.state != "available":
                return []
            query = select(RoutingEscalation).where(
                RoutingEscalation.state == S.OFFERED.value,
                RoutingEscalation.specialty == expert.specialty,
                or_(
                    RoutingEscalation.hospital.is_(None),
                    RoutingEscalation.hospital == expert.hospital,
                ),
            )
            rows = session.scalars(query.order_by(RoutingEscalation.requested_at))
            return [
                _view(r, now)
                for r in rows
                if expert_id not in r.declined_by
                and (r.offer_deadline is None or r.offer_deadline > now)
            ]

    def accept(self, expert_id: str, escalation_id: str) -> EscalationView:
        """The expert takes the escalation: accepted, the expert busy with it. Raises
        :class:`IllegalEscalationTransition` unless it is offered (another expert was first,
        or it timed out), :class:`ExpertNotAvailable`, :class:`NotForThisExpert` or
        :class:`OfferTimedOut`."""
        now = self.clock.now()
        with self.db.transaction() as session:
            # Experts are locked before escalations everywhere (no lock-order deadlock).
            expert = self._expert(session, expert_id)
            row = self._escalation(session, escalation_id)
            if row.state != S.OFFERED.value:
                raise IllegalEscalationTransition(escalation_id, S(row.state), A.ACCEPT)
            if expert.state != "available":
                raise ExpertNotAvailable(f"expert {expert_id} is {expert.state}")
            if not _eligible(expert, row) or expert_id in row.declined_by:
                raise NotForThisExpert(f"escalation {escalation_id} is not offered to {expert_id}")
            if row.offer_deadline is not None and now >= row.offer_deadline:
                raise OfferTimedOut(f"escalation {escalation_id}: the offer timed out")
            self._apply(session, row, [A.ACCEPT], expert_id)
            row.expert_id = expert_id
            row.conference = conference_name(row.call_id)
            expert.state = "busy"
            expert.state_since = now
            expert.escalation = escalation_id
            expert.version = (expert.version or 0) + 1
            others = [e.id for e in self._pool(session, row) if e.id != expert_id]
            self._publish(session, row, others)
            view = _view(row, now)
        log.info("escalation %s accepted by expert %s", escalation_id, expert_id)
        return view

    def decline(self, expert_id: str, escalation_id: str, reason: str = "") -> EscalationView:
        """The expert says no: out of this escalation's pool. When no available expert of the
        pool is left, the escalation is declined and becomes an expert callback."""
        now = self.clock.now()
        reason = (reason or "").strip()[:200]
        with self.db.transaction() as session:
            expert = self._expert(session, expert_id)
            row = self._escalation(session, escalation_id)
            if row.state != S.OFFERED.value:
                raise IllegalEscalationTransition(escalation_id, S(row.state), A.DECLINE)
            if not _eligible(expert, row) or expert_id in row.declined_by:
                raise NotForThisExpert(f"escalation {escalation_id} is not offered to {expert_id}")
            row.declined_by = [*row.declined_by, expert_id]
            left = [
                e.id
                for e in self._pool(session, row)
                if e.id not in row.declined_by and e.id != expert_id
            ]
            detail = {"reason": reason, "pool_left": len(left)}
            if left:
                session.add(
                    RoutingEscalationTransition(
                        escalation_id=row.id,
                        at=now,
                        from_state=row.state,
                        action="decline_one",
                        to_state=row.state,
                        actor=expert_id,
                        detail=detail,
                    )
                )
                row.updated_at = now
                row.version = (row.version or 0) + 1
            else:
                self._apply(session, row, [A.DECLINE, A.SCHEDULE_CALLBACK], expert_id, detail)
            self._publish(session, row, [expert_id])
            view = _view(row, now)
        log.info("escalation %s declined by expert %s", escalation_id, expert_id)
        return view

    def tick(self) -> list[EscalationView]:
        """Apply what time alone causes (offers timing out into callbacks, callbacks past
        their deadline expiring); return the escalations that changed. Rows another process
        is working on are skipped (``SKIP LOCKED``) and picked up next time."""
        now = self.clock.now()
        changed: list[EscalationView] = []
        with self.db.transaction() as session:
            rows = session.scalars(
                select(RoutingEscalation)
                .where(
                    or_(
                        and_(
                            RoutingEscalation.state == S.OFFERED.value,
                            RoutingEscalation.offer_deadline <= now,
                        ),
                        and_(
                            RoutingEscalation.state == S.CALLBACK_SCHEDULED.value,
                            RoutingEscalation.callback_deadline <= now,
                        ),
                    )
                )
                .order_by(RoutingEscalation.requested_at, RoutingEscalation.id)
                .with_for_update(skip_locked=True)
            )
            for row in rows:
                value = self.machine.tick(_machine_value(row))
                if value.state.value == row.state:
                    continue
                self._store(session, row, value, TIMER)
                self._publish(session, row, [])
                changed.append(_view(row, now))
        for view in changed:
            log.info("escalation %s is %s", view.id, view.state)
        return changed

    def callbacks_for(self, expert_id: str) -> list[EscalationView]:
        """Expert callbacks this expert can make (their specialty and hospital), soonest
        deadline first."""
        now = self.clock.now()
        with self.db.transaction() as session:
            expert = self._expert(session, expert_id, lock=False)
            rows = session.scalars(
                select(RoutingEscalation)
                .where(
                    RoutingEscalation.state == S.CALLBACK_SCHEDULED.value,
                    RoutingEscalation.specialty == expert.specialty,
                    or_(
                        RoutingEscalation.hospital.is_(None),
                        RoutingEscalation.hospital == expert.hospital,
                    ),
                )
                .order_by(RoutingEscalation.callback_deadline, RoutingEscalation.id)
            )
            return [_view(r, now) for r in rows]

    def complete_callback(
        self, expert_id: str, escalation_id: str, answer_note: str
    ) -> EscalationView:
        """The expert called the patient back: completed, with the expert's note."""
        now = self.clock.now()
        note = (answer_note or "").strip()
        if not note:
            raise InvalidEscalation("write what the patient was told")
        with self.db.transaction() as session:
            expert = self._expert(session, expert_id)
            row = self._escalation(session, escalation_id)
            if row.state != S.CALLBACK_SCHEDULED.value:
                raise IllegalEscalationTransition(escalation_id, S(row.state), A.COMPLETE)
            if not _eligible(expert, row):
                raise NotForThisExpert(f"escalation {escalation_id} is for another specialty")
            self._apply(session, row, [A.COMPLETE], expert_id)
            row.expert_id = expert_id
            row.answer_note = note[:MAX_NOTES]
            row.completed_at = now
            self._publish(session, row, [])
            return _view(row, now)

    def complete(
        self, escalation_id: str, actor: str, answer_note: str | None = None
    ) -> EscalationView:
        """An accepted escalation is over (the conference ended, or the expert said so): the
        expert is available again."""
        now = self.clock.now()
        with self.db.transaction() as session:
            expert_id = session.scalar(
                select(RoutingEscalation.expert_id).where(RoutingEscalation.id == escalation_id)
            )
            expert = self._expert(session, expert_id) if expert_id else None
            row = self._escalation(session, escalation_id)
            self._apply(session, row, [A.COMPLETE], actor)
            row.completed_at = now
            if answer_note:
                row.answer_note = answer_note.strip()[:MAX_NOTES]
            if expert is not None and expert.escalation == escalation_id:
                expert.state = "available"
                expert.state_since = now
                expert.escalation = None
                expert.version = (expert.version or 0) + 1
            self._publish(session, row, [])
            return _view(row, now)

    def expert_unreachable(self, escalation_id: str, *, reoffer: bool) -> EscalationView | None:
        """The expert who accepted could not be reached (their phone did not answer): they
        leave this escalation's pool and are available again. With ``reoffer`` (the agent is
        still with the caller) and another expert of the pool available, it is offered again
        with a fresh timeout; otherwise it becomes an expert callback, so the question is not
        lost. ``None`` when it is no longer accepted (completed meanwhile)."""
        now = self.clock.now()
        with self.db.transaction() as session:
            expert_id = session.scalar(
                select(RoutingEscalation.expert_id).where(RoutingEscalation.id == escalation_id)
            )
            expert = self._expert(session, expert_id) if expert_id else None
            row = self._escalation(session, escalation_id)
            if row.state != S.ACCEPTED.value:
                return None
            if expert is not None and expert.escalation == escalation_id:
                expert.state = "available"
                expert.state_since = now
                expert.escalation = None
                expert.version = (expert.version or 0) + 1
            if expert_id:
                row.declined_by = [*row.declined_by, expert_id]
            row.expert_id = None
            row.expert_leg = None
            left = [e.id for e in self._pool(session, row) if e.id not in row.declined_by]
            detail = {"reason": UNREACHABLE, "expert": expert_id, "pool_left": len(left)}
            if reoffer and left:
                self._apply(session, row, [A.OFFER], "phone", detail)
                self._publish(session, row, [*left, *([expert_id] if expert_id else [])])
            else:
                self._apply(session, row, [A.DECLINE, A.SCHEDULE_CALLBACK], "phone", detail)
                self._publish(session, row, [expert_id] if expert_id else [])
            view = _view(row, now)
        log.info(
            "escalation %s: expert %s unreachable, now %s", escalation_id, expert_id, view.state
        )
        return view

    def set_expert_leg(self, escalation_id: str, leg: str) -> None:
        """Remember the provider's id of the call that reaches the expert."""
        with self.db.transaction() as session:
            self._escalation(session, escalation_id).expert_leg = leg[:64]

    def open_escalations(self) -> list[EscalationView]:
        """Every escalation not finished, oldest first (the wallboard)."""
        now = self.clock.now()
        with self.db.transaction() as session:
            rows = session.scalars(
                select(RoutingEscalation)
                .where(RoutingEscalation.state.in_([s.value for s in OPEN_STATES]))
                .order_by(RoutingEscalation.requested_at, RoutingEscalation.id)
            )
            return [_view(r, now) for r in rows]

    def accepted_without_leg(self) -> list[EscalationView]:
        """Accepted escalations whose expert has not been dialled yet (for the phone side)."""
        now = self.clock.now()
        with self.db.transaction() as session:
            rows = session.scalars(
                select(RoutingEscalation)
                .where(
                    RoutingEscalation.state == S.ACCEPTED.value,
                    RoutingEscalation.expert_leg.is_(None),
                )
                .order_by(RoutingEscalation.updated_at)
            )
            return [_view(r, now) for r in rows]


__all__ = [
    "FINAL_STATES",
    "OPEN_STATES",
    "EscalationService",
    "EscalationView",
    "ExpertNotAvailable",
    "ExpertView",
    "InvalidEscalation",
    "NotForThisExpert",
    "OfferTimedOut",
    "TransitionView",
    "UnknownEscalation",
    "UnknownExpert",
    "conference_name",
    "pool_id",
]
