"""knowledge base: hospitals, departments, experts, drugs, articles, service info, search index

On SQLite the search index feeds an FTS5 table (kept in sync by triggers); on PostgreSQL the
strong tokens go to a btree inverted index (kb_search_postings), the weak ones get a GIN index
and the token vocabulary a trigram index (pg_trgm).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _stamp() -> sa.Column[object]:
    return sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "kb_hospitals",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("level", sa.String(length=50), nullable=True),
        sa.Column("district_zh", sa.String(length=100), nullable=True),
        sa.Column("district_en", sa.String(length=100), nullable=True),
        sa.Column("address_zh", sa.Text(), nullable=True),
        sa.Column("address_en", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(length=50), nullable=True),
        sa.Column("opening_hours_zh", sa.Text(), nullable=True),
        sa.Column("opening_hours_en", sa.Text(), nullable=True),
        sa.Column("intro_zh", sa.Text(), nullable=True),
        sa.Column("intro_en", sa.Text(), nullable=True),
        sa.Column("summary_zh", sa.Text(), nullable=True),
        sa.Column("summary_en", sa.Text(), nullable=True),
        _stamp(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_hospitals")),
    )
    op.create_table(
        "kb_departments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hospital_id", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("location_zh", sa.Text(), nullable=True),
        sa.Column("location_en", sa.Text(), nullable=True),
        sa.Column("hours_zh", sa.Text(), nullable=True),
        sa.Column("hours_en", sa.Text(), nullable=True),
        sa.Column("intro_zh", sa.Text(), nullable=True),
        sa.Column("intro_en", sa.Text(), nullable=True),
        _stamp(),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["kb_hospitals.id"],
            name=op.f("fk_kb_departments_hospital_id_kb_hospitals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_departments")),
    )
    op.create_index(
        op.f("ix_kb_departments_hospital_id"), "kb_departments", ["hospital_id"], unique=False
    )
    op.create_table(
        "kb_experts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("title_zh", sa.String(length=100), nullable=True),
        sa.Column("title_en", sa.String(length=100), nullable=True),
        sa.Column("hospital_id", sa.String(length=64), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=True),
        sa.Column("specialties_zh", sa.JSON(), nullable=False),
        sa.Column("specialties_en", sa.JSON(), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("intro_zh", sa.Text(), nullable=True),
        sa.Column("intro_en", sa.Text(), nullable=True),
        _stamp(),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["kb_departments.id"],
            name=op.f("fk_kb_experts_department_id_kb_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["kb_hospitals.id"],
            name=op.f("fk_kb_experts_hospital_id_kb_hospitals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_experts")),
    )
    op.create_index(
        op.f("ix_kb_experts_department_id"), "kb_experts", ["department_id"], unique=False
    )
    op.create_index(op.f("ix_kb_experts_hospital_id"), "kb_experts", ["hospital_id"], unique=False)
    op.create_table(
        "kb_drugs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("generic_zh", sa.String(length=200), nullable=False),
        sa.Column("generic_en", sa.String(length=200), nullable=False),
        sa.Column("brands_zh", sa.JSON(), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("category_zh", sa.String(length=200), nullable=True),
        sa.Column("category_en", sa.String(length=200), nullable=True),
        sa.Column("specification", sa.String(length=200), nullable=True),
        sa.Column("unit_zh", sa.String(length=50), nullable=True),
        sa.Column("unit_en", sa.String(length=50), nullable=True),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("price_date", sa.Date(), nullable=True),
        sa.Column("otc", sa.Boolean(), nullable=False),
        sa.Column("indications_zh", sa.Text(), nullable=True),
        sa.Column("indications_en", sa.Text(), nullable=True),
        sa.Column("usage_zh", sa.Text(), nullable=True),
        sa.Column("usage_en", sa.Text(), nullable=True),
        sa.Column("contraindications_zh", sa.Text(), nullable=True),
        sa.Column("contraindications_en", sa.Text(), nullable=True),
        sa.Column("summary_zh", sa.Text(), nullable=True),
        sa.Column("summary_en", sa.Text(), nullable=True),
        _stamp(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_drugs")),
    )
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("title_zh", sa.String(length=200), nullable=False),
        sa.Column("title_en", sa.String(length=200), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        _stamp(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_articles")),
    )
    op.create_table(
        "kb_article_versions",
        sa.Column("article_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body_zh", sa.Text(), nullable=False),
        sa.Column("body_en", sa.Text(), nullable=True),
        sa.Column("summary_zh", sa.Text(), nullable=True),
        sa.Column("summary_en", sa.Text(), nullable=True),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("reviewed_on", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["kb_articles.id"],
            name=op.f("fk_kb_article_versions_article_id_kb_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("article_id", "version", name=op.f("pk_kb_article_versions")),
    )
    op.create_table(
        "kb_service_info",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("title_zh", sa.String(length=200), nullable=False),
        sa.Column("title_en", sa.String(length=200), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("body_zh", sa.Text(), nullable=True),
        sa.Column("body_en", sa.Text(), nullable=True),
        sa.Column("summary_zh", sa.Text(), nullable=True),
        sa.Column("summary_en", sa.Text(), nullable=True),
        _stamp(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_service_info")),
    )
    postgresql = op.get_context().dialect.name == "postgresql"
    tokens = ARRAY(sa.Text()) if postgresql else sa.Text()
    op.create_table(
        "kb_search_index",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("hospital_id", sa.String(length=64), nullable=True),
        sa.Column("department_id", sa.String(length=64), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("strong", tokens, nullable=False),
        sa.Column("weak", tokens, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_search_index")),
        sa.UniqueConstraint(
            "entity_type", "entity_id", name=op.f("uq_kb_search_index_entity_type_entity_id")
        ),
    )
    op.create_index(
        op.f("ix_kb_search_index_hospital_id"), "kb_search_index", ["hospital_id"], unique=False
    )
    op.create_table(
        "kb_search_tokens",
        sa.Column("token", sa.String(length=200), nullable=False),
        sa.Column("df", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_kb_search_tokens")),
    )
    op.create_table(
        "kb_search_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_kb_search_state")),
    )
    op.create_table(
        "kb_search_postings",
        sa.Column("token", sa.String(length=200), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("token", "entry_id", name=op.f("pk_kb_search_postings")),
    )
    op.create_index(
        op.f("ix_kb_search_postings_entry_id"), "kb_search_postings", ["entry_id"], unique=False
    )
    if postgresql:
        _postgresql_indexes()
    else:
        _sqlite_fts()


def _sqlite_fts() -> None:
    """An external-content FTS5 table over the token columns, kept in sync by triggers, and
    its vocabulary (how many entries have each token)."""
    op.execute(
        "CREATE VIRTUAL TABLE kb_search_fts USING fts5("
        "strong, weak, content='kb_search_index', content_rowid='id', "
        "tokenize='unicode61 remove_diacritics 0', detail='column')"
    )
    op.execute("CREATE VIRTUAL TABLE kb_search_vocab USING fts5vocab(kb_search_fts, 'col')")
    op.execute(
        "CREATE TRIGGER kb_search_index_ai AFTER INSERT ON kb_search_index BEGIN "
        "INSERT INTO kb_search_fts(rowid, strong, weak) VALUES (new.id, new.strong, new.weak); "
        "END"
    )
    op.execute(
        "CREATE TRIGGER kb_search_index_ad AFTER DELETE ON kb_search_index BEGIN "
        "INSERT INTO kb_search_fts(kb_search_fts, rowid, strong, weak) "
        "VALUES ('delete', old.id, old.strong, old.weak); END"
    )
    op.execute(
        "CREATE TRIGGER kb_search_index_au AFTER UPDATE ON kb_search_index BEGIN "
        "INSERT INTO kb_search_fts(kb_search_fts, rowid, strong, weak) "
        "VALUES ('delete', old.id, old.strong, old.weak); "
        "INSERT INTO kb_search_fts(rowid, strong, weak) VALUES (new.id, new.strong, new.weak); "
        "END"
    )


def _postgresql_indexes() -> None:
    """A GIN index on the weak tokens; pg_trgm on the token vocabulary (typo look-ups)."""
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX ix_kb_search_index_weak ON kb_search_index USING gin (weak)")
    # Latin words only (typos are looked up among them), and on lower(token) so that plain
    # equality look-ups keep using the primary key.
    op.execute(
        "CREATE INDEX ix_kb_search_tokens_trgm ON kb_search_tokens "
        "USING gin (lower(token) gin_trgm_ops) WHERE token ~ '^[a-z]+$'"
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for suffix in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS kb_search_index_{suffix}")
        op.execute("DROP TABLE IF EXISTS kb_search_vocab")
        op.execute("DROP TABLE IF EXISTS kb_search_fts")
    op.drop_index(op.f("ix_kb_search_postings_entry_id"), table_name="kb_search_postings")
    op.drop_table("kb_search_postings")
    op.drop_table("kb_search_tokens")
    op.drop_table("kb_search_state")
    op.drop_index(op.f("ix_kb_search_index_hospital_id"), table_name="kb_search_index")
    op.drop_table("kb_search_index")
    op.drop_table("kb_service_info")
    op.drop_table("kb_article_versions")
    op.drop_table("kb_articles")
    op.drop_table("kb_drugs")
    op.drop_index(op.f("ix_kb_experts_hospital_id"), table_name="kb_experts")
    op.drop_index(op.f("ix_kb_experts_department_id"), table_name="kb_experts")
    op.drop_table("kb_experts")
    op.drop_index(op.f("ix_kb_departments_hospital_id"), table_name="kb_departments")
    op.drop_table("kb_departments")
    op.drop_table("kb_hospitals")
