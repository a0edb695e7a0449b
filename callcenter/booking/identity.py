"""Identity documents for real-name booking: Chinese resident ID numbers and passports.

A Chinese resident identity card number (居民身份证号码, GB 11643-1999) has 18 characters:
a 6-digit administrative region code, the birth date ``YYYYMMDD``, a 3-digit sequence
number and an ISO 7064 MOD 11-2 check character (``0``-``9`` or ``X``). Callers and
operators type them in many ways, so :func:`normalize_cn_id` accepts full-width digits, a
lower-case ``x`` and spaces or dashes between groups, and returns the canonical form.

Passport numbers (any country) are letters and digits, 5 to 17 characters, upper-cased.

Nothing here logs or keeps the numbers; the booking service stores only an HMAC and the
last four characters (see :mod:`callcenter.booking.service`).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from ..ivr.validators import id_check_char as check_char
from .ports import IdType

#: First two digits of region codes: provinces, autonomous regions and municipalities,
#: plus Hong Kong, Macao and Taiwan (residence permits for them use 81, 82 and 83).
PROVINCES = frozenset(
    {
        11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
        50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83,
    }
)  # fmt: skip
EARLIEST_BIRTH = date(1900, 1, 1)
_SEPARATORS = re.compile(r"[\s\-‐-―−·.]+")
_PASSPORT = re.compile(r"[A-Z0-9]{5,17}")


class InvalidIdNumber(ValueError):
    """An identity number that cannot be right; ``code`` says why (for prompts and tests)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _fold(raw: str) -> str:
    """Full-width to half-width (NFKC), separators removed, upper case."""
    text = unicodedata.normalize("NFKC", raw or "")
    return _SEPARATORS.sub("", text).upper()


def normalize_cn_id(raw: str, *, today: date | None = None) -> str:
    """Return ``raw`` as a canonical 18-character resident ID number, or raise.

    Checks the length, the characters, the province part of the region code, the birth date
    (a real calendar date from 1900, not after ``today`` when given) and the check character.
    """
    text = _fold(raw)
    if len(text) != 18:
        raise InvalidIdNumber("length", f"a resident ID number has 18 characters, not {len(text)}")
    body, last = text[:17], text[17]
    if not body.isascii() or not body.isdigit() or not (last.isdigit() or last == "X"):
        raise InvalidIdNumber("characters", "17 digits then a digit or X are expected")
    if int(body[:2]) not in PROVINCES:
        raise InvalidIdNumber("region", "the region code is not a Chinese province")
    try:
        born = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise InvalidIdNumber("birth_date", "the birth date part is not a real date") from None
    if born < EARLIEST_BIRTH or (today is not None and born > today):
        raise InvalidIdNumber("birth_date", "the birth date part is out of range")
    if check_char(body) != last:
        raise InvalidIdNumber("checksum", "the check character does not match")
    return text


def normalize_passport(raw: str) -> str:
    """Return a passport number upper-cased without spaces, or raise :class:`InvalidIdNumber`."""
    text = _fold(raw)
    if not _PASSPORT.fullmatch(text):
        raise InvalidIdNumber("passport", "a passport number is 5 to 17 letters and digits")
    return text


def normalize_id(id_type: IdType, raw: str, *, today: date | None = None) -> str:
    """Normalise an identity number of ``id_type`` (``cn_id`` or ``passport``), or raise."""
    if id_type == "cn_id":
        return normalize_cn_id(raw, today=today)
    if id_type == "passport":
        return normalize_passport(raw)
    raise InvalidIdNumber("id_type", f"unknown identity document type {id_type!r}")


_NAME_BAD = re.compile(r"[\d\x00-\x1f\x7f<>@#$%^&*=+{}\[\]|\\/;:\"]")


def normalize_name(raw: str) -> str:
    """A patient's name as given on the identity document: NFKC, single spaces, 1-50 chars.

    Letters of any script, spaces, ``·`` (as in 买买提·艾力), ``-``, ``'`` and ``.`` are
    allowed; digits and other symbols are not.
    """
    text = " ".join(unicodedata.normalize("NFKC", raw or "").split())
    text = text.replace("•", "·").replace("・", "·")
    if not text or len(text) > 50 or _NAME_BAD.search(text):
        raise InvalidIdNumber("name", "a name of 1 to 50 letters is expected")
    return text


def same_name(a: str, b: str) -> bool:
    """Whether two names are the same person's name (case, spaces and dots ignored)."""

    def key(name: str) -> str:
        return re.sub(r"[\s·.]", "", unicodedata.normalize("NFKC", name)).casefold()

    return key(a) == key(b)
