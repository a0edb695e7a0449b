"""Persisted escalations on a real database: every legal and illegal transition, the pool of
experts, timeouts into callbacks, declines, the logged history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.routing.escalation import EscalationState, IllegalEscalationTransition
from callcenter.routing.escalations import (
    EscalationService,
    ExpertNotAvailable,
    InvalidEscalation,
    NotForThisExpert,
    OfferTimedOut,
    UnknownEscalation,
    UnknownExpert,
)
from callcenter.routing.models import RoutingEscalationTransition

S = EscalationState


def on_call(services: Services, call_id: str = "CA1", agent_id: str = "a1") -> None:
    """``agent_id`` is talking to ``call_id`` (signed in, offered, answered)."""
    routing = services.routing
    routing.agent_sign_in(agent_id, levels={"general": 0})
    routing.enqueue_caller(call_id, "general")
    (offer,) = routing.dispatch()
    assert routing.answer(offer)


@pytest.fixture
def esc(services: Services) -> EscalationService:
    on_call(services)
    return services.escalations


def open_one(esc: EscalationService, hospital: str | None = None) -> str:
    view = esc.open(
        "CA1",
        "a1",
        "cardiology",
        hospital,
        "Patient asks whether to stop aspirin before a dental extraction",
        notes="on aspirin 100 mg daily",
        article_ids=["kb-12", 7],
    )
    return view.id


def states(esc: EscalationService, escalation_id: str) -> list[tuple[str | None, str, str]]:
    return [(t.from_state, t.action, t.to_state) for t in esc.history(escalation_id)]


def test_open_offers_to_every_available_expert_of_the_specialty(
    esc: EscalationService, clock: FakeClock
) -> None:
    esc.expert_sign_in("dr-wang", specialty="cardiology", hospital="h1")
    clock.advance(1)
    esc.expert_sign_in("dr-li", specialty="cardiology", hospital="h2")
    esc.expert_sign_in("dr-zhao", specialty="neurology", hospital="h1")
    eid = open_one(esc)
    view = esc.get(eid)
    assert view.state is S.OFFERED
    assert view.offer_deadline == clock.now() + timedelta(seconds=60)
    assert view.article_ids == ("kb-12", "7")
    # Both cardiologists see the question first; the neurologist does not.
    assert [o.question for o in esc.offers_for("dr-wang")] == [view.question]
    assert [o.id for o in esc.offers_for("dr-li")] == [eid]
    assert esc.offers_for("dr-zhao") == []
    assert states(esc, eid) == [(None, "request", "requested"), ("requested", "offer", "offered")]
    assert [e.id for e in esc.available_experts("cardiology")] == ["dr-wang", "dr-li"]
    assert [e.id for e in esc.available_experts("cardiology", "h2")] == ["dr-li"]


def test_a_hospital_narrows_the_pool(esc: EscalationService) -> None:
    esc.expert_sign_in("dr-wang", specialty="cardiology", hospital="h1")
    esc.expert_sign_in("dr-li", specialty="cardiology", hospital="h2")
    eid = open_one(esc, hospital="h2")
    assert esc.offers_for("dr-wang") == []
    assert [o.id for o in esc.offers_for("dr-li")] == [eid]
    with pytest.raises(NotForThisExpert):
        esc.accept("dr-wang", eid)


def test_accept_makes_the_expert_busy_and_names_the_conference(
    esc: EscalationService,
) -> None:
    esc.expert_sign_in("dr-wang", specialty="cardiology")
    esc.expert_sign_in("dr-li", specialty="cardiology")
    eid = open_one(esc)
    view = esc.accept("dr-li", eid)
    assert view.state is S.ACCEPTED
    assert view.expert_id == "dr-li"
    assert view.conference == "hh-CA1"
    assert esc.expert("dr-li").state == "busy"
    # The other expert no longer sees it, and cannot take it too.
    assert esc.offers_for("dr-wang") == []
    with pytest.raises(IllegalEscalationTransition):
        esc.accept("dr-wang", eid)
    # A busy expert sees no offers and cannot sign out mid-call.
    assert esc.offers_for("dr-li") == []
    with pytest.raises(ExpertNotAvailable):
        esc.expert_sign_out("dr-li")
    done = esc.complete(eid, "phone", "advised to keep aspirin; dentist to use local haemostasis")
    assert done.state is S.COMPLETED
    assert esc.expert("dr-li").state == "available"
    assert states(esc, eid)[-2:] == [
        ("offered", "accept", "accepted"),
        ("accepted", "complete", "completed"),
    ]


def test_no_expert_accepts_in_time_the_escalation_becomes_a_callback_then_expires(
    esc: EscalationService, clock: FakeClock
) -> None:
    eid = open_one(esc)  # nobody signed in: offered to an empty pool
    clock.advance(59)
    assert esc.tick() == []
    clock.advance(1)
    (changed,) = esc.tick()
    assert changed.id == eid
    assert changed.state is S.CALLBACK_SCHEDULED
    assert changed.callback_deadline == clock.now() + timedelta(minutes=30)
    # An expert of the specialty coming online sees it as a callback to make.
    esc.expert_sign_in("dr-wang", specialty="cardiology")
    assert [c.id for c in esc.callbacks_for("dr-wang")] == [eid]
    assert esc.offers_for("dr-wang") == []
    with pytest.raises(IllegalEscalationTransition):
        esc.accept("dr-wang", eid)
    clock.advance(30 * 60)
    (expired,) = esc.tick()
    assert expired.state is S.EXPIRED
    assert esc.callbacks_for("dr-wang") == []
    assert [(f, a, t) for f, a, t in states(esc, eid)][-3:] == [
        ("offered", "time_out", "timed_out"),
        ("timed_out", "schedule_callback", "callback_scheduled"),
        ("callback_scheduled", "expire", "expired"),
    ]
    assert all(t.actor == "timer" for t in esc.history(eid)[-3:])


def test_accept_after_the_deadline_but_before_the_timer_ran_is_refused(
    esc: EscalationService, clock: FakeClock
) -> None:
    esc.expert_sign_in("dr-wang", specialty="cardiology")
    eid = open_one(esc)
    clock.advance(60)
    with pytest.raises(OfferTimedOut):
        esc.accept("dr-wang", eid)
    assert esc.get(eid).state is S.OFFERED
    esc.tick()
    assert esc.get(eid).state is S.CALLBACK_SCHEDULED


def test_decline_leaves_the_others_then_the_last_decline_schedules_a_callback(
    esc: EscalationService,
) -> None:
    esc.expert_sign_in("dr-wang", specialty="cardiology")
    esc.expert_sign_in("dr-li", specialty="cardiology")
    eid = open_one(esc)
    view = esc.decline("dr-wang", eid, "in clinic")
    assert view.state is S.OFFERED
    assert view.declined_by == ("dr-wang",)
    assert esc.offers_for("dr-wang") == []
    assert [o.id for o in esc.offers_for("dr-li")] == [eid]
    with pytest.raises(NotForThisExpert):
        esc.decline("dr-wang", eid, "again")
    last = esc.decline("dr-li", eid, "operating")
    assert last.state is S.CALLBACK_SCHEDULED
    assert states(esc, eid)[2:] == [
        ("offered", "decline_one", "offered"),
        ("offered", "decline", "declined"),
        ("declined", "schedule_callback", "callback_scheduled"),
    ]
    assert esc.history(eid)[2].detail == {"reason": "in clinic", "pool_left": 1}


def test_complete_callback_records_the_answer(esc: EscalationService) -> None:
    esc.expert_sign_in("dr-wang", specialty="cardiology")
    eid = open_one(esc)
    esc.decline("dr-wang", eid, "busy")
    with pytest.raises(InvalidEscalation):
        esc.complete_callback("dr-wang", eid, "  ")
    done = esc.complete_callback("dr-wang", eid, "called back, advised to see GP")
    assert done.state is S.COMPLETED
    assert done.answer_note == "called back, advised to see GP"
    assert done.expert_id == "dr-wang"
    with pytest.raises(IllegalEscalationTransition):
        esc.complete_callback("dr-wang", eid, "twice")


@pytest.mark.parametrize(
    ("reach", "action"),
    [
        # (how to get there, the move that is illegal there)
        ("accepted", "decline"),
        ("accepted", "complete_callback"),
        ("callback_scheduled", "accept"),
        ("callback_scheduled", "decline"),
        ("callback_scheduled", "complete"),  # legal: callback -> completed (checked below)
        ("completed", "accept"),
        ("completed", "decline"),
        ("completed", "complete"),
        ("completed", "complete_callback"),
        ("expired", "complete_callback"),
        ("expired", "accept"),
        ("offered", "complete"),
        ("offered", "complete_callback"),
    ],
)
def test_illegal_moves_raise_and_change_nothing(
    esc: EscalationService, clock: FakeClock, reach: str, action: str
) -> None:
    esc.expert_sign_in("dr-wang", specialty="cardiology")
    esc.expert_sign_in("dr-li", specialty="cardiology")
    eid = open_one(esc)
    if reach == "accepted":
        esc.accept("dr-wang", eid)
    elif reach in ("callback_scheduled", "expired"):
        clock.advance(60)
        esc.tick()
        if reach == "expired":
            clock.advance(1800)
            esc.tick()
    elif reach == "completed":
        esc.accept("dr-wang", eid)
        esc.complete(eid, "phone")
    before = esc.get(eid)
    moves = {
        "accept": lambda: esc.accept("dr-li", eid),
        "decline": lambda: esc.decline("dr-li", eid, "no"),
        "complete": lambda: esc.complete(eid, "phone"),
        "complete_callback": lambda: esc.complete_callback("dr-li", eid, "done"),
    }
    if (reach, action) == ("callback_scheduled", "complete"):
        assert moves[action]().state is S.COMPLETED
        return
    with pytest.raises(IllegalEscalationTransition) as info:
        moves[action]()
    assert info.value.state.value == reach
    after = esc.get(eid)
    assert (after.state, after.expert_id, after.declined_by) == (
        before.state,
        before.expert_id,
        before.declined_by,
    )
    assert [t.to_state for t in esc.history(eid)][-1] == reach


def test_open_refuses_bad_requests(services: Services, esc: EscalationService) -> None:
    with pytest.raises(InvalidEscalation):
        esc.open("CA1", "a1", "cardiology", None, "   ")
    with pytest.raises(InvalidEscalation):
        esc.open("CA1", "a1", "", None, "question")
    with pytest.raises(InvalidEscalation):
        esc.open("CA-other", "a1", "cardiology", None, "not this agent's call")
    with pytest.raises(InvalidEscalation):
        esc.open("CA1", "nobody", "cardiology", None, "no such agent")
    open_one(esc)
    with pytest.raises(InvalidEscalation, match="already has"):
        open_one(esc)
    with pytest.raises(UnknownEscalation):
        esc.get("nope")
    with pytest.raises(UnknownExpert):
        esc.offers_for("nobody")
    with pytest.raises(InvalidEscalation):
        esc.expert_sign_in("new-expert")  # no specialty


def test_open_escalations_lists_the_unfinished_with_their_age(
    esc: EscalationService, clock: FakeClock, services: Services
) -> None:
    first = open_one(esc)
    clock.advance(45)
    assert [(e.id, e.age_s) for e in esc.open_escalations()] == [(first, 45.0)]
    clock.advance(15)
    esc.tick()
    assert esc.open_escalations()[0].state is S.CALLBACK_SCHEDULED
    clock.advance(1800)
    esc.tick()
    assert esc.open_escalations() == []
    with services.db.transaction() as session:
        logged = session.scalars(
            select(RoutingEscalationTransition.to_state).order_by(RoutingEscalationTransition.id)
        ).all()
    assert logged == [
        "requested",
        "offered",
        "timed_out",
        "callback_scheduled",
        "expired",
    ]


def test_to_json_is_plain(esc: EscalationService) -> None:
    data = esc.get(open_one(esc)).to_json()
    assert data["state"] == "offered"
    assert data["article_ids"] == ["kb-12", "7"]
    assert isinstance(data["requested_at"], str)
