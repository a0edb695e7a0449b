"""Live events for the console: ``GET /events``, a Server-Sent Events stream per signed-in user.

What a stream carries, by role (topics in :mod:`callcenter.events.topics`):

* agent: their own offers and state (``agent:<id>``) and their own escalations;
* expert: escalations offered to them (``expert:<id>``) and every escalation change (so an
  offer taken by someone else disappears);
* supervisor and admin: every queue, agent and escalation change.

Events are small JSON objects of ids and states (``event: agent_state``, ``queue``,
``escalation``, ...). The page never renders them: it re-fetches the panel the event concerns,
through the same role checks and audit as any page load. ``event: resync`` asks the page to
reload every panel (the server may have missed events); ``event: session_ended`` says the
session is over (signed out, idle, expired), and the page goes to the sign-in screen. Signing
out publishes ``session_ended`` for that session on ``user:<id>``, so its streams end at once;
other ends of a session (idle, expired, locked) are noticed at the next heartbeat.

Each open stream holds a thread of the gunicorn gthread worker (see ``web.max_streams`` and
``docs/console-live.md``): a stream past the per-process limit gets 503 with ``Retry-After``,
so webhooks and pages always keep ``web.threads`` threads, and :class:`RequestSlots` (wrapped
around the app by ``callcenter.wsgi``, the served entry point) keeps
them at ``web.threads`` at a time, as before. Every ``LIVE_HEARTBEAT_S`` seconds
(15) the stream sends a comment line, which also notices a browser that went away (the write
fails and the thread is freed), and checks the session on the server without extending it: a
stream never keeps an idle session alive.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify
from flask.blueprints import BlueprintSetupState
from flask_login import user_logged_out
from werkzeug.wsgi import ClosingIterator

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

from callcenter.bootstrap import Services
from callcenter.events import Event, Subscription, topics

from .auth import current_user, signin_required

log = logging.getLogger(__name__)

#: seconds between heartbeats (and server-side session checks)
HEARTBEAT_S = 15.0
#: how long a browser waits before reconnecting after the stream drops (the ``retry:`` hint)
RETRY_MS = 3000


@dataclass(frozen=True)
class StreamPlan:
    """Which topics one user's stream listens to and which of their events it passes on."""

    topics: frozenset[str]
    keep: Callable[[Event], bool]


def _everything(_event: Event) -> bool:
    return True


def plan_for(role: str, user_id: int, linked_id: str | None) -> StreamPlan:
    """The topics and filter for a user of ``role`` (``linked_id``: their agent or expert
    id)."""
    own = {topics.user(user_id)}
    if role == "agent":
        if linked_id is None:
            return StreamPlan(frozenset(own), _everything)

        def mine(event: Event) -> bool:
            if event.topic == topics.ESCALATIONS:
                return event.data.get("agent") == linked_id
            return True

        return StreamPlan(
            frozenset({*own, topics.agent(linked_id), topics.ESCALATIONS}),
            mine,
        )
    if role == "expert":
        extra = {topics.expert(linked_id)} if linked_id else set()
        return StreamPlan(frozenset({*own, *extra, topics.ESCALATIONS}), _everything)
    # supervisors and admins watch the whole floor
    return StreamPlan(
        frozenset({*own, topics.QUEUES, topics.AGENTS, topics.ESCALATIONS}), _everything
    )


def sse(event: str, data: dict[str, Any]) -> str:
    """One Server-Sent Event (the JSON is one line, so one ``data:`` field)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class StreamSlots:
    """How many streams this process may hold open (each holds a worker thread)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self.open = 0

    def take(self) -> bool:
        """Take a slot; ``False`` when all are in use."""
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        """Free a slot."""
        with self._lock:
            self.open -= 1


class RequestSlots:
    """WSGI middleware: at most ``limit`` requests other than event streams run at once in
    this process.

    gunicorn's thread pool is ``web.threads + web.max_streams`` so that open streams never
    take the threads webhooks and pages need; this keeps everything else at ``web.threads``
    at a time, as before streams existed (the database pool is sized for that). A request
    over the limit waits for a slot, as it would have waited for a thread. The slot is given
    back when the server closes the response.
    """

    def __init__(self, app: WSGIApplication, limit: int, stream_path: str = "/events") -> None:
        self.app = app
        self.stream_path = stream_path
        self.slots = threading.BoundedSemaphore(limit)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Run the request in a slot (event streams without one)."""
        if environ.get("PATH_INFO") == self.stream_path:
            return self.app(environ, start_response)
        self.slots.acquire()
        try:
            result = self.app(environ, start_response)
        except BaseException:
            self.slots.release()
            raise
        return ClosingIterator(result, [self.slots.release])


def stream(
    services: Services,
    sub: Subscription,
    plan: StreamPlan,
    token: str,
    session_id: int,
    heartbeat_s: float,
    done: Callable[[], None],
) -> Iterator[str]:
    """The body of one stream: events as they come, heartbeats, and the end of the session."""
    try:
        yield f"retry: {RETRY_MS}\n\n"
        yield sse("hello", {"heartbeat_s": heartbeat_s})
        next_beat = time.monotonic() + heartbeat_s
        while True:
            event = sub.get(max(0.0, next_beat - time.monotonic()))
            if event is None:
                check = services.users.touch_session(token, active=False)
                if check.session is None:
                    yield sse("session_ended", {"reason": check.ended or "signed_out"})
                    return
                yield ": heartbeat\n\n"
                next_beat = time.monotonic() + heartbeat_s
                continue
            if event.is_resync:
                if sub.closed:
                    return
                yield sse("resync", {"reason": str(event.data.get("reason", ""))})
                continue
            if event.data.get("kind") == "session_ended":
                if event.data.get("session") not in (None, session_id):
                    continue  # another browser of the same user signed out
                yield sse("session_ended", {"reason": str(event.data.get("reason", ""))})
                return
            if plan.keep(event):
                yield sse(str(event.data.get("kind") or "message"), event.data)
    finally:
        sub.close()
        done()


def create_blueprint(services: Services) -> Blueprint:
    """``GET /events`` (the stream) and ``GET /events/status`` (open streams, for operators)."""
    bp = Blueprint("live", __name__)
    slots = StreamSlots(services.config.settings.web.max_streams)

    def signed_out(_app: Any, user: Any = None, **_extra: Any) -> None:
        """Signing out ends that session's streams at once (not at the next heartbeat)."""
        user_id, session_id = getattr(user, "id", None), getattr(user, "session_id", None)
        if not (user_id and session_id):
            return
        try:
            services.events.publish(
                topics.user(user_id),
                {"kind": "session_ended", "reason": "signed_out", "session": session_id},
            )
        except Exception:  # signing out never fails for this; the heartbeat notices anyway
            log.warning("live events: could not announce a sign-out", exc_info=True)

    @bp.record_once
    def _connect(state: BlueprintSetupState) -> None:
        # The app keeps the receiver alive; blinker holds it weakly.
        state.app.extensions["live.signed_out"] = signed_out
        user_logged_out.connect(signed_out, sender=state.app)

    @bp.get("/events")
    @signin_required
    def events() -> Any:
        """This user's live events, as ``text/event-stream``."""
        user = current_user
        plan = plan_for(user.role, user.id, user.routing_agent_id)
        if not slots.take():
            log.warning("live events: all %d stream slots in use", slots.limit)
            return Response(
                "busy\n",
                status=503,
                mimetype="text/plain",
                headers={"Retry-After": "5"},
            )
        try:
            sub = services.events.subscribe(plan.topics)
        except Exception:
            slots.give_back()
            raise
        heartbeat_s = float(current_app.config.get("LIVE_HEARTBEAT_S", HEARTBEAT_S))
        body = stream(
            services, sub, plan, user.token, user.session_id, heartbeat_s, slots.give_back
        )
        return Response(
            body,
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @bp.get("/events/status")
    @signin_required
    def status() -> Any:
        """Streams open in this process and the limit."""
        return jsonify(open=slots.open, limit=slots.limit)

    return bp
