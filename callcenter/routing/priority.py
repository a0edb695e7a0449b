"""Caller priority rules: who waits less, decided when a caller is enqueued.

Red-flag callers are always first (the router orders them before any priority). Among the
others a caller gets the highest priority of the rules they match (``routing.priority``):

* ``elderly``: the caller is at least ``elderly_age`` years old (default 75) on the day of the
  call, by the resident ID number entered in the menu (its birth-date part) or a known
  resident's birth date;
* ``repeat_caller``: the same number already called earlier the same local day.

A rule with priority 0 is off. The priority the IVR asked for (a menu's own priority) is kept
when higher. Pure: no database, no clock; the routing service gathers the facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

from ..ivr.validators import id_check_char


class PriorityRules(Protocol):
    """The settings the rules read (``routing.priority`` in the configuration)."""

    elderly_age: int
    elderly: int
    repeat_caller: int


@dataclass(frozen=True)
class CallerFacts:
    """What is known about a caller when they are enqueued (all optional)."""

    #: an 18-character resident ID number the caller entered in the menu
    id_number: str | None = None
    #: a known resident's birth date
    birth_date: date | None = None
    #: calls from the same number earlier the same local day
    earlier_calls_today: int = 0
    #: the caller's age in whole years, as the call service recorded it when the call was
    #: enqueued (from an ID number keyed in the menu, which is not kept)
    age_years: int | None = None


@dataclass(frozen=True)
class Priority:
    """The priority decided and the names of the rules that gave it (for the log)."""

    value: int
    reasons: tuple[str, ...] = ()


def birth_date_from_id(id_number: str) -> date | None:
    """The birth date in a valid 18-character resident ID number; ``None`` if not valid."""
    text = (id_number or "").strip().upper()
    if len(text) != 18 or not text[:17].isascii() or not text[:17].isdigit():
        return None
    if id_check_char(text[:17]) != text[17]:
        return None
    try:
        return date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return None


def age_on(born: date, day: date) -> int:
    """Completed years of someone born on ``born`` on ``day`` (29 February counts from 1 March
    in other years)."""
    years = day.year - born.year
    if (day.month, day.day) < (born.month, born.day):
        years -= 1
    return years


def caller_priority(
    rules: PriorityRules, facts: CallerFacts, today: date, asked: int = 0
) -> Priority:
    """The priority of a caller with ``facts`` on local day ``today`` (``asked``: what the
    IVR asked for)."""
    matched: list[tuple[int, str]] = []
    born = facts.birth_date
    if born is None and facts.id_number:
        born = birth_date_from_id(facts.id_number)
    if born is not None and born <= today:
        age: int | None = age_on(born, today)
    else:
        age = facts.age_years
    old_enough = age is not None and age >= rules.elderly_age
    if rules.elderly > 0 and old_enough:
        matched.append((rules.elderly, "elderly"))
    if rules.repeat_caller > 0 and facts.earlier_calls_today > 0:
        matched.append((rules.repeat_caller, "repeat_caller"))
    best = max([asked, *(value for value, _ in matched)])
    reasons = tuple(name for value, name in matched if value == best and value > asked)
    return Priority(best, reasons)
