"""Understanding what a caller said: normalisation, spoken digits, keyword and red-flag matching.

Speech recognisers mishear Mandarin in predictable ways: homophones (挂好 for 挂号), missing
or extra characters, full-width punctuation. Keywords are therefore matched on the characters
*and* on toneless pinyin, so a homophone still chooses the right option.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from pypinyin import lazy_pinyin

MAX_SPEECH_CHARS = 300
_DROP = re.compile(r"[\s\W_]+", re.UNICODE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")

#: Spoken digits; 幺 (yāo) is how 1 is read out in phone numbers, 两 is a colloquial 2.
_ZH_DIGITS = {
    "零": "0",
    "〇": "0",
    "洞": "0",
    "一": "1",
    "幺": "1",
    "壹": "1",
    "二": "2",
    "两": "2",
    "贰": "2",
    "三": "3",
    "叁": "3",
    "四": "4",
    "肆": "4",
    "五": "5",
    "伍": "5",
    "六": "6",
    "陆": "6",
    "七": "7",
    "柒": "7",
    "拐": "7",
    "八": "8",
    "捌": "8",
    "九": "9",
    "玖": "9",
    "勾": "9",
}
_EN_DIGITS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "to": "2",
    "too": "2",
    "three": "3",
    "four": "4",
    "for": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
#: Words around a single spoken choice: "按1", "第一项", "press one", "option two".
_CHOICE_FILLER_ZH = (
    "我选",
    "我要",
    "请按",
    "按键",
    "按",
    "选择",
    "选",
    "第",
    "项",
    "号",
    "个",
    "吧",
    "的",
)
_CHOICE_FILLER_EN = ("press", "option", "number", "choose", "select", "please", "i", "want")


def clean(text: str) -> str:
    """Make recogniser output safe to keep: NFKC, no control characters, bounded length."""
    text = unicodedata.normalize("NFKC", text or "")
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())[:MAX_SPEECH_CHARS]


def normalize(text: str) -> str:
    """Lower-case, NFKC, with punctuation and spaces removed: the form keywords are matched in."""
    return _DROP.sub("", unicodedata.normalize("NFKC", text).lower())


@lru_cache(maxsize=4096)
def pinyin_key(text: str) -> str:
    """Toneless pinyin of the Chinese characters in ``text`` (other characters kept)."""
    return "".join(lazy_pinyin(normalize(text)))


def spoken_digits(text: str) -> str | None:
    """Read a spoken number ("幺三八", "one three eight", "1 3 8") as ASCII digits, or ``None``."""
    cleaned = unicodedata.normalize("NFKC", text).lower()
    words = re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]", cleaned)
    out: list[str] = []
    for word in words:
        if word.isascii() and word.isdigit():
            out.append(word)
        elif word in _ZH_DIGITS:
            out.append(_ZH_DIGITS[word])
        elif word in _EN_DIGITS:
            out.append(_EN_DIGITS[word])
        elif _DROP.fullmatch(word) or word in ("号", "码", "is", "my", "number", "the"):
            continue
        else:
            return None
    return "".join(out) or None


def spoken_choice(text: str) -> str | None:
    """A single menu choice said aloud ("按1", "第二项", "press three", "Press 2."): one digit."""
    cleaned = unicodedata.normalize("NFKC", text).lower()
    tokens = [t for t in re.findall(r"[a-z]+|[0-9]|[^a-z0-9]", cleaned) if not _DROP.fullmatch(t)]
    if tokens and all(t.isascii() for t in tokens):
        words = [t for t in tokens if t not in _CHOICE_FILLER_EN]
        if len(words) != 1:
            return None
        word = words[0]
        return word if word.isdigit() else _EN_DIGITS.get(word)
    norm = normalize(text)
    for filler in _CHOICE_FILLER_ZH:
        norm = norm.replace(filler, "")
    if len(norm) == 1:
        if norm.isascii() and norm.isdigit():
            return norm
        return _ZH_DIGITS.get(norm)
    return None


def partial_choice(labels: list[str], text: str) -> int | None:
    """The one label (1-based) that contains what was said, when the caller said only part
    of it ("普通门诊" for "普通门诊，任意医生", "唐医生" for "唐鹏梅主治医师" does not count,
    "唐鹏梅" does): at least two characters (or one English word), and only one label."""
    said = normalize(text)
    for filler in (*_CHOICE_FILLER_ZH, "的", "吧", "就", "那个"):
        said = said.replace(filler, "")
    if len(said) < 2:
        return None
    hits = [i for i, label in enumerate(labels, 1) if said in normalize(label)]
    if len(hits) != 1:
        key = pinyin_key(said)
        hits = [i for i, label in enumerate(labels, 1) if key and key in pinyin_key(label)]
    return hits[0] if len(hits) == 1 else None


@dataclass(frozen=True)
class _Phrase:
    label: str
    text: str
    pinyin: str


class PhraseMatcher:
    """Find which labelled phrases occur in an utterance, by characters or by pinyin.

    The longest matching phrase wins; two different labels matching equally well is
    reported as ambiguous (``None``), so the caller is asked again rather than guessed at.
    """

    def __init__(self, phrases: Iterable[tuple[str, str]]) -> None:
        self._phrases: list[_Phrase] = []
        for label, text in phrases:
            norm = normalize(text)
            if norm:
                self._phrases.append(_Phrase(label, norm, pinyin_key(norm)))

    def match(self, utterance: str) -> str | None:
        """The label of the best phrase found in ``utterance``, or ``None``."""
        hits = self.all_matches(utterance)
        if not hits:
            return None
        best = max(score for _label, score in hits)
        labels = {label for label, score in hits if score == best}
        return labels.pop() if len(labels) == 1 else None

    def all_matches(self, utterance: str) -> list[tuple[str, int]]:
        """Every (label, score) found; the score is the matched phrase's length."""
        norm = normalize(utterance)
        if not norm:
            return []
        pin: str | None = None
        hits: list[tuple[str, int]] = []
        for phrase in self._phrases:
            if phrase.text in norm:
                hits.append((phrase.label, len(phrase.text) * 2))
                continue
            if phrase.pinyin != phrase.text and len(phrase.pinyin) >= 4:
                if pin is None:
                    pin = pinyin_key(norm)
                if phrase.pinyin in pin:
                    hits.append((phrase.label, len(phrase.text) * 2 - 1))
        return hits


#: Phrases that mean "let me talk to a person", in every language.
PERSON_PHRASES: Mapping[str, tuple[str, ...]] = {
    "zh-CN": ("人工", "转人工", "人工服务", "人工客服", "客服", "接线员", "真人", "坐席"),
    "en": ("agent", "operator", "a person", "human", "representative", "real person", "someone"),
}
#: Phrases that mean "say that again".
REPEAT_PHRASES: Mapping[str, tuple[str, ...]] = {
    "zh-CN": ("重复", "再说一遍", "再说一次", "没听清", "再听一遍", "重听"),
    "en": ("repeat", "say again", "say that again", "pardon", "again please"),
}
