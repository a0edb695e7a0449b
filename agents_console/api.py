"""JSON API for the console: knowledge-base search.

Every endpoint needs a signed-in console user (401 JSON otherwise; see ``agents_console.auth``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request

from callcenter.bootstrap import Services
from knowledge_base.models import ENTITY_TYPES

from .auth import signin_required

MAX_QUERY_CHARS = 200


def create_blueprint(services: Services) -> Blueprint:
    """The ``/api`` blueprint bound to ``services``."""
    bp = Blueprint("api", __name__, url_prefix="/api")

    @bp.get("/kb/search")
    @signin_required
    def kb_search() -> Any:
        """``GET /api/kb/search?q=...&type=drug&type=hospital&limit=5&lang=zh-CN``."""
        query = request.args.get("q", "").strip()
        if not query:
            abort(400, description="q is required")
        if len(query) > MAX_QUERY_CHARS:
            abort(400, description=f"q is longer than {MAX_QUERY_CHARS} characters")
        types = request.args.getlist("type")
        unknown = [t for t in types if t not in ENTITY_TYPES]
        if unknown:
            abort(400, description=f"unknown type {unknown[0]!r}")
        limit_text = request.args.get("limit", "5")
        if not limit_text.isascii() or not limit_text.isdigit() or not 1 <= int(limit_text) <= 50:
            abort(400, description="limit must be a whole number from 1 to 50")
        language = "en" if request.args.get("lang") == "en" else "zh"
        today = services.clock.now().astimezone(services.config.timezone).date()
        result = services.knowledge.search(
            query, types=types or None, language=language, limit=int(limit_text), today=today
        )
        return jsonify(result.to_data())

    return bp
