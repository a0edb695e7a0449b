"""The booking service: real-name patients, bookings with visit numbers and passwords, the
rules, visit-password checks with lockout, cancellations and 停诊, and the SMS they cause.

One :class:`BookingService` serves the IVR (through the lead's IVR actions), the agents'
console and the ``callcenter booking`` commands. Slot inventory comes from a
:class:`~callcenter.booking.ports.BookingBackend` (the built-in SQL one or a hospital's
system); everything else lives in this database. Every public method takes an optional
``tx``: given, it works inside that open session (in a savepoint, so a refusal undoes only its
own writes; the caller commits); omitted, it runs its own transaction. SMS are written to the
outbox in the same transaction as the change that causes them.

How a caller proves a booking is theirs: :meth:`BookingService.verify` with the visit number
and password. Every attempt is recorded in ``booking_pin_attempts``; a successful one is what
later calls in the same phone call (``call_id``) rely on (:meth:`~BookingService.lookup`,
:meth:`~BookingService.cancel`), so the password itself never has to be kept anywhere.
Operators act under their own name instead, and each of their actions writes an audit row.

Refusals a person should hear raise :class:`~callcenter.booking.rules.BookingRefused` with a
:class:`~callcenter.booking.rules.Refusal` (a machine ``code``, zh-CN and English messages).
Logs name bookings and patients by their row ids only: never a name, identity number, phone
number or password.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Literal, Protocol

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from knowledge_base import models as kb

from ..clock import Clock
from ..config import BookingConfig
from ..db.engine import Database
from ..db.models import AuditEntry
from ..phone import InvalidPhoneNumber, mask, normalize
from . import rules
from .crypto import BookingSecrets, new_password, new_visit_number
from .identity import InvalidIdNumber, normalize_id, normalize_name, same_name
from .models import Booking, Patient, PinAttempt
from .ports import (
    BackendUnavailable,
    BookingBackend,
    IdType,
    PatientRef,
    Slot,
    SlotQuery,
    SlotUnavailable,
)
from .rules import BookingRefused

log = logging.getLogger(__name__)

Channel = Literal["ivr", "operator"]
Outcome = Literal["ok", "wrong", "locked", "expired", "unknown"]
#: how long a successful password check in a call authorises that call's requests
VERIFIED_FOR = timedelta(hours=1)
VISIT_NUMBER_TRIES = 8


class OutboxPort(Protocol):
    """What the service needs of :class:`callcenter.messaging.outbox.Outbox`."""

    def enqueue(
        self,
        session: Session,
        *,
        channel: Literal["sms"],
        to_e164: str,
        template: str,
        language: str,
        params: dict[str, str],
        dedupe_key: str,
        now: datetime,
        sealed: dict[str, str] | None = None,
        essential: bool = False,
        urgent: bool = False,
        call_id: int | None = None,
    ) -> bool:
        """Write one message in ``session``; ``False`` if ``dedupe_key`` exists already."""
        ...


# --- what the service takes and gives --------------------------------------------------------


@dataclass(frozen=True)
class BookingRequest:
    """A booking as the caller or operator gives it.

    ``name``, ``id_number`` and ``contact_phone`` are raw input: the service validates and
    normalises them (refusal codes ``invalid_name``, ``invalid_id_number``,
    ``invalid_phone``). ``created_by`` is ``"ivr"`` or the operator's user name.
    """

    slot_id: str
    name: str
    id_type: IdType
    id_number: str
    contact_phone: str
    channel: Channel = "ivr"
    created_by: str = "ivr"
    language: str = "zh-CN"
    #: ``calls.id`` when booked during a call (the SMS row points at it)
    call_id: int | None = None


@dataclass(frozen=True)
class Labels:
    """How a booking or slot is named to people, in one language (also the SMS params)."""

    hospital: str
    department: str
    doctor: str
    when: str


@dataclass(frozen=True)
class BookingView:
    """A booking as shown after verification (IVR) or to an operator (audited).

    ``patient_name`` is personal data: show it, never log it.
    """

    visit_number: str
    status: str
    patient_id: int
    patient_name: str
    id_type: str
    id_last4: str
    patient_locked: bool
    hospital_id: str
    department_id: str
    expert_id: str | None
    clinic_id: str
    slot_id: str
    visit_date: date
    starts_at: datetime
    ends_at: datetime
    fee: Decimal | None
    contact_phone_masked: str
    language: str
    channel: str
    created_by: str
    created_at: datetime
    cancel_deadline: datetime
    #: ``True`` while the booking is active and before the cancellation deadline
    cancellable: bool
    password_expires_at: datetime
    cancel_reason: str | None
    labels: Mapping[str, Labels] = field(default_factory=dict)


@dataclass(frozen=True)
class BookingReceipt:
    """A new booking. ``password`` is the only copy in clear: read it out once, then drop it.

    It also went by SMS (sealed in the outbox) when ``sms_queued``.
    """

    visit_number: str
    password: str
    booking: BookingView
    sms_queued: bool

    def __repr__(self) -> str:
        return f"BookingReceipt(visit_number={self.visit_number!r}, password='******')"


@dataclass(frozen=True)
class Verification:
    """The result of a visit-password check.

    ``outcome``: ``ok`` (``booking`` is set), ``wrong`` (try again: ``attempts_left``),
    ``unknown`` (no such visit number), ``expired`` (right password, but past
    ``password_expires_at``), ``locked`` (``locked_scope`` ``call``: this call used up its
    attempts, hand over to an agent; ``patient``: the patient is locked until an agent
    unlocks, whatever password is given).
    """

    outcome: Outcome
    visit_number: str
    booking: BookingView | None = None
    attempts_left: int | None = None
    locked_scope: Literal["call", "patient"] | None = None
    #: :meth:`BookingService.resend_sms` only: a new SMS was written to the outbox
    sms_queued: bool = False


@dataclass(frozen=True)
class CancelResult:
    """``cancelled`` now, or ``already_cancelled`` before (cancelling is idempotent)."""

    outcome: Literal["cancelled", "already_cancelled"]
    booking: BookingView
    sms_queued: bool


@dataclass(frozen=True)
class PasswordReceipt:
    """A new visit password (operator reset); the clear ``password`` is shown once at most."""

    visit_number: str
    password: str
    sms_queued: bool

    def __repr__(self) -> str:
        return f"PasswordReceipt(visit_number={self.visit_number!r}, password='******')"


@dataclass(frozen=True)
class PatientView:
    """A patient as operators see them (``name`` is personal data: never log it)."""

    id: int
    name: str
    id_type: str
    id_last4: str
    locked: bool
    locked_at: datetime | None


@dataclass(frozen=True)
class ClinicCancellation:
    """What :meth:`BookingService.cancel_clinic` did."""

    clinic_id: str
    #: ``False`` when the clinic was cancelled already (the call changed nothing new)
    newly_cancelled: bool
    bookings_cancelled: int
    sms_queued: int


@dataclass(frozen=True)
class _Precheck:
    """A password compared before the locking transaction, with the hash it was checked
    against (``stored`` empty: no such visit number then)."""

    stored: str
    right: bool


class ClinicAdmin(Protocol):
    """A backend that manages clinics itself (the SQL backend) and can cancel one."""

    def close_clinic(
        self, tx: Session, clinic_id: str, *, reason: str, by: str, now: datetime
    ) -> Any:
        """Cancel the clinic and close its slots; return an object with ``newly_cancelled``."""
        ...


# --- the service ------------------------------------------------------------------------------


def _digits(raw: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", raw or "") if not ch.isspace())


_WEEKDAYS_ZH = "一二三四五六日"


def call_failures(s: Session, call_id: int) -> int:
    """Wrong or unknown visit numbers / passwords typed in one call (the per-call limit)."""
    return int(
        s.scalar(
            select(func.count())
            .select_from(PinAttempt)
            .where(PinAttempt.call_id == call_id, PinAttempt.outcome.in_(("wrong", "unknown")))
        )
        or 0
    )


def patient_failures(s: Session, patient: Patient, now: datetime) -> int:
    """A patient's wrong passwords in the last 24 hours, since an agent last unlocked them."""
    since = now - timedelta(hours=24)
    if patient.unlocked_at is not None and patient.unlocked_at > since:
        since = patient.unlocked_at
    return int(
        s.scalar(
            select(func.count())
            .select_from(PinAttempt)
            .where(
                PinAttempt.patient_id == patient.id,
                PinAttempt.outcome == "wrong",
                PinAttempt.at > since,
            )
        )
        or 0
    )


class BookingService:
    """Bookings for callers and operators (see the module docstring).

    :param db: the database
    :param backend: where slots live (:class:`~callcenter.booking.sql_backend.SqlBookingBackend`
        or a hospital's system)
    :param outbox: the transactional outbox (:class:`callcenter.messaging.outbox.Outbox`)
    :param clock: the clock
    :param settings: ``config.settings.booking``
    :param secret_key: ``SECRET_KEY`` (identity-number HMAC and password pepper derive from it)
    :param timezone: the hotline's local time zone (``config.timezone``)
    """

    def __init__(
        self,
        db: Database,
        backend: BookingBackend,
        outbox: OutboxPort,
        clock: Clock,
        settings: BookingConfig,
        secret_key: str,
        timezone: tzinfo,
    ) -> None:
        self.db = db
        self.backend = backend
        self.outbox = outbox
        self.clock = clock
        self.settings = settings
        self.secrets = BookingSecrets(secret_key, cost=settings.password_hash_cost)
        self.tz = timezone
        self._transactional = bool(getattr(backend, "transactional", False))

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _tx(self, tx: Session | None) -> Iterator[Session]:
        if tx is not None:
            with tx.begin_nested():
                yield tx
            return
        with self.db.transaction() as session:
            yield session

    def _today(self) -> date:
        return self.clock.now().astimezone(self.tz).date()

    def _audit(
        self,
        s: Session,
        actor: str,
        action: str,
        subject_type: str,
        subject_id: str,
        reason: str | None = None,
        **detail: Any,
    ) -> None:
        s.add(
            AuditEntry(
                at=self.clock.now(),
                actor=actor[:64],
                action=action,
                subject_type=subject_type,
                subject_id=subject_id,
                reason=(reason or None) and reason[:200],
                detail=detail,
            )
        )

    @staticmethod
    def _operator(operator: str | None) -> str:
        name = (operator or "").strip()
        if not name or len(name) > 64:
            raise ValueError("an operator action needs the operator's user name (1-64 chars)")
        return name

    @staticmethod
    def _reason(reason: str | None) -> str:
        text_ = " ".join((reason or "").split())
        if not text_:
            raise BookingRefused(rules.refusal("reason_required"))
        return text_[:200]

    def _booking(self, s: Session, visit_number: str, *, lock: bool = False) -> Booking:
        number = _digits(visit_number)
        stmt = select(Booking).where(Booking.visit_number == number)
        if lock:
            stmt = stmt.with_for_update()
        booking = s.scalar(stmt) if len(number) == 8 and number.isdigit() else None
        if booking is None:
            raise BookingRefused(rules.refusal("unknown_booking"))
        return booking

    # ------------------------------------------------------------------ names and views

    def labels(
        self,
        s: Session,
        hospital_id: str,
        department_id: str,
        expert_id: str | None,
        starts_at: datetime,
    ) -> dict[str, Labels]:
        """Names of a slot or booking in zh-CN and en, from the knowledge base (ids if absent)."""
        hosp = s.execute(
            select(kb.Hospital.name_zh, kb.Hospital.name_en).where(kb.Hospital.id == hospital_id)
        ).first()
        dept = s.execute(
            select(kb.Department.name_zh, kb.Department.name_en).where(
                kb.Department.id == department_id
            )
        ).first()
        expert = None
        if expert_id:
            expert = s.execute(
                select(
                    kb.Expert.name_zh, kb.Expert.name_en, kb.Expert.title_zh, kb.Expert.title_en
                ).where(kb.Expert.id == expert_id)
            ).first()
        local = starts_at.astimezone(self.tz)
        part_zh = "上午" if local.hour < 12 else ("下午" if local.hour < 18 else "晚上")
        when_zh = (
            f"{local.month}月{local.day}日（周{_WEEKDAYS_ZH[local.weekday()]}）"
            f"{part_zh}{local:%H:%M}"
        )
        when_en = f"{local:%a} {local.day} {local:%b} {local:%H:%M}"
        if expert_id and expert is not None:
            doctor_zh = f"{expert[0]}{expert[2] or '医生'}"
            doctor_en = f"Dr {expert[1]}"
        elif expert_id:
            doctor_zh = doctor_en = expert_id
        else:
            doctor_zh, doctor_en = "普通门诊", "general clinic"
        return {
            "zh-CN": Labels(
                hosp[0] if hosp else hospital_id,
                dept[0] if dept else department_id,
                doctor_zh,
                when_zh,
            ),
            "en": Labels(
                hosp[1] if hosp else hospital_id,
                dept[1] if dept else department_id,
                doctor_en,
                when_en,
            ),
        }

    def _view(
        self,
        s: Session,
        booking: Booking,
        patient: Patient | None = None,
        labels: Mapping[str, Labels] | None = None,
    ) -> BookingView:
        patient = patient or s.get(Patient, booking.patient_id)
        assert patient is not None
        now = self.clock.now()
        deadline = rules.cancel_deadline(booking.visit_date, self.settings, self.tz)
        return BookingView(
            visit_number=booking.visit_number,
            status=booking.status,
            patient_id=patient.id,
            patient_name=patient.name,
            id_type=patient.id_type,
            id_last4=patient.id_last4,
            patient_locked=patient.locked_at is not None,
            hospital_id=booking.hospital_id,
            department_id=booking.department_id,
            expert_id=booking.expert_id,
            clinic_id=booking.clinic_id,
            slot_id=booking.slot_id,
            visit_date=booking.visit_date,
            starts_at=booking.starts_at,
            ends_at=booking.ends_at,
            fee=booking.fee,
            contact_phone_masked=mask(booking.contact_phone),
            language=booking.language,
            channel=booking.channel,
            created_by=booking.created_by,
            created_at=booking.created_at,
            cancel_deadline=deadline,
            cancellable=booking.status == "booked" and now < deadline,
            password_expires_at=booking.password_expires_at,
            cancel_reason=booking.cancel_reason,
            labels=labels
            or self.labels(
                s, booking.hospital_id, booking.department_id, booking.expert_id, booking.starts_at
            ),
        )

    def _sms(
        self,
        s: Session,
        booking: Booking,
        template: str,
        dedupe_key: str,
        *,
        password: str | None = None,
        urgent: bool = True,
        call_id: int | None = None,
        labels: Mapping[str, Labels] | None = None,
    ) -> bool:
        names = (
            labels
            or self.labels(
                s, booking.hospital_id, booking.department_id, booking.expert_id, booking.starts_at
            )
        )[booking.language if booking.language == "en" else "zh-CN"]
        params = {
            "hospital": names.hospital,
            "department": names.department,
            "doctor": names.doctor,
            "when": names.when,
            "visit_number": booking.visit_number,
            "cancel_by": rules.cancel_by_text(booking.visit_date, self.settings, booking.language),
        }
        return self.outbox.enqueue(
            s,
            channel="sms",
            to_e164=booking.contact_phone,
            template=template,
            language=booking.language,
            params=params,
            dedupe_key=dedupe_key,
            now=self.clock.now(),
            sealed={"password": password} if password is not None else None,
            essential=True,
            urgent=urgent,
            call_id=call_id,
        )

    # ------------------------------------------------------------------ slots

    def bookable_window(self) -> tuple[date, date]:
        """Today and the farthest bookable visit date, local (the horizon and release time)."""
        now_local = self.clock.now().astimezone(self.tz)
        return now_local.date(), rules.last_bookable_date(now_local, self.settings)

    def find_slots(
        self,
        hospital_id: str,
        department_id: str,
        *,
        expert_id: str | None = None,
        any_doctor: bool = True,
        start: date | None = None,
        end: date | None = None,
        limit: int | None = None,
        tx: Session | None = None,
    ) -> list[Slot]:
        """Slots a caller can book now: open, with places left, not started, within the
        booking window (narrowed to ``start``..``end`` when given), by start time.

        ``expert_id`` picks one expert; otherwise ``any_doctor`` ``True`` lists general and
        expert clinics, ``False`` general clinics only. Refusal ``backend_unavailable`` when
        the backend cannot answer.
        """
        first, last = self.bookable_window()
        lo = max(first, start) if start else first
        hi = min(last, end) if end else last
        if hi < lo:
            return []
        query = SlotQuery(hospital_id, department_id, lo, hi, expert_id, any_doctor, True)
        now = self.clock.now()
        with self._tx(tx) as s:
            try:
                slots = self.backend.find_slots(s, query)
            except BackendUnavailable:
                raise BookingRefused(rules.refusal("backend_unavailable")) from None
        found = [
            slot
            for slot in slots
            if slot.status == "open"
            and slot.available > 0
            and rules.check_window(now, slot.starts_at, self.settings, self.tz) is None
        ]
        return found[:limit] if limit is not None else found

    def describe_slot(self, slot: Slot, *, tx: Session | None = None) -> dict[str, Labels]:
        """How to name ``slot`` to a caller, in zh-CN and en (hospital, department, doctor,
        date and time)."""
        with self._tx(tx) as s:
            return self.labels(
                s, slot.hospital_id, slot.department_id, slot.expert_id, slot.starts_at
            )

    # ------------------------------------------------------------------ booking

    def _clean(self, request: BookingRequest) -> tuple[str, str, str]:
        try:
            name = normalize_name(request.name)
        except InvalidIdNumber:
            raise BookingRefused(rules.refusal("invalid_name")) from None
        try:
            number = normalize_id(request.id_type, request.id_number, today=self._today())
        except InvalidIdNumber:
            raise BookingRefused(rules.refusal("invalid_id_number")) from None
        try:
            phone = normalize(request.contact_phone)
        except InvalidPhoneNumber:
            raise BookingRefused(rules.refusal("invalid_phone")) from None
        if request.channel not in ("ivr", "operator"):
            raise ValueError(f"channel must be ivr or operator, not {request.channel!r}")
        if request.language not in ("zh-CN", "en"):
            raise ValueError(f"language must be zh-CN or en, not {request.language!r}")
        self._operator(request.created_by)
        return name, number, phone

    def _patient(self, s: Session, name: str, id_type: IdType, number: str) -> Patient:
        """Find (locked for this transaction) or create the patient with this identity."""
        key = self.secrets.id_hmac(id_type, number)
        stmt = (
            select(Patient)
            .where(Patient.id_type == id_type, Patient.id_hmac == key)
            .with_for_update()
        )
        patient = s.scalar(stmt)
        if patient is None:
            now = self.clock.now()
            try:
                with s.begin_nested():
                    patient = Patient(
                        name=name,
                        id_type=id_type,
                        id_hmac=key,
                        id_last4=number[-4:],
                        created_at=now,
                        updated_at=now,
                    )
                    s.add(patient)
                    s.flush()
            except IntegrityError:
                # created a moment ago by a concurrent booking for the same person
                patient = s.scalar(stmt)
                assert patient is not None
        if not same_name(patient.name, name):
            raise BookingRefused(rules.refusal("identity_mismatch"))
        return patient

    def _facts(self, s: Session, patient: Patient, slot: Slot, phone: str) -> rules.BookingFacts:
        now = self.clock.now()
        today = now.astimezone(self.tz).date()
        visit = slot.starts_at.astimezone(self.tz).date()
        active = Booking.status == "booked"
        that_day = s.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.patient_id == patient.id, Booking.visit_date == visit, active)
        )
        in_slot = s.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.patient_id == patient.id, Booking.slot_id == slot.id, active)
        )
        on_phone = set(
            s.scalars(
                select(Booking.patient_id)
                .where(Booking.contact_phone == phone, active, Booking.visit_date >= today)
                .distinct()
            )
        )
        lookback = today - timedelta(
            days=self.settings.no_show_window_days + self.settings.no_show_block_days
        )
        no_shows = list(
            s.scalars(
                select(Booking.visit_date).where(
                    Booking.patient_id == patient.id,
                    Booking.status == "no_show",
                    Booking.visit_date >= lookback,
                )
            )
        )
        return rules.BookingFacts(
            now=now,
            slot_starts_at=slot.starts_at,
            bookings_that_day=int(that_day or 0),
            already_in_slot=bool(in_slot),
            other_patients_on_phone=len(on_phone - {patient.id}),
            patient_already_on_phone=patient.id in on_phone,
            no_show_dates=no_shows,
        )

    def book(self, request: BookingRequest, *, tx: Session | None = None) -> BookingReceipt:
        """Book ``request.slot_id`` for the patient; SMS ``booking_confirmed`` with the password.

        Checks the input, then the rules (:mod:`~callcenter.booking.rules`) with the patient
        locked, reserves a place in the backend, and writes the booking, its SMS (password
        sealed, essential, urgent, dedupe key ``booking:<visit number>:confirmed``) and, for
        operators, an audit row, all in one transaction. Raises
        :class:`~callcenter.booking.rules.BookingRefused`: ``invalid_name``,
        ``invalid_id_number``, ``invalid_phone``, ``slot_unknown``, ``clinic_cancelled``,
        ``slot_full``, ``identity_mismatch`` (the identity number is booked under another
        name), a rule's code (``slot_started``, ``not_yet_released``, ``too_far_ahead``,
        ``no_show_blocked``, ``already_booked``, ``per_day_limit``, ``phone_limit``) or
        ``backend_unavailable``.
        """
        name, number, phone = self._clean(request)
        if tx is None and self._transactional:
            # a full or closed slot is refused before the password is hashed
            with self.db.transaction() as s:
                self._check_slot(self.backend.get_slot(s, request.slot_id))
        # scrypt runs before the transaction: no lock is held while it works (it releases
        # the GIL, so concurrent bookings hash in parallel)
        password = new_password()
        hashed = self.secrets.hash_password(password)
        reserved: list[tuple[str, str]] = []
        try:
            with self._tx(tx) as s:
                return self._book(s, request, name, number, phone, (password, hashed), reserved)
        except BaseException:
            if reserved and not self._transactional:
                self._release_remote(*reserved[0])
            raise

    @staticmethod
    def _check_slot(slot: Slot | None) -> Slot:
        """The slot if it can take a booking now, else the refusal."""
        if slot is None:
            raise BookingRefused(rules.refusal("slot_unknown"))
        if slot.status != "open":
            raise BookingRefused(rules.refusal("clinic_cancelled"))
        if slot.available <= 0:
            raise BookingRefused(rules.refusal("slot_full"))
        return slot

    def _release_remote(self, slot_id: str, reference: str) -> None:
        """Give back a remote reservation whose booking was not written."""
        try:
            with self.db.transaction() as s:
                self.backend.release(s, slot_id, reference)
        except Exception:
            log.exception(
                "could not release reservation on slot %s after a failed booking", slot_id
            )

    def _book(
        self,
        s: Session,
        request: BookingRequest,
        name: str,
        number: str,
        phone: str,
        secret: tuple[str, str],
        reserved: list[tuple[str, str]],
    ) -> BookingReceipt:
        try:
            slot = self._check_slot(self.backend.get_slot(s, request.slot_id))
        except BackendUnavailable:
            raise BookingRefused(rules.refusal("backend_unavailable")) from None
        patient = self._patient(s, name, request.id_type, number)
        if s.get_bind().dialect.name == "postgresql":
            # bookings with one contact number queue here, so the per-phone rule holds
            s.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:p, 0))"), {"p": phone})
        refusal = rules.check_booking(self._facts(s, patient, slot, phone), self.settings, self.tz)
        if refusal is not None:
            raise BookingRefused(refusal)
        try:
            reference = self.backend.reserve(
                s, slot.id, PatientRef(name, request.id_type, number, phone)
            )
        except SlotUnavailable:
            raise BookingRefused(rules.refusal("slot_full")) from None
        except BackendUnavailable:
            raise BookingRefused(rules.refusal("backend_unavailable")) from None
        reserved.append((slot.id, reference))
        now = self.clock.now()
        visit_date = slot.starts_at.astimezone(self.tz).date()
        password, hashed = secret
        booking = Booking(
            patient_id=patient.id,
            backend=self.backend.name,
            slot_id=slot.id,
            clinic_id=slot.clinic_id,
            backend_ref=reference,
            hospital_id=slot.hospital_id,
            department_id=slot.department_id,
            expert_id=slot.expert_id,
            visit_date=visit_date,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            fee=slot.fee,
            status="booked",
            password_hash=hashed,
            password_expires_at=rules.password_expires_at(visit_date, self.settings, self.tz),
            contact_phone=phone,
            language=request.language,
            channel=request.channel,
            created_by=request.created_by.strip(),
            created_at=now,
            updated_at=now,
            password_version=1,
        )
        self._insert_with_visit_number(s, booking)
        labels = self.labels(
            s, slot.hospital_id, slot.department_id, slot.expert_id, slot.starts_at
        )
        queued = self._sms(
            s,
            booking,
            "booking_confirmed",
            f"booking:{booking.visit_number}:confirmed",
            password=password,
            call_id=request.call_id,
            labels=labels,
        )
        if request.channel == "operator":
            self._audit(
                s,
                request.created_by.strip(),
                "booking.book",
                "booking",
                booking.visit_number,
                slot_id=slot.id,
                patient_id=patient.id,
            )
        log.info("booking id=%s created (%s, slot %s)", booking.id, request.channel, slot.id)
        return BookingReceipt(
            booking.visit_number, password, self._view(s, booking, patient, labels), queued
        )

    def _insert_with_visit_number(self, s: Session, booking: Booking) -> None:
        """Insert ``booking`` under a fresh random visit number, drawing again on a clash."""
        for _ in range(VISIT_NUMBER_TRIES):
            booking.visit_number = new_visit_number()
            try:
                with s.begin_nested():
                    s.add(booking)
                    s.flush()
                return
            except IntegrityError:
                continue
        raise RuntimeError("no free visit number after several draws")

    # ------------------------------------------------------------------ passwords

    def _attempt(
        self,
        s: Session,
        visit_number: str,
        outcome: Outcome,
        *,
        booking: Booking | None,
        call_id: int | None,
        operator: str | None,
    ) -> None:
        s.add(
            PinAttempt(
                at=self.clock.now(),
                visit_number=visit_number[:16],
                booking_id=booking.id if booking else None,
                patient_id=booking.patient_id if booking else None,
                call_id=call_id,
                operator=operator,
                success=outcome == "ok",
                outcome=outcome,
            )
        )

    def _verify(
        self,
        s: Session,
        visit_number: str,
        password: str,
        call_id: int | None,
        operator: str | None,
        pre: _Precheck | None = None,
    ) -> tuple[Verification, Booking | None]:
        if call_id is None and operator is None:
            raise ValueError("verify needs the call_id of the call or the operator's name")
        if operator is not None:
            operator = self._operator(operator)
        number = _digits(visit_number)
        now = self.clock.now()
        per_call = self.settings.pin_attempts_per_call
        per_day = self.settings.pin_attempts_per_day
        call_failed = call_failures(s, call_id) if call_id is not None else 0
        if call_id is not None and call_failed >= per_call:
            self._attempt(s, number, "locked", booking=None, call_id=call_id, operator=operator)
            return Verification("locked", number, locked_scope="call"), None
        booking = None
        if len(number) == 8 and number.isdigit():
            booking = s.scalar(select(Booking).where(Booking.visit_number == number))
        if booking is None:
            if pre is None:
                self.secrets.burn()
            self._attempt(s, number, "unknown", booking=None, call_id=call_id, operator=operator)
            if call_id is not None and call_failed + 1 >= per_call:
                return Verification("locked", number, locked_scope="call"), None
            left = per_call - call_failed - 1 if call_id is not None else None
            return Verification("unknown", number, attempts_left=left), None
        patient = s.scalar(
            select(Patient).where(Patient.id == booking.patient_id).with_for_update()
        )
        assert patient is not None
        if patient.locked_at is not None:
            self._attempt(s, number, "locked", booking=booking, call_id=call_id, operator=operator)
            return Verification("locked", number, locked_scope="patient"), None
        day_failed = patient_failures(s, patient, now)
        if pre is not None and pre.stored == booking.password_hash:
            right = pre.right
        else:
            right = self.secrets.check_password(_digits(password), booking.password_hash)
        if not right:
            self._attempt(s, number, "wrong", booking=booking, call_id=call_id, operator=operator)
            day_failed += 1
            call_failed += 1
            if day_failed >= per_day:
                patient.locked_at = now
                patient.updated_at = now
                log.warning(
                    "patient id=%s locked after %s wrong visit passwords", patient.id, day_failed
                )
                return Verification("locked", number, locked_scope="patient"), None
            if call_id is not None and call_failed >= per_call:
                return Verification("locked", number, locked_scope="call"), None
            left = per_day - day_failed
            if call_id is not None:
                left = min(left, per_call - call_failed)
            return Verification("wrong", number, attempts_left=left), None
        if now >= booking.password_expires_at:
            self._attempt(s, number, "expired", booking=booking, call_id=call_id, operator=operator)
            return Verification("expired", number), None
        self._attempt(s, number, "ok", booking=booking, call_id=call_id, operator=operator)
        return Verification("ok", number, booking=self._view(s, booking, patient)), booking

    def _precheck(self, visit_number: str, password: str, tx: Session | None) -> _Precheck | None:
        """Without a caller's transaction: compare the password with the stored hash before
        the locking transaction, so no lock is held during scrypt. ``None`` with ``tx``."""
        if tx is not None:
            return None
        number = _digits(visit_number)
        stored = None
        if len(number) == 8 and number.isdigit():
            with self.db.transaction() as s:
                stored = s.scalar(
                    select(Booking.password_hash).where(Booking.visit_number == number)
                )
        if stored is None:
            self.secrets.burn()
            return _Precheck("", False)
        return _Precheck(stored, self.secrets.check_password(_digits(password), stored))

    def verify(
        self,
        visit_number: str,
        password: str,
        *,
        call_id: int | None = None,
        operator: str | None = None,
        tx: Session | None = None,
    ) -> Verification:
        """Check a visit number and password; every attempt is recorded.

        Give ``call_id`` (``calls.id``) on the phone, ``operator`` when an agent types what
        the caller says. Limits: ``pin_attempts_per_call`` failed attempts (wrong password or
        unknown visit number) per call, and ``pin_attempts_per_day`` wrong passwords per
        patient in 24 hours across all calls and operators, which locks the patient until an
        operator unlocks (:meth:`unlock`); a locked patient's right password is refused too.
        The attempt that reaches a limit already answers ``locked``. See
        :class:`Verification` for the outcomes. The attempt rows must be committed even when
        the outcome is not ``ok`` (with ``tx``, commit the caller's transaction).
        """
        pre = self._precheck(visit_number, password, tx)
        with self._tx(tx) as s:
            return self._verify(s, visit_number, password, call_id, operator, pre)[0]

    def _verified_in_call(self, s: Session, booking: Booking, call_id: int) -> bool:
        since = self.clock.now() - VERIFIED_FOR
        found = s.scalar(
            select(PinAttempt.id)
            .where(
                PinAttempt.booking_id == booking.id,
                PinAttempt.call_id == call_id,
                PinAttempt.success.is_(True),
                PinAttempt.at >= since,
            )
            .limit(1)
        )
        return found is not None

    def _authorise(
        self, s: Session, booking: Booking, call_id: int | None, operator: str | None
    ) -> str:
        """The actor for a request on ``booking``: the operator, or ``ivr`` when the call
        verified the password earlier (else refusal ``not_verified``)."""
        if operator is not None:
            return self._operator(operator)
        if call_id is None:
            raise ValueError("give the call_id of a verified call or the operator's name")
        if not self._verified_in_call(s, booking, call_id):
            raise BookingRefused(rules.refusal("not_verified"))
        return "ivr"

    def lookup(
        self,
        visit_number: str,
        *,
        call_id: int | None = None,
        operator: str | None = None,
        tx: Session | None = None,
    ) -> BookingView:
        """A booking, for a call that verified its password (``call_id``) or for an operator
        (an audit row ``booking.view`` is written). Refusals: ``unknown_booking``,
        ``not_verified``."""
        with self._tx(tx) as s:
            booking = self._booking(s, visit_number)
            actor = self._authorise(s, booking, call_id, operator)
            if operator is not None:
                self._audit(s, actor, "booking.view", "booking", booking.visit_number)
            return self._view(s, booking)

    def resend_sms(
        self,
        visit_number: str,
        password: str,
        *,
        call_id: int | None = None,
        operator: str | None = None,
        request_key: str | None = None,
        tx: Session | None = None,
    ) -> Verification:
        """Verify the password (counted like :meth:`verify`) and, when right and the booking
        is active, send ``booking_confirmed`` again with that password sealed.

        ``request_key`` identifies the request (e.g. the call id and step) for the dedupe key
        ``booking:<visit number>:resend:<request_key>``: a repeated request sends one SMS.
        Without it each call sends one.
        """
        pre = self._precheck(visit_number, password, tx)
        with self._tx(tx) as s:
            result, booking = self._verify(s, visit_number, password, call_id, operator, pre)
            if booking is None or booking.status != "booked":
                return result
            key = request_key or (f"call-{call_id}" if call_id is not None else None)
            if key is None:
                key = f"op-{operator}-{self.clock.now():%Y%m%d%H%M%S%f}"
            queued = self._sms(
                s,
                booking,
                "booking_confirmed",
                f"booking:{booking.visit_number}:resend:{key}"[:200],
                password=_digits(password),
                call_id=call_id,
            )
            if operator is not None:
                self._audit(
                    s,
                    self._operator(operator),
                    "booking.resend_sms",
                    "booking",
                    booking.visit_number,
                )
            return Verification(
                result.outcome, result.visit_number, booking=result.booking, sms_queued=queued
            )

    # ------------------------------------------------------------------ changes

    def cancel(
        self,
        visit_number: str,
        *,
        call_id: int | None = None,
        operator: str | None = None,
        reason: str | None = None,
        override_deadline: bool = False,
        tx: Session | None = None,
    ) -> CancelResult:
        """Cancel a booking before the deadline (``cancel_deadline`` the day before, local),
        release its place and SMS ``booking_cancelled``.

        By a call that verified the password (``call_id``) or an operator (``reason``
        required, audited; only an operator may pass ``override_deadline``). Idempotent: a
        cancelled booking answers ``already_cancelled``. Refusals: ``unknown_booking``,
        ``not_verified``, ``reason_required``, ``not_active`` (attended or no-show),
        ``cancel_too_late``, ``backend_unavailable``.
        """
        with self._tx(tx) as s:
            booking = self._booking(s, visit_number, lock=True)
            actor = self._authorise(s, booking, call_id, operator)
            why = self._reason(reason) if operator is not None else (reason or "caller request")
            if booking.status == "cancelled":
                return CancelResult("already_cancelled", self._view(s, booking), False)
            if booking.status != "booked":
                raise BookingRefused(rules.refusal("not_active"))
            queued = self._cancel_now(
                s,
                booking,
                actor,
                why,
                deadline=not (override_deadline and operator is not None),
                call_id=call_id,
            )
            if operator is not None:
                self._audit(
                    s,
                    actor,
                    "booking.cancel",
                    "booking",
                    booking.visit_number,
                    why,
                    override_deadline=override_deadline,
                )
            log.info(
                "booking id=%s cancelled by %s", booking.id, "operator" if operator else "caller"
            )
            return CancelResult("cancelled", self._view(s, booking), queued)

    def _cancel_now(
        self,
        s: Session,
        booking: Booking,
        actor: str,
        why: str,
        *,
        deadline: bool,
        call_id: int | None = None,
    ) -> bool:
        """Cancel an active booking (locked by the caller): the deadline unless waived, the
        place released, the ``booking_cancelled`` SMS; whether the SMS was queued."""
        now = self.clock.now()
        if deadline:
            refusal = rules.check_cancel(now, booking.visit_date, self.settings, self.tz)
            if refusal is not None:
                raise BookingRefused(refusal)
        try:
            self.backend.release(s, booking.slot_id, booking.backend_ref)
        except BackendUnavailable:
            raise BookingRefused(rules.refusal("backend_unavailable")) from None
        booking.status = "cancelled"
        booking.cancelled_at = now
        booking.cancelled_by = actor
        booking.cancel_reason = why[:200]
        booking.updated_at = now
        return self._sms(
            s,
            booking,
            "booking_cancelled",
            f"booking:{booking.visit_number}:cancelled",
            call_id=call_id,
        )

    def confirm_by_reply(
        self, visit_number: str, *, tx: Session | None = None
    ) -> Literal["confirmed", "already_confirmed", "not_active"]:
        """Record that the patient confirmed the visit by answering its reminder SMS
        ("reply 1"). Only an active (``booked``) booking can be confirmed; confirming twice
        changes nothing. Refusal: ``unknown_booking``."""
        with self._tx(tx) as s:
            booking = self._booking(s, visit_number, lock=True)
            if booking.status != "booked":
                return "not_active"
            if booking.confirmed_at is not None:
                return "already_confirmed"
            now = self.clock.now()
            booking.confirmed_at = now
            booking.updated_at = now
            log.info("booking id=%s confirmed by SMS reply", booking.id)
            return "confirmed"

    def cancel_by_reply(self, visit_number: str, *, tx: Session | None = None) -> CancelResult:
        """Cancel a booking because the patient answered its reminder SMS ("reply 2").

        The answer came from the booking's contact phone to a message sent to it, which is
        what authorises it (actor ``sms``). The same rules as :meth:`cancel` by a caller apply
        (the deadline; no override) and ``booking_cancelled`` is sent. Refusals:
        ``unknown_booking``, ``not_active``, ``cancel_too_late``, ``backend_unavailable``.
        """
        with self._tx(tx) as s:
            booking = self._booking(s, visit_number, lock=True)
            if booking.status == "cancelled":
                return CancelResult("already_cancelled", self._view(s, booking), False)
            if booking.status != "booked":
                raise BookingRefused(rules.refusal("not_active"))
            queued = self._cancel_now(s, booking, "sms", "reminder reply", deadline=True)
            log.info("booking id=%s cancelled by SMS reply", booking.id)
            return CancelResult("cancelled", self._view(s, booking), queued)

    def reset_password(
        self,
        visit_number: str,
        *,
        operator: str,
        reason: str,
        tx: Session | None = None,
    ) -> PasswordReceipt:
        """Give an active booking a new password (the old one stops working) and SMS it
        (``booking_password``, dedupe ``booking:<visit number>:password:<version>``); audited.

        This is how an operator "resends" a password without knowing it. Refusals:
        ``unknown_booking``, ``not_active``, ``reason_required``.
        """
        actor = self._operator(operator)
        why = self._reason(reason)
        password = new_password()
        hashed = self.secrets.hash_password(password)
        with self._tx(tx) as s:
            booking = self._booking(s, visit_number, lock=True)
            if booking.status != "booked":
                raise BookingRefused(rules.refusal("not_active"))
            now = self.clock.now()
            booking.password_hash = hashed
            booking.password_version += 1
            booking.updated_at = now
            queued = self._sms(
                s,
                booking,
                "booking_password",
                f"booking:{booking.visit_number}:password:{booking.password_version}",
                password=password,
            )
            self._audit(s, actor, "booking.reset_password", "booking", booking.visit_number, why)
            return PasswordReceipt(booking.visit_number, password, queued)

    def _outcome(
        self, visit_number: str, status: str, operator: str, reason: str | None, tx: Session | None
    ) -> BookingView:
        actor = self._operator(operator)
        with self._tx(tx) as s:
            booking = self._booking(s, visit_number, lock=True)
            if booking.status == status:
                return self._view(s, booking)
            if booking.status != "booked":
                raise BookingRefused(rules.refusal("not_active"))
            now = self.clock.now()
            if now < booking.starts_at:
                raise BookingRefused(rules.refusal("visit_not_started"))
            booking.status = status
            booking.outcome_at = now
            booking.updated_at = now
            self._audit(s, actor, f"booking.{status}", "booking", booking.visit_number, reason)
            return self._view(s, booking)

    def mark_no_show(
        self,
        visit_number: str,
        *,
        operator: str,
        reason: str | None = None,
        tx: Session | None = None,
    ) -> BookingView:
        """Record that the patient did not come (counts towards the no-show block); audited.

        Only for an active booking whose slot has started; marking twice is harmless.
        Refusals: ``unknown_booking``, ``not_active``, ``visit_not_started``.
        """
        return self._outcome(visit_number, "no_show", operator, reason, tx)

    def mark_attended(
        self,
        visit_number: str,
        *,
        operator: str,
        reason: str | None = None,
        tx: Session | None = None,
    ) -> BookingView:
        """Record that the patient came (hospital staff or a feed); audited.

        As :meth:`mark_no_show`.
        """
        return self._outcome(visit_number, "attended", operator, reason, tx)

    # ------------------------------------------------------------------ patients

    @staticmethod
    def _patient_view(patient: Patient) -> PatientView:
        return PatientView(
            patient.id,
            patient.name,
            patient.id_type,
            patient.id_last4,
            patient.locked_at is not None,
            patient.locked_at,
        )

    def find_patient(
        self, id_type: IdType, id_number: str, *, operator: str, tx: Session | None = None
    ) -> PatientView | None:
        """The patient with this identity number, for an operator (audited), or ``None``.
        Refusal ``invalid_id_number``."""
        actor = self._operator(operator)
        try:
            number = normalize_id(id_type, id_number)
        except InvalidIdNumber:
            raise BookingRefused(rules.refusal("invalid_id_number")) from None
        key = self.secrets.id_hmac(id_type, number)
        with self._tx(tx) as s:
            patient = s.scalar(
                select(Patient).where(Patient.id_type == id_type, Patient.id_hmac == key)
            )
            if patient is None:
                return None
            self._audit(s, actor, "patient.view", "patient", str(patient.id))
            return self._patient_view(patient)

    def unlock(
        self, patient_id: int, *, operator: str, reason: str, tx: Session | None = None
    ) -> bool:
        """Unlock a patient locked by wrong visit passwords (the 24-hour count starts afresh);
        audited. Returns whether the patient was locked. Refusals: ``unknown_patient``,
        ``reason_required``."""
        actor = self._operator(operator)
        why = self._reason(reason)
        with self._tx(tx) as s:
            patient = s.scalar(select(Patient).where(Patient.id == patient_id).with_for_update())
            if patient is None:
                raise BookingRefused(rules.refusal("unknown_patient"))
            was_locked = patient.locked_at is not None
            now = self.clock.now()
            patient.locked_at = None
            patient.unlocked_at = now
            patient.updated_at = now
            self._audit(
                s, actor, "patient.unlock", "patient", str(patient.id), why, was_locked=was_locked
            )
            log.info("patient id=%s unlocked by an operator", patient.id)
            return was_locked

    # ------------------------------------------------------------------ 停诊

    def cancel_clinic(
        self, clinic_id: str, *, operator: str, reason: str, tx: Session | None = None
    ) -> ClinicCancellation:
        """Cancel a clinic (停诊): the clinic is cancelled and its slots closed, every active
        booking in it cancelled with its place released, and one SMS ``clinic_cancelled``
        written per booking (dedupe ``booking:<visit number>:clinic-cancelled``; urgent when
        the visit is today or tomorrow, else sent outside quiet hours), all in one
        transaction, with an audit row. Idempotent: a second call cancels nothing more.
        Refusals: ``unknown_clinic``, ``reason_required``; ``ValueError`` when the backend
        does not manage clinics here.
        """
        actor = self._operator(operator)
        why = self._reason(reason)
        close = getattr(self.backend, "close_clinic", None)
        if close is None:
            raise ValueError(f"the {self.backend.name} backend does not manage clinics here")
        with self._tx(tx) as s:
            active = (
                select(Booking)
                .where(Booking.clinic_id == clinic_id, Booking.status == "booked")
                .order_by(Booking.id)
                .with_for_update()
            )
            list(s.scalars(active))
            now = self.clock.now()
            try:
                closure = close(s, clinic_id, reason=why, by=actor, now=now)
            except LookupError:
                raise BookingRefused(rules.refusal("unknown_clinic")) from None
            bookings = list(s.scalars(active))
            tomorrow = self._today() + timedelta(days=1)
            queued = 0
            for booking in bookings:
                self.backend.release(s, booking.slot_id, booking.backend_ref)
                booking.status = "cancelled"
                booking.cancelled_at = now
                booking.cancelled_by = actor
                booking.cancel_reason = f"clinic cancelled: {why}"[:200]
                booking.updated_at = now
                queued += self._sms(
                    s,
                    booking,
                    "clinic_cancelled",
                    f"booking:{booking.visit_number}:clinic-cancelled",
                    urgent=booking.visit_date <= tomorrow,
                )
            newly = bool(getattr(closure, "newly_cancelled", True))
            if newly or bookings:
                self._audit(
                    s, actor, "clinic.cancel", "clinic", clinic_id, why, bookings=len(bookings)
                )
            log.info("clinic %s cancelled: %s bookings cancelled", clinic_id, len(bookings))
            return ClinicCancellation(clinic_id, newly, len(bookings), queued)

    def bookings_of_clinic(
        self, clinic_id: str, *, operator: str, tx: Session | None = None
    ) -> list[BookingView]:
        """Every booking of a clinic, for an operator (one audit row)."""
        actor = self._operator(operator)
        with self._tx(tx) as s:
            rows = list(
                s.scalars(
                    select(Booking)
                    .where(Booking.clinic_id == clinic_id)
                    .order_by(Booking.starts_at, Booking.id)
                )
            )
            self._audit(s, actor, "clinic.bookings", "clinic", clinic_id, count=len(rows))
            return [self._view(s, b) for b in rows]
