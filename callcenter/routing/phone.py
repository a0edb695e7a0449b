"""Routing on the phone: waiting callers, callbacks, agents' calls, conferences, experts.

This module is provider-neutral (no Flask, no Twilio): the webhook blueprint
(:mod:`callcenter.telephony.twilio.queue`) parses requests, calls :class:`PhoneRouting` and
renders what it returns; provider REST calls go through the :class:`CallControl` port and are
made only by :meth:`PhoneRouting.run_once` (the ``callcenter router`` loop), never inside a
webhook: a webhook that needs one writes a task row (``routing_phone_tasks``) in its own
transaction instead.

A call's life:

1. The IVR renders ``<Enqueue waitUrl=...>``. The first wait request puts the caller in the
   router (:meth:`PhoneRouting.waiting`), with the queue, language, priority and red flag the
   IVR gave the call; each wait request answers with the caller's position (announced while
   it is ``announce_position_max`` or less) and an estimated wait from recent handle times.
2. When the estimated wait is over ``callback_offer_wait_s``, the caller may press 1 to be
   called back (:meth:`PhoneRouting.request_callback`): the same router row becomes a callback
   request, keeping its original queue time, and the caller leaves the queue.
3. :meth:`PhoneRouting.run_once` runs the router: for each offer it dials the agent's phone,
   SIP URI or client (``CallControl.dial``) with a ring timeout of ``ring_timeout_s``. The
   agent hears a whisper (queue, red flag, callback) and presses a key to take the call
   (:meth:`PhoneRouting.agent_accepted`: voicemail never takes a call); the agent is put in
   the call's conference and a ``connect`` task moves the caller out of the queue into it
   (or, for a callback, dials the caller's number into it). An offer not taken in
   ``ring_timeout_s`` rings out and the next agent is tried (the router's tick).
4. An escalation accepted by an expert dials the expert into the same conference. The
   agent may stay or hang up; conference status callbacks are recorded and close the loop:
   the agent leaving starts their wrap-up, the caller left alone is hung up, the conference
   ending completes the escalation.

Callback numbers and contacts are personal data: stored and dialled, never logged.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from ..clock import Clock
from ..config import RoutingConfig
from ..db.engine import Database
from ..db.models import Call
from ..phone import InvalidPhoneNumber, mask, normalize
from . import router as r
from .escalation import EscalationState
from .escalations import EscalationService, conference_name
from .models import (
    RoutingAgent,
    RoutingCaller,
    RoutingConferenceEvent,
    RoutingEscalation,
    RoutingPhoneTask,
)
from .service import RoutingService, UnknownAgent

log = logging.getLogger(__name__)

#: Paths of the queue blueprint (under ``/twilio/queue``) that this module builds URLs for.
PATH_WAIT = "/twilio/queue/wait"
PATH_AGENT = "/twilio/queue/agent"
PATH_AGENT_STATUS = "/twilio/queue/agent/status"
PATH_JOIN = "/twilio/queue/join"
PATH_CALLBACK_ANSWER = "/twilio/queue/callback/answer"
PATH_CALLBACK_STATUS = "/twilio/queue/callback/status"
PATH_EXPERT = "/twilio/queue/expert"
PATH_EXPERT_STATUS = "/twilio/queue/expert/status"
PATH_CONFERENCE = "/twilio/queue/conference"

#: Provider statuses of a leg that never got answered.
NOT_ANSWERED = frozenset({"no-answer", "busy", "failed", "canceled"})
MAX_TASK_ATTEMPTS = 3
#: The handle-time estimate is worked out again after this many seconds.
HANDLE_TIME_CACHE_S = 30.0
#: A dial in progress (the leg id is not known yet).
DIALLING = "dialling"


def _others(present: dict[str, int]) -> int:
    """People other than the caller in a conference (the agent, an expert), from
    :meth:`PhoneRouting._present`."""
    return sum(n for role, n in present.items() if role != "caller" and n > 0)


class CallControl(Protocol):
    """The provider's call-control REST API (Twilio: :class:`~callcenter.telephony.twilio.
    rest.TwilioCallControl`)."""

    def dial(self, to: str, answer_url: str, status_url: str, timeout_s: int) -> str:
        """Place a call to ``to`` (E.164, ``sip:`` or ``client:``); return its leg id."""
        ...

    def redirect(self, call_id: str, url: str) -> None:
        """Make a live call fetch its next instructions from ``url``."""
        ...

    def hangup(self, call_id: str) -> None:
        """End a live call."""
        ...


class CallControlError(Exception):
    """The provider refused a call-control request."""


@dataclass(frozen=True)
class WaitInfo:
    """What a waiting caller is told now."""

    call_id: str
    queue: str
    language: str
    status: str
    position: int
    #: ``None`` when nobody serving the queue is signed in
    estimated_wait_s: float | None
    announce_position: bool
    offer_callback: bool
    red_flag: bool


@dataclass(frozen=True)
class CallbackResult:
    """The answer to "press 1 to be called back"."""

    accepted: bool
    #: ``no_number``, ``not_waiting`` or ``unknown_call`` when refused
    reason: str | None = None
    #: the last digits of the number that will be called, to read back
    last_digits: str | None = None


@dataclass(frozen=True)
class Whisper:
    """What an agent hears before taking a call."""

    queue: str
    language: str
    red_flag: bool
    callback: bool
    priority: int


@dataclass(frozen=True)
class ExpertBrief:
    """What an expert hears before joining."""

    escalation_id: str
    specialty: str
    conference: str


@dataclass(frozen=True)
class CallbackView:
    """A callback request waiting for an agent (the number masked)."""

    call_id: str
    queue: str
    enqueued_at: datetime
    waited_s: float
    attempts: int
    expires_at: datetime | None
    not_before: datetime | None
    number: str


@dataclass(frozen=True)
class AgentView:
    """An agent's presence as a supervisor sees it."""

    id: str
    name: str
    state: str
    reason: str | None
    since: datetime | None
    skills: dict[str, int]
    levels: dict[str, int]
    languages: list[str]
    calls_today: int
    missed_in_row: int
    call: str | None
    phone: str


@dataclass
class LoopReport:
    """What one :meth:`PhoneRouting.run_once` did."""

    rang_out: int = 0
    offers: int = 0
    agents_dialled: int = 0
    callbacks_expired: int = 0
    escalations_changed: int = 0
    experts_dialled: int = 0
    tasks_done: int = 0
    tasks_failed: int = 0
    errors: list[str] = field(default_factory=list)


def sign_url(base_url: str, path: str, **params: str) -> str:
    """An absolute URL of ours with query parameters (Twilio signs the whole URL)."""
    query = urlencode(sorted(params.items()))
    return f"{base_url}{path}?{query}" if query else f"{base_url}{path}"


def _last_digits(e164: str) -> str:
    return e164[-4:]


_SIP = re.compile(
    r"^sip:[A-Za-z0-9_.+~-]{1,64}@[A-Za-z0-9.-]{1,120}(:[0-9]{1,5})?(;transport=(udp|tcp|tls))?$"
)
_CLIENT = re.compile(r"^client:[A-Za-z0-9_.-]{1,100}$")


class InvalidContact(ValueError):
    """Not a phone number, ``sip:`` URI or ``client:`` name we can dial."""


def normalize_contact(contact: str, default_region: str = "CN") -> str:
    """A dialable contact: E.164 for a phone number, a ``sip:`` URI or a ``client:`` name."""
    text = (contact or "").strip()
    if _SIP.match(text) or _CLIENT.match(text):
        return text
    try:
        return normalize(text, default_region)
    except InvalidPhoneNumber:
        raise InvalidContact("expected a phone number, sip:user@host or client:name") from None


class PhoneRouting:
    """The phone side of routing; see the module docstring."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: RoutingConfig,
        routing: RoutingService,
        escalations: EscalationService,
        *,
        base_url: str,
        default_region: str = "CN",
        control: CallControl | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.phone = settings.phone
        self.routing = routing
        self.escalations = escalations
        self.base_url = base_url.rstrip("/")
        self.default_region = default_region
        self.control = control
        self._handle_cache: dict[str, tuple[datetime, float]] = {}

    # ------------------------------------------------------------ URLs

    def url(self, path: str, **params: str) -> str:
        """An absolute URL of ours."""
        return sign_url(self.base_url, path, **params)

    # ------------------------------------------------------------ agents' phones

    def set_agent_contact(self, agent_id: str, contact: str | None) -> str:
        """How the phone reaches the agent (``None``: console only); returns it masked."""
        value = normalize_contact(contact, self.default_region) if contact else None
        with self.db.transaction() as session:
            row = session.scalars(
                select(RoutingAgent).where(RoutingAgent.id == agent_id).with_for_update()
            ).one_or_none()
            if row is None:
                raise UnknownAgent(agent_id)
            row.contact = value
            row.version = (row.version or 0) + 1
        return _shown_contact(value)

    def agents(self) -> list[AgentView]:
        """Every agent and their presence, by id."""
        with self.db.transaction() as session:
            rows = list(session.scalars(select(RoutingAgent).order_by(RoutingAgent.id)))
        return [
            AgentView(
                id=a.id,
                name=a.name,
                state=a.state,
                reason=a.state_reason,
                since=a.state_since,
                skills={str(k): int(v) for k, v in a.skills.items()},
                levels={str(k): int(v) for k, v in a.levels.items()},
                languages=list(a.languages),
                calls_today=a.calls_today,
                missed_in_row=a.missed_in_row,
                call=a.offer,
                phone=_shown_contact(a.contact),
            )
            for a in rows
        ]

    def callbacks_due(self) -> list[CallbackView]:
        """Callback requests waiting for an agent, in the order the router serves them."""
        now = self.clock.now()
        with self.db.transaction() as session:
            rows = list(
                session.scalars(
                    select(RoutingCaller).where(
                        RoutingCaller.status == "waiting", RoutingCaller.callback.is_(True)
                    )
                )
            )
        rows.sort(key=lambda c: r.caller_order(_as_caller(c)))
        return [
            CallbackView(
                call_id=c.id,
                queue=c.queue,
                enqueued_at=c.enqueued_at,
                waited_s=max(0.0, (now - c.enqueued_at).total_seconds()),
                attempts=c.callback_attempts,
                expires_at=c.callback_expires_at,
                not_before=c.callback_not_before,
                number=mask(c.callback_number),
            )
            for c in rows
        ]

    # ------------------------------------------------------------ waiting callers

    def waiting(self, call_id: str, queue: str, language: str) -> WaitInfo | None:
        """A wait-URL request: put the caller in the router the first time (with the IVR's
        priority and red flag), then say where they stand. ``None`` for a call we do not
        know or a queue not configured."""
        if queue not in self.routing.queues:
            return None
        with self.db.transaction() as session:
            call = session.scalars(
                select(Call).where(Call.provider_call_id == call_id)
            ).one_or_none()
            known = session.get(RoutingCaller, call_id) is not None
        if call is None:
            return None
        if not known:
            self.routing.enqueue_caller(
                call_id,
                queue,
                language=language,
                priority=call.priority or 0,
                red_flag=bool(call.red_flag),
            )
        return self.where(call_id, has_number=call.from_e164 is not None)

    def where(self, call_id: str, *, has_number: bool = True) -> WaitInfo | None:
        """Position and estimated wait of a caller in the router."""
        now = self.clock.now()
        with self.db.transaction() as session:
            me = session.get(RoutingCaller, call_id)
            if me is None:
                return None
            # Callers of the queue ahead of this one in the router's order: red flag
            # first, then priority (high first), then the original queue time, then the id.
            c = RoutingCaller
            behind_flag = or_(
                c.priority > me.priority,
                and_(
                    c.priority == me.priority,
                    or_(
                        c.enqueued_at < me.enqueued_at,
                        and_(c.enqueued_at == me.enqueued_at, c.id < me.id),
                    ),
                ),
            )
            if me.red_flag:
                before_me = and_(c.red_flag.is_(True), behind_flag)
            else:
                before_me = or_(c.red_flag.is_(True), behind_flag)
            ahead = int(
                session.scalar(
                    select(func.count())
                    .select_from(c)
                    .where(
                        c.queue == me.queue,
                        c.status.in_(("waiting", "offered")),
                        c.id != me.id,
                        before_me,
                    )
                )
                or 0
            )
            staffed = sum(
                1
                for levels in session.scalars(
                    select(RoutingAgent.levels).where(
                        RoutingAgent.state.not_in(("offline", "away"))
                    )
                )
                if me.queue in levels
            )
            handle = self._handle_time(session, me.queue, now)
        position = ahead + 1
        ewt: float | None = None
        if staffed:
            ewt = math.ceil(position / staffed) * handle if ahead else 0.0
        offer = (
            me.status == "waiting"
            and not me.callback
            and has_number
            and (ewt is None or ewt > self.phone.callback_offer_wait_s)
        )
        return WaitInfo(
            call_id=call_id,
            queue=me.queue,
            language=me.language or "zh-CN",
            status=me.status,
            position=position,
            estimated_wait_s=ewt,
            announce_position=position <= self.phone.announce_position_max,
            offer_callback=offer,
            red_flag=me.red_flag,
        )

    def _handle_time(self, session: Session, queue: str, now: datetime) -> float:
        """Mean talk time plus wrap-up of the queue's calls that ended recently (worked out
        at most every ``HANDLE_TIME_CACHE_S`` per process: it is an estimate)."""
        cached = self._handle_cache.get(queue)
        if cached is not None and abs((now - cached[0]).total_seconds()) < HANDLE_TIME_CACHE_S:
            return cached[1]
        value = self._handle_time_now(session, queue, now)
        self._handle_cache[queue] = (now, value)
        return value

    def _handle_time_now(self, session: Session, queue: str, now: datetime) -> float:
        since = now - timedelta(seconds=self.phone.handle_time_window_s)
        rows = session.execute(
            select(RoutingCaller.answered_at, RoutingCaller.ended_at).where(
                # bounded by queue time too, so the index on it keeps this cheap as the
                # table grows (a call queued over a day before it ended is not "recent")
                RoutingCaller.enqueued_at >= since - timedelta(days=1),
                RoutingCaller.queue == queue,
                RoutingCaller.ended_at >= since,
                RoutingCaller.answered_at.is_not(None),
            )
        ).all()
        talks = [(end - start).total_seconds() for start, end in rows if start and end]
        if not talks:
            return self.phone.default_handle_time_s
        return sum(talks) / len(talks) + self.settings.wrap_up_s

    def request_callback(self, call_id: str) -> CallbackResult:
        """ "Press 1 to be called back": the waiting caller becomes a callback request on the
        number they called from (validated E.164), keeping their original queue time."""
        now = self.clock.now()
        with self.db.transaction() as session:
            number = session.scalar(select(Call.from_e164).where(Call.provider_call_id == call_id))
            caller = session.scalars(
                select(RoutingCaller).where(RoutingCaller.id == call_id).with_for_update()
            ).one_or_none()
            if caller is None:
                return CallbackResult(False, "unknown_call")
            if caller.status != "waiting":
                return CallbackResult(False, "not_waiting")
            if caller.callback and caller.callback_number:
                # Pressed again (or the webhook retried): the request stands as it is.
                return CallbackResult(True, last_digits=_last_digits(caller.callback_number))
            try:
                e164 = normalize(number or "", self.default_region)
            except InvalidPhoneNumber:
                return CallbackResult(False, "no_number")
            caller.callback = True
            caller.callback_number = e164
            caller.callback_expires_at = now + timedelta(seconds=self.phone.callback_expiry_s)
            caller.callback_attempts = 0
        log.info("call %s will be called back", call_id)
        return CallbackResult(True, last_digits=_last_digits(e164))

    def queue_exit(self, call_id: str, result: str) -> None:
        """The caller left the provider's queue. A hang-up abandons the call unless it became
        a callback (the caller keeps their place without staying on the line)."""
        if result.strip().lower() not in ("hangup", "error", "system-error", "queue-full"):
            return
        with self.db.transaction() as session:
            caller = session.get(RoutingCaller, call_id)
            if caller is None or caller.callback:
                return
            ringing = caller.agent_leg if caller.status == "offered" else None
        if self.routing.caller_left(call_id):
            self._end_reason(call_id, "hangup")
            if ringing:
                # Stop the agent's phone ringing for a caller who has gone.
                with self.db.transaction() as session:
                    self._task(
                        session, f"hangup:{ringing}", "hangup", {"leg": ringing}, self.clock.now()
                    )

    def _end_reason(self, call_id: str, reason: str) -> None:
        with self.db.transaction() as session:
            caller = session.get(RoutingCaller, call_id)
            if caller is not None and caller.end_reason is None:
                caller.end_reason = reason

    def expire_callbacks(self) -> int:
        """Callbacks not dialled before their expiry are dropped (abandoned)."""
        now = self.clock.now()
        with self.db.transaction() as session:
            rows = list(
                session.scalars(
                    select(RoutingCaller)
                    .where(
                        RoutingCaller.status == "waiting",
                        RoutingCaller.callback.is_(True),
                        RoutingCaller.callback_expires_at <= now,
                    )
                    .with_for_update(skip_locked=True)
                )
            )
            for row in rows:
                row.status = "abandoned"
                row.abandoned_at = now
                row.end_reason = "callback_expired"
        for row in rows:
            log.info("callback %s expired", row.id)
        return len(rows)

    # ------------------------------------------------------------ agents

    def whisper(self, call_id: str, agent_id: str) -> Whisper | None:
        """What the agent hears when they pick up; ``None`` when the offer is gone."""
        with self.db.transaction() as session:
            caller = session.get(RoutingCaller, call_id)
            agent = session.get(RoutingAgent, agent_id)
            if (
                caller is None
                or agent is None
                or caller.status != "offered"
                or caller.offered_agent != agent_id
                or agent.offer != call_id
            ):
                return None
            return Whisper(
                queue=caller.queue,
                language=caller.language or "zh-CN",
                red_flag=caller.red_flag,
                callback=caller.callback,
                priority=caller.priority,
            )

    def agent_accepted(self, call_id: str, agent_id: str) -> str | None:
        """The agent pressed a key to take the call: answered; the agent joins the call's
        conference (returned) and a task moves the caller in (or dials a callback). ``None``
        when the offer is gone (rang out, or the caller hung up). A repeated press (or a
        retried webhook) gets the same conference and adds nothing."""
        name = conference_name(call_id)
        if not self.routing.accept(agent_id, call_id):
            with self.db.transaction() as session:
                caller = session.get(RoutingCaller, call_id)
                mine = (
                    caller is not None
                    and caller.status == "answered"
                    and caller.answered_by == agent_id
                )
            return name if mine else None
        now = self.clock.now()
        with self.db.transaction() as session:
            caller = session.scalars(
                select(RoutingCaller).where(RoutingCaller.id == call_id).with_for_update()
            ).one()
            caller.conference = name
            kind = "dial_callback" if caller.callback else "connect"
            if caller.callback:
                caller.callback_attempts = (caller.callback_attempts or 0) + 1
            self._task(
                session,
                f"{kind}:{call_id}:{caller.callback_attempts}",
                kind,
                {"call": call_id},
                now,
            )
        log.info("agent %s took call %s", agent_id, call_id)
        return name

    def agent_leg_status(self, call_id: str, agent_id: str, status: str) -> None:
        """Status of the call ringing an agent. A failed call means the agent's phone cannot
        be reached: the agent is set away. No answer, busy, or the leg ending while the call
        is still only offered to them (they picked up but did not take it, or a voicemail
        did): a miss, as at the ring timeout; either way the caller is offered to someone
        else at once instead of after ``ring_timeout_s``."""
        status = status.strip().lower()
        if status == "failed":
            with self.db.transaction() as session:
                agent = session.get(RoutingAgent, agent_id)
                ringing = agent is not None and agent.state == "reserved" and agent.offer == call_id
            if ringing:
                self.routing.set_state(agent_id, r.AgentState.AWAY, "phone_unreachable")
                log.warning("agent %s could not be reached by phone; set away", agent_id)
            return
        if status in NOT_ANSWERED or status == "completed":
            self.routing.ring_ended(agent_id, call_id)

    # ------------------------------------------------------------ callbacks

    def callback_answered(self, call_id: str) -> tuple[str, str] | None:
        """The called-back caller picked up: (conference, language), or ``None``."""
        now = self.clock.now()
        with self.db.transaction() as session:
            caller = session.scalars(
                select(RoutingCaller).where(RoutingCaller.id == call_id).with_for_update()
            ).one_or_none()
            if caller is None or caller.conference is None or caller.status != "answered":
                return None
            caller.connected_at = now
            return caller.conference, caller.language or "zh-CN"

    def callback_leg_status(self, call_id: str, status: str) -> None:
        """Status of the call back to the caller. Not answered: the agent's call ends (their
        leg is hung up) and the request waits again, keeping its place, until it has been
        tried ``callback_max_attempts`` times or expires."""
        status = status.strip().lower()
        if status not in NOT_ANSWERED:
            return
        now = self.clock.now()
        with self.db.transaction() as session:
            caller = session.get(RoutingCaller, call_id)
            if caller is None or caller.status != "answered" or caller.connected_at is not None:
                return
            agent_id = caller.answered_by
            agent_leg = caller.agent_leg
        if agent_id is not None:
            self._end_agent_call(agent_id, call_id)
        with self.db.transaction() as session:
            caller = session.scalars(
                select(RoutingCaller).where(RoutingCaller.id == call_id).with_for_update()
            ).one()
            expired = caller.callback_expires_at is not None and caller.callback_expires_at <= now
            if caller.callback_attempts >= self.phone.callback_max_attempts or expired:
                caller.status = "abandoned"
                caller.abandoned_at = now
                caller.end_reason = "callback_failed"
            else:
                caller.status = "waiting"
                caller.callback_not_before = now + timedelta(
                    seconds=self.phone.callback_retry_delay_s
                )
            caller.answered_at = None
            caller.answered_by = None
            caller.offered_agent = None
            caller.offered_at = None
            caller.ended_at = None
            caller.conference = None
            caller.callback_leg = None
            if agent_leg:
                self._task(session, f"hangup:{agent_leg}", "hangup", {"leg": agent_leg}, now)
        log.info("callback %s not answered (%s)", call_id, status)

    def _end_agent_call(self, agent_id: str, call_id: str) -> bool:
        with self.db.transaction() as session:
            agent = session.get(RoutingAgent, agent_id)
            talking = agent is not None and agent.state == "on_call" and agent.offer == call_id
        if talking:
            try:
                self.routing.end_call(agent_id)
            except r.IllegalAgentTransition:
                return False
        return talking

    # ------------------------------------------------------------ experts

    def expert_brief(self, escalation_id: str) -> ExpertBrief | None:
        """What the expert hears on answering; ``None`` unless the escalation is accepted."""
        with self.db.transaction() as session:
            row = session.get(RoutingEscalation, escalation_id)
            if row is None or row.state != EscalationState.ACCEPTED.value or not row.conference:
                return None
            return ExpertBrief(row.id, row.specialty, row.conference)

    def expert_leg_status(self, escalation_id: str, status: str) -> None:
        """The expert's phone did not answer: that expert is out of this escalation (and
        available again). With the agent still on the call and another expert of the pool
        available, it is offered again; otherwise it becomes an expert callback (the agent
        sees it on their screen, the expert in their callback list), and a caller left alone
        in the conference is hung up."""
        if status.strip().lower() not in NOT_ANSWERED:
            return
        with self.db.transaction() as session:
            row = session.get(RoutingEscalation, escalation_id)
            if row is None or row.state != EscalationState.ACCEPTED.value:
                return
            call_id = row.call_id
            company = _others(self._present(session, conference_name(call_id))) > 0
        if self.escalations.expert_unreachable(escalation_id, reoffer=company) is None:
            return
        with self.db.transaction() as session:
            self._hang_up_if_alone(session, call_id, conference_name(call_id), self.clock.now())

    # ------------------------------------------------------------ conferences

    def conference_event(
        self, call_id: str, event: str, leg: str | None, sequence: int | None
    ) -> bool:
        """Record a conference status callback and act on it; ``False`` for a repeat."""
        now = self.clock.now()
        event = event.strip().lower()[:32]
        name = conference_name(call_id)
        with self.db.transaction() as session:
            if sequence is not None:
                seen = session.scalar(
                    select(RoutingConferenceEvent.id).where(
                        RoutingConferenceEvent.conference == name,
                        RoutingConferenceEvent.sequence == sequence,
                        RoutingConferenceEvent.event == event,
                    )
                )
                if seen is not None:
                    return False
            role = self._role(session, call_id, leg)
            session.add(
                RoutingConferenceEvent(
                    conference=name, event=event, leg=leg, role=role, sequence=sequence, at=now
                )
            )
            caller = session.get(RoutingCaller, call_id)
            agent_id = caller.answered_by if caller is not None else None
            if event == "participant-join" and role == "caller" and caller is not None:
                caller.connected_at = caller.connected_at or now
        if event == "participant-leave" and role == "agent" and agent_id:
            self._end_agent_call(agent_id, call_id)
            with self.db.transaction() as session:
                self._hang_up_if_alone(session, call_id, name, now)
        elif event == "participant-leave" and role == "expert":
            with self.db.transaction() as session:
                self._hang_up_if_alone(session, call_id, name, now)
        elif event == "conference-end":
            if agent_id:
                self._end_agent_call(agent_id, call_id)
            self._conference_over(call_id)
        return True

    def _role(self, session: Session, call_id: str, leg: str | None) -> str | None:
        if not leg:
            return None
        caller = session.get(RoutingCaller, call_id)
        if caller is not None:
            if leg in (caller.id, caller.callback_leg):
                return "caller"
            if leg == caller.agent_leg:
                return "agent"
        expert = session.scalar(
            select(RoutingEscalation.id).where(
                RoutingEscalation.call_id == call_id, RoutingEscalation.expert_leg == leg
            )
        )
        return "expert" if expert is not None else "other"

    @staticmethod
    def _present(session: Session, name: str) -> dict[str, int]:
        """Participants in conference ``name`` now, by role (from its join/leave events)."""
        present: dict[str, int] = {}
        for role, event in session.execute(
            select(RoutingConferenceEvent.role, RoutingConferenceEvent.event).where(
                RoutingConferenceEvent.conference == name
            )
        ):
            if role is None:
                continue
            step = {"participant-join": 1, "participant-leave": -1}.get(event, 0)
            present[role] = present.get(role, 0) + step
        return present

    def _hang_up_if_alone(self, session: Session, call_id: str, name: str, now: datetime) -> None:
        """If only the caller is left in the conference and no expert is on the way, hang up
        the caller (ending the conference)."""
        present = self._present(session, name)
        if _others(present):
            return
        expert_coming = session.scalar(
            select(RoutingEscalation.id).where(
                RoutingEscalation.call_id == call_id,
                RoutingEscalation.state == EscalationState.ACCEPTED.value,
                RoutingEscalation.expert_leg.is_distinct_from("console"),
            )
        )
        if expert_coming is not None and present.get("expert", 0) <= 0:
            left = session.scalar(
                select(RoutingConferenceEvent.id).where(
                    RoutingConferenceEvent.conference == name,
                    RoutingConferenceEvent.role == "expert",
                    RoutingConferenceEvent.event == "participant-leave",
                )
            )
            if left is None:
                return  # the expert is being dialled
        caller = session.get(RoutingCaller, call_id)
        leg = call_id
        if caller is not None and caller.callback and caller.callback_leg:
            leg = caller.callback_leg
        self._task(session, f"hangup:{leg}", "hangup", {"leg": leg}, now)

    def _conference_over(self, call_id: str) -> None:
        now = self.clock.now()
        with self.db.transaction() as session:
            caller = session.get(RoutingCaller, call_id)
            if caller is not None and caller.ended_at is None and caller.status == "answered":
                caller.ended_at = now
            accepted = session.scalars(
                select(RoutingEscalation.id).where(
                    RoutingEscalation.call_id == call_id,
                    RoutingEscalation.state == EscalationState.ACCEPTED.value,
                )
            ).all()
        for escalation_id in accepted:
            self.escalations.complete(escalation_id, "conference")

    # ------------------------------------------------------------ tasks

    def _task(
        self, session: Session, key: str, kind: str, payload: Mapping[str, Any], now: datetime
    ) -> None:
        exists = session.scalar(select(RoutingPhoneTask.id).where(RoutingPhoneTask.key == key))
        if exists is not None:
            return
        session.add(
            RoutingPhoneTask(
                key=key[:160],
                kind=kind,
                payload=dict(payload),
                status="pending",
                attempts=0,
                not_before=now,
                created_at=now,
            )
        )

    def pending_tasks(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, payload) of the tasks not done yet, oldest first (for tests and status)."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(RoutingPhoneTask)
                .where(RoutingPhoneTask.status == "pending")
                .order_by(RoutingPhoneTask.id)
            )
            return [(t.kind, dict(t.payload)) for t in rows]

    def _run_tasks(self, report: LoopReport) -> None:
        control = self.control
        if control is None:
            return
        now = self.clock.now()
        with self.db.transaction() as session:
            rows = list(
                session.scalars(
                    select(RoutingPhoneTask)
                    .where(RoutingPhoneTask.status == "pending", RoutingPhoneTask.not_before <= now)
                    .order_by(RoutingPhoneTask.id)
                    .limit(50)
                    .with_for_update(skip_locked=True)
                )
            )
            # Claimed: pushed into the future so another loop does not run them meanwhile.
            for row in rows:
                row.attempts += 1
                row.not_before = now + timedelta(seconds=30)
            claimed = [(row.id, row.kind, dict(row.payload), row.attempts) for row in rows]
        for task_id, kind, payload, attempts in claimed:
            error: str | None = None
            try:
                self._do(control, kind, payload)
            except Exception as exc:  # any provider failure: retried, then given up
                error = f"{type(exc).__name__}: {str(exc)[:150]}"
                report.errors.append(f"{kind}: {error}")
            with self.db.transaction() as session:
                task = session.get(RoutingPhoneTask, task_id)
                if task is None:
                    continue
                if error is None:
                    task.status = "done"
                    task.done_at = self.clock.now()
                    report.tasks_done += 1
                elif attempts >= MAX_TASK_ATTEMPTS:
                    task.status = "failed"
                    task.error = error[:200]
                    report.tasks_failed += 1
                else:
                    task.error = error[:200]
                    task.not_before = self.clock.now() + timedelta(seconds=2 * attempts)

    def _do(self, control: CallControl, kind: str, payload: Mapping[str, Any]) -> None:
        if kind == "connect":
            call_id = str(payload["call"])
            control.redirect(call_id, self.url(PATH_JOIN, c=call_id))
        elif kind == "hangup":
            control.hangup(str(payload["leg"]))
        elif kind == "dial_callback":
            call_id = str(payload["call"])
            with self.db.transaction() as session:
                caller = session.get(RoutingCaller, call_id)
                number = caller.callback_number if caller is not None else None
                live = caller is not None and caller.status == "answered"
            if not number or not live:
                return
            leg = control.dial(
                number,
                self.url(PATH_CALLBACK_ANSWER, c=call_id),
                self.url(PATH_CALLBACK_STATUS, c=call_id),
                int(self.settings.ring_timeout_s * 2),
            )
            with self.db.transaction() as session:
                row = session.get(RoutingCaller, call_id)
                if row is not None:
                    row.callback_leg = leg[:64]
        else:
            raise ValueError(f"unknown phone task {kind!r}")

    # ------------------------------------------------------------ the loop

    def run_once(self) -> LoopReport:
        """One turn of the router loop: ring-outs and wrap-ups, expired callbacks,
        escalation timers, new offers (dialling the agents), experts to dial, and the
        provider tasks webhooks asked for. Safe to run in several processes at once."""
        report = LoopReport()
        events = self.routing.tick()
        report.rang_out = sum(1 for e in events if isinstance(e, r.RingNoAnswer))
        report.callbacks_expired = self.expire_callbacks()
        report.escalations_changed = len(self.escalations.tick())
        offers = self.routing.dispatch()
        report.offers = len(offers)
        for offer in offers:
            if self._dial_agent(offer, report):
                report.agents_dialled += 1
        report.experts_dialled = self._dial_experts(report)
        self._run_tasks(report)
        return report

    def _dial_agent(self, offer: r.Offer, report: LoopReport) -> bool:
        with self.db.transaction() as session:
            contact = session.scalar(
                select(RoutingAgent.contact).where(RoutingAgent.id == offer.agent_id)
            )
        if self.control is None or not contact:
            return False  # a console-only agent answers on screen
        try:
            leg = self.control.dial(
                contact,
                self.url(PATH_AGENT, a=offer.agent_id, c=offer.caller_id),
                self.url(PATH_AGENT_STATUS, a=offer.agent_id, c=offer.caller_id),
                math.ceil(self.settings.ring_timeout_s),
            )
        except Exception as exc:  # the ring timeout returns the caller to the queue
            report.errors.append(f"dial agent {offer.agent_id}: {type(exc).__name__}")
            log.warning("could not dial agent %s: %s", offer.agent_id, type(exc).__name__)
            return False
        with self.db.transaction() as session:
            caller = session.scalars(
                select(RoutingCaller).where(RoutingCaller.id == offer.caller_id).with_for_update()
            ).one_or_none()
            if caller is not None and caller.offered_agent == offer.agent_id:
                caller.agent_leg = leg[:64]
        return True

    def _dial_experts(self, report: LoopReport) -> int:
        if self.control is None:
            return 0
        dialled = 0
        while True:
            with self.db.transaction() as session:
                # Claim one accepted escalation nobody is dialling (SKIP LOCKED: one loop wins).
                row = session.scalars(
                    select(RoutingEscalation)
                    .where(
                        RoutingEscalation.state == EscalationState.ACCEPTED.value,
                        RoutingEscalation.expert_leg.is_(None),
                    )
                    .order_by(RoutingEscalation.updated_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).one_or_none()
                if row is None:
                    return dialled
                row.expert_leg = DIALLING
                escalation_id, expert_id = row.id, row.expert_id
            contact = self.escalations.expert_contact(expert_id) if expert_id else None
            if not contact:
                self.escalations.set_expert_leg(escalation_id, "console")
                continue
            try:
                leg = self.control.dial(
                    contact,
                    self.url(PATH_EXPERT, e=escalation_id),
                    self.url(PATH_EXPERT_STATUS, e=escalation_id),
                    30,
                )
            except Exception as exc:
                report.errors.append(f"dial expert {expert_id}: {type(exc).__name__}")
                self.expert_leg_status(escalation_id, "failed")
                continue
            self.escalations.set_expert_leg(escalation_id, leg)
            dialled += 1


def _shown_contact(contact: str | None) -> str:
    if not contact:
        return "console only"
    return mask(contact) if contact.startswith("+") else contact


def _as_caller(row: RoutingCaller) -> r.Caller:
    return r.Caller(
        id=row.id,
        queue=row.queue,
        enqueued_at=row.enqueued_at,
        priority=row.priority,
        red_flag=row.red_flag,
        callback=row.callback,
    )


__all__ = [
    "CallControl",
    "CallControlError",
    "CallbackResult",
    "ExpertBrief",
    "InvalidContact",
    "LoopReport",
    "PhoneRouting",
    "WaitInfo",
    "Whisper",
]
