"""Inbound SMS and SMS delivery statuses: recorded, never lost, answered politely."""

from __future__ import annotations

import logging
import unicodedata
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..clock import Clock
from ..db.engine import Database
from ..db.models import InboundSms, ProviderStatus
from ..phone import mask, normalize_caller_id

log = logging.getLogger(__name__)

#: Words carriers and Twilio treat as "stop texting me"; Twilio answers these itself.
CARRIER_OPT_OUT = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout", "td", "退订"}
)
MAX_BODY_CHARS = 1600

REPLY_ZH = "【健康热线】您好，本号码暂不处理短信回复。如需帮助请拨打健康热线。"
REPLY_EN = "Health Hotline: we cannot read text replies yet. Please call the hotline for help."


def _keyword(body: str) -> str:
    text = unicodedata.normalize("NFKC", body).strip().lower()
    return "".join(ch for ch in text if ch.isalnum())


class InboundSmsService:
    """Records inbound messages and provider statuses (idempotently)."""

    def __init__(self, db: Database, clock: Clock, default_region: str = "CN") -> None:
        self.db = db
        self.clock = clock
        self.default_region = default_region

    def receive(
        self,
        *,
        provider: str,
        message_id: str,
        sender: str | None,
        recipient: str | None,
        body: str,
    ) -> str | None:
        """Store an inbound SMS; return the reply text (``None``: send no reply)."""
        # PostgreSQL text cannot hold NUL; keep everything else exactly as sent.
        text = (body or "")[:MAX_BODY_CHARS].replace("\x00", "\ufffd")
        sender_e164 = normalize_caller_id(sender, self.default_region)
        try:
            with self.db.transaction() as s:
                exists = s.scalar(
                    select(InboundSms.id).where(InboundSms.provider_message_id == message_id)
                )
                if exists is None:
                    s.add(
                        InboundSms(
                            provider=provider,
                            provider_message_id=message_id,
                            from_e164=sender_e164,
                            to_e164=normalize_caller_id(recipient, self.default_region),
                            body=text,
                            received_at=self.clock.now(),
                        )
                    )
        except IntegrityError:
            pass  # the same message arrived twice at once; one copy is stored
        log.info("sms %s received from %s", message_id, mask(sender_e164))
        if _keyword(text) in CARRIER_OPT_OUT:
            return None
        return f"{REPLY_ZH}\n{REPLY_EN}"

    def status(
        self, *, provider: str, message_id: str, status: str, detail: dict[str, Any]
    ) -> bool:
        """Record an SMS delivery status once; ``False`` when it was a duplicate."""
        status = status.strip().lower()[:32]
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
