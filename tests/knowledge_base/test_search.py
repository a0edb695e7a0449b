"""Knowledge-base search on the demo data: the labelled query set and specific behaviours."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import pytest
import yaml

from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from knowledge_base.importer import import_path
from knowledge_base.search import KnowledgeSearch, SearchResult

from .conftest import DATA

QUERIES = Path(__file__).resolve().parent.parent / "data" / "kb_queries.yaml"


@pytest.fixture(scope="module")
def search(kb_demo_db: Database) -> KnowledgeSearch:
    return KnowledgeSearch(kb_demo_db)


def top(result: SearchResult) -> tuple[str, str] | None:
    return (result.hits[0].type, result.hits[0].id) if result.hits else None


def test_labelled_queries_top1_and_top3(search: KnowledgeSearch) -> None:
    queries = yaml.safe_load(QUERIES.read_text("utf-8"))["queries"]
    assert len(queries) >= 300
    total: Counter[str] = Counter()
    top1: Counter[str] = Counter()
    top3: Counter[str] = Counter()
    misses: list[str] = []
    for q in queries:
        result = search.search(q["q"], language=q["lang"])
        ids = [(h.type, h.id) for h in result.hits[:3]]
        want = (q["type"], q["expected"])
        total[q["class"]] += 1
        top1[q["class"]] += ids[:1] == [want]
        top3[q["class"]] += want in ids
        if ids[:1] != [want]:
            misses.append(f"  [{q['class']}] {q['q']!r}: want {want}, got {ids}")
    n = sum(total.values())
    rate1, rate3 = sum(top1.values()) / n, sum(top3.values()) / n
    table = "\n".join(
        f"  {cls:14s} {total[cls]:4d}  top-1 {top1[cls] / total[cls]:.3f}"
        f"  top-3 {top3[cls] / total[cls]:.3f}"
        for cls in sorted(total)
    )
    report = f"top-1 {rate1:.3f}, top-3 {rate3:.3f} over {n}\n{table}\nmisses:\n" + "\n".join(
        misses
    )
    assert rate1 >= 0.95, report
    assert rate3 >= 0.99, report


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("瑞京医院", ("hospital", "ruijin")),  # 京 for 金: same pinyin
        ("锐金医院", ("hospital", "ruijin")),
        ("阿斯匹林", ("drug", "aspirin-ec")),
        ("彭家俊", ("expert", "exp-0002")),
        ("瑞金医院心累科", ("department", "ruijin-cardiology")),  # lei for nei
    ],
)
def test_homophones_from_the_recogniser(
    search: KnowledgeSearch, query: str, expected: tuple[str, str]
) -> None:
    assert top(search.search(query)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("瑞金", ("hospital", "ruijin")),
        ("六院", ("hospital", "sixth")),
        ("布洛", ("drug", "ibuprofen-sr")),
        ("林兰", ("expert", "exp-0001")),
        ("痛风", ("article", "gout")),
        ("退订", ("service", "sms-unsubscribe")),
    ],
)
def test_two_character_queries(
    search: KnowledgeSearch, query: str, expected: tuple[str, str]
) -> None:
    assert top(search.search(query)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Ruijin Hospital address", ("hospital", "ruijin")),
        ("how much is ibuprofen", ("drug", "ibuprofen-sr")),
        ("how much is ibuprofin", ("drug", "ibuprofen-sr")),  # typo
        ("cardiology at Ruijin", ("department", "ruijin-cardiology")),
        ("Dr. Lin Lan", ("expert", "exp-0001")),
    ],
)
def test_english(search: KnowledgeSearch, query: str, expected: tuple[str, str]) -> None:
    assert top(search.search(query, language="en")) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ruijin yiyuan", ("hospital", "ruijin")),
        ("asipilin", ("drug", "aspirin-ec")),
        ("huashan pifuke", ("department", "huashan-dermatology")),
    ],
)
def test_typed_pinyin(search: KnowledgeSearch, query: str, expected: tuple[str, str]) -> None:
    assert top(search.search(query)) == expected


def test_filler_words_are_ignored(search: KnowledgeSearch) -> None:
    result = search.search("我想问一下阿司匹林多少钱")
    assert top(result) == ("drug", "aspirin-ec")
    assert result.query == "阿司匹林"
    assert not result.ambiguous
    assert top(search.search("请问，瑞金医院在哪里？")) == ("hospital", "ruijin")
    assert top(search.search("嗯，那个，华山医院皮肤科几点上班啊")) == (
        "department",
        "huashan-dermatology",
    )


def test_ambiguity_is_reported(search: KnowledgeSearch) -> None:
    vague = search.search("心内科")
    assert vague.ambiguous
    assert {h.type for h in vague.hits} == {"department"}
    assert len({h.hospital_id for h in vague.hits}) == len(vague.hits)
    precise = search.search("瑞金医院心内科")
    assert not precise.ambiguous
    assert top(precise) == ("department", "ruijin-cardiology")
    assert precise.hits[0].hospital_id == "ruijin"
    assert precise.hits[0].score > precise.hits[1].score


def test_scores_and_names(search: KnowledgeSearch) -> None:
    result = search.search("阿司匹林肠溶片", limit=3)
    assert len(result.hits) == 3
    assert result.hits[0].score == 1.0
    assert result.hits[0].name_zh == "阿司匹林肠溶片"
    assert result.hits[0].name_en.startswith("Aspirin")
    assert all(0 <= h.score <= 1 for h in result.hits)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


def test_type_filter(search: KnowledgeSearch) -> None:
    departments = search.search("瑞金医院心内科", types={"department"})
    assert departments.hits
    assert {h.type for h in departments.hits} == {"department"}
    assert top(departments) == ("department", "ruijin-cardiology")
    articles = search.search("高血压", types=["article"])
    assert articles.hits
    assert {h.type for h in articles.hits} == {"article"}
    assert search.search("阿司匹林", types=["service"]).top is None or all(
        h.type == "service" for h in search.search("阿司匹林", types=["service"]).hits
    )
    assert search.search("瑞金", types=[]).hits == []
    with pytest.raises(ValueError, match="unknown entity types"):
        search.search("瑞金", types={"clinic"})


def test_empty_and_junk_queries(search: KnowledgeSearch) -> None:
    assert search.search("").hits == []
    assert search.search("   ，。！").hits == []
    assert search.search("请问").query == "请问"
    long = search.search("阿司匹林" * 200)
    assert top(long) == ("drug", "aspirin-ec")
    weird = search.search("<Say>瑞金医院</Say> ' OR 1=1 --")
    assert top(weird) == ("hospital", "ruijin")


def test_expired_articles_can_be_left_out(search: KnowledgeSearch) -> None:
    assert top(search.search("登革热")) == ("article", "dengue")
    later = search.search("登革热", types=["article"], today=date(2026, 11, 26))
    assert "dengue" not in {h.id for h in later.hits}


def test_search_sees_an_import_at_once(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    search = KnowledgeSearch(db)
    assert search.search("测试市中心医院").hits == []
    import_path(db, DATA / "good" / "hospitals.yaml", clock=clock)
    assert top(search.search("测试市中心医院")) == ("hospital", "test-central")
    # A new hospital is found inside a longer query too (the hospital catalogue reloads).
    import_path(db, DATA / "good" / "departments.yaml", clock=clock)
    assert top(search.search("测试市中心医院儿科")) == ("department", "test-central-pediatrics")
