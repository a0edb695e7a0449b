"""Knowledge-base tables: hospitals, departments, experts, drugs, articles, service information.

Every entity is keyed by the stable id from its import file (``ruijin``, ``exp-0001``), so a
re-import updates rows in place. Text is stored verbatim: it is data, never markup, and is
escaped by whoever renders it (TwiML, HTML, SSML).

``kb_search_index`` holds one row per searchable entry, derived from the entity by
:mod:`knowledge_base.importer`; its token columns feed the SQLite FTS5 table
``kb_search_fts`` (kept in sync by triggers) or PostgreSQL's GIN indexes. The migration
``0002_knowledge_base`` creates all of it.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator, TypeEngine

from callcenter.db.models import Base

_CENT = Decimal("0.01")


class Money(TypeDecorator[Decimal]):
    """An exact amount with 2 decimals: NUMERIC on PostgreSQL, text-converted on SQLite.

    SQLite has no decimal type; amounts go in as text and come back quantized to cents,
    so no float rounding reaches the caller.
    """

    impl = Numeric(12, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Plain text binding on SQLite, NUMERIC elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(24))
        return dialect.type_descriptor(Numeric(12, 2))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        """Store cents exactly."""
        if value is None:
            return None
        amount = Decimal(value).quantize(_CENT)
        return str(amount) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Give back a Decimal with 2 decimals."""
        if value is None:
            return None
        return Decimal(str(value)).quantize(_CENT)


#: Entity types, as search results and import files name them.
ENTITY_TYPES = ("hospital", "department", "expert", "drug", "article", "service")


class Hospital(Base):
    """A hospital of the network."""

    __tablename__ = "kb_hospitals"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    level: Mapped[str | None] = mapped_column(String(50))
    district_zh: Mapped[str | None] = mapped_column(String(100))
    district_en: Mapped[str | None] = mapped_column(String(100))
    address_zh: Mapped[str | None] = mapped_column(Text)
    address_en: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(50))
    opening_hours_zh: Mapped[str | None] = mapped_column(Text)
    opening_hours_en: Mapped[str | None] = mapped_column(Text)
    intro_zh: Mapped[str | None] = mapped_column(Text)
    intro_en: Mapped[str | None] = mapped_column(Text)
    summary_zh: Mapped[str | None] = mapped_column(Text)
    summary_en: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Department(Base):
    """A department (clinic) of one hospital."""

    __tablename__ = "kb_departments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hospital_id: Mapped[str] = mapped_column(ForeignKey("kb_hospitals.id"), index=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    location_zh: Mapped[str | None] = mapped_column(Text)
    location_en: Mapped[str | None] = mapped_column(Text)
    hours_zh: Mapped[str | None] = mapped_column(Text)
    hours_en: Mapped[str | None] = mapped_column(Text)
    intro_zh: Mapped[str | None] = mapped_column(Text)
    intro_en: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Expert(Base):
    """A hospital expert (the demo ones are fictional) with a weekly clinic schedule."""

    __tablename__ = "kb_experts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    title_zh: Mapped[str | None] = mapped_column(String(100))
    title_en: Mapped[str | None] = mapped_column(String(100))
    hospital_id: Mapped[str] = mapped_column(ForeignKey("kb_hospitals.id"), index=True)
    department_id: Mapped[str | None] = mapped_column(ForeignKey("kb_departments.id"), index=True)
    specialties_zh: Mapped[list[str]] = mapped_column(JSON, default=list)
    specialties_en: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: ``[{"weekday": 1..7 (Monday = 1), "session": "am" | "pm" | "evening"}, ...]``
    schedule: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    intro_zh: Mapped[str | None] = mapped_column(Text)
    intro_en: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Drug(Base):
    """A drug with its price (amount, currency and the date the price was taken)."""

    __tablename__ = "kb_drugs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    generic_zh: Mapped[str] = mapped_column(String(200))
    generic_en: Mapped[str] = mapped_column(String(200))
    brands_zh: Mapped[list[str]] = mapped_column(JSON, default=list)
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    category_zh: Mapped[str | None] = mapped_column(String(200))
    category_en: Mapped[str | None] = mapped_column(String(200))
    specification: Mapped[str | None] = mapped_column(String(200))
    unit_zh: Mapped[str | None] = mapped_column(String(50))
    unit_en: Mapped[str | None] = mapped_column(String(50))
    price: Mapped[Decimal | None] = mapped_column(Money())
    currency: Mapped[str | None] = mapped_column(String(3))
    price_date: Mapped[date | None] = mapped_column(Date)
    otc: Mapped[bool] = mapped_column(Boolean)
    indications_zh: Mapped[str | None] = mapped_column(Text)
    indications_en: Mapped[str | None] = mapped_column(Text)
    usage_zh: Mapped[str | None] = mapped_column(Text)
    usage_en: Mapped[str | None] = mapped_column(Text)
    contraindications_zh: Mapped[str | None] = mapped_column(Text)
    contraindications_en: Mapped[str | None] = mapped_column(Text)
    summary_zh: Mapped[str | None] = mapped_column(Text)
    summary_en: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Article(Base):
    """A health-education article; what is read out is one of its reviewed versions."""

    __tablename__ = "kb_articles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(50))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime]

    versions: Mapped[list[ArticleVersion]] = relationship(
        back_populates="article",
        order_by="ArticleVersion.version",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class ArticleVersion(Base):
    """One reviewed version of an article: text, reviewer, review date and expiry date."""

    __tablename__ = "kb_article_versions"

    article_id: Mapped[str] = mapped_column(
        ForeignKey("kb_articles.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    body_zh: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str | None] = mapped_column(Text)
    summary_zh: Mapped[str | None] = mapped_column(Text)
    summary_en: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(200))
    reviewed_on: Mapped[date] = mapped_column(Date)
    expires_on: Mapped[date] = mapped_column(Date)

    article: Mapped[Article] = relationship(back_populates="versions")


class ServiceInfo(Base):
    """Public service information (hotline hours, how to book, what to bring...)."""

    __tablename__ = "kb_service_info"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    body_zh: Mapped[str | None] = mapped_column(Text)
    body_en: Mapped[str | None] = mapped_column(Text)
    summary_zh: Mapped[str | None] = mapped_column(Text)
    summary_en: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class TokenList(TypeDecorator[list[str]]):
    """Search tokens: a ``text[]`` on PostgreSQL (GIN-indexed), space-separated text on SQLite
    (read by the FTS5 table). Tokens never contain spaces."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """``text[]`` on PostgreSQL, TEXT elsewhere."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(Text()))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> Any:
        """A list on PostgreSQL, one string elsewhere."""
        if value is None:
            return None
        return list(value) if dialect.name == "postgresql" else " ".join(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str] | None:
        """Always a list."""
        if value is None:
            return None
        return list(value) if isinstance(value, list) else str(value).split()


class SearchEntry(Base):
    """One searchable entry: display names, the names it answers to, and its search tokens.

    ``terms`` lists the folded names, one per line as ``kind<TAB>folded<TAB>sound units``
    (kind ``n`` name, ``a`` alias or brand, ``k`` keyword), for the re-ranker. ``strong``
    and ``weak`` are the tokens the prefilter looks up (see
    :func:`knowledge_base.text.index_tokens`): on SQLite through the FTS5 table
    ``kb_search_fts``; on PostgreSQL through ``kb_search_postings`` (strong tokens) and a GIN
    index on ``weak``.
    """

    __tablename__ = "kb_search_index"
    __table_args__ = (UniqueConstraint("entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    hospital_id: Mapped[str | None] = mapped_column(String(64), index=True)
    department_id: Mapped[str | None] = mapped_column(String(64))
    #: Articles: the expiry of the latest version (not read to callers after it).
    expires_on: Mapped[date | None] = mapped_column(Date)
    terms: Mapped[str] = mapped_column(Text)
    strong: Mapped[list[str]] = mapped_column(TokenList())
    weak: Mapped[list[str]] = mapped_column(TokenList())


class SearchState(Base):
    """Version counters of parts of the search index (``hospitals``: bumped whenever a
    hospital's index entry is rewritten, so searchers reload their hospital catalogue)."""

    __tablename__ = "kb_search_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class SearchPosting(Base):
    """PostgreSQL: one row per (strong token, entry): the inverted index the prefilter reads.

    A btree range per token, read as an index scan: measured ~1 ms for a query's tokens at
    100k entries, against ~3 ms for one GIN array look-up per token and ~10 ms for one
    array-overlap scan. The importer deletes an entry's rows with the entry (no foreign key:
    its per-row check would double the import time). Empty on SQLite, where FTS5 is the
    inverted index.
    """

    __tablename__ = "kb_search_postings"

    token: Mapped[str] = mapped_column(String(200), primary_key=True)
    entry_id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)


class SearchToken(Base):
    """PostgreSQL: every search token with the number of entries that have it.

    The prefilter looks the rarest tokens up first, and finds the tokens closest to a
    mistyped word here (pg_trgm similarity). Weak tokens are stored with a ``~`` prefix.
    SQLite gets the same numbers from FTS5 (``kb_search_vocab``), so the table stays empty
    there.
    """

    __tablename__ = "kb_search_tokens"

    token: Mapped[str] = mapped_column(String(200), primary_key=True)
    df: Mapped[int] = mapped_column(Integer)


#: Entity type -> model class.
MODELS: dict[str, type[Base]] = {
    "hospital": Hospital,
    "department": Department,
    "expert": Expert,
    "drug": Drug,
    "article": Article,
    "service": ServiceInfo,
}
