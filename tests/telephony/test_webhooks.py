"""The Twilio webhooks through the real Flask app, with real X-Twilio-Signature headers.

Every request is posted the way Twilio posts it (form-encoded, signed against
PUBLIC_BASE_URL); each test follows the Gather ``action`` URL the previous answer gave, so a
test walks the same path a real call does.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from agents_console import create_app
from callcenter.bootstrap import Services, build
from callcenter.clock import FakeClock
from callcenter.config import ConfigError, load_config
from callcenter.db.models import (
    Call,
    CallEvent,
    CallSession,
    CallStep,
    InboundSms,
    OutboxMessage,
    ProviderStatus,
    Resident,
)
from tests.conftest import FLOWS, PUBLIC_BASE_URL, ROOT, TwilioSigner, make_config

CALLER = "+8613800138000"
HOTLINE = "+862162345678"
FALLBACK_NUMBER = "+862163456789"
DEAD_DATABASE = "postgresql://nobody@127.0.0.1:1/none"


def _prompts(language: str) -> dict[str, Any]:
    data = yaml.safe_load((FLOWS / "prompts" / f"{language}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


ZH = _prompts("zh-CN")
EN = _prompts("en")


# ---------------------------------------------------------------- helpers


def twiml(response: Any) -> ET.Element:
    """The parsed TwiML of a 200 text/xml response."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML, under test
    assert root.tag == "Response"
    return root


def spoken(root: ET.Element) -> list[str]:
    """Everything the caller hears, in order (prompts inside a Gather included)."""
    return [el.text or "" for el in root.iter("Say")]


def shape(root: ET.Element) -> list[tuple[str, dict[str, str], str | None]]:
    return [(el.tag, dict(el.attrib), el.text) for el in root.iter()]


def next_path(root: ET.Element) -> str:
    """The Gather action URL, as a path + query relative to PUBLIC_BASE_URL."""
    gathers = root.findall("Gather")
    assert len(gathers) == 1, ET.tostring(root, encoding="unicode")
    action = gathers[0].attrib["action"]
    assert action.startswith(PUBLIC_BASE_URL + "/")
    return action[len(PUBLIC_BASE_URL) :]


def start(twilio: TwilioSigner, sid: str, caller: str = CALLER, **extra: str) -> ET.Element:
    return twiml(
        twilio.post(
            "/twilio/voice",
            {"CallSid": sid, "From": caller, "To": HOTLINE, "CallStatus": "ringing", **extra},
        )
    )


def answer(
    twilio: TwilioSigner,
    root: ET.Element,
    sid: str,
    headers: dict[str, str] | None = None,
    **params: str,
) -> ET.Element:
    return twiml(twilio.post(next_path(root), {"CallSid": sid, **params}, headers=headers))


def status(twilio: TwilioSigner, sid: str, call_status: str, **extra: str) -> Any:
    return twilio.post("/twilio/voice/status", {"CallSid": sid, "CallStatus": call_status, **extra})


def enqueued(root: ET.Element) -> str | None:
    element = root.find("Enqueue")
    return None if element is None else element.text


def get_call(services: Services, sid: str) -> Call:
    call = services.calls.get_call("twilio", sid)
    assert call is not None
    return call


def count(services: Services, model: Any, *where: Any) -> int:
    with services.db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def session_step(services: Services, sid: str) -> int:
    with services.db.sessions() as s:
        sess = s.scalar(select(CallSession).where(CallSession.provider_call_id == sid))
        assert sess is not None
        return sess.step


def steps_of(services: Services, sid: str) -> list[CallStep]:
    call = get_call(services, sid)
    with services.db.sessions() as s:
        return list(
            s.scalars(select(CallStep).where(CallStep.call_id == call.id).order_by(CallStep.step))
        )


def events_of(services: Services, sid: str) -> list[CallEvent]:
    call = get_call(services, sid)
    with services.db.sessions() as s:
        return list(
            s.scalars(select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id))
        )


def nothing_recorded(services: Services) -> bool:
    return (
        count(services, Call) == 0
        and count(services, InboundSms) == 0
        and count(services, ProviderStatus) == 0
        and count(services, Resident) == 0
    )


# ---------------------------------------------------------------- whole calls


def test_whole_call_by_keypad(twilio: TwilioSigner, services: Services, clock: FakeClock) -> None:
    sid = "CAkeypad00000000000000000000000001"
    started = clock.now()

    root = start(twilio, sid)
    assert spoken(root) == [ZH["main"]["welcome"], ZH["main"]["menu"]]
    welcome = root.find("Say")
    gather = root.find("Gather")
    assert welcome is not None
    assert gather is not None
    assert welcome.attrib == {"voice": "Polly.Zhiyu", "language": "cmn-CN"}
    assert gather.attrib["language"] == "zh-CN"
    assert gather.attrib["input"] == "dtmf speech"
    assert gather.attrib["numDigits"] == "1"
    assert "服务指南" in gather.attrib["hints"].split(",")

    clock.advance(8)
    root = answer(twilio, root, sid, Digits="5")
    assert spoken(root) == [ZH["service"]["menu"]]

    clock.advance(6)
    root = answer(twilio, root, sid, Digits="1")
    assert spoken(root) == [ZH["service"]["hours"], ZH["service"]["offer_sms"]]

    clock.advance(5)
    root = answer(twilio, root, sid, Digits="1")
    assert spoken(root) == [ZH["service"]["sms_sent"], ZH["service"]["menu"]]
    call = get_call(services, sid)
    with services.db.sessions() as s:
        [sms] = s.scalars(select(OutboxMessage)).all()
    assert sms.channel == "sms"
    assert sms.template == "service_guide"
    assert sms.to_e164 == CALLER
    assert sms.language == "zh-CN"
    assert sms.status == "pending"
    assert sms.call_id == call.id

    clock.advance(4)
    root = answer(twilio, root, sid, Digits="0")
    assert spoken(root) == [ZH["system"]["transfer"]]
    assert enqueued(root) == "general-zh-CN"
    assert root.find("Gather") is None
    enqueue = root.find("Enqueue")
    assert enqueue is not None
    assert enqueue.attrib["action"] == f"{PUBLIC_BASE_URL}/twilio/voice/queue"

    clock.advance(72)
    response = status(twilio, sid, "completed", CallDuration="95")
    assert response.status_code == 204

    call = get_call(services, sid)
    assert call.status == "completed"
    assert call.outcome == "enqueued"
    assert call.duration_s == 95
    assert call.queue == "general"
    assert call.red_flag is False
    assert call.from_e164 == CALLER
    assert call.to_e164 == HOTLINE
    assert call.language == "zh-CN"
    assert call.started_at == started
    assert call.ended_at == clock.now()

    events = events_of(services, sid)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start"
    assert kinds[-1] == "end"
    assert {"start", "node", "choice", "sms", "enqueue", "status", "end"} <= set(kinds)
    assert [e.detail["key"] for e in events if e.kind == "choice"] == ["5", "1", "1", "0"]
    assert [e.node for e in events if e.kind == "node"][:3] == [
        "main:welcome",
        "main:main_menu",
        "main:to_service",
    ]
    [enqueue_event] = [e for e in events if e.kind == "enqueue"]
    assert enqueue_event.detail == {"queue": "general", "reason": "caller_request"}

    steps = steps_of(services, sid)
    assert [s.step for s in steps] == [0, 1, 2, 3, 4]
    assert [s.input for s in steps] == [
        {"event": "start"},
        {"event": "digits", "value": "5"},
        {"event": "digits", "value": "1"},
        {"event": "digits", "value": "1"},
        {"event": "digits", "value": "0"},
    ]
    with services.db.sessions() as s:
        resident = s.scalar(select(Resident).where(Resident.phone_e164 == CALLER))
    assert resident is not None
    assert call.resident_id == resident.id


def test_whole_call_by_speech(twilio: TwilioSigner, services: Services) -> None:
    sid = "CAspeech00000000000000000000000001"
    root = start(twilio, sid)

    root = answer(twilio, root, sid, SpeechResult="服务指南", Confidence="0.91")
    assert spoken(root) == [ZH["service"]["menu"]]

    root = answer(twilio, root, sid, SpeechResult="服务时间", Confidence="0.88")
    assert spoken(root) == [ZH["service"]["hours"], ZH["service"]["offer_sms"]]

    root = answer(twilio, root, sid, SpeechResult="人工", Confidence="0.95")
    assert spoken(root) == [ZH["system"]["transfer"]]
    assert enqueued(root) == "general-zh-CN"

    assert status(twilio, sid, "completed", CallDuration="40").status_code == 204
    call = get_call(services, sid)
    assert (call.status, call.outcome, call.duration_s) == ("completed", "enqueued", 40)
    choices = [e.detail for e in events_of(services, sid) if e.kind == "choice"]
    assert choices == [
        {"key": "5", "via": "speech", "speech": "服务指南"},
        {"key": "1", "via": "speech", "speech": "服务时间"},
        {"key": "0", "via": "speech"},
    ]
    inputs = [s.input for s in steps_of(services, sid)]
    assert inputs[1] == {"event": "speech", "text": "服务指南", "confidence": 0.91}


def test_speech_wins_over_digits_when_twilio_sends_both(
    twilio: TwilioSigner, services: Services
) -> None:
    sid = "CAboth0000000000000000000000000001"
    root = start(twilio, sid)
    root = answer(twilio, root, sid, SpeechResult="服务指南", Digits="1")
    assert spoken(root) == [ZH["service"]["menu"]]


def test_english_by_pressing_9_and_remembered_for_the_next_call(
    twilio: TwilioSigner, services: Services
) -> None:
    caller = "+8613900139000"
    first = "CAenglish0000000000000000000000001"
    root = start(twilio, first, caller=caller)
    root = answer(twilio, root, first, Digits="9")
    assert spoken(root) == [EN["main"]["menu"]]
    gather = root.find("Gather")
    assert gather is not None
    assert gather.attrib["language"] == "en-US"
    assert "english" in gather.attrib["hints"].split(",")
    for say in root.iter("Say"):
        assert say.attrib == {"voice": "Polly.Joanna", "language": "en-US"}

    root = answer(twilio, root, first, Digits="5")
    assert spoken(root) == [EN["service"]["menu"]]
    root = answer(twilio, root, first, Digits="0")
    assert enqueued(root) == "general-en"
    assert status(twilio, first, "completed", CallDuration="30").status_code == 204
    assert get_call(services, first).language == "en"
    assert [e.detail for e in events_of(services, first) if e.kind == "language"] == [{"to": "en"}]

    # The next call from the same number starts in English.
    second = "CAenglish0000000000000000000000002"
    root = start(twilio, second, caller=caller)
    assert spoken(root) == [EN["main"]["welcome"], EN["main"]["menu"]]
    gather = root.find("Gather")
    assert gather is not None
    assert gather.attrib["language"] == "en-US"
    assert get_call(services, second).language == "en"

    # Pressing 8 goes back to Mandarin, and that is remembered too.
    root = answer(twilio, root, second, Digits="8")
    assert spoken(root) == [ZH["main"]["menu"]]
    third = "CAenglish0000000000000000000000003"
    root = start(twilio, third, caller=caller)
    assert spoken(root) == [ZH["main"]["welcome"], ZH["main"]["menu"]]

    # Another caller is not affected.
    other = start(twilio, "CAenglish0000000000000000000000004", caller="+8613700137000")
    assert spoken(other)[0] == ZH["main"]["welcome"]


@pytest.mark.parametrize(
    "utterance",
    ["我胸口痛，喘不上气", "我爸爸突然说话不清，嘴歪了", "my father has chest pain"],
    ids=["chest-pain", "stroke-signs", "english-phrase-in-mandarin-call"],
)
def test_red_flag_speech_goes_to_the_urgent_queue(
    twilio: TwilioSigner, services: Services, utterance: str
) -> None:
    sid = "CAredflag000000000000000000000001"
    root = start(twilio, sid)
    root = answer(twilio, root, sid, SpeechResult=utterance, Confidence="0.8")
    assert spoken(root) == [ZH["system"]["red_flag"]]
    assert "120" in spoken(root)[0]
    assert enqueued(root) == "urgent-zh-CN"
    call = get_call(services, sid)
    assert call.red_flag is True
    assert call.queue == "urgent"
    assert call.outcome == "enqueued"
    assert call.priority > 0
    kinds = [e.kind for e in events_of(services, sid)]
    assert "red_flag" in kinds


def test_silence_reprompts_then_reaches_a_person(twilio: TwilioSigner, services: Services) -> None:
    sid = "CAsilence00000000000000000000000001"
    root = start(twilio, sid)
    root = answer(twilio, root, sid)  # actionOnEmptyResult: no Digits, no SpeechResult
    assert spoken(root) == [ZH["system"]["no_input"], ZH["main"]["menu"]]
    root = answer(twilio, root, sid, Digits="7")  # not an option
    assert spoken(root) == [ZH["system"]["invalid"], ZH["main"]["menu"]]
    root = answer(twilio, root, sid)
    assert spoken(root) == [ZH["system"]["transfer_after_retries"]]
    assert enqueued(root) == "general-zh-CN"
    assert get_call(services, sid).outcome == "enqueued"


# ---------------------------------------------------------------- signatures

# (endpoint with query, a valid form for it)
ENDPOINTS = [
    pytest.param("/twilio/voice", {"CallSid": "CAsig1", "From": CALLER, "To": HOTLINE}, id="voice"),
    pytest.param("/twilio/voice/input?step=0", {"CallSid": "CAsig1", "Digits": "5"}, id="input"),
    pytest.param(
        "/twilio/voice/queue",
        {"CallSid": "CAsig1", "QueueResult": "hangup", "QueueTime": "12"},
        id="queue",
    ),
    pytest.param(
        "/twilio/voice/status",
        {"CallSid": "CAsig1", "CallStatus": "completed", "CallDuration": "30"},
        id="status",
    ),
    pytest.param("/twilio/fallback", {"CallSid": "CAsig1", "ErrorCode": "11200"}, id="fallback"),
    pytest.param(
        "/twilio/sms",
        {"MessageSid": "SMsig1", "From": CALLER, "To": HOTLINE, "Body": "你好"},
        id="sms",
    ),
    pytest.param(
        "/twilio/sms/status",
        {"MessageSid": "SMsig1", "MessageStatus": "delivered"},
        id="sms-status",
    ),
]


def _other_url(path: str) -> str:
    return "/twilio/voice" if path.startswith("/twilio/sms") else "/twilio/sms"


def _other_query(path: str) -> str:
    return path.replace("step=0", "step=1") if "step=0" in path else path + "?step=1"


ATTACKS = {
    "forged": lambda t, path, form: t.post(
        path, form, signature="dGhpcyBpcyBub3QgYSBzaWduYXR1cmUhIQ=="
    ),
    "missing": lambda t, path, form: t.client.post(path, data=form),
    "empty": lambda t, path, form: t.post(path, form, signature=""),
    "replayed-to-other-endpoint": lambda t, path, form: t.post(
        path, form, signature=t.signature(_other_url(path), form)
    ),
    "other-query": lambda t, path, form: t.post(
        path, form, signature=t.signature(_other_query(path), form)
    ),
    "tampered-form": lambda t, path, form: t.post(
        path, {**form, "From": "+8613012345678"}, signature=t.signature(path, form)
    ),
    "wrong-token": lambda t, path, form: TwilioSigner(t.client, token="not-the-token").post(
        path, form
    ),
    "plain-http-url": lambda t, path, form: TwilioSigner(
        t.client, base_url="http://hotline.example.org"
    ).post(path, form),
}


@pytest.mark.parametrize(("path", "form"), ENDPOINTS)
def test_signature_is_checked_on_every_endpoint(
    twilio: TwilioSigner, services: Services, path: str, form: dict[str, str]
) -> None:
    """Every attack in ATTACKS gets 403 and leaves no trace; the genuine request passes."""
    statuses = {attack: ATTACKS[attack](twilio, path, form).status_code for attack in ATTACKS}
    assert statuses == dict.fromkeys(ATTACKS, 403)
    assert nothing_recorded(services)
    # The same request, properly signed, is accepted.
    assert twilio.post(path, form).status_code in (200, 204)


@pytest.mark.parametrize(("path", "form"), ENDPOINTS)
def test_body_over_64_kib_is_refused_on_every_endpoint(
    twilio: TwilioSigner, services: Services, path: str, form: dict[str, str]
) -> None:
    response = twilio.post(path, {**form, "Padding": "x" * (64 * 1024 + 1)})
    assert response.status_code == 413
    assert nothing_recorded(services)


def test_a_signature_over_the_public_url_with_its_explicit_port_is_accepted(
    services: Services, twilio: TwilioSigner
) -> None:
    """Some set-ups have Twilio sign ``https://host:443/...``; the check accepts the URL with
    and without the default port, as Twilio's own validator does, and nothing else."""
    form = {"CallSid": "CAport00000000000000000000000001", "From": CALLER, "To": HOTLINE}
    with_port = TwilioSigner(twilio.client, base_url="https://hotline.example.org:443")
    assert spoken(twiml(with_port.post("/twilio/voice", form)))[0] == ZH["main"]["welcome"]
    other_port = TwilioSigner(twilio.client, base_url="https://hotline.example.org:8443")
    form2 = {**form, "CallSid": "CAport00000000000000000000000002"}
    assert other_port.post("/twilio/voice", form2).status_code == 403
    assert services.calls.get_call("twilio", form2["CallSid"]) is None


def test_app_behind_a_proxy_validates_against_the_public_url(
    twilio: TwilioSigner, services: Services
) -> None:
    form = {"CallSid": "CAproxy0000000000000000000000001", "From": CALLER, "To": HOTLINE}
    # Gunicorn behind nginx sees an internal host and plain http; Twilio signed the public URL.
    response = twilio.client.post(
        "/twilio/voice",
        base_url="http://10.0.0.7:8000",
        data=form,
        headers={
            "X-Twilio-Signature": twilio.signature("/twilio/voice", form),
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "hotline.example.org",
        },
    )
    assert spoken(twiml(response))[0] == ZH["main"]["welcome"]

    # A signature for the URL the app itself saw (Flask's test host) is not Twilio's.
    local = TwilioSigner(twilio.client, base_url="http://localhost")
    form2 = {**form, "CallSid": "CAproxy0000000000000000000000002"}
    assert local.post("/twilio/voice", form2).status_code == 403
    assert services.calls.get_call("twilio", form2["CallSid"]) is None


MALFORMED = {
    "voice without CallSid": ("/twilio/voice", {"From": CALLER}),
    "voice with a bad CallSid": ("/twilio/voice", {"CallSid": "CA<script>"}),
    "input without step": ("/twilio/voice/input", {"CallSid": "CAx1", "Digits": "1"}),
    "input with step=abc": ("/twilio/voice/input?step=abc", {"CallSid": "CAx1", "Digits": "1"}),
    "status without CallStatus": ("/twilio/voice/status", {"CallSid": "CAx1"}),
    "sms without MessageSid": ("/twilio/sms", {"From": CALLER, "Body": "hi"}),
    "sms status without status": ("/twilio/sms/status", {"MessageSid": "SMx1"}),
}


def test_malformed_but_signed_requests_get_400(twilio: TwilioSigner, services: Services) -> None:
    got = {name: twilio.post(path, form).status_code for name, (path, form) in MALFORMED.items()}
    assert got == dict.fromkeys(MALFORMED, 400)
    assert nothing_recorded(services)


def test_get_is_not_allowed(client: FlaskClient) -> None:
    assert client.get("/twilio/voice").status_code == 405


# ---------------------------------------------------------------- replays and races


def test_replay_with_the_same_idempotency_token_does_not_advance(
    twilio: TwilioSigner, services: Services
) -> None:
    sid = "CAreplay00000000000000000000000001"
    root = start(twilio, sid)
    path = next_path(root)
    token = {"I-Twilio-Idempotency-Token": "b5a1e4c2-0000-4000-8000-000000000001"}
    first = answer(twilio, root, sid, headers=token, Digits="5")
    assert spoken(first) == [ZH["service"]["menu"]]
    steps_before = len(steps_of(services, sid))
    step_before = session_step(services, sid)

    # Twilio retries the very same request (e.g. after a timeout).
    again = twiml(twilio.post(path, {"CallSid": sid, "Digits": "5"}, headers=token))
    assert shape(again) == shape(first)
    # Even if the retried body differed, the token is what identifies the request.
    odd = twiml(twilio.post(path, {"CallSid": sid, "Digits": "9"}, headers=token))
    assert shape(odd) == shape(first)

    assert len(steps_of(services, sid)) == steps_before == 2
    assert session_step(services, sid) == step_before == 1
    assert [s.idempotency_key for s in steps_of(services, sid)] == [
        None,
        token["I-Twilio-Idempotency-Token"],
    ]


def test_replay_of_the_same_step_without_a_token_does_not_advance(
    twilio: TwilioSigner, services: Services
) -> None:
    sid = "CAreplay00000000000000000000000002"
    root = start(twilio, sid)
    path = next_path(root)
    first = answer(twilio, root, sid, Digits="5")
    again = twiml(twilio.post(path, {"CallSid": sid, "Digits": "5"}))
    assert shape(again) == shape(first)
    assert len(steps_of(services, sid)) == 2
    assert session_step(services, sid) == 1

    # The call goes on; a late duplicate of the earlier step still gets the earlier answer.
    hours = answer(twilio, first, sid, Digits="1")
    assert spoken(hours)[0] == ZH["service"]["hours"]
    late = twiml(twilio.post(path, {"CallSid": sid, "Digits": "5"}))
    assert shape(late) == shape(first)
    assert len(steps_of(services, sid)) == 3
    assert session_step(services, sid) == 2
    assert [e.detail["key"] for e in events_of(services, sid) if e.kind == "choice"] == ["5", "1"]


def test_replayed_incoming_call_webhook_answers_the_same(
    twilio: TwilioSigner, services: Services
) -> None:
    sid = "CAreplay00000000000000000000000003"
    first = start(twilio, sid)
    again = start(twilio, sid)
    assert shape(again) == shape(first)
    assert count(services, Call) == 1
    assert count(services, Resident) == 1
    assert len(steps_of(services, sid)) == 1
    assert [e.kind for e in events_of(services, sid)].count("start") == 1


def test_input_for_a_step_ahead_of_the_call_reasks_without_advancing(
    twilio: TwilioSigner, services: Services
) -> None:
    sid = "CAahead000000000000000000000000001"
    root = start(twilio, sid)
    assert next_path(root) == "/twilio/voice/input?step=0"

    ahead = twiml(twilio.post("/twilio/voice/input?step=3", {"CallSid": sid, "Digits": "5"}))
    assert spoken(ahead) == [ZH["main"]["menu"]]  # the question we are really waiting on
    assert next_path(ahead) == "/twilio/voice/input?step=0"
    assert len(steps_of(services, sid)) == 1
    assert session_step(services, sid) == 0
    stale = [e for e in events_of(services, sid) if e.kind == "stale_input"]
    assert [e.detail for e in stale] == [{"step": 3}]

    # The real answer still works.
    root = answer(twilio, ahead, sid, Digits="5")
    assert spoken(root) == [ZH["service"]["menu"]]


def test_input_after_the_caller_was_enqueued_does_not_restart_the_menu(
    twilio: TwilioSigner, services: Services
) -> None:
    sid = "CAafter000000000000000000000000001"
    root = start(twilio, sid)
    queued = answer(twilio, root, sid, Digits="0")
    assert enqueued(queued) == "general-zh-CN"
    late = twiml(twilio.post("/twilio/voice/input?step=1", {"CallSid": sid, "Digits": "5"}))
    assert late.find("Gather") is None
    assert len(steps_of(services, sid)) == 2
    assert get_call(services, sid).outcome == "enqueued"


def test_input_for_an_unknown_call_starts_it(twilio: TwilioSigner, services: Services) -> None:
    sid = "CAunknown0000000000000000000000001"
    root = twiml(twilio.post("/twilio/voice/input?step=4", {"CallSid": sid, "Digits": "5"}))
    assert spoken(root) == [ZH["main"]["welcome"], ZH["main"]["menu"]]
    call = get_call(services, sid)
    assert call.from_e164 is None
    assert len(steps_of(services, sid)) == 1


# ---------------------------------------------------------------- status and queue callbacks


def test_duplicated_status_callbacks_are_recorded_once(
    twilio: TwilioSigner, services: Services
) -> None:
    sid = "CAstatus00000000000000000000000001"
    start(twilio, sid)
    for _ in range(3):
        assert status(twilio, sid, "completed", CallDuration="61").status_code == 204
    assert status(twilio, sid, "in-progress").status_code == 204
    with services.db.sessions() as s:
        rows = s.scalars(
            select(ProviderStatus)
            .where(ProviderStatus.provider_id == sid)
            .order_by(ProviderStatus.id)
        ).all()
    assert [(r.kind, r.status) for r in rows] == [("call", "completed"), ("call", "in-progress")]
    call = get_call(services, sid)
    assert call.status == "completed"  # a late non-final status does not reopen the call
    assert call.duration_s == 61
    assert call.outcome == "abandoned_in_ivr"  # hung up while still in the menu
    events = events_of(services, sid)
    assert [e.kind for e in events].count("end") == 1
    # The call's history shows each status once, however often Twilio sent it.
    assert [e.detail["status"] for e in events if e.kind == "status"] == [
        "completed",
        "in-progress",
    ]


def test_status_for_an_unknown_call_is_recorded(twilio: TwilioSigner, services: Services) -> None:
    response = status(twilio, "CAnever000000000000000000000000001", "no-answer")
    assert response.status_code == 204
    assert count(services, ProviderStatus, ProviderStatus.status == "no-answer") == 1
    assert count(services, Call) == 0


@pytest.mark.parametrize(
    ("queue_result", "outcome"),
    [("hangup", "abandoned_in_queue"), ("bridged", "answered"), ("error", "enqueued")],
    ids=["caller-hung-up", "answered", "error"],
)
def test_queue_exit_sets_the_outcome(
    twilio: TwilioSigner, services: Services, queue_result: str, outcome: str
) -> None:
    sid = "CAqueue000000000000000000000000001"
    root = start(twilio, sid)
    assert enqueued(answer(twilio, root, sid, Digits="0")) == "general-zh-CN"
    response = twilio.post(
        "/twilio/voice/queue",
        {"CallSid": sid, "QueueResult": queue_result, "QueueTime": "45", "QueueSid": "QU1"},
    )
    assert list(twiml(response)) == []
    assert status(twilio, sid, "completed", CallDuration="80").status_code == 204
    call = get_call(services, sid)
    assert call.outcome == outcome
    assert call.status == "completed"
    [exit_event] = [e for e in events_of(services, sid) if e.kind == "queue_exit"]
    assert exit_event.node == "general"
    assert exit_event.detail == {"result": queue_result, "queue_time_s": 45}


# ---------------------------------------------------------------- SMS


def test_inbound_sms_is_recorded_and_answered_politely(
    twilio: TwilioSigner, services: Services
) -> None:
    form = {"MessageSid": "SMin0000000000000000000000000001", "From": CALLER, "To": HOTLINE}
    root = twiml(twilio.post("/twilio/sms", {**form, "Body": "请问明天几点开门？"}))
    [message] = list(root)
    assert message.tag == "Message"
    assert "健康热线" in (message.text or "")
    assert "Health Hotline" in (message.text or "")
    assert "CANCEL" not in (message.text or "").upper()
    # Twilio retries: the same message is stored once.
    twiml(twilio.post("/twilio/sms", {**form, "Body": "请问明天几点开门？"}))
    with services.db.sessions() as s:
        rows = s.scalars(select(InboundSms)).all()
    assert [(r.provider_message_id, r.from_e164, r.to_e164, r.body) for r in rows] == [
        (form["MessageSid"], CALLER, HOTLINE, "请问明天几点开门？")
    ]


#: Twilio answers its own English keywords (Advanced Opt-Out); we add nothing to those.
TWILIO_OPT_OUT_WORDS = ["STOP", "stop", " Stop ", "UNSUBSCRIBE", "CANCEL"]
#: Chinese carriers' TD / 退订: nobody else answers them, so the hotline confirms.
CN_OPT_OUT_WORDS = ["退订", "TD", "td。", "ＴＤ", "Ｔ Ｄ"]


def test_opt_out_words_are_confirmed_only_where_twilio_does_not(
    twilio: TwilioSigner, services: Services
) -> None:
    replies: dict[str, list[str]] = {}
    words = TWILIO_OPT_OUT_WORDS + CN_OPT_OUT_WORDS
    for n, body in enumerate(words):
        form = {"MessageSid": f"SMoptout{n:024d}", "From": CALLER, "Body": body}
        replies[body] = [el.tag for el in twiml(twilio.post("/twilio/sms", form))]
    expected = {body: [] for body in TWILIO_OPT_OUT_WORDS}
    expected.update({body: ["Message"] for body in CN_OPT_OUT_WORDS})
    assert replies == expected
    assert count(services, InboundSms) == len(words)  # and every one is recorded


@pytest.mark.parametrize("body", ["请问退订以后还能预约吗", "stop by tomorrow?"], ids=["zh", "en"])
def test_sentences_mentioning_opt_out_words_still_get_a_reply(
    twilio: TwilioSigner, body: str
) -> None:
    root = twiml(twilio.post("/twilio/sms", {"MessageSid": "SMq1", "From": CALLER, "Body": body}))
    assert [el.tag for el in root] == ["Message"]


def test_sms_status_is_recorded_once(twilio: TwilioSigner, services: Services) -> None:
    sid = "SMstatus00000000000000000000000001"
    for _ in range(2):
        r = twilio.post("/twilio/sms/status", {"MessageSid": sid, "MessageStatus": "delivered"})
        assert r.status_code == 204
    # Older accounts send SmsStatus instead of MessageStatus.
    assert (
        twilio.post("/twilio/sms/status", {"MessageSid": sid, "SmsStatus": "sent"}).status_code
        == 204
    )
    r = twilio.post(
        "/twilio/sms/status",
        {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"},
    )
    assert r.status_code == 204
    with services.db.sessions() as s:
        rows = s.scalars(
            select(ProviderStatus)
            .where(ProviderStatus.provider_id == sid)
            .order_by(ProviderStatus.id)
        ).all()
    assert [(r.kind, r.status) for r in rows] == [
        ("sms", "delivered"),
        ("sms", "sent"),
        ("sms", "undelivered"),
    ]
    assert rows[2].detail == {"ErrorCode": "30003"}


# ---------------------------------------------------------------- database down


@pytest.fixture
def down(tmp_path: Path, clock: FakeClock) -> Iterator[TwilioSigner]:
    """The app with a database URL that points nowhere."""
    config = make_config(DEAD_DATABASE, tmp_path, twilio={"fallback_number": FALLBACK_NUMBER})
    services = build(config, clock=clock)
    app = create_app(services, TESTING=True)
    yield TwilioSigner(app.test_client())
    services.db.dispose()


def test_fallback_answers_without_a_database(down: TwilioSigner) -> None:
    root = twiml(down.post("/twilio/fallback", {"CallSid": "CAfb1", "ErrorCode": "11200"}))
    assert [el.tag for el in root] == ["Say", "Say", "Dial"]
    zh, en, dial = list(root)
    assert zh.attrib["language"] == "cmn-CN"
    assert en.attrib["language"] == "en-US"
    assert "120" in (zh.text or "")
    assert "120" in (en.text or "")
    assert dial.text == FALLBACK_NUMBER


def test_fallback_still_checks_the_signature(down: TwilioSigner) -> None:
    response = down.post("/twilio/fallback", {"CallSid": "CAfb1"}, signature="Zm9yZ2VkIQ==")
    assert response.status_code == 403


def test_incoming_call_with_the_database_down_gets_the_busy_fallback(down: TwilioSigner) -> None:
    root = twiml(down.post("/twilio/voice", {"CallSid": "CAdown1", "From": CALLER, "To": HOTLINE}))
    assert [el.tag for el in root] == ["Say", "Say", "Dial"]
    assert root[2].text == FALLBACK_NUMBER


def test_caller_input_with_the_database_down_gets_the_busy_fallback(down: TwilioSigner) -> None:
    root = twiml(down.post("/twilio/voice/input?step=0", {"CallSid": "CAdown1", "Digits": "5"}))
    assert [el.tag for el in root] == ["Say", "Say", "Dial"]


def test_health_and_readiness(down: TwilioSigner, client: FlaskClient) -> None:
    assert down.client.get("/healthz").status_code == 200
    assert down.client.get("/healthz").get_json() == {"status": "ok"}
    not_ready = down.client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.get_json() == {"status": "database unavailable"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ok"}


# ---------------------------------------------------------------- start-up


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_missing_auth_token_stops_the_app(tmp_path: Path, token: str | None) -> None:
    environ = {"SECRET_KEY": "k", "PUBLIC_BASE_URL": PUBLIC_BASE_URL}
    if token is not None:
        environ["TWILIO_AUTH_TOKEN"] = token
    config = load_config(
        ROOT / "config.yaml",
        environ=environ,
        overrides={
            "instance": {"data_dir": str(tmp_path)},
            "database": {"url": f"sqlite:///{tmp_path / 'x.db'}"},
            "ivr": {"flows_dir": str(FLOWS)},
        },
    )
    services = build(config)
    try:
        with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
            create_app(services)
    finally:
        services.db.dispose()


def test_every_documented_endpoint_is_mounted(app: Flask) -> None:
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert {
        "/twilio/voice",
        "/twilio/voice/input",
        "/twilio/voice/queue",
        "/twilio/voice/status",
        "/twilio/fallback",
        "/twilio/sms",
        "/twilio/sms/status",
        "/healthz",
        "/readyz",
    } <= rules
