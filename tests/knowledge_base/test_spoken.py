"""Numbers, prices, phone numbers and clinic schedules the way the hotline says them.

Table-driven, plus a property: every price read in Mandarin reads back to the same amount.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge_base import spoken

# (amount, Mandarin, English)
PRICES = [
    ("12.50", "十二元五角", "12 yuan 50"),
    ("12.05", "十二元零五分", "12 yuan 05"),
    ("0.50", "五角", "50 fen"),
    ("0.05", "五分", "5 fen"),
    ("0.01", "一分", "1 fen"),
    ("128.00", "一百二十八元整", "128 yuan"),
    ("10", "十元整", "10 yuan"),
    ("15.80", "十五元八角", "15 yuan 80"),
    ("100.10", "一百元一角", "100 yuan 10"),
    ("1005.5", "一千零五元五角", "1005 yuan 50"),
    ("1010.01", "一千零一十元零一分", "1010 yuan 01"),
    ("100010", "十万零一十元整", "100010 yuan"),
    ("99999.99", "九万九千九百九十九元九角九分", "99999 yuan 99"),
]


@pytest.mark.parametrize(("amount", "zh", "en"), PRICES, ids=[p[0] for p in PRICES])
def test_price_read_aloud(amount: str, zh: str, en: str) -> None:
    assert spoken.price_zh(amount) == zh
    assert spoken.price_zh(Decimal(amount)) == zh
    assert spoken.price_en(Decimal(amount)) == en
    assert spoken.price(Decimal(amount), "zh-CN") == zh
    assert spoken.price(Decimal(amount), "en") == en


def test_half_a_fen_rounds_half_up() -> None:
    assert spoken.price_zh(Decimal("12.345")) == "十二元三角五分"
    assert spoken.price_en(Decimal("0.994")) == "99 fen"


@pytest.mark.parametrize("bad", ["-1", "-0.01", "abc", "", "NaN-ish"])
def test_not_a_price_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match=r"amount of money|negative"):
        spoken.price_zh(bad)
    with pytest.raises(ValueError, match=r"amount of money|negative"):
        spoken.price_en(bad)


INTEGERS = [
    (0, "零"),
    (7, "七"),
    (10, "十"),
    (12, "十二"),
    (20, "二十"),
    (105, "一百零五"),
    (110, "一百一十"),
    (1005, "一千零五"),
    (1010, "一千零一十"),
    (10010, "一万零一十"),
    (100010, "十万零一十"),
    (1001000, "一百万一千"),
    (100000001, "一亿零一"),
    (100001000, "一亿零一千"),
    (-5, "负五"),
]


@pytest.mark.parametrize(("n", "zh"), INTEGERS, ids=[str(n) for n, _ in INTEGERS])
def test_integer_zh(n: int, zh: str) -> None:
    assert spoken.integer_zh(n) == zh


def test_integer_too_large_to_read_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too large"):
        spoken.integer_zh(10**12)


PHONES = [
    ("+86 21 5550 0101", "零二幺，五五五零，零幺零幺", "0 2 1, 5 5 5 0, 0 1 0 1"),
    ("021-5550 0108", "零二幺，五五五零，零幺零八", "0 2 1, 5 5 5 0, 0 1 0 8"),
    ("120", "幺二零", "1 2 0"),
    ("12320", "幺，二三二零", "1, 2 3 2 0"),
]


@pytest.mark.parametrize(("number", "zh", "en"), PHONES, ids=[p[0] for p in PHONES])
def test_phone_digits_in_groups(number: str, zh: str, en: str) -> None:
    assert spoken.phone_digits(number, "zh-CN") == zh
    assert spoken.phone_digits(number, "en") == en


SCHEDULES = [
    ([{"weekday": 1, "session": "am"}], "周一上午", "Monday morning"),
    (
        [{"weekday": 3, "session": "pm"}, {"weekday": 1, "session": "am"}],
        "周一上午、周三下午",
        "Monday morning, Wednesday afternoon",
    ),
    (
        [{"weekday": 7, "session": "pm"}, {"weekday": 7, "session": "am"}],
        "周日上午、周日下午",
        "Sunday morning, Sunday afternoon",
    ),
    # days outside Monday (1) .. Sunday (7) are never read out
    ([{"weekday": 0, "session": "am"}, {"weekday": 8, "session": "pm"}], "", ""),
    ([], "", ""),
]


@pytest.mark.parametrize(("slots", "zh", "en"), SCHEDULES)
def test_schedule(slots: list[dict[str, object]], zh: str, en: str) -> None:
    assert spoken.schedule(slots, "zh-CN") == zh
    assert spoken.schedule(slots, "en") == en


def test_evening_clinic_is_read_as_evening() -> None:
    # The import format (and the Expert model) name the sessions am / pm / evening: an
    # evening clinic must be said as one, not as the bare day.
    said = spoken.schedule([{"weekday": 2, "session": "evening"}], "zh-CN")
    assert said in ("周二晚上", "周二夜间")
    assert spoken.schedule([{"weekday": 2, "session": "evening"}], "en") == "Tuesday evening"


def test_sessions_of_one_day_are_read_in_time_order() -> None:
    slots = [
        {"weekday": 1, "session": "evening"},
        {"weekday": 1, "session": "pm"},
        {"weekday": 1, "session": "am"},
    ]
    assert spoken.schedule(slots, "en") == "Monday morning, Monday afternoon, Monday evening"


# ---------------------------------------------------------------- property: reads back

_DIGIT = {d: i for i, d in enumerate("零一二三四五六七八九")}
_SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
_BIG_UNITS = {"万": 10_000, "亿": 100_000_000}
_PRICE_SHAPE = re.compile(
    r"^(?:([零一二三四五六七八九十百千万亿]+)元)?(零)?(?:([一二三四五六七八九])角)?"
    r"(?:([一二三四五六七八九])分)?(整)?$"
)


def read_integer_zh(text: str) -> int:
    """A Chinese whole number as a listener understands it (十二 = 12, 一千零五 = 1005)."""
    total = section = digit = 0
    for ch in text:
        if ch in _DIGIT:
            digit = _DIGIT[ch]
        elif ch in _SMALL_UNITS:
            section += (digit or 1) * _SMALL_UNITS[ch]
            digit = 0
        elif ch in _BIG_UNITS:
            total += (section + digit) * _BIG_UNITS[ch]
            section = digit = 0
        else:
            raise ValueError(f"not a Chinese numeral: {ch!r} in {text!r}")
    return total + section + digit


def read_price_zh(text: str) -> Decimal:
    """An amount said as 元/角/分 back as a Decimal (the listener's side of price_zh)."""
    if text == "零元":
        return Decimal("0.00")
    match = _PRICE_SHAPE.match(text)
    assert match is not None, text
    yuan_text, zero, jiao, fen, whole = match.groups()
    assert yuan_text or jiao or fen, text
    yuan = read_integer_zh(yuan_text) if yuan_text else 0
    if whole:
        # 整 only after a whole number of yuan
        assert yuan, text
        assert not jiao, text
        assert not fen, text
    if zero:
        # 零 stands for the missing 角 only
        assert yuan, text
        assert fen, text
        assert not jiao, text
    cents = yuan * 100 + _DIGIT.get(jiao or "零", 0) * 10 + _DIGIT.get(fen or "零", 0)
    return Decimal(cents) / 100


AMOUNTS = st.decimals(
    min_value=Decimal("0"), max_value=Decimal("99999.99"), places=2, allow_nan=False
)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(amount=AMOUNTS)
def test_price_zh_reads_back_to_the_same_amount(amount: Decimal) -> None:
    said = spoken.price_zh(amount)
    assert read_price_zh(said) == amount, said


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(amount=AMOUNTS)
def test_price_en_always_says_yuan_or_fen(amount: Decimal) -> None:
    said = spoken.price_en(amount)
    assert "yuan" in said or "fen" in said
    numbers = [int(n) for n in re.findall(r"\d+", said)]
    if "yuan" in said:
        assert numbers[0] == int(amount)
    assert sum(numbers[1:] if "yuan" in said else numbers) == int(amount * 100) % 100


def test_reader_understands_the_table() -> None:
    for amount, zh, _en in PRICES:
        assert read_price_zh(zh) == Decimal(amount).quantize(Decimal("0.01"))
