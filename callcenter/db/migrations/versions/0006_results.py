"""results: lab results reported ready by hospital feeds

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lab_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hospital_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("result_id", sa.String(length=64), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("test_name_zh", sa.String(length=100), nullable=False),
        sa.Column("test_name_en", sa.String(length=100), nullable=False),
        sa.Column("ready_at", _TS, nullable=False),
        sa.Column("abnormal", sa.Boolean(), nullable=False),
        sa.Column("had_values", sa.Boolean(), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["booking_bookings.id"],
            name=op.f("fk_lab_results_booking_id_booking_bookings"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["booking_patients.id"],
            name=op.f("fk_lab_results_patient_id_booking_patients"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_results")),
        sa.UniqueConstraint(
            "hospital_id", "event_id", name=op.f("uq_lab_results_hospital_id_event_id")
        ),
        sa.UniqueConstraint(
            "hospital_id", "result_id", name=op.f("uq_lab_results_hospital_id_result_id")
        ),
    )
    with op.batch_alter_table("lab_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lab_results_patient_id"), ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lab_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lab_results_patient_id"))
    op.drop_table("lab_results")
