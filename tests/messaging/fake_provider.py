"""A local stand-in for Twilio's REST API, for tests and benchmarks.

A ``ThreadingHTTPServer`` that accepts ``POST /2010-04-01/Accounts/<sid>/Messages.json`` and
``.../Calls.json`` the way Twilio does (form-encoded, basic auth), answers with Twilio-shaped
JSON and a fresh ``SM...`` / ``CA...`` sid, and records every request it accepted: the time it
arrived, the recipient, the body and the outbox id ``o`` from the ``StatusCallback`` URL.

It can enforce a rate limit like Twilio's (``429`` with error code ``20429`` when more than
``limit_per_s`` requests were accepted in the last second) and answer from a script (an
error for chosen requests).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: A script answer: (HTTP status, JSON body, extra headers), or None to accept normally.
Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class Received:
    """One request the provider accepted."""

    kind: str  # "sms" or "call"
    sid: str
    to: str
    body: str
    outbox_id: int | None
    wall: float
    monotonic: float
    form: dict[str, str] = field(default_factory=dict)


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    """A Twilio-style error body."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the crash test does that) is not an error here.
        return


class FakeProvider:
    """The fake Twilio REST API (use as a context manager, or call start/stop)."""

    def __init__(
        self,
        *,
        limit_per_s: float | None = None,
        script: Callable[[str, dict[str, str]], Answer | None] | None = None,
        latency_s: float = 0.0,
    ) -> None:
        self.limit_per_s = limit_per_s
        self.script = script
        self.latency_s = latency_s
        self.received: list[Received] = []
        self.refused: list[tuple[int, int, float]] = []  # (status, code, monotonic)
        self.auth_headers: list[str] = []
        self._window: deque[float] = deque()
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                provider._handle(self)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give ``twilio.api_base_url``."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeProvider:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- views

    def outbox_ids(self) -> list[int]:
        """The outbox id of every accepted request, in arrival order."""
        with self._lock:
            return [r.outbox_id for r in self.received if r.outbox_id is not None]

    def count_429(self) -> int:
        """How many requests were refused for going over the rate limit."""
        with self._lock:
            return sum(1 for status, _code, _t in self.refused if status == 429)

    # ---------------------------------------------------------------- serving

    def _reply(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived_wall, arrived = time.time(), time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode()
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        path = urlsplit(handler.path).path
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "2010-04-01" or parts[1] != "Accounts":
            self._reply(handler, 404, twilio_error(404, 20404, "not found"))
            return
        account, resource = parts[2], parts[3]
        kind = {"Messages.json": "sms", "Calls.json": "call"}.get(resource)
        if kind is None:
            self._reply(handler, 404, twilio_error(404, 20404, "not found"))
            return
        if self.latency_s:
            time.sleep(self.latency_s)
        answer = self.script(kind, form) if self.script else None
        if answer is not None:
            status, body, headers = answer
            with self._lock:
                self.refused.append((status, int(body.get("code") or 0), arrived))
            self._reply(handler, status, body, headers)
            return
        with self._lock:
            if self.limit_per_s is not None:
                while self._window and self._window[0] <= arrived - 1.0:
                    self._window.popleft()
                if len(self._window) >= self.limit_per_s:
                    self.refused.append((429, 20429, arrived))
                    too_many = True
                else:
                    self._window.append(arrived)
                    too_many = False
            else:
                too_many = False
            if not too_many:
                prefix = "SM" if kind == "sms" else "CA"
                sid = prefix + uuid.uuid4().hex
                callback = form.get("StatusCallback", "")
                o = parse_qs(urlsplit(callback).query).get("o", [None])[0]
                self.received.append(
                    Received(
                        kind=kind,
                        sid=sid,
                        to=form.get("To", ""),
                        body=form.get("Body", ""),
                        outbox_id=int(o) if o else None,
                        wall=arrived_wall,
                        monotonic=arrived,
                        form=form,
                    )
                )
                self.auth_headers.append(handler.headers.get("Authorization", ""))
        if too_many:
            self._reply(handler, 429, twilio_error(429, 20429, "Too Many Requests"))
            return
        body = {
            "sid": sid,
            "account_sid": account,
            "to": form.get("To"),
            "from": form.get("From"),
            "status": "queued",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/{resource[:-5]}/{sid}.json",
        }
        if kind == "sms":
            body.update(
                {
                    "body": form.get("Body"),
                    "num_segments": "1",
                    "messaging_service_sid": form.get("MessagingServiceSid"),
                }
            )
        self._reply(handler, 201, body)
