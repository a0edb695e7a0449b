"""Understanding what a caller said: spoken digits, spoken menu choices, cleaning recogniser
output and matching keywords (by characters or by toneless pinyin)."""

from __future__ import annotations

import pytest

from callcenter.ivr.speech import (
    MAX_SPEECH_CHARS,
    PERSON_PHRASES,
    REPEAT_PHRASES,
    PhraseMatcher,
    clean,
    normalize,
    pinyin_key,
    spoken_choice,
    spoken_digits,
)

# ---------------------------------------------------------------- spoken_digits

SPOKEN_DIGITS = [
    ("幺三八", "138"),
    ("幺三八零零幺三八零零零", "13800138000"),
    ("一二三四五六七八九零", "1234567890"),
    ("两两", "22"),
    ("洞幺拐勾", "0179"),
    ("壹贰叁肆伍陆柒捌玖〇", "1234567890"),
    ("one three eight", "138"),
    ("zero oh o", "000"),
    ("one two three four five six seven eight nine", "123456789"),
    ("1 3 8", "138"),
    ("138 0013 8000", "13800138000"),
    ("１３８００１３８０００", "13800138000"),  # full-width digits
    ("幺38 零零one三", "1380013"),
    ("幺三八，零零幺三，八零零零。", "13800138000"),
    ("my number is one three eight", "138"),
    ("号码幺三八", "138"),
    ("ONE Three eight", "138"),
]


@pytest.mark.parametrize(("spoken", "digits"), SPOKEN_DIGITS, ids=[s for s, _ in SPOKEN_DIGITS])
def test_spoken_digits_read_as_ascii(spoken: str, digits: str) -> None:
    assert spoken_digits(spoken) == digits


NOT_DIGITS = [
    "",
    "   ",
    "，。",
    "我不知道",
    "一百三十八",  # a quantity, not digits read one by one
    "I want to talk to someone",
    "幺三八 hello",
    "three eighty",
    "<Say>1</Say>",
]


@pytest.mark.parametrize("spoken", NOT_DIGITS, ids=[repr(s) for s in NOT_DIGITS])
def test_spoken_digits_rejects_non_digit_speech(spoken: str) -> None:
    assert spoken_digits(spoken) is None


@pytest.mark.parametrize(
    "spoken",
    ["١٢٣", "१२३", "১৩৮"],
    ids=["arabic-indic", "devanagari", "bengali"],
)
def test_spoken_digits_never_returns_non_ascii_digits(spoken: str) -> None:
    # Documented: "as ASCII digits, or None". Other scripts' digits must not reach a
    # collect node's variable (and from there a booking backend) unconverted.
    result = spoken_digits(spoken)
    assert result is None or (result.isascii() and result.isdigit()), repr(result)


# ---------------------------------------------------------------- spoken_choice

SPOKEN_CHOICES = [
    ("按2", "2"),
    ("请按3", "3"),
    ("按键5", "5"),
    ("我选四", "4"),
    ("第二项", "2"),
    ("二号", "2"),
    ("选择幺", "1"),
    ("两", "2"),
    ("7", "7"),
    ("０", "0"),
    ("press two", "2"),
    ("Press Two.", "2"),
    ("option three", "3"),
    ("number five please", "5"),
    ("I want one", "1"),
    ("nine", "9"),
    ("zero", "0"),
    # recognisers usually write the number as a numeral
    ("press 1", "1"),
    ("Press 2.", "2"),
    ("option 3", "3"),
]


@pytest.mark.parametrize(("spoken", "key"), SPOKEN_CHOICES, ids=[s for s, _ in SPOKEN_CHOICES])
def test_spoken_choice(spoken: str, key: str) -> None:
    assert spoken_choice(spoken) == key


NO_CHOICE = [
    "",
    "挂号",
    "按12",
    "第一项还是第二项",
    "one two",
    "press one or two",
    "I want to book",
    "hello",
]


@pytest.mark.parametrize("spoken", NO_CHOICE, ids=[repr(s) for s in NO_CHOICE])
def test_spoken_choice_none_when_not_a_single_choice(spoken: str) -> None:
    assert spoken_choice(spoken) is None


# ---------------------------------------------------------------- clean / normalize

CLEAN = [
    ("plain", "我要挂号", "我要挂号"),
    ("full-width-to-half-width", "ＡＢＣ１２３", "ABC123"),
    ("full-width-space-collapsed", "我要　挂号", "我要 挂号"),
    ("control-chars-removed", "a\x00b\x07c\x1bd\x7fe\x85f", "a b c d e f"),
    ("newlines-and-tabs", "line1\nline2\r\n\tline3", "line1 line2 line3"),
    ("zero-width-and-bom", "挂\u200b号\ufeff", "挂 号"),
    ("line-separators", "a\u2028b\u2029c", "a b c"),
    ("outer-space-trimmed", "   press two   ", "press two"),
    ("compatibility-chars", "①㈱ﬁ", "1(株)fi"),
    ("none-like-empty", "", ""),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in CLEAN], ids=[c[0] for c in CLEAN])
def test_clean(raw: str, expected: str) -> None:
    assert clean(raw) == expected


def test_clean_bounds_length() -> None:
    assert len(clean("挂号" * 10_000)) == MAX_SPEECH_CHARS
    assert clean("a" * (MAX_SPEECH_CHARS + 1)) == "a" * MAX_SPEECH_CHARS
    # NFKC can lengthen text ("㍿" is four characters); the bound still holds
    assert len(clean("㍿" * 200)) == MAX_SPEECH_CHARS


def test_normalize_drops_punctuation_spaces_and_case() -> None:
    assert normalize("  Press, TWO！ ") == "presstwo"
    assert normalize("预约，挂号。") == "预约挂号"
    assert pinyin_key("挂好") == pinyin_key("挂号") == "guahao"


# ---------------------------------------------------------------- PhraseMatcher

MAIN_MENU = PhraseMatcher(
    [
        ("1", "医院"),
        ("1", "专家"),
        ("2", "挂号"),
        ("2", "预约"),
        ("2", "取消预约"),
        ("3", "药"),
        ("3", "药价"),
        ("5", "服务时间"),
        ("9", "english"),
        ("4", "blood pressure"),
    ]
)

MATCHES = [
    ("exact-characters", "挂号", "2"),
    ("in-a-sentence", "我想预约一个专家号", None),  # 预约 vs 专家: same length, two options
    ("longest-wins", "我要取消预约", "2"),
    ("longest-wins-over-short", "药价多少", "3"),
    ("single-char-keyword", "买药", "3"),
    ("homophone-guahao", "我要挂好", "2"),
    ("homophone-yiyuan", "哪家一院最近", "1"),
    ("english-case-and-punctuation", "English, please!", "9"),
    ("english-phrase-spaces-ignored", "my blood-pressure is high", "4"),
    ("longer-beats-shorter-other-label", "服务时间和医院", "5"),
    ("nothing", "今天天气很好", None),
    ("empty", "", None),
    ("punctuation-only", "？！。", None),
]


@pytest.mark.parametrize(
    ("utterance", "label"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES]
)
def test_phrase_matcher(utterance: str, label: str | None) -> None:
    assert MAIN_MENU.match(utterance) == label


def test_exact_characters_beat_a_pinyin_match_of_the_same_length() -> None:
    matcher = PhraseMatcher([("a", "挂号"), ("b", "挂好")])
    assert matcher.match("挂号") == "a"
    assert matcher.match("挂好") == "b"
    assert sorted(matcher.all_matches("挂号")) == [("a", 4), ("b", 3)]


def test_same_label_twice_is_not_ambiguous() -> None:
    matcher = PhraseMatcher([("2", "挂号"), ("2", "预约"), ("1", "医院")])
    assert matcher.match("预约挂号") == "2"


def test_short_pinyin_is_not_matched_by_sound() -> None:
    # one-syllable keywords ("药" yao) would match far too much by sound
    matcher = PhraseMatcher([("3", "药")])
    assert matcher.match("要") is None
    assert matcher.match("药") == "3"


def test_empty_phrases_are_ignored() -> None:
    matcher = PhraseMatcher([("x", "  "), ("y", "，"), ("z", "人工")])
    assert matcher.match("人工") == "z"
    assert matcher.match("随便说") is None


PERSON = PhraseMatcher(("person", p) for ps in PERSON_PHRASES.values() for p in ps)
REPEAT = PhraseMatcher(("repeat", p) for ps in REPEAT_PHRASES.values() for p in ps)


@pytest.mark.parametrize(
    "utterance",
    [
        "人工",
        "我要转人工",
        "帮我接人工客服",
        "我要找真人",
        "agent",
        "Can I talk to a person?",
        "OPERATOR",
    ],
)
def test_person_phrases(utterance: str) -> None:
    assert PERSON.match(utterance) == "person"


@pytest.mark.parametrize(
    "utterance", ["重复", "没听清", "请再说一遍", "repeat please", "Pardon?", "say that again"]
)
def test_repeat_phrases(utterance: str) -> None:
    assert REPEAT.match(utterance) == "repeat"
