"""booking: clinics, slots, reserved places, patients, bookings, visit-password attempts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "booking_clinics",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("hospital_id", sa.String(length=64), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=False),
        sa.Column("expert_id", sa.String(length=64), nullable=True),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("session", sa.String(length=8), nullable=False),
        sa.Column("fee", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cancel_reason", sa.String(length=200), nullable=True),
        _at("cancelled_at", nullable=True),
        sa.Column("cancelled_by", sa.String(length=64), nullable=True),
        sa.Column("is_demo", sa.Boolean(), nullable=False),
        _at("updated_at"),
        sa.CheckConstraint(
            "session IN ('am', 'pm', 'evening')", name=op.f("ck_booking_clinics_session")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'cancelled')", name=op.f("ck_booking_clinics_status")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"],
            ["kb_hospitals.id"],
            name=op.f("fk_booking_clinics_hospital_id_kb_hospitals"),
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["kb_departments.id"],
            name=op.f("fk_booking_clinics_department_id_kb_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["expert_id"],
            ["kb_experts.id"],
            name=op.f("fk_booking_clinics_expert_id_kb_experts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_clinics")),
    )
    op.create_index(
        "ix_booking_clinics_department_date", "booking_clinics", ["department_id", "date"]
    )
    op.create_index(op.f("ix_booking_clinics_hospital_id"), "booking_clinics", ["hospital_id"])
    op.create_index(op.f("ix_booking_clinics_expert_id"), "booking_clinics", ["expert_id"])

    op.create_table(
        "booking_slots",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("clinic_id", sa.String(length=100), nullable=False),
        _at("starts_at"),
        _at("ends_at"),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "booked >= 0 AND booked <= capacity", name=op.f("ck_booking_slots_places")
        ),
        sa.CheckConstraint("capacity >= 0", name=op.f("ck_booking_slots_capacity")),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["booking_clinics.id"],
            name=op.f("fk_booking_slots_clinic_id_booking_clinics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_slots")),
        sa.UniqueConstraint(
            "clinic_id", "starts_at", name=op.f("uq_booking_slots_clinic_id_starts_at")
        ),
    )
    op.create_index(op.f("ix_booking_slots_clinic_id"), "booking_slots", ["clinic_id"])
    op.create_index("ix_booking_slots_starts_at", "booking_slots", ["starts_at"])

    op.create_table(
        "booking_places",
        sa.Column("reference", sa.String(length=40), nullable=False),
        sa.Column("slot_id", sa.String(length=120), nullable=False),
        _at("reserved_at"),
        _at("released_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["slot_id"],
            ["booking_slots.id"],
            name=op.f("fk_booking_places_slot_id_booking_slots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_booking_places")),
    )
    op.create_index(op.f("ix_booking_places_slot_id"), "booking_places", ["slot_id"])

    op.create_table(
        "booking_patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("id_type", sa.String(length=16), nullable=False),
        sa.Column("id_hmac", sa.String(length=64), nullable=False),
        sa.Column("id_last4", sa.String(length=4), nullable=False),
        _at("locked_at", nullable=True),
        _at("unlocked_at", nullable=True),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_patients")),
        sa.UniqueConstraint("id_type", "id_hmac", name=op.f("uq_booking_patients_id_type_id_hmac")),
    )

    op.create_table(
        "booking_bookings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_number", sa.String(length=8), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("slot_id", sa.String(length=120), nullable=False),
        sa.Column("clinic_id", sa.String(length=100), nullable=False),
        sa.Column("backend_ref", sa.String(length=200), nullable=False),
        sa.Column("hospital_id", sa.String(length=64), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=False),
        sa.Column("expert_id", sa.String(length=64), nullable=True),
        sa.Column("visit_date", sa.Date(), nullable=False),
        _at("starts_at"),
        _at("ends_at"),
        sa.Column("fee", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        _at("password_expires_at"),
        sa.Column("contact_phone", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        _at("cancelled_at", nullable=True),
        sa.Column("cancelled_by", sa.String(length=64), nullable=True),
        sa.Column("cancel_reason", sa.String(length=200), nullable=True),
        _at("outcome_at", nullable=True),
        sa.Column("password_version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('booked', 'cancelled', 'attended', 'no_show')",
            name=op.f("ck_booking_bookings_status"),
        ),
        sa.CheckConstraint(
            "channel IN ('ivr', 'operator')", name=op.f("ck_booking_bookings_channel")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["booking_patients.id"],
            name=op.f("fk_booking_bookings_patient_id_booking_patients"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_bookings")),
        sa.UniqueConstraint("visit_number", name=op.f("uq_booking_bookings_visit_number")),
    )
    op.create_index(
        "ix_booking_bookings_patient_date", "booking_bookings", ["patient_id", "visit_date"]
    )
    op.create_index(
        "ix_booking_bookings_phone_status", "booking_bookings", ["contact_phone", "status"]
    )
    op.create_index(
        "ix_booking_bookings_clinic_status", "booking_bookings", ["clinic_id", "status"]
    )
    op.create_index(op.f("ix_booking_bookings_slot_id"), "booking_bookings", ["slot_id"])

    op.create_table(
        "booking_pin_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        _at("at"),
        sa.Column("visit_number", sa.String(length=16), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.Column("operator", sa.String(length=64), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["booking_bookings.id"],
            name=op.f("fk_booking_pin_attempts_booking_id_booking_bookings"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["booking_patients.id"],
            name=op.f("fk_booking_pin_attempts_patient_id_booking_patients"),
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_booking_pin_attempts_call_id_calls"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_pin_attempts")),
    )
    op.create_index(
        "ix_booking_pin_attempts_patient_at", "booking_pin_attempts", ["patient_id", "at"]
    )
    op.create_index("ix_booking_pin_attempts_call", "booking_pin_attempts", ["call_id"])


def downgrade() -> None:
    op.drop_table("booking_pin_attempts")
    op.drop_table("booking_bookings")
    op.drop_table("booking_patients")
    op.drop_table("booking_places")
    op.drop_table("booking_slots")
    op.drop_table("booking_clinics")
