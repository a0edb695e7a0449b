"""Hospital feeds: signed JSON events from a hospital's systems.

* ``POST /api/hospitals/<hospital>/results``: a lab result is ready (see
  :mod:`callcenter.feeds.service` for the signature, the payload and what happens).

Bodies over the configured limit get 413 before anything is read; every answer is JSON,
``{"error": "..."}`` when the event is refused.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from callcenter.bootstrap import Services
from callcenter.feeds.service import FeedAnswer


def _json(answer: FeedAnswer) -> Any:
    return jsonify(answer.body), answer.status


def create_blueprint(services: Services) -> Blueprint:
    """The ``/api/hospitals`` feed blueprint bound to ``services``."""
    bp = Blueprint("feeds", __name__, url_prefix="/api/hospitals")
    limit = services.config.settings.web.max_body_bytes
    feeds = services.feeds

    @bp.post("/<hospital>/results")
    def results(hospital: str) -> Any:
        """A hospital reports a lab result ready."""
        length = request.content_length
        if length is not None and length > limit:
            return _json(FeedAnswer(413, {"error": f"the body is over {limit} bytes"}))
        body = request.get_data(cache=False)
        if len(body) > limit:
            return _json(FeedAnswer(413, {"error": f"the body is over {limit} bytes"}))
        return _json(
            feeds.results_ready(
                hospital,
                request.headers.get("X-Hotline-Timestamp"),
                request.headers.get("X-Hotline-Signature"),
                body,
            )
        )

    return bp
