"""Whatever a caller presses or says (or a recogniser invents), the webhooks answer with
well-formed TwiML that either asks again or moves the call on: never a 500, never markup
made from the caller's input.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from callcenter.bootstrap import Services
from callcenter.db.models import CallStep, InboundSms
from tests.conftest import PUBLIC_BASE_URL, TwilioSigner

CALLER = "+8613800138000"
HOTLINE = "+862162345678"
TWIML_VERBS = {"Response", "Say", "Gather", "Enqueue", "Dial", "Hangup", "Pause"}
HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
_sids = itertools.count(1)
F = TypeVar("F", bound=Callable[..., Any])

SPECIAL_DIGITS = [
    "",
    "#",
    "*",
    "0",
    "5",
    "9",
    "12",
    "abc",
    "1" * 100,
    "５",  # full-width five
    "١",  # Arabic-Indic one
    "²",
    "<Say>",
    "</Gather><Hangup/>",
    "&amp;",
    "&",
    "]]>",
    "\x00",
    "1\x002",
    "\x07\x1b[31m",
    "\r\n",
    " 5 ",
    "-1",
    "1e9",
]
SPECIAL_SPEECH = [
    "",
    "   ",
    "服务指南",
    "人工",
    "我胸口痛，喘不上气",
    "<speak>转人工</speak>",
    "<Dial>+8613800138000</Dial>",
    "&amp; &lt;Hangup/&gt;",
    "]]><Hangup/>",
    "a\x00b",
    "\u200b\u200b",
    "𝟓",  # mathematical bold five
    "x" * 5000,
    "按五",
    "press five",
    "repeat",
]


def with_examples(name: str, values: list[str], **fixed: str) -> Callable[[F], F]:
    """Run every value of a table as an explicit example, on top of the generated ones."""

    def decorate(test: F) -> F:
        for value in values:
            test = example(**{name: value}, **fixed)(test)
        return test

    return decorate


def new_sid() -> str:
    return f"CAhostile{next(_sids):024d}"


def prompt_texts(services: Services) -> set[str]:
    texts: set[str] = set()
    for catalogue in services.engine.flows.prompts.texts.values():
        texts.update(catalogue.values())
    return texts


def check_twiml(response: Any, services: Services) -> ET.Element:
    """200, well-formed TwiML; only TwiML verbs; every spoken text is one of our prompts."""
    assert response.status_code == 200
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML, under test
    assert root.tag == "Response"
    assert {el.tag for el in root.iter()} <= TWIML_VERBS
    known = prompt_texts(services)
    for say in root.iter("Say"):
        assert say.text in known, say.text  # the caller's words are never read back
    for gather in root.iter("Gather"):
        assert gather.attrib["action"].startswith(f"{PUBLIC_BASE_URL}/twilio/voice/input?step=")
    return root


def moves_on_or_reasks(root: ET.Element) -> None:
    """Either a question (Gather) or the caller is put through to a person."""
    assert root.find("Gather") is not None or root.find("Enqueue") is not None
    assert root.find("Dial") is None  # the busy fallback means something broke


def step_rows(services: Services) -> int:
    with services.db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(CallStep)) or 0)


def _input_round(twilio: TwilioSigner, services: Services, form: dict[str, str]) -> None:
    sid = new_sid()
    first = twilio.post("/twilio/voice", {"CallSid": sid, "From": CALLER, "To": HOTLINE})
    check_twiml(first, services)
    before = step_rows(services)
    response = twilio.post("/twilio/voice/input?step=0", {"CallSid": sid, **form})
    root = check_twiml(response, services)
    moves_on_or_reasks(root)
    assert step_rows(services) == before + 1  # the answer was recorded as one step


@HYPOTHESIS
@with_examples("digits", SPECIAL_DIGITS)
@given(
    digits=st.one_of(
        st.sampled_from(SPECIAL_DIGITS),
        st.text(max_size=120),
        st.text(alphabet="0123456789*#", min_size=1, max_size=100),
    )
)
def test_any_digits_value(twilio: TwilioSigner, services: Services, digits: str) -> None:
    _input_round(twilio, services, {"Digits": digits})


@HYPOTHESIS
@with_examples("speech", SPECIAL_SPEECH, confidence="0.5")
@given(
    speech=st.one_of(st.sampled_from(SPECIAL_SPEECH), st.text(max_size=400)),
    confidence=st.sampled_from(["", "0.5", "0", "1", "-1", "abc", "0,9"]),
)
def test_any_speech_result(
    twilio: TwilioSigner, services: Services, speech: str, confidence: str
) -> None:
    _input_round(twilio, services, {"SpeechResult": speech, "Confidence": confidence})


@pytest.mark.parametrize("confidence", ["nan", "inf", "-Infinity", "1e999"])
def test_a_non_finite_confidence_does_not_break_the_call(
    twilio: TwilioSigner, services: Services, confidence: str
) -> None:
    """``float()`` accepts these; the recogniser's score must still not break the step."""
    sid = new_sid()
    twilio.post("/twilio/voice", {"CallSid": sid, "From": CALLER})
    response = twilio.post(
        "/twilio/voice/input?step=0",
        {"CallSid": sid, "SpeechResult": "服务指南", "Confidence": confidence},
    )
    root = check_twiml(response, services)
    assert root.find("Gather") is not None
    assert root.find("Dial") is None
    assert step_rows(services) == 2


@HYPOTHESIS
@given(body=st.text(max_size=300))
@example(body="hello\x00world")
@example(body="<Message>hi</Message>")
def test_any_sms_body_is_stored_and_answered(
    twilio: TwilioSigner, services: Services, body: str
) -> None:
    sid = "SM" + new_sid()[2:]
    response = twilio.post("/twilio/sms", {"MessageSid": sid, "From": CALLER, "Body": body})
    assert response.status_code == 200
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML, under test
    assert root.tag == "Response"
    assert {el.tag for el in root.iter()} <= {"Response", "Message"}
    with services.db.sessions() as s:
        stored = s.scalar(select(InboundSms).where(InboundSms.provider_message_id == sid))
    assert stored is not None  # nothing a resident sends is lost


def outcome(post: Callable[[], Any]) -> int | str:
    """The HTTP status of a request, or what it crashed with (the test client re-raises)."""
    try:
        return int(post().status_code)
    except Exception as exc:  # reported in the table the test compares
        return f"crash: {type(exc).__name__}: {exc}"


MALFORMED_STEPS = ["", "abc", "-1", "1.5", "0x1", "9999999999", "²", "½"]


def test_malformed_step_is_a_client_error_not_a_crash(
    twilio: TwilioSigner, services: Services
) -> None:
    sid = new_sid()
    twilio.post("/twilio/voice", {"CallSid": sid, "From": CALLER})
    got = {
        step: outcome(
            lambda step=step: twilio.post(
                f"/twilio/voice/input?step={step}", {"CallSid": sid, "Digits": "5"}
            )
        )
        for step in MALFORMED_STEPS
    }
    assert got == dict.fromkeys(MALFORMED_STEPS, 400)


MALFORMED_DURATIONS = ["", "abc", "-3", "1.5", "²", "9" * 30]


def test_malformed_durations_do_not_crash_callbacks(
    twilio: TwilioSigner, services: Services
) -> None:
    got: dict[str, tuple[int | str, int | str, int | None]] = {}
    for value in MALFORMED_DURATIONS:
        sid = new_sid()
        twilio.post("/twilio/voice", {"CallSid": sid, "From": CALLER})
        queue = outcome(
            lambda sid=sid, value=value: twilio.post(
                "/twilio/voice/queue", {"CallSid": sid, "QueueResult": "hangup", "QueueTime": value}
            )
        )
        status = outcome(
            lambda sid=sid, value=value: twilio.post(
                "/twilio/voice/status",
                {"CallSid": sid, "CallStatus": "completed", "CallDuration": value},
            )
        )
        call = services.calls.get_call("twilio", sid)
        assert call is not None
        got[value] = (queue, status, call.duration_s)
    assert got == dict.fromkeys(MALFORMED_DURATIONS, (200, 204, None))


def test_a_long_idempotency_token_does_not_break_the_call(
    twilio: TwilioSigner, services: Services
) -> None:
    """The idempotency header is not covered by the signature; any length must be survivable."""
    sid = new_sid()
    response = twilio.post(
        "/twilio/voice",
        {"CallSid": sid, "From": CALLER},
        headers={"I-Twilio-Idempotency-Token": "t" * 300},
    )
    root = check_twiml(response, services)
    assert root.find("Gather") is not None
