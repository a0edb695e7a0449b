"""Shared fixtures: a real database (SQLite file or a fresh PostgreSQL database), the real
flows, the Flask app, and a Twilio client that signs every request like Twilio does.

Choose the database with ``TEST_DATABASE=sqlite`` (default) or ``TEST_DATABASE=postgresql``
(``TEST_PG_URL`` names the server, default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from callcenter.bootstrap import Services, build
from callcenter.clock import FakeClock
from callcenter.config import Config, load_config
from callcenter.db.engine import Database, make_engine
from callcenter.db.migrate import upgrade
from callcenter.db.models import Base

#: Every run scans all log calls for phone numbers, ID numbers and known passwords/PINs.
pytest_plugins = ("tests.privacy.log_scan",)

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "ivr_flows"
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
SECRET_KEY = "test-secret-key"
PUBLIC_BASE_URL = "https://hotline.example.org"
BACKEND = os.environ.get("TEST_DATABASE", "sqlite")
PG_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_ENV = {
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "SECRET_KEY": SECRET_KEY,
    "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
}


def _pg_admin_url() -> str:
    return PG_URL


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Commands under test configure logging (``setup_logging``); undo it after each test so
    no handler bound to a finished test's stderr lingers."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for the whole session: a SQLite file to copy, or a PG database."""
    if BACKEND == "sqlite":
        path = tmp_path_factory.mktemp("dbtemplate") / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        yield str(path)
        return
    if BACKEND != "postgresql":
        raise RuntimeError(f"TEST_DATABASE must be sqlite or postgresql, not {BACKEND!r}")
    name = f"callcenter_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(_pg_admin_url())
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name} LOCALE 'C.UTF-8' TEMPLATE template0"))
    url = _pg_admin_url().rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> Iterator[str]:
    """A clean, migrated database for one test."""
    if BACKEND == "sqlite":
        path = tmp_path / "callcenter.db"
        shutil.copyfile(database_template, path)
        yield f"sqlite:///{path}"
        return
    engine = make_engine(database_template)
    with engine.begin() as conn:
        used = _used_tables(conn)
        if used:
            conn.execute(text(f"TRUNCATE {', '.join(sorted(used))} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield database_template


def _used_tables(conn: Any) -> set[str]:
    """The tables a previous test touched: those with rows, and those whose id sequence moved
    (a rolled-back insert leaves the table empty but the next id changed). Truncating only
    these keeps every test's database clean and ids starting at 1, at a fraction of the cost
    of truncating all of them."""
    names = [t.name for t in Base.metadata.sorted_tables]
    probe = " UNION ALL ".join(
        f"SELECT '{n}' WHERE EXISTS (SELECT 1 FROM {n})"  # noqa: S608 - names from the models
        for n in names
    )
    used = {str(r[0]) for r in conn.execute(text(probe))}
    moved = conn.execute(
        text(
            "SELECT DISTINCT t.relname FROM pg_sequences s"
            " JOIN pg_class q ON q.relname = s.sequencename AND q.relkind = 'S'"
            " JOIN pg_depend d ON d.objid = q.oid AND d.refobjsubid > 0"
            " JOIN pg_class t ON t.oid = d.refobjid"
            " WHERE s.last_value IS NOT NULL AND s.schemaname = 'public'"
        )
    )
    used |= {str(r[0]) for r in moved} & set(names)
    return used


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2026-11-26 09:00 Shanghai time."""
    from datetime import UTC, datetime

    return FakeClock(datetime(2026, 11, 26, 1, 0, tzinfo=UTC))


def make_config(database_url: str, data_dir: Path, **overrides: Any) -> Config:
    """A configuration for tests: real flows, test secrets, the given database."""
    merged: dict[str, Any] = {
        "instance": {"data_dir": str(data_dir)},
        "database": {"url": database_url},
        "ivr": {"flows_dir": str(FLOWS)},
    }
    for key, value in overrides.items():
        merged.setdefault(key, {}).update(value)
    return load_config(ROOT / "config.yaml", environ=TEST_ENV, overrides=merged)


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """The test configuration."""
    return make_config(database_url, tmp_path)


@pytest.fixture
def services(config: Config, clock: FakeClock) -> Iterator[Services]:
    """Every service, wired by the real composition root, on the test database and clock."""
    built = build(config, clock=clock)
    yield built
    built.events.close()  # the PostgreSQL listener thread and its connection, if one started
    built.db.dispose()


@pytest.fixture
def db(services: Services) -> Database:
    """The test database handle."""
    return services.db


@pytest.fixture
def app(services: Services) -> Flask:
    """The real Flask app (console + webhooks)."""
    from agents_console import create_app

    return create_app(services, TESTING=True)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A plain (unsigned) test client."""
    return app.test_client()


class TwilioSigner:
    """Posts to the app the way Twilio does: form-encoded, with a valid X-Twilio-Signature."""

    def __init__(
        self, client: FlaskClient, token: str = AUTH_TOKEN, base_url: str = PUBLIC_BASE_URL
    ) -> None:
        self.client = client
        self.validator = RequestValidator(token)
        self.base_url = base_url

    def signature(self, path: str, params: dict[str, str]) -> str:
        """The signature Twilio would send for ``path`` (with query) and ``params``."""
        return str(self.validator.compute_signature(self.base_url + path, params))

    def post(
        self,
        path: str,
        params: dict[str, str],
        headers: dict[str, str] | None = None,
        signature: str | None = None,
    ) -> Any:
        """POST ``params`` to ``path`` signed (or with the given ``signature``)."""
        sig = self.signature(path, params) if signature is None else signature
        all_headers = {"X-Twilio-Signature": sig, **(headers or {})}
        return self.client.post(path, data=params, headers=all_headers)


@pytest.fixture
def twilio(client: FlaskClient) -> TwilioSigner:
    """A Twilio-like signed client."""
    return TwilioSigner(client)


def write_cli_config(tmp_path: Path, database_url: str, **sections: dict[str, Any]) -> Path:
    """The shipped config.yaml pointed at the test database (``sections`` update it), as an
    operator's command line reads it."""
    import yaml

    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["instance"]["data_dir"] = str(tmp_path / "var")
    raw["database"]["url"] = database_url
    raw["ivr"]["flows_dir"] = str(FLOWS)
    raw["web"]["public_base_url"] = PUBLIC_BASE_URL
    for name, values in sections.items():
        raw[name].update(values)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def run_cli(config: Path, *args: str, input: str | None = None) -> Any:
    """``callcenter --config CONFIG ARGS...`` with the test secrets in the environment; the
    click ``Result``."""
    from click.testing import CliRunner

    from callcenter.cli import main

    env = {
        "CALLCENTER_CONFIG": str(config),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": None,
        "CALLCENTER_WEB_PUBLIC_BASE_URL": None,
    }
    return CliRunner(env=env).invoke(
        main, ["--config", str(config), *args], input=input, catch_exceptions=False
    )
