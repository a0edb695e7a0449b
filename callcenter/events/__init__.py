"""Live events: a small publish/subscribe bus for state changes the console shows live.

Pick the implementation with :func:`for_database`: PostgreSQL ``LISTEN/NOTIFY`` across
processes and machines; on a SQLite file, a table every process on the machine reads; in
process for an in-memory database.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from ..db.engine import Database
from .bus import RESYNC, Event, EventBus, EventTooLarge, Subscription, Transaction
from .memory import InProcessBus
from .postgres import PostgresBus
from .table import TableBus

__all__ = [
    "RESYNC",
    "Event",
    "EventBus",
    "EventTooLarge",
    "InProcessBus",
    "PostgresBus",
    "Subscription",
    "TableBus",
    "Transaction",
    "for_database",
    "libpq_dsn",
]


def libpq_dsn(url: str) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL (driver name dropped)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def for_database(db: Database) -> EventBus:
    """The bus that fits ``db``: PostgreSQL ``LISTEN/NOTIFY``; the ``bus_events`` table on a
    SQLite file (``callcenter serve`` runs several processes on it); in process otherwise."""
    if db.engine.dialect.name == "postgresql":
        return PostgresBus(db, libpq_dsn(db.engine.url.render_as_string(hide_password=False)))
    database = db.engine.url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        return TableBus(db)
    return InProcessBus()
