"""Router tables: agents with their presence, and callers waiting for an agent.

Created by migration ``0007_routing``. Presence lives here, not in process memory: every
change is made in one transaction on locked rows (see :mod:`callcenter.routing.service`).
``callback_number`` is personal data and is never logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
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
    #: how the phone reaches the agent: E.164 number, ``sip:`` URI or ``client:`` name
    #: (migration 0010); ``None``: the agent takes calls in the console only
    contact: Mapped[str | None] = mapped_column(String(128))


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
    # -- on the phone (migration 0010)
    #: why a call that was not answered ended: ``hangup``, ``callback_expired``,
    #: ``callback_failed``
    end_reason: Mapped[str | None] = mapped_column(String(32))
    #: a callback not dialled by then is dropped
    callback_expires_at: Mapped[datetime | None]
    #: a callback that did not answer is not offered again before this
    callback_not_before: Mapped[datetime | None]
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: the provider's id of the leg ringing the agent (or of the callback leg once dialled)
    agent_leg: Mapped[str | None] = mapped_column(String(64))
    callback_leg: Mapped[str | None] = mapped_column(String(64))
    #: the conference the caller and agent talk in (``None`` until the agent accepted)
    conference: Mapped[str | None] = mapped_column(String(64))
    #: when the caller was moved (or dialled) into the conference
    connected_at: Mapped[datetime | None]


EXPERT_STATES = ("offline", "available", "busy")
ESCALATION_STATES = (
    "requested",
    "offered",
    "accepted",
    "declined",
    "timed_out",
    "callback_scheduled",
    "completed",
    "expired",
)


class RoutingExpert(Base):
    """A tier-2 hospital expert and their presence (migration 0010).

    Experts are their own rows, not routing agents: they never take queue calls, they have a
    specialty and a hospital instead of queue skills and levels, and they are busy with one
    escalation at a time. ``contact`` is how the phone reaches them (E.164, ``sip:`` or
    ``client:``).
    """

    __tablename__ = "routing_experts"
    __table_args__ = (
        CheckConstraint("state IN ('offline', 'available', 'busy')", name="state"),
        Index("ix_routing_experts_specialty_state", "specialty", "state"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    specialty: Mapped[str] = mapped_column(String(64))
    hospital: Mapped[str | None] = mapped_column(String(64))
    contact: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="offline")
    state_since: Mapped[datetime | None]
    #: the escalation the expert is busy with
    escalation: Mapped[str | None] = mapped_column(String(36))
    version: Mapped[int] = mapped_column(Integer, default=0)


class RoutingEscalation(Base):
    """An agent's request for a tier-2 expert, persisted (migration 0010).

    ``state`` follows :class:`~callcenter.routing.escalation.EscalationMachine`. An offer goes
    to the pool of experts of ``specialty`` (and ``hospital``, if given): every available one
    sees it, the first to accept takes it; ``declined_by`` are experts who said no.
    ``question`` and ``notes`` are what the agent wrote; they are shown to experts, never
    logged.
    """

    __tablename__ = "routing_escalations"
    __table_args__ = (
        CheckConstraint(
            "state IN ('requested', 'offered', 'accepted', 'declined', 'timed_out', "
            "'callback_scheduled', 'completed', 'expired')",
            name="state",
        ),
        Index("ix_routing_escalations_state", "state"),
        Index("ix_routing_escalations_call_id", "call_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str] = mapped_column(String(64))
    specialty: Mapped[str] = mapped_column(String(64))
    hospital: Mapped[str | None] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)
    notes: Mapped[str] = mapped_column(Text, default="")
    article_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(24))
    expert_id: Mapped[str | None] = mapped_column(String(64))
    declined_by: Mapped[list[str]] = mapped_column(JSON, default=list)
    requested_at: Mapped[datetime]
    offered_at: Mapped[datetime | None]
    offer_deadline: Mapped[datetime | None]
    callback_deadline: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    answer_note: Mapped[str | None] = mapped_column(Text)
    #: the conference the expert joins (the caller's), and the expert's call leg
    conference: Mapped[str | None] = mapped_column(String(64))
    expert_leg: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=0)


class RoutingEscalationTransition(Base):
    """One logged escalation transition (append-only; migration 0010)."""

    __tablename__ = "routing_escalation_transitions"
    __table_args__ = (Index("ix_routing_escalation_transitions_escalation", "escalation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    escalation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("routing_escalations.id", ondelete="CASCADE")
    )
    at: Mapped[datetime]
    from_state: Mapped[str | None] = mapped_column(String(24))
    action: Mapped[str] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    #: who caused it: an agent or expert id, or ``timer``
    actor: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RoutingConferenceEvent(Base):
    """A conference status callback, as received (migration 0010)."""

    __tablename__ = "routing_conference_events"
    __table_args__ = (Index("ix_routing_conference_events_conference", "conference"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conference: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    #: the participant's leg, and who that is: ``caller``, ``agent``, ``expert`` or ``other``
    leg: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(16))
    sequence: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime]


class RoutingPhoneTask(Base):
    """Provider work a webhook asked for and the router loop does (migration 0010).

    Webhook views never call the provider's REST API themselves: they write a task (``kind``
    ``connect``: move the caller into the conference, ``dial_callback``, ``hangup`` a leg) in
    the same transaction as the change that causes it, and ``callcenter router`` runs it.
    ``key`` makes a repeated webhook add nothing.
    """

    __tablename__ = "routing_phone_tasks"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'done', 'failed')", name="status"),
        Index("ix_routing_phone_tasks_status", "status", "not_before"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(200))
