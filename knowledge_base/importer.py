"""Import and export of the knowledge base: YAML and CSV, all or nothing, idempotent.

* :func:`import_path` reads one file or every ``*.yaml`` / ``*.yml`` / ``*.csv`` file of a
  directory, checks everything (types, lengths, required fields, duplicate ids, references to
  hospitals, departments and articles), and only then writes, in one transaction. A bad file is
  rejected whole with :class:`KbImportError`, naming the file, the row and the field of every
  problem; nothing is half-imported. Ids are the stable keys: importing the same file twice
  changes nothing the second time.
* :func:`export_path` writes the same formats, so an export imports back to the same data.
* :func:`load_demo` imports ``knowledge_base/demo/``.

The formats are documented in ``knowledge_base/README.md``. Text is stored verbatim (``<``,
``&``, SSML-like tags, SQL fragments, line breaks are data); an empty text or CSV cell means
"no value".
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Table, bindparam, delete, select, text, update
from sqlalchemy.orm import Session

from callcenter.clock import Clock
from callcenter.db.engine import Database
from callcenter.db.models import Base
from callcenter.imports import ImportRejected, Problem

from . import models as m
from .text import fold, index_tokens, sounds

DEMO_DIR = Path(__file__).resolve().parent / "demo"
#: libyaml's safe loader when PyYAML has it (10x faster), else the pure-Python one.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CURRENCY = re.compile(r"[A-Z]{3}")
SESSIONS = ("am", "pm", "evening")
_CHUNK = 500
_GIN_INDEXES = (
    "ix_kb_search_index_weak",
    "ix_kb_search_tokens_trgm",
)
#: Imports that (re)index at least this many entries also tune the search index.
_REINDEX_TUNE = 1000


# --- the formats -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """One field of an import record."""

    name: str
    kind: str = "text"  # id, text, list, date, decimal, bool, int, currency, schedule, ref
    required: bool = False
    max_len: int | None = None
    attr: str | None = None  # model attribute when it differs from the file's name
    ref: str | None = None  # for kind "ref": the entity type referred to

    @property
    def column(self) -> str:
        """The model attribute this field is stored in."""
        return self.attr or self.name


def _f(name: str, kind: str = "text", **kw: Any) -> FieldSpec:
    return FieldSpec(name, kind, **kw)


_NAME: dict[str, Any] = {"required": True, "max_len": 200}

#: Entity type -> (YAML top key, CSV file stem, fields in file order).
FORMATS: dict[str, tuple[str, str, tuple[FieldSpec, ...]]] = {
    "hospital": (
        "hospitals",
        "hospitals",
        (
            _f("id", "id", required=True),
            _f("name_zh", **_NAME),
            _f("name_en", **_NAME),
            _f("aliases", "list"),
            _f("level", max_len=50),
            _f("district_zh", max_len=100),
            _f("district_en", max_len=100),
            _f("address_zh"),
            _f("address_en"),
            _f("phone", max_len=50),
            _f("opening_hours_zh"),
            _f("opening_hours_en"),
            _f("intro_zh"),
            _f("intro_en"),
            _f("summary_zh"),
            _f("summary_en"),
        ),
    ),
    "department": (
        "departments",
        "departments",
        (
            _f("id", "id", required=True),
            _f("hospital", "ref", required=True, attr="hospital_id", ref="hospital"),
            _f("name_zh", **_NAME),
            _f("name_en", **_NAME),
            _f("aliases", "list"),
            _f("location_zh"),
            _f("location_en"),
            _f("hours_zh"),
            _f("hours_en"),
            _f("intro_zh"),
            _f("intro_en"),
        ),
    ),
    "expert": (
        "experts",
        "experts",
        (
            _f("id", "id", required=True),
            _f("name_zh", **_NAME),
            _f("name_en", **_NAME),
            _f("title_zh", max_len=100),
            _f("title_en", max_len=100),
            _f("hospital", "ref", required=True, attr="hospital_id", ref="hospital"),
            _f("department", "ref", attr="department_id", ref="department"),
            _f("specialties_zh", "list"),
            _f("specialties_en", "list"),
            _f("schedule", "schedule"),
            _f("intro_zh"),
            _f("intro_en"),
        ),
    ),
    "drug": (
        "drugs",
        "drugs",
        (
            _f("id", "id", required=True),
            _f("generic_zh", **_NAME),
            _f("generic_en", **_NAME),
            _f("brands_zh", "list"),
            _f("aliases", "list"),
            _f("category_zh", max_len=200),
            _f("category_en", max_len=200),
            _f("specification", max_len=200),
            _f("unit_zh", max_len=50),
            _f("unit_en", max_len=50),
            _f("price", "decimal"),
            _f("currency", "currency"),
            _f("price_date", "date"),
            _f("otc", "bool", required=True),
            _f("indications_zh"),
            _f("indications_en"),
            _f("usage_zh"),
            _f("usage_en"),
            _f("contraindications_zh"),
            _f("contraindications_en"),
            _f("summary_zh"),
            _f("summary_en"),
        ),
    ),
    "article": (
        "articles",
        "articles",
        (
            _f("id", "id", required=True),
            _f("category", required=True, max_len=50),
            _f("title_zh", **_NAME),
            _f("title_en", **_NAME),
            _f("keywords", "list"),
        ),
    ),
    "service": (
        "service_info",
        "service_info",
        (
            _f("id", "id", required=True),
            _f("title_zh", **_NAME),
            _f("title_en", **_NAME),
            _f("keywords", "list"),
            _f("body_zh"),
            _f("body_en"),
            _f("summary_zh"),
            _f("summary_en"),
        ),
    ),
}
#: The fields of one article version (YAML: ``versions`` list; CSV: article_versions.csv).
VERSION_FIELDS: tuple[FieldSpec, ...] = (
    _f("version", "int", required=True),
    _f("body_zh", required=True),
    _f("body_en"),
    _f("summary_zh"),
    _f("summary_en"),
    _f("reviewer", required=True, max_len=200),
    _f("reviewed_on", "date", required=True),
    _f("expires_on", "date", required=True),
)
VERSIONS_CSV = "article_versions"
_TYPE_BY_KEY = {key: etype for etype, (key, _stem, _fields) in FORMATS.items()}
_TYPE_BY_STEM = {stem: etype for etype, (_key, stem, _fields) in FORMATS.items()}
#: Import order: referenced entities first.
ORDER = ("hospital", "department", "expert", "drug", "article", "service")


# --- errors and reports ------------------------------------------------------------------


class KbImportError(ImportRejected):
    """A knowledge-base import was rejected whole; ``problems`` lists every problem found."""


@dataclass
class ImportReport:
    """What an import did, per entity type."""

    files: list[str] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    indexed: int = 0

    @property
    def changes(self) -> int:
        """Entities created or updated (0 when the data was already there)."""
        return sum(self.created.values()) + sum(self.updated.values())

    def summary(self) -> str:
        """One line per entity type, for the command line."""
        lines = []
        for etype in ORDER:
            c, u, n = (
                self.created.get(etype, 0),
                self.updated.get(etype, 0),
                self.unchanged.get(etype, 0),
            )
            if c or u or n:
                lines.append(f"{etype}: {c} created, {u} updated, {n} unchanged")
        return "\n".join(lines) or "nothing to import"


# --- reading files -----------------------------------------------------------------------


@dataclass
class _Record:
    etype: str
    file: str
    row: int
    line: int | None
    data: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _VersionRecord:
    file: str
    row: int
    line: int | None
    article: str | None
    data: dict[str, Any]


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(
        self, file: str, row: int | None, fld: str | None, message: str, line: int | None = None
    ) -> None:
        self.problems.append(Problem(file, row, fld, message, line))


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in (".yaml", ".yml", ".csv")
        )
    return [path]


def _read_yaml(path: Path, name: str, out: _Collector) -> list[_Record]:
    try:
        text = path.read_text(encoding="utf-8-sig")
        loader = _YAML_LOADER(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        out.add(name, None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        out.add(name, None, None, f"not valid YAML: {problem}", line)
        return []
    if data is None:
        return []
    if not isinstance(data, dict):
        out.add(name, None, None, "expected a mapping of lists (hospitals: [...], drugs: [...])")
        return []
    lines: dict[str, list[int]] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(value_node, yaml.SequenceNode):
                lines[str(key_node.value)] = [n.start_mark.line + 1 for n in value_node.value]
    records: list[_Record] = []
    for key, items in data.items():
        if key not in _TYPE_BY_KEY:
            known = ", ".join(k for k, _s, _f in FORMATS.values())
            out.add(name, None, str(key), f"unknown section (known: {known})")
            continue
        if not isinstance(items, list):
            out.add(name, None, str(key), "must be a list of records")
            continue
        for index, item in enumerate(items, start=1):
            line_list = lines.get(key, [])
            line = line_list[index - 1] if index - 1 < len(line_list) else None
            if not isinstance(item, dict):
                out.add(name, index, None, f"{key}[{index}] must be a mapping of fields", line)
                continue
            records.append(_Record(_TYPE_BY_KEY[key], name, index, line, item))
    return records


def _read_csv(path: Path, name: str, out: _Collector) -> tuple[list[_Record], list[_VersionRecord]]:
    stem = path.stem
    if stem == VERSIONS_CSV:
        fields: tuple[FieldSpec, ...] = (_f("article", "id", required=True), *VERSION_FIELDS)
    elif stem in _TYPE_BY_STEM:
        fields = FORMATS[_TYPE_BY_STEM[stem]][2]
    else:
        known = ", ".join(f"{s}.csv" for _k, s, _f in FORMATS.values())
        out.add(name, None, None, f"unknown CSV file name (known: {known}, {VERSIONS_CSV}.csv)")
        return [], []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        out.add(name, None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return [], []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        out.add(name, None, None, f"not valid CSV: {exc}", 1)
        return [], []
    if header is None:
        return [], []
    header = [h.strip() for h in header]
    known_names = {f.name for f in fields}
    problems_before = len(out.problems)
    for column in header:
        if column not in known_names:
            out.add(name, None, column, "unknown column", 1)
    for spec in fields:
        if spec.required and spec.name not in header:
            out.add(name, None, spec.name, "required column is missing", 1)
    if len(set(header)) != len(header):
        out.add(name, None, None, "a column appears twice in the header", 1)
    if len(out.problems) > problems_before:
        return [], []
    records: list[_Record] = []
    versions: list[_VersionRecord] = []
    row = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.add(name, row + 1, None, f"not valid CSV: {exc}", line)
            break
        row += 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            out.add(name, row, None, f"has {len(cells)} cells, the header has {len(header)}", line)
            continue
        data: dict[str, Any] = {}
        for column, cell in zip(header, cells, strict=True):
            data[column] = _csv_cell(cell, next(f for f in fields if f.name == column))
        if stem == VERSIONS_CSV:
            article = data.pop("article", None)
            versions.append(_VersionRecord(name, row, line, article, data))
        else:
            records.append(_Record(_TYPE_BY_STEM[stem], name, row, line, data))
    return records, versions


def _csv_cell(cell: str, spec: FieldSpec) -> Any:
    if cell == "":
        return [] if spec.kind in ("list", "schedule") else None
    if spec.kind == "list":
        return split_list(cell)
    if spec.kind == "schedule":
        sessions: list[Any] = []
        for item in split_list(cell):
            weekday, _sep, session = item.partition(":")
            sessions.append({"weekday": weekday, "session": session})
        return sessions
    return cell


def split_list(cell: str) -> list[str]:
    r"""Split a CSV list cell on ``|`` (``\|`` is a literal bar, ``\\`` a backslash)."""
    items: list[str] = []
    current: list[str] = []
    chars = iter(cell)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            current.append(nxt if nxt in ("|", "\\") else "\\" + nxt)
        elif ch == "|":
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return items


def join_list(items: Iterable[str]) -> str:
    """The CSV cell for a list (inverse of :func:`split_list`)."""
    return "|".join(item.replace("\\", "\\\\").replace("|", "\\|") for item in items)


# --- checking values ---------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _text(value: Any, spec: FieldSpec) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(f"must be text, got {type(value).__name__} {value!r} (quote it)")
    if not value.strip():
        return None
    _check_str(value, spec.max_len)
    return value


def _check_str(value: str, max_len: int | None) -> None:
    if "\x00" in value:
        raise _Bad("contains a NUL character")
    if max_len is not None and len(value) > max_len:
        raise _Bad(f"is {len(value)} characters long, at most {max_len} allowed")


def _convert(value: Any, spec: FieldSpec) -> Any:
    kind = spec.kind
    if kind in ("text", "ref"):
        return _text(value, spec)
    if kind == "id":
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise _Bad(f"{value!r} is not a valid id (letters, digits, '.', '_', '-'; at most 64)")
        return value
    if kind == "list":
        if value is None:
            return []
        if not isinstance(value, list):
            raise _Bad("must be a list")
        items: list[str] = []
        for index, item in enumerate(value, start=1):
            if not isinstance(item, str) or not item.strip():
                raise _Bad(f"item {index} must be non-empty text, got {item!r}")
            _check_str(item, 200)
            items.append(item)
        return items
    if kind == "date":
        if value is None or value == "":
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise _Bad(f"{value!r} is not a date (YYYY-MM-DD)")
    if kind == "decimal":
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
            raise _Bad(f"{value!r} is not a number")
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise _Bad(f"{value!r} is not a number") from None
        if not amount.is_finite() or amount < 0 or amount >= Decimal("1e10"):
            raise _Bad(f"{value!r} is not a price (0 or more, below 10^10)")
        if amount != amount.quantize(Decimal("0.01")):
            raise _Bad(f"{value!r} has more than 2 decimal places")
        return amount.quantize(Decimal("0.01"))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        if value is None or value == "":
            return None
        raise _Bad(f"{value!r} is not true or false")
    if kind == "int":
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise _Bad(f"{value!r} is not a whole number")
        try:
            number = int(value) if isinstance(value, (int, str)) else None
        except ValueError:
            number = None
        if number is None or number < 1 or number > 1_000_000:
            raise _Bad(f"{value!r} is not a whole number from 1")
        return number
    if kind == "currency":
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
            raise _Bad(f"{value!r} is not an ISO 4217 currency code (CNY, USD...)")
        return value
    if kind == "schedule":
        return _schedule(value)
    raise AssertionError(kind)


_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _schedule(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad("must be a list of {weekday, session}")
    result: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    for index, item in enumerate(value, start=1):
        if not isinstance(item, dict) or set(item) != {"weekday", "session"}:
            raise _Bad(f"item {index} must have exactly weekday and session")
        weekday = item["weekday"]
        if isinstance(weekday, str) and weekday.strip().isdigit():
            weekday = int(weekday.strip())
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 1 <= weekday <= 7:
            raise _Bad(f"item {index}: weekday {item['weekday']!r} is not 1 (Monday) to 7")
        session = item["session"]
        if session not in SESSIONS:
            raise _Bad(f"item {index}: session {session!r} is not one of {', '.join(SESSIONS)}")
        if (weekday, session) in seen:
            raise _Bad(f"item {index}: weekday {weekday} {session} appears twice")
        seen.add((weekday, session))
        result.append({"weekday": weekday, "session": session})
    return result


def _check_fields(
    data: Mapping[str, Any],
    fields: Sequence[FieldSpec],
    report: Callable[[str, str], None],
    prefix: str = "",
) -> dict[str, Any]:
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            report(f"{prefix}{key}", "unknown field")
    values: dict[str, Any] = {}
    for spec in fields:
        try:
            value = _convert(data.get(spec.name), spec)
        except _Bad as exc:
            report(f"{prefix}{spec.name}", str(exc))
            continue
        if spec.required and value is None:
            report(f"{prefix}{spec.name}", "required")
            continue
        values[spec.column] = value
    return values


def _validate(records: list[_Record], versions: list[_VersionRecord], out: _Collector) -> None:
    version_fields = VERSION_FIELDS
    for rec in records:
        fields = FORMATS[rec.etype][2]
        data = dict(rec.data)
        raw_versions = data.pop("versions", None) if rec.etype == "article" else None

        def report(fld: str, message: str, rec: _Record = rec) -> None:
            out.add(rec.file, rec.row, fld, message, rec.line)

        rec.values = _check_fields(data, fields, report)
        if rec.etype == "drug" and rec.values.get("price") is not None:
            for needed in ("currency", "price_date"):
                if needed in rec.values and rec.values[needed] is None:
                    report(needed, "required when a price is given")
        if rec.etype == "article" and raw_versions is not None:
            if not isinstance(raw_versions, list):
                report("versions", "must be a list of versions")
                continue
            for index, raw in enumerate(raw_versions, start=1):
                if not isinstance(raw, dict):
                    report(f"versions[{index}]", "must be a mapping of fields")
                    continue
                rec.versions.append(
                    _check_fields(raw, version_fields, report, prefix=f"versions[{index}].")
                )
    articles = {r.values.get("id"): r for r in records if r.etype == "article"}
    for ver in versions:

        def vreport(fld: str, message: str, ver: _VersionRecord = ver) -> None:
            out.add(ver.file, ver.row, fld, message, ver.line)

        values = _check_fields(ver.data, version_fields, vreport)
        target = articles.get(ver.article)
        if ver.article is None:
            vreport("article", "required")
        elif target is None:
            vreport("article", f"no article {ver.article!r} in this import")
        else:
            target.versions.append(values)
    for rec in records:
        if rec.etype != "article":
            continue
        if not rec.versions:
            out.add(
                rec.file, rec.row, "versions", "an article needs at least one version", rec.line
            )
            continue
        seen: set[int] = set()
        for index, ver_values in enumerate(rec.versions, start=1):
            number = ver_values.get("version")
            if number in seen:
                out.add(
                    rec.file,
                    rec.row,
                    f"versions[{index}].version",
                    f"version {number} appears twice",
                    rec.line,
                )
            if number is not None:
                seen.add(number)
            reviewed, expires = ver_values.get("reviewed_on"), ver_values.get("expires_on")
            if reviewed and expires and expires < reviewed:
                out.add(
                    rec.file,
                    rec.row,
                    f"versions[{index}].expires_on",
                    "is before reviewed_on",
                    rec.line,
                )
        rec.versions.sort(key=lambda v: v.get("version") or 0)
    first: dict[tuple[str, str], _Record] = {}
    for rec in records:
        key = (rec.etype, rec.values.get("id") or "")
        if not key[1]:
            continue
        if key in first:
            other = first[key]
            out.add(
                rec.file,
                rec.row,
                "id",
                f"{rec.etype} {key[1]!r} already given in {other.file} row {other.row}",
                rec.line,
            )
        else:
            first[key] = rec


def _check_references(session: Session, records: list[_Record], out: _Collector) -> None:
    """References to hospitals and departments: in this import or already in the database."""
    hospitals = {r.values["id"] for r in records if r.etype == "hospital"}
    dept_hospital = {
        r.values["id"]: r.values.get("hospital_id") for r in records if r.etype == "department"
    }
    wanted_h = (
        {r.values.get("hospital_id") for r in records if r.etype in ("department", "expert")}
        - hospitals
        - {None}
    )
    wanted_d = (
        {r.values.get("department_id") for r in records if r.etype == "expert"}
        - set(dept_hospital)
        - {None}
    )
    for chunk in _chunks(sorted(x for x in wanted_h if x)):
        hospitals.update(session.scalars(select(m.Hospital.id).where(m.Hospital.id.in_(chunk))))
    for chunk in _chunks(sorted(x for x in wanted_d if x)):
        for dept_id, hospital_id in session.execute(
            select(m.Department.id, m.Department.hospital_id).where(m.Department.id.in_(chunk))
        ):
            dept_hospital[dept_id] = hospital_id
    for rec in records:
        if rec.etype not in ("department", "expert"):
            continue
        hospital = rec.values.get("hospital_id")
        if hospital and hospital not in hospitals:
            out.add(rec.file, rec.row, "hospital", f"no hospital {hospital!r}", rec.line)
        dept = rec.values.get("department_id")
        if rec.etype == "expert" and dept:
            if dept not in dept_hospital:
                out.add(rec.file, rec.row, "department", f"no department {dept!r}", rec.line)
            elif hospital and dept_hospital[dept] != hospital:
                out.add(
                    rec.file,
                    rec.row,
                    "department",
                    f"department {dept!r} belongs to hospital {dept_hospital[dept]!r}, "
                    f"not {hospital!r}",
                    rec.line,
                )


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- the search index --------------------------------------------------------------------

#: Entity type -> (name fields, alias fields, keyword fields).
_NAME_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "hospital": (("name_zh", "name_en"), ("aliases",), ()),
    "department": (("name_zh", "name_en"), ("aliases",), ()),
    "expert": (("name_zh", "name_en"), (), ()),
    "drug": (("generic_zh", "generic_en"), ("brands_zh", "aliases"), ()),
    "article": (("title_zh", "title_en"), (), ("keywords",)),
    "service": (("title_zh", "title_en"), (), ("keywords",)),
}


def index_row(
    etype: str, values: Mapping[str, Any], versions: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The ``kb_search_index`` row of one entity (its names, folded, with pinyin and tokens)."""
    names_f, aliases_f, keywords_f = _NAME_FIELDS[etype]
    named: list[tuple[str, str]] = [("n", values[f]) for f in names_f if values.get(f)]
    named += [("a", a) for f in aliases_f for a in values.get(f) or ()]
    named += [("k", k) for f in keywords_f for k in values.get(f) or ()]
    lines: list[str] = []
    folded: list[str] = []
    seen: set[str] = set()
    for kind, name in named:
        text = fold(name)
        key = text.replace(" ", "")
        if not key or key in seen:
            continue
        seen.add(key)
        folded.append(text)
        sound = " ".join(unit for unit, _start, _end in sounds(text))
        lines.append(f"{kind}\t{text}\t{sound}")
    strong, weak = index_tokens(folded)
    first = (names_f[0], names_f[1])
    return {
        "entity_type": etype,
        "entity_id": values["id"],
        "name_zh": values[first[0]],
        "name_en": values[first[1]],
        "hospital_id": values.get("hospital_id"),
        "department_id": values.get("department_id"),
        "expires_on": versions[-1]["expires_on"] if versions else None,
        "terms": "\n".join(lines),
        "strong": strong,
        "weak": weak,
    }


def _reindex(
    session: Session, etype: str, records: list[_Record], dialect: str, indexed: set[str]
) -> None:
    """Replace the search-index entries of ``records`` (``indexed``: the ids that have one)
    and, on PostgreSQL, their postings and token counts, computed in the database."""
    index_table = _table_of(m.SearchEntry)
    stale = [r.values["id"] for r in records if r.values["id"] in indexed]
    for chunk in _chunks(stale):
        where = (index_table.c.entity_type == etype) & index_table.c.entity_id.in_(chunk)
        if dialect == "postgresql":
            old_ids = list(session.scalars(select(index_table.c.id).where(where)))
            if old_ids:
                _count_tokens(session, old_ids, -1)
                postings = _table_of(m.SearchPosting)
                session.execute(delete(postings).where(postings.c.entry_id.in_(old_ids)))
        session.execute(delete(index_table).where(where))
    rows = [index_row(etype, r.values, r.versions) for r in records]
    new_ids: list[int] = []
    for chunk in _chunks(rows, 2000):
        if dialect == "postgresql":
            # The new ids come back with the insert: looking them up afterwards would scan
            # a table whose statistics are stale until the transaction ends.
            new_ids += session.scalars(
                index_table.insert().returning(index_table.c.id), list(chunk)
            ).all()
        else:
            session.execute(index_table.insert(), list(chunk))
    if dialect == "postgresql":
        _add_postings(session, new_ids)
        _count_tokens(session, new_ids, 1)
    if etype == "hospital":
        _bump_state(session, "hospitals")


_ENTRY_TOKENS = (
    "SELECT t FROM kb_search_index s CROSS JOIN LATERAL unnest(s.strong) t "
    "WHERE s.id = ANY(:ids) AND length(t) <= 200 "
    "UNION ALL SELECT '~' || t FROM kb_search_index s CROSS JOIN LATERAL unnest(s.weak) t "
    "WHERE s.id = ANY(:ids) AND length(t) < 200"
)


def _count_tokens(session: Session, ids: list[int], sign: int) -> None:
    """PostgreSQL: add (``sign`` 1) or remove (-1) the tokens of index entries ``ids`` to
    the per-token entry counts (weak tokens prefixed ``~``)."""
    if not ids:
        return
    if sign > 0:
        session.execute(
            text(
                "INSERT INTO kb_search_tokens (token, df) "  # noqa: S608 (a constant)
                f"SELECT t, count(*) FROM ({_ENTRY_TOKENS}) x GROUP BY t "
                "ON CONFLICT (token) DO UPDATE SET df = kb_search_tokens.df + excluded.df"
            ),
            {"ids": ids},
        )
        return
    session.execute(
        text(
            "UPDATE kb_search_tokens k SET df = k.df - x.n "  # noqa: S608 (a constant)
            f"FROM (SELECT t, count(*) AS n FROM ({_ENTRY_TOKENS}) y GROUP BY t) x "
            "WHERE k.token = x.t"
        ),
        {"ids": ids},
    )
    session.execute(text("DELETE FROM kb_search_tokens WHERE df <= 0"))


def _add_postings(session: Session, ids: list[int]) -> None:
    """PostgreSQL: the inverted-index rows of index entries ``ids``."""
    if not ids:
        return
    session.execute(
        text(
            "INSERT INTO kb_search_postings (token, entry_id) "
            "SELECT t, s.id FROM kb_search_index s CROSS JOIN LATERAL unnest(s.strong) t "
            "WHERE s.id = ANY(:ids) AND length(t) <= 200"
        ),
        {"ids": ids},
    )


def _bump_state(session: Session, name: str) -> None:
    """Tell searchers that part ``name`` of the index changed (they reload what they cache)."""
    table = _table_of(m.SearchState)
    current = session.scalar(select(table.c.version).where(table.c.name == name))
    if current is None:
        session.execute(table.insert().values(name=name, version=1))
    else:
        session.execute(update(table).where(table.c.name == name).values(version=current + 1))


# --- writing -----------------------------------------------------------------------------

_VERSION_COLUMNS = tuple(f.column for f in VERSION_FIELDS)


def _table(etype: str) -> Table:
    table = m.MODELS[etype].__table__
    assert isinstance(table, Table)
    return table


def _write(session: Session, records: list[_Record], now: Any, report: ImportReport) -> None:
    dialect = session.get_bind().dialect.name
    index_table = _table_of(m.SearchEntry)
    versions_table = _table_of(m.ArticleVersion)
    for etype in ORDER:
        batch = [r for r in records if r.etype == etype]
        if not batch:
            continue
        table = _table(etype)
        columns = [f.column for f in FORMATS[etype][2]]
        existing: dict[str, dict[str, Any]] = {}
        ids = [r.values["id"] for r in batch]
        for chunk in _chunks(ids):
            for row in session.execute(
                select(*(table.c[c] for c in columns)).where(table.c.id.in_(chunk))
            ).mappings():
                existing[row["id"]] = dict(row)
        old_versions: dict[str, list[dict[str, Any]]] = {}
        if etype == "article":
            for chunk in _chunks(ids):
                for row in session.execute(
                    select(versions_table)
                    .where(versions_table.c.article_id.in_(chunk))
                    .order_by(versions_table.c.article_id, versions_table.c.version)
                ).mappings():
                    old_versions.setdefault(row["article_id"], []).append(
                        {c: row[c] for c in _VERSION_COLUMNS}
                    )
        indexed: set[str] = set()
        for chunk in _chunks(ids):
            indexed.update(
                session.scalars(
                    select(index_table.c.entity_id).where(
                        index_table.c.entity_type == etype, index_table.c.entity_id.in_(chunk)
                    )
                )
            )
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        reindex: list[_Record] = []
        created = updated = unchanged = 0
        for rec in batch:
            values = {c: rec.values.get(c) for c in columns}
            values = {c: ([] if v is None and _is_list(etype, c) else v) for c, v in values.items()}
            rec.values = values
            old = existing.get(str(values["id"]))
            versions = [{c: v.get(c) for c in _VERSION_COLUMNS} for v in rec.versions]
            rec.versions = versions
            if old is None:
                inserts.append({**values, "updated_at": now})
                created += 1
                reindex.append(rec)
            elif old != values or (
                etype == "article" and old_versions.get(values["id"], []) != versions
            ):
                updates.append({**{f"v_{k}": v for k, v in values.items()}, "v_updated_at": now})
                updated += 1
                reindex.append(rec)
            else:
                unchanged += 1
                if values["id"] not in indexed:
                    reindex.append(rec)
        if inserts:
            session.execute(table.insert(), inserts)
        if updates:
            params: dict[str, Any] = {
                c: bindparam(f"v_{c}") for c in [*columns, "updated_at"] if c != "id"
            }
            session.execute(
                update(table).where(table.c.id == bindparam("v_id")).values(params),
                updates,
            )
        if etype == "article":
            changed = [r.values["id"] for r in reindex if r.values["id"] in existing]
            for chunk in _chunks(changed):
                session.execute(
                    delete(versions_table).where(versions_table.c.article_id.in_(chunk))
                )
            new_versions = [
                {**v, "article_id": r.values["id"]}
                for r in reindex
                if r.values["id"] not in existing or r.values["id"] in changed
                for v in r.versions
            ]
            if new_versions:
                session.execute(versions_table.insert(), new_versions)
        if reindex:
            _reindex(session, etype, reindex, dialect, indexed)
        report.created[etype] = created
        report.updated[etype] = updated
        report.unchanged[etype] = unchanged
        report.indexed += len(reindex)


def _table_of(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _is_list(etype: str, column: str) -> bool:
    return any(f.column == column and f.kind in ("list", "schedule") for f in FORMATS[etype][2])


# --- the public functions ----------------------------------------------------------------


def import_path(db: Database, path: str | Path, *, clock: Clock) -> ImportReport:
    """Import a knowledge-base file or directory, all or nothing (see the module docstring).

    Raises :class:`KbImportError` listing every problem (file, row, field) when anything is
    wrong; the database is then left exactly as it was.
    """
    root = Path(path)
    out = _Collector()
    if not root.exists():
        raise KbImportError([Problem(str(root), None, None, "no such file or directory")])
    records: list[_Record] = []
    versions: list[_VersionRecord] = []
    report = ImportReport()
    for file in _files(root):
        name = str(file)
        report.files.append(name)
        suffix = file.suffix.lower()
        if suffix in (".yaml", ".yml"):
            records.extend(_read_yaml(file, name, out))
        elif suffix == ".csv":
            recs, vers = _read_csv(file, name, out)
            records.extend(recs)
            versions.extend(vers)
        else:
            out.add(name, None, None, "not a .yaml, .yml or .csv file")
    _validate(records, versions, out)
    if out.problems:
        raise KbImportError(out.problems)
    with db.transaction() as session:
        _check_references(session, records, out)
        if out.problems:
            raise KbImportError(out.problems)
        _write(session, records, clock.now(), report)
        if report.indexed:
            _tune_index(session, large=report.indexed >= _REINDEX_TUNE)
    if report.indexed >= _REINDEX_TUNE:
        _vacuum(db)
    return report


def _vacuum(db: Database) -> None:
    """PostgreSQL, after a large import: VACUUM the search tables, so that look-ups are
    index-only scans (the visibility map is set) and autovacuum has nothing left to do
    while callers search."""
    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("kb_search_postings", "kb_search_tokens", "kb_search_index"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")


def _tune_index(session: Session, *, large: bool = True) -> None:
    """After an import: refresh planner statistics (PostgreSQL) or, after a large one, merge
    the FTS5 index segments (SQLite)."""
    if session.get_bind().dialect.name == "sqlite":
        if large:
            session.execute(text("INSERT INTO kb_search_fts(kb_search_fts) VALUES ('optimize')"))
    else:
        # Move new GIN entries out of the pending list (searched linearly) into the index.
        for index in _GIN_INDEXES:
            session.execute(text(f"SELECT gin_clean_pending_list('{index}'::regclass)"))
        for table in ("kb_search_index", "kb_search_postings", "kb_search_tokens"):
            session.execute(text(f"ANALYZE {table}"))


def load_demo(db: Database, clock: Clock) -> ImportReport:
    """Import the demo knowledge base (``knowledge_base/demo/``); idempotent."""
    return import_path(db, DEMO_DIR, clock=clock)


def rebuild_index(db: Database) -> int:
    """Rebuild every search-index row from the entities (after a change of index format)."""
    with db.transaction() as session:
        dialect = session.get_bind().dialect.name
        index_table = _table_of(m.SearchEntry)
        session.execute(delete(index_table))
        session.execute(delete(_table_of(m.SearchToken)))
        session.execute(delete(_table_of(m.SearchPosting)))
        rows = [
            index_row(etype, values, versions)
            for etype, values, versions in _iter_entities(session)
        ]
        for chunk in _chunks(rows, 2000):
            session.execute(index_table.insert(), list(chunk))
        if dialect == "postgresql":
            ids = list(session.scalars(select(index_table.c.id)))
            _add_postings(session, ids)
            _count_tokens(session, ids, 1)
        _bump_state(session, "hospitals")
        _tune_index(session)
        count = len(rows)
    _vacuum(db)
    return count


def _iter_entities(
    session: Session,
) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    versions_table = _table_of(m.ArticleVersion)
    all_versions: dict[str, list[dict[str, Any]]] = {}
    for row in session.execute(
        select(versions_table).order_by(versions_table.c.article_id, versions_table.c.version)
    ).mappings():
        all_versions.setdefault(row["article_id"], []).append({c: row[c] for c in _VERSION_COLUMNS})
    for etype in ORDER:
        table = _table(etype)
        columns = [f.column for f in FORMATS[etype][2]]
        for row in session.execute(
            select(*(table.c[c] for c in columns)).order_by(table.c.id)
        ).mappings():
            values = dict(row)
            yield etype, values, all_versions.get(values["id"], [])


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, date):
        return value.isoformat()
    return value


def _file_record(etype: str, values: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for spec in FORMATS[etype][2]:
        value = values.get(spec.column)
        if value is None:
            continue
        record[spec.name] = _plain(value)
    return record


def export_path(db: Database, path: str | Path, fmt: str = "yaml") -> list[Path]:
    """Write the whole knowledge base to ``path`` as YAML or CSV; returns the files written.

    YAML: ``path`` is a directory (one ``<section>.yaml`` per entity type) or a file name
    ending in ``.yaml``/``.yml`` (every section in one file). CSV: ``path`` is a directory
    (``<section>.csv`` per entity type plus ``article_versions.csv``).
    """
    if fmt not in ("yaml", "csv"):
        raise ValueError(f"unknown export format {fmt!r} (yaml or csv)")
    target = Path(path)
    sections: dict[str, list[dict[str, Any]]] = {etype: [] for etype in ORDER}
    versions: list[dict[str, Any]] = []
    with db.transaction() as session:
        for etype, values, vers in _iter_entities(session):
            record = _file_record(etype, values)
            if etype == "article":
                record["versions"] = [
                    {
                        f.name: _plain(v[f.column])
                        for f in VERSION_FIELDS
                        if v.get(f.column) is not None
                    }
                    for v in vers
                ]
                versions.extend({"article": values["id"], **ver} for ver in record["versions"])
            sections[etype].append(record)
    written: list[Path] = []
    if fmt == "yaml":
        single = target.suffix.lower() in (".yaml", ".yml")
        if single:
            target.parent.mkdir(parents=True, exist_ok=True)
            doc = {FORMATS[etype][0]: sections[etype] for etype in ORDER if sections[etype]}
            _dump_yaml(target, doc)
            return [target]
        target.mkdir(parents=True, exist_ok=True)
        for etype in ORDER:
            file = target / f"{FORMATS[etype][0]}.yaml"
            _dump_yaml(file, {FORMATS[etype][0]: sections[etype]})
            written.append(file)
        return written
    target.mkdir(parents=True, exist_ok=True)
    for etype in ORDER:
        specs = FORMATS[etype][2]
        file = target / f"{FORMATS[etype][1]}.csv"
        _write_csv(file, specs, sections[etype])
        written.append(file)
    file = target / f"{VERSIONS_CSV}.csv"
    _write_csv(file, (_f("article", "id"), *VERSION_FIELDS), versions)
    written.append(file)
    return written


def _dump_yaml(file: Path, doc: Mapping[str, Any]) -> None:
    text = yaml.safe_dump(dict(doc), allow_unicode=True, sort_keys=False, width=4096)
    file.write_text(text, encoding="utf-8")


def _write_csv(file: Path, specs: Sequence[FieldSpec], records: list[dict[str, Any]]) -> None:
    with file.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([s.name for s in specs])
        for record in records:
            row: list[str] = []
            for spec in specs:
                value = record.get(spec.name)
                if value is None:
                    row.append("")
                elif spec.kind == "list":
                    row.append(join_list(value))
                elif spec.kind == "schedule":
                    row.append(join_list(f"{s['weekday']}:{s['session']}" for s in value))
                elif isinstance(value, bool):
                    row.append("true" if value else "false")
                else:
                    row.append(str(value))
            writer.writerow(row)
