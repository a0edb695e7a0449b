"""Twilio REST: the outbox dispatcher's sender for SMS and outbound calls.

A thin adapter over the official ``twilio`` client. Every request goes to the configured API
base URL (``twilio.api_base_url``: Twilio itself, or a local mock such as Prism): the client's
``api`` domain is given that base URL on this client instance only. Errors become
:class:`~callcenter.messaging.ports.SendError`, permanent or transient by the table below;
the request body (which may hold a visit password) is never logged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ...logs import mask_text
from ...messaging.ports import OutgoingCall, OutgoingSms, SendError, SendResult

log = logging.getLogger(__name__)
# The twilio library logs every request and response header at INFO; keep that quiet.
_http_log = logging.getLogger(__name__ + ".http")
_http_log.setLevel(logging.WARNING)

#: Twilio error codes that no retry can fix (the recipient or the request is the problem).
PERMANENT_CODES: dict[int, str] = {
    13223: "invalid phone number format",
    13224: "invalid phone number",
    13225: "forbidden phone number",
    13226: "invalid country code",
    13227: "no international authorization",
    21201: "no called number",
    21210: "caller phone number not verified",
    21211: "invalid 'To' phone number",
    21212: "invalid 'From' phone number",
    21213: "'From' number required",
    21214: "'To' number cannot be reached",
    21215: "geographic permission for the call not enabled",
    21216: "call blocked by Twilio",
    21217: "phone number does not appear valid",
    21401: "invalid phone number",
    21402: "invalid URL",
    21407: "this phone number type does not support SMS or MMS",
    21408: "permission to send to this region is not enabled",
    21421: "phone number is invalid",
    21601: "phone number is not a valid SMS-capable number",
    21602: "message body is required",
    21603: "'From' phone number is required",
    21604: "'To' phone number is required",
    21606: "the 'From' number is not a valid message-capable number",
    21608: "unverified number on a trial account",
    21610: "recipient unsubscribed (replied STOP)",
    21612: "cannot route to this number",
    21614: "'To' number is not a valid mobile number",
    21617: "message body exceeds 1600 characters",
    21635: "'To' number cannot receive MMS",
    21659: "'From' is not a Twilio number",
    21660: "mismatch between 'From' and account",
    21703: "messaging service has no phone numbers",
    30003: "unreachable destination handset",
    30004: "message blocked",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "filtered as spam by the carrier",
}
#: Codes that are worth retrying later (rate limits, queue overflow, provider trouble).
TRANSIENT_CODES: dict[int, str] = {
    20429: "too many requests",
    20500: "internal server error",
    20503: "service unavailable",
    30001: "queue overflow",
    30002: "account suspended",
    30008: "unknown error",
    31005: "connection error",
}


class _HttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The library's HTTP client, remembering each thread's last response headers.

    ``TwilioRestException`` drops the headers, and a 429's ``Retry-After`` lives there.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout=timeout, logger=_http_log)
        self._last = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self._last.headers = {}
        response: Response = super().request(*args, **kwargs)
        self._last.headers = dict(response.headers or {})
        return response

    def last_headers(self) -> dict[str, str]:
        """Headers of this thread's last response (empty when there was none)."""
        return dict(getattr(self._last, "headers", {}) or {})


def _retry_after(headers: dict[str, str]) -> float | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def classify(status: int | None, code: int | None) -> bool:
    """Whether a Twilio error (HTTP ``status``, Twilio ``code``) is permanent."""
    if code in PERMANENT_CODES:
        return True
    if code in TRANSIENT_CODES or status is None:
        return False
    if status == 429 or status >= 500:
        return False
    # Credentials or account trouble: an operator can fix it, then the retries succeed.
    if status in (401, 403, 404):
        return False
    return 400 <= status < 500


class TwilioSender:
    """Sends SMS and places calls through Twilio's REST API (implements the Sender port)."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        api_base_url: str,
        sms_from: str | None = None,
        messaging_service_sid: str | None = None,
        call_from: str | None = None,
        timeout_s: float = 10,
        machine_detection: str | None = "Enable",
    ) -> None:
        self.sms_from = sms_from or None
        #: Twilio answering-machine detection on every outbound call (the answer webhook
        #: then gets ``AnsweredBy``: a machine hears nothing personal); ``None`` turns it off
        self.machine_detection = machine_detection
        self.messaging_service_sid = messaging_service_sid or None
        self.call_from = call_from or None
        self._http = _HttpClient(timeout=timeout_s)
        self.client = Client(account_sid, auth_token, http_client=self._http, environment={})
        # The API domain's base URL is an attribute of this client's domain object.
        self.client.api.base_url = api_base_url.rstrip("/")

    def _error(self, exc: Exception) -> SendError:
        if isinstance(exc, TwilioException) and hasattr(exc, "status"):
            status = int(getattr(exc, "status", 0) or 0) or None
            raw_code = getattr(exc, "code", None)
            try:
                code = int(raw_code) if raw_code else None
            except (TypeError, ValueError):
                code = None
            permanent = classify(status, code)
            reason = PERMANENT_CODES.get(code or 0) or TRANSIENT_CODES.get(code or 0)
            text = getattr(exc, "msg", None) or getattr(exc, "title", None) or str(exc)
            message = f"twilio {status} {code}: {reason or mask_text(str(text))}"
            retry_after = _retry_after(self._http.last_headers()) if not permanent else None
            return SendError(
                message[:200],
                code=str(code if code is not None else status),
                permanent=permanent,
                retry_after_s=retry_after,
            )
        if isinstance(exc, requests.Timeout):
            return SendError("twilio: request timed out", code="timeout")
        if isinstance(exc, requests.ConnectionError):
            return SendError("twilio: cannot connect", code="connection")
        return SendError(f"twilio: {type(exc).__name__}", code="error")

    def send_sms(self, message: OutgoingSms) -> SendResult:
        """Create a Message resource; raise :class:`SendError` when Twilio refuses."""
        if not (self.sms_from or self.messaging_service_sid):
            raise SendError(
                "messaging.sms_from or messaging.messaging_service_sid must be set",
                code="config",
            )
        try:
            created = self.client.messages.create(
                to=message.to_e164,
                from_=None if self.messaging_service_sid else self.sms_from,
                messaging_service_sid=self.messaging_service_sid,
                body=message.body,
                status_callback=message.status_callback,
            )
        except (TwilioException, requests.RequestException) as exc:
            raise self._error(exc) from None
        return SendResult(
            provider=self.name, provider_id=str(created.sid), status=str(created.status or "queued")
        )

    def place_call(self, call: OutgoingCall) -> SendResult:
        """Create a Call resource that fetches its TwiML from ``answer_url``."""
        if not self.call_from:
            raise SendError("messaging.call_from must be set", code="config")
        try:
            created = self.client.calls.create(
                to=call.to_e164,
                from_=self.call_from,
                url=call.answer_url,
                status_callback=call.status_callback,
                timeout=call.ring_timeout_s,
                machine_detection=self.machine_detection,
            )
        except (TwilioException, requests.RequestException) as exc:
            raise self._error(exc) from None
        return SendResult(
            provider=self.name, provider_id=str(created.sid), status=str(created.status or "queued")
        )


class TwilioCallControl(TwilioSender):
    """Call control for routing on the phone (implements
    :class:`~callcenter.routing.phone.CallControl`): dial an agent, expert or callback,
    redirect a live call to new TwiML of ours, hang up a leg. Errors are
    :class:`~callcenter.messaging.ports.SendError`, as for the sender.
    """

    #: statuses of a dialled leg that Twilio reports to its status callback
    STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")

    def dial(self, to: str, answer_url: str, status_url: str, timeout_s: int) -> str:
        """Create a Call to ``to`` (E.164, ``sip:`` URI or ``client:`` name) that fetches its
        TwiML from ``answer_url``; return its sid."""
        if not self.call_from:
            raise SendError("messaging.call_from must be set", code="config")
        try:
            created = self.client.calls.create(
                to=to,
                from_=self.call_from,
                url=answer_url,
                method="POST",
                status_callback=status_url,
                status_callback_method="POST",
                status_callback_event=list(self.STATUS_EVENTS),
                timeout=timeout_s,
            )
        except (TwilioException, requests.RequestException) as exc:
            raise self._error(exc) from None
        return str(created.sid)

    def redirect(self, call_id: str, url: str) -> None:
        """Make the live call ``call_id`` fetch its next TwiML from ``url`` (a queued caller
        leaves the queue)."""
        try:
            self.client.calls(call_id).update(url=url, method="POST")
        except (TwilioException, requests.RequestException) as exc:
            raise self._error(exc) from None

    def hangup(self, call_id: str) -> None:
        """End the live call ``call_id``."""
        try:
            self.client.calls(call_id).update(status="completed")
        except (TwilioException, requests.RequestException) as exc:
            raise self._error(exc) from None
