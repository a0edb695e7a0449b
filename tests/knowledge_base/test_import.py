"""Knowledge-base import and export: good files, every kind of bad file, idempotence, round trip."""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import delete, func, select

from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from knowledge_base import models as m
from knowledge_base.articles import readable_version, review_list
from knowledge_base.importer import (
    DEMO_DIR,
    KbImportError,
    export_path,
    import_path,
    join_list,
    load_demo,
    rebuild_index,
    split_list,
)
from knowledge_base.search import KnowledgeSearch

from .conftest import DATA

GOOD = DATA / "good"
BAD = DATA / "bad"
KB_TABLES = (
    m.SearchPosting,
    m.SearchEntry,
    m.ArticleVersion,
    m.Article,
    m.Expert,
    m.Department,
    m.Hospital,
    m.Drug,
    m.ServiceInfo,
    m.SearchToken,
)


def counts(db: Database) -> dict[str, int]:
    with db.transaction() as s:
        return {
            model.__tablename__: s.scalar(select(func.count()).select_from(model)) or 0
            for model in KB_TABLES
        }


def wipe(db: Database) -> None:
    """Empty the knowledge base (children first)."""
    with db.transaction() as s:
        for model in KB_TABLES:
            s.execute(delete(model))


def problems_of(
    exc: pytest.ExceptionInfo[KbImportError],
) -> list[tuple[str, int | None, str | None]]:
    return [(Path(p.file).name, p.row, p.field) for p in exc.value.problems]


# --- good files ----------------------------------------------------------------------------


def test_good_yaml_imports_everything(db: Database, clock: FakeClock) -> None:
    report = import_path(db, GOOD, clock=clock)
    assert report.created == {
        "hospital": 2,
        "department": 2,
        "expert": 1,
        "drug": 2,
        "article": 2,
        "service": 1,
    }
    assert report.changes == 10
    assert report.indexed == 10
    with db.transaction() as s:
        drug = s.get(m.Drug, "test-drug")
        assert drug is not None
        assert drug.price == Decimal("12.50")
        assert drug.currency == "CNY"
        assert drug.price_date == date(2026, 10, 1)
        assert drug.otc is False
        assert drug.brands_zh == ["测立康"]
        expert = s.get(m.Expert, "test-exp-1")
        assert expert is not None
        assert expert.schedule == [{"weekday": 1, "session": "am"}, {"weekday": 4, "session": "pm"}]
        assert expert.department_id == "test-central-cardiology"
        article = s.get(m.Article, "test-article")
        assert article is not None
        assert [v.version for v in article.versions] == [1, 2]
        assert s.scalar(select(func.count()).select_from(m.SearchEntry)) == 10


def test_markup_sql_and_line_breaks_are_stored_verbatim(db: Database, clock: FakeClock) -> None:
    import_path(db, GOOD, clock=clock)
    with db.transaction() as s:
        hospital = s.get(m.Hospital, "test-markup")
        assert hospital is not None
        assert hospital.name_zh == "标记<Say>测试</Say>医院"
        assert hospital.name_en == "Markup & <Hangup/> Hospital"
        assert hospital.aliases == ["'; DROP TABLE kb_hospitals; --", "A|B \\ C"]
        assert hospital.address_zh == '第一行\n第二行 <break time="1s"/> & &amp; 第三行'
        assert hospital.intro_en == "  leading and trailing spaces  "
        assert hospital.summary_en == "<Response><Dial>+15551234567</Dial></Response>"
        assert s.scalar(select(func.count()).select_from(m.Hospital)) == 2  # table still there
    hits = KnowledgeSearch(db).search("'; DROP TABLE kb_hospitals; --").hits
    assert hits
    assert hits[0].id == "test-markup"
    assert KnowledgeSearch(db).search("标记<Say>测试</Say>医院").hits[0].name_zh == (
        "标记<Say>测试</Say>医院"
    )


def test_second_import_changes_nothing(db: Database, clock: FakeClock) -> None:
    import_path(db, GOOD, clock=clock)
    before = counts(db)
    with db.transaction() as s:
        stamps = dict(s.execute(select(m.Hospital.id, m.Hospital.updated_at)).all())
    clock.advance(3600)
    again = import_path(db, GOOD, clock=clock)
    assert again.changes == 0
    assert again.indexed == 0
    assert sum(again.unchanged.values()) == 10
    assert counts(db) == before
    with db.transaction() as s:
        now = dict(s.execute(select(m.Hospital.id, m.Hospital.updated_at)).all())
        assert now == stamps


def test_a_changed_entry_is_updated_and_reindexed(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    import_path(db, GOOD, clock=clock)
    changed = tmp_path / "hospitals.yaml"
    data = yaml.safe_load((GOOD / "hospitals.yaml").read_text("utf-8"))
    data["hospitals"][0]["aliases"].append("甲乙丙医院")
    changed.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    report = import_path(db, changed, clock=clock)
    assert report.updated == {"hospital": 1}
    assert report.unchanged == {"hospital": 1}
    assert report.indexed == 1
    top = KnowledgeSearch(db).search("甲乙丙医院").top
    assert top is not None
    assert top.id == "test-central"


def test_csv_files_import_the_same_data(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    import_path(db, GOOD, clock=clock)
    csv_dir = tmp_path / "csv"
    export_path(db, csv_dir, fmt="csv")
    yaml_dump = tmp_path / "from-yaml"
    export_path(db, yaml_dump)
    wipe(db)
    report = import_path(db, csv_dir, clock=clock)
    assert report.changes == 10
    again = tmp_path / "from-csv"
    export_path(db, again)
    for file in sorted(yaml_dump.iterdir()):
        assert (again / file.name).read_text("utf-8") == file.read_text("utf-8"), file.name


def test_rebuild_index_gives_the_same_search(db: Database, clock: FakeClock) -> None:
    import_path(db, GOOD, clock=clock)
    before = [(h.type, h.id, h.score) for h in KnowledgeSearch(db).search("测试霉素").hits]
    assert rebuild_index(db) == 10
    after = [(h.type, h.id, h.score) for h in KnowledgeSearch(db).search("测试霉素").hits]
    assert after == before
    assert before[0][:2] == ("drug", "test-drug")


def test_csv_list_cells_escape_the_separator() -> None:
    items = ["A|B", "back\\slash", "plain", "中文"]
    assert split_list(join_list(items)) == items
    assert split_list("a|b|c") == ["a", "b", "c"]


# --- bad files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("syntax.yaml", ("syntax.yaml", None, None)),
        ("missing_required.yaml", ("missing_required.yaml", 2, "name_zh")),
        ("unknown_field.yaml", ("unknown_field.yaml", 1, "adress_zh")),
        ("wrong_type.yaml", ("wrong_type.yaml", 2, "aliases")),
        ("bad_date.yaml", ("bad_date.yaml", 1, "price_date")),
        ("bad_price.yaml", ("bad_price.yaml", 1, "price")),
        ("duplicate_id.yaml", ("duplicate_id.yaml", 2, "id")),
        ("bad_reference.yaml", ("bad_reference.yaml", 1, "hospital")),
        ("bad_article.yaml", ("bad_article.yaml", 1, "versions")),
        ("bad_schedule.yaml", ("bad_schedule.yaml", 1, "schedule")),
        ("nul_text.yaml", ("nul_text.yaml", 1, "name_en")),
        ("not_a_mapping.yaml", ("not_a_mapping.yaml", None, None)),
        ("csv_unknown_column", ("hospitals.csv", None, "nickname")),
        ("csv_missing_column", ("hospitals.csv", None, "name_en")),
        ("csv_short_row", ("hospitals.csv", 1, None)),
        ("csv_bad_row", ("drugs.csv", 2, "otc")),
    ],
)
def test_a_bad_file_is_rejected_whole_naming_file_row_and_field(
    db: Database, clock: FakeClock, name: str, expected: tuple[str, int | None, str | None]
) -> None:
    before = counts(db)
    with pytest.raises(KbImportError) as exc:
        import_path(db, BAD / name, clock=clock)
    assert expected in problems_of(exc), problems_of(exc)
    assert counts(db) == before
    message = str(exc.value)
    assert expected[0] in message
    if expected[1] is not None:
        assert f"row {expected[1]}" in message
    if expected[2] is not None:
        assert f"field {expected[2]}" in message


def test_every_problem_is_reported_not_only_the_first(db: Database, clock: FakeClock) -> None:
    with pytest.raises(KbImportError) as exc:
        import_path(db, BAD / "wrong_type.yaml", clock=clock)
    assert ("wrong_type.yaml", 2, "aliases") in problems_of(exc)
    assert ("wrong_type.yaml", 2, "otc") in problems_of(exc)
    with pytest.raises(KbImportError) as exc:
        import_path(db, BAD / "bad_article.yaml", clock=clock)
    found = problems_of(exc)
    assert ("bad_article.yaml", 2, "versions[1].expires_on") in found
    assert ("bad_article.yaml", 2, "versions[2].version") in found


def test_yaml_problems_give_the_line(db: Database, clock: FakeClock) -> None:
    with pytest.raises(KbImportError) as exc:
        import_path(db, BAD / "missing_required.yaml", clock=clock)
    problem = next(p for p in exc.value.problems if p.field == "name_zh")
    assert problem.line == 5


def test_one_bad_file_in_a_directory_rejects_the_whole_directory(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    folder = tmp_path / "kb"
    shutil.copytree(GOOD, folder)
    shutil.copy(BAD / "bad_date.yaml", folder / "zz_bad_date.yaml")
    with pytest.raises(KbImportError) as exc:
        import_path(db, folder, clock=clock)
    assert {p[0] for p in problems_of(exc)} == {"zz_bad_date.yaml"}
    assert set(counts(db).values()) == {0}


def test_a_reference_to_an_existing_hospital_is_accepted(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    import_path(db, GOOD / "hospitals.yaml", clock=clock)
    import_path(db, GOOD / "departments.yaml", clock=clock)
    mismatch = tmp_path / "experts.yaml"
    mismatch.write_text(
        "hospitals:\n  - {id: other, name_zh: 另一家医院, name_en: Other Hospital}\n"
        "experts:\n  - {id: x1, name_zh: 某某, name_en: Mou Mou, hospital: other,"
        " department: test-central-cardiology}\n",
        "utf-8",
    )
    with pytest.raises(KbImportError) as exc:
        import_path(db, mismatch, clock=clock)
    assert ("experts.yaml", 1, "department") in problems_of(exc)
    assert "belongs to hospital 'test-central'" in str(exc.value)


def test_a_missing_path_is_an_error(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    with pytest.raises(KbImportError, match="no such file"):
        import_path(db, tmp_path / "nothing-here", clock=clock)


# --- export / round trip -------------------------------------------------------------------


def snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every knowledge-base entity as plain values (not the search index, not timestamps)."""
    out: dict[str, list[dict[str, Any]]] = {}
    with db.transaction() as s:
        for model in (
            m.Hospital,
            m.Department,
            m.Expert,
            m.Drug,
            m.Article,
            m.ArticleVersion,
            m.ServiceInfo,
        ):
            table = model.__table__
            cols = [c for c in table.columns if c.name != "updated_at"]
            rows = s.execute(select(*cols).order_by(*table.primary_key.columns)).mappings()
            out[table.name] = [dict(r) for r in rows]
    return out


@pytest.mark.parametrize("fmt", ["yaml", "csv"])
def test_export_then_import_is_identity(
    db: Database, clock: FakeClock, tmp_path: Path, fmt: str
) -> None:
    import_path(db, GOOD, clock=clock)
    load_demo(db, clock)
    before = snapshot(db)
    first = tmp_path / "first"
    export_path(db, first, fmt=fmt)
    wipe(db)
    report = import_path(db, first, clock=clock)
    assert report.changes == sum(len(v) for k, v in before.items() if k != "kb_article_versions")
    assert snapshot(db) == before
    second = tmp_path / "second"
    export_path(db, second, fmt=fmt)
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in second.iterdir())
    for file in first.iterdir():
        assert (second / file.name).read_bytes() == file.read_bytes(), file.name
    assert import_path(db, first, clock=clock).changes == 0


def test_export_to_one_yaml_file(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    import_path(db, GOOD, clock=clock)
    target = tmp_path / "all.yaml"
    assert export_path(db, target) == [target]
    data = yaml.safe_load(target.read_text("utf-8"))
    assert list(data) == [
        "hospitals",
        "departments",
        "experts",
        "drugs",
        "articles",
        "service_info",
    ]
    wipe(db)
    assert import_path(db, target, clock=clock).changes == 10


def test_export_rejects_an_unknown_format(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export_path(db, tmp_path, fmt="xml")


# --- demo data and articles ----------------------------------------------------------------


def test_demo_loads_once(db: Database, clock: FakeClock) -> None:
    first = load_demo(db, clock)
    assert first.created["hospital"] >= 30
    assert first.changes > 500
    assert load_demo(db, clock).changes == 0
    assert Path(DEMO_DIR).is_dir()


def test_readable_version_and_review_list(db: Database, clock: FakeClock) -> None:
    import_path(db, GOOD, clock=clock)
    with db.transaction() as s:
        article = s.get(m.Article, "test-article")
        expired = s.get(m.Article, "test-expired")
        assert article is not None
        assert expired is not None
        latest = readable_version(article, date(2026, 11, 26))
        assert latest is not None
        assert latest.version == 2
        # Before version 2 was reviewed, version 1 was the one read out.
        early = readable_version(article, date(2025, 6, 1))
        assert early is not None
        assert early.version == 1
        # Valid through its expiry date, not after; an older version is never used instead.
        last_day = readable_version(article, date(2027, 1, 31))
        assert last_day is not None
        assert last_day.version == 2
        assert readable_version(article, date(2027, 2, 1)) is None
        assert readable_version(expired, date(2026, 11, 26)) is None
    items = review_list(db, date(2026, 11, 26))
    assert [(i.article_id, i.status) for i in items] == [("test-expired", "expired")]
    soon = review_list(db, date(2027, 1, 10))
    assert [(i.article_id, i.status) for i in soon] == [
        ("test-expired", "expired"),
        ("test-article", "expiring"),
    ]
    assert soon[1].expires_on == date(2027, 1, 31)
    assert not soon[1].expired


def test_demo_expired_articles_are_in_the_review_list(db: Database, clock: FakeClock) -> None:
    load_demo(db, clock)
    expired = {i.article_id for i in review_list(db, date(2026, 11, 26)) if i.expired}
    assert {"dengue", "covid-home-care"} <= expired
