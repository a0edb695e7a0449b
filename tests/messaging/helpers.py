"""Helpers for the dispatcher tests: a scriptable sender and shortcuts to enqueue and read."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.db.models import OutboxAttempt, OutboxMessage
from callcenter.messaging.dispatcher import Dispatcher
from callcenter.messaging.outbox import Outbox
from callcenter.messaging.ports import OutgoingCall, OutgoingSms, SendError, SendResult
from callcenter.messaging.templates import Templates

PHONE = "+8613800138000"

BOOKING_PARAMS = {
    "hospital": "瑞金医院",
    "department": "心内科",
    "doctor": "王医生",
    "when": "12月1日上午9:00",
    "visit_number": "0012",
    "cancel_by": "11月30日16:00",
}


@dataclass
class Sent:
    """What the fake sender was handed, and when."""

    kind: str
    outbox_id: int
    to: str
    body: str
    segments: int
    monotonic: float
    status_callback: str | None
    answer_url: str | None = None


@dataclass
class FakeSender:
    """A sender that records every message and answers from a script.

    ``script(outbox_id, attempt_no)`` may return a :class:`SendError` to raise, or ``None``
    to accept. ``hook`` runs inside the call (to simulate a status callback racing us).
    """

    name: str = "fake"
    status: str = "queued"
    script: Callable[[int, int], SendError | None] | None = None
    hook: Callable[[int, str], None] | None = None
    sent: list[Sent] = field(default_factory=list)
    calls_per_id: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _answer(self, outbox_id: int) -> SendResult:
        with self.lock:
            n = self.calls_per_id.get(outbox_id, 0) + 1
            self.calls_per_id[outbox_id] = n
        if self.script is not None:
            error = self.script(outbox_id, n)
            if error is not None:
                raise error
        sid = "SM" + uuid.uuid4().hex
        if self.hook is not None:
            self.hook(outbox_id, sid)
        return SendResult(provider=self.name, provider_id=sid, status=self.status)

    def send_sms(self, message: OutgoingSms) -> SendResult:
        now = time.monotonic()
        with self.lock:
            self.sent.append(
                Sent(
                    "sms",
                    message.outbox_id,
                    message.to_e164,
                    message.body,
                    message.segments,
                    now,
                    message.status_callback,
                )
            )
        return self._answer(message.outbox_id)

    def place_call(self, call: OutgoingCall) -> SendResult:
        now = time.monotonic()
        with self.lock:
            self.sent.append(
                Sent(
                    "call",
                    call.outbox_id,
                    call.to_e164,
                    "",
                    1,
                    now,
                    call.status_callback,
                    call.answer_url,
                )
            )
        return self._answer(call.outbox_id)


def enqueue(
    outbox: Outbox,
    db: Database,
    now: datetime,
    key: str,
    *,
    template: str = "booking_confirmed",
    params: dict[str, Any] | None = None,
    sealed: dict[str, str] | None = None,
    **kw: Any,
) -> int:
    """Enqueue one message in its own transaction; return its id."""
    args: dict[str, Any] = {
        "channel": "sms",
        "to_e164": PHONE,
        "template": template,
        "language": "zh-CN",
        "params": BOOKING_PARAMS if params is None else params,
        "dedupe_key": key,
        "now": now,
        "sealed": {"password": "73915604"} if sealed is None else sealed,
    }
    args.update(kw)
    with db.transaction() as s:
        assert outbox.enqueue(s, **args)
        return int(s.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)))


def row(db: Database, outbox_id: int) -> OutboxMessage:
    """The outbox row, fresh from the database."""
    with db.transaction() as s:
        found = s.get(OutboxMessage, outbox_id)
        assert found is not None
        return found


def attempts(db: Database, outbox_id: int) -> list[OutboxAttempt]:
    """The attempts of one message, in order."""
    with db.transaction() as s:
        return list(
            s.scalars(
                select(OutboxAttempt)
                .where(OutboxAttempt.outbox_id == outbox_id)
                .order_by(OutboxAttempt.attempt)
            )
        )


def dispatcher(config: Config, outbox: Outbox, sender: Any, clock: Any, **kw: Any) -> Dispatcher:
    """A dispatcher on a fake clock whose sleeps advance that clock."""
    kw.setdefault("sleep", clock.advance)
    kw.setdefault("worker_id", "test-worker")
    return Dispatcher(outbox, sender, Templates(config.flows_dir), clock=clock, **kw)
