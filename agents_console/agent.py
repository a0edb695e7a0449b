"""The tier-1 agent's screen: ``/agent``.

An agent sets their state (available, away with a reason); a call offered to them pops on the
screen (``agents_console/static/agent.js`` listens to ``/events`` and reloads the call panel)
with the caller's record: masked number, name if known, language, the menu path, past calls
and appointments, red flags. They accept or reject it; on the call they search the knowledge
base (the same search and spoken answers as the phone), book, cancel, resend the SMS or unlock
a patient for the caller, write notes, pick a disposition, escalate to an expert; after the
call, wrap-up runs with a visible timer.

Access, checked on the server for every URL: an agent opens only the call ringing for them,
the call they are on, or (in wrap-up) the call they just ended; any other call id is 404,
whatever the URL says. Supervisors may view an agent's screen (``/agent?agent=<id>``) but not
act on it. Every opening of a caller's record writes an audit row (who, when, which call,
why). Notes and dispositions are stored with the call's events; none of them is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from flask import Blueprint, abort, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.booking.models import Booking, Patient
from callcenter.booking.ports import IdType
from callcenter.booking.rules import BookingRefused
from callcenter.booking.service import BookingRequest
from callcenter.bootstrap import Services
from callcenter.db.models import AuditEntry, Call, CallEvent, Resident
from callcenter.phone import mask
from callcenter.routing import router as r
from callcenter.routing.escalation import EscalationError
from callcenter.routing.models import RoutingAgent, RoutingCaller
from knowledge_base.answers import answer as kb_answer
from knowledge_base.models import Department, Hospital

from .auth import current_user, role_required

log = logging.getLogger(__name__)

Phase = Literal["ringing", "on_call", "wrap_up", "view"]

#: why an agent is away (stored as the code; shown translated)
AWAY_REASONS: dict[str, Any] = {
    "break": _l("休息"),
    "meal": _l("用餐"),
    "training": _l("培训"),
    "meeting": _l("开会"),
    "admin": _l("事务处理"),
}
#: how a call ended, as the agent records it
DISPOSITIONS: dict[str, Any] = {
    "answered": _l("已解答"),
    "booked": _l("已预约挂号"),
    "booking_changed": _l("已处理预约（取消/补发/解锁）"),
    "escalated": _l("已转专家"),
    "callback": _l("需要回电"),
    "advised_120": _l("已建议拨打120"),
    "wrong_number": _l("打错电话"),
    "other": _l("其他"),
}
STATE_LABELS: dict[str, Any] = {
    "offline": _l("离线"),
    "available": _l("空闲"),
    "reserved": _l("来电振铃"),
    "on_call": _l("通话中"),
    "wrap_up": _l("话后整理"),
    "away": _l("暂离"),
}
#: menu-path event kinds worth showing the agent, and how to name them
PATH_KINDS: dict[str, Any] = {
    "start": _l("来电"),
    "choice": _l("按键选择"),
    "heard": _l("说出"),
    "collected": _l("输入"),
    "invalid": _l("无效输入"),
    "no_input": _l("未输入"),
    "language": _l("切换语言"),
    "article_read": _l("收听文章"),
    "sms": _l("发送短信"),
    "red_flag": _l("危急症状"),
    "enqueue": _l("转人工"),
}
MAX_NOTE = 2000
MAX_QUERY = 100


# ---------------------------------------------------------------- what the screen reads


@dataclass(frozen=True)
class AgentView:
    """An agent's presence as the screen shows it."""

    id: str
    name: str
    state: str
    reason: str | None
    call: str | None
    state_since: datetime | None
    wrap_up_until: datetime | None


@dataclass(frozen=True)
class PathStep:
    """One step of the caller's way through the menu."""

    at: datetime
    kind: str
    node: str
    detail: str


@dataclass(frozen=True)
class PastCall:
    """An earlier call from the same number."""

    started_at: datetime
    queue: str | None
    outcome: str | None
    red_flag: bool
    duration_s: int | None


@dataclass(frozen=True)
class Appointment:
    """A booking whose SMS went to the caller's number."""

    visit_number: str
    status: str
    starts_at: datetime
    hospital: str
    department: str
    patient_id: int
    patient_name: str
    patient_locked: bool


@dataclass(frozen=True)
class Note:
    """A note an agent wrote on the call."""

    at: datetime
    by: str
    text: str


@dataclass(frozen=True)
class UsedEntry:
    """A knowledge-base entry the agent read on the call (attachable to an escalation)."""

    ref: str
    title: str


@dataclass
class CallerRecord:
    """Everything the agent sees about a call and its caller (opened under audit)."""

    call_id: str
    phase: Phase
    phone_masked: str
    name: str | None
    language: str
    queue: str | None
    red_flag: bool
    red_flags: list[str] = field(default_factory=list)
    path: list[PathStep] = field(default_factory=list)
    past_calls: list[PastCall] = field(default_factory=list)
    appointments: list[Appointment] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    disposition: str | None = None
    used: list[UsedEntry] = field(default_factory=list)
    started_at: datetime | None = None
    answered_at: datetime | None = None


class Desk:
    """Reads and small writes for the agent's screen (no web framework here: the views below
    parse requests and render)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.db = services.db
        self.clock = services.clock

    def agent(self, agent_id: str) -> AgentView | None:
        """The agent's presence, or ``None`` for an unknown id."""
        with self.db.sessions() as s:
            row = s.get(RoutingAgent, agent_id)
            if row is None:
                return None
            return AgentView(
                row.id,
                row.name,
                row.state,
                row.state_reason,
                row.offer,
                row.state_since,
                row.wrap_up_until,
            )

    def agents(self) -> list[AgentView]:
        """Every agent (a supervisor picks whose screen to view)."""
        with self.db.sessions() as s:
            rows = s.scalars(select(RoutingAgent).order_by(RoutingAgent.id))
            return [
                AgentView(
                    a.id, a.name, a.state, a.state_reason, a.offer, a.state_since, a.wrap_up_until
                )
                for a in rows
            ]

    def phase(self, agent_id: str, call_id: str) -> Phase | None:
        """How ``agent_id`` stands to ``call_id``: ringing for them, on it, wrapping it up;
        ``None`` when the call is not theirs (or not any more)."""
        with self.db.sessions() as s:
            agent = s.get(RoutingAgent, agent_id)
            if agent is None:
                return None
            if agent.offer == call_id and agent.state == r.AgentState.RESERVED.value:
                return "ringing"
            if agent.offer == call_id and agent.state == r.AgentState.ON_CALL.value:
                return "on_call"
            if agent.state == r.AgentState.WRAP_UP.value:
                caller = s.get(RoutingCaller, call_id)
                if (
                    caller is not None
                    and caller.answered_by == agent_id
                    and caller.ended_at is not None
                    and agent.last_call_end is not None
                    and caller.ended_at >= agent.last_call_end
                ):
                    return "wrap_up"
            return None

    def last_call(self, agent_id: str) -> str | None:
        """The call an agent in wrap-up just ended."""
        with self.db.sessions() as s:
            return s.scalar(
                select(RoutingCaller.id)
                .where(RoutingCaller.answered_by == agent_id, RoutingCaller.ended_at.is_not(None))
                .order_by(RoutingCaller.ended_at.desc())
                .limit(1)
            )

    def _call(self, s: Session, call_id: str) -> Call | None:
        return s.scalar(
            select(Call).where(Call.provider_call_id == call_id).order_by(Call.id.desc()).limit(1)
        )

    def open_record(self, call_id: str, phase: Phase, actor: str, why: str) -> CallerRecord:
        """The caller's record for ``call_id``; writes the audit row of this opening in the
        same transaction."""
        now = self.clock.now()
        with self.db.transaction() as s:
            s.add(
                AuditEntry(
                    at=now,
                    actor=actor[:64],
                    action="call.record.open",
                    subject_type="call",
                    subject_id=call_id[:64],
                    reason=why[:200],
                    detail={"phase": phase},
                )
            )
            caller = s.get(RoutingCaller, call_id)
            call = self._call(s, call_id)
            number = call.from_e164 if call is not None else None
            if number is None and caller is not None:
                number = caller.callback_number
            record = CallerRecord(
                call_id=call_id,
                phase=phase,
                phone_masked=mask(number),
                name=None,
                language=(call.language if call is not None else None)
                or (caller.language if caller is not None else None)
                or "zh-CN",
                queue=(caller.queue if caller is not None else None)
                or (call.queue if call is not None else None),
                red_flag=bool(
                    (caller is not None and caller.red_flag) or (call is not None and call.red_flag)
                ),
                started_at=call.started_at if call is not None else None,
                answered_at=caller.answered_at if caller is not None else None,
            )
            if call is not None:
                self._fill_from_call(s, call, record)
            if number:
                self._fill_history(s, call, number, record)
        return record

    def _fill_from_call(self, s: Session, call: Call, record: CallerRecord) -> None:
        if call.resident_id is not None:
            resident = s.get(Resident, call.resident_id)
            if resident is not None and resident.display_name:
                record.name = resident.display_name
        events = s.scalars(
            select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id)
        )
        for ev in events:
            detail = dict(ev.detail or {})
            if ev.kind in PATH_KINDS:
                record.path.append(PathStep(ev.at, ev.kind, ev.node or "", _describe(detail)))
            if ev.kind == "red_flag":
                record.red_flag = True
                record.red_flags.append(str(detail.get("phrase", "")))
            elif ev.kind == "agent_note":
                record.notes.append(Note(ev.at, str(detail.get("by", "")), str(detail["text"])))
            elif ev.kind == "disposition":
                record.disposition = str(detail.get("code"))
            elif ev.kind == "agent_kb_read":
                ref = str(detail.get("ref", ""))
                if ref and all(u.ref != ref for u in record.used):
                    record.used.append(UsedEntry(ref, str(detail.get("title", ref))))

    def _fill_history(
        self, s: Session, call: Call | None, number: str, record: CallerRecord
    ) -> None:
        query = select(Call).where(Call.from_e164 == number)
        if call is not None:
            query = query.where(Call.id != call.id)
        for past in s.scalars(query.order_by(Call.started_at.desc()).limit(10)):
            record.past_calls.append(
                PastCall(past.started_at, past.queue, past.outcome, past.red_flag, past.duration_s)
            )
        rows = s.execute(
            select(Booking, Patient)
            .join(Patient, Patient.id == Booking.patient_id)
            .where(Booking.contact_phone == number)
            .order_by(Booking.starts_at.desc())
            .limit(10)
        ).all()
        lang = "en" if record.language == "en" else "zh"
        for booking, patient in rows:
            hospital = s.get(Hospital, booking.hospital_id)
            dept = s.get(Department, booking.department_id)
            record.appointments.append(
                Appointment(
                    visit_number=booking.visit_number,
                    status=booking.status,
                    starts_at=booking.starts_at,
                    hospital=_name(hospital, lang) or booking.hospital_id,
                    department=_name(dept, lang) or booking.department_id,
                    patient_id=patient.id,
                    patient_name=patient.name,
                    patient_locked=patient.locked_at is not None,
                )
            )

    def contact_number(self, call_id: str) -> str | None:
        """The caller's number (E.164), for booking on their behalf; never shown."""
        with self.db.sessions() as s:
            call = self._call(s, call_id)
            if call is not None and call.from_e164:
                return call.from_e164
            caller = s.get(RoutingCaller, call_id)
            return caller.callback_number if caller is not None else None

    def call_row_id(self, call_id: str) -> int | None:
        """``calls.id`` of the provider call id (booking SMS rows point at it)."""
        with self.db.sessions() as s:
            call = self._call(s, call_id)
            return call.id if call is not None else None

    def booking_of_caller(self, call_id: str, visit_number: str) -> Appointment | None:
        """The caller's appointment ``visit_number`` (only bookings shown on their record)."""
        number = self.contact_number(call_id)
        if number is None:
            return None
        with self.db.sessions() as s:
            row = s.execute(
                select(Booking, Patient)
                .join(Patient, Patient.id == Booking.patient_id)
                .where(Booking.contact_phone == number, Booking.visit_number == visit_number)
            ).first()
            if row is None:
                return None
            booking, patient = row
            return Appointment(
                booking.visit_number,
                booking.status,
                booking.starts_at,
                booking.hospital_id,
                booking.department_id,
                patient.id,
                patient.name,
                patient.locked_at is not None,
            )

    def add_event(self, call_id: str, kind: str, detail: dict[str, Any]) -> bool:
        """Record something the agent did on the call (a note, a disposition, an entry read)
        with the call's events; ``False`` when the call has no record."""
        now = self.clock.now()
        with self.db.transaction() as s:
            call = self._call(s, call_id)
            if call is None:
                return False
            s.add(CallEvent(call_id=call.id, at=now, kind=kind, detail=detail))
        return True

    def hospitals(self, lang: str) -> list[tuple[str, str]]:
        """(id, name) of every hospital, for the booking and escalation forms."""
        with self.db.sessions() as s:
            rows = s.scalars(select(Hospital).order_by(Hospital.id))
            return [(h.id, _name(h, lang) or h.id) for h in rows]

    def departments(self, hospital_id: str, lang: str) -> list[tuple[str, str]]:
        """(id, name) of a hospital's departments."""
        with self.db.sessions() as s:
            rows = s.scalars(
                select(Department)
                .where(Department.hospital_id == hospital_id)
                .order_by(Department.id)
            )
            return [(d.id, _name(d, lang) or d.id) for d in rows]

    def today(self) -> date:
        """Today in the hotline's time zone."""
        return self.clock.now().astimezone(self.services.config.timezone).date()


def _name(entity: Any, lang: str) -> str:
    if entity is None:
        return ""
    zh, en = getattr(entity, "name_zh", "") or "", getattr(entity, "name_en", "") or ""
    return str(en or zh) if lang == "en" else str(zh or en)


def _describe(detail: dict[str, Any]) -> str:
    parts = []
    for key in ("key", "speech", "queue", "reason", "template", "language", "phrase", "title"):
        if detail.get(key) not in (None, ""):
            parts.append(str(detail[key]))
    return " · ".join(parts)


# ---------------------------------------------------------------- the views


def create_blueprint(services: Services) -> Blueprint:
    """``/agent`` and its panels and actions."""
    bp = Blueprint("agent", __name__, url_prefix="/agent")

    @bp.context_processor
    def server_time() -> dict[str, Any]:
        # Timers count from the server's clock, not the browser's (which may be off).
        return {"server_now": services.clock.now().isoformat()}

    desk = Desk(services)

    def lang() -> str:
        from .auth import console_language

        return console_language()

    def my_agent_id() -> str:
        agent_id = current_user.routing_agent_id
        if current_user.role != "agent" or not agent_id:
            abort(403)
        return agent_id

    def viewed_agent_id() -> str | None:
        """Whose desk this request shows: the agent's own, or for a supervisor, ``?agent=``."""
        if current_user.role == "agent":
            return current_user.routing_agent_id
        return request.args.get("agent") or None

    def my_call(call_id: str, *phases: Phase) -> Phase:
        """The caller of this request may act on ``call_id`` in one of ``phases``; else
        404 (the same answer for a call that is not theirs and one that does not exist)."""
        phase = desk.phase(my_agent_id(), call_id)
        if phase is None or (phases and phase not in phases):
            abort(404)
        return phase

    def render_state(agent_id: str | None, *, message: str | None = None) -> str:
        agent = desk.agent(agent_id) if agent_id else None
        return render_template(
            "agent/_state.html",
            agent=agent,
            readonly=current_user.role != "agent",
            away_reasons=AWAY_REASONS,
            state_labels=STATE_LABELS,
            message=message,
        )

    def current_call(agent: AgentView | None) -> str | None:
        if agent is None:
            return None
        if agent.call is not None and agent.state in ("reserved", "on_call"):
            return agent.call
        if agent.state == "wrap_up":
            return desk.last_call(agent.id)
        return None

    def render_call(agent_id: str | None) -> str:
        agent = desk.agent(agent_id) if agent_id else None
        call_id = current_call(agent)
        if agent is None or call_id is None:
            return render_template("agent/_idle.html", agent=agent)
        if current_user.role == "agent":
            phase = desk.phase(agent.id, call_id)
            if phase is None:
                return render_template("agent/_idle.html", agent=agent)
            why = {"ringing": "call offered", "on_call": "on call", "wrap_up": "wrap-up"}[phase]
        else:
            phase = "view"
            why = f"supervisor viewing agent {agent.id}"
        record = desk.open_record(call_id, phase, current_user.username, why)
        return render_call_panel(record, agent)

    def render_call_panel(record: CallerRecord, agent: AgentView) -> str:
        experts = []
        esc = services.escalations
        try:
            experts = esc.experts()
        except Exception:  # the experts table may be empty or not yet migrated
            log.exception("agent screen: experts unavailable")
        specialties = sorted({e.specialty for e in experts})
        escalations = esc.for_call(record.call_id) if record.phase != "ringing" else []
        return render_template(
            "agent/_call.html",
            record=record,
            agent=agent,
            readonly=current_user.role != "agent",
            dispositions=DISPOSITIONS,
            path_kinds=PATH_KINDS,
            specialties=specialties,
            hospitals=desk.hospitals(lang()),
            escalations=escalations,
            booking_enabled=services.booking is not None,
        )

    def result(message: str, *, ok: bool = True, status: int = 200) -> tuple[str, int]:
        return render_template("agent/_result.html", message=message, ok=ok), status

    # -- the page and its panels

    @bp.get("")
    @role_required("agent", "supervisor")
    def index() -> Any:
        """The agent's desk (a supervisor: ``?agent=<id>``)."""
        agent_id = viewed_agent_id()
        agent = desk.agent(agent_id) if agent_id else None
        if current_user.role == "supervisor" and agent_id and agent is None:
            abort(404)
        return render_template(
            "agent/index.html",
            agent=agent,
            agent_id=agent_id,
            agents=desk.agents() if current_user.role != "agent" and not agent_id else [],
            state_labels=STATE_LABELS,
            state_html=render_state(agent_id),
            call_html=render_call(agent_id),
        )

    @bp.get("/state")
    @role_required("agent", "supervisor")
    def state_panel() -> Any:
        """The state panel (reloaded on every state event)."""
        return render_state(viewed_agent_id())

    @bp.get("/call")
    @role_required("agent", "supervisor")
    def call_panel() -> Any:
        """The call panel (reloaded when the call or its phase changes)."""
        return render_call(viewed_agent_id())

    # -- presence

    @bp.post("/state")
    @role_required("agent")
    def set_state() -> Any:
        """Go available, away (with a reason) or offline."""
        agent_id = my_agent_id()
        target = request.form.get("state", "")
        agent = desk.agent(agent_id)
        if agent is None:
            abort(404)
        try:
            if target == "available":
                if agent.state == "offline":
                    services.routing.agent_sign_in(agent_id)
                else:
                    services.routing.set_state(agent_id, r.AgentState.AVAILABLE)
            elif target == "away":
                reason = request.form.get("reason", "")
                if reason not in AWAY_REASONS:
                    return render_state(agent_id, message=_("请选择暂离原因。")), 400
                if agent.state == "offline":
                    services.routing.agent_sign_in(agent_id)
                services.routing.set_state(agent_id, r.AgentState.AWAY, reason)
            elif target == "offline":
                services.routing.agent_sign_out(agent_id)
            else:
                return render_state(agent_id, message=_("未知状态。")), 400
        except r.IllegalAgentTransition:
            return render_state(agent_id, message=_("当前状态下不能这样切换。")), 409
        if target == "available":
            services.routing.dispatch()
        return render_state(agent_id)

    # -- the offered call

    @bp.post("/calls/<call_id>/accept")
    @role_required("agent")
    def accept(call_id: str) -> Any:
        """Take the call ringing for this agent."""
        my_call(call_id, "ringing")
        # Through the phone side, so the caller is moved into the call's conference as when
        # the agent presses a key on the phone (a press after this adds nothing).
        if services.phone.agent_accepted(call_id, my_agent_id()) is None:
            return result(_("来电已不再等待接听。"), ok=False, status=409)
        return render_call(my_agent_id())

    @bp.post("/calls/<call_id>/reject")
    @role_required("agent")
    def reject(call_id: str) -> Any:
        """Decline the call ringing for this agent (it goes to another agent)."""
        my_call(call_id, "ringing")
        services.routing.reject(my_agent_id(), call_id)
        services.routing.dispatch()
        return render_call(my_agent_id())

    @bp.post("/calls/<call_id>/end")
    @role_required("agent")
    def end(call_id: str) -> Any:
        """The call is over: wrap-up begins (its timer shows on the state panel)."""
        my_call(call_id, "on_call")
        services.routing.end_call(my_agent_id())
        return render_call(my_agent_id())

    # -- notes and disposition

    @bp.post("/calls/<call_id>/notes")
    @role_required("agent")
    def add_note(call_id: str) -> Any:
        """Add a note to the call."""
        my_call(call_id, "on_call", "wrap_up")
        text = request.form.get("text", "").strip()
        if not text or len(text) > MAX_NOTE:
            return result(_("备注不能为空，最多%(n)s字。", n=MAX_NOTE), ok=False, status=400)
        desk.add_event(call_id, "agent_note", {"by": current_user.username, "text": text})
        return render_notes(call_id)

    def render_notes(call_id: str) -> str:
        record = desk.open_record(call_id, my_call(call_id), current_user.username, "notes updated")
        return render_template("agent/_notes.html", record=record, readonly=False)

    @bp.post("/calls/<call_id>/disposition")
    @role_required("agent")
    def disposition(call_id: str) -> Any:
        """Record how the call ended."""
        my_call(call_id, "on_call", "wrap_up")
        code = request.form.get("code", "")
        if code not in DISPOSITIONS:
            return result(_("请选择处理结果。"), ok=False, status=400)
        desk.add_event(call_id, "disposition", {"code": code, "by": current_user.username})
        return result(_("处理结果已保存：%(d)s", d=DISPOSITIONS[code]))

    # -- knowledge base

    @bp.get("/calls/<call_id>/kb")
    @role_required("agent")
    def kb_search(call_id: str) -> Any:
        """Search the knowledge base (the phone's search)."""
        my_call(call_id, "on_call", "wrap_up")
        query = request.args.get("q", "").strip()[:MAX_QUERY]
        hits = []
        if query:
            found = services.knowledge.search(
                query, language="en" if lang() == "en" else "zh", limit=8, today=desk.today()
            )
            hits = found.hits
        return render_template("agent/_kb.html", hits=hits, query=query, call_id=call_id)

    @bp.get("/calls/<call_id>/kb/<entity_type>/<entity_id>")
    @role_required("agent")
    def kb_read(call_id: str, entity_type: str, entity_id: str) -> Any:
        """An entry's answer, as the phone reads it (recorded as used on this call)."""
        my_call(call_id, "on_call", "wrap_up")
        with services.db.sessions() as s:
            found = kb_answer(s, entity_type, entity_id, lang(), desk.today())
        if found is None:
            return result(_("该条目不存在或已过期，不能朗读。"), ok=False, status=404)
        ref = f"{entity_type}:{entity_id}"
        desk.add_event(
            call_id,
            "agent_kb_read",
            {
                "ref": ref,
                "title": found.title,
                "article_id": found.article_id,
                "article_version": found.article_version,
                "by": current_user.username,
            },
        )
        return render_template("agent/_answer.html", answer=found, ref=ref)

    # -- bookings for the caller

    def booking_service() -> Any:
        if services.booking is None:
            abort(503, description="booking needs SECRET_KEY")
        return services.booking

    def refused(exc: BookingRefused) -> tuple[str, int]:
        return result(exc.refusal.message(lang()), ok=False, status=422)

    @bp.get("/calls/<call_id>/departments")
    @role_required("agent")
    def departments(call_id: str) -> Any:
        """A hospital's departments (booking form)."""
        my_call(call_id, "on_call", "wrap_up")
        hospital = request.args.get("hospital", "")
        return render_template(
            "agent/_departments.html", departments=desk.departments(hospital, lang())
        )

    @bp.get("/calls/<call_id>/slots")
    @role_required("agent")
    def slots(call_id: str) -> Any:
        """Bookable slots of a department (booking form)."""
        my_call(call_id, "on_call", "wrap_up")
        hospital = request.args.get("hospital", "")
        department = request.args.get("department", "")
        found = []
        if hospital and department:
            try:
                found = booking_service().find_slots(hospital, department, limit=30)
            except BookingRefused as exc:
                return refused(exc)
        tz = services.config.timezone
        return render_template("agent/_slots.html", slots=found, tz=tz)

    @bp.post("/calls/<call_id>/book")
    @role_required("agent")
    def book(call_id: str) -> Any:
        """Book a slot for the caller (SMS to their number, or another mobile)."""
        my_call(call_id, "on_call", "wrap_up")
        form = request.form
        phone = form.get("contact_phone", "").strip() or desk.contact_number(call_id) or ""
        id_type: IdType = "passport" if form.get("id_type") == "passport" else "cn_id"
        booking_request = BookingRequest(
            slot_id=form.get("slot_id", ""),
            name=form.get("name", ""),
            id_type=id_type,
            id_number=form.get("id_number", ""),
            contact_phone=phone,
            channel="operator",
            created_by=current_user.username,
            language=lang(),
            call_id=desk.call_row_id(call_id),
        )
        try:
            receipt = booking_service().book(booking_request)
        except BookingRefused as exc:
            return refused(exc)
        return render_template("agent/_booked.html", receipt=receipt)

    @bp.post("/calls/<call_id>/bookings/<visit_number>/cancel")
    @role_required("agent")
    def cancel(call_id: str, visit_number: str) -> Any:
        """Cancel one of the caller's bookings (reason required; audited by the service)."""
        my_call(call_id, "on_call", "wrap_up")
        if desk.booking_of_caller(call_id, visit_number) is None:
            abort(404)
        reason = request.form.get("reason", "").strip()
        try:
            done = booking_service().cancel(
                visit_number, operator=current_user.username, reason=reason
            )
        except BookingRefused as exc:
            return refused(exc)
        if done.outcome == "already_cancelled":
            return result(_("该预约此前已取消。"))
        return result(_("预约 %(v)s 已取消，已发短信通知。", v=visit_number))

    @bp.post("/calls/<call_id>/bookings/<visit_number>/resend")
    @role_required("agent")
    def resend(call_id: str, visit_number: str) -> Any:
        """Send the booking SMS again (the caller tells the password; counted like the
        phone's attempts)."""
        my_call(call_id, "on_call", "wrap_up")
        if desk.booking_of_caller(call_id, visit_number) is None:
            abort(404)
        password = request.form.get("password", "")
        try:
            check = booking_service().resend_sms(
                visit_number,
                password,
                operator=current_user.username,
                request_key=f"{call_id}:{current_user.username}:{desk.clock.now():%H%M%S%f}",
            )
        except BookingRefused as exc:
            return refused(exc)
        if check.outcome == "ok" and check.sms_queued:
            return result(_("短信已重新发送。"))
        messages = {
            "wrong": _("密码不正确。"),
            "locked": _("该患者已被锁定，请先解锁。"),
            "expired": _("密码已过期。"),
            "unknown": _("找不到该预约。"),
        }
        return result(messages.get(check.outcome, _("未能发送短信。")), ok=False, status=422)

    @bp.post("/calls/<call_id>/patients/<int:patient_id>/unlock")
    @role_required("agent")
    def unlock(call_id: str, patient_id: int) -> Any:
        """Unlock a patient of the caller's bookings locked by wrong passwords."""
        my_call(call_id, "on_call", "wrap_up")
        record = desk.open_record(
            call_id, my_call(call_id), current_user.username, "unlock patient"
        )
        if all(a.patient_id != patient_id for a in record.appointments):
            abort(404)
        reason = request.form.get("reason", "").strip()
        try:
            was_locked = booking_service().unlock(
                patient_id, operator=current_user.username, reason=reason
            )
        except BookingRefused as exc:
            return refused(exc)
        if not was_locked:
            return result(_("该患者未被锁定。"))
        return result(_("已解锁，患者可再次用密码查询。"))

    # -- escalation to an expert

    @bp.get("/calls/<call_id>/experts")
    @role_required("agent")
    def experts(call_id: str) -> Any:
        """Experts of a specialty (and hospital) available now."""
        my_call(call_id, "on_call")
        specialty = request.args.get("specialty", "")
        hospital = request.args.get("hospital", "") or None
        found = services.escalations.available_experts(specialty, hospital) if specialty else []
        return render_template("agent/_experts.html", experts=found, specialty=specialty)

    @bp.post("/calls/<call_id>/escalate")
    @role_required("agent")
    def escalate(call_id: str) -> Any:
        """Ask an expert: specialty, optional hospital, the question, the entries used."""
        my_call(call_id, "on_call")
        form = request.form
        try:
            view = services.escalations.open(
                call_id,
                my_agent_id(),
                form.get("specialty", ""),
                form.get("hospital", "") or None,
                form.get("question", ""),
                form.get("notes", ""),
                form.getlist("articles"),
            )
        except EscalationError as exc:
            log.info("escalation refused: %s", type(exc).__name__)
            return result(_("无法转专家：%(why)s", why=str(exc)), ok=False, status=422)
        return render_template("agent/_escalations.html", escalations=[view])

    @bp.get("/calls/<call_id>/escalations")
    @role_required("agent")
    def escalations(call_id: str) -> Any:
        """This call's escalations and their states (reloaded on escalation events)."""
        my_call(call_id, "on_call", "wrap_up")
        return render_template(
            "agent/_escalations.html", escalations=services.escalations.for_call(call_id)
        )

    return bp
