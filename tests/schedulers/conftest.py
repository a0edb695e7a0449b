"""Fixtures for the reminder tests: the real composition root on the test database, a small
knowledge base and clinics (from the booking tests), a cheap password hash.

The fake clock starts at Thursday 2026-11-26 09:00 Shanghai time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.config import Config
from callcenter.db.engine import Database
from tests.booking.conftest import seed_kb
from tests.conftest import make_config


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """The test configuration, with a low password-hashing cost (bookings are made often)."""
    return make_config(database_url, tmp_path, booking={"password_hash_cost": 4})


@pytest.fixture
def kb(db: Database) -> Database:
    """The test database with the small knowledge base."""
    seed_kb(db)
    return db
