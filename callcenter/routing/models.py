"""Router tables: agents with their presence, and callers waiting for an agent.

Created by migration ``0007_routing``. Presence lives here, not in process memory: every
change is made in one transaction on locked rows (see :mod:`callcenter.routing.service`).
``callback_number`` is personal data and is never logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db.models import Base

AGENT_STATES = ("offline", "available", "reserved", "on_call", "wrap_up", "away")
CALLER_STATUSES = ("waiting", "offered", "answered", "abandoned")


class RoutingAgent(Base):
    """A tier-1 agent and their presence (one row per agent).

    ``skills`` maps skill -> proficiency; ``levels`` maps queue -> tier level; ``offer`` is
    the caller ringing (reserved) or being talked to (on call). ``version`` grows with every
    change.
    """

    __tablename__ = "routing_agents"
    __table_args__ = (
        CheckConstraint(
            "state IN ('offline', 'available', 'reserved', 'on_call', 'wrap_up', 'away')",
            name="state",
        ),
        Index("ix_routing_agents_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    state: Mapped[str] = mapped_column(String(16), default="offline")
    state_reason: Mapped[str | None] = mapped_column(String(64))
    state_since: Mapped[datetime | None]
    skills: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    levels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_call_end: Mapped[datetime | None]
    calls_today: Mapped[int] = mapped_column(Integer, default=0)
    missed_in_row: Mapped[int] = mapped_column(Integer, default=0)
    wrap_up_until: Mapped[datetime | None]
    offer: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=0)


class RoutingCaller(Base):
    """A call waiting for an agent, or a callback request, and how it ended.

    ``status``: waiting -> offered (an agent is ringing) -> answered, or back to waiting
    when the offer rings out (the agent joins ``tried``); waiting or offered -> abandoned.
    """

    __tablename__ = "routing_callers"
    __table_args__ = (
        CheckConstraint("status IN ('waiting', 'offered', 'answered', 'abandoned')", name="status"),
        Index("ix_routing_callers_status_queue", "status", "queue"),
        Index("ix_routing_callers_enqueued_at", "enqueued_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    queue: Mapped[str] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(8))
    enqueued_at: Mapped[datetime]
    priority: Mapped[int] = mapped_column(Integer, default=0)
    red_flag: Mapped[bool] = mapped_column(Boolean, default=False)
    callback: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_number: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    offered_agent: Mapped[str | None] = mapped_column(String(64))
    offered_at: Mapped[datetime | None]
    tried: Mapped[list[str]] = mapped_column(JSON, default=list)
    answered_at: Mapped[datetime | None]
    answered_by: Mapped[str | None] = mapped_column(String(64))
    abandoned_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
