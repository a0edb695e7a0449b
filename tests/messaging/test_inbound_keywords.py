"""Keyword recognition: every way a phone can type TD, 退订 or STOP opts out; sentences don't."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from callcenter.messaging.keywords import (
    CHINESE_OPT_IN,
    CHINESE_OPT_OUT,
    OPT_IN,
    OPT_OUT,
    TWILIO_OPT_IN,
    TWILIO_OPT_OUT,
    Keyword,
    choice,
    fold,
    keyword,
)

PROPERTY = settings(max_examples=300, deadline=None)
#: What keyboards put around or between the letters of a keyword.
FILLER = (
    " \t\r\n\u3000\u00a0\u200b"  # spaces: ASCII, ideographic, no-break, zero-width
    ".,!?;:'\"-_~*#/\\|()[]{}<>"
    "。，、！？；：“”‘’「」『』【】〔〕（）《》〈〉…—～·＊＃"
)


def full_width(ch: str) -> str:
    """The full-width form of an ASCII letter or digit (what Chinese input methods type)."""
    return chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch


@st.composite
def typed(draw: st.DrawFn, word: str) -> str:
    """``word`` as a phone might send it: any case, half- or full-width, padded, spaced."""
    out = []
    for ch in word:
        if ch.isascii():
            ch = draw(st.sampled_from([ch.lower(), ch.upper()]))
            if draw(st.booleans()):
                ch = full_width(ch)
        out.append(ch)
        out.append(draw(st.text(alphabet=" \u3000", max_size=1)))
    before = draw(st.text(alphabet=FILLER, max_size=4))
    after = draw(st.text(alphabet=FILLER, max_size=4))
    return before + "".join(out).rstrip(" \u3000") + after


@PROPERTY
@given(data=st.data(), word=st.sampled_from(sorted(OPT_OUT)))
@example(data=None, word="td")
def test_every_typing_of_an_opt_out_word_opts_out(data: st.DataObject | None, word: str) -> None:
    body = word if data is None else data.draw(typed(word))
    assert keyword(body) == Keyword("opt_out", word, word in TWILIO_OPT_OUT), repr(body)


@PROPERTY
@given(data=st.data(), word=st.sampled_from(sorted(OPT_IN)))
def test_every_typing_of_a_resubscribe_word_resubscribes(data: st.DataObject, word: str) -> None:
    body = data.draw(typed(word))
    assert keyword(body) == Keyword("opt_in", word, word in TWILIO_OPT_IN), repr(body)


@pytest.mark.parametrize(
    "body",
    [
        "TD",
        "td",
        "Td",
        "ＴＤ",
        "ｔｄ",
        "Ｔ Ｄ",
        "T D",
        "TD。",
        "td.",
        " TD ",
        "TD！",
        "【TD】",
        "退订",
        "退订！",
        "退订。",
        "【退订】",
        " 退订 ",
        "退 订",
        "退订短信",
        "短信退订",
        "取消订阅",
        "「退订」",
    ],
)
def test_chinese_opt_out_variants(body: str) -> None:
    found = keyword(body)
    assert found is not None
    assert found.kind == "opt_out"
    assert found.word in CHINESE_OPT_OUT
    assert not found.provider_answers  # Twilio does not know these: the hotline answers


@pytest.mark.parametrize(
    "body",
    ["STOP", "stop", " Stop ", "STOP ALL", "opt-out", "Opt out", "UNSUBSCRIBE", "CANCEL", "end"],
)
def test_twilio_opt_out_words_are_answered_by_twilio(body: str) -> None:
    found = keyword(body)
    assert found is not None
    assert (found.kind, found.provider_answers) == ("opt_out", True)


@pytest.mark.parametrize(
    ("body", "word", "provider_answers"),
    [
        ("START", "start", True),
        ("unstop", "unstop", True),
        ("Yes", "yes", True),
        ("订阅", "订阅", False),
        ("恢复订阅。", "恢复订阅", False),
        ("【重新订阅】", "重新订阅", False),
    ],
)
def test_resubscribe_words(body: str, word: str, provider_answers: bool) -> None:
    assert keyword(body) == Keyword("opt_in", word, provider_answers)
    assert word in (CHINESE_OPT_IN | TWILIO_OPT_IN)


@pytest.mark.parametrize(
    "body",
    [
        "stop by tomorrow?",
        "Please stop",
        "don't stop",
        "stopped",
        "请问退订以后还能预约吗",
        "我想退订",  # a sentence: answered politely, an agent can act on it
        "退号",  # cancel an appointment, not the messages
        "取消预约",
        "T",
        "D",
        "TDD",
        "cancel 1",
        "1",
        "",
        "   ",
        "。。。",
        "yes please",
    ],
)
def test_not_keywords(body: str) -> None:
    assert keyword(body) is None


WORDS = [
    "please",
    "can",
    "you",
    "the",
    "bus",
    "by",
    "tomorrow",
    "at",
    "hospital",
    "I",
    "will",
    "my",
    "medicine",
    "when",
    "does",
    "clinic",
    "请问",
    "明天",
    "医院",
    "公交",
    "在",
    "几点",
]


@PROPERTY
@given(
    before=st.lists(st.sampled_from(WORDS), max_size=4),
    after=st.lists(st.sampled_from(WORDS), max_size=4),
    stop=st.sampled_from(["stop", "STOP", "Stop", "ＳＴＯＰ", "td", "退订", "cancel", "end"]),
    punctuation=st.sampled_from(["", ".", "?", "!", "。", "？"]),
)
def test_sentences_containing_a_keyword_are_not_keywords(
    before: list[str], after: list[str], stop: str, punctuation: str
) -> None:
    if not before and not after:
        after = ["please"]
    sentence = " ".join([*before, stop, *after]) + punctuation
    assert keyword(sentence) is None, sentence


@given(body=st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_keyword_never_fails_and_agrees_with_fold(body: str) -> None:
    found = keyword(body)
    if found is not None:
        assert fold(body) == found.word
        assert found.word in OPT_OUT | OPT_IN


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("1", "1"),
        ("2", "2"),
        ("１", "1"),
        ("２", "2"),
        ("1。", "1"),
        (" 1 ", "1"),
        ("【1】", "1"),
        ("1!", "1"),
        ("12", "12"),
        ("１２", "12"),
        ("\u30001\u3000", "1"),
    ],
)
def test_numbered_answers(body: str, expected: str) -> None:
    assert choice(body) == expected


@pytest.mark.parametrize(
    "body", ["", "。", "1 2", "123", "one", "1a", "a1", "1号", "１、２", "٣", "-1.5", "TD"]
)
def test_not_numbered_answers(body: str) -> None:
    assert choice(body) is None


@PROPERTY
@given(
    digit=st.sampled_from("0123456789"),
    wide=st.booleans(),
    before=st.text(alphabet=FILLER, max_size=3),
    after=st.text(alphabet=FILLER, max_size=3),
)
def test_any_padded_digit_is_an_answer(digit: str, wide: bool, before: str, after: str) -> None:
    assert choice(before + (full_width(digit) if wide else digit) + after) == digit
