"""``callcenter booking ...``: book, look up, cancel and unlock for a caller; import schedules.

Exit codes: 0 done; 1 failure while running; 2 usage error; 3 configuration error (nothing
was started); 4 refused (a booking rule, an unknown visit number, a rejected import file: the
message says why, with its machine code in brackets).

Operator commands act under ``--operator`` (default: the login name) and write audit rows.
Names and identity numbers are asked for at a prompt when not given as options, so they
need not end up in the shell history.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..bootstrap import Services
    from .ports import Slot
    from .service import BookingService, BookingView

EXIT_REFUSED = 4
F = TypeVar("F", bound=Callable[..., Any])


class Refused(click.ClickException):
    """A refusal a script can tell apart from a failure (exit code 4)."""

    exit_code = EXIT_REFUSED


def _operator_option(fn: F) -> F:
    return click.option(
        "--operator",
        default=getpass.getuser,
        show_default="your login name",
        help="Who acts (recorded in the audit trail).",
    )(fn)


@contextmanager
def _service(state: Any) -> Iterator[tuple[Services, BookingService]]:
    """The wired services and the booking service; refusals become exit code 4."""
    from ..cli import _Fatal, _services
    from ..config import ConfigError
    from .rules import BookingRefused

    services = _services(state)
    try:
        booking = services.booking
        if booking is None:
            try:
                services.config.secrets.require("SECRET_KEY")
            except ConfigError as exc:
                raise _Fatal(str(exc)) from None
        assert booking is not None
        try:
            yield services, booking
        except BookingRefused as exc:
            r = exc.refusal
            raise Refused(f"[{r.code}] {r.zh} / {r.en}") from None
    finally:
        services.db.dispose()


def _when(moment: datetime, tz: Any) -> str:
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M}"


def _view_data(view: BookingView, tz: Any) -> dict[str, Any]:
    data = asdict(view)
    for key in ("starts_at", "ends_at", "created_at", "cancel_deadline", "password_expires_at"):
        data[key] = _when(getattr(view, key), tz)
    data["visit_date"] = view.visit_date.isoformat()
    data["fee"] = None if view.fee is None else f"{view.fee:.2f}"
    data["labels"] = {lang: asdict(label) for lang, label in view.labels.items()}
    return data


def _print_view(view: BookingView, tz: Any) -> None:
    zh, en = view.labels["zh-CN"], view.labels["en"]
    lines = [
        f"visit number 就诊号码: {view.visit_number}   status 状态: {view.status}",
        f"patient 就诊人: {view.patient_name} ({view.id_type} ****{view.id_last4})"
        + ("   LOCKED 已锁定 (wrong passwords)" if view.patient_locked else ""),
        f"clinic 门诊: {zh.hospital} {zh.department} {zh.doctor} / {en.hospital}, "
        f"{en.department}, {en.doctor}",
        f"time 时间: {_when(view.starts_at, tz)}-{view.ends_at.astimezone(tz):%H:%M} "
        f"({view.clinic_id}, slot {view.slot_id})",
        f"fee 挂号费: {'-' if view.fee is None else f'{view.fee:.2f}'}   "
        f"contact 联系电话: {view.contact_phone_masked}   booked via {view.channel} "
        f"by {view.created_by}",
        f"cancel by 取消截止: {_when(view.cancel_deadline, tz)}"
        + ("" if view.cancellable else " (cannot be cancelled now)"),
    ]
    if view.cancel_reason:
        lines.append(f"cancel reason 取消原因: {view.cancel_reason}")
    click.echo("\n".join(lines))


@click.group()
def booking() -> None:
    """Bookings and clinic schedules (operators and hospital IT)."""


# ---------------------------------------------------------------- schedules


@booking.command("import")
@click.argument("path", type=click.Path(exists=True))
@click.pass_obj
def booking_import(state: Any, path: str) -> None:
    """Import clinic schedules (YAML or CSV, a file or a folder); all or nothing, idempotent.

    The formats are described in callcenter/booking/README.md.
    """
    from .schedules import ScheduleImportError, import_schedules

    with _service(state) as (services, _svc):
        try:
            report = import_schedules(
                services.db, path, clock=services.clock, tz=services.config.timezone
            )
        except ScheduleImportError as exc:
            raise Refused(str(exc)) from None
    click.echo(report.summary())


@booking.command("demo-schedules")
@click.option(
    "--days", type=click.IntRange(1, 90), default=None, help="Days from today (default: horizon+1)."
)
@click.pass_obj
def booking_demo_schedules(state: Any, days: int | None) -> None:
    """Generate demo clinics from today from the demo knowledge base (load it first)."""
    from .schedules import ScheduleImportError, load_demo_schedules

    with _service(state) as (services, _svc):
        count = days or services.config.settings.booking.horizon_days + 1
        try:
            report = load_demo_schedules(
                services.db, services.clock, services.config.timezone, days=count
            )
        except ScheduleImportError as exc:
            raise Refused(str(exc)) from None
    click.echo(report.summary())
    click.echo("demo clinics are marked is_demo; all people are fictional")


# ---------------------------------------------------------------- slots and booking


def _slot_line(slot: Slot, labels: Any, tz: Any) -> str:
    fee = "-" if slot.fee is None else f"{slot.fee:.2f}"
    return (
        f"{slot.id}  {_when(slot.starts_at, tz)}-{slot.ends_at.astimezone(tz):%H:%M}  "
        f"{labels['zh-CN'].doctor} / {labels['en'].doctor}  "
        f"{slot.available}/{slot.capacity} left  fee {fee}"
    )


@booking.command("slots")
@click.argument("hospital")
@click.argument("department")
@click.option("--expert", default=None, help="Only this expert's clinics.")
@click.option("--general", is_flag=True, help="Only general clinics (普通门诊).")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="One day.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_obj
def booking_slots(
    state: Any,
    hospital: str,
    department: str,
    expert: str | None,
    general: bool,
    day: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """Slots that can be booked now in a department (ids from the knowledge base)."""
    with _service(state) as (services, svc):
        tz = services.config.timezone
        when = day.date() if day else None
        slots = svc.find_slots(
            hospital,
            department,
            expert_id=expert,
            any_doctor=not general,
            start=when,
            end=when,
            limit=limit,
        )
        labelled = [(s, svc.describe_slot(s)) for s in slots]
    if as_json:
        rows = [
            {
                **asdict(s),
                "starts_at": _when(s.starts_at, tz),
                "ends_at": _when(s.ends_at, tz),
                "fee": None if s.fee is None else f"{s.fee:.2f}",
                "labels": {lang: asdict(lab) for lang, lab in labels.items()},
            }
            for s, labels in labelled
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not labelled:
        click.echo("no bookable slot 没有可预约的号源")
        return
    for slot, labels in labelled:
        click.echo(_slot_line(slot, labels, tz))


def _pick_slot(
    svc: BookingService,
    hospital: str | None,
    department: str | None,
    expert: str | None,
    day: date | None,
    at: str | None,
) -> str:
    if not (hospital and department and day):
        raise click.UsageError("give --slot, or --hospital, --department and --date")
    any_doctor = expert in (None, "any")
    slots = svc.find_slots(
        hospital,
        department,
        expert_id=None if any_doctor else expert,
        any_doctor=any_doctor,
        start=day,
        end=day,
    )
    if at is not None:
        wanted = time.fromisoformat(at)
        slots = [s for s in slots if s.starts_at.astimezone(svc.tz).time() == wanted]
    if not slots:
        raise Refused("[slot_unknown] 没有符合条件的可预约号源 / no bookable slot matches")
    return slots[0].id


@booking.command("book")
@click.option("--slot", "slot_id", default=None, help="Slot id (from `booking slots`).")
@click.option("--hospital", default=None, help="Hospital id (with --department and --date).")
@click.option("--department", default=None, help="Department id.")
@click.option("--expert", default=None, help="Expert id, or 'any' (default) for any doctor.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Visit day.")
@click.option("--time", "at", default=None, help="Slot start HH:MM (default: the first free).")
@click.option("--name", prompt="Patient's name 就诊人姓名", help="As on the identity document.")
@click.option(
    "--id-type", type=click.Choice(["cn_id", "passport"]), default="cn_id", show_default=True
)
@click.option(
    "--id-number", prompt="ID number 证件号码", hide_input=True, help="Resident ID or passport."
)
@click.option("--phone", prompt="Contact phone 手机号码", help="Where the SMS goes.")
@click.option("--lang", type=click.Choice(["zh-CN", "en"]), default="zh-CN", show_default=True)
@click.option("--show-password", is_flag=True, help="Also print the visit password (once).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@_operator_option
@click.pass_obj
def booking_book(
    state: Any,
    slot_id: str | None,
    hospital: str | None,
    department: str | None,
    expert: str | None,
    day: datetime | None,
    at: str | None,
    name: str,
    id_type: str,
    id_number: str,
    phone: str,
    lang: str,
    show_password: bool,
    as_json: bool,
    operator: str,
) -> None:
    """Book for a caller (the operator's booking is audited); the password goes by SMS."""
    from .service import BookingRequest

    with _service(state) as (services, svc):
        chosen = slot_id or _pick_slot(
            svc, hospital, department, expert, day.date() if day else None, at
        )
        receipt = svc.book(
            BookingRequest(
                slot_id=chosen,
                name=name,
                id_type="passport" if id_type == "passport" else "cn_id",
                id_number=id_number,
                contact_phone=phone,
                channel="operator",
                created_by=operator,
                language=lang,
            )
        )
        tz = services.config.timezone
    if as_json:
        data = {"visit_number": receipt.visit_number, "sms_queued": receipt.sms_queued}
        data["booking"] = _view_data(receipt.booking, tz)
        if show_password:
            data["password"] = receipt.password
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"booked 预约成功: visit number 就诊号码 {receipt.visit_number}")
    _print_view(receipt.booking, tz)
    if receipt.sms_queued:
        click.echo(
            "the password was sent by SMS 密码已通过短信发送 to "
            f"{receipt.booking.contact_phone_masked}"
        )
    if show_password:
        click.echo(f"password 密码: {receipt.password} (shown once; it is not stored in clear)")


@booking.command("show")
@click.argument("visit_number")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@_operator_option
@click.pass_obj
def booking_show(state: Any, visit_number: str, as_json: bool, operator: str) -> None:
    """Show a booking (audited: the operator saw this patient's record)."""
    with _service(state) as (services, svc):
        view = svc.lookup(visit_number, operator=operator)
        tz = services.config.timezone
    if as_json:
        click.echo(json.dumps(_view_data(view, tz), ensure_ascii=False, indent=2))
    else:
        _print_view(view, tz)


@booking.command("cancel")
@click.argument("visit_number")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@click.option(
    "--override-deadline", is_flag=True, help="Cancel even after the deadline (the day before)."
)
@_operator_option
@click.pass_obj
def booking_cancel(
    state: Any, visit_number: str, reason: str, override_deadline: bool, operator: str
) -> None:
    """Cancel a booking, release its place and SMS the patient."""
    with _service(state) as (_services, svc):
        result = svc.cancel(
            visit_number, operator=operator, reason=reason, override_deadline=override_deadline
        )
    if result.outcome == "already_cancelled":
        click.echo(f"{result.booking.visit_number}: already cancelled 已取消")
    else:
        click.echo(
            f"{result.booking.visit_number}: cancelled 已取消; SMS queued: {result.sms_queued}"
        )


@booking.command("unlock")
@click.option("--visit-number", default=None, help="A visit number of the patient.")
@click.option("--id-type", type=click.Choice(["cn_id", "passport"]), default="cn_id")
@click.option("--id-number", default=None, help="Or the patient's identity number.")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@_operator_option
@click.pass_obj
def booking_unlock(
    state: Any,
    visit_number: str | None,
    id_type: str,
    id_number: str | None,
    reason: str,
    operator: str,
) -> None:
    """Unlock a patient locked by too many wrong visit passwords."""
    if (visit_number is None) == (id_number is None):
        raise click.UsageError("give --visit-number or --id-number (one of them)")
    from .rules import BookingRefused, refusal

    with _service(state) as (_services, svc):
        if visit_number is not None:
            patient_id = svc.lookup(visit_number, operator=operator).patient_id
        else:
            found = svc.find_patient(
                "passport" if id_type == "passport" else "cn_id", id_number or "", operator=operator
            )
            if found is None:
                raise BookingRefused(refusal("unknown_patient"))
            patient_id = found.id
        was_locked = svc.unlock(patient_id, operator=operator, reason=reason)
    click.echo("unlocked 已解锁" if was_locked else "was not locked 未锁定 (unlock recorded)")


@booking.command("reset-password")
@click.argument("visit_number")
@click.option("--reason", required=True, help="Why (recorded in the audit trail).")
@click.option("--show-password", is_flag=True, help="Also print the new password (once).")
@_operator_option
@click.pass_obj
def booking_reset_password(
    state: Any, visit_number: str, reason: str, show_password: bool, operator: str
) -> None:
    """Give a booking a new password and SMS it (the old one stops working)."""
    with _service(state) as (_services, svc):
        receipt = svc.reset_password(visit_number, operator=operator, reason=reason)
    click.echo(
        f"{receipt.visit_number}: new password sent by SMS 新密码已通过短信发送 "
        f"(queued: {receipt.sms_queued})"
    )
    if show_password:
        click.echo(f"password 密码: {receipt.password} (shown once)")


@booking.command("no-show")
@click.argument("visit_number")
@click.option("--reason", default=None, help="A note for the audit trail.")
@_operator_option
@click.pass_obj
def booking_no_show(state: Any, visit_number: str, reason: str | None, operator: str) -> None:
    """Record that the patient did not come (counts towards the no-show block)."""
    with _service(state) as (_services, svc):
        view = svc.mark_no_show(visit_number, operator=operator, reason=reason)
    click.echo(f"{view.visit_number}: {view.status}")


@booking.command("attended")
@click.argument("visit_number")
@_operator_option
@click.pass_obj
def booking_attended(state: Any, visit_number: str, operator: str) -> None:
    """Record that the patient came."""
    with _service(state) as (_services, svc):
        view = svc.mark_attended(visit_number, operator=operator)
    click.echo(f"{view.visit_number}: {view.status}")


@booking.command("clinic-cancel")
@click.argument("clinic_id")
@click.option("--reason", required=True, help="Why (停诊 reason, recorded and audited).")
@_operator_option
@click.pass_obj
def booking_clinic_cancel(state: Any, clinic_id: str, reason: str, operator: str) -> None:
    """Cancel a clinic (停诊): close its slots, cancel every booking, SMS each patient."""
    with _service(state) as (_services, svc):
        try:
            result = svc.cancel_clinic(clinic_id, operator=operator, reason=reason)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    state_text = "cancelled 已停诊" if result.newly_cancelled else "was already cancelled 早已停诊"
    click.echo(
        f"{clinic_id}: {state_text}; {result.bookings_cancelled} booking(s) cancelled, "
        f"{result.sms_queued} SMS queued"
    )
