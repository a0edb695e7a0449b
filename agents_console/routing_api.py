"""Supervisor JSON API for routing: queues, agents, escalations and callbacks, live.

Every endpoint needs a signed-in supervisor or admin (``role_required``); changes are POSTs
with a JSON body and the session's CSRF token (``X-CSRFToken``), like every console request.

* ``GET /api/routing/queues``: per queue, as ``callcenter queues status --json``, plus the
  callbacks waiting in each;
* ``GET /api/routing/agents``: every agent with state, reason, since, skills, levels;
* ``POST /api/routing/agents/<id>/state``: ``{"state": "away"|"available"|"offline",
  "reason": "..."}``;
* ``POST /api/routing/agents/<id>/profile``: ``{"skills": {...}, "levels": {...},
  "languages": [...]}`` (fields given replace the agent's);
* ``GET /api/routing/escalations``: escalations not finished, with their age;
* ``GET /api/routing/callbacks``: callback requests waiting, in the order they will be served
  (numbers masked).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from callcenter.bootstrap import Services
from callcenter.routing.router import AgentState, RoutingError
from callcenter.routing.service import UnknownAgent, UnknownQueue

from .auth import role_required

SETTABLE = {
    "away": AgentState.AWAY,
    "available": AgentState.AVAILABLE,
    "offline": AgentState.OFFLINE,
}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _error(message: str, status: int) -> tuple[Response, int]:
    return jsonify(error=message), status


def _int_map(value: Any, name: str) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100
        for k, v in value.items()
    ):
        raise ValueError(f"{name} must map names to whole numbers 0-100")
    return dict(value)


def create_blueprint(services: Services) -> Blueprint:
    """The routing API blueprint."""
    bp = Blueprint("routing_api", __name__, url_prefix="/api/routing")
    supervisor = role_required("supervisor", "admin")

    @bp.get("/queues")
    @supervisor
    def queues() -> Any:
        status = services.routing.status()
        callbacks = services.phone.callbacks_due()
        data = _plain(asdict(status))
        for queue in data["queues"]:
            queue["callbacks_waiting"] = sum(1 for c in callbacks if c.queue == queue["queue"])
        return jsonify(data)

    @bp.get("/agents")
    @supervisor
    def agents() -> Any:
        return jsonify(agents=[_plain(asdict(a)) for a in services.phone.agents()])

    @bp.post("/agents/<agent_id>/state")
    @supervisor
    def agent_state(agent_id: str) -> Any:
        body = request.get_json(silent=True) or {}
        state = SETTABLE.get(str(body.get("state", "")))
        if state is None:
            return _error(f"state must be one of {', '.join(SETTABLE)}", 400)
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 64):
            return _error("reason must be text of at most 64 characters", 400)
        try:
            agent = services.routing.set_state(agent_id, state, reason or None)
        except UnknownAgent:
            return _error(f"no agent {agent_id}", 404)
        except (RoutingError, ValueError) as exc:
            return _error(str(exc), 409)
        return jsonify(agent=agent.id, state=str(agent.state), reason=agent.away_reason)

    @bp.post("/agents/<agent_id>/profile")
    @supervisor
    def agent_profile(agent_id: str) -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error("send a JSON object", 400)
        languages = body.get("languages")
        try:
            skills = _int_map(body.get("skills"), "skills")
            levels = _int_map(body.get("levels"), "levels")
            if languages is not None and (
                not isinstance(languages, list)
                or not all(lang in ("zh-CN", "en") for lang in languages)
            ):
                raise ValueError("languages must be a list of zh-CN, en")
            agent = services.routing.update_profile(
                agent_id, skills=skills, levels=levels, languages=languages
            )
        except UnknownAgent:
            return _error(f"no agent {agent_id}", 404)
        except UnknownQueue as exc:
            return _error(f"no queue {exc}", 400)
        except ValueError as exc:
            return _error(str(exc), 400)
        return jsonify(
            agent=agent.id,
            skills=dict(agent.skills),
            levels=dict(agent.levels),
            languages=sorted(agent.languages),
        )

    @bp.get("/escalations")
    @supervisor
    def escalations() -> Any:
        return jsonify(escalations=[e.to_json() for e in services.escalations.open_escalations()])

    @bp.get("/callbacks")
    @supervisor
    def callbacks() -> Any:
        return jsonify(callbacks=[_plain(asdict(c)) for c in services.phone.callbacks_due()])

    return bp
