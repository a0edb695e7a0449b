"""The in-process event bus: one web process (the SQLite deployment) and tests.

Events tied to a transaction wait in the session (or connection) and are delivered after it
commits; a rollback drops them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session

from .bus import Event, Hub, Subscription, Transaction, decode, encode

_PENDING = "callcenter.events.pending"


def defer(tx: Transaction, deliver: Any, item: Any) -> None:
    """Call ``deliver(item)`` once ``tx`` commits; forget it if ``tx`` rolls back."""
    if isinstance(tx, Session):
        if _PENDING not in tx.info:
            tx.info[_PENDING] = []
            event.listen(tx, "after_commit", _flush)
            event.listen(tx, "after_rollback", _drop)
    else:
        # Core connections have no after-commit hook: deliver at commit. The pending list
        # lives with the DBAPI connection (one transaction at a time); the listeners are on
        # the engine, once.
        _listen_engine(tx.engine)
        tx.info.setdefault(_PENDING, [])
    tx.info[_PENDING].append((deliver, item))


_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_engines_lock = threading.Lock()


def _listen_engine(engine: Engine) -> None:
    with _engines_lock:
        if engine not in _engines:
            event.listen(engine, "commit", _flush)
            event.listen(engine, "rollback", _drop)
            _engines.add(engine)


def _flush(tx: Session | Connection) -> None:
    pending = tx.info.get(_PENDING)
    if not pending:
        return
    tx.info[_PENDING] = []
    for deliver, item in pending:
        deliver(item)


def _drop(tx: Session | Connection) -> None:
    if tx.info.get(_PENDING):
        tx.info[_PENDING] = []


class InProcessBus:
    """Fan-out inside one process."""

    def __init__(self) -> None:
        self.hub = Hub()

    def publish(
        self, topic: str, data: Mapping[str, Any], *, tx: Transaction | None = None
    ) -> None:
        """Deliver now, or when ``tx`` commits. The event is encoded and decoded, so a
        subscriber gets the same JSON types as across processes."""
        ev = decode(encode(topic, data))
        if tx is None:
            self.hub.deliver(ev)
        else:
            defer(tx, self._deliver, ev)

    def _deliver(self, ev: Event) -> None:
        self.hub.deliver(ev)

    def subscribe(self, topics: Iterable[str]) -> Subscription:
        """Receive events on ``topics``."""
        return self.hub.subscribe(topics)

    def close(self) -> None:
        """Nothing to release."""
