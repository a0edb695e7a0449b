"""Editing health articles from the console: every change is a new reviewed version.

Versions are never changed or deleted once saved. A supervisor saves a new version of an
article with its text, the clinician who reviewed it, the review date and the expiry date:

* the review date cannot be in the future and the expiry must come after it and not be in
  the past (a version is read to callers from its review date up to and including its expiry
  date; see :func:`knowledge_base.articles.readable_version`);
* "renew the review" is a new version with the same text and a new reviewer, review date
  and expiry;
* the editor names the version they started from (``base_version``): if someone else saved
  a newer one meanwhile, the save is refused rather than silently overwriting their text.

The phone keeps reading only the latest reviewed, unexpired version; the search index's
expiry for the article is updated in the same transaction, and an audit row records who
saved which version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select, update

from callcenter.clock import Clock
from callcenter.db.engine import Database
from callcenter.db.models import AuditEntry

from .articles import latest_version, readable_version
from .models import Article, ArticleVersion, SearchEntry

#: Longest article body and summary (characters) accepted from the console.
MAX_BODY = 20_000
MAX_SUMMARY = 1_000
MAX_REVIEWER = 200


class ArticleNotFound(LookupError):
    """No article with that id."""


class ArticleEditRejected(ValueError):
    """The new version was not saved; ``problems`` maps each field to a problem code:
    ``required``, ``too_long``, ``review_in_future``, ``expires_before_review``,
    ``already_expired`` or ``stale`` (field ``base_version``: a newer version was saved
    meanwhile)."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


@dataclass(frozen=True)
class VersionDraft:
    """What the editor typed for a new version."""

    body_zh: str
    reviewer: str
    reviewed_on: date | None
    expires_on: date | None
    body_en: str = ""
    summary_zh: str = ""
    summary_en: str = ""


@dataclass(frozen=True)
class VersionInfo:
    """One saved version, for display."""

    version: int
    body_zh: str
    body_en: str | None
    summary_zh: str | None
    summary_en: str | None
    reviewer: str
    reviewed_on: date
    expires_on: date


@dataclass(frozen=True)
class ArticleInfo:
    """An article with its versions (oldest first) and what callers hear today.

    ``status``: ``live`` (a version is read out), ``expiring`` (live, but expires within
    ``window_days``), ``expired`` (the latest version expired: nothing is read out) or
    ``unpublished`` (no reviewed version yet).
    """

    id: str
    category: str
    title_zh: str
    title_en: str
    versions: list[VersionInfo]
    latest: int | None
    readable: int | None
    status: str


def _info(version: ArticleVersion) -> VersionInfo:
    return VersionInfo(
        version=version.version,
        body_zh=version.body_zh,
        body_en=version.body_en,
        summary_zh=version.summary_zh,
        summary_en=version.summary_en,
        reviewer=version.reviewer,
        reviewed_on=version.reviewed_on,
        expires_on=version.expires_on,
    )


def _article_info(article: Article, today: date, window_days: int) -> ArticleInfo:
    latest = latest_version(article, today)
    readable = readable_version(article, today)
    if latest is None:
        status = "unpublished"
    elif readable is None:
        status = "expired"
    elif (readable.expires_on - today).days <= window_days:
        status = "expiring"
    else:
        status = "live"
    return ArticleInfo(
        id=article.id,
        category=article.category,
        title_zh=article.title_zh,
        title_en=article.title_en,
        versions=[_info(v) for v in sorted(article.versions, key=lambda v: v.version)],
        latest=latest.version if latest else None,
        readable=readable.version if readable else None,
        status=status,
    )


def list_articles(db: Database, today: date, *, window_days: int = 30) -> list[ArticleInfo]:
    """Every article with its status on ``today``, by id."""
    with db.transaction() as session:
        return [
            _article_info(a, today, window_days)
            for a in session.scalars(select(Article).order_by(Article.id))
        ]


def get_article(
    db: Database, article_id: str, today: date, *, window_days: int = 30
) -> ArticleInfo:
    """One article with its versions; raises :class:`ArticleNotFound`."""
    with db.transaction() as session:
        article = session.get(Article, article_id)
        if article is None:
            raise ArticleNotFound(article_id)
        return _article_info(article, today, window_days)


def _check(draft: VersionDraft, today: date) -> dict[str, str]:
    problems: dict[str, str] = {}
    for name, value, limit in (
        ("body_zh", draft.body_zh, MAX_BODY),
        ("body_en", draft.body_en, MAX_BODY),
        ("summary_zh", draft.summary_zh, MAX_SUMMARY),
        ("summary_en", draft.summary_en, MAX_SUMMARY),
        ("reviewer", draft.reviewer, MAX_REVIEWER),
    ):
        if len(value) > limit:
            problems[name] = "too_long"
    if not draft.body_zh.strip():
        problems["body_zh"] = "required"
    if not draft.summary_zh.strip():  # the phone reads the summary
        problems["summary_zh"] = "required"
    if not draft.reviewer.strip():
        problems["reviewer"] = "required"
    if draft.reviewed_on is None:
        problems["reviewed_on"] = "required"
    elif draft.reviewed_on > today:
        problems["reviewed_on"] = "review_in_future"
    if draft.expires_on is None:
        problems["expires_on"] = "required"
    elif draft.reviewed_on is not None and draft.expires_on <= draft.reviewed_on:
        problems["expires_on"] = "expires_before_review"
    elif draft.expires_on < today:
        problems["expires_on"] = "already_expired"
    return problems


def _text(value: str) -> str | None:
    value = value.strip()
    return value or None


def add_version(
    db: Database,
    clock: Clock,
    article_id: str,
    draft: VersionDraft,
    *,
    base_version: int | None,
    actor: str,
    today: date,
) -> int:
    """Save ``draft`` as the next version of ``article_id`` and return its number.

    ``base_version`` is the latest version the editor saw (``None`` for an article that had
    none). Raises :class:`ArticleNotFound` or :class:`ArticleEditRejected` (nothing saved).
    """
    problems = _check(draft, today)
    if problems:
        raise ArticleEditRejected(problems)
    reviewed_on, expires_on = draft.reviewed_on, draft.expires_on
    if reviewed_on is None or expires_on is None:  # pragma: no cover (checked above)
        raise ArticleEditRejected({"reviewed_on": "required"})
    now: datetime = clock.now()
    with db.transaction() as session:
        article = session.scalars(
            select(Article).where(Article.id == article_id).with_for_update()
        ).one_or_none()
        if article is None:
            raise ArticleNotFound(article_id)
        newest = session.scalar(
            select(func.max(ArticleVersion.version)).where(ArticleVersion.article_id == article_id)
        )
        if newest != base_version:
            raise ArticleEditRejected({"base_version": "stale"})
        number = (newest or 0) + 1
        session.add(
            ArticleVersion(
                article_id=article_id,
                version=number,
                body_zh=draft.body_zh.strip(),
                body_en=_text(draft.body_en),
                summary_zh=_text(draft.summary_zh),
                summary_en=_text(draft.summary_en),
                reviewer=draft.reviewer.strip(),
                reviewed_on=reviewed_on,
                expires_on=expires_on,
            )
        )
        article.updated_at = now
        session.execute(
            update(SearchEntry)
            .where(SearchEntry.entity_type == "article", SearchEntry.entity_id == article_id)
            .values(expires_on=expires_on)
        )
        session.add(
            AuditEntry(
                at=now,
                actor=actor[:64],
                action="kb_article_version",
                subject_type="article",
                subject_id=article_id,
                reason=None,
                detail={
                    "version": number,
                    "reviewed_on": reviewed_on.isoformat(),
                    "expires_on": expires_on.isoformat(),
                },
            )
        )
    return number
