"""Fixtures for the outbox and its dispatcher.

These build the database handle straight from the test configuration (not through
``services``), so the outbox tests do not depend on the IVR flows loading.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.messaging.outbox import Outbox


@pytest.fixture
def msg_db(config: Config) -> Iterator[Database]:
    """A database handle on the clean test database."""
    handle = Database.from_url(config.database_url)
    yield handle
    handle.dispose()


@pytest.fixture
def outbox(config: Config, msg_db: Database) -> Outbox:
    """The outbox on the test database, sealing with the test SECRET_KEY."""
    return Outbox.from_config(config, msg_db)
