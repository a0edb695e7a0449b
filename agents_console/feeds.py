"""Hospital feeds: signed JSON events from a hospital's systems, and what they may read back.

* ``POST /api/hospitals/<hospital>/results``: a lab result is ready (see
  :mod:`callcenter.feeds.service` for the signature, the payload and what happens);
* ``POST /api/hospitals/<hospital>/queue-events``: a clinic's queue moved (waiting-room
  recall, :mod:`callcenter.recall.queue`);
* ``GET /api/hospitals/<hospital>/recalls[?since=<ISO time>]``: what recalled patients
  answered (``cannot_come``: pressed 2) and why recalls ended, signed like a post with an
  empty body;
* ``GET /api/hospitals/<hospital>/clinician-tasks``: open tasks for the hospital's clinicians
  (abnormal results whose patients were told to contact their doctor), signed the same way;
  each read is audited.

Bodies over the configured limit get 413 before anything is read; every answer is JSON,
``{"error": "..."}`` when the request is refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify, request

from callcenter.bootstrap import Services
from callcenter.feeds.service import FeedAnswer, FeedRefused


def _json(answer: FeedAnswer) -> Any:
    return jsonify(answer.body), answer.status


def create_blueprint(services: Services) -> Blueprint:
    """The ``/api/hospitals`` feed blueprint bound to ``services``."""
    bp = Blueprint("feeds", __name__, url_prefix="/api/hospitals")
    limit = services.config.settings.web.max_body_bytes
    feeds = services.feeds
    recall = services.recall

    def body_or_413() -> bytes | None:
        length = request.content_length
        if length is not None and length > limit:
            return None
        body = request.get_data(cache=False)
        return None if len(body) > limit else body

    def too_large() -> Any:
        return _json(FeedAnswer(413, {"error": f"the body is over {limit} bytes"}))

    @bp.post("/<hospital>/results")
    def results(hospital: str) -> Any:
        """A hospital reports a lab result ready."""
        body = body_or_413()
        if body is None:
            return too_large()
        return _json(
            feeds.results_ready(
                hospital,
                request.headers.get("X-Hotline-Timestamp"),
                request.headers.get("X-Hotline-Signature"),
                body,
            )
        )

    @bp.post("/<hospital>/queue-events")
    def queue_events(hospital: str) -> Any:
        """A hospital's queue system reports a clinic's queue."""
        body = body_or_413()
        if body is None:
            return too_large()
        return _json(
            recall.queue_event(
                hospital,
                request.headers.get("X-Hotline-Timestamp"),
                request.headers.get("X-Hotline-Signature"),
                body,
            )
        )

    def signed_get(hospital: str) -> FeedRefused | None:
        try:
            feeds.authenticate(
                hospital,
                request.headers.get("X-Hotline-Timestamp"),
                request.headers.get("X-Hotline-Signature"),
                b"",
            )
        except FeedRefused as refused:
            return refused
        return None

    @bp.get("/<hospital>/clinician-tasks")
    def clinician_tasks(hospital: str) -> Any:
        """Open clinician tasks of the hospital (signed, empty body; audited)."""
        refused = signed_get(hospital)
        if refused is not None:
            return _json(refused.answer())
        tasks = services.results.open_tasks(hospital, operator=f"feed:{hospital}")
        return _json(FeedAnswer(200, {"tasks": tasks}))

    @bp.get("/<hospital>/recalls")
    def recalls(hospital: str) -> Any:
        """What recalled patients of the hospital answered (signed, empty body)."""
        refused = signed_get(hospital)
        if refused is not None:
            return _json(refused.answer())
        since: datetime | None = None
        raw = request.args.get("since")
        if raw:
            try:
                since = datetime.fromisoformat(raw)
            except ValueError:
                return _json(FeedAnswer(400, {"error": "since: not an ISO 8601 time"}))
            if since.tzinfo is None:
                return _json(FeedAnswer(400, {"error": "since: give a time zone offset"}))
        return _json(FeedAnswer(200, {"recalls": recall.answers(hospital, since=since)}))

    return bp
