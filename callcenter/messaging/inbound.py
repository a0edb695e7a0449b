"""Inbound SMS and SMS delivery statuses: recorded, never lost, acted on once.

Every message a resident sends is stored (``sms_inbound``, unique on the provider's message
id) and then, in the same transaction:

* an **opt-out** keyword (TD, 退订, STOP... see :mod:`.keywords`) records the number in
  ``sms_opt_outs``; the dispatcher checks that table when it sends, so non-essential messages
  to the number stop at once (essential ones, such as a booking's visit password, still go);
* a **re-subscribe** keyword (订阅, START...) removes the number from ``sms_opt_outs``;
* a **numbered answer** (``1``, ``２。``) goes to the handler of the latest question sent to
  that number whose reply window is open (see :mod:`.replies`);
* anything else gets a polite "we cannot read texts, please call".

Opt-outs and re-subscriptions write an audit row (``sms.opt_out`` / ``sms.opt_in``, subject
the phone number); a handled answer writes ``sms.reply`` (or ``sms.reply_failed``, subject
the inbound message), which holds the reply text so that a retried webhook gets the same answer
without the handler running again. Twilio answers its own keywords (STOP, START...), so
those get no reply from the hotline; TD / 退订 / 订阅 get a short zh-CN + English confirmation.

Delivery statuses are recorded once each in ``provider_status`` and passed on to the outbox,
whose message status only moves forward.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..clock import Clock
from ..db.engine import Database, retry_once
from ..db.models import AuditEntry, InboundSms, ProviderStatus, SmsOptOut
from ..db.sql import insert_ignore, inserted
from ..phone import mask, normalize_caller_id
from . import keywords
from .outbox import Outbox
from .replies import ReplyHandlers, awaiting_answer

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 1600
#: The audit trail's actor for what a resident did by text message.
ACTOR = "resident:sms"

REPLY_ZH = "【健康热线】您好，本号码暂不处理短信回复。如需帮助请拨打健康热线。"
REPLY_EN = "Health Hotline: we cannot read text replies yet. Please call the hotline for help."
POLITE_REPLY = f"{REPLY_ZH}\n{REPLY_EN}"
OPT_OUT_REPLY = (
    "【健康热线】您已退订提醒短信，预约验证码等必要短信仍会发送。回复“订阅”可恢复。\n"
    "Health Hotline: you will get no more reminder texts; essential ones such as booking "
    "codes still come. Reply START to subscribe again."
)
OPT_IN_REPLY = (
    "【健康热线】您已恢复接收提醒短信，回复TD可退订。\n"
    "Health Hotline: reminder texts are on again. Reply TD to unsubscribe."
)
REPLY_FAILED = (
    "【健康热线】抱歉，您的回复暂时无法处理，请拨打健康热线。\n"
    "Health Hotline: sorry, we could not process your reply. Please call the hotline."
)

inbound_t = cast(Table, InboundSms.__table__)
opt_outs_t = cast(Table, SmsOptOut.__table__)


@dataclass(frozen=True)
class Received:
    """What became of one inbound message: ``kind`` for logs, ``reply`` to send (or not)."""

    kind: str
    reply: str | None
    duplicate: bool = False


def clean_body(body: str | None) -> str:
    """The body as stored: at most :data:`MAX_BODY_CHARS`, NUL replaced (PostgreSQL text)."""
    return (body or "")[:MAX_BODY_CHARS].replace("\x00", "\ufffd")


def _keyword_reply(found: keywords.Keyword) -> str | None:
    if found.provider_answers:
        return None
    return OPT_OUT_REPLY if found.kind == "opt_out" else OPT_IN_REPLY


class InboundSmsService:
    """Records inbound messages and provider statuses (idempotently) and acts on them.

    ``replies`` holds the handlers numbered answers are routed to (none: every answer gets
    the polite reply); ``outbox`` receives delivery statuses (none: they are only recorded).
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        default_region: str = "CN",
        *,
        replies: ReplyHandlers | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.default_region = default_region
        self.replies = replies if replies is not None else ReplyHandlers()
        self.outbox = outbox

    # ------------------------------------------------------------------ inbound messages

    def receive(
        self,
        *,
        provider: str,
        message_id: str,
        sender: str | None,
        recipient: str | None,
        body: str,
    ) -> str | None:
        """Store an inbound SMS and act on it; return the reply text (``None``: no reply).

        Idempotent on ``message_id``: a repeated webhook stores nothing, changes nothing and
        gets the same reply as the first.
        """
        text = clean_body(body)
        sender_e164 = normalize_caller_id(sender, self.default_region)
        recipient_e164 = normalize_caller_id(recipient, self.default_region)

        def work() -> Received:
            with self.db.transaction() as s:
                return self._receive(
                    s, provider, message_id, sender_e164, recipient_e164, text, self.clock.now()
                )

        outcome = retry_once(work)
        log.info(
            "sms %s from %s: %s%s",
            message_id,
            mask(sender_e164),
            outcome.kind,
            " (repeat)" if outcome.duplicate else "",
        )
        return outcome.reply

    def _receive(
        self,
        s: Session,
        provider: str,
        message_id: str,
        sender_e164: str | None,
        recipient_e164: str | None,
        text: str,
        now: datetime,
    ) -> Received:
        stored = s.execute(
            insert_ignore(s.connection(), inbound_t)
            .values(
                provider=provider,
                provider_message_id=message_id,
                from_e164=sender_e164,
                to_e164=recipient_e164,
                body=text,
                received_at=now,
            )
            .returning(inbound_t.c.id)
        )
        if not inserted(stored):
            return self._replay(s, message_id)
        found = keywords.keyword(text)
        if sender_e164 is None:
            # No number to opt out or to match a question against.
            return Received("anonymous", None if found else POLITE_REPLY)
        if found is not None:
            if found.kind == "opt_out":
                self._opt_out(s, sender_e164, found, message_id, now)
            else:
                self._opt_in(s, sender_e164, found, message_id, now)
            return Received(found.kind, _keyword_reply(found))
        picked = keywords.choice(text)
        if picked is not None:
            answered = self._answer(s, sender_e164, picked, message_id, now)
            if answered is not None:
                return answered
        return Received("other", POLITE_REPLY)

    def _replay(self, s: Session, message_id: str) -> Received:
        """The outcome of a message seen before, recomputed without side effects."""
        row = s.scalar(select(InboundSms).where(InboundSms.provider_message_id == message_id))
        if row is None:  # pragma: no cover - the conflicting row always exists
            return Received("other", POLITE_REPLY, duplicate=True)
        found = keywords.keyword(row.body)
        if row.from_e164 is None:
            return Received("anonymous", None if found else POLITE_REPLY, duplicate=True)
        if found is not None:
            return Received(found.kind, _keyword_reply(found), duplicate=True)
        handled = s.scalar(
            select(AuditEntry)
            .where(
                AuditEntry.subject_type == "sms_inbound",
                AuditEntry.subject_id == message_id,
                AuditEntry.action.in_(("sms.reply", "sms.reply_failed")),
            )
            .order_by(AuditEntry.id)
            .limit(1)
        )
        if handled is not None:
            reply = handled.detail.get("reply")
            return Received("answer", reply if isinstance(reply, str) else None, duplicate=True)
        return Received("other", POLITE_REPLY, duplicate=True)

    def _opt_out(
        self,
        s: Session,
        phone: str,
        found: keywords.Keyword,
        message_id: str,
        now: datetime,
    ) -> None:
        result = s.execute(
            insert_ignore(s.connection(), opt_outs_t)
            .values(phone_e164=phone, opted_out_at=now, keyword=found.word[:32], source="sms")
            .returning(opt_outs_t.c.phone_e164)
        )
        changed = inserted(result)
        self._audit_keyword(s, "sms.opt_out", phone, found, message_id, changed, now)

    def _opt_in(
        self,
        s: Session,
        phone: str,
        found: keywords.Keyword,
        message_id: str,
        now: datetime,
    ) -> None:
        result = s.execute(
            delete(opt_outs_t)
            .where(opt_outs_t.c.phone_e164 == phone)
            .returning(opt_outs_t.c.phone_e164)
        )
        changed = result.first() is not None
        self._audit_keyword(s, "sms.opt_in", phone, found, message_id, changed, now)

    def _audit_keyword(
        self,
        s: Session,
        action: str,
        phone: str,
        found: keywords.Keyword,
        message_id: str,
        changed: bool,
        now: datetime,
    ) -> None:
        s.add(
            AuditEntry(
                at=now,
                actor=ACTOR,
                action=action,
                subject_type="phone",
                subject_id=phone,
                reason=f"keyword {found.word}",
                detail={"message_id": message_id, "keyword": found.word, "changed": changed},
            )
        )

    def _answer(
        self, s: Session, phone: str, picked: str, message_id: str, now: datetime
    ) -> Received | None:
        """Route a numbered answer to its question's handler; ``None`` when none waits."""
        question = awaiting_answer(s, phone, now)
        if question is None or question.reply_handler is None:
            return None
        name = question.reply_handler
        handler = self.replies.get(name)
        if handler is None:
            log.warning("outbox %s names unknown reply handler %r", question.id, name)
            return None
        context: dict[str, Any] = dict(question.reply_context or {})
        action = "sms.reply"
        try:
            with s.begin_nested():
                reply = handler(s, context, picked, self.clock)
        except Exception:
            log.exception(
                "reply handler %r failed on sms %s (outbox %s)", name, message_id, question.id
            )
            action, reply = "sms.reply_failed", REPLY_FAILED
        s.add(
            AuditEntry(
                at=now,
                actor=ACTOR,
                action=action,
                subject_type="sms_inbound",
                subject_id=message_id,
                reason=f"answer {picked} to outbox {question.id}",
                detail={
                    "outbox_id": question.id,
                    "handler": name,
                    "answer": picked,
                    "reply": reply,
                },
            )
        )
        return Received("answer" if action == "sms.reply" else "answer-failed", reply)

    # ------------------------------------------------------------------ delivery statuses

    def status(
        self,
        *,
        provider: str,
        message_id: str,
        status: str,
        detail: dict[str, Any],
        error_code: str | None = None,
        outbox_id: int | None = None,
    ) -> bool:
        """Record an SMS delivery status once and move the outbox message forward.

        Returns ``False`` when this status of this message was recorded before. The outbox
        message is found by ``outbox_id`` (the ``o`` parameter of the callback URL) or by
        the provider's message id; its status never moves backwards, so statuses may arrive
        in any order and any number of times.
        """
        status = status.strip().lower()[:32]
        new = self._record_status(provider, message_id, status, detail)
        if self.outbox is not None:
            self.outbox.record_status(
                provider,
                message_id,
                status,
                error_code=error_code or None,
                outbox_id=outbox_id,
                now=self.clock.now(),
            )
        return new

    def _record_status(
        self, provider: str, message_id: str, status: str, detail: dict[str, Any]
    ) -> bool:
        try:
            with self.db.transaction() as s:
                exists = s.scalar(
                    select(ProviderStatus.id).where(
                        ProviderStatus.provider == provider,
                        ProviderStatus.kind == "sms",
                        ProviderStatus.provider_id == message_id,
                        ProviderStatus.status == status,
                    )
                )
                if exists is not None:
                    return False
                s.add(
                    ProviderStatus(
                        provider=provider,
                        kind="sms",
                        provider_id=message_id,
                        status=status,
                        detail=detail,
                        at=self.clock.now(),
                    )
                )
        except IntegrityError:
            return False
        return True
