"""Health articles: which version may be read to callers, and which need a reviewer.

Spoken health content comes only from reviewed, versioned articles. The version read out is
the **latest** one (highest version number) that has been reviewed by ``today``; if that
version has expired, nothing is read out - an older version is never used instead, because a
newer review superseded it. Expired articles, and those expiring within 30 days, are listed
for review.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select

from callcenter.db.engine import Database

from .models import Article, ArticleVersion

#: Articles expiring within this many days are listed for review.
REVIEW_WINDOW_DAYS = 30


def latest_version(article: Article, today: date) -> ArticleVersion | None:
    """The newest version already reviewed on ``today`` (expired or not)."""
    published = [v for v in article.versions if v.reviewed_on <= today]
    return max(published, key=lambda v: v.version, default=None)


def readable_version(article: Article, today: date) -> ArticleVersion | None:
    """The version to read to callers on ``today``: the latest one, unless it has expired.

    A version is valid up to and including its ``expires_on`` date.
    """
    latest = latest_version(article, today)
    if latest is None or latest.expires_on < today:
        return None
    return latest


@dataclass(frozen=True)
class ReviewItem:
    """An article a reviewer should look at."""

    article_id: str
    title_zh: str
    title_en: str
    version: int | None
    reviewer: str | None
    expires_on: date | None
    status: str  # "expired" | "expiring" | "unpublished"

    @property
    def expired(self) -> bool:
        """Whether callers are no longer hearing this article."""
        return self.status != "expiring"


def review_list(
    db: Database, today: date, *, window_days: int = REVIEW_WINDOW_DAYS
) -> list[ReviewItem]:
    """Articles whose latest version has expired or expires within ``window_days`` of ``today``
    (and any with no reviewed version yet), soonest first."""
    horizon = today + timedelta(days=window_days)
    items: list[ReviewItem] = []
    with db.transaction() as session:
        for article in session.scalars(select(Article).order_by(Article.id)):
            latest = latest_version(article, today)
            if latest is None:
                items.append(
                    ReviewItem(
                        article.id,
                        article.title_zh,
                        article.title_en,
                        None,
                        None,
                        None,
                        "unpublished",
                    )
                )
            elif latest.expires_on <= horizon:
                status = "expired" if latest.expires_on < today else "expiring"
                items.append(
                    ReviewItem(
                        article.id,
                        article.title_zh,
                        article.title_en,
                        latest.version,
                        latest.reviewer,
                        latest.expires_on,
                        status,
                    )
                )
    items.sort(key=lambda i: (i.expires_on or date.min, i.article_id))
    return items
