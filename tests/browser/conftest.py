"""Browser tests: the real app served over HTTP on the test database, driven by Debian's
Chromium through Playwright for Python.

* ``live`` (:class:`LiveServer`): the app from the real factory (``agents_console.create_app``)
  on the test services, served by werkzeug's threaded server on a free loopback port (a real
  HTTP server: streaming responses, so Server-Sent Events work as in production);
  ``live.twilio_post(path, params)`` sends a webhook signed the way Twilio signs it.
* ``browser``: Chromium started once per session from ``/usr/bin/chromium`` (never a
  downloaded browser); each test opens its own contexts (one per person).
* Screenshots go to ``SCREENSHOTS`` (``BROWSER_SCREENSHOTS`` overrides; default
  ``var/browser-screenshots``); the main ones are copied to ``docs/screenshots/`` by hand.

The server is plain HTTP on 127.0.0.1, so the session cookie is not marked ``Secure`` here
(production, behind HTTPS, keeps it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from playwright.sync_api import Browser, Page, expect, sync_playwright
from twilio.request_validator import RequestValidator
from werkzeug.serving import BaseWSGIServer, make_server

from callcenter.bootstrap import Services
from callcenter.config import Config
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE_URL, make_config
from tests.console.conftest import CHEAP_HASHING, make_user

__all__ = ["make_user"]  # the console's user factory, as a fixture here too

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS", ROOT / "var" / "browser-screenshots"))
#: how long an ``expect(...)`` waits for the page (live events and htmx swaps, on a busy CI)
expect.set_options(timeout=10_000)


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """Cheap password hashing for console users and visit passwords (the shipped settings
    otherwise)."""
    return make_config(
        database_url, tmp_path, console=CHEAP_HASHING, booking={"password_hash_cost": 4}
    )


class LiveServer:
    """The app on a real HTTP server in a background thread."""

    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        # keep track of request threads, so that stopping waits for open event streams to
        # notice their browser is gone (at the next heartbeat) before the database goes
        self.server.daemon_threads = False  # type: ignore[attr-defined]
        self.server.block_on_close = True  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.validator = RequestValidator(AUTH_TOKEN)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        """Serve requests until :meth:`stop`."""
        self.thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving, and wait (up to ``timeout``) for the requests still running: event
        streams end at their next heartbeat once their browser is closed."""
        self.server.shutdown()
        self.thread.join(timeout=timeout)
        closing = threading.Thread(target=self.server.server_close, daemon=True)
        closing.start()
        closing.join(timeout=timeout)

    def twilio_post(self, path: str, params: dict[str, str]) -> requests.Response:
        """POST ``params`` to ``path`` as Twilio would: form-encoded, signed for the public
        URL the app is configured with."""
        signature = self.validator.compute_signature(PUBLIC_BASE_URL + path, params)
        return requests.post(
            self.url + path,
            data=params,
            headers={"X-Twilio-Signature": str(signature)},
            timeout=10,
        )


@pytest.fixture
def live(services: Services) -> Iterator[LiveServer]:
    """The real app served on a free port; stopped after the test."""
    from agents_console import create_app

    app = create_app(services, SESSION_COOKIE_SECURE=False, LIVE_HEARTBEAT_S=2.0)
    server = LiveServer(app)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the whole session."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium fonts-wqy-microhei")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Shots:
    """Saves numbered screenshots of a test."""

    def __init__(self, name: str) -> None:
        self.dir = SCREENSHOTS / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def take(self, page: Page, name: str, **kw: Any) -> Path:
        """Screenshot ``page`` as ``NN-name.png``."""
        path = self.dir / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True, **kw)
        self.taken.append(path)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    """Screenshots of this test, in a folder named after it."""
    return Shots(request.node.name)
