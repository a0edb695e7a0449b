"""Fixtures for the booking service tests: a small knowledge base, clinics, the service.

The fake clock stands at Thursday 2026-11-26 09:00 Shanghai time (the ``clock`` fixture).
Passwords are hashed at a low scrypt cost here (``password_hash_cost`` 4) so that tests run
fast; one test checks the production cost separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callcenter.booking.identity import check_char
from callcenter.booking.models import Clinic, Slot
from callcenter.booking.service import BookingRequest, BookingService
from callcenter.booking.sql_backend import SqlBookingBackend
from callcenter.clock import FakeClock
from callcenter.config import BookingConfig, Config
from callcenter.db.engine import Database
from callcenter.db.models import Call
from callcenter.messaging.outbox import Outbox
from knowledge_base.models import Department, Expert, Hospital

TZ = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 11, 26)
#: Parts of fictional test names (名字、证件号码均为虚构).
SURNAMES = "张李王赵钱孙周吴郑冯"
GIVEN = "测演示样例虚构假名甲乙丙丁戊己庚辛壬癸子丑"


def name(n: int) -> str:
    """A fictional name, different for every ``n`` below 4000."""
    return SURNAMES[n % 10] + GIVEN[(n // 10) % 20] + GIVEN[(n // 200) % 20]


def cn_id(seq: int, born: str = "19800101", region: str = "110105") -> str:
    """A valid (checksummed) resident ID number for a fictional test person."""
    body = f"{region}{born}{seq % 1000:03d}"
    return body + check_char(body)


def phone(n: int) -> str:
    """A valid mainland mobile number in a range used for examples."""
    return f"+86138{n:08d}"


def local(day: date, hhmm: str) -> datetime:
    """A Shanghai wall-clock time as an aware datetime."""
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=TZ)


def seed_kb(db: Database) -> None:
    """One hospital with two departments and one expert (all fictional)."""
    now = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    with db.transaction() as tx:
        tx.add(
            Hospital(
                id="h1", name_zh="测试医院", name_en="Test Hospital", aliases=[], updated_at=now
            )
        )
        tx.flush()
        tx.add_all(
            [
                Department(
                    id="h1-card", hospital_id="h1", name_zh="心内科", name_en="Cardiology",
                    updated_at=now,
                ),
                Department(
                    id="h1-derm", hospital_id="h1", name_zh="皮肤科", name_en="Dermatology",
                    updated_at=now,
                ),
            ]
        )  # fmt: skip
        tx.flush()
        tx.add(
            Expert(
                id="e1", name_zh="周演示", name_en="Zhou Yanshi", title_zh="主任医师",
                title_en="Chief Physician", hospital_id="h1", department_id="h1-card",
                updated_at=now,
            )
        )  # fmt: skip


def add_clinic(
    db: Database,
    clinic_id: str,
    day: date,
    slots: Sequence[tuple[str, str, int]] = (("08:00", "09:00", 2),),
    *,
    session: str = "am",
    department: str = "h1-card",
    expert: str | None = None,
    fee: str = "25.00",
) -> list[str]:
    """Insert a clinic with its slots; returns the slot ids (``<clinic>-<HHMM>``)."""
    ids = []
    with db.transaction() as tx:
        tx.add(
            Clinic(
                id=clinic_id,
                hospital_id="h1",
                department_id=department,
                expert_id=expert,
                date=day,
                session=session,
                fee=Decimal(fee),
                status="open",
                is_demo=False,
                updated_at=datetime(2026, 11, 26, 1, 0, tzinfo=UTC),
            )
        )
        tx.flush()
        for start, end, capacity in slots:
            sid = f"{clinic_id}-{start.replace(':', '')}"
            tx.add(
                Slot(
                    id=sid,
                    clinic_id=clinic_id,
                    starts_at=local(day, start),
                    ends_at=local(day, end),
                    capacity=capacity,
                    booked=0,
                    closed=False,
                )
            )
            ids.append(sid)
    return ids


def add_call(db: Database, n: int, caller: str | None = None) -> int:
    """A call row (``calls.id``) for PIN attempts and SMS to point at."""
    with db.transaction() as tx:
        call = Call(
            provider="test",
            provider_call_id=f"CA{n:032d}",
            from_e164=caller,
            language="zh-CN",
            started_at=datetime(2026, 11, 26, 1, 0, tzinfo=UTC),
        )
        tx.add(call)
        tx.flush()
        return call.id


def request(
    slot_id: str,
    n: int = 1,
    *,
    channel: str = "ivr",
    created_by: str = "ivr",
    contact: str | None = None,
    **kw: Any,
) -> BookingRequest:
    """A booking request for fictional patient ``n`` (own name, ID number and phone)."""
    return BookingRequest(
        slot_id=slot_id,
        name=kw.pop("name", name(n)),
        id_type=kw.pop("id_type", "cn_id"),
        id_number=kw.pop("id_number", cn_id(n)),
        contact_phone=contact or phone(n),
        channel=channel,  # type: ignore[arg-type]
        created_by=created_by,
        **kw,
    )


def make_service(db: Database, config: Config, clock: FakeClock, **settings: Any) -> BookingService:
    """The booking service on the SQL backend and the real outbox."""
    merged = {"password_hash_cost": 4, **settings}
    cfg: BookingConfig = config.settings.booking.model_copy(update=merged)
    return BookingService(
        db,
        SqlBookingBackend(clock),
        Outbox.from_config(config, db),
        clock,
        cfg,
        config.secrets.secret_key or "",
        TZ,
    )


@pytest.fixture
def kb(db: Database) -> Database:
    """The test database with the small knowledge base."""
    seed_kb(db)
    return db


@pytest.fixture
def service(kb: Database, config: Config, clock: FakeClock) -> BookingService:
    """The booking service with default rules (low hashing cost)."""
    return make_service(kb, config, clock)


@pytest.fixture
def slot_ids(kb: Database) -> list[str]:
    """Tomorrow morning's general cardiology clinic: 08:00 and 09:00, 2 places each."""
    return add_clinic(
        kb, "c-tomorrow", TODAY + timedelta(days=1), (("08:00", "09:00", 2), ("09:00", "10:00", 2))
    )
