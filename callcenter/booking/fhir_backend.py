"""The FHIR R4 booking backend: slot inventory in the hospital's own system (HIS).

Resources are parsed and built with the ``fhir.resources.R4B`` models (FHIR 4.3.0), whose
Schedule, Slot and Appointment are those of R4 (4.0.1). The package's default modules are R5
(5.0.0), whose resources differ (an Appointment has ``subject`` and ``cancellationReason``,
a Slot's ``serviceType`` is a CodeableReference), so they are not used. HTTP goes through one
``httpx`` client per backend, with ``Authorization: Bearer <FHIR_TOKEN>`` and
``Accept: application/fhir+json`` on every request.

Mapping (also in ``docs/booking-fhir.md``):

* one **Schedule** per clinic (``Slot.clinic_id`` = the Schedule id). Its ``actor`` list names
  ``Organization/<hospital_id>``, ``HealthcareService/<department_id>`` and, for an expert
  clinic, ``Practitioner/<expert_id>`` (no Practitioner actor: a general clinic). A Schedule
  with ``active: false`` is a cancelled clinic (停诊). An optional extension
  :data:`FEE_EXTENSION` (``valueMoney``) on the Schedule carries the registration fee.
* one FHIR **Slot per place**: our slot (a time range with a capacity) is the group of FHIR
  Slots of one Schedule with the same start. ``capacity`` = the places in the group (those not
  ``entered-in-error``), ``available`` = the ``free`` ones. A group whose places are all
  ``busy-unavailable`` is cancelled. Our slot id is ``<schedule id>@<start, UTC>``, for example
  ``cardio-wang@2026-11-30T01:00:00Z``.
* reserving = ``POST Appointment`` (``status: booked``) for one free place, the patient
  contained in it (identifier by ID type, name, phone) and referenced as a participant. The
  HIS answers 409, 412 or 422 when the place was taken meanwhile; the next free place is tried,
  and :class:`SlotUnavailable` is raised when none is left. The reference returned is
  ``Appointment/<id>``.
* releasing = read the Appointment and ``PUT`` it back with ``status: cancelled`` (with
  ``If-Match`` when the HIS versions resources); an Appointment already cancelled or gone is
  left alone, so releasing twice is harmless.

Searches (standard search parameters only): ``Schedule?actor=Organization/<h>&actor=
HealthcareService/<d>[&actor=Practitioner/<e>]``, ``Slot?schedule=Schedule/<a>,Schedule/<b>
&start=ge<first day 00:00>&start=lt<day after the last 00:00>`` (local midnight of the
hotline's time zone, with its offset), ``Slot?schedule=Schedule/<a>&start=eq<instant>``
(one slot's places); ``next`` links of a searchset Bundle are followed on the same server.
Slots are searched in every status: the busy ones count towards the capacity.

Failures: no connection, a timeout, a 5xx, 401/403, any other unexpected status, a body that
is not JSON or not a valid FHIR resource all raise :class:`BackendUnavailable`. Logs name slots,
Appointments and HTTP statuses, never a patient's name, ID number or phone number.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.slot import Slot as FhirSlot
from pydantic import ValidationError
from sqlalchemy.orm import Session

from ..config import Config, ConfigError
from .ports import BackendUnavailable, PatientRef, Slot, SlotQuery, SlotUnavailable

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
#: Extension on a Schedule carrying the registration fee (``valueMoney``).
FEE_EXTENSION = "urn:health-hotline:fhir:StructureDefinition:registration-fee"
#: Statuses answered to a booking of a place someone else took.
TAKEN = frozenset({409, 412, 422})
#: Searchset pages followed at most (a runaway ``next`` chain is a broken server).
MAX_PAGES = 100
#: Schedules named in one Slot search (keeps the URL short).
SCHEDULES_PER_SEARCH = 40
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PLACE_STATUSES = frozenset({"free", "busy", "busy-tentative", "busy-unavailable"})

R = TypeVar("R", bound=Resource)


class FhirBookingBackend:
    """Slot inventory in a hospital information system reached over FHIR R4 (R4B models)."""

    name = "fhir"
    #: reservations are made in the HIS at once, outside the caller's transaction: the
    #: booking service releases them itself when its own transaction fails
    transactional = False

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float,
        id_system_cn: str,
        id_system_passport: str,
        timezone: str | tzinfo = "Asia/Shanghai",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the FHIR base URL must start with http:// or https://")
        self.base_url = base_url.rstrip("/") + "/"
        self.id_systems = {"cn_id": id_system_cn, "passport": id_system_passport}
        self.tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": FHIR_JSON},
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_config(cls, config: Config) -> FhirBookingBackend:
        """Build from ``booking.fhir`` and ``FHIR_TOKEN``; :class:`ConfigError` if one is unset."""
        fhir = config.settings.booking.fhir
        config.secrets.require("FHIR_TOKEN")
        if not fhir.base_url:
            raise ConfigError("booking.fhir.base_url: must be set when booking.backend is fhir")
        return cls(
            fhir.base_url,
            config.secrets.fhir_token or "",
            timeout_s=fhir.timeout_s,
            id_system_cn=fhir.id_system_cn,
            id_system_passport=fhir.id_system_passport,
            timezone=config.timezone,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    # -- the port ---------------------------------------------------------------------------

    def find_slots(self, tx: Session, query: SlotQuery) -> list[Slot]:
        """Slots matching ``query``, ordered by start time then expert (general clinics first)."""
        ids = [query.hospital_id, query.department_id]
        if query.expert_id is not None:
            ids.append(query.expert_id)
        if not all(_FHIR_ID.fullmatch(i) for i in ids):
            return []  # not a FHIR id: nothing in the HIS can have it
        actors = [f"Organization/{query.hospital_id}", f"HealthcareService/{query.department_id}"]
        if query.expert_id is not None:
            actors.append(f"Practitioner/{query.expert_id}")
        schedules = {
            s.id: s
            for s in self._search(Schedule, "Schedule", [("actor", a) for a in actors])
            if s.id is not None
        }
        if query.expert_id is None and not query.any_doctor:
            schedules = {k: s for k, s in schedules.items() if _actor(s, "Practitioner") is None}
        lower = datetime.combine(query.start, time(), self.tz)
        upper = datetime.combine(query.end + timedelta(days=1), time(), self.tz)
        places: list[FhirSlot] = []
        ordered = sorted(schedules)
        for first in range(0, len(ordered), SCHEDULES_PER_SEARCH):
            chunk = ordered[first : first + SCHEDULES_PER_SEARCH]
            params = [
                ("schedule", ",".join(f"Schedule/{sid}" for sid in chunk)),
                ("start", "ge" + lower.isoformat()),
                ("start", "lt" + upper.isoformat()),
            ]
            places += self._search(FhirSlot, "Slot", params)
        slots = [
            slot
            for slot in self._slots(schedules, places)
            if lower <= slot.starts_at < upper
            and (not query.only_available or (slot.status == "open" and slot.available > 0))
        ]
        return sorted(slots, key=lambda s: (s.starts_at, s.expert_id or "", s.id))

    def get_slot(self, tx: Session, slot_id: str) -> Slot | None:
        """One slot by id, or ``None`` when the id is malformed or the HIS does not know it."""
        return self._group(slot_id)[0]

    def reserve(self, tx: Session, slot_id: str, patient: PatientRef) -> str:
        """Book one free place of the slot; return ``Appointment/<id>``."""
        slot, places = self._group(slot_id)
        if slot is None or slot.status != "open":
            raise SlotUnavailable(slot_id)
        for place in places:
            if place.status != "free":
                continue
            response = self._request(
                "POST",
                "Appointment",
                json=self._appointment(slot, place, patient),
                headers={"Content-Type": FHIR_JSON, "Prefer": "return=representation"},
            )
            if response.status_code in TAKEN:
                log.info("FHIR place Slot/%s taken meanwhile (%s)", place.id, response.status_code)
                continue
            if response.status_code not in (200, 201):
                raise self._unexpected(response)
            reference = self._created_reference(response)
            log.info("FHIR booked Slot/%s as %s", place.id, reference)
            return reference
        raise SlotUnavailable(slot_id)

    def release(self, tx: Session, slot_id: str, reference: str) -> None:
        """Cancel the Appointment ``reference``; nothing to do if it is cancelled, gone or not
        an Appointment reference at all (like the SQL backend with an unknown reference)."""
        kind, _, appointment_id = reference.partition("/")
        if kind != "Appointment" or not _FHIR_ID.fullmatch(appointment_id):
            # Not one of ours (another backend's reference): nothing here to give back.
            log.warning("not an Appointment reference for slot %s; nothing to release", slot_id)
            return
        for _attempt in range(3):
            response = self._request("GET", f"Appointment/{appointment_id}")
            if response.status_code in (404, 410):
                log.warning("FHIR %s not found; nothing to release", reference)
                return
            if response.status_code != 200:
                raise self._unexpected(response)
            appointment = self._parse(Appointment, response)
            if appointment.status == "cancelled":
                return
            body = response.json()
            body["status"] = "cancelled"
            headers = {"Content-Type": FHIR_JSON}
            if appointment.meta is not None and appointment.meta.versionId:
                headers["If-Match"] = f'W/"{appointment.meta.versionId}"'
            response = self._request(
                "PUT", f"Appointment/{appointment_id}", json=body, headers=headers
            )
            if response.status_code in (200, 201):
                log.info("FHIR cancelled %s", reference)
                return
            if response.status_code not in (409, 412):
                raise self._unexpected(response)
            # Changed by someone else since it was read: read it again.
        raise BackendUnavailable(f"{reference} kept changing while being cancelled")

    # -- mapping ----------------------------------------------------------------------------

    def _group(self, slot_id: str) -> tuple[Slot | None, list[FhirSlot]]:
        """Our slot ``slot_id`` and its FHIR places, or ``(None, [])``."""
        schedule_id, _, start_text = slot_id.rpartition("@")
        if not _FHIR_ID.fullmatch(schedule_id):
            return None, []
        try:
            start = datetime.strptime(start_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None, []
        response = self._request("GET", f"Schedule/{schedule_id}")
        if response.status_code in (404, 410):
            return None, []
        if response.status_code != 200:
            raise self._unexpected(response)
        schedule = self._parse(Schedule, response)
        params = [("schedule", f"Schedule/{schedule_id}"), ("start", "eq" + _instant(start))]
        places = [p for p in self._search(FhirSlot, "Slot", params) if p.start == start]
        slots = self._slots({schedule_id: schedule}, places)
        return (slots[0] if slots else None), places

    def _slots(self, schedules: dict[str, Schedule], places: Iterable[FhirSlot]) -> list[Slot]:
        """Group FHIR places by schedule and start into our slots."""
        groups: dict[tuple[str, datetime], list[FhirSlot]] = defaultdict(list)
        for place in places:
            schedule_id = _ref_id(place.schedule.reference, "Schedule")
            if (
                schedule_id not in schedules
                or place.start is None
                or place.end is None
                or place.status not in _PLACE_STATUSES
            ):
                continue
            groups[(schedule_id, place.start.astimezone(UTC))].append(place)
        slots = []
        for (schedule_id, start), members in groups.items():
            schedule = schedules[schedule_id]
            hospital = _actor(schedule, "Organization")
            department = _actor(schedule, "HealthcareService")
            if hospital is None or department is None:
                log.warning(
                    "FHIR Schedule/%s has no Organization or HealthcareService", schedule_id
                )
                continue
            statuses = [p.status for p in members]
            cancelled = schedule.active is False or all(s == "busy-unavailable" for s in statuses)
            end = max(p.end for p in members if p.end is not None)
            slots.append(
                Slot(
                    id=f"{schedule_id}@{_instant(start)}",
                    clinic_id=schedule_id,
                    hospital_id=hospital,
                    department_id=department,
                    expert_id=_actor(schedule, "Practitioner"),
                    starts_at=start.astimezone(self.tz),
                    ends_at=end.astimezone(self.tz),
                    capacity=len(members),
                    available=0 if cancelled else statuses.count("free"),
                    fee=_fee(schedule),
                    status="cancelled" if cancelled else "open",
                )
            )
        return slots

    def _appointment(self, slot: Slot, place: FhirSlot, patient: PatientRef) -> dict[str, Any]:
        """The Appointment booking ``place`` for ``patient`` (validated before it is sent)."""
        identifier = {"system": self.id_systems[patient.id_type], "value": patient.id_number}
        contained: dict[str, Any] = {
            "resourceType": "Patient",
            "id": "patient",
            "identifier": [identifier],
            "name": [{"text": patient.name}],
        }
        if patient.phone_e164:
            contained["telecom"] = [{"system": "phone", "value": patient.phone_e164}]
        body: dict[str, Any] = {
            "resourceType": "Appointment",
            "status": "booked",
            "contained": [contained],
            "slot": [{"reference": f"Slot/{place.id}"}],
            "start": _instant(slot.starts_at),
            "end": _instant(slot.ends_at),
            "participant": [
                {
                    "actor": {
                        "reference": "#patient",
                        "type": "Patient",
                        "identifier": identifier,
                        "display": patient.name,
                    },
                    "required": "required",
                    "status": "accepted",
                }
            ],
        }
        return Appointment.model_validate(body).model_dump(mode="json", exclude_none=True)

    # -- HTTP -------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        query = tuple(params) if params else None
        try:
            response = self._client.request(method, url, params=query, json=json, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("FHIR %s %s failed: %s", method, url.split("?")[0], type(exc).__name__)
            raise BackendUnavailable(f"the hospital system did not answer ({exc})") from exc
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise self._unexpected(response)
        return response

    def _search(self, model: type[R], kind: str, params: list[tuple[str, str]]) -> Iterator[R]:
        """Every ``kind`` resource of a searchset, following ``next`` links on this server."""
        url: str | None = kind
        page_params: list[tuple[str, str]] | None = params
        for _page in range(MAX_PAGES):
            if url is None:
                return
            response = self._request("GET", url, params=page_params)
            if response.status_code != 200:
                raise self._unexpected(response)
            bundle = self._parse(Bundle, response)
            for entry in bundle.entry or []:
                if isinstance(entry.resource, model):
                    yield entry.resource
            url = next((link.url for link in bundle.link or [] if link.relation == "next"), None)
            if url is not None and not url.startswith(self.base_url):
                raise BackendUnavailable("the hospital system linked a page on another server")
            page_params = None
        raise BackendUnavailable(f"the hospital system returned more than {MAX_PAGES} pages")

    def _parse(self, model: type[R], response: httpx.Response) -> R:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            log.warning(
                "FHIR %s answered with an invalid %s (%d errors)",
                response.request.url.path,
                model.__name__,
                exc.error_count(),
            )
            raise BackendUnavailable("the hospital system answered with invalid FHIR") from exc

    def _created_reference(self, response: httpx.Response) -> str:
        if response.content:
            appointment = self._parse(Appointment, response)
            if appointment.id:
                return f"Appointment/{appointment.id}"
        # Prefer: return=minimal servers answer with a Location header only.
        location = response.headers.get("Location", "")
        match = re.search(r"Appointment/([A-Za-z0-9\-.]{1,64})(?:/_history/|$)", location)
        if match is None:
            raise BackendUnavailable("the hospital system did not say which Appointment it made")
        return f"Appointment/{match.group(1)}"

    def _unexpected(self, response: httpx.Response) -> BackendUnavailable:
        request = response.request
        log.warning("FHIR %s %s: HTTP %d", request.method, request.url.path, response.status_code)
        return BackendUnavailable(f"the hospital system answered HTTP {response.status_code}")


def _instant(moment: datetime) -> str:
    """A FHIR instant in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ref_id(reference: str | None, kind: str) -> str | None:
    """The id in a (relative or absolute, possibly versioned) reference to a ``kind``."""
    if not reference:
        return None
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == kind:
        return parts[-1]
    return None


def _actor(schedule: Schedule, kind: str) -> str | None:
    """The id of the schedule's first actor of type ``kind``."""
    for actor in schedule.actor or []:
        found = _ref_id(actor.reference, kind)
        if found is not None:
            return found
    return None


def _fee(schedule: Schedule) -> Decimal | None:
    for extension in schedule.extension or []:
        if extension.url == FEE_EXTENSION and extension.valueMoney is not None:
            value = extension.valueMoney.value
            return None if value is None else Decimal(str(value))
    return None
