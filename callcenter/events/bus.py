"""The event bus port and the in-process fan-out every implementation shares.

An event is a topic (``agent:a17``, ``queue:general``) and a small JSON object of ids and
states: never a name, phone number or anything else personal. A web process subscribes to the
topics one browser needs and forwards what arrives (Server-Sent Events); services publish where
state changes.

``publish(topic, data, tx=session)`` ties an event to a transaction: listeners hear it only if
that transaction commits, and only after it does (PostgreSQL delivers ``NOTIFY`` at commit; the
in-process bus holds the event until the session's ``after_commit``).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy import Connection
from sqlalchemy.orm import Session

#: The topic of the control event that tells a subscriber it may have missed events (the
#: listener reconnected, or the subscriber fell too far behind): reload the state.
RESYNC = "_resync"
#: Largest encoded event (PostgreSQL refuses NOTIFY payloads of 8000 bytes or more).
MAX_PAYLOAD_BYTES = 7_900
#: Events a slow subscriber may have waiting before it is told to resync instead.
MAX_PENDING = 1_000

#: Where an event may be tied to a transaction: an ORM session or a Core connection.
Transaction = Session | Connection


class EventTooLarge(ValueError):
    """The encoded event is larger than :data:`MAX_PAYLOAD_BYTES`."""


@dataclass(frozen=True)
class Event:
    """One event as a subscriber receives it."""

    topic: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_resync(self) -> bool:
        """Whether this is the control event asking the subscriber to reload its state."""
        return self.topic == RESYNC


def encode(topic: str, data: Mapping[str, Any]) -> str:
    """The wire form of an event (compact JSON); raises :class:`EventTooLarge`."""
    if not topic or topic.startswith("_"):
        raise ValueError(f"invalid topic {topic!r}")
    payload = json.dumps({"t": topic, "d": dict(data)}, ensure_ascii=False, separators=(",", ":"))
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise EventTooLarge(f"event on {topic} is {len(payload.encode())} bytes")
    return payload


def decode(payload: str) -> Event:
    """The event in a wire payload; raises ``ValueError`` on anything malformed."""
    raw = json.loads(payload)
    if not isinstance(raw, dict) or not isinstance(raw.get("t"), str):
        raise ValueError("not an event")
    data = raw.get("d", {})
    if not isinstance(data, dict):
        raise ValueError("event data is not an object")
    return Event(raw["t"], data)


class Subscription:
    """What one subscriber receives: events on its topics, in publication order.

    ``get`` blocks up to ``timeout`` seconds and returns ``None`` when nothing came. A
    subscriber that lets :data:`MAX_PENDING` events pile up loses them and gets one
    :data:`RESYNC` event instead. Close it (or use ``with``) when done.
    """

    def __init__(self, hub: Hub, topics: frozenset[str], max_pending: int) -> None:
        self.topics = topics
        self._hub = hub
        self._queue: queue.Queue[Event] = queue.Queue()
        self._max_pending = max_pending
        self._overflowed = False
        self.closed = False

    def _put(self, event: Event) -> None:
        if self.closed or self._overflowed:
            return  # after an overflow, nothing until the reader took the resync
        if self._queue.qsize() >= self._max_pending:
            self._overflowed = True
            # Drop what is waiting: the subscriber reloads the state anyway.
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put(Event(RESYNC, {"reason": "overflow"}))
            return
        self._queue.put(event)

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to ``timeout`` seconds (``None``: forever)."""
        if self.closed:
            return None
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if event.is_resync:
            self._overflowed = False
        return event

    def close(self) -> None:
        """Stop receiving; wakes a thread blocked in :meth:`get`."""
        if not self.closed:
            self.closed = True
            self._hub.unsubscribe(self)
            self._queue.put(Event(RESYNC, {"reason": "closed"}))

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Hub:
    """In-process fan-out: topic -> the subscriptions that want it."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._lock = threading.Lock()
        self._by_topic: dict[str, set[Subscription]] = {}
        self._max_pending = max_pending

    def subscribe(self, topics: Iterable[str]) -> Subscription:
        """A new subscription to ``topics``."""
        sub = Subscription(self, frozenset(topics), self._max_pending)
        with self._lock:
            for topic in sub.topics:
                self._by_topic.setdefault(topic, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub``."""
        with self._lock:
            for topic in sub.topics:
                subs = self._by_topic.get(topic)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._by_topic[topic]

    def deliver(self, event: Event) -> int:
        """Hand ``event`` to every subscription on its topic; returns how many."""
        with self._lock:
            targets = list(self._by_topic.get(event.topic, ()))
        for sub in targets:
            sub._put(event)
        return len(targets)

    def resync_all(self, reason: str) -> None:
        """Tell every subscriber it may have missed events."""
        with self._lock:
            targets = {s for subs in self._by_topic.values() for s in subs}
        for sub in targets:
            sub._put(Event(RESYNC, {"reason": reason}))

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions (for health figures)."""
        with self._lock:
            return len({s for subs in self._by_topic.values() for s in subs})


class BackgroundReceiver:
    """What a bus that hears other processes shares: one receiving thread per process,
    started by the first subscription (again in a forked child), fanning events out through
    :attr:`hub`. Subclasses implement :meth:`_run`, which sets ``_ready`` once an event
    published from then on will be heard, and returns when ``_stop`` is set."""

    #: the receiving thread's name
    thread_name = "events-receiver"

    def __init__(self) -> None:
        self.hub = Hub()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        self._ready = threading.Event()

    def subscribe(self, topics: Iterable[str], *, wait_s: float = 5.0) -> Subscription:
        """Receive events on ``topics``; waits up to ``wait_s`` for the receiver to be ready
        (so an event published right after this returns is heard)."""
        sub = self.hub.subscribe(topics)
        self._ensure_receiver()
        self._ready.wait(wait_s)
        return sub

    def _ensure_receiver(self) -> None:
        with self._lock:
            pid = os.getpid()
            alive = self._thread is not None and self._thread.is_alive()
            if alive and self._pid == pid:
                return
            # First use, or a forked child that inherited a dead thread's state.
            self._pid = pid
            self._stop.clear()
            self._ready.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the receiving thread (it closes its own connection)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=3)
        self._thread = None


class EventBus(Protocol):
    """Publish small state-change events; subscribe to topics."""

    def publish(
        self, topic: str, data: Mapping[str, Any], *, tx: Transaction | None = None
    ) -> None:
        """Publish ``data`` on ``topic``; with ``tx``, only if and when it commits."""

    def subscribe(self, topics: Iterable[str]) -> Subscription:
        """Receive events on ``topics`` from now on."""

    def close(self) -> None:
        """Release background resources (listener thread, connection)."""
