"""The booking backend contract: the same tests for the SQL backend and the FHIR R4 backend.

Both backends get the same clinics (:data:`CLINICS`): the SQL one in its tables, the FHIR one
in a local FHIR server over real HTTP (:mod:`tests.booking.fhir_server`). Every test of the
contract runs against both; the FHIR-only tests at the end cover what only a remote system
does (being down, slow, broken, or refusing the token).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from sqlalchemy.orm import Session

from callcenter.booking.fhir_backend import FhirBookingBackend
from callcenter.booking.ports import (
    BackendUnavailable,
    BookingBackend,
    PatientRef,
    Slot,
    SlotQuery,
    SlotUnavailable,
)
from callcenter.booking.schedules import import_schedules
from callcenter.booking.sql_backend import SqlBookingBackend
from callcenter.clock import FakeClock
from callcenter.config import ConfigError, load_config
from callcenter.db.engine import Database
from tests.booking.fhir_server import TOKEN, ClinicSpec, FhirTestServer, SlotSpec

TZ = ZoneInfo("Asia/Shanghai")
#: The FHIR backend ignores the caller's session.
NO_TX = cast(Session, None)
CLOCK = FakeClock(datetime(2026, 11, 26, 1, 0, tzinfo=UTC))
D1, D2, D3, D4 = date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3)
ID_SYSTEM_CN = "urn:oid:2.16.156.10011.1.5"
ID_SYSTEM_PASSPORT = "urn:oid:2.16.156.10011.1.11"
PATIENT = PatientRef(
    name="张三", id_type="cn_id", id_number="11010519491231002X", phone_e164="+8613800138000"
)
VISITOR = PatientRef(name="John Smith", id_type="passport", id_number="E12345678", phone_e164=None)

HOSPITALS = {"rj": "瑞金医院", "zs": "中山医院"}
DEPARTMENTS = {"rj-cardio": "rj", "rj-derm": "rj", "zs-cardio": "zs"}
EXPERTS = {"rj-wang": "rj-cardio", "rj-li": "rj-cardio"}


def slots(day: date, *places: tuple[str, int]) -> tuple[SlotSpec, ...]:
    """Half-hour slots of one day from ``(local start, capacity)`` pairs."""
    starts = [(datetime.combine(day, time.fromisoformat(hhmm), TZ), n) for hhmm, n in places]
    return tuple(SlotSpec(start, start + timedelta(minutes=30), n) for start, n in starts)


#: One clinic is one session of one department (general) or one expert on one date.
CLINICS = (
    ClinicSpec(
        "rj-cardio-d1-am",
        "rj",
        "rj-cardio",
        None,
        # 07:30 in Shanghai is 23:30 UTC the day before: still the 30th for the hotline.
        slots(D1, ("07:30", 2), ("08:00", 3), ("08:30", 1)),
        fee=Decimal("10.00"),
    ),
    ClinicSpec(
        "rj-cardio-d2-am", "rj", "rj-cardio", None, slots(D2, ("08:00", 3)), Decimal("10.00")
    ),
    # 07:30 on the 3rd is 23:30 UTC on the 2nd: not part of a search ending on the 2nd.
    ClinicSpec("rj-cardio-d4-am", "rj", "rj-cardio", None, slots(D4, ("07:30", 3), ("08:00", 3))),
    ClinicSpec(
        "rj-wang-d1-am",
        "rj",
        "rj-cardio",
        "rj-wang",
        slots(D1, ("08:00", 1), ("09:00", 2)),
        Decimal("50.00"),
    ),
    ClinicSpec(
        "rj-wang-d3-pm", "rj", "rj-cardio", "rj-wang", slots(D3, ("14:00", 2)), Decimal("50.00")
    ),
    ClinicSpec("rj-li-d2-pm", "rj", "rj-cardio", "rj-li", slots(D2, ("14:00", 2)), cancelled=True),
    ClinicSpec("rj-derm-d1-am", "rj", "rj-derm", None, slots(D1, ("08:00", 4))),
    ClinicSpec("zs-cardio-d1-am", "zs", "zs-cardio", None, slots(D1, ("08:00", 5))),
)


# -- the two backends ----------------------------------------------------------------------


@dataclass
class Harness:
    """A backend under test, the database whose sessions it is given, and the FHIR server."""

    backend: BookingBackend
    db: Database
    server: FhirTestServer | None = None

    def tx(self) -> AbstractContextManager[Session]:
        """The caller's session: a transaction for SQL; an idle session for a remote backend
        (which ignores it; a transaction would queue the threads on SQLite's writer lock)."""
        return self.db.transaction() if self.server is None else self.db.sessions()

    def find(self, query: SlotQuery) -> list[Slot]:
        with self.tx() as tx:
            return self.backend.find_slots(tx, query)

    def get(self, slot_id: str) -> Slot | None:
        with self.tx() as tx:
            return self.backend.get_slot(tx, slot_id)

    def reserve(self, slot_id: str, patient: PatientRef = PATIENT) -> str:
        with self.tx() as tx:
            return self.backend.reserve(tx, slot_id, patient)

    def release(self, slot_id: str, reference: str) -> None:
        with self.tx() as tx:
            self.backend.release(tx, slot_id, reference)

    def slot(self, clinic: str, hhmm: str) -> Slot:
        """The slot of ``clinic`` starting at ``hhmm`` (local), found through the backend."""
        spec = next(c for c in CLINICS if c.code == clinic)
        day = spec.slots[0].starts_at.date()
        query = SlotQuery(
            spec.hospital_id, spec.department_id, day, day, spec.expert_id, only_available=False
        )
        start = datetime.combine(day, time.fromisoformat(hhmm), TZ)
        found = [s for s in self.find(query) if s.clinic_id == clinic and s.starts_at == start]
        assert len(found) == 1, f"{clinic} {hhmm}: {found}"
        return found[0]


def seed_knowledge_base(db: Database) -> None:
    """The hospitals, departments and experts the clinics refer to (schedules check them)."""
    from knowledge_base.models import Department, Expert, Hospital

    now = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    with db.transaction() as tx:
        for hid, name in HOSPITALS.items():
            tx.add(Hospital(id=hid, name_zh=name, name_en=hid, aliases=[], updated_at=now))
        tx.flush()
        for did, hid in DEPARTMENTS.items():
            tx.add(Department(id=did, hospital_id=hid, name_zh=did, name_en=did, updated_at=now))
        tx.flush()
        for eid, did in EXPERTS.items():
            hid = DEPARTMENTS[did]
            tx.add(
                Expert(
                    id=eid, name_zh=eid, name_en=eid, hospital_id=hid, department_id=did,
                    updated_at=now,
                )
            )  # fmt: skip


def schedule_yaml(clinics: tuple[ClinicSpec, ...]) -> dict[str, object]:
    """The clinics in the schedule import format (local dates and times)."""
    documents = []
    for clinic in clinics:
        first = clinic.slots[0].starts_at.astimezone(TZ)
        documents.append(
            {
                "id": clinic.code,
                "hospital": clinic.hospital_id,
                "department": clinic.department_id,
                "expert": clinic.expert_id,
                "date": first.date().isoformat(),
                "session": "am" if first.hour < 12 else "pm" if first.hour < 18 else "evening",
                "fee": None if clinic.fee is None else str(clinic.fee),
                "slots": [
                    {
                        "start": f"{spec.starts_at.astimezone(TZ):%H:%M}",
                        "end": f"{spec.ends_at.astimezone(TZ):%H:%M}",
                        "capacity": spec.capacity,
                    }
                    for spec in clinic.slots
                ],
            }
        )
    return {"clinics": documents}


def seed_sql(
    db: Database, backend: SqlBookingBackend, clinics: tuple[ClinicSpec, ...], tmp: Path
) -> None:
    """Load the clinics the way hospital IT does: a schedule file, then 停诊 for cancelled ones."""
    seed_knowledge_base(db)
    path = tmp / "schedules.yaml"
    path.write_text(yaml.safe_dump(schedule_yaml(clinics), allow_unicode=True), encoding="utf-8")
    import_schedules(db, path, clock=CLOCK, tz=TZ)
    with db.transaction() as tx:
        for clinic in clinics:
            if clinic.cancelled:
                backend.close_clinic(tx, clinic.code, reason="test", by="test", now=CLOCK.now())


def fhir_backend(
    base_url: str, token: str = TOKEN, timeout_s: float = 5.0, **kwargs: httpx.BaseTransport
) -> FhirBookingBackend:
    """A FHIR backend on ``base_url`` with the test identifier systems."""
    return FhirBookingBackend(
        base_url,
        token,
        timeout_s=timeout_s,
        id_system_cn=ID_SYSTEM_CN,
        id_system_passport=ID_SYSTEM_PASSPORT,
        timezone=TZ,
        **kwargs,
    )


@pytest.fixture
def fhir_server() -> Iterator[FhirTestServer]:
    """A running FHIR server holding :data:`CLINICS`."""
    with FhirTestServer(page_size=7) as server:
        server.seed(CLINICS)
        yield server


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The test database (no other service is needed by a backend)."""
    handle = Database.from_url(database_url)
    yield handle
    handle.dispose()


@pytest.fixture(params=["sql", "fhir"])
def harness(request: pytest.FixtureRequest, db: Database, tmp_path: Path) -> Iterator[Harness]:
    """Each backend in turn, holding :data:`CLINICS`."""
    if request.param == "sql":
        backend = SqlBookingBackend(CLOCK)
        seed_sql(db, backend, CLINICS, tmp_path)
        yield Harness(backend, db)
        return
    server: FhirTestServer = request.getfixturevalue("fhir_server")
    fhir = fhir_backend(server.base_url)
    yield Harness(fhir, db, server)
    fhir.close()


def keys(found: list[Slot]) -> list[tuple[str, str]]:
    """``(clinic, local start)`` of each slot, in order."""
    return [(s.clinic_id, f"{s.starts_at.astimezone(TZ):%m-%d %H:%M}") for s in found]


# -- finding -------------------------------------------------------------------------------


def test_find_by_department_any_doctor(harness: Harness) -> None:
    found = harness.find(SlotQuery("rj", "rj-cardio", D1, D3))
    assert keys(found) == [
        ("rj-cardio-d1-am", "11-30 07:30"),
        ("rj-cardio-d1-am", "11-30 08:00"),
        ("rj-wang-d1-am", "11-30 08:00"),
        ("rj-cardio-d1-am", "11-30 08:30"),
        ("rj-wang-d1-am", "11-30 09:00"),
        ("rj-cardio-d2-am", "12-01 08:00"),
        ("rj-wang-d3-pm", "12-02 14:00"),
    ]
    assert all(s.status == "open" and s.available == s.capacity for s in found)


def test_find_general_clinics_only(harness: Harness) -> None:
    found = harness.find(SlotQuery("rj", "rj-cardio", D1, D3, expert_id=None, any_doctor=False))
    assert {s.clinic_id for s in found} == {"rj-cardio-d1-am", "rj-cardio-d2-am"}
    assert all(s.expert_id is None for s in found)


def test_find_by_expert(harness: Harness) -> None:
    found = harness.find(SlotQuery("rj", "rj-cardio", D1, D4, expert_id="rj-wang"))
    assert keys(found) == [
        ("rj-wang-d1-am", "11-30 08:00"),
        ("rj-wang-d1-am", "11-30 09:00"),
        ("rj-wang-d3-pm", "12-02 14:00"),
    ]
    assert {s.expert_id for s in found} == {"rj-wang"}


def test_slot_fields(harness: Harness) -> None:
    slot = harness.slot("rj-wang-d1-am", "09:00")
    assert (slot.hospital_id, slot.department_id, slot.expert_id) == ("rj", "rj-cardio", "rj-wang")
    assert slot.starts_at == datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    assert slot.ends_at == datetime(2026, 11, 30, 1, 30, tzinfo=UTC)
    assert (slot.capacity, slot.available, slot.status) == (2, 2, "open")
    assert slot.fee == Decimal("50.00")
    assert harness.slot("rj-derm-d1-am", "08:00").fee is None


def test_date_range_is_inclusive_in_local_time(harness: Harness) -> None:
    first_day = harness.find(SlotQuery("rj", "rj-cardio", D1, D1))
    assert {s.starts_at.astimezone(TZ).date() for s in first_day} == {D1}
    assert len(first_day) == 5  # 07:30 local is the day before in UTC, and still counts
    assert keys(harness.find(SlotQuery("rj", "rj-cardio", D3, D3))) == [
        ("rj-wang-d3-pm", "12-02 14:00")  # not 07:30 on the 3rd (23:30 UTC on the 2nd)
    ]
    assert keys(harness.find(SlotQuery("rj", "rj-cardio", D4, D4))) == [
        ("rj-cardio-d4-am", "12-03 07:30"),
        ("rj-cardio-d4-am", "12-03 08:00"),
    ]
    assert harness.find(SlotQuery("rj", "rj-cardio", D4 + timedelta(1), D4 + timedelta(9))) == []


def test_find_only_within_the_hospital_and_department(harness: Harness) -> None:
    assert keys(harness.find(SlotQuery("zs", "zs-cardio", D1, D4))) == [
        ("zs-cardio-d1-am", "11-30 08:00")
    ]
    assert keys(harness.find(SlotQuery("rj", "rj-derm", D1, D4))) == [
        ("rj-derm-d1-am", "11-30 08:00")
    ]
    assert harness.find(SlotQuery("zs", "rj-cardio", D1, D4)) == []
    assert harness.find(SlotQuery("rj", "no-such-department", D1, D4)) == []


def test_only_available_leaves_out_cancelled_and_full_slots(harness: Harness) -> None:
    everything = harness.find(SlotQuery("rj", "rj-cardio", D2, D2, only_available=False))
    assert [(s.clinic_id, s.status) for s in everything] == [
        ("rj-cardio-d2-am", "open"),
        ("rj-li-d2-pm", "cancelled"),
    ]
    assert keys(harness.find(SlotQuery("rj", "rj-cardio", D2, D2))) == [
        ("rj-cardio-d2-am", "12-01 08:00")
    ]
    full = harness.slot("rj-wang-d1-am", "08:00")
    harness.reserve(full.id)
    available = harness.find(SlotQuery("rj", "rj-cardio", D1, D1, expert_id="rj-wang"))
    assert [s.id for s in available] == [harness.slot("rj-wang-d1-am", "09:00").id]
    listed = harness.find(
        SlotQuery("rj", "rj-cardio", D1, D1, expert_id="rj-wang", only_available=False)
    )
    assert (listed[0].id, listed[0].available) == (full.id, 0)


def test_get_slot(harness: Harness) -> None:
    for slot in harness.find(SlotQuery("rj", "rj-cardio", D1, D4, only_available=False)):
        assert harness.get(slot.id) == slot
    assert harness.get("no-such-slot") is None
    assert harness.get("rj-wang-d1-am@2030-01-01T00:00:00Z") is None
    assert harness.get("") is None


# -- reserving and releasing ---------------------------------------------------------------


def test_reserve_takes_one_place(harness: Harness) -> None:
    slot = harness.slot("rj-cardio-d1-am", "08:00")
    first = harness.reserve(slot.id)
    second = harness.reserve(slot.id, VISITOR)
    assert isinstance(first, str)
    assert first != second
    after = harness.get(slot.id)
    assert after is not None
    assert (after.capacity, after.available, after.status) == (3, 1, "open")
    assert harness.get(harness.slot("rj-cardio-d1-am", "08:30").id) == harness.slot(
        "rj-cardio-d1-am", "08:30"
    )


def test_reserving_a_full_slot_fails(harness: Harness) -> None:
    slot = harness.slot("rj-wang-d1-am", "08:00")
    harness.reserve(slot.id)
    with pytest.raises(SlotUnavailable):
        harness.reserve(slot.id, VISITOR)
    after = harness.get(slot.id)
    assert after is not None
    assert after.available == 0


@pytest.mark.parametrize(
    "slot_id", ["no-such-slot", "rj-wang-d1-am@2030-01-01T00:00:00Z", "", "../Patient/1@x"]
)
def test_reserving_an_unknown_slot_fails(harness: Harness, slot_id: str) -> None:
    with pytest.raises(SlotUnavailable):
        harness.reserve(slot_id)


def test_reserving_a_cancelled_slot_fails(harness: Harness) -> None:
    slot = harness.slot("rj-li-d2-pm", "14:00")
    assert slot.status == "cancelled"
    with pytest.raises(SlotUnavailable):
        harness.reserve(slot.id)


def test_release_gives_the_place_back_once(harness: Harness) -> None:
    slot = harness.slot("rj-wang-d1-am", "09:00")
    kept = harness.reserve(slot.id)
    reference = harness.reserve(slot.id, VISITOR)
    assert harness.get(slot.id).available == 0  # type: ignore[union-attr]
    harness.release(slot.id, reference)
    assert harness.get(slot.id).available == 1  # type: ignore[union-attr]
    harness.release(slot.id, reference)
    assert harness.get(slot.id).available == 1  # type: ignore[union-attr]
    again = harness.reserve(slot.id, VISITOR)
    assert again != kept
    assert harness.get(slot.id).available == 0  # type: ignore[union-attr]
    with pytest.raises(SlotUnavailable):
        harness.reserve(slot.id)


def test_release_of_an_unknown_reference_is_harmless(harness: Harness) -> None:
    slot = harness.slot("rj-wang-d1-am", "09:00")
    harness.reserve(slot.id)
    for reference in ("no-such-reference", "Appointment/unknown", ""):
        harness.release(slot.id, reference)
    assert harness.get(slot.id).available == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("clinic", "hhmm", "places"), [("rj-cardio-d1-am", "08:30", 1), ("rj-cardio-d1-am", "08:00", 3)]
)
def test_concurrent_reservations_never_overbook(
    harness: Harness, clinic: str, hhmm: str, places: int
) -> None:
    slot = harness.slot(clinic, hhmm)
    assert slot.available == places
    threads = 20
    barrier = threading.Barrier(threads)
    won: list[str] = []
    lost: list[Exception] = []
    other: list[BaseException] = []

    def attempt() -> None:
        barrier.wait()
        try:
            won.append(harness.reserve(slot.id))
        except SlotUnavailable as exc:
            lost.append(exc)
        except BaseException as exc:
            other.append(exc)

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert other == []
    assert (len(won), len(lost)) == (places, threads - places)
    assert len(set(won)) == places
    after = harness.get(slot.id)
    assert after is not None
    assert after.available == 0


# -- FHIR only -----------------------------------------------------------------------------


@pytest.fixture
def fhir(fhir_server: FhirTestServer) -> Iterator[FhirBookingBackend]:
    """A FHIR backend on the seeded server, with a short timeout."""
    backend = fhir_backend(fhir_server.base_url, timeout_s=0.5)
    yield backend
    backend.close()


def _slot_id(backend: FhirBookingBackend, clinic: str = "rj-cardio-d1-am") -> str:
    found = backend.find_slots(NO_TX, SlotQuery("rj", "rj-cardio", D1, D1))
    return next(s.id for s in found if s.clinic_id == clinic)


def _every_call(backend: FhirBookingBackend, slot_id: str, reference: str) -> None:
    """Each port method must raise BackendUnavailable."""
    tx = NO_TX
    with pytest.raises(BackendUnavailable):
        backend.find_slots(tx, SlotQuery("rj", "rj-cardio", D1, D3))
    with pytest.raises(BackendUnavailable):
        backend.get_slot(tx, slot_id)
    with pytest.raises(BackendUnavailable):
        backend.reserve(tx, slot_id, PATIENT)
    with pytest.raises(BackendUnavailable):
        backend.release(tx, slot_id, reference)


def test_fhir_server_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = fhir_backend(f"http://127.0.0.1:{port}/fhir", timeout_s=0.5)
    _every_call(backend, "rj-cardio-d1-am@2026-11-30T00:00:00Z", "Appointment/x")


@pytest.mark.parametrize("failure", ["error", "slow", "garbage", "invalid"])
def test_fhir_broken_server(
    fhir: FhirBookingBackend, fhir_server: FhirTestServer, failure: str
) -> None:
    slot_id = _slot_id(fhir)
    reference = fhir.reserve(NO_TX, slot_id, PATIENT)
    fhir_server.failure = failure  # type: ignore[assignment]
    _every_call(fhir, slot_id, reference)
    fhir_server.failure = None
    assert len(fhir_server.appointments()) == 1


def test_fhir_slow_but_within_the_timeout(
    fhir: FhirBookingBackend, fhir_server: FhirTestServer
) -> None:
    fhir_server.failure = "slow"
    fhir_server.delay_s = 0.3
    assert fhir.find_slots(NO_TX, SlotQuery("zs", "zs-cardio", D1, D1))


def test_fhir_sends_the_token_and_asks_for_fhir_json(
    fhir: FhirBookingBackend, fhir_server: FhirTestServer
) -> None:
    slot_id = _slot_id(fhir)
    fhir.release(NO_TX, slot_id, fhir.reserve(NO_TX, slot_id, PATIENT))
    methods = {r.method for r in fhir_server.requests}
    assert methods == {"GET", "POST", "PUT"}
    for recorded in fhir_server.requests:
        assert recorded.headers["Authorization"] == f"Bearer {TOKEN}"
        assert recorded.headers["Accept"] == "application/fhir+json"
        if recorded.method != "GET":
            assert recorded.headers["Content-Type"] == "application/fhir+json"


def test_fhir_wrong_token(fhir_server: FhirTestServer) -> None:
    backend = fhir_backend(fhir_server.base_url, "not-the-token")
    _every_call(backend, "rj-cardio-d1-am@2026-11-30T00:00:00Z", "Appointment/x")
    assert fhir_server.appointments() == []


def test_fhir_appointment_names_the_patient(
    fhir: FhirBookingBackend, fhir_server: FhirTestServer
) -> None:
    slot_id = _slot_id(fhir)
    fhir.reserve(NO_TX, slot_id, PATIENT)
    fhir.reserve(NO_TX, slot_id, VISITOR)
    by_name = {a.participant[0].actor.display: a for a in fhir_server.appointments()}
    cn, passport = by_name[PATIENT.name], by_name[VISITOR.name]
    assert (cn.status, passport.status) == ("booked", "booked")
    for appointment, patient, system in (
        (cn, PATIENT, ID_SYSTEM_CN),
        (passport, VISITOR, ID_SYSTEM_PASSPORT),
    ):
        actor = appointment.participant[0].actor
        assert actor.display == patient.name
        assert (actor.identifier.system, actor.identifier.value) == (system, patient.id_number)
        contained = appointment.contained[0]
        assert contained.get_resource_type() == "Patient"
        assert appointment.slot[0].reference.startswith("Slot/")
        assert appointment.start == datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert cn.contained[0].telecom[0].value == "+8613800138000"
    assert passport.contained[0].telecom is None


def test_fhir_never_logs_the_patient(
    fhir: FhirBookingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slot_id = _slot_id(fhir)
    reference = fhir.reserve(NO_TX, slot_id, PATIENT)
    fhir.release(NO_TX, slot_id, reference)
    text = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "FHIR booked" in text
    for secret in (PATIENT.name, PATIENT.id_number, PATIENT.id_number[-8:], "13800138000"):
        assert secret not in text


def test_fhir_release_of_an_unknown_appointment_is_harmless(
    fhir: FhirBookingBackend, fhir_server: FhirTestServer
) -> None:
    fhir.release(NO_TX, _slot_id(fhir), "Appointment/unknown")
    fhir.release(NO_TX, _slot_id(fhir), "Patient/1")
    assert not [r for r in fhir_server.requests if r.method == "PUT"]


def test_fhir_inactive_schedule_is_a_cancelled_clinic(fhir_server: FhirTestServer) -> None:
    fhir_server.add_schedule("rj-wang-d4", "rj", "rj-cardio", "rj-wang", active=False)
    start = datetime.combine(D4, time(9), TZ)
    fhir_server.add_slot("rj-wang-d4", start, start + timedelta(minutes=30))
    backend = fhir_backend(fhir_server.base_url)
    query = SlotQuery("rj", "rj-cardio", D4, D4, expert_id="rj-wang", only_available=False)
    (slot,) = backend.find_slots(NO_TX, query)
    assert (slot.status, slot.capacity, slot.available) == ("cancelled", 1, 0)
    with pytest.raises(SlotUnavailable):
        backend.reserve(NO_TX, slot.id, PATIENT)
    assert backend.find_slots(NO_TX, SlotQuery("rj", "rj-cardio", D4, D4, "rj-wang")) == []


def test_fhir_follows_pages_on_the_same_server_only() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Schedule"):
            body = {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": [
                    {"relation": "next", "url": "https://elsewhere.example/fhir/Schedule?p=2"}
                ],
            }
            return httpx.Response(200, json=body)
        return httpx.Response(404)

    backend = fhir_backend("https://his.example/fhir", transport=httpx.MockTransport(handler))
    with pytest.raises(BackendUnavailable, match="another server"):
        backend.find_slots(NO_TX, SlotQuery("rj", "rj-cardio", D1, D1))


def test_fhir_from_config() -> None:
    overrides = {"booking": {"backend": "fhir", "fhir": {"base_url": "https://his.example/fhir"}}}
    config = load_config(environ={"FHIR_TOKEN": "abc"}, overrides=overrides)
    backend = FhirBookingBackend.from_config(config)
    assert backend.base_url == "https://his.example/fhir/"
    backend.close()
    with pytest.raises(ConfigError, match="FHIR_TOKEN"):
        FhirBookingBackend.from_config(load_config(environ={}, overrides=overrides))
    with pytest.raises(ConfigError, match="base_url"):
        FhirBookingBackend.from_config(load_config(environ={"FHIR_TOKEN": "abc"}))


def _one_place_his(post: httpx.Response) -> httpx.MockTransport:
    """A HIS with one free place at 09:00 on the 30th, answering a booking with ``post``."""
    schedule = {
        "resourceType": "Schedule",
        "id": "s1",
        "actor": [{"reference": "Organization/rj"}, {"reference": "HealthcareService/rj-cardio"}],
    }
    place = {
        "resourceType": "Slot",
        "id": "p1",
        "schedule": {"reference": "https://his.example/fhir/Schedule/s1"},
        "status": "free",
        "start": "2026-11-30T09:00:00+08:00",
        "end": "2026-11-30T09:30:00+08:00",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return post
        if request.url.path.endswith("/Schedule/s1"):
            return httpx.Response(200, json=schedule)
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": place}]}
        return httpx.Response(200, json=bundle)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("status", [409, 412, 422])
def test_fhir_place_taken_answers(status: int) -> None:
    taken = httpx.Response(status, json={"resourceType": "OperationOutcome", "issue": []})
    backend = fhir_backend("https://his.example/fhir", transport=_one_place_his(taken))
    with pytest.raises(SlotUnavailable):
        backend.reserve(NO_TX, "s1@2026-11-30T01:00:00Z", PATIENT)


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_fhir_other_booking_answers(status: int) -> None:
    backend = fhir_backend(
        "https://his.example/fhir", transport=_one_place_his(httpx.Response(status))
    )
    with pytest.raises(BackendUnavailable):
        backend.reserve(NO_TX, "s1@2026-11-30T01:00:00Z", PATIENT)


def test_fhir_created_appointment_named_by_location_only() -> None:
    created = httpx.Response(
        201, headers={"Location": "https://his.example/fhir/Appointment/a9/_history/1"}
    )
    backend = fhir_backend("https://his.example/fhir", transport=_one_place_his(created))
    slot = backend.get_slot(NO_TX, "s1@2026-11-30T01:00:00Z")
    assert slot is not None
    assert (slot.clinic_id, slot.capacity, slot.available) == ("s1", 1, 1)
    assert backend.reserve(NO_TX, slot.id, PATIENT) == "Appointment/a9"
