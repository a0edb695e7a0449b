"""A small FHIR R4 server for tests: Schedules, Slots and Appointments in memory, over real HTTP.

It serves what :class:`~callcenter.booking.fhir_backend.FhirBookingBackend` needs from a
hospital system, the way a FHIR server does it:

* ``GET /fhir/Schedule?actor=...`` (repeated: all must match; comma: any may match),
  ``GET /fhir/Schedule/<id>``;
* ``GET /fhir/Slot?schedule=...&status=...&start=<prefix><date or instant>`` (prefixes
  ``eq ne gt lt ge le``), ``GET /fhir/Slot/<id>``; searchset Bundles of ``page_size`` entries
  with ``next`` links;
* ``POST /fhir/Appointment``: books the referenced Slots atomically (all free, or 409 with an
  OperationOutcome and nothing changed); ``GET`` and ``PUT /fhir/Appointment/<id>`` (a PUT to
  ``cancelled`` frees the Slots; ``If-Match`` is checked against the version);
* a bearer token on every request (401 otherwise);
* ``failure`` to simulate a broken system: ``"error"`` (HTTP 500), ``"slow"`` (answers after
  ``delay_s``), ``"garbage"`` (200 with a body that is not JSON), ``"invalid"`` (200 with JSON
  that is not a valid resource).

Resources are validated with the ``fhir.resources.R4B`` models on the way in and out.
:meth:`FhirTestServer.seed` loads the same clinic descriptions the contract tests give the SQL
backend.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlencode

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.slot import Slot
from flask import Flask, Response, request
from pydantic import ValidationError
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from callcenter.booking.fhir_backend import FEE_EXTENSION

FHIR_JSON = "application/fhir+json"
TOKEN = "test-fhir-token"
Failure = Literal["error", "slow", "garbage", "invalid"] | None


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr."""

    def log_request(self, *_: Any) -> None:
        return


@dataclass(frozen=True)
class SlotSpec:
    """One time slot of a clinic: when it starts and ends, how many places it has."""

    starts_at: datetime
    ends_at: datetime
    capacity: int


@dataclass(frozen=True)
class ClinicSpec:
    """A clinic (one department's general clinic, or one expert's) and its slots."""

    code: str
    hospital_id: str
    department_id: str
    expert_id: str | None
    slots: tuple[SlotSpec, ...]
    fee: Decimal | None = None
    #: the whole clinic is cancelled (停诊)
    cancelled: bool = False


@dataclass
class Recorded:
    """One request the server received (for header assertions)."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _State:
    schedules: dict[str, Schedule] = field(default_factory=dict)
    slots: dict[str, Slot] = field(default_factory=dict)
    appointments: dict[str, Appointment] = field(default_factory=dict)


def _outcome(status: int, code: str, text: str) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return _json(body, status)


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(json.dumps(body), status=status, mimetype=FHIR_JSON, headers=headers)


def _dump(resource: Any) -> dict[str, Any]:
    return dict(resource.model_dump(mode="json", exclude_none=True))


def _parse_when(text: str) -> tuple[datetime, datetime]:
    """The range ``[lower, upper)`` a FHIR date or dateTime search value stands for."""
    if len(text) == 10:
        day = date.fromisoformat(text)
        lower = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return lower, lower + timedelta(days=1)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment, moment + timedelta(seconds=1)


def _date_matches(value: datetime, param: str) -> bool:
    prefix, rest = (param[:2], param[2:]) if param[:2].isalpha() else ("eq", param)
    lower, upper = _parse_when(rest)
    checks = {
        "eq": lower <= value < upper,
        "ne": not lower <= value < upper,
        "gt": value >= upper,
        "lt": value < lower,
        "ge": value >= lower,
        "le": value < upper,
    }
    if prefix not in checks:
        raise ValueError(f"unsupported prefix {prefix}")
    return checks[prefix]


def _refs_match(reference: str | None, values: str) -> bool:
    """Whether a reference matches one of the comma-separated search values."""
    return reference is not None and any(
        reference == v or reference.endswith("/" + v) for v in values.split(",")
    )


class FhirTestServer:
    """The server, its data and its failure switch; a context manager that runs it."""

    def __init__(self, token: str = TOKEN, page_size: int = 20) -> None:
        self.token = token
        self.page_size = page_size
        self.failure: Failure = None
        self.delay_s = 1.0
        self.requests: list[Recorded] = []
        self._state = _State()
        self._lock = threading.Lock()
        self._http: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    # -- running ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The FHIR base URL, e.g. ``http://127.0.0.1:54321/fhir``."""
        assert self._http is not None, "the server is not running"
        return f"http://127.0.0.1:{self._http.server_port}/fhir"

    def start(self) -> FhirTestServer:
        """Listen on a free port of 127.0.0.1 in a background thread."""
        self._http = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (requests in flight are not waited for)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FhirTestServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- data -------------------------------------------------------------------------------

    def add_schedule(
        self,
        schedule_id: str,
        hospital_id: str,
        department_id: str,
        expert_id: str | None = None,
        *,
        active: bool = True,
        fee: Decimal | None = None,
    ) -> Schedule:
        """Store a Schedule whose actors are the hospital, the department and the expert."""
        actors = [
            {"reference": f"Organization/{hospital_id}"},
            {"reference": f"HealthcareService/{department_id}"},
        ]
        if expert_id is not None:
            actors.append({"reference": f"Practitioner/{expert_id}"})
        body: dict[str, Any] = {
            "resourceType": "Schedule",
            "id": schedule_id,
            "active": active,
            "actor": actors,
        }
        if fee is not None:
            body["extension"] = [
                {"url": FEE_EXTENSION, "valueMoney": {"value": str(fee), "currency": "CNY"}}
            ]
        schedule = Schedule.model_validate(body)
        with self._lock:
            self._state.schedules[schedule_id] = schedule
        return schedule

    def add_slot(
        self, schedule_id: str, start: datetime, end: datetime, status: str = "free"
    ) -> Slot:
        """Store one Slot (one place) of a Schedule."""
        slot = Slot.model_validate(
            {
                "resourceType": "Slot",
                "id": uuid.uuid4().hex[:16],
                "schedule": {"reference": f"Schedule/{schedule_id}"},
                "status": status,
                "start": start.isoformat(),
                "end": end.isoformat(),
            }
        )
        with self._lock:
            self._state.slots[str(slot.id)] = slot
        return slot

    def seed(self, clinics: Iterable[ClinicSpec]) -> None:
        """Store each clinic as a Schedule and each place of its slots as a Slot.

        A cancelled clinic is an inactive Schedule whose places are ``busy-unavailable``.
        """
        for clinic in clinics:
            self.add_schedule(
                clinic.code,
                clinic.hospital_id,
                clinic.department_id,
                clinic.expert_id,
                active=not clinic.cancelled,
                fee=clinic.fee,
            )
            for spec in clinic.slots:
                status = "busy-unavailable" if clinic.cancelled else "free"
                for _ in range(spec.capacity):
                    self.add_slot(clinic.code, spec.starts_at, spec.ends_at, status)

    def slot_statuses(self, schedule_id: str) -> list[str]:
        """The statuses of a Schedule's Slots (for assertions)."""
        with self._lock:
            return sorted(
                str(s.status)
                for s in self._state.slots.values()
                if s.schedule.reference == f"Schedule/{schedule_id}"
            )

    def appointments(self) -> list[Appointment]:
        """Every Appointment stored (for assertions)."""
        with self._lock:
            return list(self._state.appointments.values())

    # -- HTTP -------------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask(__name__)

        @app.before_request
        def _checks() -> Response | None:
            self.requests.append(Recorded(request.method, request.path, dict(request.headers)))
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return _outcome(401, "login", "a valid bearer token is required")
            if self.failure == "slow":
                time.sleep(self.delay_s)
            elif self.failure == "error":
                return _outcome(500, "exception", "simulated failure")
            elif self.failure == "garbage":
                return Response("<html>Bad gateway</html>", status=200, mimetype=FHIR_JSON)
            elif self.failure == "invalid":
                return _json({"resourceType": "Bundle", "type": "searchset", "entry": 3})
            return None

        @app.get("/fhir/Schedule")
        def schedule_search() -> Response:
            actors = request.args.getlist("actor")
            with self._lock:
                found = [
                    s
                    for s in self._state.schedules.values()
                    if all(any(_refs_match(a.reference, v) for a in s.actor) for v in actors)
                ]
            return self._bundle(found)

        @app.get("/fhir/Slot")
        def slot_search() -> Response:
            schedules = request.args.getlist("schedule")
            statuses = request.args.getlist("status")
            starts = request.args.getlist("start")
            try:
                with self._lock:
                    found = [
                        s
                        for s in self._state.slots.values()
                        if all(_refs_match(s.schedule.reference, v) for v in schedules)
                        and all(s.status in v.split(",") for v in statuses)
                        and all(_date_matches(s.start, v) for v in starts if s.start)
                    ]
            except ValueError as exc:
                return _outcome(400, "invalid", str(exc))
            found.sort(key=lambda s: (s.start, s.id))
            return self._bundle(found)

        @app.get("/fhir/<kind>/<rid>")
        def read(kind: str, rid: str) -> Response:
            store: dict[str, Any] = {
                "Schedule": self._state.schedules,
                "Slot": self._state.slots,
                "Appointment": self._state.appointments,
            }.get(kind, {})
            with self._lock:
                resource = store.get(rid)
            if resource is None:
                return _outcome(404, "not-found", f"{kind}/{rid} is not known")
            return _json(_dump(resource), headers=self._etag(resource))

        @app.post("/fhir/Appointment")
        def book() -> Response:
            try:
                appointment = Appointment.model_validate_json(request.get_data())
            except ValidationError as exc:
                return _outcome(400, "structure", str(exc))
            slot_ids = [(r.reference or "").removeprefix("Slot/") for r in appointment.slot or []]
            if appointment.status != "booked" or not slot_ids:
                return _outcome(422, "business-rule", "a booked Appointment of a Slot is needed")
            with self._lock:
                slots = [self._state.slots.get(i) for i in slot_ids]
                if any(s is None or s.status != "free" for s in slots):
                    return _outcome(409, "conflict", "the slot is not free")
                for slot in slots:
                    assert slot is not None
                    slot.status = "busy"
                body = _dump(appointment)
                body.update(id=uuid.uuid4().hex[:16], meta={"versionId": "1"})
                stored = Appointment.model_validate(body)
                self._state.appointments[str(stored.id)] = stored
            location = f"{self.base_url}/Appointment/{stored.id}/_history/1"
            return _json(_dump(stored), 201, {"Location": location, **self._etag(stored)})

        @app.put("/fhir/Appointment/<rid>")
        def update(rid: str) -> Response:
            try:
                new = Appointment.model_validate_json(request.get_data())
            except ValidationError as exc:
                return _outcome(400, "structure", str(exc))
            if new.id != rid:
                return _outcome(400, "invalid", "the id in the body differs from the URL")
            with self._lock:
                old = self._state.appointments.get(rid)
                if old is None:
                    return _outcome(404, "not-found", f"Appointment/{rid} is not known")
                assert old.meta is not None
                wanted = request.headers.get("If-Match")
                if wanted is not None and wanted != self._etag(old)["ETag"]:
                    return _outcome(412, "conflict", "the Appointment has changed")
                if new.status == "cancelled" and old.status != "cancelled":
                    for ref in old.slot or []:
                        slot = self._state.slots.get((ref.reference or "").removeprefix("Slot/"))
                        if slot is not None and slot.status == "busy":
                            slot.status = "free"
                body = _dump(new)
                body["meta"] = {"versionId": str(int(old.meta.versionId or "1") + 1)}
                stored = Appointment.model_validate(body)
                self._state.appointments[rid] = stored
            return _json(_dump(stored), headers=self._etag(stored))

        return app

    @staticmethod
    def _etag(resource: Any) -> dict[str, str]:
        meta = getattr(resource, "meta", None)
        if meta is None or not meta.versionId:
            return {}
        return {"ETag": f'W/"{meta.versionId}"'}

    def _bundle(self, resources: list[Any]) -> Response:
        offset = int(request.args.get("_offset", "0"))
        page = resources[offset : offset + self.page_size]
        params = [(k, v) for k, v in request.args.items(multi=True) if k != "_offset"]
        links = [{"relation": "self", "url": request.url}]
        if offset + self.page_size < len(resources):
            query = urlencode([*params, ("_offset", str(offset + self.page_size))])
            links.append({"relation": "next", "url": f"{request.base_url}?{query}"})
        body = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(resources),
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{request.host_url}fhir/{r.get_resource_type()}/{r.id}",
                    "resource": _dump(r),
                    "search": {"mode": "match"},
                }
                for r in page
            ],
        }
        return _json(_dump(Bundle.model_validate(body)))
