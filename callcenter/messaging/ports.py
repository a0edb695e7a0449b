"""The sender port: how the outbox dispatcher hands a message to a provider.

Adapters (Twilio REST in :mod:`callcenter.telephony.twilio.rest`, the simulator's local
sender, test fakes) implement :class:`Sender`. They raise :class:`SendError` for a refusal and
say whether trying again can help; anything else they raise is treated as transient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutgoingSms:
    """One text message, rendered and ready to hand over."""

    outbox_id: int
    to_e164: str
    body: str
    segments: int
    #: URL the provider posts delivery statuses to (``None``: no callbacks).
    status_callback: str | None = None


@dataclass(frozen=True)
class OutgoingCall:
    """One outbound voice call; the provider fetches what to play from ``answer_url``."""

    outbox_id: int
    to_e164: str
    answer_url: str
    status_callback: str | None = None
    #: seconds to let the phone ring before giving up
    ring_timeout_s: int = 30


@dataclass(frozen=True)
class SendResult:
    """The provider accepted the message: its id and first status (``queued``, ``sent``...)."""

    provider: str
    provider_id: str
    status: str


class SendError(Exception):
    """The provider refused or could not be reached.

    ``permanent`` refusals (invalid number, unsubscribed recipient, landline) are never
    retried; transient ones (5xx, timeouts, rate limiting) are, with backoff.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        permanent: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class Sender(Protocol):
    """A provider that sends SMS and places calls."""

    name: str

    def send_sms(self, message: OutgoingSms) -> SendResult:
        """Hand one SMS to the provider; raise :class:`SendError` on refusal."""
        ...

    def place_call(self, call: OutgoingCall) -> SendResult:
        """Start one outbound call; raise :class:`SendError` on refusal."""
        ...
