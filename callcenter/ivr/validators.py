"""Validators for digits collected from callers (keypad or spoken), by name for flow files.

A validator gets what the caller keyed (ASCII digits, and ``*`` where a validator allows it)
after :data:`NORMALIZERS` has turned keypad stand-ins into what they stand for: on a phone
keypad the ``X`` that ends some resident ID numbers is keyed as ``*``.
"""

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


#: Weights of the 17 body digits of a resident ID number (2^(17-i) mod 11).
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: Check character for each weighted sum modulo 11.
ID_CHECK_CHARS = "10X98765432"


def id_check_char(body: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID number's 17 body digits."""
    if len(body) != 17 or not body.isascii() or not body.isdigit():
        raise ValueError("the body of a resident ID number is 17 digits")
    total = sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True))
    return ID_CHECK_CHARS[total % 11]


def _cn_id(value: str) -> bool:
    """An 18-character resident ID number: real birth date, right check character (the full
    rules, province codes included, are :func:`callcenter.booking.identity.normalize_cn_id`)."""
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit():
        return False
    if not _date_yyyymmdd(value[6:14]) or value[:2] == "00":
        return False
    return id_check_char(value[:17]) == value[17]


#: name -> predicate over the (normalised) value
VALIDATORS: dict[str, Callable[[str], bool]] = {
    "digits": _digits,
    "cn_mobile": _cn_mobile,
    "date_yyyymmdd": _date_yyyymmdd,
    "cn_id": _cn_id,
}

#: name -> how keyed input becomes the value the validator checks (default: unchanged)
NORMALIZERS: dict[str, Callable[[str], str]] = {
    # The last character of an ID number may be X, keyed as *.
    "cn_id": lambda value: value[:-1] + "X" if value.endswith("*") else value,
}


def normalize(name: str, value: str) -> str:
    """``value`` as the validator ``name`` expects it."""
    convert = NORMALIZERS.get(name)
    return convert(value) if convert else value
