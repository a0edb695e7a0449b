"""The database layer under concurrency: SQLite's writer lock across processes, and writes sent
together on PostgreSQL failing as the same errors as writes sent one by one."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from callcenter.db.engine import Database, make_engine, pipelined, retry_once
from callcenter.db.migrate import upgrade
from callcenter.db.models import Resident


def _hold_the_lock(url: str, log: str, taken: multiprocessing.synchronize.Event) -> None:
    db = Database(make_engine(url))
    with db.connection() as conn:
        taken.set()
        with Path(log).open("a") as f:
            f.write("first-start\n")
        time.sleep(0.3)  # long enough for the other process to be waiting
        conn.execute(text("SELECT 1"))
        with Path(log).open("a") as f:
            f.write("first-end\n")
    db.dispose()


def test_sqlite_writers_in_two_processes_take_turns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'turns.db'}"
    upgrade(make_engine(url))
    log = tmp_path / "order.txt"
    ctx = multiprocessing.get_context("spawn")
    taken = ctx.Event()
    first = ctx.Process(target=_hold_the_lock, args=(url, str(log), taken))
    first.start()
    assert taken.wait(30)
    db = Database(make_engine(url))
    with db.connection() as conn:
        with log.open("a") as f:
            f.write("second\n")
        conn.execute(text("SELECT 1"))
    db.dispose()
    first.join(30)
    assert first.exitcode == 0
    assert log.read_text().split() == ["first-start", "first-end", "second"]
    assert (tmp_path / "turns.db-writer.lock").exists()


def _add_residents(url: str, prefix: str, n: int) -> None:
    db = Database(make_engine(url))
    for i in range(n):
        with db.connection() as conn:
            # Read, then write what was read: lost updates would show as missing rows.
            seen = conn.execute(select(func.count()).select_from(Resident)).scalar_one()
            conn.execute(
                insert(Resident).values(
                    phone_e164=f"+86138{prefix}{i:05d}",
                    is_demo=True,
                    created_at=func.current_timestamp(),
                    updated_at=func.current_timestamp(),
                    preferred_language=str(seen % 10),
                )
            )
    db.dispose()


def test_sqlite_writers_in_three_processes_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'many.db'}"
    upgrade(make_engine(url))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_residents, args=(url, str(p), 40)) for p in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    db = Database(make_engine(url))
    with db.connection() as conn:
        assert conn.execute(select(func.count()).select_from(Resident)).scalar_one() == 120
    db.dispose()


def _resident(phone: str) -> dict[str, object]:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    return {"phone_e164": phone, "is_demo": True, "created_at": now, "updated_at": now}


def test_a_conflict_among_writes_sent_together_is_an_integrity_error(db: Database) -> None:
    def twice(commit: bool) -> None:
        with db.connection() as conn, pipelined(conn):
            conn.execute(insert(Resident).inline(), _resident("+8613800000011"))
            conn.execute(insert(Resident).inline(), _resident("+8613800000011"))
            if commit:
                conn.commit()

    for commit in (False, True):
        with pytest.raises(IntegrityError):
            twice(commit)
        with db.connection() as conn:
            # Nothing of the failed transaction was kept, and the connection works.
            assert conn.execute(select(func.count()).select_from(Resident)).scalar_one() == 0
    with db.connection() as conn, pipelined(conn):
        conn.execute(insert(Resident).inline(), _resident("+8613800000011"))
        conn.commit()
    with db.connection() as conn:
        assert conn.execute(select(func.count()).select_from(Resident)).scalar_one() == 1


def test_writes_sent_together_are_all_kept_and_retry_once_sees_a_lost_race(db: Database) -> None:
    with db.connection() as conn, pipelined(conn):
        for i in range(5):
            conn.execute(insert(Resident).inline(), _resident(f"+861380000002{i}"))
    runs: list[int] = []

    def work() -> int:
        runs.append(1)
        with db.connection() as conn:
            if len(runs) == 1:
                with pipelined(conn):
                    conn.execute(insert(Resident).inline(), _resident("+8613800000020"))
            return int(conn.execute(select(func.count()).select_from(Resident)).scalar_one())

    # The first run collides with a row already there; the second run sees the database as is.
    assert retry_once(work) == 5
    assert len(runs) == 2
