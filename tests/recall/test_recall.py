"""Waiting-room recall rules, table-driven on the fake clock, through the signed feed and the
real dispatcher (fake provider) and signed Twilio webhooks."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.db.models import AuditEntry, Call
from callcenter.messaging.dispatcher import Dispatcher
from callcenter.recall.models import RecallVisit
from callcenter.recall.queue import Waiting, positions
from tests.conftest import TwilioSigner
from tests.messaging.helpers import FakeSender

from .conftest import (
    PHONE_EN,
    PHONE_ZH,
    VISIT_EN,
    VISIT_ZH,
    Hospital1,
    outbox_rows,
    placed_calls,
    queue_body,
    spoken,
)

OTHER = [f"4000{n:04d}" for n in range(10)]  # walk-ins not booked through the hotline


def visit(services: Services, number: str) -> RecallVisit:
    with services.db.transaction() as s:
        found = s.scalar(select(RecallVisit).where(RecallVisit.visit_number == number))
        assert found is not None
        return found


@pytest.mark.parametrize(
    ("now_calling", "numbers", "expected"),
    [
        (10, [11, 12, 13], {"a": 1, "b": 2, "c": 3}),
        (10, [15, 11, 30], {"a": 2, "b": 1, "c": 3}),  # order of the list does not matter
        (12, [11, 12, 13], {"c": 1}),  # 11 and 12 were called: no position
        (0, [5], {"a": 1}),
    ],
)
def test_positions(now_calling: int, numbers: list[int], expected: dict[str, int]) -> None:
    waiting = [
        Waiting(visit_number=f"1000000{i}", queue_number=q, checked_in=False)
        for i, q in enumerate(numbers)
    ]
    names = {f"1000000{i}": k for i, k in enumerate("abc")}
    got = {names[v]: p for v, p in positions(now_calling, waiting).items()}
    assert got == expected


# (places set for the clinic or None, patients ahead of VISIT_ZH, checked in, call expected)
K_PLACES = [
    (None, 0, False, True),
    (None, 4, False, True),  # position 5 = the default k
    (None, 5, False, False),  # position 6
    (None, 2, True, False),  # checked in: in the waiting room already
    (2, 1, False, True),
    (2, 2, False, False),
    (8, 7, False, True),
    (0, 0, False, False),  # recall off for this clinic
]


@pytest.mark.parametrize(("places", "ahead", "checked_in", "called"), K_PLACES)
def test_k_places_from_the_front(
    hospital: Hospital1,
    seeded: Services,
    places: int | None,
    ahead: int,
    checked_in: bool,
    called: bool,
) -> None:
    if places is not None:
        assert hospital.queue(queue_body("setup", 0, [])).status_code == 200
        seeded.recall.set_places("h1", "card-am", places)
    waiting = [(OTHER[i], 11 + i, False) for i in range(ahead)]
    waiting.append((VISIT_ZH, 11 + ahead, checked_in))
    response = hospital.queue(queue_body("q-1", 10, waiting))
    assert response.status_code == 200
    body = response.get_json()
    assert body["recall_places"] == (5 if places is None else places)
    calls = [r for r in outbox_rows(seeded) if r.channel == "call"]
    if called:
        assert body["recalls_queued"] == [VISIT_ZH]
        (row,) = calls
        assert (row.template, row.to_e164, row.language) == ("recall", PHONE_ZH, "zh-CN")
        assert row.urgent is True
        assert row.dedupe_key == f"recall:h1:{VISIT_ZH}"
        assert visit(seeded, VISIT_ZH).status == "calling"
    else:
        assert calls == []
        assert body["recalls_queued"] == []
    # walk-ins near the front are reported, never called
    assert set(body["not_booked_here"]) <= set(OTHER)


def test_a_replayed_or_repeated_event_never_calls_twice(
    hospital: Hospital1, seeded: Services
) -> None:
    payload = queue_body("q-1", 10, [(VISIT_ZH, 12, False)])
    first = hospital.queue(payload)
    again = hospital.queue(payload)
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    later = hospital.queue(queue_body("q-2", 11, [(VISIT_ZH, 12, False)]))
    assert later.get_json()["recalls_queued"] == []
    assert [r.template for r in outbox_rows(seeded)] == ["recall"]


@pytest.mark.parametrize(
    ("second_event", "status", "reason"),
    [
        (queue_body("q-2", 12, [(VISIT_ZH, 12, False)]), "passed", "number passed"),
        (queue_body("q-2", 13, []), "passed", "number passed"),  # no longer listed
        (queue_body("q-2", 11, [(VISIT_ZH, 12, True)]), "checked_in", "checked in"),
    ],
)
def test_a_pending_recall_is_withdrawn_with_the_reason(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    second_event: dict[str, object],
    status: str,
    reason: str,
) -> None:
    """Also the downtime case: no dispatcher ran between the two events, so the recall whose
    number has been called meanwhile is dropped, never placed."""
    hospital.queue(queue_body("q-1", 10, [(VISIT_ZH, 12, False)]))
    answer = hospital.queue(second_event).get_json()
    assert answer["recalls_stopped"] == {VISIT_ZH: reason}
    (row,) = outbox_rows(seeded)
    assert row.status == "cancelled"
    assert row.last_error == f"cancelled: {reason}"
    assert visit(seeded, VISIT_ZH).status == status
    assert dispatcher.drain() == 0
    assert sender.sent == []


def test_the_hospital_sets_a_clinics_recall_places(hospital: Hospital1, seeded: Services) -> None:
    near = [(OTHER[0], 11, False), (OTHER[1], 12, False), (VISIT_ZH, 13, False)]  # position 3
    body = queue_body("q-1", 10, near)
    body["clinic"]["recall_places"] = 2
    assert hospital.queue(body).get_json()["recalls_queued"] == []
    # kept for the clinic when later events leave it out
    assert hospital.queue(queue_body("q-2", 10, near)).get_json()["recall_places"] == 2
    body = queue_body("q-3", 10, near)
    body["clinic"]["recall_places"] = 3
    assert hospital.queue(body).get_json()["recalls_queued"] == [VISIT_ZH]


def test_english_patient_is_called_in_english(hospital: Hospital1, seeded: Services) -> None:
    walk_ins = [(OTHER[i], 12 + i, False) for i in range(5)]
    hospital.queue(queue_body("q-1", 10, [(VISIT_EN, 11, False), *walk_ins, (VISIT_ZH, 30, False)]))
    (row,) = outbox_rows(seeded)
    assert (row.to_e164, row.language) == (PHONE_EN, "en")


def test_confirm_by_pressing_1(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    hospital.queue(queue_body("q-1", 10, [(VISIT_ZH, 12, False)]))
    assert dispatcher.drain() == 1
    (phone,) = placed_calls(sender, twilio)
    assert phone.answer_url.endswith(f"/twilio/voice/outbound?o={sender.sent[0].outbox_id}")
    said = spoken(phone.answer())
    assert "测试医院" in said
    assert "心内科门诊" in said
    assert "返回候诊区" in said
    assert "请尽快返回候诊区" in spoken(phone.press("1"))
    assert visit(seeded, VISIT_ZH).status == "confirmed"
    phone.status("completed")
    assert visit(seeded, VISIT_ZH).status == "confirmed"


def test_cannot_come_tells_the_clinic(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    hospital.queue(queue_body("q-1", 10, [(VISIT_EN, 11, False)]))
    dispatcher.drain()
    (phone,) = placed_calls(sender, twilio)
    assert "Test Hospital, Cardiology clinic" in spoken(phone.answer())
    assert "told the clinic" in spoken(phone.press("2"))
    phone.status("completed")
    # The clinic sees it: in the next event's answer and in the signed recall list.
    answer = hospital.queue(queue_body("q-2", 10, [(VISIT_EN, 11, False)])).get_json()
    assert answer["answers"] == {VISIT_EN: "cannot_come"}
    assert answer["recalls_queued"] == []
    listed = hospital.recalls().get_json()["recalls"]
    assert [(r["visit_number"], r["status"]) for r in listed] == [(VISIT_EN, "cannot_come")]


def test_answering_machine_hears_nothing_personal_then_an_sms(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    hospital.queue(queue_body("q-1", 10, [(VISIT_ZH, 12, False)]))
    dispatcher.drain()
    (phone,) = placed_calls(sender, twilio)
    root = phone.answer(answered_by="machine_end_beep")
    said = spoken(root)
    assert "健康热线" in said
    for private in ("测试医院", "心内科", "测试1", VISIT_ZH):
        assert private not in said
    assert root.find("Gather") is None
    assert root.find("Hangup") is not None
    phone.status("completed", AnsweredBy="machine_end_beep")
    assert visit(seeded, VISIT_ZH).status == "unreachable"
    dispatcher.drain()
    sms = [s for s in sender.sent if s.kind == "sms"]
    assert len(sms) == 1
    assert sms[0].to == PHONE_ZH
    assert "返回候诊区" in sms[0].body
    assert "心内科" not in sms[0].body
    assert len(placed_calls(sender, twilio)) == 1  # no second call to a machine


# (statuses of the first call, of the retry) -> what happens
RETRIES = [
    ("no-answer", "no-answer"),
    ("busy", "no-answer"),
    ("failed", "busy"),
]


@pytest.mark.parametrize(("first", "second"), RETRIES)
def test_unreached_retry_once_after_two_minutes_then_sms(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    clock: FakeClock,
    first: str,
    second: str,
) -> None:
    hospital.queue(queue_body("q-1", 10, [(VISIT_ZH, 12, False)]))
    dispatcher.drain()
    (call1,) = placed_calls(sender, twilio)
    call1.status(first)
    call1.status(first)  # a repeated callback changes nothing
    retry = [r for r in outbox_rows(seeded) if r.dedupe_key.endswith(":retry:2")]
    assert len(retry) == 1
    assert retry[0].due_at - clock.now() == timedelta(seconds=120)
    assert dispatcher.drain() == 0  # not before two minutes
    clock.advance(121)
    assert dispatcher.drain() == 1
    _, call2 = placed_calls(sender, twilio)
    call2.status(second)
    call2.status(second)
    dispatcher.drain()
    assert len(placed_calls(sender, twilio)) == 2  # one retry only
    sms = [s for s in sender.sent if s.kind == "sms"]
    assert len(sms) == 1
    assert "返回候诊区" in sms[0].body
    assert visit(seeded, VISIT_ZH).status == "unreachable"
    statuses = {r.dedupe_key: r.status for r in outbox_rows(seeded)}
    assert statuses[f"recall:h1:{VISIT_ZH}"] == first
    assert statuses[f"recall:h1:{VISIT_ZH}:retry:2"] == second


def test_no_retry_once_the_number_passed(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    clock: FakeClock,
) -> None:
    hospital.queue(queue_body("q-1", 10, [(VISIT_ZH, 12, False)]))
    dispatcher.drain()
    (call1,) = placed_calls(sender, twilio)
    call1.status("no-answer")
    hospital.queue(queue_body("q-2", 12, []))  # the retry waits; the number passes
    clock.advance(200)
    dispatcher.drain()
    call1.status("no-answer")
    assert len(placed_calls(sender, twilio)) == 1
    assert [s for s in sender.sent if s.kind == "sms"] == []
    retry = next(r for r in outbox_rows(seeded) if r.dedupe_key.endswith(":retry:2"))
    assert (retry.status, retry.last_error) == ("cancelled", "cancelled: number passed")


def test_answering_after_the_number_passed(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    hospital.queue(queue_body("q-1", 10, [(VISIT_ZH, 12, False)]))
    dispatcher.drain()
    hospital.queue(queue_body("q-2", 12, []))  # called while the phone rang
    (phone,) = placed_calls(sender, twilio)
    root = phone.answer()
    assert "号码已过" in spoken(root)
    assert root.find("Gather") is None
    assert visit(seeded, VISIT_ZH).status == "passed"


def test_one_event_delivered_twice_at_once_calls_once(
    hospital: Hospital1, seeded: Services
) -> None:
    body = json.dumps(queue_body("q-1", 10, [(VISIT_ZH, 12, False), (VISIT_EN, 13, False)]))
    raw = body.encode()
    headers = hospital.headers(raw)

    def deliver(_: int) -> tuple[int, object]:
        answer = seeded.recall.queue_event(
            "h1", headers["X-Hotline-Timestamp"], headers["X-Hotline-Signature"], raw
        )
        return answer.status, answer.body

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(deliver, range(4)))
    assert {status for status, _ in answers} == {200}
    assert all(body == answers[0][1] for _, body in answers)
    assert sorted(r.dedupe_key for r in outbox_rows(seeded)) == [
        f"recall:h1:{VISIT_ZH}",
        f"recall:h1:{VISIT_EN}",
    ]


@given(
    now_calling=st.integers(min_value=0, max_value=60),
    numbers=st.lists(st.integers(min_value=1, max_value=80), unique=True, max_size=30),
)
def test_positions_rank_the_uncalled_from_one(now_calling: int, numbers: list[int]) -> None:
    waiting = [
        Waiting(visit_number=f"{50000000 + q}", queue_number=q, checked_in=q % 3 == 0)
        for q in numbers
    ]
    got = positions(now_calling, waiting)
    uncalled = sorted(q for q in numbers if q > now_calling)
    # every patient not yet called has a position, 1 = next, in queue-number order
    assert sorted(got.values()) == list(range(1, len(uncalled) + 1))
    assert [got[f"{50000000 + q}"] for q in uncalled] == list(range(1, len(uncalled) + 1))
    # a number at or below the one being called has none
    assert all(f"{50000000 + q}" not in got for q in numbers if q <= now_calling)


# Twilio's AnsweredBy -> does the patient hear the recall (and a question)?
ANSWERED_BY = [
    ("human", True),
    ("unknown", True),
    ("machine_start", False),
    ("machine_end_beep", False),
    ("machine_end_silence", False),
    ("machine_end_other", False),
    ("fax", False),
]


@pytest.mark.parametrize(("answered_by", "person"), ANSWERED_BY)
def test_machine_detection_decides_what_is_said(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    answered_by: str,
    person: bool,
) -> None:
    hospital.queue(queue_body("q-1", 10, [(VISIT_ZH, 12, False)]))
    dispatcher.drain()
    (phone,) = placed_calls(sender, twilio)
    root = phone.answer(answered_by=answered_by)
    assert (root.find("Gather") is not None) == person
    assert ("测试医院" in spoken(root)) == person
    assert (visit(seeded, VISIT_ZH).status == "calling") == person


def test_repeated_webhooks_do_not_act_twice(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    hospital.queue(queue_body("q-1", 10, [(VISIT_ZH, 12, False)]))
    dispatcher.drain()
    (phone,) = placed_calls(sender, twilio)
    first = spoken(phone.answer())
    assert spoken(phone.answer()) == first  # Twilio retried the answer URL
    asked = phone.root
    bye = spoken(phone.press("2"))
    phone.root = asked
    assert spoken(phone.press("2")) == bye  # the same answer to the same question
    with seeded.db.transaction() as s:
        assert len(list(s.scalars(select(Call)))) == 1
        told = s.scalars(select(AuditEntry).where(AuditEntry.action == "recall.cannot_come"))
        assert len(list(told)) == 1
    assert visit(seeded, VISIT_ZH).status == "cannot_come"


def test_the_outbound_answer_url_is_signed(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    hospital.queue(queue_body("q-1", 10, [(VISIT_ZH, 12, False)]))
    dispatcher.drain()
    outbox_id = sender.sent[0].outbox_id
    params = {"CallSid": "CA" + "1" * 32, "AnsweredBy": "human"}
    forged = twilio.post(f"/twilio/voice/outbound?o={outbox_id}", params, signature="bad")
    assert forged.status_code == 403
    # a signature for another outbox id does not open this one
    other = twilio.signature(f"/twilio/voice/outbound?o={outbox_id + 1}", params)
    moved = twilio.post(f"/twilio/voice/outbound?o={outbox_id}", params, signature=other)
    assert moved.status_code == 403
    assert twilio.post("/twilio/voice/outbound?o=x", params).status_code == 400
    assert visit(seeded, VISIT_ZH).status == "calling"
    with seeded.db.transaction() as s:
        assert list(s.scalars(select(Call))) == []
