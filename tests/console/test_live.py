"""``GET /events``: each signed-in user's Server-Sent Events stream.

Streams are read as a browser's EventSource reads them (``Accept: text/event-stream``), with a
short heartbeat so the tests do not wait 15 s. Calls come in through signed Twilio webhooks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from agents_console import create_app
from callcenter.bootstrap import Services, build
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.routing.router import AgentState
from tests.conftest import TwilioSigner, make_config
from tests.console.conftest import CHEAP_HASHING, Login, post, sign_in
from tests.console.test_agent import CALLER, incoming_call, routing_agent

SID = "CA" + "3" * 32
STREAM = {"Accept": "text/event-stream"}


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """Cheap password hashing; two stream slots per process."""
    return make_config(database_url, tmp_path, console=CHEAP_HASHING, web={"max_streams": 2})


@pytest.fixture
def app(services: Services) -> Flask:
    """The app with a 0.2-second heartbeat."""
    return create_app(services, TESTING=True, LIVE_HEARTBEAT_S=0.2)


class Stream:
    """An open event stream, parsed into (event, data) pairs."""

    def __init__(self, client: FlaskClient) -> None:
        self.response = client.get("/events", headers=STREAM, buffered=False)
        self.status = self.response.status_code
        self._chunks: Iterator[bytes] = iter(self.response.response)  # type: ignore[arg-type]
        self.raw = ""

    def read(self, *, until: str | None = None, limit_s: float = 3.0) -> list[tuple[str, Any]]:
        """Events until one named ``until`` arrives (or, without it, until a heartbeat)."""
        events: list[tuple[str, Any]] = []
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            block = chunk.decode() if isinstance(chunk, bytes) else str(chunk)
            self.raw += block
            if block.startswith(": heartbeat"):
                events.append(("heartbeat", None))
                if until is None:
                    break
                continue
            fields = dict(
                line.split(": ", 1) for line in block.strip().splitlines() if ": " in line
            )
            if "event" in fields:
                events.append((fields["event"], json.loads(fields["data"])))
                if fields["event"] == until:
                    break
        return events

    def close(self) -> None:
        """The browser goes away."""
        self.response.close()


@pytest.fixture
def two_agents(
    services: Services, app: Flask, login: Login
) -> Iterator[tuple[FlaskClient, FlaskClient]]:
    """Agents a1 (available first: longest idle) and a2, each signed in in their own browser."""
    routing_agent(services, "a1")
    routing_agent(services, "a2", available=False)
    one, two = app.test_client(), app.test_client()
    login(one, "agent", routing_agent_id="a1")
    login(two, "agent", routing_agent_id="a2")
    return one, two


def test_an_offer_reaches_the_agent_it_is_for_and_no_other(
    services: Services, two_agents: tuple[FlaskClient, FlaskClient], twilio: TwilioSigner
) -> None:
    one, two = two_agents
    first, second = Stream(one), Stream(two)
    assert first.status == 200
    assert first.response.mimetype == "text/event-stream"
    assert first.response.headers["Cache-Control"] == "no-store"
    assert first.read(until="hello")[-1] == ("hello", {"heartbeat_s": 0.2})
    assert first.raw.startswith("retry: 3000\n\n")
    second.read(until="hello")

    incoming_call(twilio, services, SID)
    got = first.read(until="agent_state")
    assert got[-1][1] == {
        "kind": "agent_state",
        "agent": "a1",
        "state": "reserved",
        "reason": None,
        "call": SID,
        "version": got[-1][1]["version"],
        "offer": True,
    }
    assert [name for name, _ in second.read()] == ["heartbeat"]
    # ids and states only: nothing personal goes down the stream
    assert CALLER[3:] not in first.raw

    # the agent accepts: their stream hears they are on the call
    post(one, f"/agent/calls/{SID}/accept")
    on_call = first.read(until="agent_state")[-1][1]
    assert (on_call["state"], on_call["call"]) == ("on_call", SID)
    first.close()
    second.close()


def test_supervisors_hear_the_queues_and_agents_do_not(
    services: Services, app: Flask, login: Login, twilio: TwilioSigner
) -> None:
    routing_agent(services, "a1", available=False)
    boss, agent = app.test_client(), app.test_client()
    login(boss, "supervisor")
    login(agent, "agent", routing_agent_id="a1")
    wall, desk = Stream(boss), Stream(agent)
    wall.read(until="hello")
    desk.read(until="hello")
    incoming_call(twilio, services, SID)  # nobody available: the caller waits
    queued = wall.read(until="queue")[-1][1]
    assert queued == {"kind": "queue", "queue": "general", "change": "waiting", "call": SID}
    assert [name for name, _ in desk.read()] == ["heartbeat"]
    wall.close()
    desk.close()


def test_signing_out_ends_the_stream(
    services: Services, two_agents: tuple[FlaskClient, FlaskClient]
) -> None:
    one, _ = two_agents
    stream = Stream(one)
    stream.read(until="hello")
    post(one, "/auth/sign-out")
    assert stream.read(until="session_ended")[-1] == ("session_ended", {"reason": "signed_out"})
    assert stream.read(limit_s=0.5) == []  # the stream is over
    # its subscription was closed: nobody listens on the agent's topic any more
    assert services.events.hub.subscriber_count == 0  # type: ignore[attr-defined]


def test_signing_out_ends_the_stream_at_once_and_only_that_sessions(
    services: Services, login: Login
) -> None:
    app = create_app(services, TESTING=True, LIVE_HEARTBEAT_S=60)  # no heartbeat in time
    routing_agent(services, "a1")
    here, elsewhere = app.test_client(), app.test_client()
    user = login(here, "agent", routing_agent_id="a1")
    assert sign_in(elsewhere, user.username).status_code == 302  # the same user, 2nd browser
    mine, other = Stream(here), Stream(elsewhere)
    mine.read(until="hello")
    other.read(until="hello")
    started = time.monotonic()
    post(here, "/auth/sign-out")
    assert mine.read(until="session_ended")[-1] == ("session_ended", {"reason": "signed_out"})
    assert time.monotonic() - started < 3
    services.routing.set_state("a1", AgentState.AWAY, "meal")
    assert other.read(until="agent_state")[-1][1]["state"] == "away"  # still streaming
    other.close()


def test_an_idle_session_ends_the_stream_and_the_stream_never_keeps_it_alive(
    services: Services, clock: FakeClock, two_agents: tuple[FlaskClient, FlaskClient]
) -> None:
    one, _ = two_agents
    stream = Stream(one)
    stream.read(until="hello")
    clock.advance(minutes=10)
    assert [n for n, _ in stream.read()] == ["heartbeat"]  # heartbeats do not count as activity
    clock.advance(minutes=6)
    assert stream.read(until="session_ended")[-1] == ("session_ended", {"reason": "idle"})


def test_streams_past_the_per_process_limit_get_503_with_retry_after(
    services: Services, two_agents: tuple[FlaskClient, FlaskClient], app: Flask
) -> None:
    one, two = two_agents
    held = [Stream(one), Stream(two)]
    for s in held:
        s.read(until="hello")
    third = Stream(one)
    assert third.status == 503
    assert third.response.headers["Retry-After"] == "5"
    assert json.loads(one.get("/events/status").get_data(as_text=True)) == {"open": 2, "limit": 2}
    held[0].close()  # a browser leaves: its slot is given back
    again = Stream(two)
    assert again.status == 200
    again.close()
    held[1].close()


def test_the_stream_needs_a_signed_in_user(client: FlaskClient) -> None:
    response = client.get("/events", headers=STREAM)
    assert response.status_code == 302
    assert "/auth/sign-in" in response.headers["Location"]


def test_a_bus_resync_is_passed_on_so_the_page_reloads(
    services: Services, two_agents: tuple[FlaskClient, FlaskClient]
) -> None:
    one, _ = two_agents
    stream = Stream(one)
    stream.read(until="hello")
    hub = services.events.hub  # type: ignore[attr-defined]
    hub.resync_all("reconnected")
    assert stream.read(until="resync")[-1] == ("resync", {"reason": "reconnected"})
    stream.close()


def test_the_serve_command_gives_every_stream_a_thread_beside_the_web_threads(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callcenter import cli

    seen: dict[str, Any] = {}

    class Fake:
        def __init__(self) -> None:
            self.cfg = self

        def set(self, key: str, value: Any) -> None:
            seen[key] = value

    import gunicorn.app.base

    def fake_run(self: Any) -> None:
        self.cfg = Fake()
        self.load_config()

    monkeypatch.setattr(gunicorn.app.base.BaseApplication, "__init__", lambda self: None)
    monkeypatch.setattr(gunicorn.app.base.BaseApplication, "run", fake_run)
    cli._gunicorn(config, "127.0.0.1", 8000, None, access_log=False)
    web = config.settings.web
    assert seen["worker_class"] == "gthread"
    assert seen["threads"] == web.threads + web.max_streams


def test_build_picks_the_bus_for_the_database(config: Config) -> None:
    built = build(config)
    try:
        name = type(built.events).__name__
        expected = "PostgresBus" if config.database_url.startswith("postgresql") else "TableBus"
        assert name == expected
    finally:
        built.events.close()
        built.db.dispose()


@given(kind=st.text(max_size=20), data=st.dictionaries(st.text(max_size=10), st.text(max_size=30)))
def test_an_event_is_one_frame_whatever_its_text(kind: str, data: dict[str, str]) -> None:
    from agents_console.live import sse

    frame = sse(kind.replace("\n", " ").replace("\r", " "), data)
    assert frame.endswith("\n\n")
    lines = frame[:-2].split("\n")
    assert [line.split(":", 1)[0] for line in lines] == ["event", "data"]
    assert json.loads(lines[1][len("data: ") :]) == data


def test_pages_and_webhooks_run_at_most_web_threads_at_once_while_streams_need_no_slot() -> None:
    import threading

    from agents_console.live import RequestSlots

    running, peak = 0, 0
    lock = threading.Lock()
    gate = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if environ["PATH_INFO"] != "/events":
            gate.wait(2)
        with lock:
            running -= 1
        return [b"ok"]

    limited = RequestSlots(app, 2)

    def request(path: str) -> None:
        body = limited({"PATH_INFO": path}, lambda *a: None)
        list(body)
        getattr(body, "close", lambda: None)()  # what the server does when it is done

    workers = [threading.Thread(target=request, args=("/twilio/voice",)) for _ in range(5)]
    for w in workers:
        w.start()
    time.sleep(0.3)
    assert peak == 2  # three requests wait for a slot
    streams = threading.Thread(target=request, args=("/events",))
    streams.start()
    streams.join(1)
    assert not streams.is_alive()  # a stream does not wait behind them
    gate.set()
    for w in workers:
        w.join(3)
    assert peak <= 3
    assert limited.slots.acquire(blocking=False)  # every slot was given back
