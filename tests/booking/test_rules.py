"""The booking rules, one by one, table-driven, with local times (no database, no clock)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from callcenter.booking import rules
from callcenter.booking.rules import BookingFacts
from callcenter.config import BookingConfig
from tests.booking.conftest import TZ, local

D = date(2026, 11, 26)  # a Thursday
CFG = BookingConfig()


def cfg(**changes: Any) -> BookingConfig:
    return BookingConfig(**changes)


def code(refusal: rules.Refusal | None) -> str | None:
    return None if refusal is None else refusal.code


# --- horizon, release time, started slots -------------------------------------------------

WEEK_AT_10 = {"horizon_days": 7, "release_time": "10:00"}
WINDOW = [
    # now (local), slot start (local), settings, expected
    ("2026-11-26 09:00", "2026-12-10 08:00", {}, None),  # today + 14, released at 08:00
    ("2026-11-26 08:00", "2026-12-10 08:00", {}, None),  # exactly at release
    ("2026-11-26 07:59", "2026-12-10 08:00", {}, "not_yet_released"),
    ("2026-11-26 07:59", "2026-12-09 16:00", {}, None),  # today + 13 is open
    ("2026-11-26 00:00", "2026-12-10 08:00", {}, "not_yet_released"),
    ("2026-11-26 09:00", "2026-12-11 08:00", {}, "too_far_ahead"),
    ("2026-11-26 23:59", "2026-12-11 08:00", {}, "too_far_ahead"),
    ("2026-11-26 09:00", "2026-11-26 08:30", {}, "slot_started"),
    ("2026-11-26 09:00", "2026-11-26 09:00", {}, "slot_started"),
    ("2026-11-26 09:00", "2026-11-26 09:01", {}, None),
    ("2026-11-26 09:00", "2026-11-25 14:00", {}, "slot_started"),
    ("2026-11-26 09:59", "2026-12-03 08:00", WEEK_AT_10, "not_yet_released"),
    ("2026-11-26 10:00", "2026-12-03 08:00", WEEK_AT_10, None),
    ("2026-11-26 10:00", "2026-12-04 08:00", WEEK_AT_10, "too_far_ahead"),
    ("2026-11-26 12:00", "2026-11-27 09:00", {"horizon_days": 1}, None),
    ("2026-11-26 07:00", "2026-11-27 09:00", {"horizon_days": 1}, "not_yet_released"),
    ("2026-11-26 07:00", "2026-11-26 09:00", {"horizon_days": 1}, None),
]  # fmt: skip


def at(text: str) -> datetime:
    day, hhmm = text.split()
    return local(date.fromisoformat(day), hhmm)


@pytest.mark.parametrize(("now", "start", "changes", "expected"), WINDOW)
def test_window(now: str, start: str, changes: dict[str, Any], expected: str | None) -> None:
    assert code(rules.check_window(at(now), at(start), cfg(**changes), TZ)) == expected


def test_window_with_utc_times() -> None:
    # 07:30 in Shanghai is 23:30 UTC the day before; the rule works on local dates
    now = at("2026-11-26 09:00").astimezone(UTC)
    assert code(rules.check_window(now, at("2026-12-10 07:30").astimezone(UTC), CFG, TZ)) is None
    assert code(rules.check_window(now, at("2026-12-11 07:30").astimezone(UTC), CFG, TZ)) == (
        "too_far_ahead"
    )


@pytest.mark.parametrize(
    ("now", "expected"),
    [("2026-11-26 07:59", date(2026, 12, 9)), ("2026-11-26 08:00", date(2026, 12, 10))],
)
def test_last_bookable_date(now: str, expected: date) -> None:
    assert rules.last_bookable_date(at(now), CFG) == expected


def test_release_moment() -> None:
    assert rules.release_moment(date(2026, 12, 10), CFG, TZ) == at("2026-11-26 08:00")


# --- per patient per day, same slot, per phone --------------------------------------------


@pytest.mark.parametrize(
    ("already", "limit", "expected"),
    [
        (0, 1, None),
        (1, 1, "per_day_limit"),
        (1, 2, None),
        (2, 2, "per_day_limit"),
        (5, 2, "per_day_limit"),
    ],
)
def test_per_day(already: int, limit: int, expected: str | None) -> None:
    assert code(rules.check_per_day(already, cfg(per_patient_per_day=limit))) == expected


@pytest.mark.parametrize(("in_slot", "expected"), [(False, None), (True, "already_booked")])
def test_same_slot(in_slot: bool, expected: str | None) -> None:
    assert code(rules.check_same_slot(in_slot)) == expected


@pytest.mark.parametrize(
    ("others", "already_on_phone", "limit", "expected"),
    [
        (0, False, 2, None),
        (1, False, 2, None),
        (2, False, 2, "phone_limit"),
        (2, True, 2, None),  # this patient is one of those already booked with the number
        (3, True, 2, None),
        (0, False, 1, None),
        (1, False, 1, "phone_limit"),
    ],
)
def test_per_phone(others: int, already_on_phone: bool, limit: int, expected: str | None) -> None:
    refusal = rules.check_phone(others, already_on_phone, cfg(patients_per_phone=limit))
    assert code(refusal) == expected


# --- no-shows -----------------------------------------------------------------------------


def days_ago(*offsets: int) -> list[date]:
    return [D - timedelta(days=n) for n in offsets]


NO_SHOWS = [
    # no-show dates, settings, expected block end (None: never blocked)
    ([], {}, None),
    (days_ago(10, 5), {}, None),
    (days_ago(30, 20, 10), {}, D + timedelta(days=80)),
    # the window is the 90 days up to the last no-show: (last - 90 days, last]
    (days_ago(100, 20, 10), {}, None),
    (days_ago(99, 20, 10), {}, D + timedelta(days=80)),
    (days_ago(100, 99, 10), {}, None),
    (days_ago(200, 190, 180), {}, D - timedelta(days=90)),  # block ended already
    (days_ago(3, 2, 1), {"no_show_limit": 2, "no_show_block_days": 30}, D + timedelta(days=29)),
    (days_ago(3), {"no_show_limit": 1, "no_show_block_days": 7}, D + timedelta(days=4)),
    (days_ago(3), {"no_show_limit": 1, "no_show_block_days": 0}, D - timedelta(days=3)),
]


@pytest.mark.parametrize(("dates", "changes", "until"), NO_SHOWS)
def test_no_show_block(dates: list[date], changes: dict[str, Any], until: date | None) -> None:
    settings = cfg(**changes)
    assert rules.no_show_blocked_until(dates, settings) == until
    refusal = rules.check_no_show(D, dates, settings)
    blocked = until is not None and until > D
    assert code(refusal) == ("no_show_blocked" if blocked else None)
    if refusal is not None and until is not None:
        assert refusal.details["until"] == until.isoformat()
        assert f"{until.month}月{until.day}日" in refusal.zh


def test_no_show_block_lifts_on_its_last_day() -> None:
    dates = days_ago(30, 20, 10)
    end = D + timedelta(days=80)
    assert rules.check_no_show(end - timedelta(days=1), dates, CFG) is not None
    assert rules.check_no_show(end, dates, CFG) is None


# --- cancellation, password expiry --------------------------------------------------------

CANCEL = [
    # now (local), visit date, settings, expected
    ("2026-11-26 09:00", "2026-11-27", {}, None),
    ("2026-11-26 15:59", "2026-11-27", {}, None),
    ("2026-11-26 16:00", "2026-11-27", {}, "cancel_too_late"),
    ("2026-11-26 23:00", "2026-11-27", {}, "cancel_too_late"),
    ("2026-11-27 07:00", "2026-11-27", {}, "cancel_too_late"),
    ("2026-11-26 16:00", "2026-11-28", {}, None),
    ("2026-11-26 11:59", "2026-11-27", {"cancel_deadline": "12:00"}, None),
    ("2026-11-26 12:00", "2026-11-27", {"cancel_deadline": "12:00"}, "cancel_too_late"),
]


@pytest.mark.parametrize(("now", "visit", "changes", "expected"), CANCEL)
def test_cancel_deadline(
    now: str, visit: str, changes: dict[str, Any], expected: str | None
) -> None:
    refusal = rules.check_cancel(at(now), date.fromisoformat(visit), cfg(**changes), TZ)
    assert code(refusal) == expected


def test_cancel_by_text() -> None:
    assert rules.cancel_by_text(date(2026, 12, 1), CFG, "zh-CN") == "11月30日16:00"
    assert rules.cancel_by_text(date(2026, 12, 1), CFG, "en") == "16:00 on 30 Nov"


@pytest.mark.parametrize(
    ("valid_days", "expires"),
    [(0, "2026-11-28 00:00"), (1, "2026-11-29 00:00"), (3, "2026-12-01 00:00")],
)
def test_password_expiry(valid_days: int, expires: str) -> None:
    got = rules.password_expires_at(date(2026, 11, 27), cfg(password_valid_days=valid_days), TZ)
    assert got == at(expires)


# --- all together -------------------------------------------------------------------------

FACTS = {
    "now": at("2026-11-26 09:00"),
    "slot_starts_at": at("2026-11-27 08:00"),
    "bookings_that_day": 0,
    "already_in_slot": False,
    "other_patients_on_phone": 0,
    "patient_already_on_phone": False,
    "no_show_dates": (),
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"slot_starts_at": at("2026-11-26 08:00"), "bookings_that_day": 1}, "slot_started"),
        ({"no_show_dates": days_ago(3, 2, 1), "bookings_that_day": 1}, "no_show_blocked"),
        ({"already_in_slot": True, "bookings_that_day": 1}, "already_booked"),
        ({"bookings_that_day": 1, "other_patients_on_phone": 5}, "per_day_limit"),
        ({"other_patients_on_phone": 2}, "phone_limit"),
    ],
)
def test_check_booking_order(changes: dict[str, Any], expected: str | None) -> None:
    facts = BookingFacts(**{**FACTS, **changes})
    assert code(rules.check_booking(facts, CFG, TZ)) == expected


_CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_refusal_speaks_both_languages() -> None:
    made = [rules.refusal(c) for c in rules.FIXED_CODES] + [
        rules.check_window(at("2026-11-26 09:00"), at("2026-11-26 08:00"), CFG, TZ),
        rules.check_window(at("2026-11-26 07:00"), at("2026-12-10 08:00"), CFG, TZ),
        rules.check_window(at("2026-11-26 09:00"), at("2026-12-20 08:00"), CFG, TZ),
        rules.check_per_day(1, CFG),
        rules.check_same_slot(True),
        rules.check_phone(2, False, CFG),
        rules.check_no_show(D, days_ago(3, 2, 1), CFG),
        rules.check_cancel(at("2026-11-26 17:00"), date(2026, 11, 27), CFG, TZ),
    ]
    codes = set()
    for refusal in made:
        assert refusal is not None
        assert _CJK.search(refusal.zh), refusal.code
        assert refusal.en, refusal.code
        assert not _CJK.search(refusal.en), refusal.code
        assert refusal.message("en") == refusal.en
        assert refusal.message("zh-CN") == refusal.zh
        assert re.fullmatch(r"[a-z_]+", refusal.code)
        codes.add(refusal.code)
    assert len(codes) == len(made)
