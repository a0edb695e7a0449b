"""Database engines and sessions for SQLite (default, one machine) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers queue for the lock instead of failing half-way
(one web worker's read-then-write cannot interleave with another's). Inside one process the
transactions also queue on a lock of ours: SQLite's own busy handler waits by sleeping (up to
100 ms a try), which would turn a few threads competing for the file into long pauses.
PostgreSQL uses row locks (``SELECT ... FOR UPDATE``) where the services need them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, busy_timeout_ms: int = 10_000
) -> Engine:
    """Create an engine for ``url`` with the settings this application relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        )
        _sqlite_setup(engine, busy_timeout_ms)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(
        parsed,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per transaction on the webhook path. A connection
        # the server dropped fails its first statement, is discarded by the pool, and the
        # services' single retry (or the provider's) runs on a fresh one.
        pool_recycle=1800,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_setup(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


T = TypeVar("T")


def retry_once(work: Callable[[], T]) -> T:
    """Run ``work`` (one whole transaction); run it once more if it lost a race or a connection.

    A unique-key conflict means another worker did the same thing a moment earlier (the second
    run then sees its result); an invalidated connection means the server dropped it (the
    pool hands out a fresh one). Anything else, or a second failure, propagates.
    """
    try:
        return work()
    except IntegrityError:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return work()


def is_sqlite(engine: Engine) -> bool:
    """Whether ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"


class Database:
    """An engine plus a session factory; the one handle services get to the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self._writer = threading.RLock() if is_sqlite(engine) else None

    def _serialised(self) -> AbstractContextManager[object]:
        return self._writer if self._writer is not None else nullcontext()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        """Build from a URL (see :func:`make_engine` for the keyword arguments)."""
        return cls(make_engine(url, **kwargs))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._serialised(), self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core connection in one transaction (for hot paths that skip the ORM)."""
        with self._serialised(), self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
