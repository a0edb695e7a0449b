"""Text helpers for knowledge-base search: folding, filler words, pinyin, index tokens.

Everything here is pure and fast: the same functions build the search index (once per entry)
and read a caller's query (once per search), so an entry and a query about it always meet in
the same form.

* :func:`fold` - NFKC, lower case, every run of punctuation or space turned into one space.
* :func:`compact` - :func:`fold` without spaces: the form names are compared in.
* :func:`to_pinyin` - toneless pinyin, one reading per character (first dictionary reading,
  a few corrections for names), Latin letters and digits kept. Per character and cached, so
  it costs microseconds; pypinyin's phrase segmentation would cost ~100 us per name and a
  recogniser's homophone breaks the phrase context anyway.
* :func:`strip_fillers` - the spoken padding around a name ("我想问一下…多少钱", "how much
  is …"), in two strengths: *light* (politeness and hesitation only) and *core* (also the
  question words: price, where, when, phone…).
* :func:`fts_tokens` / :func:`trgm_words` - what the database prefilters index.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pypinyin import lazy_pinyin
from pypinyin.constants import PINYIN_DICT

MAX_QUERY_CHARS = 120

_CJK_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CLASS}]")
_SEPARATORS = re.compile(f"[^0-9a-z{_CJK_CLASS}]+")
_RUNS = re.compile(f"[{_CJK_CLASS}]+|[a-z]+|[0-9]+")


def words(text: str) -> tuple[str, ...]:
    """The space-separated words of ``text`` (for writing word lists)."""
    return tuple(text.split())


#: Readings where the first dictionary reading is the rare one in names and places.
_READING_OVERRIDES = {
    "长": "chang",
    "曾": "zeng",
    "单": "shan",
    "仇": "qiu",
    "区": "qu",
    "解": "xie",
    "查": "zha",
    "朴": "piao",
    "尉": "yu",
    "乐": "le",
    "重": "zhong",
    "都": "du",
    "厦": "xia",
    "泊": "bo",
    "行": "xing",
}


def fold(text: str) -> str:
    """NFKC, lower case, punctuation and spacing reduced to single spaces, trimmed."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return _SEPARATORS.sub(" ", text).strip()


def compact(text: str) -> str:
    """:func:`fold` without any spaces (``"Ruijin Hospital"`` -> ``"ruijinhospital"``)."""
    return fold(text).replace(" ", "")


def is_cjk(ch: str) -> bool:
    """Whether ``ch`` is a Chinese character."""
    return bool(_CJK.match(ch))


@lru_cache(maxsize=65536)
def char_pinyin(ch: str) -> str:
    """Toneless pinyin of one Chinese character (``ü`` written ``v``); other characters as is."""
    if not is_cjk(ch):
        return ch
    if ch in _READING_OVERRIDES:
        return _READING_OVERRIDES[ch]
    reading = lazy_pinyin(ch)
    return reading[0] if reading and reading[0] != ch else ch


def to_pinyin(text: str) -> str:
    """Toneless pinyin of ``text`` with nothing between syllables (``瑞金`` -> ``ruijin``).

    ``text`` should already be folded or compacted; characters that are not Chinese are kept.
    """
    return "".join(char_pinyin(ch) for ch in text)


@lru_cache(maxsize=1)
def pinyin_syllables() -> frozenset[str]:
    """Every toneless pinyin syllable (about 400), from pypinyin's dictionary."""
    found: set[str] = set()
    for readings in PINYIN_DICT.values():
        for reading in readings.split(","):
            plain = unicodedata.normalize("NFD", reading).replace("u\u0308", "v")
            plain = "".join(c for c in plain if not unicodedata.combining(c))
            if plain.isascii() and plain.isalpha():
                found.add(plain)
    for interjection in ("m", "n", "ng", "hm", "hng"):
        found.discard(interjection)
    return frozenset(found)


@lru_cache(maxsize=16384)
def split_pinyin(word: str) -> tuple[str, ...] | None:
    """Split a Latin word into pinyin syllables (fewest syllables), or ``None`` if it is not pinyin.

    >>> split_pinyin("ruijin")
    ('rui', 'jin')
    """
    syllables = pinyin_syllables()
    n = len(word)
    if n == 0 or n > 40 or not word.isascii() or not word.isalpha():
        return None
    best: list[tuple[str, ...] | None] = [None] * (n + 1)
    best[0] = ()
    for end in range(1, n + 1):
        for start in range(max(0, end - 6), end):
            prev = best[start]
            piece = word[start:end]
            if prev is not None and piece in syllables:
                candidate = (*prev, piece)
                current = best[end]
                if current is None or len(candidate) < len(current):
                    best[end] = candidate
    return best[n]


@lru_cache(maxsize=2048)
def fuzzy_syllable(syllable: str) -> str:
    """A syllable with the distinctions recognisers and accents blur merged.

    zh/z, ch/c, sh/s and n/l initials, and -ing/-in, -eng/-en finals: 心累科 (xin lei ke)
    sounds like 心内科 (xin nei ke), 长 like 藏.
    """
    for long, short in (("zh", "z"), ("ch", "c"), ("sh", "s"), ("l", "n")):
        if syllable.startswith(long):
            syllable = short + syllable[len(long) :]
            break
    if syllable.endswith(("ing", "eng")):
        syllable = syllable[:-1]
    return syllable


@lru_cache(maxsize=65536)
def char_sound(ch: str) -> str:
    """The fuzzy toneless syllable of one Chinese character (other characters as they are)."""
    return fuzzy_syllable(char_pinyin(ch)) if is_cjk(ch) else ch


@lru_cache(maxsize=65536)
def sounds(folded: str, *, fuzzy: bool = True) -> tuple[tuple[str, int, int], ...]:
    """The sound units of folded text, each with its span in the *compact* text.

    Chinese characters give their fuzzy syllable (``fuzzy=False``: the plain toneless one); a
    Latin word that is pinyin gives its syllables (so a typed ``ruijin`` and a spoken 瑞金
    meet); any other word or number is one unit as it is.
    """
    units: list[tuple[str, int, int]] = []
    pos = 0
    for word in folded.split(" "):
        for run in _RUNS.findall(word):
            if is_cjk(run[0]):
                sound = char_sound if fuzzy else char_pinyin
                units.extend((sound(ch), pos + i, pos + i + 1) for i, ch in enumerate(run))
            else:
                split = split_pinyin(run) if run.isalpha() else None
                if split:
                    at = pos
                    for syllable in split:
                        unit = fuzzy_syllable(syllable) if fuzzy else syllable
                        units.append((unit, at, at + len(syllable)))
                        at += len(syllable)
                else:
                    units.append((run, pos, pos + len(run)))
            pos += len(run)
    return tuple(units)


def sound_text(folded: str) -> str:
    """Fuzzy pinyin letters with no spaces (``瑞金医院`` -> ``ruijinyiyuan``): trigram text."""
    return "".join(unit for unit, _start, _end in sounds(folded))


@lru_cache(maxsize=1)
def _syllable_codes() -> dict[str, str]:
    codes: dict[str, str] = {}
    for syllable in sorted(pinyin_syllables()):
        codes.setdefault(fuzzy_syllable(syllable), chr(0xE000 + len(codes)))
    return codes


def sound_weight(units: Sequence[str]) -> float:
    """How much is said in ``units``, in syllables: a syllable counts 1, a word that is not
    pinyin about one per 3 letters. Lets a Latin name and a Chinese query be compared for
    how much of one the other covers."""
    codes = _syllable_codes()
    return sum(1.0 if unit in codes else max(1.0, len(unit) / 3) for unit in units)


def sound_key(units: Sequence[str]) -> str:
    """Sound units as a string with one character per unit (private-use code points).

    Comparing these strings compares syllables and whole words, not letters: 东方 (dong
    fang) is then one syllable away from 红房 (hong fang), not one letter. Words that are not
    pinyin get a code from their hash (keys live only in memory, so any process-wide code
    will do; a collision only makes two rare words sound alike).
    """
    codes = _syllable_codes()
    return "".join(codes.get(unit) or chr(0xF0000 + hash(unit) % 0xFFFE) for unit in units)


# --- filler words -------------------------------------------------------------------------

#: Politeness, hesitation and "I'd like to know": never part of what a caller asks about.
ZH_FILLERS: tuple[str, ...] = (
    "我想问一下",
    "我想问问",
    "我想问下",
    "我想了解一下",
    "我想了解",
    "我想知道一下",
    "我想知道",
    "我想查一下",
    "我想查查",
    "我想查",
    "我想听一下",
    "我想听听",
    "我想听",
    "我想咨询一下",
    "我想咨询",
    "我想问",
    "我想申请",
    "我要申请",
    "我想挂",
    "我要挂",
    "我想",
    "我要",
    "最近",
    "老是",
    "总是",
    "现在",
    "我要问一下",
    "我要问",
    "我要查一下",
    "我要查",
    "我要找",
    "我想找",
    "请帮我查一下",
    "请帮我查查",
    "请帮我查",
    "帮我查一下",
    "帮我查查",
    "帮我查",
    "帮我看一下",
    "帮我问一下",
    "麻烦问一下",
    "麻烦查一下",
    "麻烦告诉我",
    "麻烦讲一下",
    "麻烦说一下",
    "麻烦你",
    "麻烦",
    "请问一下",
    "请问下",
    "请问",
    "请告诉我",
    "告诉我",
    "咨询一下",
    "查一下",
    "查查",
    "问一下",
    "问下",
    "了解一下",
    "讲一下",
    "说一下",
    "你好",
    "您好",
    "就是那个",
    "就是",
    "那个",
    "这个",
    "喂",
    "嗯",
    "呃",
    "额",
    "哦",
)
#: Question words around a name: dropped for the *core* form of the query.
ZH_INTENT: tuple[str, ...] = (
    "多少钱一盒",
    "一盒多少钱",
    "多少钱一瓶",
    "多少钱一支",
    "现在多少钱",
    "多少钱",
    "价格是多少",
    "价钱是多少",
    "的价格",
    "价格",
    "价钱",
    "几块钱",
    "贵不贵",
    "怎么吃",
    "怎么用",
    "怎么服用",
    "怎么服",
    "一天能吃几次",
    "一天吃几次",
    "能吃几次",
    "吃几次",
    "是处方药吗",
    "是不是处方药",
    "处方药吗",
    "有什么用",
    "治什么",
    "在什么地方",
    "在哪个楼",
    "在哪里",
    "在哪儿",
    "在哪",
    "哪里",
    "怎么走",
    "怎么去",
    "的地址",
    "地址",
    "的电话是多少",
    "电话是多少",
    "电话号码",
    "的电话",
    "电话",
    "几点开门",
    "几点关门",
    "几点上班",
    "周几上班",
    "开不开门",
    "开不开",
    "开门吗",
    "开吗",
    "周末开不开",
    "周六开不开",
    "周末开",
    "周六开",
    "周日开",
    "周末",
    "周六",
    "周日",
    "门诊时间",
    "的时间",
    "在几楼",
    "几楼",
    "哪个楼",
    "哪天出诊",
    "哪天坐诊",
    "什么时候坐诊",
    "什么时候出诊",
    "什么时候上班",
    "什么时候打",
    "什么时候",
    "出诊时间",
    "是看什么的",
    "是看什么",
    "看什么的",
    "看什么",
    "擅长什么",
    "的号",
    "挂个号",
    "医生",
    "大夫",
    "主任医师",
    "主任",
    "教授",
    "专家",
    "平时要注意什么",
    "要注意什么",
    "注意什么",
    "怎么办",
    "怎么处理",
    "怎么回事",
    "是什么",
    "什么",
)
#: Particles dropped only at either end of what is left ("…怎么办啊", "六院的…").
ZH_EDGE_PARTICLES = "的了吗呢吧呀啊嘛"

EN_FILLERS: frozenset[str] = frozenset(
    words(
        "i i'd id want wanna would like to know please tell me about can could you "
        "hello hi hey um uh er erm ok okay so just need some information info looking "
        "for find help with a an the my"
    )
)
EN_INTENT: frozenset[str] = frozenset(
    words(
        "what whats is are was how much many does do did cost costs price prices "
        "pricing where when which who address location phone number telephone call "
        "opening open hours hour time times get go there at in of for on from and or to "
        "is it dr doctor prof professor mr mrs ms clinic schedule details detail"
    )
)
_ZH_FILLER_RE = re.compile("|".join(sorted(map(re.escape, ZH_FILLERS), key=len, reverse=True)))
_ZH_INTENT_RE = re.compile("|".join(sorted(map(re.escape, ZH_INTENT), key=len, reverse=True)))


def _strip_edges(text: str) -> str:
    return text.strip(ZH_EDGE_PARTICLES + " ")


def strip_fillers(folded: str) -> tuple[str, str]:
    """The *light* and *core* forms of a folded query (filler words removed).

    Light drops politeness and hesitation ("请问", "我想问一下", "um"); core also drops the
    question around the name ("多少钱", "在哪里", "price", "where is"). Either falls back to
    the previous form when nothing would be left.
    """
    words = folded.split(" ")
    light_words = [w for w in words if w not in EN_FILLERS]
    light = " ".join(_strip_edges(_ZH_FILLER_RE.sub(" ", w)) for w in light_words)
    light = " ".join(light.split()) or folded
    core_words = [w for w in light.split(" ") if w not in EN_INTENT]
    pieces = [
        _strip_edges(piece)
        for word in core_words
        for piece in _ZH_INTENT_RE.sub(" ", word).split(" ")
    ]
    pieces = [p for p in pieces if p]
    if any(len(p) >= 2 for p in pieces):
        # A lone character left between question words ("中暑了怎么办办") is noise.
        pieces = [p for p in pieces if len(p) >= 2 or not is_cjk(p)]
    core = " ".join(pieces) or light
    return light, core


# --- index tokens -------------------------------------------------------------------------


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def deletions(word: str) -> list[str]:
    """The word with one letter left out, each way (``hosptial`` and ``hospital`` share
    ``hosptal``): a typo (one letter wrong, missing, extra, or two swapped) leaves the
    mistyped and the right word with a deletion in common."""
    if not 5 <= len(word) <= 14 or not word.isalpha():
        return []
    return list(dict.fromkeys(word[:i] + word[i + 1 :] for i in range(len(word))))


def index_tokens(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Search tokens of folded ``names``: (strong tokens, weak tokens), each deduplicated.

    Strong: Chinese character bigrams and skip-bigrams (characters 1 and 3), pairs of
    consecutive syllables (``ruijin``; both the exact and the fuzzy pinyin, from characters or
    from a pinyin word) and Latin words; a 1-character name is its own token. A 2-character
    query is one bigram, so it matches without a trigram index, and a homophone shares the
    syllable pair.

    Weak (looked up for a word no entry has, or when the strong ones find too little):
    single characters and syllables, and the one-letter deletions of Latin words (typos).
    """
    strong: list[str] = []
    weak: list[str] = []
    for name in names:
        name_strong, name_weak = _name_tokens(name)
        strong.extend(name_strong)
        weak.extend(name_weak)
    return _dedupe(strong), _dedupe(weak)


@lru_cache(maxsize=65536)
def _name_tokens(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    codes = _syllable_codes()
    strong: list[str] = []
    weak: list[str] = []
    if name:
        for run in _RUNS.findall(name):
            if is_cjk(run[0]):
                strong.extend(run[i : i + 2] for i in range(len(run) - 1))
                # Skip-bigrams: with a character missing from the query (膀囊肿 for 膀胱囊肿)
                # its bigram 膀囊 is the name's skip-bigram; with one extra or wrong, the other
                # way round.
                strong.extend(run[i] + run[i + 2] for i in range(len(run) - 2))
                if len(run) == 1:
                    strong.append(run)
                weak.extend(run)
            else:
                strong.append(run)
                weak.extend(deletions(run))
        for fuzzy in (True, False):
            units = [unit for unit, _start, _end in sounds(name, fuzzy=fuzzy)]
            syllables = [fuzzy_syllable(unit) in codes for unit in units]
            for i in range(len(units) - 1):
                if syllables[i] and syllables[i + 1]:
                    strong.append(units[i] + units[i + 1])
            if len(units) == 1 and syllables[0]:
                strong.append(units[0])
            if fuzzy:
                weak.extend(unit for unit, is_syl in zip(units, syllables, strict=True) if is_syl)
    return tuple(_dedupe(strong)), tuple(_dedupe(weak))


@dataclass(frozen=True)
class QueryText:
    """A query in the forms search needs."""

    raw: str
    light: str
    core: str

    @property
    def forms(self) -> Sequence[str]:
        """The distinct compact forms to score against (core first)."""
        return _dedupe([self.core.replace(" ", ""), self.light.replace(" ", "")])


def read_query(query: str) -> QueryText:
    """Fold a query (bounded length) and strip its filler words."""
    folded = fold(query[: MAX_QUERY_CHARS * 2])[:MAX_QUERY_CHARS].strip()
    light, core = strip_fillers(folded)
    return QueryText(raw=folded, light=light, core=core)
