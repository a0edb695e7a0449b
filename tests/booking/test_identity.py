"""Resident ID numbers (ISO 7064 MOD 11-2), passports and names, property-based."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from callcenter.booking.identity import (
    PROVINCES,
    InvalidIdNumber,
    check_char,
    normalize_cn_id,
    normalize_id,
    normalize_name,
    normalize_passport,
    same_name,
)

FULL_WIDTH = {ord(c): ord(c) + 0xFEE0 for c in "0123456789Xx"}


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    """Any valid resident ID number: province, region, birth date from 1900, sequence, check."""
    province = draw(st.sampled_from(sorted(PROVINCES)))
    region = draw(st.integers(0, 9999))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 11, 26)))
    seq = draw(st.integers(0, 999))
    body = f"{province:02d}{region:04d}{born:%Y%m%d}{seq:03d}"
    return body + check_char(body)


@given(id_numbers())
def test_every_valid_number_passes(number: str) -> None:
    assert normalize_cn_id(number, today=date(2026, 11, 26)) == number


@given(id_numbers(), st.sampled_from(["lower", "full", "spaced", "dashed"]))
def test_typed_variants_normalise_to_the_same_number(number: str, variant: str) -> None:
    if variant == "lower":
        typed = number.lower()
    elif variant == "full":
        typed = number.translate(FULL_WIDTH)
    elif variant == "spaced":
        typed = f" {number[:6]} {number[6:14]} {number[14:]} "
    else:
        typed = f"{number[:6]}-{number[6:14]}-{number[14:]}"
    assert normalize_cn_id(typed) == number


@given(id_numbers(), st.integers(0, 17), st.integers(1, 9))
def test_any_single_digit_change_fails(number: str, position: int, delta: int) -> None:
    chars = list(number)
    old = chars[position]
    if old == "X":
        chars[position] = str(delta)
    else:
        chars[position] = str((int(old) + delta) % 10)
    changed = "".join(chars)
    with pytest.raises(InvalidIdNumber):
        normalize_cn_id(changed)


@given(id_numbers(), st.integers(0, 15))
def test_swapping_two_adjacent_different_digits_fails(number: str, position: int) -> None:
    a, b = number[position], number[position + 1]
    assume(a != b and "X" not in (a, b))
    swapped = number[:position] + b + a + number[position + 2 :]
    with pytest.raises(InvalidIdNumber):
        normalize_cn_id(swapped)


@given(st.text(max_size=30))
def test_arbitrary_text_never_crashes(text: str) -> None:
    codes = {"length", "characters", "region", "birth_date", "checksum"}
    try:
        result = normalize_cn_id(text)
    except InvalidIdNumber as exc:
        code = exc.code
    else:
        code = "ok"
        assert len(result) == 18
    assert code in {*codes, "ok"}


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("11010519491231002X", None),  # the standard's own example
        ("11010519491231002x", None),
        ("110105194912310021", "checksum"),
        ("11010519491231002", "length"),
        ("1101051949123100211", "length"),
        ("99010519491231002X", "region"),
        ("110105194902300020", "birth_date"),  # 30 February
        ("110105189912310020", "birth_date"),
        ("11010519491231X02X", "characters"),
        ("", "length"),
    ],
)
def test_examples(number: str, code: str | None) -> None:
    if code is None:
        assert normalize_cn_id(number) == "11010519491231002X"
        return
    with pytest.raises(InvalidIdNumber) as exc:
        normalize_cn_id(number)
    assert exc.value.code == code


def test_future_birth_dates_are_refused_when_today_is_known() -> None:
    body = "11010520300101001"
    with pytest.raises(InvalidIdNumber):
        normalize_cn_id(body + check_char(body), today=date(2026, 11, 26))


@given(st.from_regex(r"[A-Za-z0-9]{5,17}", fullmatch=True))
def test_passports(number: str) -> None:
    assert normalize_passport(number) == number.upper()
    assert normalize_id("passport", f" {number} ") == number.upper()


@pytest.mark.parametrize("bad", ["1234", "A" * 18, "E1234 567!", "护照12345", ""])
def test_bad_passports(bad: str) -> None:
    with pytest.raises(InvalidIdNumber):
        normalize_passport(bad)


def test_unknown_id_type() -> None:
    with pytest.raises(InvalidIdNumber):
        normalize_id("driving_licence", "123")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("张三", "张三"),
        (" 张  三 ", "张 三"),
        ("买买提•艾力", "买买提·艾力"),
        ("Ｊｏｈｎ Smith", "John Smith"),
    ],
)
def test_names(raw: str, clean: str) -> None:
    assert normalize_name(raw) == clean


@pytest.mark.parametrize("bad", ["", " ", "张3", "a" * 51, "<script>", "x@y"])
def test_bad_names(bad: str) -> None:
    with pytest.raises(InvalidIdNumber):
        normalize_name(bad)


def test_same_name() -> None:
    assert same_name("John Smith", "john  smith")
    assert same_name("买买提·艾力", "买买提艾力")
    assert not same_name("张三", "张四")
