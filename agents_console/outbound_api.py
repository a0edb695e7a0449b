"""JSON API over the outbox for supervisors and admins: what is due, sent, failed and why.

The same figures as ``callcenter outbound status``, read through the outbox's read helpers
(:meth:`~callcenter.messaging.outbox.Outbox.counts_by_template`, ``top_failures``,
``deferred_counts``, ``list_messages``). Recipients are always masked and error texts masked
again; message bodies and template parameters are never returned.

* ``GET /api/outbound/status?since_hours=24``: per template, messages by state (``due``:
  pending and may go now; ``waiting``: pending, held back; then the statuses), totals, the
  commonest failure reasons, and the messages held back now by reason (quiet hours,
  frequency cap).
* ``GET /api/outbound/messages?state=failed&limit=50``: the newest messages in one state
  (``due``, ``waiting``, ``claimed``, ``sent`` (handed to the provider), ``failed`` (did
  not reach the recipient), or any single status), newest first.

Only signed-in supervisors and admins (401 JSON when signed out, 403 for other roles).
Bad parameters get 400 with a message saying which and why.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NoReturn

from flask import Blueprint, abort, jsonify, make_response, request
from sqlalchemy import or_, select

from callcenter.bootstrap import Services
from callcenter.db.models import OutboxMessage
from callcenter.logs import mask_text
from callcenter.messaging.outbox import FAILURES, PENDING, STATUS_RANK, MessageView, Outbox

from .auth import role_required

#: At most this many hours back (a year and a day).
MAX_SINCE_HOURS = 24 * 366
MAX_LIMIT = 500
#: Statuses of messages the provider accepted (whatever became of them afterwards).
HANDED = tuple(
    sorted(s for s, r in STATUS_RANK.items() if r >= STATUS_RANK["accepted"] and s not in FAILURES)
)
#: States ``/messages`` understands besides single statuses.
GROUPS = ("due", "waiting", "sent", "failed")


def _bad(message: str) -> NoReturn:
    """Stop with 400 and ``{"error": message}``."""
    abort(make_response(jsonify(error=message), 400))


def _number(name: str, default: str, low: float, high: float, *, whole: bool) -> float:
    text = request.args.get(name, default).strip()
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        _bad(f"{name} must be a {'whole ' if whole else ''}number")
    if not low <= value <= high or value != value:  # NaN is never in range
        _bad(f"{name} must be from {low:g} to {high:g}")
    return value


def _message(view: MessageView, now: datetime) -> dict[str, Any]:
    state = view.status
    if view.status == PENDING:
        state = "due" if view.not_before is None or view.not_before <= now else "waiting"
    return {
        "id": view.id,
        "channel": view.channel,
        "to": view.to_masked,
        "template": view.template,
        "language": view.language,
        "status": view.status,
        "state": state,
        "essential": view.essential,
        "urgent": view.urgent,
        "attempts": view.attempts,
        "due_at": view.due_at.isoformat(),
        "not_before": view.not_before.isoformat() if view.not_before else None,
        "error_code": view.last_error_code,
        "error": mask_text(view.last_error) if view.last_error else None,
        "created_at": view.created_at.isoformat(),
        "updated_at": view.updated_at.isoformat() if view.updated_at else None,
    }


def _messages(outbox: Outbox, services: Services, state: str, limit: int) -> list[MessageView]:
    """The newest ``limit`` messages in ``state`` (a group or a single status)."""
    now = services.clock.now()
    query = select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(limit)
    if state == "due":
        query = query.where(
            OutboxMessage.status == PENDING,
            or_(OutboxMessage.not_before.is_(None), OutboxMessage.not_before <= now),
        )
    elif state == "waiting":
        query = query.where(OutboxMessage.status == PENDING, OutboxMessage.not_before > now)
    elif state == "sent":
        query = query.where(OutboxMessage.status.in_(HANDED))
    elif state == "failed":
        query = query.where(OutboxMessage.status.in_(FAILURES))
    else:
        query = query.where(OutboxMessage.status == state)
    with services.db.sessions() as s:
        views = [outbox.get(s, int(i)) for i in s.scalars(query)]
    return [v for v in views if v is not None]


def create_blueprint(services: Services) -> Blueprint:
    """The ``/api/outbound`` blueprint bound to ``services``."""
    bp = Blueprint("outbound_api", __name__, url_prefix="/api/outbound")
    outbox = services.outbox

    @bp.get("/status")
    @role_required("supervisor", "admin")
    def status() -> Any:
        """Per template and state, totals, top failure reasons, held back by reason."""
        hours = _number("since_hours", "24", 0.01, MAX_SINCE_HOURS, whole=False)
        now = services.clock.now()
        since = now - timedelta(hours=hours)
        with services.db.sessions() as s:
            by_template = outbox.counts_by_template(s, since=since, now=now)
            failures = outbox.top_failures(s, since=since)
            deferred = outbox.deferred_counts(s, now=now)
        totals = {"due": 0, "waiting": 0, "in_progress": 0, "sent": 0, "failed": 0, "other": 0}
        for counts in by_template.values():
            for state, n in counts.items():
                if state in ("due", "waiting"):
                    totals[state] += n
                elif state == "claimed":
                    totals["in_progress"] += n
                elif state in FAILURES:
                    totals["failed"] += n
                elif state in HANDED:
                    totals["sent"] += n
                else:
                    totals["other"] += n
        return jsonify(
            now=now.isoformat(),
            since=since.isoformat(),
            totals=totals,
            by_template={t: dict(sorted(c.items())) for t, c in sorted(by_template.items())},
            top_failures=[
                {"code": code, "error": mask_text(text) if text else None, "count": n}
                for code, text, n in failures
            ],
            deferred={
                reason.removeprefix("deferred: "): n for reason, n in sorted(deferred.items())
            },
        )

    @bp.get("/messages")
    @role_required("supervisor", "admin")
    def messages() -> Any:
        """The newest messages in one state, recipients masked."""
        state = request.args.get("state", "failed").strip()
        if state not in GROUPS and state not in STATUS_RANK:
            known = ", ".join([*GROUPS, *sorted(STATUS_RANK)])
            _bad(f"state must be one of: {known}")
        limit = int(_number("limit", "50", 1, MAX_LIMIT, whole=True))
        now = services.clock.now()
        found = _messages(outbox, services, state, limit)
        return jsonify(state=state, messages=[_message(v, now) for v in found])

    return bp
