"""The ``local`` sender: for the demo and the simulator, nothing leaves the machine.

Every message is accepted at once with a provider id ``LOCAL...`` and reported
``delivered``. The log says who it was for (masked) and how many segments, never the text.
"""

from __future__ import annotations

import logging
import uuid

from ..phone import mask
from .ports import OutgoingCall, OutgoingSms, SendResult

log = logging.getLogger(__name__)


class LocalSender:
    """A :class:`~callcenter.messaging.ports.Sender` that accepts everything and sends nothing."""

    name = "local"

    def send_sms(self, message: OutgoingSms) -> SendResult:
        """Accept an SMS; log it masked, without its body."""
        sid = "LOCALSM" + uuid.uuid4().hex
        log.info(
            "sms to %s (%d segment%s) as %s",
            mask(message.to_e164),
            message.segments,
            "" if message.segments == 1 else "s",
            sid,
        )
        return SendResult(provider=self.name, provider_id=sid, status="delivered")

    def place_call(self, call: OutgoingCall) -> SendResult:
        """Accept a call; log it masked."""
        sid = "LOCALCA" + uuid.uuid4().hex
        log.info("call to %s as %s", mask(call.to_e164), sid)
        return SendResult(provider=self.name, provider_id=sid, status="completed")
