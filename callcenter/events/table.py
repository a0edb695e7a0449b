"""The SQLite event bus: events through a table, heard by every process on the machine.

A SQLite deployment still runs several processes (``callcenter serve`` starts gunicorn
workers; ``callcenter router run`` and ``callcenter worker`` run beside them), and an offer
the router makes must reach the agent's browser, whichever worker holds its event stream.

Publishing inserts the event into ``bus_events`` in the caller's transaction (or one of its
own), so a rolled-back change is never heard, and hands it to this process's subscribers when
that transaction commits (at once, as the in-process bus does). Receiving: the first
subscription in a process starts one daemon thread that reads the rows other processes added
since the last look, every ``poll_s`` (0.1 s: a WAL read of an indexed range, no lock taken),
and fans them out by topic. Rows older than ``retention_s`` are deleted now and then. If the
thread cannot read for longer than the retention (the file unreachable), events may have been
missed: subscribers get a ``_resync`` and reload, as they do after a PostgreSQL reconnect.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, insert

from ..db.engine import Database
from ..db.models import BusEvent
from .bus import BackgroundReceiver, Transaction, decode, encode
from .memory import defer

log = logging.getLogger(__name__)

bus_t = cast(Table, BusEvent.__table__)
_BATCH = 1_000
_END = "SELECT max(id) FROM bus_events"
_AFTER = "SELECT id, origin, payload FROM bus_events WHERE id > ? ORDER BY id LIMIT ?"


class TableBus(BackgroundReceiver):
    """Events across the processes sharing one SQLite file, through ``bus_events``."""

    thread_name = "events-reader"

    def __init__(
        self,
        db: Database,
        *,
        poll_s: float = 0.1,
        retention_s: float = 300.0,
        prune_every_s: float = 30.0,
    ) -> None:
        super().__init__()
        self.db = db
        self.poll_s = poll_s
        self.retention_s = retention_s
        self.prune_every_s = prune_every_s
        self._token = uuid.uuid4().hex[:16]
        self._last_id = 0

    @property
    def origin(self) -> str:
        """This process's mark on the rows it writes (a forked child gets its own)."""
        return f"{self._token}-{os.getpid()}"

    # -- publishing

    def publish(
        self, topic: str, data: Mapping[str, Any], *, tx: Transaction | None = None
    ) -> None:
        """Write the event in ``tx`` (or a transaction of its own); this process's
        subscribers hear it when that commits, the others at their next look."""
        payload = encode(topic, data)
        row = {"origin": self.origin, "payload": payload, "at": datetime.now(UTC)}
        event = decode(payload)
        if tx is None:
            with self.db.connection() as conn:
                conn.execute(insert(bus_t), row)
            self.hub.deliver(event)
            return
        tx.execute(insert(bus_t), row)
        defer(tx, self.hub.deliver, event)

    # -- receiving

    def _run(self) -> None:
        # Its own connection, read outside any transaction: each SELECT is a WAL snapshot
        # and takes no lock (the service's transactions begin IMMEDIATE, which would).
        raw: Any = None
        last_read = time.monotonic()
        last_prune = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    if raw is None:
                        raw = self.db.engine.raw_connection()
                    if not self._ready.is_set():
                        found = raw.driver_connection.execute(_END).fetchone()
                        self._last_id = int(found[0] or 0)
                        self._ready.set()
                    else:
                        self._read(raw.driver_connection)
                    now = time.monotonic()
                    if now - last_read > self.retention_s:
                        self.hub.resync_all("reader was away")
                    last_read = now
                    if now - last_prune >= self.prune_every_s:
                        last_prune = now
                        self._prune()
                except Exception as exc:
                    log.warning("event reader: %s; trying again", exc)
                    if raw is not None:
                        raw.invalidate()
                        raw = None
                self._stop.wait(self.poll_s)
        finally:
            if raw is not None:
                raw.close()

    def _read(self, driver: Any) -> None:
        mine = self.origin
        while True:
            rows = driver.execute(_AFTER, (self._last_id, _BATCH)).fetchall()
            for row_id, origin, payload in rows:
                self._last_id = int(row_id)
                if origin == mine:
                    continue  # heard in this process at commit
                try:
                    self.hub.deliver(decode(payload))
                except ValueError:
                    log.warning("event %s: malformed payload skipped", row_id)
            if len(rows) < _BATCH:
                return

    def _prune(self) -> None:
        before = datetime.now(UTC) - timedelta(seconds=self.retention_s)
        with self.db.connection() as conn:
            conn.execute(delete(bus_t).where(bus_t.c.at < before))

    @property
    def listening(self) -> bool:
        """Whether the reader is running and knows where the table ends."""
        return self._ready.is_set() and self._thread is not None and self._thread.is_alive()
