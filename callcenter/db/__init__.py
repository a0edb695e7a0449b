"""Persistence: SQLAlchemy 2 models, engine set-up for SQLite and PostgreSQL, Alembic migrations."""
