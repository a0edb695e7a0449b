"""Validators for digits collected from callers (keypad or spoken), by name for flow files."""

from __future__ import annotations

import re
from collections.abc import Callable

_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def _digits(value: str) -> bool:
    return value.isdigit()


def _cn_mobile(value: str) -> bool:
    return bool(_MOBILE.match(value))


def _date_yyyymmdd(value: str) -> bool:
    if len(value) != 8 or not value.isdigit():
        return False
    year, month, day = int(value[:4]), int(value[4:6]), int(value[6:])
    if not (1900 <= year <= 2100 and 1 <= month <= 12):
        return False
    days = [
        31,
        29 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ]
    return 1 <= day <= days[month - 1]


#: name -> predicate over a string of ASCII digits
VALIDATORS: dict[str, Callable[[str], bool]] = {
    "digits": _digits,
    "cn_mobile": _cn_mobile,
    "date_yyyymmdd": _date_yyyymmdd,
}
