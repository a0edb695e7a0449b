"""Routing on the phone through the real Flask app, with real X-Twilio-Signature headers:
the queue's wait URL, "press 1 to be called back", agents dialled with a whisper, ring-no-
answer, the conference, status callbacks, and a whole escalated call.

Twilio's side is played by the test: it follows the URLs our TwiML and the router loop give
(the loop's REST calls go to a recording fake of the call-control port; the real Twilio
adapter is checked against Twilio's OpenAPI spec in ``tests/contract``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.routing.escalation import EscalationState
from callcenter.routing.models import RoutingCaller, RoutingConferenceEvent
from callcenter.routing.router import AgentState
from tests.conftest import PUBLIC_BASE_URL, TwilioSigner

CALLER = "+8613800138000"
HOTLINE = "+862162345678"
AGENT_PHONE = "+8613911112222"
EXPERT_PHONE = "+8613922223333"


# ---------------------------------------------------------------- helpers


@dataclass
class FakeControl:
    """Records what the router loop asks the provider to do; hands out leg ids."""

    dials: list[tuple[str, str, str, int, str]] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)
    hangups: list[str] = field(default_factory=list)

    def dial(self, to: str, answer_url: str, status_url: str, timeout_s: int) -> str:
        leg = f"CL{len(self.dials) + 1:032d}"
        self.dials.append((to, answer_url, status_url, timeout_s, leg))
        return leg

    def redirect(self, call_id: str, url: str) -> None:
        self.redirects.append((call_id, url))

    def hangup(self, call_id: str) -> None:
        self.hangups.append(call_id)


@pytest.fixture
def control(services: Services) -> FakeControl:
    fake = FakeControl()
    services.phone.control = fake
    return fake


def twiml(response: Any) -> ET.Element:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML, under test
    assert root.tag == "Response"
    return root


def spoken(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter("Say")]


def rel(url: str) -> str:
    assert url.startswith(PUBLIC_BASE_URL + "/"), url
    return url[len(PUBLIC_BASE_URL) :]


def post(twilio: TwilioSigner, url: str, **params: str) -> Any:
    return twilio.post(rel(url), params)


def call_to_person(twilio: TwilioSigner, sid: str, caller: str | None = None) -> ET.Element:
    """A call that walks the menu to a person: service guide (5), then 0. Each call comes
    from its own number unless told (a repeat caller today gets a higher priority)."""
    caller = caller or f"+861380013{int(sid[2:]) % 10000:04d}"
    root = twiml(twilio.post("/twilio/voice", {"CallSid": sid, "From": caller, "To": HOTLINE}))
    for digits in ("5", "0"):
        gather = root.find("Gather")
        assert gather is not None
        root = twiml(twilio.post(rel(gather.attrib["action"]), {"CallSid": sid, "Digits": digits}))
    return root


def wait_url(root: ET.Element) -> str:
    enqueue = root.find("Enqueue")
    assert enqueue is not None
    assert enqueue.attrib["waitUrlMethod"] == "POST"
    return enqueue.attrib["waitUrl"]


def wait(twilio: TwilioSigner, url: str, sid: str, queue_time: int = 0) -> ET.Element:
    return twiml(
        post(twilio, url, CallSid=sid, QueueTime=str(queue_time), QueueSid="QU" + "1" * 32)
    )


def sid(n: int) -> str:
    return f"CA{n:032d}"


def agent(services: Services, agent_id: str, clock: FakeClock, phone: str = AGENT_PHONE) -> None:
    services.routing.agent_sign_in(agent_id, levels={"general": 0}, languages=["zh-CN", "en"])
    services.phone.set_agent_contact(agent_id, phone)
    clock.advance(1)


def caller_row(services: Services, call_id: str) -> RoutingCaller:
    with services.db.transaction() as session:
        row = session.get(RoutingCaller, call_id)
        assert row is not None
        return row


def conference_name(root: ET.Element) -> str:
    conf = root.find("Dial/Conference")
    assert conf is not None, ET.tostring(root, encoding="unicode")
    return conf.text or ""


def conf_event(twilio: TwilioSigner, call_id: str, event: str, leg: str, seq: int) -> Any:
    return twilio.post(
        f"/twilio/queue/conference?c={call_id}",
        {
            "ConferenceSid": "CF" + "2" * 32,
            "FriendlyName": f"hh-{call_id}",
            "StatusCallbackEvent": event,
            "CallSid": leg,
            "SequenceNumber": str(seq),
        },
    )


# ---------------------------------------------------------------- the wait URL


def test_enqueue_carries_a_wait_url_that_announces_position_and_wait(
    twilio: TwilioSigner, services: Services, clock: FakeClock
) -> None:
    agent(services, "a1", clock)
    first = call_to_person(twilio, sid(1))
    url = wait_url(first)
    assert url == f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general"
    root = wait(twilio, url, sid(1))
    # Nobody ahead and an agent signed in: no callback offer, "shortly".
    assert root.find("Gather") is None
    said = spoken(root)
    assert said[:2] == ["您现在排在第1位。", "坐席即将为您接听。"]
    assert "120" in said[2]  # a health message between announcements
    pause = root.find("Pause")
    assert pause is not None
    assert pause.attrib["length"] == "30"
    assert caller_row(services, sid(1)).status == "waiting"

    clock.advance(10)
    call_to_person(twilio, sid(2))
    root = wait(twilio, url, sid(2))
    # One ahead, one agent, no history: 2 x 180 s default handle time = 6 minutes, over the
    # 2-minute threshold: the announcement is inside a Gather offering a callback.
    gather = root.find("Gather")
    assert gather is not None, (spoken(root), services.phone.where(sid(2)))
    assert gather.attrib["numDigits"] == "1"
    assert rel(gather.attrib["action"]) == "/twilio/queue/callback?lang=zh-CN"
    assert [s.text for s in gather.iter("Say")] == [
        "您现在排在第2位。",
        "预计等待约6分钟。",
        "如需稍后回拨并保留您的排队位置，请按1。",
    ]


def test_position_is_announced_only_while_five_or_less(
    twilio: TwilioSigner, services: Services, clock: FakeClock
) -> None:
    for n in range(1, 7):
        call_to_person(twilio, sid(n))
        twilio_root = wait(
            twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(n)
        )
        clock.advance(1)
        said = spoken(twilio_root)
        if n <= 5:
            assert f"您现在排在第{n}位。" in said
        else:
            assert not any("排在第" in s for s in said)
        # Nobody signed in: no estimate, but the callback is offered.
        assert "目前所有坐席都在忙，请您耐心等待。" in said
        assert twilio_root.find("Gather") is not None


def test_recent_handle_times_drive_the_estimate(
    twilio: TwilioSigner, services: Services, clock: FakeClock
) -> None:
    agent(services, "a1", clock)
    routing = services.routing
    # Three calls of 60 s talk each ended within the hour: 60 + 30 s wrap-up = 90 s a call.
    for n in range(3):
        routing.enqueue_caller(f"CAold{n}", "general")
        (offer,) = routing.dispatch()
        assert routing.accept(offer.agent_id, offer.caller_id)
        clock.advance(60)
        routing.end_call("a1")
        routing.set_state("a1", AgentState.AVAILABLE)
    for n in (1, 2, 3):
        root = wait(twilio, wait_url(call_to_person(twilio, sid(n))), sid(n))
        clock.advance(1)
    # Two ahead, one agent: 3 x 90 s = 4.5 min -> "about 5 minutes".
    assert "预计等待约5分钟。" in spoken(root)


def test_english_caller_hears_english(twilio: TwilioSigner, services: Services) -> None:
    root = twiml(twilio.post("/twilio/voice", {"CallSid": sid(1), "From": CALLER, "To": HOTLINE}))
    gather = root.find("Gather")
    assert gather is not None
    root = twiml(twilio.post(rel(gather.attrib["action"]), {"CallSid": sid(1), "Digits": "9"}))
    for digits in ("5", "0"):
        gather = root.find("Gather")
        assert gather is not None
        root = twiml(
            twilio.post(rel(gather.attrib["action"]), {"CallSid": sid(1), "Digits": digits})
        )
    url = wait_url(root)
    assert url.endswith("lang=en&q=general")
    said = spoken(wait(twilio, url, sid(1)))
    assert said[:2] == ["You are number 1 in the queue.", "All our agents are busy. Please hold."]


# ---------------------------------------------------------------- press 1 for a callback


def test_press_1_becomes_a_callback_that_keeps_its_place(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    url = f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general"
    call_to_person(twilio, sid(1))
    wait(twilio, url, sid(1))
    clock.advance(5)
    call_to_person(twilio, sid(2), caller="+8613800139999")
    wait(twilio, url, sid(2))
    queued_at = caller_row(services, sid(2)).enqueued_at
    clock.advance(5)
    call_to_person(twilio, sid(3))
    wait(twilio, url, sid(3))

    clock.advance(60)
    root = twiml(
        twilio.post("/twilio/queue/callback?lang=zh-CN", {"CallSid": sid(2), "Digits": "1"})
    )
    assert spoken(root) == [
        "好的，我们将回拨尾号9999的电话，您的排队位置会保留。您现在可以挂机了。"
    ]
    assert root.find("Leave") is not None
    row = caller_row(services, sid(2))
    assert (row.callback, row.callback_number, row.status) == (True, "+8613800139999", "waiting")
    assert row.enqueued_at == queued_at
    assert row.callback_expires_at == clock.now() + timedelta(hours=2)
    # Leaving the provider's queue (or hanging up) does not abandon a callback.
    for result in ("leave", "hangup"):
        response = twilio.post("/twilio/voice/queue", {"CallSid": sid(2), "QueueResult": result})
        assert response.status_code == 200
    assert caller_row(services, sid(2)).status == "waiting"
    # A second press does nothing more: the caller is no longer an ordinary waiting caller.
    assert services.phone.where(sid(2)) is not None

    # One agent frees up: the first caller is served first; then the callback (queued before
    # caller 3) is dialled before caller 3, when the agent is free again.
    agent(services, "a1", clock)
    services.phone.run_once()
    assert [d[0] for d in control.dials] == [AGENT_PHONE]
    assert caller_row(services, sid(1)).status == "offered"
    routing = services.routing
    assert routing.accept("a1", sid(1))
    routing.end_call("a1")
    clock.advance(31)
    report = services.phone.run_once()
    assert report.offers == 1
    assert caller_row(services, sid(2)).status == "offered"
    assert caller_row(services, sid(3)).status == "waiting"
    # The whisper tells the agent it is a callback.
    answer_url = control.dials[-1][1]
    root = twiml(post(twilio, answer_url, CallSid=control.dials[-1][4]))
    assert "这是一通回拨" in "".join(spoken(root))


def test_a_caller_without_a_usable_number_is_not_offered_a_callback(
    twilio: TwilioSigner, services: Services
) -> None:
    call_to_person(twilio, sid(1), caller="anonymous")
    root = wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    assert root.find("Gather") is None
    root = twiml(
        twilio.post("/twilio/queue/callback?lang=zh-CN", {"CallSid": sid(1), "Digits": "1"})
    )
    assert spoken(root) == ["抱歉，无法识别您的来电号码，暂时不能回拨。请继续等待。"]
    redirect = root.find("Redirect")
    assert redirect is not None
    assert rel(redirect.text or "") == "/twilio/queue/wait?lang=zh-CN&q=general"
    assert caller_row(services, sid(1)).callback is False


def test_another_key_goes_back_to_waiting(twilio: TwilioSigner, services: Services) -> None:
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    root = twiml(
        twilio.post("/twilio/queue/callback?lang=zh-CN", {"CallSid": sid(1), "Digits": "7"})
    )
    assert root.find("Redirect") is not None
    assert caller_row(services, sid(1)).callback is False


def test_hanging_up_in_the_queue_abandons_the_call(
    twilio: TwilioSigner, services: Services, clock: FakeClock
) -> None:
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    clock.advance(40)
    twilio.post(
        "/twilio/voice/queue", {"CallSid": sid(1), "QueueResult": "hangup", "QueueTime": "40"}
    )
    row = caller_row(services, sid(1))
    assert (row.status, row.end_reason) == ("abandoned", "hangup")


# ---------------------------------------------------------------- agents


def test_the_agent_is_dialled_hears_the_whisper_and_the_caller_joins(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agent(services, "a1", clock)
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    report = services.phone.run_once()
    assert (report.offers, report.agents_dialled) == (1, 1)
    (to, answer_url, status_url, timeout, leg) = control.dials[0]
    assert (to, timeout) == (AGENT_PHONE, 15)
    assert rel(answer_url) == f"/twilio/queue/agent?a=a1&c={sid(1)}"
    assert rel(status_url) == f"/twilio/queue/agent/status?a=a1&c={sid(1)}"
    assert caller_row(services, sid(1)).agent_leg == leg

    root = twiml(post(twilio, answer_url, CallSid=leg))
    gather = root.find("Gather")
    assert gather is not None
    assert [s.text for s in gather.iter("Say")] == ["健康热线来电，general队列。", "按任意键接听。"]
    assert gather.attrib["timeout"] == "8"

    root = twiml(post(twilio, gather.attrib["action"], CallSid=leg, Digits="5"))
    assert conference_name(root) == f"hh-{sid(1)}"
    conf = root.find("Dial/Conference")
    assert conf is not None
    assert conf.attrib["endConferenceOnExit"] == "false"
    assert rel(conf.attrib["statusCallback"]) == f"/twilio/queue/conference?c={sid(1)}"
    assert caller_row(services, sid(1)).status == "answered"
    assert services.phone.pending_tasks() == [("connect", {"call": sid(1)})]

    services.phone.run_once()
    assert control.redirects == [(sid(1), f"{PUBLIC_BASE_URL}/twilio/queue/join?c={sid(1)}")]
    assert services.phone.pending_tasks() == []
    root = twiml(twilio.post(f"/twilio/queue/join?c={sid(1)}", {"CallSid": sid(1)}))
    conf = root.find("Dial/Conference")
    assert conf is not None
    assert conf.text == f"hh-{sid(1)}"
    assert conf.attrib["endConferenceOnExit"] == "true"
    # Twilio reports the caller leaving the queue as bridged/redirected: not abandoned.
    twilio.post("/twilio/voice/queue", {"CallSid": sid(1), "QueueResult": "redirected"})
    assert caller_row(services, sid(1)).status == "answered"


def test_ring_no_answer_moves_the_call_to_the_next_agent(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agent(services, "a1", clock)
    agent(services, "a2", clock, phone="sip:a2@pbx.hospital.example")
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    services.phone.run_once()
    assert [d[0] for d in control.dials] == [AGENT_PHONE]  # a1 idle longest
    first_answer = control.dials[0][1]
    clock.advance(14)
    assert services.phone.run_once().rang_out == 0
    clock.advance(1)
    report = services.phone.run_once()
    assert (report.rang_out, report.offers) == (1, 1)
    assert [d[0] for d in control.dials] == [AGENT_PHONE, "sip:a2@pbx.hospital.example"]
    # a1 picking up late hears that the call has gone, and cannot take it.
    root = twiml(post(twilio, first_answer, CallSid=control.dials[0][4]))
    assert spoken(root) == ["该来电已被接听或已挂断。"]
    assert root.find("Hangup") is not None
    root = twiml(
        twilio.post(
            f"/twilio/queue/agent/accept?a=a1&c={sid(1)}", {"CallSid": "CL1", "Digits": "1"}
        )
    )
    assert root.find("Hangup") is not None
    assert caller_row(services, sid(1)).offered_agent == "a2"


@pytest.mark.parametrize("status", ["no-answer", "busy", "completed"])
def test_an_agent_phone_that_stops_ringing_passes_the_call_on_at_once(
    twilio: TwilioSigner,
    services: Services,
    clock: FakeClock,
    control: FakeControl,
    status: str,
) -> None:
    """The agent's phone says no answer or busy (or they picked up and hung up without
    taking it): the caller does not wait out the 15 s ring timeout."""
    agent(services, "a1", clock)
    agent(services, "a2", clock, phone="sip:a2@pbx.hospital.example")
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    services.phone.run_once()
    _to, _answer, status_url, _t, leg = control.dials[0]
    clock.advance(4)
    for repeat in (status, status):  # a repeated callback changes nothing more
        assert post(twilio, status_url, CallSid=leg, CallStatus=repeat).status_code == 204
    agents = {a.id: a for a in services.phone.agents()}
    assert agents["a1"].state == "available"
    report = services.phone.run_once()
    assert (report.rang_out, report.offers) == (0, 1)
    assert control.dials[-1][0] == "sip:a2@pbx.hospital.example"
    assert caller_row(services, sid(1)).offered_agent == "a2"


def test_a_completed_leg_after_the_agent_took_the_call_is_not_a_miss(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agent(services, "a1", clock)
    leg = connected_call(twilio, services, clock, control)
    status_url = control.dials[0][2]
    assert post(twilio, status_url, CallSid=leg, CallStatus="completed").status_code == 204
    assert {a.id: a.state for a in services.phone.agents()}["a1"] == "on_call"
    assert caller_row(services, sid(1)).status == "answered"


def test_three_phones_in_a_row_not_answered_set_the_agent_away(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agent(services, "a1", clock)
    for n in (1, 2, 3):
        call_to_person(twilio, sid(n))
        wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(n))
        services.phone.run_once()
        _to, _answer, status_url, _t, leg = control.dials[-1]
        post(twilio, status_url, CallSid=leg, CallStatus="no-answer")
        clock.advance(1)
    agents = {a.id: a for a in services.phone.agents()}
    assert (agents["a1"].state, agents["a1"].reason) == ("away", "missed_offers")


def test_an_unreachable_agent_phone_sets_the_agent_away(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agent(services, "a1", clock)
    agent(services, "a2", clock)
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    services.phone.run_once()
    _to, _answer, status_url, _t, leg = control.dials[0]
    for status in ("initiated", "failed", "failed"):  # a repeat changes nothing more
        response = post(twilio, status_url, CallSid=leg, CallStatus=status)
        assert response.status_code == 204
    agents = {a.id: a for a in services.phone.agents()}
    assert (agents["a1"].state, agents["a1"].reason) == ("away", "phone_unreachable")
    services.phone.run_once()
    assert caller_row(services, sid(1)).offered_agent == "a2"


def test_the_agent_not_pressing_a_key_does_not_take_the_call(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agent(services, "a1", clock)
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    services.phone.run_once()
    root = twiml(post(twilio, control.dials[0][1], CallSid=control.dials[0][4]))
    # After the Gather times out (voicemail, or nobody there): a message and hang up.
    assert spoken(root)[-1] == "未接听，来电将转给其他坐席。"
    assert root.find("Hangup") is not None
    root = twiml(
        twilio.post(f"/twilio/queue/agent/accept?a=a1&c={sid(1)}", {"CallSid": "CL1", "Digits": ""})
    )
    assert root.find("Hangup") is not None
    assert caller_row(services, sid(1)).status == "offered"


# ---------------------------------------------------------------- conference and callbacks


def connected_call(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl, n: int = 1
) -> str:
    """Caller ``n`` talking to agent a1 in the conference; returns the agent's leg."""
    call_to_person(twilio, sid(n))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(n))
    services.phone.run_once()
    _to, answer_url, _s, _t, leg = control.dials[-1]
    root = twiml(post(twilio, answer_url, CallSid=leg))
    gather = root.find("Gather")
    assert gather is not None
    twiml(post(twilio, gather.attrib["action"], CallSid=leg, Digits="1"))
    services.phone.run_once()
    assert conf_event(twilio, sid(n), "participant-join", leg, 1).status_code == 204
    assert conf_event(twilio, sid(n), "participant-join", sid(n), 2).status_code == 204
    return leg


def test_conference_callbacks_are_recorded_once_and_the_agent_leaving_ends_the_call(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agent(services, "a1", clock)
    leg = connected_call(twilio, services, clock, control)
    conf_event(twilio, sid(1), "participant-join", sid(1), 2)  # a repeat
    with services.db.transaction() as session:
        rows = session.execute(
            select(RoutingConferenceEvent.event, RoutingConferenceEvent.role).order_by(
                RoutingConferenceEvent.id
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("participant-join", "agent"),
        ("participant-join", "caller"),
    ]
    assert caller_row(services, sid(1)).connected_at == clock.now()

    clock.advance(120)
    conf_event(twilio, sid(1), "participant-leave", leg, 3)
    agents = {a.id: a for a in services.phone.agents()}
    assert agents["a1"].state == "wrap_up"
    # The caller is alone and no expert is coming: the loop hangs the caller up.
    assert services.phone.pending_tasks() == [("hangup", {"leg": sid(1)})]
    services.phone.run_once()
    assert control.hangups == [sid(1)]
    conf_event(twilio, sid(1), "participant-leave", sid(1), 4)
    conf_event(twilio, sid(1), "conference-end", "", 5)
    row = caller_row(services, sid(1))
    assert row.ended_at == clock.now()
    assert row.answered_by == "a1"


def test_a_callback_is_dialled_after_the_agent_takes_it_and_retried_when_unanswered(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    twilio.post("/twilio/queue/callback?lang=zh-CN", {"CallSid": sid(1), "Digits": "1"})
    twilio.post("/twilio/voice/queue", {"CallSid": sid(1), "QueueResult": "leave"})
    agent(services, "a1", clock)

    for attempt in (1, 2, 3):
        services.phone.run_once()
        _to, answer_url, _s, _t, agent_leg = control.dials[-1]
        assert _to == AGENT_PHONE
        root = twiml(post(twilio, answer_url, CallSid=agent_leg))
        gather = root.find("Gather")
        assert gather is not None
        twiml(post(twilio, gather.attrib["action"], CallSid=agent_leg, Digits="1"))
        services.phone.run_once()  # the dial_callback task
        number, cb_answer, cb_status, _t, cb_leg = control.dials[-1]
        assert number == "+8613800130001"
        assert rel(cb_answer) == f"/twilio/queue/callback/answer?c={sid(1)}"
        assert caller_row(services, sid(1)).callback_attempts == attempt
        post(twilio, cb_status, CallSid=cb_leg, CallStatus="no-answer")
        row = caller_row(services, sid(1))
        # The agent's leg is hung up and their call ends; the callback waits again.
        services.phone.run_once()
        assert control.hangups[-1] == agent_leg
        if attempt < 3:
            assert row.status == "waiting"
            assert row.callback_not_before == clock.now() + timedelta(seconds=120)
            clock.advance(60)
            assert services.phone.run_once().offers == 0  # not before the retry delay
            clock.advance(60)
        else:
            assert (row.status, row.end_reason) == ("abandoned", "callback_failed")


def test_an_answered_callback_joins_the_conference(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    twilio.post("/twilio/queue/callback?lang=zh-CN", {"CallSid": sid(1), "Digits": "1"})
    agent(services, "a1", clock)
    services.phone.run_once()
    _to, answer_url, _s, _t, agent_leg = control.dials[-1]
    gather = twiml(post(twilio, answer_url, CallSid=agent_leg)).find("Gather")
    assert gather is not None
    twiml(post(twilio, gather.attrib["action"], CallSid=agent_leg, Digits="1"))
    services.phone.run_once()
    _n, cb_answer, _s2, _t2, cb_leg = control.dials[-1]
    root = twiml(post(twilio, cb_answer, CallSid=cb_leg))
    assert spoken(root) == ["您好，这里是健康热线，为您回电。正在为您接通坐席，请稍候。"]
    assert conference_name(root) == f"hh-{sid(1)}"
    conf_event(twilio, sid(1), "participant-join", cb_leg, 1)
    with services.db.transaction() as session:
        role = session.scalar(select(RoutingConferenceEvent.role))
    assert role == "caller"


def test_a_callback_not_dialled_in_time_expires(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    twilio.post("/twilio/queue/callback?lang=zh-CN", {"CallSid": sid(1), "Digits": "1"})
    clock.advance(2 * 3600 - 1)
    assert services.phone.run_once().callbacks_expired == 0
    clock.advance(1)
    assert services.phone.run_once().callbacks_expired == 1
    row = caller_row(services, sid(1))
    assert (row.status, row.end_reason) == ("abandoned", "callback_expired")
    agent(services, "a1", clock)
    assert services.phone.run_once().offers == 0


# ---------------------------------------------------------------- a whole escalated call


def test_a_whole_escalated_call(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    esc = services.escalations
    agent(services, "a1", clock)
    esc.expert_sign_in("dr-wang", specialty="cardiology", hospital="h1", contact=EXPERT_PHONE)

    # Ringing -> IVR -> queue.
    root = call_to_person(twilio, sid(1))
    assert spoken(wait(twilio, wait_url(root), sid(1)))[0] == "您现在排在第1位。"
    clock.advance(3)
    # The router dials the agent, who takes the call; the caller is moved into the conference.
    services.phone.run_once()
    _to, answer_url, _s, _t, agent_leg = control.dials[-1]
    gather = twiml(post(twilio, answer_url, CallSid=agent_leg)).find("Gather")
    assert gather is not None
    twiml(post(twilio, gather.attrib["action"], CallSid=agent_leg, Digits="1"))
    services.phone.run_once()
    assert control.redirects[-1][0] == sid(1)
    twiml(twilio.post(f"/twilio/queue/join?c={sid(1)}", {"CallSid": sid(1)}))
    conf_event(twilio, sid(1), "conference-start", "", 1)
    conf_event(twilio, sid(1), "participant-join", agent_leg, 2)
    conf_event(twilio, sid(1), "participant-join", sid(1), 3)

    # The agent escalates; the expert sees the question and accepts.
    clock.advance(90)
    opened = esc.open(
        sid(1), "a1", "cardiology", "h1", "Can the patient fly 2 weeks after a stent?", "", ["kb-3"]
    )
    assert [o.question for o in esc.offers_for("dr-wang")] == [opened.question]
    clock.advance(20)
    esc.accept("dr-wang", opened.id)

    # The loop dials the expert into the conference, once.
    report = services.phone.run_once()
    assert report.experts_dialled == 1
    assert services.phone.run_once().experts_dialled == 0
    to, expert_answer, expert_status, _t, expert_leg = control.dials[-1]
    assert to == EXPERT_PHONE
    root = twiml(post(twilio, expert_answer, CallSid=expert_leg))
    assert spoken(root)[0].startswith("健康热线专家会诊，cardiology。")
    assert conference_name(root) == f"hh-{sid(1)}"
    conf = root.find("Dial/Conference")
    assert conf is not None
    assert conf.attrib["endConferenceOnExit"] == "false"
    post(twilio, expert_status, CallSid=expert_leg, CallStatus="in-progress")
    conf_event(twilio, sid(1), "participant-join", expert_leg, 4)

    # The agent drops; the caller and expert go on talking (nothing is hung up).
    clock.advance(30)
    conf_event(twilio, sid(1), "participant-leave", agent_leg, 5)
    agent_left = clock.now()
    assert {a.id: a.state for a in services.phone.agents()}["a1"] == "wrap_up"
    assert services.phone.pending_tasks() == []
    assert esc.get(opened.id).state is EscalationState.ACCEPTED

    # The caller hangs up: the conference ends, the escalation completes, the expert is free.
    clock.advance(240)
    conf_event(twilio, sid(1), "participant-leave", sid(1), 6)
    conf_event(twilio, sid(1), "conference-end", "", 7)
    done = esc.get(opened.id)
    assert done.state is EscalationState.COMPLETED
    assert esc.expert("dr-wang").state == "available"
    assert [t.to_state for t in esc.history(opened.id)] == [
        "requested",
        "offered",
        "accepted",
        "completed",
    ]
    row = caller_row(services, sid(1))
    # The agent's part (their handle time) ended when they left.
    assert (row.status, row.answered_by, row.ended_at) == ("answered", "a1", agent_left)
    status = twilio.post(
        "/twilio/voice/status",
        {"CallSid": sid(1), "CallStatus": "completed", "CallDuration": "400"},
    )
    assert status.status_code == 204


def test_an_unreachable_expert_leaves_a_callback_and_a_lone_caller_is_hung_up(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    esc = services.escalations
    agent(services, "a1", clock)
    esc.expert_sign_in("dr-wang", specialty="cardiology", contact=EXPERT_PHONE)
    esc.expert_sign_in("dr-li", specialty="cardiology", contact="+8613900000077")
    agent_leg = connected_call(twilio, services, clock, control)
    opened = esc.open(sid(1), "a1", "cardiology", None, "question")
    esc.accept("dr-wang", opened.id)
    services.phone.run_once()
    _to, _answer, expert_status, _t, expert_leg = control.dials[-1]
    # The agent leaves while the expert's phone rings: the caller waits for the expert.
    conf_event(twilio, sid(1), "participant-leave", agent_leg, 3)
    assert services.phone.pending_tasks() == []
    post(twilio, expert_status, CallSid=expert_leg, CallStatus="no-answer")
    # Nobody is with the caller to wait for another expert: the question becomes an expert
    # callback (not lost), the expert is free again, and the caller is not left in silence.
    later = esc.get(opened.id)
    assert later.state is EscalationState.CALLBACK_SCHEDULED
    assert esc.expert("dr-wang").state == "available"
    assert [(t.to_state, t.detail.get("reason")) for t in esc.history(opened.id)][-2:] == [
        ("declined", "expert could not be reached by phone"),
        ("callback_scheduled", "expert could not be reached by phone"),
    ]
    assert services.phone.pending_tasks() == [("hangup", {"leg": sid(1)})]


def test_with_the_agent_still_on_the_call_an_unreachable_expert_passes_it_to_the_next(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    esc = services.escalations
    agent(services, "a1", clock)
    esc.expert_sign_in("dr-wang", specialty="cardiology", contact=EXPERT_PHONE)
    esc.expert_sign_in("dr-li", specialty="cardiology", contact="+8613900000077")
    connected_call(twilio, services, clock, control)
    opened = esc.open(sid(1), "a1", "cardiology", None, "question")
    esc.accept("dr-wang", opened.id)
    services.phone.run_once()
    _to, _answer, expert_status, _t, expert_leg = control.dials[-1]
    clock.advance(25)
    post(twilio, expert_status, CallSid=expert_leg, CallStatus="no-answer")
    again = esc.get(opened.id)
    assert again.state is EscalationState.OFFERED
    assert [e.id for e in esc.offers_for("dr-li")] == [opened.id]
    assert esc.offers_for("dr-wang") == []  # not offered again to the one who did not answer
    assert services.phone.pending_tasks() == []  # the caller stays with the agent
    esc.accept("dr-li", opened.id)
    services.phone.run_once()
    assert control.dials[-1][0] == "+8613900000077"


# ---------------------------------------------------------------- signatures and bad input

QUEUE_ENDPOINTS = [
    "/twilio/queue/wait?lang=zh-CN&q=general",
    "/twilio/queue/callback?lang=zh-CN",
    f"/twilio/queue/agent?a=a1&c={sid(1)}",
    f"/twilio/queue/agent/accept?a=a1&c={sid(1)}",
    f"/twilio/queue/agent/status?a=a1&c={sid(1)}",
    f"/twilio/queue/join?c={sid(1)}",
    f"/twilio/queue/callback/answer?c={sid(1)}",
    f"/twilio/queue/callback/status?c={sid(1)}",
    "/twilio/queue/expert?e=abc",
    "/twilio/queue/expert/status?e=abc",
    f"/twilio/queue/conference?c={sid(1)}",
]


@pytest.mark.parametrize("path", QUEUE_ENDPOINTS)
def test_every_queue_endpoint_refuses_a_forged_or_missing_signature(
    twilio: TwilioSigner, path: str
) -> None:
    params = {"CallSid": sid(1), "CallStatus": "completed", "Digits": "1"}
    assert twilio.post(path, params, signature="forged").status_code == 403
    assert twilio.client.post(path, data=params).status_code == 403
    # A signature for another URL (here: another call's) is refused too.
    other = twilio.signature(path.replace(sid(1), sid(2)), params)
    if other != twilio.signature(path, params):
        assert twilio.post(path, params, signature=other).status_code == 403


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/twilio/queue/wait?lang=zh-CN", {"CallSid": sid(1)}),
        ("/twilio/queue/wait?lang=zh-CN&q=general", {"CallSid": "bad sid!"}),
        ("/twilio/queue/agent?a=a1&c=bad%20sid", {"CallSid": sid(1)}),
        (f"/twilio/queue/agent/status?a=a1&c={sid(1)}", {"CallSid": sid(1)}),
        (f"/twilio/queue/conference?c={sid(1)}", {"CallSid": sid(1)}),
    ],
)
def test_malformed_but_signed_requests_get_400(
    twilio: TwilioSigner, path: str, params: dict[str, str]
) -> None:
    assert twilio.post(path, params).status_code == 400


def test_a_wait_request_for_an_unknown_call_still_plays_hold(
    twilio: TwilioSigner, services: Services
) -> None:
    root = wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(99))
    assert root.find("Pause") is not None
    assert services.phone.where(sid(99)) is None


def test_a_caller_hanging_up_while_an_agent_rings_stops_the_ringing(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agent(services, "a1", clock)
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    services.phone.run_once()
    agent_leg = control.dials[0][4]
    twilio.post("/twilio/voice/queue", {"CallSid": sid(1), "QueueResult": "hangup"})
    assert {a.id: a.state for a in services.phone.agents()}["a1"] == "available"
    services.phone.run_once()
    assert control.hangups == [agent_leg]
    assert caller_row(services, sid(1)).status == "abandoned"


def test_retried_webhooks_change_nothing_twice(
    twilio: TwilioSigner, services: Services, clock: FakeClock, control: FakeControl
) -> None:
    agent(services, "a1", clock)
    call_to_person(twilio, sid(1))
    url = f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general"
    wait(twilio, url, sid(1))
    wait(twilio, url, sid(1))  # Twilio asks again after each cycle: still one caller
    services.phone.run_once()
    _to, answer_url, _s, _t, leg = control.dials[0]
    gather = twiml(post(twilio, answer_url, CallSid=leg)).find("Gather")
    assert gather is not None
    first = twiml(post(twilio, gather.attrib["action"], CallSid=leg, Digits="1"))
    again = twiml(post(twilio, gather.attrib["action"], CallSid=leg, Digits="1"))
    assert conference_name(first) == conference_name(again) == f"hh-{sid(1)}"
    assert services.phone.pending_tasks() == [("connect", {"call": sid(1)})]


def test_pressing_1_twice_keeps_one_callback(
    twilio: TwilioSigner, services: Services, clock: FakeClock
) -> None:
    call_to_person(twilio, sid(1))
    wait(twilio, f"{PUBLIC_BASE_URL}/twilio/queue/wait?lang=zh-CN&q=general", sid(1))
    twilio.post("/twilio/queue/callback?lang=zh-CN", {"CallSid": sid(1), "Digits": "1"})
    expires = caller_row(services, sid(1)).callback_expires_at
    clock.advance(10)
    root = twiml(
        twilio.post("/twilio/queue/callback?lang=zh-CN", {"CallSid": sid(1), "Digits": "1"})
    )
    assert root.find("Leave") is not None
    assert caller_row(services, sid(1)).callback_expires_at == expires
