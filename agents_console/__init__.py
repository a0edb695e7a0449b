"""The web application: the agents console and, mounted beside it, the telephony webhooks.

:func:`create_app` is the app factory; ``callcenter.wsgi`` is the one module that calls it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from werkzeug.middleware.proxy_fix import ProxyFix

from callcenter.bootstrap import Services
from callcenter.telephony.twilio.outbound import create_blueprint as outbound_blueprint
from callcenter.telephony.twilio.queue import create_blueprint as twilio_queue_blueprint
from callcenter.telephony.twilio.webhooks import create_blueprint as twilio_blueprint

from .admin import create_blueprint as admin_blueprint
from .agent import create_blueprint as agent_blueprint
from .api import create_blueprint as api_blueprint
from .auth import init_auth
from .expert import create_blueprint as expert_blueprint
from .feeds import create_blueprint as feeds_blueprint
from .live import create_blueprint as live_blueprint
from .outbound_api import create_blueprint as outbound_api_blueprint
from .routing_api import create_blueprint as routing_api_blueprint
from .supervisor import create_blueprint as supervisor_blueprint


def create_app(services: Services, **flask_config: Any) -> Flask:
    """Build the Flask app around already-built services."""
    config = services.config
    config.secrets.require("TWILIO_AUTH_TOKEN", "SECRET_KEY")
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secrets.secret_key,
        MAX_CONTENT_LENGTH=config.settings.web.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=config.settings.web.max_body_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.settings.web.public_base_url.startswith("https://"),
        JSON_AS_ASCII=False,
    )
    app.config.update(flask_config)
    app.extensions["callcenter"] = services
    hops = config.settings.web.proxy_hops
    if hops:
        # The client's address (per-address sign-in limit) from X-Forwarded-For, trusting
        # exactly the proxies configured; webhook signatures use PUBLIC_BASE_URL, not headers.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]
    app.register_blueprint(
        twilio_blueprint(
            config,
            services.calls,
            services.sms_inbound,
            services.outbound,
            queue_exit=services.phone.queue_exit,
        )
    )
    app.register_blueprint(twilio_queue_blueprint(config, services.phone))
    app.register_blueprint(outbound_blueprint(config, services.outbound))
    app.register_blueprint(api_blueprint(services))
    app.register_blueprint(feeds_blueprint(services))
    # sign-in, CSRF (webhooks and feeds check their own signatures), language, headers
    init_auth(app, services, csrf_exempt=("twilio", "twilio_outbound", "twilio_queue", "feeds"))
    app.register_blueprint(admin_blueprint(services))
    app.register_blueprint(live_blueprint(services))
    app.register_blueprint(outbound_api_blueprint(services))
    app.register_blueprint(agent_blueprint(services))
    app.register_blueprint(supervisor_blueprint(services))
    app.register_blueprint(expert_blueprint(services))
    app.register_blueprint(routing_api_blueprint(services))

    @app.get("/healthz")
    def healthz() -> Any:
        """Liveness: the process answers (no database needed)."""
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Any:
        """Readiness: the database answers."""
        try:
            with services.db.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception:
            return jsonify(status="database unavailable"), 503
        return jsonify(status="ok")

    return app
