"""The WSGI entry point (``callcenter.wsgi:application``), used by ``callcenter serve``.

Configuration comes from ``$CALLCENTER_CONFIG`` (or ``./config.yaml``) and the environment.
Building the app does not connect to the database, so the fallback webhook answers even
while the database is down.
"""

from __future__ import annotations

from agents_console import create_app
from agents_console.live import RequestSlots

from .bootstrap import build
from .config import load_config
from .logs import setup_logging

_config = load_config()
setup_logging(_config.settings.logging.level)
app = create_app(build(_config))
# Under gunicorn the thread pool is web.threads + web.max_streams; pages and webhooks keep to
# web.threads at a time (the database pool is sized for that), event streams take the rest.
app.wsgi_app = RequestSlots(app.wsgi_app, _config.settings.web.threads)  # type: ignore[method-assign]
application = app
