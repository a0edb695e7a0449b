"""Fixtures for knowledge-base tests: a database with the demo knowledge base, per module."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from callcenter.clock import FakeClock
from callcenter.db.engine import Database, make_engine
from callcenter.db.migrate import upgrade
from knowledge_base.importer import load_demo
from tests.conftest import BACKEND, PG_URL

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def kb_demo_db(
    database_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A database of its own (not the per-test one) with the demo knowledge base loaded once."""
    if BACKEND == "sqlite":
        path = tmp_path_factory.mktemp("kbdemo") / "kb.db"
        shutil.copyfile(database_template, path)
        db = Database(make_engine(f"sqlite:///{path}"))
        load_demo(db, FakeClock())
        yield db
        db.dispose()
        return
    name = f"kb_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name} LOCALE 'C.UTF-8' TEMPLATE template0"))
    engine = make_engine(PG_URL.rsplit("/", 1)[0] + "/" + name)
    try:
        upgrade(engine)
        db = Database(engine)
        load_demo(db, FakeClock())
        yield db
        db.dispose()
    finally:
        engine.dispose()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
