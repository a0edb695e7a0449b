"""Answers to messages that asked a question ("回复1确认，回复2改期" / "reply 1 to confirm").

A message that expects an answer is an outbox row with ``reply_handler`` (a name registered
here), ``reply_context`` (what the handler needs: a booking id, say) and ``reply_until`` (how
long an answer counts; ``messaging.reply_window_hours`` by default). When a resident texts a
numbered answer, the most recent such row to that phone number that was actually sent and whose
window is still open gets it: its handler runs in the same database transaction that stores
the inbound message, so a retried webhook can never run it twice, and a handler that fails
rolls back its own work only (the message is kept, the resident is told to call).

Features register their handlers at start-up, in :mod:`callcenter.bootstrap`::

    handlers.register("reminder.confirm", confirm_visit)

A question must never ask for a keyword Twilio treats as an opt-out (CANCEL, STOP, END,
QUIT...): ask for digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..clock import Clock
from ..db.models import OutboxMessage

#: Outbox statuses of a question that was asked: the provider took the message and has not
#: reported it lost. ``queued`` counts: with status callbacks off (or late) a message that
#: reached the phone may never get further in the outbox.
ASKED_STATUSES = ("queued", "sending", "sent", "delivered", "read")
_NAME = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")


class ReplyHandler(Protocol):
    """Handles a numbered answer to one outbox message.

    Called with the open session (the inbound message's transaction: write with it, never
    commit), the outbox row's ``reply_context`` (a copy), the answer as ASCII digits (``"1"``
    for ``"１。"``) and the clock. Returns the text to answer with (zh-CN first, then
    English), or ``None`` to answer nothing. An exception rolls back what the handler wrote.
    """

    def __call__(
        self, session: Session, context: Mapping[str, Any], text: str, clock: Clock
    ) -> str | None:
        """Act on the answer; return the reply text or ``None``."""
        ...


class ReplyHandlers:
    """The registry of reply handlers, by name (the name stored in ``outbox.reply_handler``)."""

    def __init__(self) -> None:
        self._handlers: dict[str, ReplyHandler] = {}

    def register(self, name: str, fn: ReplyHandler) -> None:
        """Register ``fn`` under ``name``; a name can be registered once."""
        if not _NAME.match(name):
            raise ValueError(
                f"reply handler name {name!r} must be lower-case letters, digits and . _ : -"
                " (at most 64 characters, starting with a letter)"
            )
        if name in self._handlers:
            raise ValueError(f"reply handler {name!r} is already registered")
        self._handlers[name] = fn

    def get(self, name: str) -> ReplyHandler | None:
        """The handler registered as ``name``, or ``None``."""
        return self._handlers.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))

    def __len__(self) -> int:
        return len(self._handlers)


def awaiting_answer(session: Session, phone_e164: str, now: datetime) -> OutboxMessage | None:
    """The most recent message sent to ``phone_e164`` that still waits for an answer."""
    return session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.to_e164 == phone_e164,
            OutboxMessage.channel == "sms",
            OutboxMessage.reply_handler.is_not(None),
            OutboxMessage.reply_until > now,
            OutboxMessage.status.in_(ASKED_STATUSES),
        )
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()
