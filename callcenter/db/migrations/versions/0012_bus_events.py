"""live events through a table, for the processes sharing one SQLite file

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 17:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bus_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("origin", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bus_events")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_bus_events_at", "bus_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_bus_events_at", table_name="bus_events")
    op.drop_table("bus_events")
