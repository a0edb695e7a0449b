"""SMS segment counting: GSM-7 160/153 (extension characters count 2), UCS-2 70/67."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.messaging import segments

GSM_CHARS = sorted(segments.GSM_BASIC | segments.GSM_EXTENSION)


@pytest.mark.parametrize(
    ("text", "encoding", "length", "parts"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("a" * 159 + "^", "GSM-7", 161, 2),
        ("中" * 70, "UCS-2", 70, 1),
        ("中" * 71, "UCS-2", 71, 2),
        ("中" * 134, "UCS-2", 134, 2),
        ("中" * 135, "UCS-2", 135, 3),
        ("a" * 69 + "中", "UCS-2", 70, 1),  # one Chinese character makes it all UCS-2
        ("a" * 159 + "’", "UCS-2", 160, 3),  # a curly apostrophe too
        ("😀" * 35, "UCS-2", 70, 1),  # surrogate pairs count two
        ("😀" * 36, "UCS-2", 72, 2),
        ("【健康热线】" + "回复TD退订", "UCS-2", 12, 1),
    ],
)
def test_table(text: str, encoding: str, length: int, parts: int) -> None:
    assert segments.encoding(text) == encoding
    assert segments.length(text) == length
    assert segments.count(text) == parts


def test_extension_character_is_never_split_from_its_escape() -> None:
    text = "a" * 152 + "{" + "b" * 10
    first, second = segments.split(text)
    assert first == "a" * 152  # 152 + 2 septets would be 154 > 153
    assert second.startswith("{")


def test_emoji_is_never_split() -> None:
    text = "中" * 66 + "😀" + "中" * 10
    first, second = segments.split(text)
    assert first == "中" * 66
    assert second.startswith("😀")


def _units(ch: str, enc: str) -> int:
    if enc == "GSM-7":
        return 2 if ch in segments.GSM_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def _check(text: str) -> None:
    """Parts reassemble, fit their limit, and each is as full as it can be (greedy)."""
    parts = segments.split(text)
    assert "".join(parts) == text
    assert len(parts) == segments.count(text)
    enc = segments.encoding(text)
    single, part = (160, 153) if enc == "GSM-7" else (70, 67)
    size = [sum(_units(c, enc) for c in p) for p in parts]
    if len(parts) == 1:
        assert size[0] <= single
        return
    assert sum(size) > single
    assert all(0 < n <= part for n in size)
    for n, following in zip(size, parts[1:], strict=False):
        assert n + _units(following[0], enc) > part


@given(st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=700))
def test_gsm_text_reassembles(text: str) -> None:
    assert segments.encoding(text) == "GSM-7"
    _check(text)


@given(st.text(max_size=400))
def test_any_text_reassembles(text: str) -> None:
    _check(text)


@given(st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=400))
def test_chinese_70_then_67(text: str) -> None:
    n = len(text)
    expected = 1 if n <= 70 else -(-n // 67)
    assert segments.count(text) == expected
    _check(text)
