"""Knowledge-base search: one ranking for the IVR, the command line and the API.

A query goes through three steps:

1. **Reading** (:func:`knowledge_base.text.read_query`): NFKC, lower case, punctuation dropped,
   filler words stripped in two strengths (*light*: "请问", "我想问一下", "um"; *core*: also
   "多少钱", "在哪里", "price", "where is").
2. **Prefilter** in the database, bounded to a few dozen candidates. Every entry has search
   tokens made at import time (:func:`knowledge_base.text.index_tokens`): Chinese character
   bigrams, pairs of fuzzy-pinyin syllables (``ruijin``; a homophone such as 锐金 gives the
   same pair) and Latin words. A 2-character query is a single bigram token, so it matches
   directly (a trigram index needs 3 characters). The query's tokens are looked up rarest
   first, within a budget of postings, and entries are ranked by the summed rarity (IDF) of
   the tokens they share with the query:

   * SQLite: FTS5 (``kb_search_fts``) gives the postings and ``fts5vocab`` the frequencies.
     FTS5's own ``bm25()`` costs about 10 us per matching row, too much for common tokens at
     100k entries; plain postings cost well under 1 us.
   * PostgreSQL: a btree inverted index (``kb_search_postings``: token, entry) gives the
     postings and ``kb_search_tokens`` the frequencies; pg_trgm similarity on the token
     vocabulary finds the known words closest to a mistyped one. Measured at 100k entries
     on 2 cores: pg_trgm ``word_similarity``/``similarity`` over the entries' names costs
     5-20 ms per look-up (too many rows share common trigrams), a GIN array look-up ~3 ms
     per query, the btree postings ~1 ms.

   A Latin word found nowhere (a typo) is looked up by its one-letter deletions (shared
   with the right word whatever the single slip) and, on PostgreSQL, by pg_trgm; if the
   strong tokens find nothing, single characters and syllables are tried. Hospital
   names said inside a query are also found in an in-memory catalogue of hospital names
   (refreshed when the hospitals change), so "瑞金医院心内科" finds 瑞金医院 however common
   心内科 is.
3. **Re-rank** in Python with rapidfuzz, on characters, on syllables (one code point per
   fuzzy-pinyin syllable, so 东方 is a syllable away from 红房, not a letter) and on words for
   multi-word English: an exact name or alias scores 1; a name inside a longer query
   ("…阿司匹林多少钱") or a query that is part of a name ("二甲" for 二甲双胍) scores by how much
   of the other it covers. When the query names a hospital ("瑞金医院心内科", "cardiology at
   Ruijin"), the departments and experts of that hospital are fetched and scored on the rest
   of the query, so the department of *that* hospital comes first.

The result says when it is **ambiguous**: the top two are different entries with nearly the
same, plausible score (the caller should be asked which one).
"""

from __future__ import annotations

import heapq
import math
import threading
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from callcenter.db.engine import Database, is_sqlite

from .models import ENTITY_TYPES
from .text import (
    ZH_EDGE_PARTICLES,
    QueryText,
    deletions,
    fold,
    index_tokens,
    read_query,
    sound_key,
    sound_weight,
    sounds,
    split_pinyin,
)
from .text import words as word_list

#: How close (in score) the second hit must be to the first for the result to be ambiguous.
AMBIGUITY_MARGIN = 0.04
#: The lowest score that counts as a plausible answer.
PLAUSIBLE = 0.55
#: Pinyin-only matches (homophones) score a little below the same match in characters.
PINYIN_WEIGHT = 0.96
#: Weight of the kind of name matched: name, alias/brand, keyword.
KIND_WEIGHT = {"n": 1.0, "a": 0.995, "k": 0.98}
#: Type order for equal scores.
TYPE_RANK = {t: i for i, t in enumerate(ENTITY_TYPES)}
#: Partial-match quality (0-100) above which a hospital's name counts as said in the query.
MENTION_QUALITY = 88.0
#: A hospital matching the query this well is what the query is about (no composites).
WHOLE_NAME = 0.9
#: Hospitals (best scores first) examined for being named inside the query.
MENTION_CANDIDATES = 6
#: A department matched without its hospital named is less specific than an article or a drug.
DEPARTMENT_ALONE = 0.97
#: The rest of a query after a hospital's name must match a child at least this well.
COMPOSITE_MIN = 0.5
#: Most children (departments, experts) of named hospitals fetched for one query.
MAX_CHILDREN = 500
#: Postings (token, entry) the prefilter reads for one query, rarest tokens first.
POSTINGS_BUDGET = 2500
#: Postings read for the variants of mistyped words.
TYPO_BUDGET = 1200
#: Most tokens looked up for one query (the rarest ones carry the information).
MAX_TOKENS = 16
#: Postings read for any one token (a very common token is sampled, not read whole).
TOKEN_CAP = 1500
#: Weak tokens (single characters, syllables, typo variants) count this much of a strong one.
WEAK_WEIGHT = 0.4
#: Fewer candidates than this from strong tokens: try the weak ones too (single characters).
FEW = 1

_COLUMNS = (
    "s.id, s.entity_type, s.entity_id, s.name_zh, s.name_en, s.hospital_id, "
    "s.department_id, s.expires_on, s.terms"
)


@dataclass(frozen=True)
class Hit:
    """One search result: entity type and id, display names, score 0..1."""

    type: str
    id: str
    name_zh: str
    name_en: str
    score: float
    hospital_id: str | None = None


@dataclass(frozen=True)
class SearchResult:
    """Ranked hits for a query; ``ambiguous`` when the top two are too close to choose.

    ``query`` is the query as it was understood (folded, filler words removed).
    """

    query: str
    hits: list[Hit] = field(default_factory=list)
    ambiguous: bool = False

    def to_data(self) -> dict[str, Any]:
        """Plain data, as the CLI's ``--json`` and the HTTP API give it."""
        return {
            "query": self.query,
            "ambiguous": self.ambiguous,
            "hits": [
                {
                    "type": h.type,
                    "id": h.id,
                    "name_zh": h.name_zh,
                    "name_en": h.name_en,
                    "score": h.score,
                }
                for h in self.hits
            ],
        }

    @property
    def top(self) -> Hit | None:
        """The best hit, if any."""
        return self.hits[0] if self.hits else None


@dataclass
class _Form:
    """A query form: folded text, compact characters, sound key (one character per syllable)
    with the compact span of each key character, and its words when it is multi-word Latin."""

    folded: str
    text: str
    key: str
    spans: list[tuple[int, int]]
    words: tuple[str, ...] | None = None
    letters: str = ""
    weight: float = 0.0

    @classmethod
    def of(cls, folded: str) -> _Form:
        units = sounds(folded)
        words = tuple(folded.split(" "))
        latin = len(words) > 1 and all(w.isascii() for w in words)
        return cls(
            folded,
            folded.replace(" ", ""),
            sound_key([unit for unit, _start, _end in units]),
            [(start, end) for _unit, start, end in units],
            words if latin else None,
            "".join(unit for unit, _start, _end in units),
            sound_weight([unit for unit, _start, _end in units]),
        )

    def without(self, start: int, end: int) -> str:
        """The folded text with compact characters ``start:end`` cut out."""
        out: list[str] = []
        compact_pos = 0
        for ch in self.folded:
            if ch == " ":
                out.append(ch)
                continue
            if not start <= compact_pos < end:
                out.append(ch)
            elif not out or out[-1] != " ":
                out.append(" ")
            compact_pos += 1
        return fold("".join(out))


@dataclass(frozen=True)
class _Term:
    kind: str
    text: str
    key: str
    words: tuple[str, ...] | None
    cjk: bool
    letters: str
    weight: float


def _parse_terms(terms: str) -> tuple[_Term, ...]:
    parsed = []
    for line in terms.split("\n"):
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1]:
            continue
        folded = parts[1]
        words = tuple(folded.split(" ")) if " " in folded and folded.isascii() else None
        compact = folded.replace(" ", "")
        units = parts[2].split(" ")
        parsed.append(
            _Term(
                parts[0],
                compact,
                sound_key(units),
                words,
                not compact.isascii(),
                "".join(units),
                sound_weight(units),
            )
        )
    return tuple(parsed)


@dataclass
class _Row:
    key: int
    etype: str
    entity_id: str
    name_zh: str
    name_en: str
    hospital_id: str | None
    department_id: str | None
    expires_on: date | None
    terms: tuple[_Term, ...]
    score: float = 0.0
    bonus: float = 0.0
    #: The query form the row's score came from when it was a hospital-plus-rest match.
    rest: _Form | None = None


def _pair(
    query: str, name: str, ratio: float, partial: float, lq: float = 0, ln: float = 0
) -> float:
    """Similarity of a query form and a name, from rapidfuzz's ratio and partial_ratio.

    Equal strings score 1. Otherwise the better of the plain ratio and a containment score:
    a query inside a longer name, or a name inside a longer query, scores by how much of
    the longer one it covers. ``lq``/``ln`` give the lengths to measure coverage in when
    the strings are sound keys (their :func:`~knowledge_base.text.sound_weight`).
    """
    if query == name:
        return 1.0
    lq, ln = lq or len(query), ln or len(name)
    if lq == 0 or ln == 0:
        return 0.0
    if lq == ln:
        return ratio / 100
    if lq < ln:
        contained = partial / 100 * (0.5 + 0.45 * lq / ln)
    else:
        contained = partial / 100 * (0.55 + 0.4 * ln / lq)
    return max(ratio / 100, contained)


#: Words that say little about which entry is meant (every hospital is a "hospital").
GENERIC_WORDS = frozenset(
    word_list(
        "hospital hospitals center centre university shanghai of the and s people "
        "municipal affiliated school medical clinic department dept campus branch"
    )
)


def _weight(word: str) -> float:
    return len(word) * (0.3 if word in GENERIC_WORDS else 1.0)


def _word_score(query: Sequence[str], name: Sequence[str]) -> float:
    """Word-level similarity of multi-word English: same words in any order, or a subset.

    Each side's coverage is the share of its letters (generic words counting less) in
    words the other side has; typos were mended beforehand (:func:`_mend_typos`).
    """
    common = set(query) & set(name)
    if not common:
        return 0.0
    total_q = sum(_weight(w) for w in query)
    total_n = sum(_weight(w) for w in name)
    covered_q = sum(_weight(w) for w in query if w in common) / total_q
    covered_n = sum(_weight(w) for w in name if w in common) / total_n
    high, low = max(covered_q, covered_n), min(covered_q, covered_n)
    return 0.5 * high + 0.45 * low + 0.05 * covered_q * covered_n


def _mend_typos(form: _Form, terms: Sequence[_Term]) -> _Form:
    """``form`` with each English word no candidate has replaced by the closest one that does
    ("hosptial" -> "hospital"), for word-level scoring."""
    if form.words is None:
        return form
    known = {w for t in terms if t.words is not None for w in t.words}
    mended = []
    for word in form.words:
        if word in known or len(word) < 4:
            mended.append(word)
            continue
        match = process.extractOne(word, known, scorer=fuzz.ratio, score_cutoff=80)
        mended.append(match[0] if match is not None else word)
    words = tuple(mended)
    return form if words == form.words else replace(form, words=words)


def _scores(form: _Form, terms: Sequence[_Term]) -> list[float]:
    """Best of character, sound and word similarity of ``form`` against each term.

    Multi-word English against an English name of 3+ words is scored on words only:
    letter-level similarity of long names mostly measures the filler they share ("hospital
    of traditional chinese medicine"). Everything else goes through rapidfuzz in C; only terms
    that come close on some measure (a ratio of 50, a partial ratio of 60) are looked at in
    Python.
    """
    out = [0.0] * len(terms)
    if not terms:
        return out
    words = _mend_typos(form, terms).words
    letters: list[int] = []
    if words is None:
        letters = list(range(len(terms)))
    else:
        shared = set(words)
        for i, term in enumerate(terms):
            if term.words is not None and shared.intersection(term.words):
                out[i] = 1.0 if term.text == form.text else _word_score(words, term.words)
            if term.words is None or len(term.words) <= 2:
                letters.append(i)  # a short name ("Fu Lingzhi"): letters still tell typos
    texts = [terms[i].text for i in letters]
    keys = [terms[i].key for i in letters]
    close: dict[int, list[float]] = {}
    for slot, (query, choices, scorer, cutoff) in enumerate(
        (
            (form.text, texts, fuzz.ratio, 50),
            (form.text, texts, fuzz.partial_ratio, 60),
            (form.key, keys, fuzz.ratio, 50),
            (form.key, keys, fuzz.partial_ratio, 60),
        )
    ):
        for _choice, score, index in process.extract(
            query, choices, scorer=scorer, limit=None, score_cutoff=cutoff
        ):
            close.setdefault(index, [0.0, 0.0, 0.0, 0.0])[slot] = score
    for j, (r_c, p_c, r_k, p_k) in close.items():
        i = letters[j]
        term = terms[i]
        chars = _pair(form.text, term.text, r_c, p_c)
        if chars >= 1.0:
            out[i] = 1.0
            continue
        sound = _pair(form.key, term.key, r_k, p_k, form.weight, term.weight) * PINYIN_WEIGHT
        out[i] = max(out[i], chars, sound)
    return out


@dataclass
class _Mention:
    """A hospital said inside the query, and what is left of the query around it."""

    hospital_id: str
    span: int
    quality: float
    rest: _Form


@dataclass
class _Catalogue:
    """The hospitals' names in memory, for finding a hospital said inside a query."""

    fingerprint: tuple[Any, ...] = (-1,)
    rows: dict[int, _Row] = field(default_factory=dict)
    by_text: dict[str, set[int]] = field(default_factory=dict)
    by_key: dict[str, set[int]] = field(default_factory=dict)
    longest: int = 0


class KnowledgeSearch:
    """Search over the knowledge base in a :class:`~callcenter.db.engine.Database`.

    Keep one per process. It holds prepared SQL, a cache of parsed index rows keyed by their
    content, and the hospitals' names (reloaded whenever the hospitals change), so an import
    is visible to the next search. Searches only read: they run on the driver's cursor
    outside the application's write transactions (no ``BEGIN IMMEDIATE`` on SQLite), so
    many can run at once.
    """

    def __init__(self, db: Database, *, candidates: int = 40) -> None:
        self.db = db
        self.candidates = candidates
        self._sqlite = is_sqlite(db.engine)
        self._terms: dict[str, tuple[_Term, ...]] = {}
        self._catalogue = _Catalogue()
        self._lock = threading.Lock()

    # -- public ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        types: Collection[str] | None = None,
        language: str | None = None,
        limit: int = 5,
        today: date | None = None,
    ) -> SearchResult:
        """Rank knowledge-base entries for ``query`` (Chinese, English or pinyin).

        ``types`` restricts the entity types (``hospital``, ``department``, ``expert``,
        ``drug``, ``article``, ``service``); ``language`` (``zh``/``en``) breaks ties in
        favour of names in that language; ``today`` leaves out articles whose latest version
        has expired. Scores are 0..1; ``ambiguous`` is set when the top two hits are different
        entries with nearly the same plausible score.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        wanted: set[str] | None = None
        if types is not None:
            unknown = set(types) - set(ENTITY_TYPES)
            if unknown:
                raise ValueError(f"unknown entity types: {', '.join(sorted(unknown))}")
            wanted = set(types)
            if not wanted:
                return SearchResult(query="")
        qt = read_query(query)
        if not qt.core:
            return SearchResult(query="")
        forms = [_Form.of(f) for f in dict.fromkeys([qt.core, qt.light])]
        with self.db.engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                rows, version = self._prefilter(cursor, qt, wanted)
                by_key = {r.key: r for r in rows}
                places = wanted is None or bool(wanted & {"hospital", "department", "expert"})
                if places:
                    for hospital in self._said_hospitals(cursor, forms, version):
                        by_key.setdefault(hospital.key, hospital)
                rows = list(by_key.values())
                self._rank(rows, forms, language)
                mentions = self._mentions(rows, forms) if places else []
                if mentions:
                    hospitals = list(dict.fromkeys(m.hospital_id for m in mentions))
                    extra = [r for r in self._children(cursor, hospitals) if r.key not in by_key]
                    self._rank(extra, forms, language)
                    by_key.update((r.key, r) for r in extra)
                    self._compose(list(by_key.values()), mentions)
            finally:
                cursor.close()
        ranked = [
            r
            for r in by_key.values()
            if r.score > 0
            and (wanted is None or r.etype in wanted)
            and not (today is not None and r.etype == "article" and _expired(r, today))
        ]
        self._break_ties(ranked, forms)
        ranked.sort(key=lambda r: (-(r.score + r.bonus), TYPE_RANK[r.etype], r.entity_id))
        hits = [
            Hit(
                r.etype,
                r.entity_id,
                r.name_zh,
                r.name_en,
                round(min(r.score, 1.0), 4),
                r.hospital_id,
            )
            for r in ranked[: max(limit, 2)]
        ]
        ambiguous = (
            len(hits) >= 2
            and hits[1].score >= PLAUSIBLE
            and hits[0].score - hits[1].score < AMBIGUITY_MARGIN
        )
        return SearchResult(query=qt.core, hits=hits[:limit], ambiguous=ambiguous)

    # -- database -------------------------------------------------------------------------

    def _execute(self, cursor: Any, sql: str, params: Sequence[Any]) -> list[Any]:
        """Run ``sql`` written with ``?`` placeholders (SQLite) and return all rows."""
        cursor.execute(sql, list(params))
        return list(cursor.fetchall())

    def _select(
        self, cursor: Any, where: str, values: Sequence[Any], extra: str = ""
    ) -> list[_Row]:
        """Index rows where ``where`` (a column) is one of ``values``."""
        if not values:
            return []
        if self._sqlite:
            marks = ", ".join("?" * len(values))
            return self._rows(
                self._execute(
                    cursor,
                    f"SELECT {_COLUMNS} FROM kb_search_index s WHERE {where} IN ({marks}){extra}",  # noqa: S608 (constants and placeholders only)
                    values,
                )
            )
        cursor.execute(
            f"SELECT {_COLUMNS} FROM kb_search_index s WHERE {where} = ANY(%(v)s){extra}",  # noqa: S608 (constants and placeholders only)
            {"v": list(values)},
        )
        return self._rows(cursor.fetchall())

    def _rows(self, records: Sequence[Sequence[Any]]) -> list[_Row]:
        rows = []
        cache = self._terms
        for rec in records:
            terms_text = rec[8] or ""
            terms = cache.get(terms_text)
            if terms is None:
                terms = _parse_terms(terms_text)
                with self._lock:
                    if len(cache) > 200_000:
                        cache.clear()
                    cache[terms_text] = terms
            expires = rec[7]
            if isinstance(expires, str):
                expires = date.fromisoformat(expires)
            rows.append(
                _Row(rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], expires, terms)
            )
        return rows

    def _frequencies(self, cursor: Any, strong: list[str], weak: list[str]) -> dict[str, int]:
        """How many entries have each token (weak tokens keyed ``~token``)."""
        found: dict[str, int] = {}
        if self._sqlite:
            tokens = list(dict.fromkeys(strong + weak))
            if tokens:
                marks = ", ".join("?" * len(tokens))
                for term, col, doc in self._execute(
                    cursor,
                    f"SELECT term, col, doc FROM kb_search_vocab WHERE term IN ({marks})",  # noqa: S608 (constants and placeholders only)
                    tokens,
                ):
                    found[term if col == "strong" else f"~{term}"] = int(doc)
            return found
        keys = list(dict.fromkeys(strong + [f"~{t}" for t in weak]))
        if keys:
            cursor.execute(
                "SELECT token, df FROM kb_search_tokens WHERE token = ANY(%(t)s)", {"t": keys}
            )
            found.update((token, int(df)) for token, df in cursor.fetchall())
        return found

    def _postings(self, cursor: Any, tokens: list[str]) -> dict[str, list[int]]:
        """Entry ids per token (``~`` for weak tokens), at most TOKEN_CAP each."""
        if not tokens:
            return {}
        out: dict[str, list[int]] = defaultdict(list)
        if self._sqlite:
            parts = []
            params: list[Any] = []
            for i, token in enumerate(tokens):
                column = "weak" if token.startswith("~") else "strong"
                parts.append(
                    f"SELECT {i}, hit FROM (SELECT rowid AS hit FROM kb_search_fts "  # noqa: S608 (constants and placeholders only)
                    f"WHERE kb_search_fts MATCH ? LIMIT {TOKEN_CAP})"
                )
                params.append(f'{column} : "{token.lstrip("~")}"')
            for index, rowid in self._execute(cursor, " UNION ALL ".join(parts), params):
                out[tokens[index]].append(rowid)
            return out
        strong = [t for t in tokens if not t.startswith("~")]
        weak = [t[1:] for t in tokens if t.startswith("~")]
        if strong:
            cursor.execute(
                "SELECT t, p.entry_id FROM unnest(%(s)s::text[]) t CROSS JOIN LATERAL ("  # noqa: S608 (constants and placeholders only)
                "SELECT entry_id FROM kb_search_postings WHERE token = t "
                f"LIMIT {TOKEN_CAP}) p",
                {"s": strong},
            )
            for token, rowid in cursor.fetchall():
                out[token].append(rowid)
        if weak:
            cursor.execute(
                "SELECT '~' || t, x.id FROM unnest(%(w)s::text[]) t CROSS JOIN LATERAL ("  # noqa: S608 (constants and placeholders only)
                f"SELECT id FROM kb_search_index WHERE weak @> ARRAY[t] LIMIT {TOKEN_CAP}) x",
                {"w": weak},
            )
            for token, rowid in cursor.fetchall():
                out[token].append(rowid)
        return out

    def _similar_words(self, cursor: Any, words: list[str]) -> list[str]:
        """PostgreSQL: known tokens closest to words found nowhere (typos), by pg_trgm."""
        cursor.execute("SET LOCAL pg_trgm.similarity_threshold = 0.4")
        cursor.execute(
            "SELECT x.token FROM unnest(%(w)s::text[]) w CROSS JOIN LATERAL ("
            "SELECT token FROM kb_search_tokens WHERE lower(token) %% w "
            "AND token ~ '^[a-z]+$' ORDER BY similarity(lower(token), w) DESC, token "
            "LIMIT 3) x",
            {"w": words[:4]},
        )
        return [token for (token,) in cursor.fetchall()]

    def _prefilter(
        self, cursor: Any, qt: QueryText, wanted: set[str] | None
    ) -> tuple[list[_Row], int | None]:
        """The candidates (entries sharing the rarest tokens with the query, best first), and
        the hospitals' version when the database said it on the way (else ``None``)."""
        strong, weak = index_tokens([qt.light, qt.core])
        latin = [w for w in dict.fromkeys(qt.core.split(" ")) if w.isascii() and w.isalpha()]
        version: int | None = None
        # A Latin word of 5+ letters that is not pinyin may be mistyped: if no entry has it,
        # its variants are looked up too (the slower path).
        suspects = [w for w in latin if len(w) >= 5 and len(split_pinyin(w) or ()) < 2]
        if not self._sqlite and strong and not suspects:
            rows, version = self._prefilter_pg(cursor, strong, wanted)
            if len(rows) >= FEW:
                return rows, version
        df = self._frequencies(cursor, strong, [])
        chosen = _budget([t for t in strong if t in df], df)
        missing = [w for w in suspects if w not in df]
        if missing:
            # One letter left out of the mistyped word may give a known word (an extra
            # letter) or a deletion of one (a wrong, missing or swapped letter).
            variants = list(dict.fromkeys(v for w in missing for v in deletions(w)))
            weak_keys = list(dict.fromkeys([*missing, *variants]))
            similar = [] if self._sqlite else self._similar_words(cursor, missing)
            df.update(self._frequencies(cursor, [*variants, *similar], weak_keys))
            typo = [t for t in [*variants, *similar] if t in df and t not in chosen]
            typo += [f"~{t}" for t in weak_keys if f"~{t}" in df]
            chosen += _budget(typo, df, budget=TYPO_BUDGET)
        scores = self._score_postings(self._postings(cursor, chosen), df)
        if len(scores) < FEW and weak:
            df.update(self._frequencies(cursor, [], weak))
            extra = _budget([f"~{t}" for t in weak if f"~{t}" in df], df)
            for key, value in self._score_postings(self._postings(cursor, extra), df).items():
                scores[key] = scores.get(key, 0.0) + value
        if not scores:
            return [], version
        keys = heapq.nsmallest(
            self.candidates * (5 if wanted else 1), scores, key=lambda key: (-scores[key], key)
        )
        rows = self._select(cursor, "s.id", keys)
        if wanted is not None:
            rows = [r for r in rows if r.etype in wanted]
        order = {key: i for i, key in enumerate(keys)}
        rows.sort(key=lambda r: order[r.key])
        return rows[: self.candidates], version

    def _prefilter_pg(
        self, cursor: Any, strong: list[str], wanted: set[str] | None
    ) -> tuple[list[_Row], int]:
        """PostgreSQL, in one round trip: choose the rarest tokens within the budget, read
        their postings, sum the IDF per entry and return the best entries, with the
        hospitals' version (for the catalogue).
        """
        typed = (
            "JOIN kb_search_index s2 ON s2.id = p.entry_id AND s2.entity_type = ANY(%(types)s) "
            if wanted is not None
            else ""
        )
        cursor.execute(
            "WITH f AS (SELECT token, df, "  # noqa: S608 (constants and placeholders only)
            "sum(LEAST(df, %(cap)s)) OVER (ORDER BY df, token) AS spent, "
            "row_number() OVER (ORDER BY df, token) AS n "
            "FROM kb_search_tokens WHERE token = ANY(%(toks)s)), "
            "c AS (SELECT f.token, ln(1.0 + t.total / GREATEST(f.df, 1)) AS w "
            "FROM f CROSS JOIN (SELECT max(df)::float8 * 20 + 1000 AS total FROM f) t "
            "WHERE f.n = 1 OR (f.spent <= %(budget)s AND f.df <= %(cap)s AND f.n <= %(most)s)), "
            "p AS (SELECT x.entry_id, c.w FROM c CROSS JOIN LATERAL ("
            "SELECT entry_id FROM kb_search_postings WHERE token = c.token LIMIT %(cap)s) x), "
            f"top AS (SELECT p.entry_id, sum(p.w) AS score FROM p {typed}"
            "GROUP BY p.entry_id ORDER BY score DESC, p.entry_id LIMIT %(k)s) "
            f"SELECT 'r', {_COLUMNS}, top.score, NULL "
            "FROM top JOIN kb_search_index s ON s.id = top.entry_id "
            "UNION ALL SELECT 'v', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
            "NULL, version::text FROM kb_search_state WHERE name = 'hospitals'",
            {
                "toks": strong,
                "cap": TOKEN_CAP,
                "budget": POSTINGS_BUDGET,
                "most": MAX_TOKENS,
                "k": self.candidates,
                "types": sorted(wanted or ()),
            },
        )
        records = cursor.fetchall()
        version = next((int(r[11]) for r in records if r[0] == "v"), 0)
        hits = [r for r in records if r[0] == "r"]
        hits.sort(key=lambda r: (-float(r[10]), r[1]))
        return self._rows([r[1:10] for r in hits]), version

    def _score_postings(
        self, postings: dict[str, list[int]], df: dict[str, int]
    ) -> dict[int, float]:
        total = max(df.values(), default=1) * 20 + 1000
        scores: dict[int, float] = defaultdict(float)
        for token, ids in postings.items():
            weight = math.log(1 + total / max(1, df.get(token, len(ids))))
            if token.startswith("~"):
                weight *= WEAK_WEIGHT
            for key in ids:
                scores[key] += weight
        return scores

    def _children(self, cursor: Any, hospitals: list[str]) -> list[_Row]:
        return self._select(cursor, "s.hospital_id", hospitals, f" LIMIT {MAX_CHILDREN}")

    def _said_hospitals(self, cursor: Any, forms: list[_Form], version: int | None) -> list[_Row]:
        """Hospitals whose exact name, alias or sound appears inside the query."""
        catalogue = self._load_catalogue(cursor, version)
        found: set[int] = set()
        for form in forms:
            if form.words is not None:
                # English: names are made of whole words, so try runs of whole words only.
                pieces = [
                    "".join(form.words[i:j])
                    for i in range(len(form.words))
                    for j in range(i + 1, len(form.words) + 1)
                ]
            else:
                text = form.text
                pieces = [
                    text[start : start + size]
                    for size in range(2, min(len(text), catalogue.longest) + 1)
                    for start in range(len(text) - size + 1)
                ]
            for piece in pieces:
                found.update(catalogue.by_text.get(piece, ()))
            key = form.key
            for size in range(2, min(len(key), catalogue.longest) + 1):
                for start in range(len(key) - size + 1):
                    found.update(catalogue.by_key.get(key[start : start + size], ()))
        return [replace(catalogue.rows[key]) for key in sorted(found)]

    def _load_catalogue(self, cursor: Any, version: int | None) -> _Catalogue:
        if version is None:
            cursor.execute("SELECT version FROM kb_search_state WHERE name = 'hospitals'")
            version = int((cursor.fetchone() or (0,))[0])
        fingerprint = (version,)
        catalogue = self._catalogue
        if catalogue.fingerprint == fingerprint:
            return catalogue
        fresh = _Catalogue(fingerprint)
        for row in self._select(cursor, "s.entity_type", ["hospital"]):
            fresh.rows[row.key] = row
            for term in row.terms:
                if len(term.text) >= 2:
                    fresh.by_text.setdefault(term.text, set()).add(row.key)
                    fresh.longest = max(fresh.longest, len(term.text))
                # By sound only for 3+ syllables: a 2-syllable homophone of a short name is
                # too often an ordinary word (一院 / 医院).
                if len(term.key) >= 3 or (term.text.isascii() and len(term.key) >= 2):
                    fresh.by_key.setdefault(term.key, set()).add(row.key)
        with self._lock:
            self._catalogue = fresh
        return fresh

    # -- ranking --------------------------------------------------------------------------

    def _rank(self, rows: list[_Row], forms: list[_Form], language: str | None) -> None:
        """Score each row by its best-matching name against the query forms."""
        if not rows:
            return
        terms: list[_Term] = []
        owners: list[_Row] = []
        for row in rows:
            terms.extend(row.terms)
            owners.extend([row] * len(row.terms))
        best: dict[int, float] = {}
        bonus: dict[int, float] = {}
        want_cjk = None if language is None else not language.lower().startswith("en")
        for form in forms:
            for row, term, score in zip(owners, terms, _scores(form, terms), strict=True):
                weighted = score * KIND_WEIGHT.get(term.kind, 0.98)
                if row.etype == "department":
                    weighted *= DEPARTMENT_ALONE
                if weighted > best.get(row.key, 0.0):
                    best[row.key] = weighted
                    bonus[row.key] = 0.002 if want_cjk is not None and term.cjk == want_cjk else 0.0
        for row in rows:
            row.score = max(row.score, best.get(row.key, 0.0))
            row.bonus = bonus.get(row.key, 0.0)

    def _mentions(self, rows: list[_Row], forms: list[_Form]) -> list[_Mention]:
        """Hospitals named inside the query (each way it is named), with the rest of the query."""
        found: dict[str, dict[tuple[int, str], _Mention]] = {}
        hospitals = [r for r in rows if r.etype == "hospital" and r.score >= 0.5]
        hospitals.sort(key=lambda r: (-r.score, r.key))
        for row in hospitals[:MENTION_CANDIDATES]:
            for form in forms:
                for term in row.terms:
                    mention = _align(row.entity_id, form, term)
                    if mention is not None:
                        spans = found.setdefault(row.entity_id, {})
                        key = (mention.span, mention.rest.text)
                        if key not in spans or spans[key].quality < mention.quality:
                            spans[key] = mention
        ranked = sorted(
            found.items(),
            key=lambda item: (-max(m.span * m.quality for m in item[1].values()), item[0]),
        )
        mentions: list[_Mention] = []
        for _hospital, spans in ranked[:2]:
            best = sorted(spans.values(), key=lambda m: (-m.span * m.quality, m.rest.text))
            mentions.extend(best[:3])
        return mentions

    def _compose(self, rows: list[_Row], mentions: list[_Mention]) -> None:
        """Score departments and experts of a named hospital on the rest of the query.

        Not when the query is (nearly) the hospital's own full name: then the "rest" is part
        of that name ("... hospital of traditional chinese medicine"), not a department.
        """
        named = {r.entity_id: r.score for r in rows if r.etype == "hospital"}
        for mention in mentions:
            if named.get(mention.hospital_id, 0.0) >= WHOLE_NAME:
                continue
            children = [r for r in rows if r.hospital_id == mention.hospital_id]
            terms = [t for r in children for t in r.terms]
            scores = iter(_scores(mention.rest, terms))
            rest_len = len(mention.rest.text)
            total = mention.span + rest_len
            for row in children:
                own = max((next(scores) for _term in row.terms), default=0.0)
                if own < COMPOSITE_MIN:
                    continue
                composite = (mention.span * mention.quality + rest_len * own) / total * 0.995
                if composite > row.score:
                    row.score = composite
                    row.rest = mention.rest

    def _break_ties(self, rows: list[_Row], forms: list[_Form]) -> None:
        """Among near-equal top rows, prefer the closest spelling or sound (瑞 for 端)."""
        if not rows:
            return
        top = max(r.score for r in rows)
        for row in rows:
            if row.score < top - 0.02:
                continue
            closest = 0.0
            for form in [row.rest] if row.rest is not None else forms:
                for term in row.terms:
                    closest = max(
                        closest,
                        Levenshtein.normalized_similarity(form.text, term.text),
                        Levenshtein.normalized_similarity(form.key, term.key),
                        Levenshtein.normalized_similarity(form.letters, term.letters),
                    )
            row.bonus += 0.004 * closest


def _align(hospital_id: str, form: _Form, term: _Term) -> _Mention | None:
    """Where ``term`` (by characters, or by sound) sits inside ``form``, if it clearly does."""
    if len(term.text) < 2 or len(term.text) >= len(form.text):
        return None
    span: tuple[int, int] | None = None
    quality = 0.0
    aligned = fuzz.partial_ratio_alignment(term.text, form.text, score_cutoff=MENTION_QUALITY)
    if aligned is not None and aligned.dest_end > aligned.dest_start:
        span, quality = (aligned.dest_start, aligned.dest_end), aligned.score / 100
    elif (len(term.key) >= 3 or form.text.isascii()) and len(term.key) < len(form.key):
        # By sound only for 3+ syllables in Chinese: a 2-character homophone of a hospital's
        # short name is too often an ordinary word (一院 / 医院).
        aligned = fuzz.partial_ratio_alignment(term.key, form.key, score_cutoff=MENTION_QUALITY)
        if aligned is not None and aligned.dest_end > aligned.dest_start:
            start = form.spans[aligned.dest_start][0]
            end = form.spans[aligned.dest_end - 1][1]
            span, quality = (start, end), aligned.score / 100 * PINYIN_WEIGHT
    if span is None:
        return None
    rest = _strip_particles(form.without(*span))
    if len(rest.replace(" ", "")) < 2 or (rest.isascii() and len(rest) < 3):
        return None
    return _Mention(hospital_id, span[1] - span[0], quality, _Form.of(rest))


def _strip_particles(folded: str) -> str:
    return " ".join(w for w in (w.strip(ZH_EDGE_PARTICLES) for w in folded.split(" ")) if w)


def _expired(row: _Row, today: date) -> bool:
    return row.expires_on is not None and row.expires_on < today


def _budget(
    tokens: Sequence[str],
    df: dict[str, int],
    chosen: Sequence[str] = (),
    *,
    budget: int = POSTINGS_BUDGET,
) -> list[str]:
    """Add ``tokens`` to ``chosen``, rarest first, while the postings stay within budget.

    The rarest token always goes in (sampled at TOKEN_CAP if it is very common), so a query
    made only of common words still finds something.
    """
    out = list(chosen)
    spent = sum(min(df.get(t, 0), TOKEN_CAP) for t in out)
    for token in sorted(dict.fromkeys(tokens), key=lambda t: (df.get(t, 0), t)):
        if token in out:
            continue
        if out and df.get(token, 0) > TOKEN_CAP:
            break  # as common as "of": it would only cost time (they are sorted, so stop)
        cost = min(df.get(token, 0), TOKEN_CAP)
        if out and (spent + cost > budget or len(out) >= MAX_TOKENS):
            break
        out.append(token)
        spent += cost
    return out
