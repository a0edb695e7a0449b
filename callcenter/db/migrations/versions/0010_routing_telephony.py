"""routing on the phone: callbacks, calls offered to agents, conferences

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("routing_agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contact", sa.String(length=128), nullable=True))
    with op.batch_alter_table("routing_callers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("end_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("callback_expires_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("callback_not_before", _TS, nullable=True))
        batch_op.add_column(
            sa.Column("callback_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("agent_leg", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("callback_leg", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("conference", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("connected_at", _TS, nullable=True))
    op.create_table(
        "routing_experts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("specialty", sa.String(length=64), nullable=False),
        sa.Column("hospital", sa.String(length=64), nullable=True),
        sa.Column("contact", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_since", _TS, nullable=True),
        sa.Column("escalation", sa.String(length=36), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "state IN ('offline', 'available', 'busy')", name=op.f("ck_routing_experts_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_experts")),
    )
    op.create_index("ix_routing_experts_specialty_state", "routing_experts", ["specialty", "state"])
    op.create_table(
        "routing_escalations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("specialty", sa.String(length=64), nullable=False),
        sa.Column("hospital", sa.String(length=64), nullable=True),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("article_ids", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("expert_id", sa.String(length=64), nullable=True),
        sa.Column("declined_by", sa.JSON(), nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("offered_at", _TS, nullable=True),
        sa.Column("offer_deadline", _TS, nullable=True),
        sa.Column("callback_deadline", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("completed_at", _TS, nullable=True),
        sa.Column("answer_note", sa.Text(), nullable=True),
        sa.Column("conference", sa.String(length=64), nullable=True),
        sa.Column("expert_leg", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "state IN ('requested', 'offered', 'accepted', 'declined', 'timed_out', "
            "'callback_scheduled', 'completed', 'expired')",
            name=op.f("ck_routing_escalations_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_escalations")),
    )
    op.create_index("ix_routing_escalations_state", "routing_escalations", ["state"])
    op.create_index("ix_routing_escalations_call_id", "routing_escalations", ["call_id"])
    op.create_table(
        "routing_escalation_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalation_id", sa.String(length=36), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("from_state", sa.String(length=24), nullable=True),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("to_state", sa.String(length=24), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["routing_escalations.id"],
            name=op.f("fk_routing_escalation_transitions_escalation_id_routing_escalations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_escalation_transitions")),
    )
    op.create_index(
        "ix_routing_escalation_transitions_escalation",
        "routing_escalation_transitions",
        ["escalation_id"],
    )
    op.create_table(
        "routing_conference_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conference", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("leg", sa.String(length=64), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_conference_events")),
    )
    op.create_index(
        "ix_routing_conference_events_conference", "routing_conference_events", ["conference"]
    )
    op.create_table(
        "routing_phone_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("done_at", _TS, nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed')", name=op.f("ck_routing_phone_tasks_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_phone_tasks")),
        sa.UniqueConstraint("key", name=op.f("uq_routing_phone_tasks_key")),
    )
    op.create_index(
        "ix_routing_phone_tasks_status", "routing_phone_tasks", ["status", "not_before"]
    )


def downgrade() -> None:
    op.drop_index("ix_routing_phone_tasks_status", table_name="routing_phone_tasks")
    op.drop_table("routing_phone_tasks")
    op.drop_index("ix_routing_conference_events_conference", table_name="routing_conference_events")
    op.drop_table("routing_conference_events")
    op.drop_index(
        "ix_routing_escalation_transitions_escalation",
        table_name="routing_escalation_transitions",
    )
    op.drop_table("routing_escalation_transitions")
    op.drop_index("ix_routing_escalations_call_id", table_name="routing_escalations")
    op.drop_index("ix_routing_escalations_state", table_name="routing_escalations")
    op.drop_table("routing_escalations")
    op.drop_index("ix_routing_experts_specialty_state", table_name="routing_experts")
    op.drop_table("routing_experts")
    with op.batch_alter_table("routing_callers", schema=None) as batch_op:
        for name in (
            "connected_at",
            "conference",
            "callback_leg",
            "agent_leg",
            "callback_attempts",
            "callback_not_before",
            "callback_expires_at",
            "end_reason",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("routing_agents", schema=None) as batch_op:
        batch_op.drop_column("contact")
