"""Supervisor figures: daily report per queue and local day, hourly series, CSV for Excel."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agents_console.reports import (
    CSV_HEADER,
    DailyRow,
    Figures,
    daily_report,
    hourly_series,
    report_csv,
)
from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from callcenter.routing.models import RoutingCaller

SHANGHAI = ZoneInfo("Asia/Shanghai")
QUEUES = ("general", "info", "booking", "urgent")


def _caller(
    db: Database,
    call_id: str,
    queue: str,
    enqueued_at: datetime,
    *,
    answered_after: float | None = None,
    abandoned_after: float | None = None,
) -> None:
    status = "waiting"
    answered_at = abandoned_at = None
    if answered_after is not None:
        status, answered_at = "answered", enqueued_at + timedelta(seconds=answered_after)
    elif abandoned_after is not None:
        status, abandoned_at = "abandoned", enqueued_at + timedelta(seconds=abandoned_after)
    with db.transaction() as session:
        session.add(
            RoutingCaller(
                id=call_id,
                queue=queue,
                enqueued_at=enqueued_at,
                status=status,
                answered_at=answered_at,
                abandoned_at=abandoned_at,
                tried=[],
            )
        )


def _row(rows: list[DailyRow], day: date, queue: str) -> Figures:
    (found,) = [r.figures for r in rows if r.day == day and r.queue == queue]
    return found


def test_the_service_own_rows_give_the_days_figures(services: Services, clock: FakeClock) -> None:
    routing = services.routing
    routing.agent_sign_in("a1", levels={"general": 0})
    routing.enqueue_caller("CA-answered", "general")
    clock.advance(12)
    (offer,) = routing.dispatch()
    assert routing.answer(offer)
    routing.enqueue_caller("CA-left", "general")
    clock.advance(50)
    assert routing.caller_left("CA-left")

    rows = daily_report(
        services.db,
        date(2026, 11, 26),
        date(2026, 11, 26),
        tz=SHANGHAI,
        target_s=20,
        queues=QUEUES,
    )
    general = _row(rows, date(2026, 11, 26), "general")
    assert (general.calls, general.answered, general.answered_in_target) == (2, 1, 1)
    assert (general.abandoned, general.abandoned_after_short) == (1, 1)
    assert general.asa_s == pytest.approx(12)
    assert general.service_level == 1.0
    assert general.service_level2 == 0.5
    assert [r.queue for r in rows] == list(QUEUES)


def test_sl_sl2_asa_and_abandonment_follow_the_asterisk_formulas(services: Services) -> None:
    db = services.db
    t0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    _caller(db, "c1", "general", t0, answered_after=10)
    _caller(db, "c2", "general", t0, answered_after=20)  # exactly the target: in target
    _caller(db, "c3", "general", t0, answered_after=40)
    _caller(db, "c4", "general", t0, abandoned_after=5)  # changed their mind at once
    _caller(db, "c5", "general", t0, abandoned_after=45)
    _caller(db, "c6", "general", t0)  # still waiting: a call, not yet an outcome
    figs = _row(
        daily_report(
            db, date(2026, 11, 26), date(2026, 11, 26), tz=SHANGHAI, target_s=20, queues=QUEUES
        ),
        date(2026, 11, 26),
        "general",
    )
    assert figs.calls == 6
    assert (figs.answered, figs.answered_in_target, figs.abandoned) == (3, 2, 2)
    assert figs.abandoned_after_short == 1
    assert figs.service_level == pytest.approx(2 / 3)
    assert figs.service_level2 == pytest.approx(2 / 5)
    assert figs.abandon_rate == pytest.approx(2 / 5)
    assert figs.asa_s == pytest.approx((10 + 20 + 40) / 3)


def test_days_are_local_days_and_empty_days_are_listed(services: Services) -> None:
    db = services.db
    # 23:30 and 00:10 Shanghai time: either side of local midnight, same UTC day.
    _caller(db, "late", "info", datetime(2026, 11, 26, 15, 30, tzinfo=UTC), answered_after=3)
    _caller(db, "early", "info", datetime(2026, 11, 26, 16, 10, tzinfo=UTC), answered_after=3)
    rows = daily_report(
        db, date(2026, 11, 25), date(2026, 11, 27), tz=SHANGHAI, target_s=20, queues=QUEUES
    )
    assert len(rows) == 3 * len(QUEUES)
    assert _row(rows, date(2026, 11, 25), "info").calls == 0
    assert _row(rows, date(2026, 11, 26), "info").calls == 1
    assert _row(rows, date(2026, 11, 27), "info").calls == 1
    empty = _row(rows, date(2026, 11, 25), "info")
    assert (empty.service_level, empty.service_level2, empty.asa_s) == (None, None, None)


def test_a_queue_no_longer_configured_still_appears(services: Services) -> None:
    t0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    _caller(services.db, "old", "retired-queue", t0, answered_after=1)
    rows = daily_report(
        services.db,
        date(2026, 11, 26),
        date(2026, 11, 26),
        tz=SHANGHAI,
        target_s=20,
        queues=QUEUES,
    )
    assert [r.queue for r in rows] == [*QUEUES, "retired-queue"]


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (date(2026, 11, 26), date(2026, 11, 25), "before the first day"),
        (date(2025, 1, 1), date(2026, 11, 26), "at most 366 days"),
    ],
)
def test_bad_periods_are_refused(services: Services, first: date, last: date, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        daily_report(services.db, first, last, tz=SHANGHAI, target_s=20, queues=QUEUES)


def test_hourly_series_buckets_the_last_hours(services: Services) -> None:
    db = services.db
    now = datetime(2026, 11, 26, 5, 25, tzinfo=UTC)
    _caller(db, "h5a", "general", datetime(2026, 11, 26, 5, 1, tzinfo=UTC), answered_after=5)
    _caller(db, "h5b", "general", datetime(2026, 11, 26, 5, 2, tzinfo=UTC), abandoned_after=60)
    _caller(db, "h3", "general", datetime(2026, 11, 26, 3, 59, tzinfo=UTC), answered_after=30)
    _caller(db, "too-old", "general", datetime(2026, 11, 26, 1, 59, tzinfo=UTC))
    (general, info) = hourly_series(db, now, hours=4, target_s=20, queues=("general", "info"))
    assert general.starts == [datetime(2026, 11, 26, h, 0, tzinfo=UTC) for h in (2, 3, 4, 5)]
    assert general.calls == [0, 1, 0, 2]
    assert general.answered == [0, 1, 0, 1]
    assert general.abandoned == [0, 0, 0, 1]
    assert general.service_level == [None, 0.0, None, 1.0]
    assert info.calls == [0, 0, 0, 0]


def test_csv_opens_in_excel_with_chinese_headers(services: Services) -> None:
    t0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    _caller(services.db, "c1", "general", t0, answered_after=10)
    _caller(services.db, "c2", "general", t0, abandoned_after=40)
    rows = daily_report(
        services.db,
        date(2026, 11, 26),
        date(2026, 11, 26),
        tz=SHANGHAI,
        target_s=20,
        queues=("general", "info"),
    )
    text = report_csv(rows)
    data = text.encode("utf-8")
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel looks for
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert tuple(table[0]) == CSV_HEADER
    assert table[0][0] == "日期 date"
    assert table[1] == [
        "2026-11-26",
        "general",
        "2",
        "1",
        "1",
        "1",
        "1",
        "100.0",
        "50.0",
        "50.0",
        "10.0",
    ]
    assert table[2] == ["2026-11-26", "info", "0", "0", "0", "0", "0", "", "", "", ""]
    assert "\r\n" in text
