"""Contract tests: every Twilio REST call the hotline makes, checked by Prism against Twilio's
official OpenAPI description (``tests/contract/twilio_oai/twilio_api_v2010.json``).

The real :class:`~callcenter.telephony.twilio.rest.TwilioSender` (the official ``twilio``
client underneath) is pointed at Prism through ``api_base_url``, exactly as production points
it at api.twilio.com. Prism answers a valid request with the spec's example resource and
refuses an invalid one (``--errors``); the last tests prove that it does refuse.
"""

from __future__ import annotations

from typing import cast

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from callcenter.messaging.ports import OutgoingCall, OutgoingSms, SendError
from callcenter.telephony.twilio.rest import TwilioSender
from tests.contract.conftest import Prism

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "contract-test-token"
MESSAGING_SERVICE_SID = "MG" + "fedcba9876543210" * 2
SMS_FROM = "+15005550006"
CALL_FROM = "+862162345678"
PATIENT = "+8613800138000"
PUBLIC = "https://hotline.example.org"
BODY = (
    "【健康热线】您已预约瑞金医院心内科，11月27日上午，就诊号0012。\n"
    "Health Hotline: booked at Ruijin Hospital, cardiology, 27 Nov morning, visit no. 0012."
)


def sender(prism: Prism, **kwargs: str) -> TwilioSender:
    """The production sender, talking to Prism."""
    options = {"sms_from": SMS_FROM, "call_from": CALL_FROM, **kwargs}
    return TwilioSender(ACCOUNT_SID, AUTH_TOKEN, api_base_url=prism.base_url, **options)


def messages_url(prism: Prism) -> str:
    return f"{prism.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def calls_url(prism: Prism) -> str:
    return f"{prism.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


# ---------------------------------------------------------------- what we send is accepted


def test_sms_from_a_number_is_accepted(prism: Prism) -> None:
    result = sender(prism).send_sms(
        OutgoingSms(
            outbox_id=7,
            to_e164=PATIENT,
            body=BODY,
            segments=3,
            status_callback=f"{PUBLIC}/twilio/sms/status?o=7",
        )
    )
    assert result.provider == "twilio"
    assert result.provider_id.startswith("SM")
    assert len(result.provider_id) == 34
    assert result.status


def test_sms_through_a_messaging_service_is_accepted(prism: Prism) -> None:
    result = sender(prism, messaging_service_sid=MESSAGING_SERVICE_SID).send_sms(
        OutgoingSms(outbox_id=8, to_e164=PATIENT, body=BODY, segments=3)
    )
    assert result.provider_id.startswith("SM")


def test_sms_without_status_callback_is_accepted(prism: Prism) -> None:
    result = sender(prism).send_sms(
        OutgoingSms(outbox_id=9, to_e164=PATIENT, body="hello", segments=1)
    )
    assert result.provider_id.startswith("SM")


def test_call_is_accepted(prism: Prism) -> None:
    result = sender(prism).place_call(
        OutgoingCall(
            outbox_id=10,
            to_e164=PATIENT,
            answer_url=f"{PUBLIC}/twilio/voice/outbound?o=10",
            status_callback=f"{PUBLIC}/twilio/voice/status?o=10",
            ring_timeout_s=30,
        )
    )
    assert result.provider == "twilio"
    assert result.provider_id.startswith("CA")
    assert len(result.provider_id) == 34


def test_call_without_status_callback_is_accepted(prism: Prism) -> None:
    result = sender(prism).place_call(
        OutgoingCall(outbox_id=11, to_e164=PATIENT, answer_url=f"{PUBLIC}/twilio/voice/outbound")
    )
    assert result.provider_id.startswith("CA")


@pytest.mark.parametrize(
    "events",
    [["completed"], ["initiated", "ringing", "answered", "completed"]],
    ids=["one", "many"],
)
def test_array_fields_accept_one_or_many_values(prism: Prism, events: list[str]) -> None:
    """The widened spec: a repeated form key, or the same key once."""
    call = sender(prism).client.calls.create(
        to=PATIENT,
        from_=CALL_FROM,
        url=f"{PUBLIC}/twilio/voice/outbound",
        status_callback=f"{PUBLIC}/twilio/voice/status",
        status_callback_event=events,
    )
    assert str(call.sid).startswith("CA")


# ---------------------------------------------------------------- Prism really validates


def test_prism_refuses_a_message_without_to(prism: Prism) -> None:
    response = requests.post(
        messages_url(prism),
        data={"From": SMS_FROM, "Body": "hello"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert response.status_code == 422, response.text
    assert "To" in response.text


def test_prism_refuses_a_call_without_from(prism: Prism) -> None:
    response = requests.post(
        calls_url(prism),
        data={"To": PATIENT, "Url": f"{PUBLIC}/twilio/voice/outbound"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert response.status_code == 422, response.text
    assert "From" in response.text


def test_prism_refuses_a_wrongly_typed_field(prism: Prism) -> None:
    response = requests.post(
        calls_url(prism),
        data={"To": PATIENT, "From": CALL_FROM, "Url": f"{PUBLIC}/x", "Timeout": "soon"},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert response.status_code == 422, response.text


def test_prism_refuses_a_request_without_credentials(prism: Prism) -> None:
    response = requests.post(
        messages_url(prism), data={"To": PATIENT, "From": SMS_FROM, "Body": "hi"}, timeout=10
    )
    assert response.status_code == 401, response.text


def test_the_twilio_client_sees_the_refusal(prism: Prism) -> None:
    client = sender(prism).client
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to=None, from_=SMS_FROM, body="hello")
    assert refused.value.status == 422


def test_the_sender_reports_a_refused_message_as_permanent(prism: Prism) -> None:
    missing_to = OutgoingSms(outbox_id=12, to_e164=cast(str, None), body="hello", segments=1)
    with pytest.raises(SendError) as refused:
        sender(prism).send_sms(missing_to)
    assert refused.value.permanent
    assert refused.value.code == "422"
