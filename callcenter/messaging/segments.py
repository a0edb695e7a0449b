"""How many parts (segments) an SMS takes, and where a long one is split.

Text that fits the GSM 03.38 alphabet is sent as GSM-7: 160 septets in a single message,
153 per part when split (7 go to the concatenation header). Characters of the GSM extension
table (``^ { } \\ [ ] ~ | €`` and form feed) take two septets and are never split from
their escape. Anything else (Chinese, emoji, curly quotes...) makes the whole message UCS-2:
70 UTF-16 code units single, 67 per part, and a surrogate pair (an emoji) is never split.

Providers bill and rate-limit by segment, so the dispatcher reserves one rate-limit unit per
segment. (Twilio's optional "smart encoding", which may replace curly quotes with straight
ones, can only lower the count; it is not assumed.)
"""

from __future__ import annotations

from typing import Literal

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[]~|€\f")

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


def encoding(text: str) -> Encoding:
    """``GSM-7`` when every character is in the GSM alphabet (with extensions), else ``UCS-2``."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text):
        return "GSM-7"
    return "UCS-2"


def _units(ch: str, enc: Encoding) -> int:
    if enc == "GSM-7":
        return 2 if ch in GSM_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def length(text: str) -> int:
    """The message length in its encoding's units (septets, or UTF-16 code units)."""
    enc = encoding(text)
    return sum(_units(ch, enc) for ch in text)


def split(text: str) -> list[str]:
    """The parts ``text`` is sent as (one part for a short or empty message)."""
    enc = encoding(text)
    single, part = (GSM_SINGLE, GSM_PART) if enc == "GSM-7" else (UCS2_SINGLE, UCS2_PART)
    if length(text) <= single:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        size = _units(ch, enc)
        if used + size > part:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += size
    if current:
        parts.append("".join(current))
    return parts


def count(text: str) -> int:
    """How many segments ``text`` takes."""
    return len(split(text))
