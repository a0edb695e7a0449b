"""Console users and their server-side sessions.

Created by migration ``0008_console_users``. Passwords are stored only as argon2id hashes;
session tokens only as SHA-256 hashes (the raw token lives in the user's signed cookie).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db.models import Base

ROLES = ("agent", "expert", "supervisor", "admin")


class ConsoleUser(Base):
    """A person who signs in to the console.

    ``routing_agent_id`` links an agent or expert to their ``routing_agents`` row (presence);
    ``specialty`` and ``hospital`` say which escalations an expert can take.
    """

    __tablename__ = "console_users"
    __table_args__ = (
        CheckConstraint("role IN ('agent', 'expert', 'supervisor', 'admin')", name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    #: a password an admin handed out: the user must choose their own at the next sign-in
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    routing_agent_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("routing_agents.id", ondelete="SET NULL"), unique=True
    )
    specialty: Mapped[str | None] = mapped_column(String(64))
    hospital: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="zh-CN")
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]
    last_sign_in_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """One sign-in: alive until signed out, idle too long, or too old (see the service)."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_user_open", "user_id", "ended_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 (hex) of the random token in the user's cookie
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    #: signed_out, idle, expired, locked, deactivated, password_changed
    end_reason: Mapped[str | None] = mapped_column(String(24))


class SignInFailure(Base):
    """A failed sign-in from one network address, kept for ``console.source_window_minutes``
    to slow down guessing across many accounts from one place (the per-account lockout
    stops guessing at one account)."""

    __tablename__ = "console_sign_in_failures"
    __table_args__ = (
        Index("ix_console_sign_in_failures_source_at", "source", "at"),
        Index("ix_console_sign_in_failures_at", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the client's address as the console sees it (after ``web.proxy_hops``)
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
