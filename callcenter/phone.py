"""Phone numbers: normalised to E.164 at the edge, masked everywhere they are shown or logged."""

from __future__ import annotations

import phonenumbers

#: What callers with a hidden number look like in provider webhooks.
ANONYMOUS_VALUES = frozenset({"", "anonymous", "restricted", "unknown", "private", "+266696687"})


class InvalidPhoneNumber(ValueError):
    """Raised when a string cannot be read as a valid phone number."""


def normalize(raw: str, default_region: str = "CN") -> str:
    """Return ``raw`` as an E.164 string (``+8613800138000``) or raise :class:`InvalidPhoneNumber`.

    National numbers are read in ``default_region``; a valid number is required (not merely a
    plausible one), so typos in a callback number are caught before anything is dialled.
    """
    text = (raw or "").strip()
    if len(text) > 40:
        raise InvalidPhoneNumber("phone number too long")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_caller_id(raw: str | None, default_region: str = "CN") -> str | None:
    """Normalise a caller id from a webhook; ``None`` for hidden or unusable numbers."""
    text = (raw or "").strip()
    if text.lower() in ANONYMOUS_VALUES:
        return None
    try:
        return normalize(text, default_region)
    except InvalidPhoneNumber:
        return None


def mask(e164: str | None) -> str:
    """Mask a phone number for display and logs: ``+86 138****8000`` keeps the last 4 digits."""
    if not e164:
        return "(hidden)"
    digits = "".join(ch for ch in e164 if ch.isdigit())
    if len(digits) <= 4:
        return "****"
    try:
        parsed = phonenumbers.parse(e164 if e164.startswith("+") else "+" + digits)
        national = str(parsed.national_number)
        prefix = f"+{parsed.country_code} "
    except phonenumbers.NumberParseException:
        national = digits
        prefix = ""
    keep_head = 3 if len(national) >= 10 else 0
    hidden = len(national) - keep_head - 4
    return prefix + national[:keep_head] + "*" * max(hidden, 1) + national[-4:]
