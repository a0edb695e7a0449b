"""Demo schedules: two weeks from today, generated from the demo knowledge base."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from callcenter.booking.models import Clinic
from callcenter.booking.models import Slot as SlotRow
from callcenter.booking.schedules import load_demo_schedules
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from knowledge_base.models import Department, Expert
from tests.booking.conftest import TODAY, TZ, make_service, request
from tests.knowledge_base.demo_db import copy_of, demo_database


@pytest.fixture(scope="module")
def demo_kb(database_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with demo_database(database_template, tmp_path_factory.mktemp("kb")) as url:
        yield url


@pytest.fixture
def database_url(demo_kb: str, tmp_path: Path) -> Iterator[str]:
    with copy_of(demo_kb, tmp_path) as url:
        yield url


def test_demo_schedules(db: Database, clock: FakeClock, config: Config) -> None:
    report = load_demo_schedules(db, clock, TZ)
    assert report.clinics_created > 1000
    assert report.slots_created > 4000
    with db.transaction() as tx:
        days = set(tx.scalars(select(Clinic.date).distinct()))
        assert days == {TODAY + timedelta(days=n) for n in range(15)}
        assert set(tx.scalars(select(Clinic.is_demo).distinct())) == {True}
        # every expert clinic follows the expert's weekly schedule
        experts = {e.id: e for e in tx.scalars(select(Expert))}
        for clinic in tx.scalars(select(Clinic).where(Clinic.expert_id.is_not(None))):
            expert = experts[clinic.expert_id or ""]
            wanted = {"weekday": clinic.date.isoweekday(), "session": clinic.session}
            assert wanted in expert.schedule
            assert clinic.department_id == expert.department_id
            assert clinic.fee in {Decimal("30.00"), Decimal("40.00"), Decimal("60.00")}
        # general clinics: none for 24-hour walk-in departments, none on Sunday for Mon-Sat ones
        emergency = tx.scalars(
            select(Department.id).where(Department.hours_zh.like("%24小时%"))
        ).all()
        assert emergency
        assert not tx.scalar(
            select(func.count())
            .select_from(Clinic)
            .where(Clinic.department_id.in_(emergency), Clinic.expert_id.is_(None))
        )
        fees = set(tx.scalars(select(Clinic.fee).where(Clinic.expert_id.is_(None))))
        assert fees == {Decimal("25.00")}
        first = tx.scalars(select(SlotRow).order_by(SlotRow.starts_at)).first()
        assert first is not None
        assert first.starts_at.astimezone(TZ).hour == 8
    again = load_demo_schedules(db, clock, TZ)
    assert again.changes == 0
    # the next day adds one day at the end
    clock.advance(days=1)
    later = load_demo_schedules(db, clock, TZ)
    assert later.clinics_created > 0
    assert later.clinics_updated == 0
    # and a caller can book from them
    service = make_service(db, config, clock)
    with db.transaction() as tx:
        dept = tx.scalar(select(Department).where(Department.id == "ruijin-cardiology"))
    assert dept is not None
    slots = service.find_slots("ruijin", "ruijin-cardiology")
    assert slots
    receipt = service.book(request(slots[0].id))
    assert receipt.booking.labels["zh-CN"].hospital not in ("", "ruijin")
    assert receipt.booking.labels["zh-CN"].department == "心内科"
