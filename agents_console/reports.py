"""Supervisor figures from the routing tables: per-queue daily report, hourly series for the
wallboard charts, and the daily report as CSV.

Figures count the callers *queued* in a period (``routing_callers.enqueued_at``), by the
hotline's local day (``instance.timezone``):

* ``calls``: callers queued (waiting calls and callback requests);
* ``answered``: of those, answered by an agent; ``answered_in_target`` within the
  service-level target (``routing.service_level_s``, 20 s by default);
* ``abandoned``: hung up before being answered; ``abandoned_after_short`` only those who had
  waited longer than :data:`SHORT_ABANDON_S` (30 s: the NHS 111 measure, which does not count
  callers who change their mind at once);
* ``service_level`` (Asterisk's SL): answered in target / answered;
  ``service_level2`` (Asterisk's SL2): answered in target / (answered + abandoned);
* ``asa_s``: average speed of answer (seconds from queued to answered).

This module reads the database only; it imports no web framework, so the CLI or a scheduled
job can produce the same report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from callcenter.db.engine import Database
from callcenter.routing.escalations import EscalationView
from callcenter.routing.models import RoutingAgent, RoutingCaller

#: Abandoned calls are also counted only past this wait (seconds).
SHORT_ABANDON_S = 30.0
#: The longest period one CSV export may cover (days).
MAX_REPORT_DAYS = 366

CSV_HEADER = (
    "日期 date",
    "队列 queue",
    "来电 calls",
    "接通 answered",
    "目标内接通 answered_in_target",
    "放弃 abandoned",
    "30秒后放弃 abandoned_after_30s",
    "服务水平 SL %",
    "服务水平2 SL2 %",
    "放弃率 abandon %",
    "平均应答 ASA s",
)


@dataclass(frozen=True)
class Figures:
    """Counts and rates of one queue over one period (see the module docstring)."""

    calls: int
    answered: int
    answered_in_target: int
    abandoned: int
    abandoned_after_short: int
    asa_s: float | None

    @property
    def service_level(self) -> float | None:
        """Answered in target / answered (``None`` when nothing was answered)."""
        return self.answered_in_target / self.answered if self.answered else None

    @property
    def service_level2(self) -> float | None:
        """Answered in target / (answered + abandoned) (``None`` when nothing ended)."""
        ended = self.answered + self.abandoned
        return self.answered_in_target / ended if ended else None

    @property
    def abandon_rate(self) -> float | None:
        """Abandoned / (answered + abandoned) (``None`` when nothing ended)."""
        ended = self.answered + self.abandoned
        return self.abandoned / ended if ended else None


@dataclass(frozen=True)
class DailyRow:
    """One queue on one local day."""

    day: date
    queue: str
    figures: Figures


@dataclass(frozen=True)
class HourlySeries:
    """One queue hour by hour: ``starts`` are the hours' starts (UTC, aware); the other lists
    run parallel to them. ``service_level`` holds ``None`` for hours with nothing answered."""

    queue: str
    starts: list[datetime]
    calls: list[int]
    answered: list[int]
    abandoned: list[int]
    service_level: list[float | None]


@dataclass(frozen=True)
class CallerRow:
    """The columns of one queued caller that the figures need."""

    queue: str
    enqueued_at: datetime
    status: str
    answered_at: datetime | None
    abandoned_at: datetime | None


def _rows(db: Database, start: datetime, end: datetime) -> list[CallerRow]:
    with db.transaction() as session:
        result = session.execute(
            select(
                RoutingCaller.queue,
                RoutingCaller.enqueued_at,
                RoutingCaller.status,
                RoutingCaller.answered_at,
                RoutingCaller.abandoned_at,
            ).where(RoutingCaller.enqueued_at >= start, RoutingCaller.enqueued_at < end)
        )
        return [CallerRow(*row) for row in result]


def figures(rows: Iterable[CallerRow], target_s: float) -> Figures:
    """Count ``rows`` (callers of one queue and period)."""
    calls = answered = in_target = abandoned = abandoned_late = 0
    waits: list[float] = []
    for row in rows:
        calls += 1
        if row.answered_at is not None:
            answered += 1
            wait = (row.answered_at - row.enqueued_at).total_seconds()
            waits.append(wait)
            if wait <= target_s:
                in_target += 1
        elif row.status == "abandoned":
            abandoned += 1
            left = row.abandoned_at or row.enqueued_at
            if (left - row.enqueued_at).total_seconds() > SHORT_ABANDON_S:
                abandoned_late += 1
    return Figures(
        calls=calls,
        answered=answered,
        answered_in_target=in_target,
        abandoned=abandoned,
        abandoned_after_short=abandoned_late,
        asa_s=sum(waits) / len(waits) if waits else None,
    )


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def daily_report(
    db: Database,
    first: date,
    last: date,
    *,
    tz: ZoneInfo,
    target_s: float,
    queues: Sequence[str],
) -> list[DailyRow]:
    """One row per day from ``first`` to ``last`` (local days, both included) and per queue in
    ``queues`` (configured queues, in their order, then any other queue found in the data)."""
    if last < first:
        raise ValueError("the last day is before the first day")
    if (last - first).days + 1 > MAX_REPORT_DAYS:
        raise ValueError(f"a report covers at most {MAX_REPORT_DAYS} days")
    rows = _rows(db, _local_midnight(first, tz), _local_midnight(last + timedelta(days=1), tz))
    by_key: dict[tuple[date, str], list[CallerRow]] = {}
    for row in rows:
        day = row.enqueued_at.astimezone(tz).date()
        by_key.setdefault((day, row.queue), []).append(row)
    names = list(queues) + sorted({q for _d, q in by_key} - set(queues))
    out: list[DailyRow] = []
    day = first
    while day <= last:
        out.extend(
            DailyRow(day, name, figures(by_key.get((day, name), []), target_s)) for name in names
        )
        day += timedelta(days=1)
    return out


def hourly_series(
    db: Database, now: datetime, *, hours: int, target_s: float, queues: Sequence[str]
) -> list[HourlySeries]:
    """The last ``hours`` whole-or-current hours per queue (the current hour last)."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=hours - 1 - i) for i in range(hours)]
    rows = _rows(db, starts[0], current + timedelta(hours=1))
    buckets: dict[tuple[str, int], list[CallerRow]] = {}
    for row in rows:
        index = int((row.enqueued_at.astimezone(UTC) - starts[0]).total_seconds() // 3600)
        buckets.setdefault((row.queue, index), []).append(row)
    out: list[HourlySeries] = []
    for name in queues:
        figs = [figures(buckets.get((name, i), []), target_s) for i in range(hours)]
        out.append(
            HourlySeries(
                queue=name,
                starts=starts,
                calls=[f.calls for f in figs],
                answered=[f.answered for f in figs],
                abandoned=[f.abandoned for f in figs],
                service_level=[f.service_level for f in figs],
            )
        )
    return out


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}"


def report_csv(rows: Iterable[DailyRow]) -> str:
    """The daily report as CSV text starting with a byte-order mark (so that Excel reads the
    Chinese headers as UTF-8); empty cells where a rate has no calls to count."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        f = row.figures
        writer.writerow(
            (
                row.day.isoformat(),
                row.queue,
                f.calls,
                f.answered,
                f.answered_in_target,
                f.abandoned,
                f.abandoned_after_short,
                _percent(f.service_level),
                _percent(f.service_level2),
                _percent(f.abandon_rate),
                "" if f.asa_s is None else f"{f.asa_s:.1f}",
            )
        )
    return buffer.getvalue()


# ---------------------------------------------------------------- the floor, now


@dataclass(frozen=True)
class AgentNow:
    """One agent as the wallboard shows them."""

    id: str
    name: str
    state: str
    since: datetime | None
    reason: str | None
    queues: list[str]
    calls_today: int
    on_call: bool


@dataclass(frozen=True)
class EscalationNow:
    """An escalation still open (waiting for an expert, or a callback to make), with the
    deadline it is held to and whether that deadline has passed."""

    id: str
    state: str
    specialty: str
    hospital: str | None
    expert_id: str | None
    requested_at: datetime
    age_s: float
    deadline: datetime | None
    overdue: bool


def agents_now(db: Database) -> list[AgentNow]:
    """Every agent not signed out, then the signed-out ones, by id."""
    with db.transaction() as session:
        rows = list(session.scalars(select(RoutingAgent).order_by(RoutingAgent.id)))
        agents = [
            AgentNow(
                id=a.id,
                name=a.name or a.id,
                state=a.state,
                since=a.state_since,
                reason=a.state_reason,
                queues=sorted(a.levels),
                calls_today=a.calls_today,
                on_call=a.offer is not None,
            )
            for a in rows
        ]
    return sorted(agents, key=lambda a: (a.state == "offline", a.id))


def escalations_now(views: Iterable[EscalationView], now: datetime) -> list[EscalationNow]:
    """Open escalations (from :meth:`EscalationService.open_escalations`) with the deadline
    each is held to: an offer against its offer timeout, an expert callback against its
    callback deadline; an accepted one (expert on the call) has none."""
    out: list[EscalationNow] = []
    for e in views:
        state = str(e.state)
        if state == "callback_scheduled":
            deadline = e.callback_deadline
        elif state in ("requested", "offered"):
            deadline = e.offer_deadline
        else:
            deadline = None
        out.append(
            EscalationNow(
                id=e.id,
                state=state,
                specialty=e.specialty,
                hospital=e.hospital,
                expert_id=e.expert_id,
                requested_at=e.requested_at,
                age_s=e.age_s,
                deadline=deadline,
                overdue=deadline is not None and now > deadline,
            )
        )
    return out


def callbacks_waiting(db: Database) -> dict[str, int]:
    """Queue callbacks (callers who asked to be called back) still waiting, per queue."""
    counts: dict[str, int] = {}
    with db.transaction() as session:
        for queue in session.scalars(
            select(RoutingCaller.queue).where(
                RoutingCaller.callback.is_(True), RoutingCaller.status == "waiting"
            )
        ):
            counts[queue] = counts.get(queue, 0) + 1
    return counts
