"""Database engines and sessions for SQLite (default, one machine) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers queue for the lock instead of failing half-way
(one web worker's read-then-write cannot interleave with another's). Transactions also queue
on a lock of ours first (:class:`WriterLock`: a thread lock, and an ``flock`` on a file next
to the database shared by every process using it): SQLite's own busy handler waits by
sleeping (up to 100 ms a try), which would turn a few threads or worker processes competing
for the file into long pauses, while a waiter on our lock wakes the moment it is released.
PostgreSQL uses row locks (``SELECT ... FOR UPDATE``) where the services need them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS: one process at a time
    fcntl = None  # type: ignore[assignment]

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
        # Straight to the driver: every transaction runs this, and SQLAlchemy's statement
        # machinery would cost more than the statement.
        driver = conn.connection.driver_connection
        try:
            driver.execute("BEGIN IMMEDIATE")
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                "BEGIN IMMEDIATE", (), exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from exc


T = TypeVar("T")
log = logging.getLogger(__name__)


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


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """Send the statements run inside to the server together, and wait once for them all.

    On PostgreSQL (psycopg's pipeline mode) a webhook's writes then cost one round trip
    instead of one each, the commit included when ``conn.commit()`` is called inside. For
    statements whose results nobody reads before the block ends (``INSERT``/``UPDATE``
    without ``RETURNING``, ``inline()`` inserts): a failure surfaces at the latest when the
    block ends, as the same SQLAlchemy error a statement run alone would raise, and the
    transaction is rolled back. Elsewhere (SQLite, where there are no round trips) the
    statements simply run one by one.
    """
    raw: Any = conn.connection.driver_connection
    pipeline = getattr(raw, "pipeline", None)
    if conn.dialect.name != "postgresql" or pipeline is None:
        yield
        return
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        with pipeline():
            yield
    except BaseException as exc:
        # A failure skips the rest of the batch, a COMMIT in it included: end the server's
        # transaction here, whoever raised, so the connection goes back to the pool clean.
        dropped = isinstance(exc, dbapi_error) and conn.dialect.is_disconnect(exc, raw, None)
        if dropped:
            conn.invalidate(exc)
        else:
            with suppress(dbapi_error):
                raw.rollback()
        if isinstance(exc, dbapi_error):
            raise DBAPIError.instance(
                None, None, exc, dbapi_error, connection_invalidated=dropped, dialect=conn.dialect
            ) from exc
        raise


def is_sqlite(engine: Engine) -> bool:
    """Whether ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"


class WriterLock:
    """Lets one transaction at a time write to a SQLite file, across threads and processes.

    Re-entrant within a thread. The process-wide part is an ``flock`` on ``path`` (taken by the
    outermost holder in a process and released with it); waiting threads and processes block
    in the kernel and wake as soon as the holder is done. Without ``path`` (an in-memory
    database) or without ``fcntl``, only threads of this process are serialised.
    """

    def __init__(self, path: Path | None) -> None:
        self._thread_lock = threading.RLock()
        self._path = path if fcntl is not None else None
        self._fd: int | None = None
        self._pid = 0
        self._depth = 0

    def _file(self) -> int | None:
        # One descriptor per process (a forked worker must not share its parent's: flock
        # locks belong to the open file, so two processes would "hold" it together).
        if self._path is not None and (self._fd is None or self._pid != os.getpid()):
            try:
                # Read-only is enough for flock, so any account that can read the directory
                # (an operator running a command as another user) shares the lock. It holds
                # no data.
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                # Still correct without it: SQLite's own lock (and busy timeout) decides.
                log.warning("SQLite writer lock %s unavailable (%s)", self._path, exc)
                self._path = None
                return None
            self._pid = os.getpid()
        return self._fd

    def __enter__(self) -> WriterLock:
        self._thread_lock.acquire()
        if self._depth == 0 and self._path is not None:
            try:
                fd = self._file()
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread_lock.release()
                raise
        self._depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._path is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


def _writer_lock(engine: Engine) -> WriterLock | None:
    if not is_sqlite(engine):
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return WriterLock(None)
    return WriterLock(Path(database + "-writer.lock"))


class Database:
    """An engine plus a session factory; the one handle services get to the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self._writer = _writer_lock(engine)

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
