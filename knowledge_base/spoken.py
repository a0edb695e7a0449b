"""Numbers, prices and schedules the way a person would say them on the phone.

``Decimal("12.50")`` is read "十二元五角" in Mandarin and "12 yuan 50" in English; phone numbers
are read digit by digit in groups; weekday sessions as "周一上午".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

_DIGITS = "零一二三四五六七八九"
_UNITS = ("", "十", "百", "千")
_BIG = ("", "万", "亿")
_WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SESSIONS_ZH = {"am": "上午", "pm": "下午", "evening": "夜间", "night": "夜间"}
_SESSIONS_EN = {"am": "morning", "pm": "afternoon", "evening": "evening", "night": "evening"}
#: Sessions of one day in time order.
_SESSION_ORDER = {"am": 0, "pm": 1, "evening": 2, "night": 2}


def _group_zh(n: int) -> str:
    """0 < n < 10000 in Chinese, with 零 where a place is skipped (1005 -> 一千零五)."""
    out: list[str] = []
    zero_pending = False
    for place in range(3, -1, -1):
        digit = n // 10**place % 10
        if digit == 0:
            if out:
                zero_pending = True
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        out.append(_DIGITS[digit] + _UNITS[place])
    return "".join(out)


def integer_zh(n: int) -> str:
    """A whole number in Chinese (12 -> 十二, 105 -> 一百零五, 20000 -> 两万 is read 二万)."""
    if n < 0:
        return "负" + integer_zh(-n)
    if n == 0:
        return "零"
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    if len(groups) > len(_BIG):
        raise ValueError("number too large to read aloud")
    parts: list[str] = []
    need_zero = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            need_zero = bool(parts)
            continue
        if parts and (need_zero or group < 1000):
            parts.append("零")
        parts.append(_group_zh(group) + _BIG[index])
        need_zero = False
    text = "".join(parts)
    # 一十二 is read 十二 at the start of a number.
    return text[1:] if text.startswith("一十") else text


def _money(amount: Decimal | str) -> tuple[int, int, int]:
    try:
        value = Decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError):
        raise ValueError(f"not an amount of money: {amount!r}") from None
    if value < 0:
        raise ValueError("a price cannot be negative")
    cents = int(value * 100)
    return cents // 100, cents // 10 % 10, cents % 10


def price_zh(amount: Decimal | str) -> str:
    """Read a price in yuan: 12.50 -> 十二元五角, 12.05 -> 十二元零五分, 0.5 -> 五角."""
    yuan, jiao, fen = _money(amount)
    parts: list[str] = []
    if yuan:
        parts.append(integer_zh(yuan) + "元")
    if jiao:
        parts.append(_DIGITS[jiao] + "角")
    if fen:
        if yuan and not jiao:
            parts.append("零")
        parts.append(_DIGITS[fen] + "分")
    if not parts:
        return "零元"
    if yuan and not jiao and not fen:
        parts.append("整")
    return "".join(parts)


def price_en(amount: Decimal | str) -> str:
    """Read a price in English: 12.50 -> "12 yuan 50", 8.00 -> "8 yuan", 0.50 -> "50 fen"."""
    yuan, jiao, fen = _money(amount)
    cents = jiao * 10 + fen
    if yuan and cents:
        return f"{yuan} yuan {cents:02d}"
    if yuan:
        return f"{yuan} yuan"
    return f"{cents} fen"


def price(amount: Decimal | str, language: str) -> str:
    """A price read aloud in ``language``."""
    return price_en(amount) if language == "en" else price_zh(amount)


def phone_digits(number: str, language: str) -> str:
    """A phone number read digit by digit, in groups of up to four (一 as 幺 in Mandarin)."""
    digits = "".join(ch for ch in number if ch.isascii() and ch.isdigit())
    if number.strip().startswith("+86"):
        digits = "0" + digits[2:]
    groups = [digits[max(0, i - 4) : i] for i in range(len(digits), 0, -4)][::-1]
    if language == "en":
        return ", ".join(" ".join(g) for g in groups)
    return "，".join("".join("幺" if d == "1" else _DIGITS[int(d)] for d in g) for g in groups)


def schedule(slots: Iterable[Mapping[str, object]], language: str) -> str:
    """Clinic sessions such as [{weekday: 1, session: am}] -> 周一上午 / Monday morning."""
    said: list[str] = []

    def when(slot: Mapping[str, object]) -> tuple[int, int]:
        day = str(slot.get("weekday", 0))
        return (int(day) if day.isdigit() else 0, _SESSION_ORDER.get(str(slot.get("session")), 3))

    for slot in sorted(slots, key=when):
        day = when(slot)[0]
        session = str(slot.get("session", ""))
        if not 1 <= day <= 7:
            continue
        if language == "en":
            said.append(f"{_WEEKDAYS_EN[day - 1]} {_SESSIONS_EN.get(session, session)}".strip())
        else:
            said.append(_WEEKDAYS_ZH[day - 1] + _SESSIONS_ZH.get(session, ""))
    return ", ".join(said) if language == "en" else "、".join(said)
