"""Personal data never reaches a log line, and phone numbers are E.164 at the edge."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from callcenter.logs import MaskingFilter, mask_text, setup_logging
from callcenter.phone import InvalidPhoneNumber, mask, normalize, normalize_caller_id

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


# ---------------------------------------------------------------- mask_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+8613800138000", "+*********8000"),
        ("13800138000", "*******8000"),
        ("138 0013 8000", "*******8000"),
        ("138-0013-8000", "*******8000"),
        ("+86 138 0013 8000", "+*********8000"),
        ("021-6234-5678", "*******5678"),
        ("110101199003071234", "11************1234"),
        ("11010119900307123X", "11************123X"),
        ("11010119900307123x", "11************123x"),
        ("call from +8613800138000 at step 12", "call from +*********8000 at step 12"),
        ("id=110101199003071234;", "id=11************1234;"),
        ("caller 13800138000, callback 13900139000", "caller *******8000, callback *******9000"),
    ],
    ids=[
        "e164",
        "national-mobile",
        "spaces",
        "dashes",
        "e164-spaced",
        "landline",
        "id-number",
        "id-number-X",
        "id-number-x",
        "in-a-sentence",
        "id-in-key-value",
        "two-numbers",
    ],
)
def test_mask_text_masks_personal_numbers(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "step 12",
        "120",
        "please call 120 now",
        "pressed 5 then 0",
        "queue general-zh-CN priority 100",
        "CA0123456789abcdef0123456789abcdef",
        "+86 138****8000",
        "12345",
        "",
    ],
    ids=[
        "step",
        "emergency-number",
        "emergency-in-sentence",
        "keys",
        "queue",
        "call-sid",
        "already-masked",
        "five-digits",
        "empty",
    ],
)
def test_mask_text_leaves_short_numbers_and_identifiers_alone(text: str) -> None:
    assert mask_text(text) == text


@settings(max_examples=100, deadline=None)
@given(
    number=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    before=st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=20),
    after=st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=20),
    plus=st.booleans(),
)
@example(number="13800138000", before="tel:", after="", plus=True)
def test_a_mobile_number_anywhere_keeps_only_its_last_four_digits(
    number: str, before: str, after: str, plus: bool
) -> None:
    shown = ("+86" if plus else "") + number
    text = f"{before} {shown} {after}"
    masked = mask_text(text)
    digits = re.sub(r"\D", "", masked)
    assert number not in digits
    assert number[:7] not in masked
    assert number[-4:] in masked


# ---------------------------------------------------------------- the logging filter


@pytest.fixture
def masked_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.masking")
    masking = MaskingFilter()
    logger.addFilter(masking)
    yield logger
    logger.removeFilter(masking)


def test_filter_masks_the_arguments_of_a_real_logging_call(
    masked_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tests.masking"):
        masked_logger.info(
            "call %s from %s (id %s) at step %d", "CA1", "+8613800138000", "110101199003071234", 3
        )
    [record] = caplog.records
    assert record.getMessage() == "call CA1 from +*********8000 (id 11************1234) at step 3"
    assert "13800138000" not in caplog.text
    assert "110101199003071234" not in caplog.text


def test_filter_masks_exception_text(
    masked_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tests.masking"):
        try:
            raise ValueError("no resident with phone 13800138000")
        except ValueError:
            masked_logger.exception("lookup failed")
    assert "lookup failed" in caplog.text
    assert "ValueError: no resident with phone *******8000" in caplog.text
    assert "13800138000" not in caplog.text


def test_filter_never_drops_a_record_with_bad_arguments(
    masked_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tests.masking"):
        masked_logger.info("count %d for 13800138000", "not-a-number")
    [record] = caplog.records
    assert record.getMessage() == "count %d for *******8000"


def test_setup_logging_masks_every_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup_logging("INFO")
        setup_logging("WARNING")  # a second call changes the level, adds no handler
        masking = [h for h in root.handlers if any(isinstance(f, MaskingFilter) for f in h.filters)]
        assert len(masking) == 1
        assert root.level == logging.WARNING
        logging.getLogger("callcenter.test").warning("callback to %s", "13800138000")
        logging.getLogger("callcenter.test").info("not shown")
        err = capsys.readouterr().err
        assert "callback to *******8000" in err
        assert "13800138000" not in err
        assert "not shown" not in err
    finally:
        root.handlers = handlers
        root.setLevel(level)


# ---------------------------------------------------------------- phone numbers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+8613800138000", "+8613800138000"),
        ("13800138000", "+8613800138000"),
        ("138 0013 8000", "+8613800138000"),
        ("+86 138-0013-8000", "+8613800138000"),
        ("008613800138000", "+8613800138000"),
        ("１３８００１３８０００", "+8613800138000"),
        ("  13800138000  ", "+8613800138000"),
        ("021-6234-5678", "+862162345678"),
        ("+1 650 253 0000", "+16502530000"),
        ("+852 2123 4567", "+85221234567"),
    ],
    ids=[
        "e164",
        "national-mobile",
        "spaced",
        "dashed",
        "00-prefix",
        "full-width",
        "padded",
        "shanghai-landline",
        "us",
        "hong-kong",
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
    assert normalize(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "garbage",
        "120",
        "123",
        "+86 12",
        "1380013800",
        "+999 1234567",
        "1" * 41,
        "+86138001380001",
    ],
    ids=[
        "empty",
        "words",
        "emergency",
        "short",
        "short-with-cc",
        "one-digit-short",
        "unknown-country",
        "too-long",
        "one-digit-long",
    ],
)
def test_normalize_rejects(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize(raw)


def test_normalize_reads_national_numbers_in_the_given_region() -> None:
    assert normalize("2123 4567", "HK") == "+85221234567"
    assert normalize("(650) 253-0000", "US") == "+16502530000"


@settings(max_examples=300, deadline=None)
@given(
    raw=st.one_of(
        st.text(max_size=50),
        st.from_regex(r"\+?[0-9 ()\-.]{0,25}", fullmatch=True),
        st.from_regex(r"(\+86|0086)?1[3-9][0-9]{9}", fullmatch=True),
    ),
    region=st.sampled_from(["CN", "US", "HK", "GB"]),
)
@example(raw="+8613800138000", region="CN")
@example(raw="\x00", region="CN")
def test_normalize_returns_e164_or_raises_invalid(raw: str, region: str) -> None:
    try:
        result = normalize(raw, region)
    except InvalidPhoneNumber:
        return
    assert isinstance(result, str)
    assert E164.match(result), result
    assert normalize(result, region) == result


@pytest.mark.parametrize(
    "raw",
    [None, "", "anonymous", "Anonymous", "restricted", "UNKNOWN", "private", "+266696687", "xyz"],
)
def test_hidden_or_unusable_caller_ids_are_none(raw: str | None) -> None:
    assert normalize_caller_id(raw) is None


def test_a_caller_id_is_normalised() -> None:
    assert normalize_caller_id("13800138000") == "+8613800138000"


@pytest.mark.parametrize(
    ("e164", "expected"),
    [
        ("+8613800138000", "+86 138****8000"),
        ("+862162345678", "+86 216***5678"),
        ("+16502530000", "+1 650***0000"),
        ("+85221234567", "+852 ****4567"),
        (None, "(hidden)"),
        ("", "(hidden)"),
        ("1234", "****"),
    ],
    ids=["cn-mobile", "cn-landline", "us", "hk", "none", "empty", "four-digits"],
)
def test_mask(e164: str | None, expected: str) -> None:
    assert mask(e164) == expected


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"\+861[3-9][0-9]{9}", fullmatch=True))
def test_mask_never_shows_the_whole_number(e164: str) -> None:
    shown = mask(e164)
    assert shown.endswith(e164[-4:])
    assert re.sub(r"\D", "", shown) != re.sub(r"\D", "", e164)
    assert "*" in shown
