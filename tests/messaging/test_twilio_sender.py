"""TwilioSender against a local fake of Twilio's REST API: requests, error mapping, retries."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.messaging.cli import build_sender
from callcenter.messaging.outbox import Outbox
from callcenter.messaging.ports import OutgoingCall, OutgoingSms, SendError
from callcenter.telephony.twilio.rest import TwilioSender, classify
from tests.conftest import make_config

from .fake_provider import FakeProvider, twilio_error
from .helpers import PHONE, attempts, dispatcher, enqueue, row

SID = "AC" + "0" * 32


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def _sender(provider: FakeProvider, **kw: object) -> TwilioSender:
    args: dict[str, object] = {"api_base_url": provider.url, "sms_from": "+8621000000"}
    args.update(kw)
    return TwilioSender(SID, "token", **args)  # type: ignore[arg-type]


def _sms(body: str = "你好 73915604") -> OutgoingSms:
    return OutgoingSms(
        outbox_id=7,
        to_e164=PHONE,
        body=body,
        segments=1,
        status_callback="https://hotline.example.org/twilio/sms/status?o=7",
    )


def test_sms_request_goes_to_the_configured_base_url(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        result = _sender(provider).send_sms(_sms())
    [got] = provider.received
    assert got.kind == "sms"
    assert got.form["To"] == PHONE
    assert got.form["From"] == "+8621000000"
    assert got.form["Body"] == "你好 73915604"
    assert got.form["StatusCallback"] == "https://hotline.example.org/twilio/sms/status?o=7"
    assert "MessagingServiceSid" not in got.form
    assert got.outbox_id == 7
    assert provider.auth_headers[0].startswith("Basic ")
    assert result.provider == "twilio"
    assert result.provider_id == got.sid
    assert result.status == "queued"
    assert "73915604" not in caplog.text


def test_messaging_service_replaces_from(provider: FakeProvider) -> None:
    _sender(provider, sms_from=None, messaging_service_sid="MG" + "1" * 32).send_sms(_sms())
    [got] = provider.received
    assert got.form["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in got.form


def test_call_request(provider: FakeProvider) -> None:
    result = _sender(provider, call_from="+8621000001").place_call(
        OutgoingCall(
            outbox_id=9,
            to_e164=PHONE,
            answer_url="https://hotline.example.org/twilio/voice/outbound?o=9",
            status_callback="https://hotline.example.org/twilio/voice/status?o=9",
            ring_timeout_s=25,
        )
    )
    [got] = provider.received
    assert got.kind == "call"
    assert got.form["Url"] == "https://hotline.example.org/twilio/voice/outbound?o=9"
    assert got.form["From"] == "+8621000001"
    assert got.form["Timeout"] == "25"
    assert result.provider_id.startswith("CA")


# (HTTP status, Twilio code) -> permanent?
ERROR_TABLE = [
    (400, 21211, True),  # invalid 'To' number
    (400, 21610, True),  # unsubscribed (STOP)
    (400, 30006, True),  # landline
    (400, 21614, True),  # not a mobile number
    (400, 21408, True),  # region not enabled
    (400, 21612, True),  # cannot route
    (400, 21617, True),  # body too long
    (400, 99999, True),  # any other 4xx request error
    (429, 20429, False),  # too many requests
    (429, 0, False),
    (500, 20500, False),
    (503, 20503, False),
    (502, 0, False),
    (401, 20003, False),  # credentials: an operator fixes them, the retries then work
    (404, 20404, False),
]


@pytest.mark.parametrize(("status", "code", "permanent"), ERROR_TABLE)
def test_error_table(status: int, code: int, permanent: bool) -> None:
    def script(_kind: str, _form: dict[str, str]) -> tuple[int, dict, dict]:
        return status, twilio_error(status, code, f"refused {PHONE}"), {"Retry-After": "7"}

    with FakeProvider(script=script) as fake, pytest.raises(SendError) as caught:
        _sender(fake).send_sms(_sms())
    err = caught.value
    assert err.permanent is permanent
    assert err.code == str(code or status)
    assert PHONE not in str(err)
    assert err.retry_after_s == (None if permanent else 7.0)
    assert classify(status, code) is permanent


def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = TwilioSender(SID, "t", api_base_url=f"http://127.0.0.1:{port}", sms_from="+862100")
    with pytest.raises(SendError) as caught:
        sender.send_sms(_sms())
    assert (caught.value.permanent, caught.value.code) == (False, "connection")


def test_timeout_is_transient() -> None:
    with FakeProvider(latency_s=0.5) as slow, pytest.raises(SendError) as caught:
        _sender(slow, timeout_s=0.1).send_sms(_sms())
    assert (caught.value.permanent, caught.value.code) == (False, "timeout")


@pytest.mark.parametrize(("status", "code", "permanent"), ERROR_TABLE)
def test_dispatcher_retries_or_fails_by_the_table(
    config: Config,
    outbox: Outbox,
    msg_db: Database,
    clock: FakeClock,
    status: int,
    code: int,
    permanent: bool,
) -> None:
    """End to end: the provider refuses once; transient errors are retried, permanent not."""
    refused: list[int] = []

    def script(_kind: str, _form: dict[str, str]) -> tuple[int, dict, dict] | None:
        if refused:
            return None
        refused.append(1)
        return status, twilio_error(status, code, "refused"), {}

    with FakeProvider(script=script) as fake:
        oid = enqueue(outbox, msg_db, clock.now(), "t1")
        d = dispatcher(config, outbox, _sender(fake), clock)
        d.drain()
        r = row(msg_db, oid)
        if permanent:
            assert r.status == "failed"
            assert r.last_error_code == str(code)
            assert [a.result for a in attempts(msg_db, oid)] == ["permanent"]
            return
        assert r.status == "pending"
        assert r.not_before is not None
        clock.set(r.not_before)
        d.drain()
        assert row(msg_db, oid).status == "queued"
        assert [a.result for a in attempts(msg_db, oid)] == ["transient", "accepted"]
        assert len(fake.received) == 1


def test_build_sender(tmp_path) -> None:
    from callcenter.config import ConfigError

    local = make_config("sqlite://", tmp_path)
    assert build_sender(local).name == "local"
    twilio = make_config("sqlite://", tmp_path, messaging={"sender": "twilio"})
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        build_sender(twilio)
