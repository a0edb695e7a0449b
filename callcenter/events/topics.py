"""Topic names, in one place, so publishers and the console agree.

Events carry ids and states only: a call is named by its provider call id, an agent by their
routing id; the screen fetches anything personal through an audited page load.
"""

from __future__ import annotations

#: Every queue change (callers waiting, offers, answers, abandons): supervisors' wallboards.
QUEUES = "queues"
#: Every agent state change: supervisors' wallboards.
AGENTS = "agents"
#: Every escalation change: supervisors' wallboards.
ESCALATIONS = "escalations"


def agent(agent_id: str) -> str:
    """One agent's own events: offers to them, their state."""
    return f"agent:{agent_id}"


def queue(name: str) -> str:
    """One queue's events."""
    return f"queue:{name}"


def expert(expert_id: str) -> str:
    """One expert's own events: escalations offered to them."""
    return f"expert:{expert_id}"


def user(user_id: str | int) -> str:
    """One console user's session events (signed out elsewhere, disabled)."""
    return f"user:{user_id}"
