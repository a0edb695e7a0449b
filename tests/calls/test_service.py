"""The call service directly: calls, residents, sessions and steps in the real database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select, text

from callcenter.bootstrap import Services, build
from callcenter.calls.service import Reply, instructions_text
from callcenter.clock import FakeClock
from callcenter.db.models import (
    Call,
    CallEvent,
    CallSession,
    CallStep,
    OutboxMessage,
    ProviderStatus,
    Resident,
)
from callcenter.ivr import instructions as ins
from callcenter.ivr.engine import Digits, NoInput, Speech
from tests.conftest import make_config

FLOWS = Path(__file__).with_name("flows")
P = "twilio"
CALLER = "+8613800138000"
T = TypeVar("T")


# ---------------------------------------------------------------- helpers


@pytest.fixture
def pin_services(database_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    """Services running the small test flow in tests/calls/flows (with a sensitive PIN)."""
    built = build(make_config(database_url, tmp_path, ivr={"flows_dir": str(FLOWS)}), clock=clock)
    yield built
    built.db.dispose()


def count(services: Services, model: Any, *where: Any) -> int:
    with services.db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def all_rows(services: Services, model: Any, *where: Any) -> list[Any]:
    with services.db.sessions() as s:
        return list(s.scalars(select(model).where(*where)))


def begin(services: Services, sid: str, caller: str | None = CALLER, **kw: Any) -> Reply:
    return services.calls.begin(
        provider=P, provider_call_id=sid, caller=caller, called="+862162345678", **kw
    )


def press(services: Services, sid: str, step: int, value: str) -> Reply:
    return services.calls.input(provider=P, provider_call_id=sid, step=step, event=Digits(value))


def kinds(reply: Reply) -> list[str]:
    return [type(i).__name__ for i in reply.instructions]


def run_together(n: int, fn: Callable[[], T]) -> list[T]:
    """Run ``fn`` in ``n`` threads released at the same moment; re-raise any failure."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a worker is stuck"
    if errors:
        raise errors[0]
    return results


# ---------------------------------------------------------------- begin


def test_begin_creates_call_resident_and_session(services: Services, clock: FakeClock) -> None:
    reply = begin(services, "CAbegin1", caller="138 0013 8000")
    assert reply.step == 0
    assert reply.ended is False
    assert reply.replayed is False
    assert reply.language == "zh-CN"
    assert kinds(reply) == ["Say", "Gather"]

    [call] = all_rows(services, Call)
    assert call.provider == P
    assert call.provider_call_id == "CAbegin1"
    assert call.direction == "inbound"
    assert call.from_e164 == CALLER  # normalised at the edge
    assert call.to_e164 == "+862162345678"
    assert call.status == "in-progress"
    assert call.started_at == clock.now()
    [resident] = all_rows(services, Resident)
    assert resident.phone_e164 == CALLER
    assert resident.preferred_language == "zh-CN"
    assert call.resident_id == resident.id
    [sess] = all_rows(services, CallSession)
    assert sess.call_id == call.id
    assert sess.provider_call_id == "CAbegin1"
    assert sess.step == 0
    assert sess.state["node"] == "main_menu"
    assert sess.state["flow"] == "main"
    assert [(s.step, s.input) for s in all_rows(services, CallStep)] == [(0, {"event": "start"})]


def test_a_known_resident_is_reused(services: Services) -> None:
    begin(services, "CAknown1")
    begin(services, "CAknown2", caller="+86 138-0013-8000")
    assert count(services, Resident) == 1
    assert count(services, Call) == 2
    ids = {c.resident_id for c in all_rows(services, Call)}
    assert len(ids) == 1


HIDDEN_CALLER_IDS = ["anonymous", "", None, "Restricted", "+266696687", "not a number"]


def test_hidden_caller_id_creates_no_resident_and_skips_sms(services: Services) -> None:
    for n, caller in enumerate(HIDDEN_CALLER_IDS):
        sid = f"CAhidden{n}"
        reply = begin(services, sid, caller=caller)
        call = services.calls.get_call(P, sid)
        assert call is not None
        assert (call.from_e164, call.resident_id) == (None, None), caller

        reply = press(services, sid, reply.step, "5")  # service guide
        reply = press(services, sid, reply.step, "1")  # hours, then the SMS offer
        reply = press(services, sid, reply.step, "1")  # "send it to me"
        assert kinds(reply) == ["Say", "Gather"]  # the call goes on
        # The flow knows the number is hidden: the caller is told, no SMS is asked for.
        said = reply.instructions[0]
        assert isinstance(said, ins.Say)
        assert "无法识别您的手机号码" in said.text, caller
    assert count(services, Resident) == 0
    assert count(services, OutboxMessage) == 0


def test_sms_request_from_a_known_number_goes_to_the_outbox(services: Services) -> None:
    sid = "CAsms1"
    reply = begin(services, sid)
    for key in ("5", "1", "1"):
        reply = press(services, sid, reply.step, key)
    [sms] = all_rows(services, OutboxMessage)
    assert (sms.to_e164, sms.template, sms.channel, sms.status) == (
        CALLER,
        "service_guide",
        "sms",
        "pending",
    )
    call = services.calls.get_call(P, sid)
    assert call is not None
    assert sms.dedupe_key == f"call:{call.id}:step:{reply.step}:sms:0"
    # Replaying the step does not queue a second SMS.
    press(services, sid, reply.step - 1, "1")
    assert count(services, OutboxMessage) == 1


def test_input_for_an_unknown_call_starts_it(services: Services) -> None:
    reply = press(services, "CAlost1", 3, "5")
    assert reply.step == 0
    assert kinds(reply) == ["Say", "Gather"]
    call = services.calls.get_call(P, "CAlost1")
    assert call is not None
    assert call.from_e164 is None
    assert count(services, CallStep) == 1


def test_the_language_given_at_begin_wins(services: Services) -> None:
    reply = begin(services, "CAlang1", language="en")
    assert reply.language == "en"
    assert all(say.language == "en" for say in reply.instructions if isinstance(say, ins.Say))
    [resident] = all_rows(services, Resident)
    assert resident.preferred_language == "en"


# ---------------------------------------------------------------- replays


def test_replayed_step_gives_the_stored_answer(services: Services) -> None:
    sid = "CAreplay1"
    begin(services, sid)
    first = press(services, sid, 0, "5")
    again = press(services, sid, 0, "9")  # a late duplicate, whatever it carries
    assert again.replayed is True
    assert again.instructions == first.instructions
    assert again.step == first.step == 1
    assert count(services, CallStep) == 2


def test_retry_with_the_same_idempotency_key_gets_the_stored_answer(services: Services) -> None:
    sid = "CAreplay2"
    begin(services, sid, idempotency_key="k0")
    first = services.calls.input(
        provider=P, provider_call_id=sid, step=0, event=Digits("5"), idempotency_key="k1"
    )
    again = services.calls.input(
        provider=P, provider_call_id=sid, step=0, event=Digits("5"), idempotency_key="k1"
    )
    assert again.replayed is True
    assert again.instructions == first.instructions
    assert again.step == first.step
    steps = all_rows(services, CallStep)
    assert sorted((s.step, s.idempotency_key) for s in steps) == [(0, "k0"), (1, "k1")]


def test_status_is_recorded_once_and_ends_the_session(services: Services, clock: FakeClock) -> None:
    sid = "CAstatus1"
    begin(services, sid)
    clock.advance(33)
    assert services.calls.provider_status(
        provider=P, provider_call_id=sid, status="Completed", duration_s=33
    )
    assert not services.calls.provider_status(
        provider=P, provider_call_id=sid, status="completed", duration_s=33
    )
    assert count(services, ProviderStatus) == 1
    call = services.calls.get_call(P, sid)
    assert call is not None
    assert (call.status, call.outcome, call.duration_s) == ("completed", "abandoned_in_ivr", 33)
    assert call.ended_at == clock.now()
    [sess] = all_rows(services, CallSession)
    assert sess.state["ended"] is True
    # Input after the end does not restart the menu.
    late = press(services, sid, 0, "5")
    assert late.ended is True
    assert count(services, CallStep) == 1


def test_transcript_lists_events_in_order(services: Services) -> None:
    sid = "CAtranscript1"
    begin(services, sid)
    press(services, sid, 0, "0")
    lines = services.calls.transcript(P, sid)
    assert [(line.step, line.kind) for line in lines] == [
        (0, "start"),
        (0, "node"),
        (0, "node"),
        (1, "choice"),
        (1, "enqueue"),
    ]
    assert services.calls.transcript(P, "CAnobody") == []


# ---------------------------------------------------------------- concurrency


def test_concurrent_duplicates_of_one_input_advance_the_call_once(services: Services) -> None:
    sid = "CArace1"
    begin(services, sid)
    replies = run_together(8, lambda: press(services, sid, 0, "5"))
    assert {r.step for r in replies} == {1}
    assert len({r.instructions for r in replies}) == 1
    assert instructions_text(replies[0].instructions)[0].startswith("服务指南")
    assert sum(not r.replayed for r in replies) == 1
    assert count(services, CallStep) == 2
    assert count(services, CallEvent, CallEvent.kind == "choice") == 1
    [sess] = all_rows(services, CallSession)
    assert sess.step == 1


def test_concurrent_begins_of_one_call_create_one_call(services: Services) -> None:
    sid = "CArace2"
    replies = run_together(8, lambda: begin(services, sid))
    assert len({r.instructions for r in replies}) == 1
    assert {r.step for r in replies} == {0}
    assert count(services, Call) == 1
    assert count(services, Resident) == 1
    assert count(services, CallStep) == 1
    assert count(services, CallEvent, CallEvent.kind == "start") == 1


def test_concurrent_calls_from_one_new_number_share_one_resident(services: Services) -> None:
    ids = iter(range(8))
    lock = threading.Lock()

    def call() -> Reply:
        with lock:
            n = next(ids)
        return begin(services, f"CAsame{n}", caller="+8613700137000")

    run_together(8, call)
    assert count(services, Call) == 8
    assert count(services, Resident) == 1


# ---------------------------------------------------------------- sensitive input


def test_sensitive_collect_input_is_masked(pin_services: Services) -> None:
    sid = "CApin1"
    reply = begin(pin_services, sid)
    assert instructions_text(reply.instructions) == ["查询密码请按1，短信请按2。"]
    reply = press(pin_services, sid, reply.step, "1")
    assert instructions_text(reply.instructions) == ["请输入6位密码，以井号键结束。"]
    gather = reply.instructions[-1]
    assert isinstance(gather, ins.Gather)
    assert (gather.max_digits, gather.finish_on_key) == (6, "#")

    reply = press(pin_services, sid, reply.step, "123456#")
    assert instructions_text(reply.instructions) == ["请输入8位就诊号码。"]
    reply = press(pin_services, sid, reply.step, "87654321")
    assert kinds(reply) == ["Say", "Hangup"]
    assert reply.ended is True

    steps = all_rows(pin_services, CallStep)
    inputs = {s.step: s.input for s in steps}
    assert inputs[2] == {"event": "digits", "value": "*******"}  # the PIN, as typed with '#'
    assert inputs[3] == {"event": "digits", "value": "87654321"}  # not sensitive
    collected = all_rows(pin_services, CallEvent, CallEvent.kind == "collected")
    assert [e.detail["value"] for e in collected] == ["******", "87654321"]
    for row in all_rows(pin_services, CallEvent):
        assert "123456" not in str(row.detail)
    call = pin_services.calls.get_call(P, sid)
    assert call is not None
    assert call.outcome == "completed_in_ivr"


def test_sensitive_spoken_digits_are_masked(pin_services: Services) -> None:
    sid = "CApin2"
    reply = begin(pin_services, sid)
    reply = press(pin_services, sid, reply.step, "1")
    reply = pin_services.calls.input(
        provider=P, provider_call_id=sid, step=reply.step, event=Speech("一二三四五六", 0.9)
    )
    assert instructions_text(reply.instructions) == ["请输入8位就诊号码。"]
    [step] = all_rows(pin_services, CallStep, CallStep.step == 2)
    assert step.input == {"event": "speech", "text": "***", "confidence": 0.9}


def test_wrong_length_pin_is_asked_again_and_still_masked(pin_services: Services) -> None:
    sid = "CApin3"
    reply = begin(pin_services, sid)
    reply = press(pin_services, sid, reply.step, "1")
    reply = press(pin_services, sid, reply.step, "12")
    assert instructions_text(reply.instructions) == [
        "抱歉，没有听清。",
        "请输入6位密码，以井号键结束。",
    ]
    [step] = all_rows(pin_services, CallStep, CallStep.step == 2)
    assert step.input == {"event": "digits", "value": "**"}
    reply = pin_services.calls.input(
        provider=P, provider_call_id=sid, step=reply.step, event=NoInput()
    )
    assert instructions_text(reply.instructions)[0] == "抱歉，没有收到按键。"


def test_sms_node_in_custom_flow_goes_to_the_outbox_then_hangs_up(pin_services: Services) -> None:
    sid = "CApin4"
    reply = begin(pin_services, sid)
    reply = press(pin_services, sid, reply.step, "2")
    assert kinds(reply) == ["Say", "Hangup"]
    [sms] = all_rows(pin_services, OutboxMessage)
    assert (sms.template, sms.to_e164) == ("info", CALLER)


# ---------------------------------------------------------------- the caller's age for the queue


@pytest.mark.parametrize(
    ("born", "age", "priority"),
    [
        ("19480301", 78, 5),  # over 75: the elderly rule
        ("19510101", 75, 5),  # 75 exactly
        ("19511201", 74, 0),  # 75 next week: no rule yet
        ("19900101", 36, 0),
    ],
)
def test_an_id_number_keyed_before_asking_for_a_person_gives_the_queue_only_the_age(
    pin_services: Services, born: str, age: int, priority: int
) -> None:
    from callcenter.db.models import CallEvent
    from callcenter.routing.models import RoutingCaller
    from tests.booking.conftest import cn_id

    id_number = cn_id(7, born=born)
    keyed = id_number.replace("X", "*")
    reply = begin(pin_services, "CAage")
    for value, last in (("3", "Gather"), (keyed, "Gather"), ("0", "Enqueue")):
        reply = press(pin_services, "CAage", reply.step, value)
        assert kinds(reply)[-1] == last
    [event] = all_rows(pin_services, CallEvent, CallEvent.kind == "caller_age")
    assert event.detail == {"age": age}
    pin_services.routing.enqueue_caller("CAage", "general")
    with pin_services.db.sessions() as s:
        caller = s.get(RoutingCaller, "CAage")
        assert caller is not None
        assert caller.priority == priority
        # the ID number itself is nowhere in the call's records
        dump = repr([tuple(r) for r in s.execute(text("SELECT * FROM call_events")).all()])
        dump += repr([tuple(r) for r in s.execute(text("SELECT * FROM call_sessions")).all()])
        dump += repr([tuple(r) for r in s.execute(text("SELECT * FROM call_steps")).all()])
    assert id_number[:17] not in dump
