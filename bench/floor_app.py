"""The benchmark floor: the least a webhook that keeps its call durable can cost.

Every answer of the hotline rests on two things the issue asks for and no optimisation of
the call path removes: the ``X-Twilio-Signature`` check, and the call's session written to
the database (and the step recorded) before the answer goes back, so that the next webhook,
on any worker, carries on from it. This app does exactly that and nothing else, with the
database driver called directly (no ORM, no SQL toolkit, no IVR engine, no TwiML builder):
check the signature of the exact URL (one HMAC), read the form, and in one transaction (on
PostgreSQL two pipelined round trips) lock and read the call's session row, write it back one
step on, append one event row, commit; then return a fixed TwiML document. Served by gunicorn
with the same settings as the hotline and the fixed-TwiML baseline (``bench/webhook.py``), it
shows how much of the gap between the two a durable step costs by itself.

Configuration from the environment: ``FLOOR_DATABASE_URL`` (``sqlite:///path`` or a
``postgresql://`` URL; :func:`create_schema` makes its two tables), ``TWILIO_AUTH_TOKEN``,
``PUBLIC_BASE_URL``.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from baseline_app import FIXED_TWIML
from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator

SCHEMA = {
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS floor_sessions "
        "(call_sid TEXT PRIMARY KEY, step INTEGER NOT NULL, state TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS floor_events (id INTEGER PRIMARY KEY, call_sid TEXT, "
        "step INTEGER, kind TEXT, detail TEXT, at REAL)",
    ],
    "postgresql": [
        "CREATE TABLE IF NOT EXISTS floor_sessions "
        "(call_sid TEXT PRIMARY KEY, step INTEGER NOT NULL, state JSONB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS floor_events (id BIGSERIAL PRIMARY KEY, call_sid TEXT, "
        "step INTEGER, kind TEXT, detail JSONB, at DOUBLE PRECISION)",
    ],
}


def _kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _sqlite_path(url: str) -> str:
    return url.split("sqlite:///", 1)[1]


def create_schema(url: str) -> None:
    """Create the floor's two tables in the database at ``url``."""
    if _kind(url) == "sqlite":
        conn = sqlite3.connect(_sqlite_path(url), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA["sqlite"]:
            conn.execute(statement)
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        for statement in SCHEMA["postgresql"]:
            pg.execute(statement)


class _Store:
    """One connection per thread; on SQLite, writers queue on a thread lock and an ``flock``
    (as the hotline's do), not on SQLite's sleeping busy handler."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.kind = _kind(url)
        self.local = threading.local()
        self.thread_lock = threading.Lock()
        self.lock_path = _sqlite_path(url) + ".floor-lock" if self.kind == "sqlite" else ""
        self.lock_fd: int | None = None
        self.pid = 0

    def _conn(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None or getattr(self.local, "pid", 0) != os.getpid():
            if self.kind == "sqlite":
                conn = sqlite3.connect(
                    _sqlite_path(self.url), isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=10000")
            else:
                import psycopg

                conn = psycopg.connect(self.url)
            self.local.conn, self.local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _sqlite_writer(self) -> Iterator[None]:
        with self.thread_lock:
            if self.lock_fd is None or self.pid != os.getpid():
                self.lock_fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
                self.pid = os.getpid()
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def step(self, call_sid: str, digits: str) -> int:
        """Advance the call's session one step and record it; the new step number."""
        conn = self._conn()
        now = time.time()
        if self.kind == "sqlite":
            with self._sqlite_writer():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute(
                        "SELECT step, state FROM floor_sessions WHERE call_sid = ?", (call_sid,)
                    ).fetchone()
                    step = (row[0] if row else 0) + 1
                    state = json.dumps({"node": "main", "digits": digits, "step": step})
                    conn.execute(
                        "INSERT INTO floor_sessions (call_sid, step, state) VALUES (?, ?, ?) "
                        "ON CONFLICT (call_sid) DO UPDATE SET step = excluded.step, "
                        "state = excluded.state",
                        (call_sid, step, state),
                    )
                    conn.execute(
                        "INSERT INTO floor_events (call_sid, step, kind, detail, at) "
                        "VALUES (?, ?, 'input', ?, ?)",
                        (call_sid, step, json.dumps({"digits": digits}), now),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            return step
        # Two round trips, the fewest a read-then-write step can take: BEGIN with the locking
        # read, then the writes with COMMIT, pipelined (psycopg prepares repeated statements).
        with conn.pipeline():
            row = conn.execute(
                "SELECT step, state FROM floor_sessions WHERE call_sid = %s FOR UPDATE",
                (call_sid,),
            ).fetchone()
            step = (row[0] if row else 0) + 1
            state = json.dumps({"node": "main", "digits": digits, "step": step})
            conn.execute(
                "INSERT INTO floor_sessions (call_sid, step, state) VALUES (%s, %s, %s) "
                "ON CONFLICT (call_sid) DO UPDATE SET step = excluded.step, "
                "state = excluded.state",
                (call_sid, step, state),
            )
            conn.execute(
                "INSERT INTO floor_events (call_sid, step, kind, detail, at) "
                "VALUES (%s, %s, 'input', %s, %s)",
                (call_sid, step, json.dumps({"digits": digits}), now),
            )
            conn.commit()
        return step


application = Flask(__name__)
_store = _Store(os.environ.get("FLOOR_DATABASE_URL", "sqlite:///floor.db"))
_validator = RequestValidator(os.environ.get("TWILIO_AUTH_TOKEN", ""))
_base = os.environ.get("PUBLIC_BASE_URL", "").rstrip("/")


@application.post("/<path:path>")
def durable_step(path: str) -> Response:
    """Check the signature, advance the call's session durably, return a fixed document."""
    signature = request.headers.get("X-Twilio-Signature", "")
    url = _base + request.full_path.rstrip("?")
    expected = _validator.compute_signature(url, request.form)
    if not signature or not hmac.compare_digest(expected, signature):
        abort(403)
    _store.step(request.form.get("CallSid", ""), request.form.get("Digits", ""))
    return Response(FIXED_TWIML, mimetype="text/xml")
