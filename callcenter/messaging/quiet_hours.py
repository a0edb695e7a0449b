"""Quiet hours: when a non-urgent message may not reach a recipient, in their own time zone.

``messaging.quiet_start`` to ``quiet_end`` (local ``HH:MM``, default 21:00-08:00, may span
midnight) in the recipient's time zone: the one zone of the number's region when it has a
single one (a mainland mobile: Asia/Shanghai; +1 212: America/New_York), else
``instance.timezone``. The dispatcher holds non-urgent messages until quiet hours end; the
reminder job moves a reminder's moment there (:mod:`schedulers.reminders`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezone

__all__ = ["quiet_until", "recipient_zone"]


@lru_cache(maxsize=4096)
def recipient_zone(to_e164: str, fallback: str) -> ZoneInfo:
    """The recipient's time zone: the number's only zone when it has one, else ``fallback``."""
    try:
        zones = phone_timezone.time_zones_for_number(phonenumbers.parse(to_e164))
    except phonenumbers.NumberParseException:
        zones = ()
    if len(zones) == 1 and zones[0] != "Etc/Unknown":
        try:
            return ZoneInfo(zones[0])
        except (KeyError, ValueError):
            pass
    return ZoneInfo(fallback)


def _hhmm(text: str) -> clock_time:
    hour, minute = text.split(":")
    return clock_time(int(hour), int(minute))


def quiet_until(now: datetime, zone: ZoneInfo, start: str, end: str) -> datetime | None:
    """When quiet hours end (UTC) if ``now`` falls in them in ``zone``; ``None`` otherwise.

    ``start`` and ``end`` are local ``HH:MM``; the period may span midnight (21:00-08:00).
    Equal times mean no quiet hours.
    """
    begin, finish = _hhmm(start), _hhmm(end)
    if begin == finish:
        return None
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    quiet = begin <= t < finish if begin < finish else t >= begin or t < finish
    if not quiet:
        return None
    day = local.date() if t < finish else local.date() + timedelta(days=1)
    return datetime.combine(day, finish, tzinfo=zone).astimezone(UTC)
