"""Demo data for a hotline anyone can try: fictional residents, clearly marked as demo.

Loading is idempotent: running it twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from .clock import Clock
from .db.engine import Database
from .db.models import Resident

#: Fictional residents (demo). Phone numbers are in ranges used only for examples.
DEMO_RESIDENTS = (
    ("+8613800000001", "zh-CN", "王小明（演示）"),
    ("+8613800000002", "zh-CN", "李秀英（演示）"),
    ("+8613800000003", "en", "Demo Resident (demo)"),
)
#: The number `callcenter call` uses by default: a demo resident.
DEMO_CALLER = DEMO_RESIDENTS[0][0]


@dataclass(frozen=True)
class LoadReport:
    """How many demo rows were added (0 when already loaded)."""

    residents: int


def load_demo(db: Database, clock: Clock) -> LoadReport:
    """Insert the demo data that is not there yet."""
    added = 0
    now = clock.now()
    with db.transaction() as s:
        existing = set(s.scalars(select(Resident.phone_e164)))
        for phone, language, name in DEMO_RESIDENTS:
            if phone in existing:
                continue
            s.add(
                Resident(
                    phone_e164=phone,
                    preferred_language=language,
                    display_name=name,
                    is_demo=True,
                    created_at=now,
                    updated_at=now,
                )
            )
            added += 1
    return LoadReport(residents=added)
