"""Logging set-up with personal data masked in every record, whatever the caller forgot.

Phone numbers, Chinese resident ID numbers and long digit runs (visit numbers, PINs typed in a
URL...) are masked before a record is formatted, in the message and in its arguments.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# A Chinese resident ID: 17 digits + a digit or X. Checked before phone numbers.
_ID_NUMBER = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?!\d)")
# Phone-like: optional +, then 6+ digits possibly split by spaces or dashes (6 digits: a
# visit password or PIN).
_PHONE = re.compile(r"(?<![\w*])(\+?\d[\d \-]{4,}\d)(?!\w)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def mask_text(text: str) -> str:
    """Mask ID numbers and phone-like digit runs in ``text`` (keeps the last 4 digits)."""
    text = _ID_NUMBER.sub(lambda m: m.group(1)[:2] + "*" * 12 + m.group(2)[-4:], text)

    def _phone(match: re.Match[str]) -> str:
        raw = match.group(1)
        digits = [c for c in raw if c.isdigit()]
        if len(digits) < 6 or _DATE.fullmatch(raw.strip()):
            return raw
        if len(digits) == 6:
            return "******"
        head = "+" if raw.startswith("+") else ""
        return head + "*" * (len(digits) - 4) + "".join(digits[-4:])

    return _PHONE.sub(_phone, text)


class MaskingFilter(logging.Filter):
    """A logging filter that rewrites each record with personal data masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record's message in place; never drops a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def setup_logging(level: str = "INFO", **_: Any) -> None:
    """Configure the root logger once: masked, timestamped lines on stderr."""
    root = logging.getLogger()
    if any(isinstance(f, MaskingFilter) for h in root.handlers for f in h.filters):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root.handlers = [handler]
    root.setLevel(level)
