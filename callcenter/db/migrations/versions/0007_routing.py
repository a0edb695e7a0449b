"""routing: agents' presence and callers waiting for an agent

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "routing_agents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.String(length=64), nullable=True),
        sa.Column("state_since", _TS, nullable=True),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("levels", sa.JSON(), nullable=False),
        sa.Column("last_call_end", _TS, nullable=True),
        sa.Column("calls_today", sa.Integer(), nullable=False),
        sa.Column("missed_in_row", sa.Integer(), nullable=False),
        sa.Column("wrap_up_until", _TS, nullable=True),
        sa.Column("offer", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "state IN ('offline', 'available', 'reserved', 'on_call', 'wrap_up', 'away')",
            name=op.f("ck_routing_agents_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_agents")),
    )
    with op.batch_alter_table("routing_agents", schema=None) as batch_op:
        batch_op.create_index("ix_routing_agents_state", ["state"], unique=False)
    op.create_table(
        "routing_callers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("enqueued_at", _TS, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("red_flag", sa.Boolean(), nullable=False),
        sa.Column("callback", sa.Boolean(), nullable=False),
        sa.Column("callback_number", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("offered_agent", sa.String(length=64), nullable=True),
        sa.Column("offered_at", _TS, nullable=True),
        sa.Column("tried", sa.JSON(), nullable=False),
        sa.Column("answered_at", _TS, nullable=True),
        sa.Column("answered_by", sa.String(length=64), nullable=True),
        sa.Column("abandoned_at", _TS, nullable=True),
        sa.Column("ended_at", _TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('waiting', 'offered', 'answered', 'abandoned')",
            name=op.f("ck_routing_callers_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_callers")),
    )
    with op.batch_alter_table("routing_callers", schema=None) as batch_op:
        batch_op.create_index("ix_routing_callers_status_queue", ["status", "queue"], unique=False)
        batch_op.create_index("ix_routing_callers_enqueued_at", ["enqueued_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("routing_callers", schema=None) as batch_op:
        batch_op.drop_index("ix_routing_callers_enqueued_at")
        batch_op.drop_index("ix_routing_callers_status_queue")
    op.drop_table("routing_callers")
    with op.batch_alter_table("routing_agents", schema=None) as batch_op:
        batch_op.drop_index("ix_routing_agents_state")
    op.drop_table("routing_agents")
