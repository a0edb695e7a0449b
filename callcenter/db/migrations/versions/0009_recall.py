"""recall: hospital queue events, waiting-room recall, results values and clinician tasks

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("lab_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("values_sealed", sa.Text(), nullable=True))
    op.create_table(
        "recall_clinics",
        sa.Column("hospital_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("name_en", sa.String(length=100), nullable=False),
        sa.Column("recall_places", sa.Integer(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("hospital_id", "clinic_id", name=op.f("pk_recall_clinics")),
    )
    op.create_table(
        "recall_queue_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hospital_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("now_calling", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recall_queue_events")),
        sa.UniqueConstraint(
            "hospital_id", "event_id", name=op.f("uq_recall_queue_events_hospital_id_event_id")
        ),
    )
    op.create_table(
        "recall_visits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hospital_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("visit_number", sa.String(length=16), nullable=False),
        sa.Column("queue_number", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("places_ahead", sa.Integer(), nullable=True),
        sa.Column("recall_at", _TS, nullable=True),
        sa.Column("answered_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('waiting', 'calling', 'confirmed', 'cannot_come', 'unreachable', "
            "'passed', 'checked_in')",
            name=op.f("ck_recall_visits_status"),
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["booking_bookings.id"],
            name=op.f("fk_recall_visits_booking_id_booking_bookings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recall_visits")),
        sa.UniqueConstraint(
            "hospital_id", "visit_number", name=op.f("uq_recall_visits_hospital_id_visit_number")
        ),
    )
    op.create_index(
        "ix_recall_visits_clinic_status",
        "recall_visits",
        ["hospital_id", "clinic_id", "status"],
        unique=False,
    )
    op.create_table(
        "outbound_calls",
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("provider_call_id", sa.String(length=64), nullable=True),
        sa.Column("answered_by", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox.id"],
            name=op.f("fk_outbound_calls_outbox_id_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_outbound_calls")),
    )
    op.create_index("ix_outbound_calls_kind_ref", "outbound_calls", ["kind", "ref_id"])
    op.create_index(
        op.f("ix_outbound_calls_provider_call_id"), "outbound_calls", ["provider_call_id"]
    )
    op.create_table(
        "clinician_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("hospital_id", sa.String(length=64), nullable=False),
        sa.Column("lab_result_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint("status IN ('open', 'done')", name=op.f("ck_clinician_tasks_status")),
        sa.ForeignKeyConstraint(
            ["lab_result_id"],
            ["lab_results.id"],
            name=op.f("fk_clinician_tasks_lab_result_id_lab_results"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["booking_patients.id"],
            name=op.f("fk_clinician_tasks_patient_id_booking_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["booking_bookings.id"],
            name=op.f("fk_clinician_tasks_booking_id_booking_bookings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinician_tasks")),
        sa.UniqueConstraint(
            "kind", "lab_result_id", name=op.f("uq_clinician_tasks_kind_lab_result_id")
        ),
    )
    op.create_index(
        "ix_clinician_tasks_hospital_status", "clinician_tasks", ["hospital_id", "status"]
    )
    op.create_table(
        "outbound_preferences",
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("reminder_channel", sa.String(length=8), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "reminder_channel IN ('sms', 'voice')", name=op.f("ck_outbound_preferences_channel")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["booking_patients.id"],
            name=op.f("fk_outbound_preferences_patient_id_booking_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_outbound_preferences")),
    )


def downgrade() -> None:
    op.drop_table("outbound_preferences")
    op.drop_index("ix_clinician_tasks_hospital_status", table_name="clinician_tasks")
    op.drop_table("clinician_tasks")
    op.drop_index(op.f("ix_outbound_calls_provider_call_id"), table_name="outbound_calls")
    op.drop_index("ix_outbound_calls_kind_ref", table_name="outbound_calls")
    op.drop_table("outbound_calls")
    op.drop_index("ix_recall_visits_clinic_status", table_name="recall_visits")
    op.drop_table("recall_visits")
    op.drop_table("recall_queue_events")
    op.drop_table("recall_clinics")
    with op.batch_alter_table("lab_results", schema=None) as batch_op:
        batch_op.drop_column("values_sealed")
