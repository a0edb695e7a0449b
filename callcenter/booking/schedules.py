"""Clinic schedules (号源): import from YAML or CSV, all or nothing; demo schedules.

:func:`import_schedules` reads one file or every ``*.yaml`` / ``*.yml`` / ``*.csv`` of a
directory, checks everything (types, times, references to hospitals, departments and
experts of the knowledge base, duplicates, what existing bookings need), and only then
writes, in one transaction. A bad file is rejected whole with :class:`ScheduleImportError`
naming the file, row and field of every problem. Ids are stable keys: re-importing the same
file changes nothing; a changed file updates clinics and slots in place without touching the
places already booked. The formats are documented in ``callcenter/booking/README.md``.

:func:`load_demo_schedules` generates two weeks (``booking.horizon_days`` + 1 days) of demo
clinics from today, from the demo experts' weekly schedules plus general clinics for every
department that takes appointments; it is idempotent and marks the clinics ``is_demo``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from knowledge_base import models as kb

from ..clock import Clock
from ..db.engine import Database
from ..db.models import Base
from ..imports import ImportRejected, Problem
from . import models as m

SESSIONS = m.SESSIONS
MAX_CAPACITY = 10_000
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_HHMM = re.compile(r"([01]?\d|2[0-3]):[0-5]\d")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe YAML loader (libyaml's when available), dates left as text: an impossible
    date such as 2026-02-30 is then reported on its row instead of failing the parser."""


_Loader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)
_YAML_LOADER: Any = _Loader
_CHUNK = 500

CLINIC_FIELDS = ("id", "hospital", "department", "expert", "date", "session", "fee", "slots")
SLOT_FIELDS = ("id", "start", "end", "capacity")
CLINICS_CSV = ("id", "hospital", "department", "expert", "date", "session", "fee")
SLOTS_CSV = ("clinic", "id", "start", "end", "capacity")


class ScheduleImportError(ImportRejected):
    """A schedule import was rejected whole; ``problems`` lists every problem found, in file
    and row order."""

    headline = "schedule import rejected, nothing was changed:"

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(sorted(problems, key=lambda p: (p.file, p.row or 0)))


@dataclass
class ScheduleReport:
    """What an import did."""

    files: list[str] = field(default_factory=list)
    clinics_created: int = 0
    clinics_updated: int = 0
    clinics_unchanged: int = 0
    slots_created: int = 0
    slots_updated: int = 0
    slots_deleted: int = 0

    @property
    def changes(self) -> int:
        """Rows created, updated or deleted (0 when the data was already there)."""
        return (
            self.clinics_created
            + self.clinics_updated
            + self.slots_created
            + self.slots_updated
            + self.slots_deleted
        )

    def summary(self) -> str:
        """Two lines for the command line."""
        return (
            f"clinics: {self.clinics_created} created, {self.clinics_updated} updated, "
            f"{self.clinics_unchanged} unchanged\n"
            f"slots: {self.slots_created} created, {self.slots_updated} updated, "
            f"{self.slots_deleted} deleted"
        )


# --- records -------------------------------------------------------------------------------


@dataclass
class _Where:
    file: str
    row: int
    line: int | None
    prefix: str = ""


@dataclass
class _SlotRec:
    where: _Where
    data: dict[str, Any]
    clinic: str | None = None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class _ClinicRec:
    where: _Where
    data: dict[str, Any]
    slots: list[_SlotRec] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    is_demo: bool = False
    #: a clinics.csv row (its slots come from slots.csv)
    from_csv: bool = False


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: _Where | str, fld: str | None, message: str) -> None:
        if isinstance(where, str):
            self.problems.append(Problem(where, None, fld, message))
            return
        name = f"{where.prefix}{fld}" if fld else (where.prefix.rstrip(".") or None)
        self.problems.append(Problem(where.file, where.row, name, message, where.line))


# --- reading -------------------------------------------------------------------------------


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in (".yaml", ".yml", ".csv")
        )
    return [path]


def _read_yaml(path: Path, name: str, out: _Collector) -> list[_ClinicRec]:
    try:
        text = path.read_text(encoding="utf-8-sig")
        loader = _YAML_LOADER(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        out.add(name, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        out.add(name, None, f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}")
        return []
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) != {"clinics"}:
        out.add(name, None, "expected one top-level key, clinics: [...]")
        return []
    items = data["clinics"]
    if not isinstance(items, list):
        out.add(name, "clinics", "must be a list of clinics")
        return []
    lines: list[int] = []
    if isinstance(node, yaml.MappingNode):
        for _key, value in node.value:
            if isinstance(value, yaml.SequenceNode):
                lines = [n.start_mark.line + 1 for n in value.value]
    records: list[_ClinicRec] = []
    for index, item in enumerate(items, start=1):
        cwhere = _Where(name, index, lines[index - 1] if index - 1 < len(lines) else None)
        if not isinstance(item, dict):
            out.add(cwhere, None, "a clinic must be a mapping of fields")
            continue
        data_item = dict(item)
        raw_slots = data_item.pop("slots", None)
        rec = _ClinicRec(cwhere, data_item)
        if not isinstance(raw_slots, list) or not raw_slots:
            out.add(cwhere, "slots", "a clinic needs a list of at least one slot")
        else:
            for number, raw in enumerate(raw_slots, start=1):
                swhere = _Where(name, index, cwhere.line, f"slots[{number}].")
                if not isinstance(raw, dict):
                    out.add(swhere, None, "a slot must be a mapping of start, end, capacity")
                    continue
                rec.slots.append(_SlotRec(swhere, dict(raw)))
        records.append(rec)
    return records


def _read_csv(path: Path, name: str, out: _Collector) -> tuple[list[_ClinicRec], list[_SlotRec]]:
    stem = path.stem
    columns: tuple[str, ...]
    required: tuple[str, ...]
    if stem == "clinics":
        columns, required = CLINICS_CSV, ("id", "hospital", "department", "date", "session")
    elif stem == "slots":
        columns, required = SLOTS_CSV, ("clinic", "start", "end", "capacity")
    else:
        out.add(name, None, "unknown CSV file name (known: clinics.csv, slots.csv)")
        return [], []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        out.add(name, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return [], []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        out.add(name, None, f"not valid CSV: {exc}")
        return [], []
    if header is None:
        return [], []
    header = [h.strip() for h in header]
    before = len(out.problems)
    head = _Where(name, 0, 1)
    for column in header:
        if column not in columns:
            out.add(head, column, "unknown column")
    for column in required:
        if column not in header:
            out.add(head, column, "required column is missing")
    if len(set(header)) != len(header):
        out.add(head, None, "a column appears twice in the header")
    if len(out.problems) > before:
        return [], []
    clinics: list[_ClinicRec] = []
    slots: list[_SlotRec] = []
    row = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.add(_Where(name, row + 1, line), None, f"not valid CSV: {exc}")
            break
        row += 1
        if not any(c.strip() for c in cells):
            continue
        where = _Where(name, row, line)
        if len(cells) != len(header):
            out.add(where, None, f"has {len(cells)} cells, the header has {len(header)}")
            continue
        data = {
            col: (cell if cell.strip() else None) for col, cell in zip(header, cells, strict=True)
        }
        if stem == "clinics":
            clinics.append(_ClinicRec(where, data, from_csv=True))
        else:
            clinic = data.pop("clinic", None)
            slots.append(_SlotRec(where, data, clinic=clinic))
    return clinics, slots


# --- checking ------------------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _id(value: Any, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise _Bad("required")
        return None
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise _Bad(f"{value!r} is not a valid id (letters, digits, '.', '_', '-'; at most 100)")
    return value


def _date(value: Any) -> date:
    if value is None or value == "":
        raise _Bad("required")
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _Bad(f"{value!r} is not a date (YYYY-MM-DD)")


def _session(value: Any) -> str:
    if value is None or value == "":
        raise _Bad("required")
    if value not in SESSIONS:
        raise _Bad(f"{value!r} is not one of {', '.join(SESSIONS)}")
    return str(value)


def _fee(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise _Bad(f"{value!r} is not an amount")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Bad(f"{value!r} is not an amount") from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e8"):
        raise _Bad(f"{value!r} is not a fee (0 or more)")
    if amount != amount.quantize(Decimal("0.01")):
        raise _Bad(f"{value!r} has more than 2 decimal places")
    return amount.quantize(Decimal("0.01"))


def _time(value: Any) -> time:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 08:30 as sexagesimal minutes (510)
        return time(value // 60, value % 60)
    if not isinstance(value, str) or not _HHMM.fullmatch(value.strip()):
        raise _Bad(f"{value!r} is not a time of day like 08:30")
    hour, minute = value.strip().split(":")
    return time(int(hour), int(minute))


def _capacity(value: Any) -> int:
    if isinstance(value, bool):
        raise _Bad(f"{value!r} is not a whole number")
    try:
        number = int(value) if isinstance(value, (int, str)) else None
    except ValueError:
        number = None
    if number is None or not 0 <= number <= MAX_CAPACITY:
        raise _Bad(f"{value!r} is not a whole number from 0 to {MAX_CAPACITY}")
    return number


def _check_clinic(rec: _ClinicRec, out: _Collector) -> None:
    known = set(CLINIC_FIELDS)
    for key in rec.data:
        if key not in known:
            out.add(rec.where, str(key), "unknown field")
    checks: tuple[tuple[str, str, Any], ...] = (
        ("id", "id", lambda v: _id(v, required=True)),
        ("hospital", "hospital_id", lambda v: _id(v, required=True)),
        ("department", "department_id", lambda v: _id(v, required=True)),
        ("expert", "expert_id", lambda v: _id(v, required=False)),
        ("date", "date", _date),
        ("session", "session", _session),
        ("fee", "fee", _fee),
    )
    for name, column, convert in checks:
        try:
            rec.values[column] = convert(rec.data.get(name))
        except _Bad as exc:
            out.add(rec.where, name, str(exc))


def _check_slot(rec: _SlotRec, out: _Collector) -> None:
    for key in rec.data:
        if key not in SLOT_FIELDS:
            out.add(rec.where, str(key), "unknown field")
    for name, convert in (
        ("id", lambda v: _id(v, required=False)),
        ("start", _time),
        ("end", _time),
        ("capacity", _capacity),
    ):
        try:
            rec.values[name] = convert(rec.data.get(name))
        except _Bad as exc:
            out.add(rec.where, name, str(exc))
    start, end = rec.values.get("start"), rec.values.get("end")
    if start is not None and end is not None and end <= start:
        out.add(rec.where, "end", "must be after start")


def _validate(
    clinics: list[_ClinicRec], slots: list[_SlotRec], tz: tzinfo, out: _Collector
) -> None:
    for rec in clinics:
        _check_clinic(rec, out)
        for srec in rec.slots:
            _check_slot(srec, out)
    by_id: dict[str, _ClinicRec] = {}
    for rec in clinics:
        cid = rec.values.get("id")
        if not cid:
            continue
        if cid in by_id:
            other = by_id[cid].where
            out.add(
                rec.where, "id", f"clinic {cid!r} already given in {other.file} row {other.row}"
            )
        else:
            by_id[cid] = rec
    for srec in slots:
        _check_slot(srec, out)
        if not srec.clinic:
            out.add(srec.where, "clinic", "required")
        elif srec.clinic not in by_id:
            out.add(srec.where, "clinic", f"no clinic {srec.clinic!r} in this import")
        else:
            by_id[srec.clinic].slots.append(srec)
    seen_slots: dict[str, _Where] = {}
    for rec in clinics:
        cid = rec.values.get("id")
        if rec.from_csv and not rec.slots:
            out.add(rec.where, "slots", "a clinic needs at least one slot (none in slots.csv)")
        starts: set[time] = set()
        day = rec.values.get("date")
        for srec in rec.slots:
            start, end = srec.values.get("start"), srec.values.get("end")
            if start is not None:
                if start in starts:
                    out.add(srec.where, "start", f"two slots start at {start:%H:%M}")
                starts.add(start)
            if cid and start is not None:
                srec.values["id"] = srec.values.get("id") or f"{cid}-{start:%H%M}"
            sid = srec.values.get("id")
            if sid:
                if sid in seen_slots:
                    other = seen_slots[sid]
                    out.add(
                        srec.where,
                        "id",
                        f"slot {sid!r} already given in {other.file} row {other.row}",
                    )
                else:
                    seen_slots[sid] = srec.where
            if isinstance(day, date) and start is not None and end is not None:
                srec.values["starts_at"] = datetime.combine(day, start, tzinfo=tz)
                srec.values["ends_at"] = datetime.combine(day, end, tzinfo=tz)
    experts: dict[tuple[Any, ...], _Where] = {}
    for rec in clinics:
        key = (rec.values.get("expert_id"), rec.values.get("date"), rec.values.get("session"))
        if None in key:
            continue
        if key in experts:
            other = experts[key]
            out.add(
                rec.where,
                "expert",
                f"expert {key[0]!r} already has a clinic on {key[1]} {key[2]} "
                f"({other.file} row {other.row})",
            )
        else:
            experts[key] = rec.where


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


CLINICS = _table(m.Clinic)
SLOTS = _table(m.Slot)


def _check_references(session: Session, clinics: list[_ClinicRec], out: _Collector) -> None:
    """Hospitals, departments and experts must be in the knowledge base and agree."""
    hospitals = {r.values["hospital_id"] for r in clinics if r.values.get("hospital_id")}
    departments = {r.values["department_id"] for r in clinics if r.values.get("department_id")}
    experts = {r.values["expert_id"] for r in clinics if r.values.get("expert_id")}
    known_h: set[str] = set()
    dept_hospital: dict[str, str] = {}
    expert_of: dict[str, tuple[str, str | None]] = {}
    for chunk in _chunks(sorted(hospitals)):
        known_h.update(session.scalars(select(kb.Hospital.id).where(kb.Hospital.id.in_(chunk))))
    for chunk in _chunks(sorted(departments)):
        for d_id, d_hosp in session.execute(
            select(kb.Department.id, kb.Department.hospital_id).where(kb.Department.id.in_(chunk))
        ):
            dept_hospital[d_id] = d_hosp
    for chunk in _chunks(sorted(experts)):
        for e_id, e_hosp, e_dept in session.execute(
            select(kb.Expert.id, kb.Expert.hospital_id, kb.Expert.department_id).where(
                kb.Expert.id.in_(chunk)
            )
        ):
            expert_of[e_id] = (e_hosp, e_dept)
    for rec in clinics:
        hosp: str | None = rec.values.get("hospital_id")
        dept: str | None = rec.values.get("department_id")
        exp: str | None = rec.values.get("expert_id")
        if hosp and hosp not in known_h:
            out.add(rec.where, "hospital", f"no hospital {hosp!r} in the knowledge base")
        if dept:
            if dept not in dept_hospital:
                out.add(rec.where, "department", f"no department {dept!r} in the knowledge base")
            elif hosp and dept_hospital[dept] != hosp:
                out.add(
                    rec.where,
                    "department",
                    f"department {dept!r} belongs to hospital {dept_hospital[dept]!r}, "
                    f"not {hosp!r}",
                )
        if exp:
            if exp not in expert_of:
                out.add(rec.where, "expert", f"no expert {exp!r} in the knowledge base")
            else:
                e_hosp, e_dept = expert_of[exp]
                if hosp and e_hosp != hosp:
                    out.add(
                        rec.where, "expert", f"expert {exp!r} works at {e_hosp!r}, not {hosp!r}"
                    )
                elif dept and e_dept and e_dept != dept:
                    out.add(rec.where, "expert", f"expert {exp!r} is in {e_dept!r}, not {dept!r}")


_IDENTITY = ("hospital_id", "department_id", "expert_id", "date", "session")


def _check_existing(
    session: Session,
    clinics: list[_ClinicRec],
    out: _Collector,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """Existing clinics and their slots (locked on PostgreSQL), and what bookings forbid:
    moving a booked clinic, dropping or shrinking a booked slot below its bookings."""
    ids = [r.values["id"] for r in clinics]
    old_clinics: dict[str, dict[str, Any]] = {}
    old_slots: dict[str, dict[str, dict[str, Any]]] = {}
    for chunk in _chunks(ids):
        for row in session.execute(select(CLINICS).where(CLINICS.c.id.in_(chunk))).mappings():
            old_clinics[row["id"]] = dict(row)
        for row in session.execute(
            select(SLOTS).where(SLOTS.c.clinic_id.in_(chunk)).with_for_update()
        ).mappings():
            old_slots.setdefault(row["clinic_id"], {})[row["id"]] = dict(row)
    owners = {s.values["id"]: (r, s) for r in clinics for s in r.slots}
    for chunk in _chunks(sorted(owners)):
        for sid, cid in session.execute(
            select(SLOTS.c.id, SLOTS.c.clinic_id).where(SLOTS.c.id.in_(chunk))
        ):
            owner, srec = owners[sid]
            if cid != owner.values["id"]:
                out.add(srec.where, "id", f"slot {sid!r} already belongs to clinic {cid!r}")
    for rec in clinics:
        old = old_clinics.get(rec.values["id"])
        if old is None:
            continue
        slots = old_slots.get(rec.values["id"], {})
        booked = sum(s["booked"] for s in slots.values())
        if booked:
            for column in _IDENTITY:
                if old[column] != rec.values[column]:
                    name = column.removesuffix("_id")
                    out.add(
                        rec.where,
                        name,
                        f"cannot change from {old[column]!s} to {rec.values[column]!s}: "
                        f"{booked} place(s) are booked in this clinic",
                    )
        given = {s.values["id"]: s for s in rec.slots}
        for sid, slot in slots.items():
            new = given.get(sid)
            if new is None:
                if slot["booked"]:
                    out.add(
                        rec.where,
                        "slots",
                        f"slot {sid!r} is missing but has {slot['booked']} booked place(s) "
                        "(cancel the clinic instead)",
                    )
                continue
            if slot["booked"] and (
                slot["starts_at"] != new.values["starts_at"]
                or slot["ends_at"] != new.values["ends_at"]
            ):
                out.add(
                    new.where, "start", f"cannot move a slot with {slot['booked']} booked place(s)"
                )
            if new.values["capacity"] < slot["booked"]:
                out.add(
                    new.where,
                    "capacity",
                    f"{new.values['capacity']} is below the {slot['booked']} place(s) "
                    "already booked",
                )
    return old_clinics, old_slots


_CLINIC_COLUMNS = ("id", "hospital_id", "department_id", "expert_id", "date", "session", "fee")


def _write(
    session: Session,
    clinics: list[_ClinicRec],
    old_clinics: Mapping[str, Mapping[str, Any]],
    old_slots: Mapping[str, Mapping[str, Mapping[str, Any]]],
    now: datetime,
    report: ScheduleReport,
) -> None:
    clinic_inserts: list[dict[str, Any]] = []
    clinic_updates: list[dict[str, Any]] = []
    slot_inserts: list[dict[str, Any]] = []
    slot_updates: list[dict[str, Any]] = []
    slot_deletes: list[str] = []
    for rec in clinics:
        values = {c: rec.values[c] for c in _CLINIC_COLUMNS}
        old = old_clinics.get(values["id"])
        existing = old_slots.get(values["id"], {})
        slot_changed = False
        for srec in rec.slots:
            row = {
                "id": srec.values["id"],
                "starts_at": srec.values["starts_at"],
                "ends_at": srec.values["ends_at"],
                "capacity": srec.values["capacity"],
            }
            prev = existing.get(row["id"])
            if prev is None:
                slot_inserts.append(
                    {**row, "clinic_id": values["id"], "booked": 0, "closed": False}
                )
                slot_changed = True
            elif any(prev[k] != row[k] for k in ("starts_at", "ends_at", "capacity")):
                slot_updates.append({f"v_{k}": v for k, v in row.items()})
                slot_changed = True
        given = {s.values["id"] for s in rec.slots}
        gone = [sid for sid in existing if sid not in given]
        slot_deletes += gone
        slot_changed = slot_changed or bool(gone)
        if old is None:
            clinic_inserts.append(
                {**values, "status": "open", "is_demo": rec.is_demo, "updated_at": now}
            )
            report.clinics_created += 1
        elif any(old[c] != values[c] for c in _CLINIC_COLUMNS) or slot_changed:
            clinic_updates.append({**{f"v_{k}": v for k, v in values.items()}, "v_now": now})
            report.clinics_updated += 1
        else:
            report.clinics_unchanged += 1
    for chunk in _chunks(clinic_inserts, 2000):
        session.execute(CLINICS.insert(), list(chunk))
    if clinic_updates:
        params: dict[str, Any] = {c: bindparam(f"v_{c}") for c in _CLINIC_COLUMNS if c != "id"}
        params["updated_at"] = bindparam("v_now")
        session.execute(
            update(CLINICS).where(CLINICS.c.id == bindparam("v_id")).values(params),
            clinic_updates,
        )
    for chunk in _chunks(slot_deletes):
        session.execute(delete(SLOTS).where(SLOTS.c.id.in_(chunk), SLOTS.c.booked == 0))
    if slot_updates:
        session.execute(
            update(SLOTS)
            .where(SLOTS.c.id == bindparam("v_id"))
            .values(
                starts_at=bindparam("v_starts_at"),
                ends_at=bindparam("v_ends_at"),
                capacity=bindparam("v_capacity"),
            ),
            slot_updates,
        )
    for chunk in _chunks(slot_inserts, 2000):
        session.execute(SLOTS.insert(), list(chunk))
    report.slots_created += len(slot_inserts)
    report.slots_updated += len(slot_updates)
    report.slots_deleted += len(slot_deletes)


def _apply(
    db: Database,
    clinics: list[_ClinicRec],
    slots: list[_SlotRec],
    out: _Collector,
    *,
    clock: Clock,
    tz: tzinfo,
    report: ScheduleReport,
) -> ScheduleReport:
    _validate(clinics, slots, tz, out)
    if out.problems:
        raise ScheduleImportError(out.problems)
    with db.transaction() as session:
        _check_references(session, clinics, out)
        old_clinics, old_slots = _check_existing(session, clinics, out)
        if out.problems:
            raise ScheduleImportError(out.problems)
        _write(session, clinics, old_clinics, old_slots, clock.now(), report)
    return report


def import_schedules(db: Database, path: str | Path, *, clock: Clock, tz: tzinfo) -> ScheduleReport:
    """Import a schedule file or directory, all or nothing (see the module docstring).

    ``tz`` is the hotline's time zone: slot times in the files are local times. Raises
    :class:`ScheduleImportError` listing every problem; the database is then unchanged.
    """
    root = Path(path)
    out = _Collector()
    if not root.exists():
        raise ScheduleImportError([Problem(str(root), None, None, "no such file or directory")])
    report = ScheduleReport()
    clinics: list[_ClinicRec] = []
    slots: list[_SlotRec] = []
    for file in _files(root):
        name = str(file)
        report.files.append(name)
        suffix = file.suffix.lower()
        if suffix in (".yaml", ".yml"):
            clinics += _read_yaml(file, name, out)
        elif suffix == ".csv":
            more_clinics, more_slots = _read_csv(file, name, out)
            clinics += more_clinics
            slots += more_slots
        else:
            out.add(name, None, "not a .yaml, .yml or .csv file")
    return _apply(db, clinics, slots, out, clock=clock, tz=tz, report=report)


# --- demo schedules ------------------------------------------------------------------------

#: Local session times and one-hour slots of the demo clinics.
DEMO_SESSIONS: dict[str, tuple[str, ...]] = {
    "am": ("08:00", "09:00", "10:00", "11:00"),
    "pm": ("13:30", "14:30", "15:30"),
    "evening": ("18:00", "19:00"),
}
#: Places per one-hour slot.
DEMO_CAPACITY = {"general": 8, "expert": 4}
#: Demo registration fees in CNY by the doctor's title (not official prices).
DEMO_FEES = {
    "general": Decimal("25.00"),
    "主治医师": Decimal("30.00"),
    "副主任医师": Decimal("40.00"),
    "主任医师": Decimal("60.00"),
}


def _demo_days(hours_zh: str | None) -> dict[int, tuple[str, ...]]:
    """Weekday (1 = Monday) -> sessions of a department's general clinic, read from its
    opening hours; ``{}`` for walk-in departments (24-hour emergency, fever clinic)."""
    hours = hours_zh or ""
    if "24小时" in hours:
        return {}
    if "周一至周日" in hours:
        return dict.fromkeys(range(1, 8), ("am", "pm"))
    days: dict[int, tuple[str, ...]] = dict.fromkeys(range(1, 6), ("am", "pm"))
    if "周六" in hours:
        days[6] = ("am",)
    return days


def _demo_clinic(
    clinic_id: str,
    hospital: str,
    department: str,
    expert: str | None,
    day: date,
    session: str,
    fee: Decimal,
    capacity: int,
) -> _ClinicRec:
    where = _Where("(demo schedules)", 0, None)
    data = {
        "id": clinic_id,
        "hospital": hospital,
        "department": department,
        "expert": expert,
        "date": day,
        "session": session,
        "fee": fee,
    }
    rec = _ClinicRec(where, data, is_demo=True)
    for start in DEMO_SESSIONS[session]:
        hh, mm = (int(x) for x in start.split(":"))
        end = f"{hh + 1:02d}:{mm:02d}"
        rec.slots.append(_SlotRec(where, {"start": start, "end": end, "capacity": capacity}))
    return rec


def demo_clinics(session: Session, start: date, days: int) -> list[_ClinicRec]:
    """The demo clinics from ``start`` for ``days`` days, from the knowledge base."""
    records: list[_ClinicRec] = []
    departments = session.execute(
        select(kb.Department.id, kb.Department.hospital_id, kb.Department.hours_zh).order_by(
            kb.Department.id
        )
    ).all()
    experts = session.execute(
        select(
            kb.Expert.id,
            kb.Expert.hospital_id,
            kb.Expert.department_id,
            kb.Expert.title_zh,
            kb.Expert.schedule,
        )
        .where(kb.Expert.department_id.is_not(None))
        .order_by(kb.Expert.id)
    ).all()
    for offset in range(days):
        day = start + timedelta(days=offset)
        weekday = day.isoweekday()
        stamp = f"{day:%Y%m%d}"
        for dept, hosp, hours in departments:
            for sess in _demo_days(hours).get(weekday, ()):
                records.append(
                    _demo_clinic(
                        f"demo-{dept}-{stamp}-{sess}",
                        hosp,
                        dept,
                        None,
                        day,
                        sess,
                        DEMO_FEES["general"],
                        DEMO_CAPACITY["general"],
                    )
                )
        for exp, hosp, dept, title, schedule in experts:
            for item in schedule or ():
                if item.get("weekday") != weekday or item.get("session") not in SESSIONS:
                    continue
                sess = item["session"]
                records.append(
                    _demo_clinic(
                        f"demo-{exp}-{stamp}-{sess}",
                        hosp,
                        dept,
                        exp,
                        day,
                        sess,
                        DEMO_FEES.get(title or "", DEMO_FEES["主治医师"]),
                        DEMO_CAPACITY["expert"],
                    )
                )
    return records


def load_demo_schedules(
    db: Database, clock: Clock, tz: tzinfo, *, days: int = 15
) -> ScheduleReport:
    """Demo clinics for ``days`` days from today (local), generated from the knowledge base
    (load it first); idempotent. Clinic ids are ``demo-<department or expert>-<date>-<session>``.
    """
    today = clock.now().astimezone(tz).date()
    with db.transaction() as session:
        clinics = demo_clinics(session, today, days)
    report = ScheduleReport(files=["(demo schedules)"])
    return _apply(db, clinics, [], _Collector(), clock=clock, tz=tz, report=report)
