"""A rate limit shared by every dispatcher worker on every machine, kept in the database.

Each sender (``twilio:sms``, ``twilio:call``...) has one row in ``rate_limits`` holding its
schedule: the moments already reserved for sending, with how many units each uses (an SMS
segment, or a call). A worker reserves moments for the messages it claims *in the claim
transaction* (the row is locked, so reservations never overlap), then sleeps until each
moment and sends.

The rule is a sliding window: in any window of ``1 s + guard`` at most ``capacity`` units are
reserved (``capacity`` = the per-second limit; below one per second, one unit per ``1/limit``
seconds). The guard (``messaging.rate_guard_ms``) absorbs send jitter: a message leaves a
little after its reserved moment (wake-up latency, a database round trip), and as long as
that lateness stays under the guard, no one-second window of *actual* sends exceeds the limit.
A worker that wakes up later than the guard gives its moment back and reserves a new one
(:meth:`RateLimiter.reschedule`).

Reservations may be placed anywhere in the schedule, not only after the last one, so a fast
worker can fill the gaps a slow one leaves. Clock: Unix seconds from the dispatcher's clock;
workers on different machines need synchronised clocks (NTP), as any shared schedule does.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, select, update

from ..db.models import RateLimit
from ..db.sql import insert_ignore

rate_t = cast(Table, RateLimit.__table__)
_EPS = 1e-6

Entry = tuple[float, int]


def _expand(entries: Sequence[Entry]) -> list[float]:
    return [t for t, u in entries for _ in range(u)]


def earliest(
    entries: Sequence[Entry], not_before: float, units: int, capacity: int, window: float
) -> float:
    """The earliest moment at or after ``not_before`` where ``units`` more fit.

    ``entries`` are ``(time, units)`` sorted by time and already within the limit: every
    ``capacity + 1`` consecutive units span more than ``window`` seconds (equivalently, no
    closed window of that length holds more than ``capacity``). Placing ``units`` (at most
    ``capacity``) at moment ``a`` between the ``p``-th and ``p+1``-th existing unit keeps
    that true iff, with ``d = capacity - units``:

    1. ``a`` is more than ``window`` after the unit ``d + 1`` places before it,
    2. ``a`` is more than ``window`` before the unit ``d + 1`` places after it,
    3. every run of ``d + 1`` existing units that straddles the insertion point already spans
       more than ``window`` (otherwise adding units inside it overfills it).

    The insertion points are scanned in time order, so the answer is found in one pass.
    """
    if not 1 <= units <= capacity:
        raise ValueError("units must be between 1 and the capacity")
    x = _expand(entries)
    n = len(x)
    d = capacity - units
    # bad_before[i]: how many runs starting before index i are too short
    bad_before = [0] * (n + 1)
    for m in range(n):
        short = d > 0 and m + d < n and x[m + d] - x[m] <= window
        bad_before[m + 1] = bad_before[m] + (1 if short else 0)
    p = bisect.bisect_left(x, not_before)
    while p <= n:
        lo = not_before
        if p > 0:
            lo = max(lo, x[p - 1])
        if p - 1 - d >= 0:
            lo = max(lo, x[p - 1 - d] + window + _EPS)
        hi = math.inf if p == n else x[p]
        if p + d < n:
            hi = min(hi, x[p + d] - window - _EPS / 10)
        first, last = max(0, p - d), min(p - 1, n - 1 - d)
        clear = first > last or bad_before[last + 1] - bad_before[first] == 0
        if clear and lo <= hi:
            return lo
        p += 1
    raise AssertionError("unreachable: after the last reservation every window is empty")


def within_limit(entries: Sequence[Entry], capacity: int, window: float) -> bool:
    """Whether no closed window of ``window`` seconds holds more than ``capacity`` units."""
    x = _expand(entries)
    return all(x[i + capacity] - x[i] > window for i in range(len(x) - capacity))


class RateLimiter:
    """Reserves sending moments for one or more senders in the ``rate_limits`` table."""

    def __init__(self, per_second: float, guard_s: float) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        if per_second >= 1:
            self.capacity = math.floor(per_second)
            self.window = 1.0 + guard_s
        else:
            self.capacity = 1
            self.window = 1.0 / per_second + guard_s
        self.guard_s = guard_s

    # ---------------------------------------------------------------- pure schedule work

    def place(self, entries: list[Entry], not_before: float, units: int) -> float:
        """Reserve ``units`` in ``entries`` (sorted, changed in place); return the moment.

        A message bigger than the capacity (a long SMS at one segment per second) is sent at
        the returned moment and also blocks the following windows it would use.
        """
        units = max(1, units)
        if units <= self.capacity:
            at = earliest(entries, not_before, units, self.capacity, self.window)
            bisect.insort(entries, (at, units))
            return at
        at = not_before
        if entries:
            at = max(at, max(t for t, _u in entries) + self.window + _EPS)
        remaining, moment = units, at
        while remaining > 0:
            chunk = min(remaining, self.capacity)
            bisect.insort(entries, (moment, chunk))
            remaining -= chunk
            moment += self.window + _EPS
        return at

    def prune(self, entries: list[Entry], now: float) -> list[Entry]:
        """Drop reservations too old to matter for any moment from ``now`` on."""
        cutoff = now - self.window - 1.0
        return [e for e in entries if e[0] >= cutoff]

    # ---------------------------------------------------------------- database

    def load(self, conn: Connection, key: str, now: datetime) -> list[Entry]:
        """Lock and read the schedule of ``key`` (created empty on first use)."""
        conn.execute(insert_ignore(conn, rate_t).values(key=key, state={"r": []}, updated_at=now))
        query = select(rate_t.c.state).where(rate_t.c.key == key)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        state: Any = conn.execute(query).scalar_one()
        raw = state.get("r", []) if isinstance(state, dict) else []
        entries = sorted((float(t), int(u)) for t, u in raw)
        return self.prune(entries, now.timestamp())

    def save(self, conn: Connection, key: str, entries: list[Entry], now: datetime) -> None:
        """Write the schedule of ``key`` back (in the transaction that loaded it)."""
        conn.execute(
            update(rate_t)
            .where(rate_t.c.key == key)
            .values(state={"r": [[t, u] for t, u in entries]}, updated_at=now)
        )

    def reserve(
        self, conn: Connection, key: str, requests: Sequence[tuple[int, float]], now: datetime
    ) -> list[float]:
        """Reserve a moment for each ``(units, not_before)``; in the caller's transaction."""
        entries = self.load(conn, key, now)
        moments = [self.place(entries, nb, units) for units, nb in requests]
        self.save(conn, key, entries, now)
        return moments

    def release(
        self, conn: Connection, key: str, reserved: Sequence[tuple[float, int]], now: datetime
    ) -> None:
        """Give back moments that will not be used (a worker stopping, a late wake-up)."""
        entries = self.load(conn, key, now)
        for at, units in reserved:
            for i, (t, u) in enumerate(entries):
                if t == at and u == min(units, self.capacity):
                    del entries[i]
                    break
        self.save(conn, key, entries, now)

    def reschedule(
        self, conn: Connection, key: str, old: float, units: int, not_before: float, now: datetime
    ) -> float:
        """Give back the moment ``old`` and reserve the earliest one from ``not_before``."""
        entries = self.load(conn, key, now)
        for i, (t, u) in enumerate(entries):
            if t == old and u == min(units, self.capacity):
                del entries[i]
                break
        at = self.place(entries, not_before, units)
        self.save(conn, key, entries, now)
        return at
