"""What the webhook path writes, when requests for one call arrive together or out of order."""

from __future__ import annotations

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.db.models import CallEvent, CallSession, CallStep, ProviderStatus
from tests.calls.test_service import P, all_rows, begin, count, press, run_together


def test_concurrent_duplicate_status_callbacks_end_the_call_once(
    services: Services, clock: FakeClock
) -> None:
    sid = "CAstatusrace1"
    begin(services, sid)
    press(services, sid, 0, "5")
    clock.advance(20)
    recorded = run_together(
        6,
        lambda: services.calls.provider_status(
            provider=P, provider_call_id=sid, status="completed", duration_s=20
        ),
    )
    assert sorted(recorded) == [False] * 5 + [True]
    assert count(services, ProviderStatus) == 1
    assert count(services, CallEvent, CallEvent.kind == "end") == 1
    call = services.calls.get_call(P, sid)
    assert call is not None
    assert (call.status, call.outcome, call.duration_s) == ("completed", "abandoned_in_ivr", 20)
    [session] = all_rows(services, CallSession)
    assert session.state["ended"] is True
    assert session.step == 1


def test_a_status_that_is_not_final_leaves_the_call_running(services: Services) -> None:
    sid = "CAringing1"
    begin(services, sid)
    assert services.calls.provider_status(provider=P, provider_call_id=sid, status="in-progress")
    call = services.calls.get_call(P, sid)
    assert call is not None
    assert (call.ended_at, call.outcome) == (None, None)
    [session] = all_rows(services, CallSession)
    assert not session.state.get("ended")
    # The caller goes on: the menu still answers.
    assert not press(services, sid, 0, "5").ended
    assert [e.kind for e in all_rows(services, CallEvent, CallEvent.step.is_(None))] == ["status"]


def test_status_for_a_call_never_seen_is_kept_and_creates_no_call(services: Services) -> None:
    assert services.calls.provider_status(provider=P, provider_call_id="CAghost", status="busy")
    assert count(services, ProviderStatus) == 1
    assert services.calls.get_call(P, "CAghost") is None


def test_every_step_is_written_with_its_events(services: Services) -> None:
    sid = "CAwrites1"
    begin(services, sid)
    for step, key in enumerate(["5", "1", "2", "9", "0"]):
        press(services, sid, step, key)
    steps = all_rows(services, CallStep)
    assert [s.step for s in sorted(steps, key=lambda s: s.step)] == [0, 1, 2, 3, 4, 5]
    choices = all_rows(services, CallEvent, CallEvent.kind == "choice")
    assert [(c.step, c.detail["key"]) for c in sorted(choices, key=lambda c: c.id)] == [
        (1, "5"),
        (2, "1"),
        (3, "2"),
        (4, "9"),
        (5, "0"),
    ]
    [session] = all_rows(services, CallSession)
    assert (session.step, session.state["ended"]) == (5, True)
    call = services.calls.get_call(P, sid)
    assert call is not None
    assert (call.outcome, call.queue) == ("enqueued", "general")
