"""failed console sign-ins per network address

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sign_in_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sign_in_failures")),
    )
    op.create_index(
        "ix_console_sign_in_failures_source_at",
        "console_sign_in_failures",
        ["source", "at"],
    )
    op.create_index("ix_console_sign_in_failures_at", "console_sign_in_failures", ["at"])


def downgrade() -> None:
    op.drop_index("ix_console_sign_in_failures_at", table_name="console_sign_in_failures")
    op.drop_index("ix_console_sign_in_failures_source_at", table_name="console_sign_in_failures")
    op.drop_table("console_sign_in_failures")
