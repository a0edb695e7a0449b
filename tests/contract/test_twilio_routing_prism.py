"""Contract tests for routing on the phone: every call-control request
:class:`~callcenter.telephony.twilio.rest.TwilioCallControl` makes (dial an agent, expert or
callback; redirect a queued caller into the conference; hang up a leg), checked by Prism
against Twilio's official OpenAPI description."""

from __future__ import annotations

import pytest

from callcenter.messaging.ports import SendError
from callcenter.routing.phone import PATH_AGENT, PATH_AGENT_STATUS, PATH_JOIN, sign_url
from callcenter.telephony.twilio.rest import TwilioCallControl
from tests.contract.conftest import Prism
from tests.contract.test_twilio_prism import ACCOUNT_SID, AUTH_TOKEN, CALL_FROM, PATIENT, PUBLIC

CALL_SID = "CA" + "0123456789abcdef" * 2


def control(prism: Prism, call_from: str | None = CALL_FROM) -> TwilioCallControl:
    """The production call control, talking to Prism."""
    return TwilioCallControl(
        ACCOUNT_SID, AUTH_TOKEN, api_base_url=prism.base_url, call_from=call_from
    )


@pytest.mark.parametrize(
    "to",
    [PATIENT, "sip:agent-7@pbx.hospital.example", "client:agent-7"],
    ids=["e164", "sip", "client"],
)
def test_dialling_an_agent_is_accepted(prism: Prism, to: str) -> None:
    leg = control(prism).dial(
        to,
        sign_url(PUBLIC, PATH_AGENT, a="agent-7", c=CALL_SID),
        sign_url(PUBLIC, PATH_AGENT_STATUS, a="agent-7", c=CALL_SID),
        15,
    )
    assert leg.startswith("CA")
    assert len(leg) == 34


def test_redirecting_a_queued_caller_is_accepted(prism: Prism) -> None:
    control(prism).redirect(CALL_SID, sign_url(PUBLIC, PATH_JOIN, c=CALL_SID))


def test_hanging_up_a_leg_is_accepted(prism: Prism) -> None:
    control(prism).hangup(CALL_SID)


def test_dialling_without_a_from_number_is_refused_before_any_request(prism: Prism) -> None:
    with pytest.raises(SendError, match="call_from"):
        control(prism, call_from=None).dial(PATIENT, f"{PUBLIC}/x", f"{PUBLIC}/y", 15)


def test_prism_refuses_a_redirect_to_a_malformed_call_sid(prism: Prism) -> None:
    with pytest.raises(SendError):
        control(prism).redirect("not-a-sid", sign_url(PUBLIC, PATH_JOIN, c=CALL_SID))
