"""messaging: outbox delivery columns, attempts, opt-outs, shared rate limits

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("urgent", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("sealed", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("not_before", _TS, nullable=True))
        batch_op.add_column(sa.Column("lease_until", _TS, nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("provider", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("provider_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("segments", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("status_rank", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("last_error_code", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("sent_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("finished_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("updated_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("reply_handler", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reply_context", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reply_until", _TS, nullable=True))
        batch_op.create_index("ix_outbox_status_not_before", ["status", "not_before"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_provider_id"), ["provider_id"], unique=False)

    op.create_table(
        "outbox_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("provider_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox.id"],
            name=op.f("fk_outbox_attempts_outbox_id_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_attempts")),
        sa.UniqueConstraint(
            "outbox_id", "attempt", name=op.f("uq_outbox_attempts_outbox_id_attempt")
        ),
    )
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_attempts_provider_id"), ["provider_id"], unique=False
        )

    op.create_table(
        "sms_opt_outs",
        sa.Column("phone_e164", sa.String(length=20), nullable=False),
        sa.Column("opted_out_at", _TS, nullable=False),
        sa.Column("keyword", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("phone_e164", name=op.f("pk_sms_opt_outs")),
    )
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limits")),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("sms_opt_outs")
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_attempts_provider_id"))
    op.drop_table("outbox_attempts")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_provider_id"))
        batch_op.drop_index("ix_outbox_status_not_before")
        for column in (
            "reply_until",
            "reply_context",
            "reply_handler",
            "updated_at",
            "finished_at",
            "sent_at",
            "last_error",
            "last_error_code",
            "status_rank",
            "segments",
            "provider_id",
            "provider",
            "claim_token",
            "claimed_by",
            "lease_until",
            "not_before",
            "sealed",
            "attempts",
            "urgent",
        ):
            batch_op.drop_column(column)
