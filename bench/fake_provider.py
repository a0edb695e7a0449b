"""A fake Twilio REST API with one rate limit per channel, for outbound benchmarks.

:class:`ChannelLimitedProvider` is the tests' fake Twilio (``tests/messaging/fake_provider``:
a local HTTP server that answers ``Messages.json`` and ``Calls.json`` the way Twilio does and
records every accepted request with its arrival time and outbox id) with a separate sliding
one-second window per channel: more than ``sms_per_s`` SMS segments or ``calls_per_s`` calls
accepted in the last second and the request is refused with 429 / 20429, as Twilio refuses it.
SMS count in segments, as Twilio meters a sender ("message segments per second": a Chinese
text over 70 characters is two or more segments). Every accepted request counts against its
window; refused ones do not.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from callcenter.messaging import segments  # noqa: E402
from tests.messaging.fake_provider import Answer, FakeProvider, twilio_error  # noqa: E402


def units(kind: str, body: str) -> int:
    """What one request uses of its channel's limit: an SMS's segments, or one call."""
    return segments.count(body) if kind == "sms" else 1


class ChannelLimitedProvider(FakeProvider):
    """The fake Twilio API refusing (429) what goes over ``sms_per_s`` (segments) or
    ``calls_per_s``."""

    def __init__(self, *, sms_per_s: float, calls_per_s: float) -> None:
        self.limits = {"sms": sms_per_s, "call": calls_per_s}
        self._windows: dict[str, deque[tuple[float, int]]] = {"sms": deque(), "call": deque()}
        self._limit_lock = threading.Lock()
        super().__init__(script=self._admit)

    def _admit(self, kind: str, form: dict[str, str]) -> Answer | None:
        """Accept (``None``) while the channel's last second leaves room for this request."""
        now = time.monotonic()
        need = units(kind, form.get("Body", ""))
        with self._limit_lock:
            window = self._windows[kind]
            while window and window[0][0] <= now - 1.0:
                window.popleft()
            if sum(u for _t, u in window) + need > self.limits[kind]:
                return 429, twilio_error(429, 20429, "Too Many Requests"), {}
            window.append((now, need))
        return None
