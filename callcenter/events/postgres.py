"""The PostgreSQL event bus: ``pg_notify`` to publish, one ``LISTEN`` connection per process.

Publishing runs ``SELECT pg_notify(channel, payload)``, inside the caller's transaction when one
is given: PostgreSQL delivers a notification only when (and if) that transaction commits, so
listeners never hear of a change that was rolled back, and hear it after it is visible.

Receiving: the first subscription in a process starts a daemon thread with its own connection
(psycopg 3, autocommit) that ``LISTEN``\\ s on one channel and fans each notification out to the
in-process subscribers of its topic. Every process hears every event (events are small and few:
offers, state changes); the topic filter is in memory. When the connection fails the thread
reconnects with backoff and sends every subscriber a ``_resync`` event, since notifications
sent while it was away are lost; the console reloads its state on that event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import psycopg
from sqlalchemy import text

from ..db.engine import Database
from .bus import BackgroundReceiver, Transaction, decode, encode

log = logging.getLogger(__name__)

#: The one channel every event goes through.
CHANNEL = "callcenter_events"
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


class PostgresBus(BackgroundReceiver):
    """Events across processes and machines through PostgreSQL ``LISTEN/NOTIFY``."""

    thread_name = "events-listener"

    def __init__(
        self,
        db: Database,
        dsn: str,
        *,
        channel: str = CHANNEL,
        max_backoff_s: float = 10.0,
        health_check_s: float = 30.0,
    ) -> None:
        super().__init__()
        self.db = db
        self.dsn = dsn
        self.channel = channel
        self.max_backoff_s = max_backoff_s
        self.health_check_s = health_check_s
        self._backend_pid: int | None = None
        #: times the listener (re)connected, for tests and health figures
        self.connects = 0

    # -- publishing

    def publish(
        self, topic: str, data: Mapping[str, Any], *, tx: Transaction | None = None
    ) -> None:
        """``pg_notify`` in ``tx`` (heard when it commits) or in a transaction of its own."""
        params = {"channel": self.channel, "payload": encode(topic, data)}
        if tx is None:
            with self.db.connection() as conn:
                conn.execute(_NOTIFY, params)
        else:
            tx.execute(_NOTIFY, params)

    # -- receiving

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.dsn,
                    autocommit=True,
                    connect_timeout=5,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                    application_name="callcenter-events",
                ) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    self.connects += 1
                    self._backend_pid = conn.info.backend_pid
                    self._ready.set()
                    if self.connects > 1:
                        log.info("event listener reconnected")
                        self.hub.resync_all("reconnected")
                    backoff = 0.5
                    self._listen(conn)
            except Exception as exc:  # keep the listener alive whatever failed
                self._ready.clear()
                if self._stop.is_set():
                    break
                level = logging.WARNING if backoff <= 1.0 else logging.DEBUG
                log.log(
                    level, "event listener: %s; retrying in %.1f s", type(exc).__name__, backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            finally:
                self._backend_pid = None
        self._ready.clear()

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        checked = time.monotonic()
        while not self._stop.is_set():
            for note in conn.notifies(timeout=0.5):
                try:
                    event = decode(note.payload)
                except ValueError:
                    log.warning("event listener: malformed payload ignored")
                    continue
                self.hub.deliver(event)
                if self._stop.is_set():
                    return
            if time.monotonic() - checked >= self.health_check_s:
                # A half-open connection raises here, and the loop reconnects.
                conn.execute("SELECT 1")
                checked = time.monotonic()

    @property
    def listening(self) -> bool:
        """Whether the listener connection is up."""
        return self._ready.is_set()

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the listener connection (``None`` while down)."""
        return self._backend_pid
