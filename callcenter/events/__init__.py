"""Live events: a small publish/subscribe bus for state changes the console shows live.

Pick the implementation with :func:`for_database`: in-process fan-out for SQLite (one web
process), PostgreSQL ``LISTEN/NOTIFY`` across processes and machines otherwise.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from ..db.engine import Database
from .bus import RESYNC, Event, EventBus, EventTooLarge, Subscription, Transaction
from .memory import InProcessBus
from .postgres import PostgresBus

__all__ = [
    "RESYNC",
    "Event",
    "EventBus",
    "EventTooLarge",
    "InProcessBus",
    "PostgresBus",
    "Subscription",
    "Transaction",
    "for_database",
    "libpq_dsn",
]


def libpq_dsn(url: str) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL (driver name dropped)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def for_database(db: Database) -> EventBus:
    """The bus that fits ``db``: PostgreSQL ``LISTEN/NOTIFY``, or in-process for SQLite."""
    if db.engine.dialect.name == "postgresql":
        return PostgresBus(db, libpq_dsn(db.engine.url.render_as_string(hide_password=False)))
    return InProcessBus()
