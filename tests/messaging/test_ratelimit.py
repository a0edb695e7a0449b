"""The shared rate limit: never more than the limit in any one-second window.

Pure checks of the schedule (random reservations against a brute-force search), then real
worker threads with the real clock sending through a fake sender that notes
``time.monotonic()`` at each call.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.clock import SystemClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.messaging.dispatcher import Dispatcher
from callcenter.messaging.outbox import Outbox
from callcenter.messaging.ratelimit import RateLimiter, earliest, within_limit
from callcenter.messaging.templates import Templates
from tests.conftest import make_config

from .helpers import FakeSender, enqueue, row


def _brute(entries: list, not_before: float, units: int, capacity: int, window: float) -> float:
    candidates = sorted(
        {not_before} | {t + window + 1e-6 for t, _u in entries if t + window + 1e-6 > not_before}
    )
    for at in candidates:
        # a hair wider than the real window: a float difference landing a rounding error
        # above ``window`` must not count as room (the limiter keeps a real margin there)
        if within_limit(sorted([*entries, (at, units)]), capacity, window + 1e-9):
            return at
    raise AssertionError


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 6),
    window=st.sampled_from([1.0, 1.02, 2.5]),
    requests=st.lists(
        st.tuples(st.floats(0, 8, allow_nan=False), st.integers(1, 6)), min_size=1, max_size=25
    ),
)
def test_reservations_stay_within_limit_and_are_earliest(
    capacity: int, window: float, requests: list[tuple[float, int]]
) -> None:
    entries: list[tuple[float, int]] = []
    for not_before, units in requests:
        units = min(units, capacity)
        at = earliest(entries, not_before, units, capacity, window)
        assert at >= not_before
        assert at == pytest.approx(_brute(entries, not_before, units, capacity, window), abs=1e-5)
        bisect.insort(entries, (at, units))
        assert within_limit(entries, capacity, window)


def test_messages_bigger_than_the_limit_block_the_following_windows() -> None:
    limiter = RateLimiter(per_second=1, guard_s=0.02)
    entries: list[tuple[float, int]] = []
    first = limiter.place(entries, 100.0, 3)  # a 3-segment SMS at 1 segment/s
    second = limiter.place(entries, 100.0, 1)
    assert first == 100.0
    assert second >= first + 3 * 1.02


def test_fractional_rates() -> None:
    limiter = RateLimiter(per_second=0.5, guard_s=0.0)  # one every two seconds
    entries: list[tuple[float, int]] = []
    moments = [limiter.place(entries, 0.0, 1) for _ in range(3)]
    assert moments[1] - moments[0] > 2.0
    assert moments[2] - moments[1] > 2.0


def _max_in_window(times: list[tuple[float, int]], width: float = 1.0) -> int:
    times = sorted(times)
    best = 0
    for i, (start, _u) in enumerate(times):
        load = sum(u for t, u in times[i:] if t < start + width)
        best = max(best, load)
    return best


@pytest.mark.slow
def test_worker_threads_never_exceed_the_limit(database_url: str, tmp_path: Path) -> None:
    limit = 10
    config: Config = make_config(
        database_url,
        tmp_path,
        messaging={
            "max_non_essential_per_day": 100_000,  # one number, many messages: not the cap's test
            "sms": {"per_second": limit},
            "quiet_start": "00:00",
            "quiet_end": "00:00",
            "batch_size": 4,
        },
    )
    db = Database.from_url(config.database_url)
    outbox = Outbox.from_config(config, db)
    clock = SystemClock()
    rng = random.Random(3)
    ids = []
    for i in range(50):
        if rng.random() < 0.3:  # two segments
            ids.append(enqueue(outbox, db, clock.now(), f"m{i}"))
        else:
            ids.append(
                enqueue(
                    outbox, db, clock.now(), f"m{i}", template="service_guide", params={}, sealed={}
                )
            )
    sender = FakeSender()
    done = threading.Event()

    def work(n: int) -> None:
        d = Dispatcher(outbox, sender, Templates(config.flows_dir), worker_id=f"t{n}", clock=clock)
        while not done.is_set():
            if d.run_once() == 0:
                time.sleep(0.05)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        while len({s.outbox_id for s in sender.sent}) < len(ids):
            assert time.monotonic() - started < 60, "workers did not finish"
            time.sleep(0.1)
    finally:
        done.set()
        for t in threads:
            t.join()
    units = [(s.monotonic, s.segments) for s in sender.sent]
    assert sorted(s.outbox_id for s in sender.sent) == sorted(ids)  # each exactly once
    assert _max_in_window(units) <= limit
    total = sum(u for _t, u in units)
    span = max(t for t, _u in units) - min(t for t, _u in units)
    assert total / span > 0.8 * limit  # and the limit is used, not wasted
    assert {s.status for s in (row(db, i) for i in ids)} == {"queued"}
    db.dispose()


class _InFlight:
    """A provider that takes ``delay_s`` to answer, counting requests open at once."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.open = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, _outbox_id: int, _attempt: int) -> None:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        time.sleep(self.delay_s)
        with self.lock:
            self.open -= 1


@pytest.mark.parametrize(("concurrency", "expected_most"), [(1, 1), (4, 4)])
def test_a_slow_provider_gets_several_requests_at_once_up_to_the_concurrency(
    database_url: str, tmp_path: Path, concurrency: int, expected_most: int
) -> None:
    """Twilio takes a few hundred milliseconds to answer; one request at a time would leave
    most of a high rate unused. Each message still goes exactly once."""
    config: Config = make_config(
        database_url,
        tmp_path,
        messaging={
            "max_non_essential_per_day": 100_000,
            "sms": {"per_second": 1000, "concurrency": concurrency},
            "quiet_start": "00:00",
            "quiet_end": "00:00",
            "batch_size": 12,
        },
    )
    db = Database.from_url(config.database_url)
    outbox = Outbox.from_config(config, db)
    clock = SystemClock()
    ids = [enqueue(outbox, db, clock.now(), f"slow{i}") for i in range(12)]
    provider = _InFlight(0.15)
    sender = FakeSender(script=provider)
    d = Dispatcher(outbox, sender, Templates(config.flows_dir), worker_id="w", clock=clock)
    try:
        assert d.drain() == 12
    finally:
        d.close()
    assert sorted(s.outbox_id for s in sender.sent) == sorted(ids)
    assert provider.most == expected_most
    assert {row(db, i).status for i in ids} == {"queued"}
    db.dispose()


def test_a_dispatcher_on_a_fake_clock_sends_one_at_a_time(
    database_url: str, tmp_path: Path
) -> None:
    """A fake clock advanced by its sleeps cannot be shared by sending threads."""
    config: Config = make_config(
        database_url, tmp_path, messaging={"sms": {"per_second": 100, "concurrency": 8}}
    )
    db = Database.from_url(config.database_url)
    d = Dispatcher(
        Outbox.from_config(config, db),
        FakeSender(),
        Templates(config.flows_dir),
        clock=SystemClock(),
        sleep=time.sleep,
    )
    assert d.concurrency == {"sms": 1, "call": 1}
    db.dispose()
