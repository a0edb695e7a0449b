"""The tier-2 escalation state machine: every legal and illegal transition, and the timers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callcenter.clock import FakeClock
from callcenter.routing.escalation import (
    FINAL_STATES,
    TRANSITIONS,
    Escalation,
    EscalationAction,
    EscalationError,
    EscalationMachine,
    EscalationNotDue,
    EscalationSettings,
    EscalationState,
    IllegalEscalationTransition,
)

S = EscalationState
A = EscalationAction
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

#: How to reach each state from a fresh request (the clock moves as timers need).
PATHS: dict[EscalationState, tuple[EscalationAction, ...]] = {
    S.REQUESTED: (),
    S.OFFERED: (A.OFFER,),
    S.ACCEPTED: (A.OFFER, A.ACCEPT),
    S.DECLINED: (A.OFFER, A.DECLINE),
    S.TIMED_OUT: (A.OFFER, A.TIME_OUT),
    S.CALLBACK_SCHEDULED: (A.OFFER, A.DECLINE, A.SCHEDULE_CALLBACK),
    S.COMPLETED: (A.OFFER, A.ACCEPT, A.COMPLETE),
    S.EXPIRED: (A.OFFER, A.DECLINE, A.SCHEDULE_CALLBACK, A.EXPIRE),
}

#: The transition table written out once more, by hand, so a change to it is deliberate.
EXPECTED = {
    (S.REQUESTED, A.OFFER): S.OFFERED,
    (S.OFFERED, A.ACCEPT): S.ACCEPTED,
    (S.OFFERED, A.DECLINE): S.DECLINED,
    (S.OFFERED, A.TIME_OUT): S.TIMED_OUT,
    (S.ACCEPTED, A.COMPLETE): S.COMPLETED,
    (S.ACCEPTED, A.OFFER): S.OFFERED,  # the accepting expert could not be reached
    (S.ACCEPTED, A.DECLINE): S.DECLINED,  # ... and nobody else of the pool is free
    (S.DECLINED, A.SCHEDULE_CALLBACK): S.CALLBACK_SCHEDULED,
    (S.TIMED_OUT, A.SCHEDULE_CALLBACK): S.CALLBACK_SCHEDULED,
    (S.CALLBACK_SCHEDULED, A.COMPLETE): S.COMPLETED,
    (S.CALLBACK_SCHEDULED, A.EXPIRE): S.EXPIRED,
}
SETTINGS = EscalationSettings(offer_timeout_s=60, callback_deadline_s=1800)


def reach(state: EscalationState) -> tuple[EscalationMachine, FakeClock, Escalation]:
    clock = FakeClock(T0)
    machine = EscalationMachine(clock, SETTINGS)
    esc = machine.request("e1", "call-1", "chest pain follow-up")
    for action in PATHS[state]:
        if action is A.TIME_OUT:
            clock.advance(60)
        elif action is A.EXPIRE:
            clock.advance(1800)
        else:
            clock.advance(1)
        esc = machine.apply(esc, action, "dr-wang" if action is A.OFFER else None)
    assert esc.state is state
    return machine, clock, esc


def test_the_table_is_the_documented_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED
    assert all(not any(s is f for (s, _a) in TRANSITIONS) for f in FINAL_STATES)


ALL = [(s, a) for s in EscalationState for a in EscalationAction]


@pytest.mark.parametrize(("state", "action"), ALL, ids=[f"{s}-{a}" for s, a in ALL])
def test_every_transition(state: EscalationState, action: EscalationAction) -> None:
    machine, clock, esc = reach(state)
    clock.advance(3600)  # every timer is due
    target = EXPECTED.get((state, action))
    if target is None:
        with pytest.raises(IllegalEscalationTransition) as info:
            machine.apply(esc, action, "dr-li")
        assert (info.value.state, info.value.action) == (state, action)
        return
    after = machine.apply(esc, action, "dr-li")
    assert after.state is target
    assert after.updated_at == clock.now()
    assert after.history[-1] == (target, clock.now())
    assert len(after.history) == len(esc.history) + 1
    assert esc.state is state  # the old value is unchanged


def test_offer_sets_expert_and_deadline() -> None:
    machine, clock, esc = reach(S.REQUESTED)
    offered = machine.offer(esc, "dr-zhang")
    assert offered.expert_id == "dr-zhang"
    assert offered.offered_at == clock.now()
    assert offered.offer_deadline == clock.now() + timedelta(seconds=60)
    with pytest.raises(EscalationError):
        machine.apply(esc, A.OFFER)


def test_time_out_is_not_due_before_the_offer_timeout() -> None:
    machine, clock, esc = reach(S.OFFERED)
    clock.advance(59)  # 59 s after the offer
    with pytest.raises(EscalationNotDue):
        machine.apply(esc, A.TIME_OUT)
    assert machine.tick(esc) is esc


def test_timeout_schedules_a_callback_which_expires_after_the_deadline() -> None:
    machine, clock, esc = reach(S.OFFERED)
    clock.advance(60)  # exactly 60 s after the offer
    after = machine.tick(esc)
    assert after.state is S.CALLBACK_SCHEDULED
    assert [s for s, _ in after.history[-2:]] == [S.TIMED_OUT, S.CALLBACK_SCHEDULED]
    assert after.callback_deadline == clock.now() + timedelta(minutes=30)
    clock.advance(1799)
    with pytest.raises(EscalationNotDue):
        machine.apply(after, A.EXPIRE)
    assert machine.tick(after) is after
    clock.advance(1)
    assert machine.tick(after).state is S.EXPIRED


def test_decline_then_callback_completed() -> None:
    machine, clock, esc = reach(S.OFFERED)
    esc = machine.schedule_callback(machine.decline(esc))
    clock.advance(600)
    done = machine.complete(esc)
    assert done.state is S.COMPLETED
    assert machine.tick(done) is done


def test_accept_then_complete() -> None:
    machine, _clock, esc = reach(S.OFFERED)
    assert machine.complete(machine.accept(esc)).state is S.COMPLETED


def test_default_settings() -> None:
    settings = EscalationSettings()
    assert (settings.offer_timeout_s, settings.callback_deadline_s) == (60, 1800)
