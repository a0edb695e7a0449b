"""Test databases holding the demo knowledge base: loaded once per module, copied per test.

Loading ``knowledge_base/demo/`` takes about a second; a copy costs a few milliseconds
(SQLite: a file copy; PostgreSQL: ``CREATE DATABASE ... TEMPLATE``). A test module uses it
by overriding the ``database_url`` fixture::

    @pytest.fixture(scope="module")
    def demo_kb(database_template, tmp_path_factory):
        with demo_database(database_template, tmp_path_factory.mktemp("kb")) as url:
            yield url

    @pytest.fixture
    def database_url(demo_kb, tmp_path):
        with copy_of(demo_kb, tmp_path) as url:
            yield url

Every test then gets its own database with the demo knowledge base in it, whatever the
test before it wrote (calls, outbox rows, imported entries).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from callcenter.clock import FakeClock
from callcenter.db.engine import Database, make_engine
from callcenter.db.migrate import upgrade
from knowledge_base.importer import ImportReport, load_demo
from tests.conftest import BACKEND, PG_URL

#: The clock the demo is loaded with (the same instant as the ``clock`` fixture).
LOAD_CLOCK_AT = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def load_into(url: str) -> ImportReport:
    """Load the demo knowledge base into the database at ``url``."""
    db = Database.from_url(url)
    try:
        return load_demo(db, FakeClock(LOAD_CLOCK_AT))
    finally:
        db.dispose()


def _admin_execute(sql: str) -> None:
    admin = make_engine(PG_URL)
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(sql))
    finally:
        admin.dispose()


def _pg_url(name: str) -> str:
    return PG_URL.rsplit("/", 1)[0] + "/" + name


@contextmanager
def demo_database(base_template: str, directory: Path) -> Iterator[str]:
    """A migrated database with the demo knowledge base loaded (kept for one module).

    ``base_template`` is the session's migrated database (a SQLite file path, or a
    PostgreSQL URL, which is not touched: the module gets a database of its own).
    """
    if BACKEND == "sqlite":
        path = directory / "kb-demo.db"
        shutil.copyfile(base_template, path)
        url = f"sqlite:///{path}"
        load_into(url)
        yield url
        return
    name = f"callcenter_kbdemo_{uuid.uuid4().hex[:10]}"
    _admin_execute(f"CREATE DATABASE {name} LOCALE 'C.UTF-8' TEMPLATE template0")
    url = _pg_url(name)
    try:
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        load_into(url)
        yield url
    finally:
        _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def copy_of(url: str, directory: Path) -> Iterator[str]:
    """A fresh copy of the database at ``url`` for one test (dropped afterwards)."""
    if BACKEND == "sqlite":
        source = Path(url.removeprefix("sqlite:///"))
        path = directory / "callcenter.db"
        shutil.copyfile(source, path)
        yield f"sqlite:///{path}"
        return
    source_name = url.rsplit("/", 1)[1]
    name = f"callcenter_kbtest_{uuid.uuid4().hex[:10]}"
    # WAL_LOG copies block by block without a checkpoint: ~0.1 s for the demo data.
    _admin_execute(f"CREATE DATABASE {name} TEMPLATE {source_name} STRATEGY WAL_LOG")
    try:
        yield _pg_url(name)
    finally:
        _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
