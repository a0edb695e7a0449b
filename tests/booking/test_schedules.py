"""Schedule import (YAML and CSV): all or nothing, file/row/field named, idempotent, and
careful with places already booked."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from callcenter.booking.models import Clinic
from callcenter.booking.models import Slot as SlotRow
from callcenter.booking.schedules import ScheduleImportError, import_schedules
from callcenter.booking.service import BookingService
from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from tests.booking.conftest import TZ, request

GOOD = """\
# two clinics of the test hospital (fictional)
clinics:
  - id: h1-card-20261201-am
    hospital: h1
    department: h1-card
    date: 2026-12-01
    session: am
    fee: "25.00"
    slots:
      - {start: "08:00", end: "09:00", capacity: 6}
      - {start: "09:00", end: "10:00", capacity: 6}
  - id: e1-20261202-pm
    hospital: h1
    department: h1-card
    expert: e1
    date: "2026-12-02"
    session: pm
    fee: 60
    slots:
      - {start: "13:30", end: "14:30", capacity: 3}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def counts(db: Database) -> tuple[int, int]:
    with db.transaction() as tx:
        return (
            int(tx.scalar(select(func.count()).select_from(Clinic)) or 0),
            int(tx.scalar(select(func.count()).select_from(SlotRow)) or 0),
        )


def test_yaml_import_and_reimport(kb: Database, clock: FakeClock, tmp_path: Path) -> None:
    path = write(tmp_path, "schedules.yaml", GOOD)
    report = import_schedules(kb, path, clock=clock, tz=TZ)
    assert (report.clinics_created, report.slots_created) == (2, 3)
    with kb.transaction() as tx:
        slot = tx.get(SlotRow, "e1-20261202-pm-1330")
        clinic = tx.get(Clinic, "e1-20261202-pm")
        assert slot is not None
        assert clinic is not None
        assert slot.starts_at == datetime(2026, 12, 2, 5, 30, tzinfo=UTC)
        assert (slot.capacity, slot.booked, slot.closed) == (3, 0, False)
        assert (clinic.expert_id, str(clinic.fee), clinic.status) == ("e1", "60.00", "open")
    again = import_schedules(kb, path, clock=clock, tz=TZ)
    assert again.changes == 0
    assert again.clinics_unchanged == 2
    changed = write(tmp_path, "schedules.yaml", GOOD.replace("capacity: 3", "capacity: 5"))
    report = import_schedules(kb, changed, clock=clock, tz=TZ)
    assert (report.clinics_updated, report.slots_updated) == (1, 1)
    assert "clinics: 0 created, 1 updated, 1 unchanged" in report.summary()


def test_csv_import(kb: Database, clock: FakeClock, tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    write(
        folder,
        "clinics.csv",
        """\
        id,hospital,department,expert,date,session,fee
        c1,h1,h1-derm,,2026-12-01,am,25.00
        c2,h1,h1-card,e1,2026-12-01,evening,
        """,
    )
    write(
        folder,
        "slots.csv",
        """\
        clinic,start,end,capacity
        c1,08:00,08:30,4
        c1,08:30,09:00,4
        c2,18:00,19:00,2
        """,
    )
    report = import_schedules(kb, folder, clock=clock, tz=TZ)
    assert (report.clinics_created, report.slots_created) == (2, 3)
    with kb.transaction() as tx:
        c2 = tx.get(Clinic, "c2")
        assert c2 is not None
        assert c2.fee is None
        assert c2.session == "evening"
        assert tx.get(SlotRow, "c1-0830") is not None


SLOT_1330 = '      - {start: "13:30", end: "14:30", capacity: 3}\n'
BAD = [
    # file name, (text replaced, by), (row, field, words in the message)
    ("a.yaml", ("session: pm", "session: night"), (2, "session", "not one of am, pm")),
    ("b.yaml", ("hospital: h1\n    department: h1-card\n    date: 2026", "hospital: h9\n"
                "    department: h1-card\n    date: 2026"), (1, "hospital", "no hospital 'h9'")),
    ("c.yaml", ('date: "2026-12-02"', 'date: "2026-02-30"'), (2, "date", "not a date")),
    ("d.yaml", ("capacity: 3", "capacity: -1"), (2, "slots[1].capacity", "whole number")),
    ("e.yaml", ('end: "14:30"', 'end: "13:00"'), (2, "slots[1].end", "after start")),
    ("f.yaml", ('{start: "09:00", end: "10:00"', '{start: "08:00", end: "10:00"'),
     (1, "slots[2].start", "two slots start at 08:00")),
    ("g.yaml", ("id: e1-20261202-pm", "id: h1-card-20261201-am"), (2, "id", "already given")),
    ("h.yaml", ("expert: e1", "expert: nobody"), (2, "expert", "no expert 'nobody'")),
    ("i.yaml", ("department: h1-card\n    expert: e1", "department: h1-derm\n    expert: e1"),
     (2, "expert", "is in 'h1-card', not 'h1-derm'")),
    ("j.yaml", ('fee: "25.00"', 'fee: "25.001"'), (1, "fee", "2 decimal places")),
    ("k.yaml", ("    session: am\n", "    session: am\n    room: 12\n"), (1, "room", "unknown")),
    ("l.yaml", ('start: "13:30"', 'start: "25:00"'), (2, "slots[1].start", "time of day")),
    ("m.yaml", None, (None, None, "not valid YAML")),
    ("n.yaml", None, (None, None, "one top-level key")),
    ("o.yaml", ("    slots:\n" + SLOT_1330, ""), (2, "slots", "at least one slot")),
]  # fmt: skip
WHOLE = {"m.yaml": "clinics: [\n", "n.yaml": "hospitals: []\n"}


@pytest.mark.parametrize(("name", "change", "where"), BAD, ids=[b[0] for b in BAD])
def test_bad_file_is_rejected_whole(
    kb: Database,
    clock: FakeClock,
    tmp_path: Path,
    name: str,
    change: tuple[str, str] | None,
    where: tuple[int | None, str | None, str],
) -> None:
    content = WHOLE[name] if change is None else GOOD.replace(*change)
    assert content != GOOD
    path = write(tmp_path, name, content)
    with pytest.raises(ScheduleImportError) as exc:
        import_schedules(kb, path, clock=clock, tz=TZ)
    row, field, words = where
    matching = [
        p
        for p in exc.value.problems
        if p.file == str(path) and p.row == row and p.field == field and words in p.message
    ]
    assert matching, [str(p) for p in exc.value.problems]
    assert "nothing was changed" in str(exc.value)
    assert counts(kb) == (0, 0)  # the good clinic of the same file was not imported either


@pytest.mark.parametrize(
    ("clinics", "slots", "file", "row", "field"),
    [
        (
            "id,hospital,department,date,session\nc1,h1,h1-card,2026-12-01,am\n",
            "clinic,start,end,capacity\nc9,08:00,09:00,2\n",
            "slots.csv",
            1,
            "clinic",
        ),
        (
            "id,hospital,department,date,session\nc1,h1,h1-card,2026-12-01,am\n",
            "clinic,start,end,capacity\n",
            "clinics.csv",
            1,
            "slots",
        ),
        (
            "id,hospital,department,date,session,colour\nc1,h1,h1-card,2026-12-01,am,red\n",
            "clinic,start,end,capacity\nc1,08:00,09:00,2\n",
            "clinics.csv",
            0,
            "colour",
        ),
        (
            "id,hospital,department,date,session\nc1,h1,h1-card,2026-12-01,am\nc2,h1\n",
            "clinic,start,end,capacity\nc1,08:00,09:00,2\n",
            "clinics.csv",
            2,
            None,
        ),
        (
            "id,hospital,department,date,session\nc1,h1,h1-card,2026-12-01,am\n",
            "clinic,start,end,capacity\nc1,08:00,09:00,lots\n",
            "slots.csv",
            1,
            "capacity",
        ),
    ],
)
def test_bad_csv_is_rejected_whole(
    kb: Database,
    clock: FakeClock,
    tmp_path: Path,
    clinics: str,
    slots: str,
    file: str,
    row: int,
    field: str | None,
) -> None:
    (tmp_path / "clinics.csv").write_text(clinics, encoding="utf-8")
    (tmp_path / "slots.csv").write_text(slots, encoding="utf-8")
    with pytest.raises(ScheduleImportError) as exc:
        import_schedules(kb, tmp_path, clock=clock, tz=TZ)
    assert any(
        p.file == str(tmp_path / file) and p.row == row and p.field == field
        for p in exc.value.problems
    ), [str(p) for p in exc.value.problems]
    assert counts(kb) == (0, 0)


def test_missing_path_and_unknown_files(kb: Database, clock: FakeClock, tmp_path: Path) -> None:
    with pytest.raises(ScheduleImportError, match="no such file"):
        import_schedules(kb, tmp_path / "nope.yaml", clock=clock, tz=TZ)
    write(tmp_path, "rota.csv", "a,b\n1,2\n")
    with pytest.raises(ScheduleImportError, match="unknown CSV file name"):
        import_schedules(kb, tmp_path, clock=clock, tz=TZ)


def test_reimport_respects_booked_places(
    kb: Database, clock: FakeClock, tmp_path: Path, service: BookingService
) -> None:
    path = write(tmp_path, "s.yaml", GOOD)
    import_schedules(kb, path, clock=clock, tz=TZ)
    clock.set(datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    service.book(request("e1-20261202-pm-1330", 1))
    service.book(request("e1-20261202-pm-1330", 2))
    cases = [
        (GOOD.replace("capacity: 3", "capacity: 1"), "slots[1].capacity", "below the 2 place(s)"),
        (GOOD.replace('date: "2026-12-02"', 'date: "2026-12-03"'), "date", "2 place(s) are booked"),
        (GOOD.replace('"13:30", end: "14:30"', '"14:00", end: "15:00"'), "slots", "is missing"),
    ]  # fmt: skip
    for text, field, words in cases:
        bad = write(tmp_path, "s.yaml", text)
        with pytest.raises(ScheduleImportError) as exc:
            import_schedules(kb, bad, clock=clock, tz=TZ)
        assert any(p.field == field and words in p.message for p in exc.value.problems), [
            str(p) for p in exc.value.problems
        ]
    # capacity may go down to the booked places, and an unbooked slot may go
    fine = GOOD.replace("capacity: 3", "capacity: 2").replace(
        '      - {start: "09:00", end: "10:00", capacity: 6}\n', ""
    )
    report = import_schedules(kb, write(tmp_path, "s.yaml", fine), clock=clock, tz=TZ)
    assert (report.slots_updated, report.slots_deleted) == (1, 1)
    with kb.transaction() as tx:
        slot = tx.get(SlotRow, "e1-20261202-pm-1330")
        assert slot is not None
        assert (slot.capacity, slot.booked) == (2, 2)


def test_day_boundaries_are_local(kb: Database, clock: FakeClock, tmp_path: Path) -> None:
    text = GOOD.replace('start: "08:00", end: "09:00"', 'start: "07:30", end: "08:00"')
    import_schedules(kb, write(tmp_path, "s.yaml", text), clock=clock, tz=TZ)
    with kb.transaction() as tx:
        slot = tx.get(SlotRow, "h1-card-20261201-am-0730")
        assert slot is not None
        assert slot.starts_at == datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
        assert slot.starts_at.astimezone(TZ).date() == datetime(2026, 12, 1).date()
    assert timedelta(0) == timedelta(0)
