"""Editing articles: every save is a new reviewed version; the phone reads only reviewed,
unexpired versions; stale edits and bad dates are refused with nothing saved."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.db.models import AuditEntry
from knowledge_base.answers import answer
from knowledge_base.editing import (
    ArticleEditRejected,
    ArticleNotFound,
    VersionDraft,
    add_version,
    get_article,
    list_articles,
)
from knowledge_base.importer import import_path

TODAY = date(2026, 11, 26)

ARTICLES = """
articles:
- id: flu-care
  category: infection
  title_zh: 流感居家护理
  title_en: Caring for flu at home
  keywords: [流感, flu]
  versions:
  - version: 1
    body_zh: 多休息，多饮水。
    summary_zh: 流感要多休息多喝水。
    reviewer: 甲医生（演示）
    reviewed_on: '2025-11-01'
    expires_on: '2026-11-01'
- id: sleep-tips
  category: lifestyle
  title_zh: 睡个好觉
  title_en: Sleeping well
  keywords: [睡眠, sleep]
  versions:
  - version: 1
    body_zh: 规律作息。
    summary_zh: 每天按时睡觉和起床。
    reviewer: 乙医生（演示）
    reviewed_on: '2026-06-01'
    expires_on: '2027-06-01'
"""


@pytest.fixture
def kb(services: Services, tmp_path: Path) -> Services:
    """Two articles: ``flu-care`` expired on 2026-11-01, ``sleep-tips`` live."""
    path = tmp_path / "articles.yaml"
    path.write_text(ARTICLES, encoding="utf-8")
    import_path(services.db, path, clock=services.clock)
    return services


def _draft(**changes: object) -> VersionDraft:
    values: dict[str, object] = {
        "body_zh": "多休息，多饮水，按时测体温。",
        "summary_zh": "流感在家要多休息、多喝水、测体温；高热不退请就医。",
        "reviewer": "丙医生（演示）",
        "reviewed_on": date(2026, 11, 20),
        "expires_on": date(2027, 11, 20),
    }
    values.update(changes)
    return VersionDraft(**values)  # type: ignore[arg-type]


def _spoken(services: Services, article_id: str) -> str | None:
    with services.db.transaction() as session:
        said = answer(session, "article", article_id, "zh-CN", TODAY)
    return None if said is None else said.text


def _found(services: Services, query: str) -> list[str]:
    result = services.knowledge.search(query, types=["article"], today=TODAY)
    return [hit.id for hit in result.hits]


def test_renewing_an_expired_article_puts_it_back_on_the_phone(kb: Services) -> None:
    assert _spoken(kb, "flu-care") is None
    assert "flu-care" not in _found(kb, "流感")
    number = add_version(
        kb.db, kb.clock, "flu-care", _draft(), base_version=1, actor="sup1", today=TODAY
    )
    assert number == 2
    spoken = _spoken(kb, "flu-care")
    assert spoken is not None
    assert spoken.startswith("流感在家要多休息、多喝水、测体温")
    assert "flu-care" in _found(kb, "流感")
    info = get_article(kb.db, "flu-care", TODAY)
    assert (info.latest, info.readable, info.status) == (2, 2, "live")
    assert [v.version for v in info.versions] == [1, 2]
    assert info.versions[0].body_zh == "多休息，多饮水。"  # the old version is kept as it was


def test_every_save_writes_an_audit_row(kb: Services) -> None:
    add_version(kb.db, kb.clock, "sleep-tips", _draft(), base_version=1, actor="sup1", today=TODAY)
    with kb.db.transaction() as session:
        rows = list(
            session.scalars(select(AuditEntry).where(AuditEntry.subject_id == "sleep-tips"))
        )
        assert [(r.actor, r.action, r.detail["version"]) for r in rows] == [
            ("sup1", "kb_article_version", 2)
        ]


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        ({"body_zh": "  "}, {"body_zh": "required"}),
        ({"summary_zh": ""}, {"summary_zh": "required"}),
        ({"reviewer": ""}, {"reviewer": "required"}),
        ({"reviewer": "医" * 201}, {"reviewer": "too_long"}),
        ({"summary_en": "x" * 1001}, {"summary_en": "too_long"}),
        ({"reviewed_on": None}, {"reviewed_on": "required"}),
        ({"reviewed_on": date(2026, 11, 27)}, {"reviewed_on": "review_in_future"}),
        ({"expires_on": None}, {"expires_on": "required"}),
        ({"expires_on": date(2026, 11, 20)}, {"expires_on": "expires_before_review"}),
        (
            {"reviewed_on": date(2026, 1, 1), "expires_on": date(2026, 11, 25)},
            {"expires_on": "already_expired"},
        ),
        (
            {"body_zh": "", "reviewer": "", "expires_on": None},
            {"body_zh": "required", "reviewer": "required", "expires_on": "required"},
        ),
    ],
)
def test_bad_versions_are_refused_and_nothing_is_saved(
    kb: Services, changes: dict[str, object], problems: dict[str, str]
) -> None:
    with pytest.raises(ArticleEditRejected) as caught:
        add_version(
            kb.db, kb.clock, "sleep-tips", _draft(**changes), base_version=1, actor="s", today=TODAY
        )
    assert caught.value.problems == problems
    assert [v.version for v in get_article(kb.db, "sleep-tips", TODAY).versions] == [1]


def test_a_stale_edit_does_not_overwrite_a_newer_version(kb: Services) -> None:
    add_version(kb.db, kb.clock, "sleep-tips", _draft(), base_version=1, actor="a", today=TODAY)
    with pytest.raises(ArticleEditRejected) as caught:
        add_version(
            kb.db,
            kb.clock,
            "sleep-tips",
            _draft(summary_zh="另一位编辑的版本"),
            base_version=1,
            actor="b",
            today=TODAY,
        )
    assert caught.value.problems == {"base_version": "stale"}
    info = get_article(kb.db, "sleep-tips", TODAY)
    assert [v.version for v in info.versions] == [1, 2]
    assert info.versions[-1].summary_zh != "另一位编辑的版本"


def test_unknown_article(kb: Services) -> None:
    with pytest.raises(ArticleNotFound):
        add_version(kb.db, kb.clock, "nope", _draft(), base_version=None, actor="a", today=TODAY)
    with pytest.raises(ArticleNotFound):
        get_article(kb.db, "nope", TODAY)


def test_the_list_shows_what_callers_hear(kb: Services) -> None:
    statuses = {a.id: (a.status, a.readable) for a in list_articles(kb.db, TODAY)}
    assert statuses == {"flu-care": ("expired", None), "sleep-tips": ("live", 1)}
    soon = list_articles(kb.db, date(2027, 5, 20))
    assert {a.id: a.status for a in soon}["sleep-tips"] == "expiring"
