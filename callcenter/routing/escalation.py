"""Tier-2 expert escalation: an explicit state machine, timestamps from a clock.

::

    requested --offer--> offered --accept--> accepted --complete--> completed
                            |--decline--> declined --schedule_callback--> callback_scheduled
                            '--time_out-> timed_out --schedule_callback--> callback_scheduled
    callback_scheduled --complete--> completed
    callback_scheduled --expire----> expired
    accepted --offer----> offered     (the expert who accepted could not be reached: the
    accepted --decline--> declined     rest of the pool, or a callback when nobody is left)

An offer times out ``offer_timeout_s`` (default 60 s) after it was made; a callback must be
made within ``callback_deadline_s`` (default 30 min) of being scheduled, or it expires.
:meth:`EscalationMachine.tick` applies the transitions that time alone causes (an offer timing
out is followed at once by its callback being scheduled; a callback past its deadline
expires). Any other move raises :class:`IllegalEscalationTransition`; a timed move asked for
before its time raises :class:`EscalationNotDue`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from ..clock import Clock


class EscalationState(StrEnum):
    """Where an escalation stands."""

    REQUESTED = "requested"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"
    CALLBACK_SCHEDULED = "callback_scheduled"
    COMPLETED = "completed"
    EXPIRED = "expired"


class EscalationAction(StrEnum):
    """What can happen to an escalation."""

    OFFER = "offer"
    ACCEPT = "accept"
    DECLINE = "decline"
    TIME_OUT = "time_out"
    SCHEDULE_CALLBACK = "schedule_callback"
    COMPLETE = "complete"
    EXPIRE = "expire"


S = EscalationState
A = EscalationAction

#: The full transition table: (state, action) -> next state. Nothing else is legal.
TRANSITIONS: Mapping[tuple[EscalationState, EscalationAction], EscalationState] = {
    (S.REQUESTED, A.OFFER): S.OFFERED,
    (S.OFFERED, A.ACCEPT): S.ACCEPTED,
    (S.OFFERED, A.DECLINE): S.DECLINED,
    (S.OFFERED, A.TIME_OUT): S.TIMED_OUT,
    (S.ACCEPTED, A.COMPLETE): S.COMPLETED,
    (S.ACCEPTED, A.OFFER): S.OFFERED,
    (S.ACCEPTED, A.DECLINE): S.DECLINED,
    (S.DECLINED, A.SCHEDULE_CALLBACK): S.CALLBACK_SCHEDULED,
    (S.TIMED_OUT, A.SCHEDULE_CALLBACK): S.CALLBACK_SCHEDULED,
    (S.CALLBACK_SCHEDULED, A.COMPLETE): S.COMPLETED,
    (S.CALLBACK_SCHEDULED, A.EXPIRE): S.EXPIRED,
}

#: States nothing leaves.
FINAL_STATES = frozenset({S.COMPLETED, S.EXPIRED})


class EscalationError(Exception):
    """Base class of escalation errors."""


class IllegalEscalationTransition(EscalationError):
    """``action`` is not allowed in ``state``."""

    def __init__(self, escalation_id: str, state: EscalationState, action: EscalationAction):
        super().__init__(f"escalation {escalation_id}: cannot {action} when {state}")
        self.escalation_id = escalation_id
        self.state = state
        self.action = action


class EscalationNotDue(EscalationError):
    """A timed transition (time out, expire) asked for before its time."""


@dataclass(frozen=True)
class EscalationSettings:
    """Timers (from configuration)."""

    offer_timeout_s: float = 60.0
    callback_deadline_s: float = 30 * 60.0


@dataclass(frozen=True)
class Escalation:
    """One request for a tier-2 expert; ``history`` lists (state, time) in order."""

    id: str
    caller_id: str
    state: EscalationState
    requested_at: datetime
    expert_id: str | None = None
    offered_at: datetime | None = None
    offer_deadline: datetime | None = None
    callback_deadline: datetime | None = None
    updated_at: datetime | None = None
    reason: str | None = None
    history: tuple[tuple[EscalationState, datetime], ...] = ()


class EscalationMachine:
    """Applies actions to :class:`Escalation` values; returns new values, never mutates."""

    def __init__(self, clock: Clock, settings: EscalationSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings or EscalationSettings()

    def request(self, escalation_id: str, caller_id: str, reason: str | None = None) -> Escalation:
        """A new escalation, requested now."""
        now = self.clock.now()
        return Escalation(
            id=escalation_id,
            caller_id=caller_id,
            state=S.REQUESTED,
            requested_at=now,
            updated_at=now,
            reason=reason,
            history=((S.REQUESTED, now),),
        )

    def apply(
        self, escalation: Escalation, action: EscalationAction, expert_id: str | None = None
    ) -> Escalation:
        """``escalation`` after ``action`` now; raises if the move is illegal or not yet due."""
        target = TRANSITIONS.get((escalation.state, action))
        if target is None:
            raise IllegalEscalationTransition(escalation.id, escalation.state, action)
        now = self.clock.now()
        changes: dict[str, object] = {}
        if action is A.OFFER:
            if not expert_id:
                raise EscalationError("an offer needs an expert")
            changes = {
                "expert_id": expert_id,
                "offered_at": now,
                "offer_deadline": now + timedelta(seconds=self.settings.offer_timeout_s),
            }
        elif action is A.TIME_OUT:
            if escalation.offer_deadline is None or now < escalation.offer_deadline:
                raise EscalationNotDue(f"escalation {escalation.id}: offer has not timed out")
        elif action is A.SCHEDULE_CALLBACK:
            changes = {
                "callback_deadline": now + timedelta(seconds=self.settings.callback_deadline_s)
            }
        elif action is A.EXPIRE and (
            escalation.callback_deadline is None or now < escalation.callback_deadline
        ):
            raise EscalationNotDue(f"escalation {escalation.id}: callback deadline not reached")
        return replace(
            escalation,
            state=target,
            updated_at=now,
            history=(*escalation.history, (target, now)),
            **changes,  # type: ignore[arg-type]
        )

    def offer(self, escalation: Escalation, expert_id: str) -> Escalation:
        """Requested -> offered to ``expert_id``."""
        return self.apply(escalation, A.OFFER, expert_id)

    def accept(self, escalation: Escalation) -> Escalation:
        """Offered -> accepted."""
        return self.apply(escalation, A.ACCEPT)

    def decline(self, escalation: Escalation) -> Escalation:
        """Offered -> declined."""
        return self.apply(escalation, A.DECLINE)

    def schedule_callback(self, escalation: Escalation) -> Escalation:
        """Declined or timed out -> callback scheduled (deadline from the settings)."""
        return self.apply(escalation, A.SCHEDULE_CALLBACK)

    def complete(self, escalation: Escalation) -> Escalation:
        """Accepted or callback scheduled -> completed."""
        return self.apply(escalation, A.COMPLETE)

    def tick(self, escalation: Escalation) -> Escalation:
        """Apply what time alone causes now: an offer past its timeout becomes timed out and
        its callback is scheduled; a callback past its deadline expires."""
        now = self.clock.now()
        if (
            escalation.state is S.OFFERED
            and escalation.offer_deadline is not None
            and now >= escalation.offer_deadline
        ):
            return self.apply(self.apply(escalation, A.TIME_OUT), A.SCHEDULE_CALLBACK)
        if (
            escalation.state is S.CALLBACK_SCHEDULED
            and escalation.callback_deadline is not None
            and now >= escalation.callback_deadline
        ):
            return self.apply(escalation, A.EXPIRE)
        return escalation
