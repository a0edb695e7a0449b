"""Booking rules: pure functions of the settings, the time and facts the service looked up.

No database and no clock here: the service gathers the facts (the patient's bookings that
day, the patients booked with the contact number, the no-show dates) and the current time,
and these functions say yes or give a :class:`Refusal` with a machine code and a message a
caller can hear in Chinese and English.

Defaults (``booking`` in ``config.yaml``) follow common Chinese booking platforms:

* **horizon**: a visit date can be booked up to ``horizon_days`` days after today; the
  farthest day opens at ``release_time`` (before it, the horizon is one day shorter);
* a slot that has **already started** cannot be booked;
* **per patient per day**: at most ``per_patient_per_day`` active bookings on one visit date;
* **per phone**: one contact number books for at most ``patients_per_phone`` different
  patients with active (upcoming) bookings;
* **no-shows**: ``no_show_limit`` no-shows within ``no_show_window_days`` days block booking
  for ``no_show_block_days`` days from the last of them;
* **cancellation**: allowed until ``cancel_deadline`` (local time) on the day before the
  visit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from ..config import BookingConfig


@dataclass(frozen=True)
class Refusal:
    """Why something was refused: a stable ``code`` for programs, messages for people."""

    code: str
    zh: str
    en: str
    #: values the messages mention (dates as ISO text), for flows and the console
    details: dict[str, str] = field(default_factory=dict)

    def message(self, language: str) -> str:
        """The message in ``language`` (``zh-CN`` or ``en``); Chinese for anything else."""
        return self.en if language == "en" else self.zh


class BookingRefused(Exception):
    """A booking, cancellation or other request was refused; ``refusal`` says why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.code}: {refusal.en}")
        self.refusal = refusal


def parse_hhmm(value: str) -> time:
    """``"08:00"`` -> ``time(8, 0)`` (the settings are validated as ``HH:MM``)."""
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


def _zh_date(day: date) -> str:
    return f"{day.month}月{day.day}日"


def _en_date(day: date) -> str:
    return f"{day.day} {day:%b}"


# --- the booking window --------------------------------------------------------------------


def last_bookable_date(now_local: datetime, cfg: BookingConfig) -> date:
    """The farthest visit date bookable at ``now_local`` (the hotline's local time)."""
    today = now_local.date()
    if now_local.time() >= parse_hhmm(cfg.release_time):
        return today + timedelta(days=cfg.horizon_days)
    return today + timedelta(days=cfg.horizon_days - 1)


def release_moment(visit_date: date, cfg: BookingConfig, tz: tzinfo) -> datetime:
    """When slots of ``visit_date`` open for booking (aware, in ``tz``)."""
    day = visit_date - timedelta(days=cfg.horizon_days)
    return datetime.combine(day, parse_hhmm(cfg.release_time), tzinfo=tz)


def check_window(
    now: datetime, starts_at: datetime, cfg: BookingConfig, tz: tzinfo
) -> Refusal | None:
    """The slot starting at ``starts_at`` is bookable at ``now`` (not started, within the
    horizon, its day released)."""
    if starts_at <= now:
        return Refusal(
            "slot_started",
            "这个时段已经开始或已过，不能预约，请选择其他时段。",
            "That time has already started or passed; please choose another time.",
        )
    now_local = now.astimezone(tz)
    visit = starts_at.astimezone(tz).date()
    if visit <= last_bookable_date(now_local, cfg):
        return None
    opens = release_moment(visit, cfg, tz)
    if opens.date() == now_local.date():
        hhmm = cfg.release_time
        return Refusal(
            "not_yet_released",
            f"该日号源将于今天{hhmm}开放预约，请到时再来电。",
            f"Appointments for that day open today at {hhmm}; please call again then.",
            {"opens_at": opens.isoformat()},
        )
    days = cfg.horizon_days
    return Refusal(
        "too_far_ahead",
        f"目前只能预约{days}天内的号源。",
        f"Appointments can be booked at most {days} days ahead.",
        {"opens_at": opens.isoformat()},
    )


# --- per patient, per phone ----------------------------------------------------------------


def check_per_day(bookings_that_day: int, cfg: BookingConfig) -> Refusal | None:
    """The patient holds ``bookings_that_day`` active bookings on the visit date already."""
    if bookings_that_day < cfg.per_patient_per_day:
        return None
    limit = cfg.per_patient_per_day
    return Refusal(
        "per_day_limit",
        f"同一就诊人每天最多预约{limit}个号，该日已有预约。",
        f"A patient may hold at most {limit} booking(s) per day, and already has one that day.",
        {"limit": str(limit)},
    )


def check_same_slot(already_in_slot: bool) -> Refusal | None:
    """The patient already holds a place in this very slot."""
    if not already_in_slot:
        return None
    return Refusal(
        "already_booked",
        "该就诊人已预约这个时段，无需重复预约。",
        "This patient already has a booking for that time.",
    )


def check_phone(
    other_patients: int, patient_already_on_phone: bool, cfg: BookingConfig
) -> Refusal | None:
    """``other_patients``: distinct *other* patients with active bookings on this contact
    number. A patient already booked with the number may always use it again."""
    if patient_already_on_phone or other_patients < cfg.patients_per_phone:
        return None
    limit = cfg.patients_per_phone
    return Refusal(
        "phone_limit",
        f"同一手机号码最多为{limit}位就诊人预约，请使用就诊人本人的手机号码。",
        f"One phone number may book for at most {limit} patients; "
        "please give the patient's own number.",
        {"limit": str(limit)},
    )


# --- no-shows ------------------------------------------------------------------------------


def no_show_blocked_until(no_shows: Sequence[date], cfg: BookingConfig) -> date | None:
    """The first day the patient may book again, or ``None`` if no block ever started.

    A block starts on a no-show that is the ``no_show_limit``-th within ``no_show_window_days``
    days (counting itself) and lasts ``no_show_block_days`` days from it.
    """
    days = sorted(no_shows)
    window = timedelta(days=cfg.no_show_window_days)
    until: date | None = None
    for index, day in enumerate(days):
        recent = [d for d in days[: index + 1] if d > day - window]
        if len(recent) >= cfg.no_show_limit:
            end = day + timedelta(days=cfg.no_show_block_days)
            until = end if until is None else max(until, end)
    return until


def check_no_show(today: date, no_shows: Sequence[date], cfg: BookingConfig) -> Refusal | None:
    """Booking is blocked while a no-show block lasts."""
    until = no_show_blocked_until(no_shows, cfg)
    if until is None or today >= until:
        return None
    return Refusal(
        "no_show_blocked",
        f"该就诊人{cfg.no_show_window_days}天内爽约{cfg.no_show_limit}次，"
        f"{_zh_date(until)}前暂停预约。如有疑问请转人工服务。",
        f"This patient missed {cfg.no_show_limit} appointments within "
        f"{cfg.no_show_window_days} days, so booking is paused until {_en_date(until)}. "
        "Ask an agent if you have questions.",
        {"until": until.isoformat()},
    )


# --- all booking rules ---------------------------------------------------------------------


@dataclass(frozen=True)
class BookingFacts:
    """What the booking rules look at, gathered by the service in its transaction."""

    now: datetime
    slot_starts_at: datetime
    #: active bookings the patient holds on the visit date
    bookings_that_day: int
    already_in_slot: bool
    #: distinct other patients with active bookings on the contact number
    other_patients_on_phone: int
    patient_already_on_phone: bool
    no_show_dates: Sequence[date] = ()


def check_booking(facts: BookingFacts, cfg: BookingConfig, tz: tzinfo) -> Refusal | None:
    """Every booking rule in a fixed order; the first refusal, or ``None``."""
    today = facts.now.astimezone(tz).date()
    for refusal in (
        check_window(facts.now, facts.slot_starts_at, cfg, tz),
        check_no_show(today, facts.no_show_dates, cfg),
        check_same_slot(facts.already_in_slot),
        check_per_day(facts.bookings_that_day, cfg),
        check_phone(facts.other_patients_on_phone, facts.patient_already_on_phone, cfg),
    ):
        if refusal is not None:
            return refusal
    return None


# --- after booking ------------------------------------------------------------------------


def cancel_deadline(visit_date: date, cfg: BookingConfig, tz: tzinfo) -> datetime:
    """The last moment a booking for ``visit_date`` may be cancelled (the day before)."""
    return datetime.combine(
        visit_date - timedelta(days=1), parse_hhmm(cfg.cancel_deadline), tzinfo=tz
    )


def check_cancel(now: datetime, visit_date: date, cfg: BookingConfig, tz: tzinfo) -> Refusal | None:
    """Cancellation is allowed strictly before the deadline."""
    deadline = cancel_deadline(visit_date, cfg, tz)
    if now < deadline:
        return None
    return Refusal(
        "cancel_too_late",
        f"预约需在就诊前一天{cfg.cancel_deadline}前取消，现在已不能取消。",
        f"Bookings can be cancelled until {cfg.cancel_deadline} the day before the visit; "
        "it is too late now.",
        {"deadline": deadline.isoformat()},
    )


def password_expires_at(visit_date: date, cfg: BookingConfig, tz: tzinfo) -> datetime:
    """A visit password works until the end of the day ``password_valid_days`` after the
    visit (local midnight)."""
    last_day = visit_date + timedelta(days=cfg.password_valid_days)
    return datetime.combine(last_day + timedelta(days=1), time(0, 0), tzinfo=tz)


def cancel_by_text(visit_date: date, cfg: BookingConfig, language: str) -> str:
    """The cancellation deadline as SMS text (``11月30日16:00`` / ``16:00 on 30 Nov``)."""
    day = visit_date - timedelta(days=1)
    if language == "en":
        return f"{cfg.cancel_deadline} on {_en_date(day)}"
    return f"{_zh_date(day)}{cfg.cancel_deadline}"


# --- refusals without values -------------------------------------------------------------

_FIXED: dict[str, tuple[str, str]] = {
    "invalid_name": (
        "姓名格式不正确，请按证件上的姓名提供。",
        "The name is not valid; please give the name as on the identity document.",
    ),
    "invalid_id_number": (
        "证件号码不正确，请核对后重新输入。",
        "The identity number is not valid; please check it and try again.",
    ),
    "invalid_phone": (
        "手机号码不正确，请核对后重新输入。",
        "The phone number is not valid; please check it and try again.",
    ),
    "identity_mismatch": (
        "姓名与证件号码登记的信息不一致，请核对，或转人工服务。",
        "The name does not match the one registered with this identity number; "
        "please check it or ask an agent.",
    ),
    "slot_unknown": (
        "没有找到这个号源，请重新选择。",
        "That appointment time was not found; please choose again.",
    ),
    "slot_full": (
        "抱歉，这个时段已约满，请选择其他时段。",
        "Sorry, that time is fully booked; please choose another.",
    ),
    "clinic_cancelled": (
        "抱歉，该门诊已停诊，请选择其他时段。",
        "Sorry, that clinic has been cancelled; please choose another time.",
    ),
    "backend_unavailable": (
        "医院预约系统暂时无法访问，请稍后再试，或转人工服务。",
        "The hospital's booking system cannot be reached right now; please try again later "
        "or ask an agent.",
    ),
    "unknown_booking": (
        "没有找到这个就诊号码，请核对后重新输入。",
        "No booking has that visit number; please check it and try again.",
    ),
    "not_verified": (
        "请先输入就诊号码和密码进行验证。",
        "Please verify the booking with its visit number and password first.",
    ),
    "not_active": (
        "该预约已就诊、爽约或已取消，不能再办理。",
        "That booking has already been attended, missed or cancelled.",
    ),
    "visit_not_started": (
        "就诊时间还没到，暂不能登记。",
        "The appointment time has not come yet.",
    ),
    "reason_required": (
        "请填写操作原因。",
        "Please give a reason.",
    ),
    "unknown_patient": (
        "没有找到这位就诊人。",
        "No such patient.",
    ),
    "unknown_clinic": (
        "没有找到这个门诊。",
        "No such clinic.",
    ),
}
#: Codes of :func:`refusal`.
FIXED_CODES = tuple(_FIXED)


def refusal(code: str) -> Refusal:
    """The refusal ``code`` with its fixed zh-CN and English messages."""
    zh, en = _FIXED[code]
    return Refusal(code, zh, en)
