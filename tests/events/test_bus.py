"""The event bus: in-process fan-out, SQLite's table across processes, and PostgreSQL
LISTEN/NOTIFY across connections.

The PostgreSQL tests run whatever ``TEST_DATABASE`` says: LISTEN/NOTIFY needs no tables, only
the server (``TEST_PG_URL``), which every CI machine has.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from callcenter.db.engine import Database
from callcenter.db.migrate import upgrade
from callcenter.events import (
    RESYNC,
    EventBus,
    EventTooLarge,
    InProcessBus,
    PostgresBus,
    Subscription,
    TableBus,
    for_database,
    libpq_dsn,
)
from callcenter.events.bus import Hub
from tests.conftest import PG_URL


def _drain(sub: Subscription, timeout: float = 0.05) -> list[tuple[str, dict[str, object]]]:
    """What ``sub`` holds: waits up to ``timeout`` for the first event, briefly for more."""
    got = []
    while (ev := sub.get(timeout)) is not None:
        got.append((ev.topic, ev.data))
        timeout = 0.1
    return got


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The test database alone (no services: the bus needs none)."""
    handle = Database.from_url(database_url)
    yield handle
    handle.dispose()


class _Failed(Exception):
    """The state change failed after publishing: its transaction rolls back."""


def _rolled_back(begin: Callable[[], AbstractContextManager[Any]], topic: str, n: int) -> None:
    """Publish inside a transaction that then fails."""
    with contextlib.suppress(_Failed), begin() as tx:
        BUS_UNDER_TEST[0].publish(topic, {"n": n}, tx=tx)
        raise _Failed


BUS_UNDER_TEST: list[EventBus] = []


# ------------------------------------------------------------------ in-process


def test_fan_out_reaches_every_subscriber_of_the_topic_and_no_other() -> None:
    bus = InProcessBus()
    a1, a2 = bus.subscribe(["agent:a1"]), bus.subscribe(["agent:a1", "queues"])
    other = bus.subscribe(["agent:a2"])
    bus.publish("agent:a1", {"kind": "offer", "call": "CA1"})
    bus.publish("queues", {"kind": "queue", "queue": "general"})
    assert _drain(a1) == [("agent:a1", {"kind": "offer", "call": "CA1"})]
    assert _drain(a2) == [
        ("agent:a1", {"kind": "offer", "call": "CA1"}),
        ("queues", {"kind": "queue", "queue": "general"}),
    ]
    assert _drain(other) == []


def test_a_closed_subscription_hears_nothing_more_and_wakes_its_reader() -> None:
    bus = InProcessBus()
    sub = bus.subscribe(["t"])
    sub.close()
    bus.publish("t", {"n": 1})
    assert sub.get(0.01) is None
    assert bus.hub.subscriber_count == 0


@pytest.mark.parametrize(
    ("topic", "data", "error"),
    [
        ("", {}, ValueError),
        ("_resync", {}, ValueError),
        ("agent:a1", {"blob": "x" * 8000}, EventTooLarge),
    ],
)
def test_bad_events_are_refused_before_anything_is_sent(
    topic: str, data: dict[str, object], error: type[Exception]
) -> None:
    bus = InProcessBus()
    sub = bus.subscribe(["agent:a1"])
    with pytest.raises(error):
        bus.publish(topic, data)
    assert _drain(sub) == []


def test_a_subscriber_that_falls_behind_gets_one_resync_instead_of_a_flood() -> None:
    hub = Hub(max_pending=5)
    sub = hub.subscribe(["t"])
    from callcenter.events.bus import Event

    for n in range(20):
        hub.deliver(Event("t", {"n": n}))
    got = _drain(sub)
    assert [t for t, _ in got] == [RESYNC]
    hub.deliver(Event("t", {"n": 99}))
    assert _drain(sub) == [("t", {"n": 99})]


def test_in_process_events_tied_to_a_transaction_are_heard_only_after_commit(
    db: Database,
) -> None:
    bus = InProcessBus()
    sub = bus.subscribe(["t"])
    with db.transaction() as session:
        bus.publish("t", {"n": 1}, tx=session)
        assert sub.get(0.01) is None  # not yet: the change is not committed
    assert _drain(sub) == [("t", {"n": 1})]

    BUS_UNDER_TEST[:] = [bus]
    _rolled_back(db.transaction, "t", 2)
    with db.transaction() as session:
        bus.publish("t", {"n": 3}, tx=session)
    assert _drain(sub) == [("t", {"n": 3})]  # the rolled-back event is never heard


def test_in_process_events_on_a_core_connection_follow_its_transaction(db: Database) -> None:
    bus = InProcessBus()
    sub = bus.subscribe(["t"])
    BUS_UNDER_TEST[:] = [bus]
    _rolled_back(db.connection, "t", 1)
    with db.connection() as conn:
        bus.publish("t", {"n": 2}, tx=conn)
    assert _drain(sub) == [("t", {"n": 2})]


def test_the_database_picks_the_bus(db: Database) -> None:
    bus = for_database(db)
    expected = PostgresBus if db.engine.dialect.name == "postgresql" else TableBus
    assert isinstance(bus, expected)
    bus.close()
    memory = Database.from_url("sqlite://")
    assert isinstance(for_database(memory), InProcessBus)  # one connection, one process
    memory.dispose()


# ------------------------------------------------------------------ SQLite, through a table


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite file, whatever ``TEST_DATABASE`` says (the table bus is SQLite's)."""
    handle = Database.from_url(f"sqlite:///{tmp_path / 'bus.db'}")
    upgrade(handle.engine)
    yield handle
    handle.dispose()


@pytest.fixture
def two_sqlite_processes(sqlite_file: Database) -> Iterator[tuple[TableBus, TableBus]]:
    """Two buses on one file, as two processes have (each its own origin)."""
    a = TableBus(sqlite_file, poll_s=0.02, prune_every_s=0.1)
    b = TableBus(Database(sqlite_file.engine), poll_s=0.02, prune_every_s=0.1)
    yield a, b
    a.close()
    b.close()


def test_the_table_carries_an_event_to_the_other_process_and_at_commit_to_its_own(
    two_sqlite_processes: tuple[TableBus, TableBus],
) -> None:
    """An offer the router makes reaches the web worker holding the agent's stream."""
    a, b = two_sqlite_processes
    mine, theirs = a.subscribe(["agent:a1"]), b.subscribe(["agent:a1"])
    elsewhere = b.subscribe(["agent:a2"])
    assert a.listening
    assert b.listening
    a.publish("agent:a1", {"kind": "offer", "call": "CA1"})
    expected = [("agent:a1", {"kind": "offer", "call": "CA1"})]
    assert _drain(mine, 0.01) == expected  # its own process: at once, and only once
    assert _drain(theirs, 2.0) == expected
    assert _drain(elsewhere, 0.2) == []
    assert _drain(mine, 0.2) == []


def test_table_events_are_heard_only_if_and_after_their_transaction_commits(
    sqlite_file: Database, two_sqlite_processes: tuple[TableBus, TableBus]
) -> None:
    a, b = two_sqlite_processes
    here, there = a.subscribe(["t"]), b.subscribe(["t"])
    BUS_UNDER_TEST[:] = [a]
    _rolled_back(sqlite_file.transaction, "t", 1)
    _rolled_back(sqlite_file.connection, "t", 2)
    with sqlite_file.transaction() as session:
        a.publish("t", {"n": 3}, tx=session)
        assert here.get(0.1) is None
    with sqlite_file.connection() as conn:
        a.publish("t", {"n": 4}, tx=conn)
    assert _drain(here, 0.5) == [("t", {"n": 3}), ("t", {"n": 4})]
    assert _drain(there, 2.0) == [("t", {"n": 3}), ("t", {"n": 4})]


def test_old_table_events_are_pruned_and_ids_never_go_back(
    sqlite_file: Database, two_sqlite_processes: tuple[TableBus, TableBus]
) -> None:
    """Even when pruning empties the table, the next event gets a higher id, so a reader that
    has seen id N does not wait for ids at or below N that will never come."""
    a, b = two_sqlite_processes
    a.retention_s = 0.05
    sub = b.subscribe(["t"])
    a.publish("t", {"n": 1})
    assert _drain(sub, 2.0) == [("t", {"n": 1})]
    a.subscribe(["other"])  # starts a's reader, which prunes
    deadline = time.monotonic() + 5
    while _count(sqlite_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(sqlite_file) == 0
    a.publish("t", {"n": 2})
    assert _drain(sub, 2.0) == [("t", {"n": 2})]


def _count(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM bus_events")).scalar_one())


_OTHER_PROCESS = """
import sys
from callcenter.db.engine import Database
from callcenter.events import TableBus
bus = TableBus(Database.from_url(sys.argv[1]))
with Database.from_url(sys.argv[1]).transaction() as session:
    bus.publish("agent:a7", {"kind": "offer", "call": "CA7"}, tx=session)
"""


def test_an_event_published_by_another_process_reaches_this_one(
    sqlite_file: Database, tmp_path: Path
) -> None:
    bus = TableBus(sqlite_file, poll_s=0.02)
    sub = bus.subscribe(["agent:a7"])
    try:
        url = f"sqlite:///{tmp_path / 'bus.db'}"
        subprocess.run([sys.executable, "-c", _OTHER_PROCESS, url], check=True, timeout=60)
        assert _drain(sub, 5.0) == [("agent:a7", {"kind": "offer", "call": "CA7"})]
    finally:
        bus.close()


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def pg() -> Iterator[Database]:
    handle = Database.from_url(PG_URL)
    yield handle
    handle.dispose()


def _pg_bus(pg: Database, channel: str) -> PostgresBus:
    return PostgresBus(pg, libpq_dsn(PG_URL), channel=channel, max_backoff_s=0.2)


@pytest.fixture
def channel() -> str:
    return f"test_events_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def two_processes(pg: Database, channel: str) -> Iterator[tuple[PostgresBus, PostgresBus]]:
    """Two buses, each with its own listener connection, as two web processes have."""
    a, b = _pg_bus(pg, channel), _pg_bus(pg, channel)
    yield a, b
    a.close()
    b.close()


def test_listen_notify_carries_an_event_to_the_other_process(
    two_processes: tuple[PostgresBus, PostgresBus],
) -> None:
    a, b = two_processes
    mine, theirs = a.subscribe(["agent:a1"]), b.subscribe(["agent:a1"])
    elsewhere = b.subscribe(["agent:a2"])
    assert a.listening
    assert b.listening
    assert a.backend_pid != b.backend_pid  # one listener connection per process
    a.publish("agent:a1", {"kind": "offer", "call": "CA1"})
    expected = [("agent:a1", {"kind": "offer", "call": "CA1"})]
    assert _drain(theirs, 2.0) == expected
    assert _drain(mine, 2.0) == expected
    assert _drain(elsewhere, 0.2) == []


def test_listeners_hear_only_committed_changes_and_only_after_commit(
    pg: Database, two_processes: tuple[PostgresBus, PostgresBus]
) -> None:
    a, b = two_processes
    sub = b.subscribe(["t"])
    BUS_UNDER_TEST[:] = [a]
    _rolled_back(pg.transaction, "t", 1)
    with pg.transaction() as session:
        a.publish("t", {"n": 2}, tx=session)
        session.execute(text("SELECT 1"))
        assert sub.get(0.3) is None  # still inside the transaction: nothing heard
    assert _drain(sub, 2.0) == [("t", {"n": 2})]


def test_the_listener_reconnects_and_asks_subscribers_to_resync(
    pg: Database, two_processes: tuple[PostgresBus, PostgresBus]
) -> None:
    a, b = two_processes
    sub = b.subscribe(["t"])
    first_pid = b.backend_pid
    with pg.connection() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
    ev = sub.get(10.0)
    assert ev is not None
    assert (ev.topic, ev.data) == (RESYNC, {"reason": "reconnected"})
    assert b.backend_pid not in (None, first_pid)
    a.publish("t", {"n": 1})
    assert _drain(sub, 2.0) == [("t", {"n": 1})]


def test_many_subscribers_in_one_process_share_one_listener(pg: Database, channel: str) -> None:
    bus: EventBus = _pg_bus(pg, channel)
    try:
        subs = [bus.subscribe([f"agent:a{n % 10}"]) for n in range(50)]
        with pg.connection() as conn:
            listeners = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'callcenter-events' AND pid = :pid"
                ),
                {"pid": bus.backend_pid},  # type: ignore[attr-defined]
            ).scalar_one()
        assert listeners == 1
        started = time.monotonic()
        bus.publish("agent:a3", {"kind": "offer"})
        heard = [s for s in subs if _drain(s, 0.5 if s is subs[3] else 0.01)]
        assert heard == [subs[n] for n in range(3, 50, 10)]
        assert time.monotonic() - started < 10
    finally:
        bus.close()


# ------------------------------------------------------------------ wire form

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    topic=st.text(min_size=1, max_size=30).filter(lambda t: not t.startswith("_")),
    data=st.dictionaries(st.text(max_size=10), _json_values, max_size=5),
)
def test_any_small_event_survives_the_wire_unchanged(topic: str, data: dict[str, Any]) -> None:
    from callcenter.events.bus import decode, encode

    try:
        payload = encode(topic, data)
    except EventTooLarge:
        return
    assert len(payload.encode()) <= 7_900
    ev = decode(payload)
    assert (ev.topic, ev.data) == (topic, data)


@pytest.mark.parametrize("payload", ["", "[]", '{"t": 1}', '{"t": "x", "d": []}', "{not json"])
def test_malformed_payloads_are_refused(payload: str) -> None:
    from callcenter.events.bus import decode

    with pytest.raises(ValueError):  # noqa: PT011 (json's error is a ValueError too)
        decode(payload)
