"""Small SQL helpers shared by services that write on hot paths with SQLAlchemy Core."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert


def insert_ignore(conn: Connection, table: Table) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"unsupported database {conn.dialect.name}")


def inserted(result: Any) -> bool:
    """Whether an ``insert_ignore(...).returning(...)`` really wrote its row.

    The row count is not portable for ``ON CONFLICT DO NOTHING`` (PostgreSQL's driver may
    report -1), so the statement returns a column and a skipped row returns nothing.
    """
    return result.first() is not None
