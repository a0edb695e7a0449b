"""``/expert``: the tier-2 expert's desk.

An expert signs in, goes available, and sees the escalations offered to their specialty (and
hospital) **with the question, the agent's notes and the knowledge-base entries the agent
used, before accepting**. Accepting takes the escalation (the phone side dials the expert into
the caller's conference); declining needs a reason. Escalations nobody accepted in time become
expert callbacks with a deadline: the expert calls the patient back and marks the callback done
with a note of the answer.

Everything goes through :class:`~callcenter.routing.escalations.EscalationService`, which
checks on every action that the escalation is really offered to this expert; the desk also
refuses to show an escalation that is not this expert's (an offer to them, a callback they can
make, or one they took), whatever id is typed in the URL: 404, like an id that does not exist.
Opening an escalation writes an audit row (it holds what a patient asked); the patient's phone
number is shown in full only there, for a callback, and masked everywhere else.

The expert's routing id is their console user's linked id (``routing_agent_id``) if set, else
their username; their specialty and hospital come from their console user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.exceptions import NotFound

from callcenter.bootstrap import Services
from callcenter.db.models import AuditEntry, Call, Resident
from callcenter.phone import mask
from callcenter.routing.escalation import EscalationError
from callcenter.routing.escalations import (
    EscalationView,
    ExpertNotAvailable,
    ExpertView,
    NotForThisExpert,
    UnknownEscalation,
    UnknownExpert,
)
from knowledge_base.answers import answer as kb_answer

from .auth import current_user, role_required

log = logging.getLogger(__name__)

experts_only = role_required("expert")
MAX_REASON = 200
MAX_NOTE = 4000


@dataclass(frozen=True)
class UsedEntry:
    """A knowledge-base entry the agent attached, as the phone reads it today."""

    ref: str
    title: str
    text: str | None


@dataclass(frozen=True)
class CallerInfo:
    """Who is behind an escalation: masked number (full only on an audited callback page),
    name if known, language."""

    phone_masked: str
    phone: str | None
    name: str | None
    language: str | None


def expert_id() -> str:
    """The signed-in expert's routing id."""
    user = current_user
    return user.routing_agent_id or user.username


def create_blueprint(services: Services) -> Blueprint:
    """The ``/expert`` blueprint bound to ``services``."""
    bp = Blueprint("expert", __name__, url_prefix="/expert")
    esc = services.escalations
    tz = services.config.timezone

    def today() -> date:
        return services.clock.now().astimezone(tz).date()

    def me() -> ExpertView | None:
        try:
            return esc.expert(expert_id())
        except UnknownExpert:
            return None

    def current(eid: str) -> list[EscalationView]:
        return [
            e for e in esc.open_escalations() if str(e.state) == "accepted" and e.expert_id == eid
        ]

    def desk() -> dict[str, Any]:
        eid = expert_id()
        profile = me()
        offers = esc.offers_for(eid) if profile is not None else []
        callbacks = esc.callbacks_for(eid) if profile is not None else []
        language = "en" if current_user.language == "en" else "zh-CN"
        return {
            "profile": profile,
            "specialty": current_user.specialty,
            "hospital": current_user.hospital,
            "current": current(eid) if profile is not None else [],
            "offers": offers,
            "callbacks": callbacks,
            "entries": {e.id: _entries(e, language) for e in [*offers, *callbacks]},
            "callers": {e.id: _caller(e.call_id, full=False) for e in callbacks},
            "now": services.clock.now(),
        }

    def _entries(view: EscalationView, language: str) -> list[UsedEntry]:
        out: list[UsedEntry] = []
        with services.db.transaction() as session:
            for ref in view.article_ids:
                kind, _sep, entity_id = ref.partition(":")
                said = kb_answer(session, kind, entity_id, language, today()) if _sep else None
                out.append(UsedEntry(ref, said.title if said else ref, said.text if said else None))
        return out

    def _caller(call_id: str, *, full: bool) -> CallerInfo:
        with services.db.transaction() as session:
            call = session.scalars(
                select(Call).where(Call.provider_call_id == call_id).order_by(Call.id)
            ).first()
            if call is None:
                return CallerInfo("–", None, None, None)
            name = None
            if call.resident_id is not None:
                resident = session.get(Resident, call.resident_id)
                name = resident.display_name if resident else None
            return CallerInfo(
                mask(call.from_e164), call.from_e164 if full else None, name, call.language
            )

    def mine(escalation_id: str) -> EscalationView:
        """The escalation if it is this expert's to see; 404 otherwise (also when unknown)."""
        eid = expert_id()
        try:
            view = esc.get(escalation_id)
        except UnknownEscalation:
            abort(404)
        if view.expert_id == eid:
            return view
        if me() is not None:
            visible = {e.id for e in esc.offers_for(eid)} | {e.id for e in esc.callbacks_for(eid)}
            if escalation_id in visible:
                return view
        raise NotFound()

    def audit(view: EscalationView, action: str, reason: str | None = None) -> None:
        with services.db.transaction() as session:
            session.add(
                AuditEntry(
                    at=services.clock.now(),
                    actor=current_user.username[:64],
                    action=action,
                    subject_type="escalation",
                    subject_id=view.id,
                    reason=reason,
                    detail={"call_id": view.call_id, "state": str(view.state)},
                )
            )

    # -- pages

    @bp.get("")
    @experts_only
    def desk_page() -> Any:
        """The desk: presence, the escalation in progress, offers and callbacks."""
        return render_template("expert/desk.html", **desk())

    @bp.get("/panel")
    @experts_only
    def panel() -> Any:
        """The desk's live panel (htmx refreshes on escalation events)."""
        return render_template("expert/_panel.html", **desk())

    @bp.get("/escalations/<escalation_id>")
    @experts_only
    def escalation(escalation_id: str) -> Any:
        """One escalation in full (audited): question, notes, entries, caller."""
        view = mine(escalation_id)
        language = "en" if current_user.language == "en" else "zh-CN"
        full = str(view.state) in ("callback_scheduled", "accepted")
        audit(view, "escalation_opened", "callback" if full else "offer")
        return render_template(
            "expert/escalation.html",
            e=view,
            entries=_entries(view, language),
            caller=_caller(view.call_id, full=full),
            now=services.clock.now(),
        )

    # -- presence

    @bp.post("/presence")
    @experts_only
    def presence() -> Any:
        """Go available (created from the console user's specialty) or offline."""
        state = request.form.get("state", "")
        user = current_user
        if state == "available":
            if not user.specialty:
                flash(_("您的账号还没有设置专科，请联系管理员。"), "error")
                return redirect(url_for("expert.desk_page"))
            esc.expert_sign_in(
                expert_id(),
                name=user.display_name,
                specialty=user.specialty,
                hospital=user.hospital or "",
            )
        elif state == "offline":
            try:
                esc.expert_sign_out(expert_id())
            except UnknownExpert:
                pass
            except ExpertNotAvailable:
                flash(_("通话结束前不能下线。"), "error")
        else:
            abort(400, description="state must be available or offline")
        return redirect(url_for("expert.desk_page"))

    # -- offers

    @bp.post("/escalations/<escalation_id>/accept")
    @experts_only
    def accept(escalation_id: str) -> Any:
        """Take the escalation: the phone joins this expert to the caller's call."""
        view = mine(escalation_id)
        try:
            esc.accept(expert_id(), view.id)
        except NotForThisExpert:
            abort(404)
        except EscalationError:
            flash(_("无法接受：该求助已被其他专家接受、已超时或您当前不是空闲状态。"), "error")
            return redirect(url_for("expert.desk_page"))
        flash(_("已接受，正在为您接通来电。"), "info")
        return redirect(url_for("expert.escalation", escalation_id=view.id))

    @bp.post("/escalations/<escalation_id>/decline")
    @experts_only
    def decline(escalation_id: str) -> Any:
        """Say no, with a reason (another expert of the pool, or a callback, takes over)."""
        view = mine(escalation_id)
        reason = request.form.get("reason", "").strip()
        if not reason:
            flash(_("请填写拒绝原因。"), "error")
            return redirect(url_for("expert.desk_page"))
        try:
            esc.decline(expert_id(), view.id, reason[:MAX_REASON])
        except NotForThisExpert:
            abort(404)
        except EscalationError:
            flash(_("该求助已不在等待接受。"), "error")
        else:
            flash(_("已拒绝。"), "info")
        return redirect(url_for("expert.desk_page"))

    @bp.post("/escalations/<escalation_id>/finish")
    @experts_only
    def finish(escalation_id: str) -> Any:
        """The consult in the call is over: completed, with the expert's note."""
        view = mine(escalation_id)
        if view.expert_id != expert_id() or str(view.state) != "accepted":
            abort(404)
        note = request.form.get("answer_note", "").strip()[:MAX_NOTE]
        try:
            esc.complete(view.id, expert_id(), note or None)
        except EscalationError:
            flash(_("该求助已结束。"), "error")
        else:
            flash(_("已结束。"), "info")
        return redirect(url_for("expert.desk_page"))

    # -- callbacks

    @bp.post("/callbacks/<escalation_id>/done")
    @experts_only
    def callback_done(escalation_id: str) -> Any:
        """The patient was called back: done, with a note of the answer (required)."""
        view = mine(escalation_id)
        note = request.form.get("answer_note", "").strip()
        if not note:
            flash(_("请填写答复内容。"), "error")
            return redirect(url_for("expert.escalation", escalation_id=view.id))
        try:
            esc.complete_callback(expert_id(), view.id, note[:MAX_NOTE])
        except NotForThisExpert:
            abort(404)
        except EscalationError:
            flash(_("该回拨已完成或已过期。"), "error")
        else:
            flash(_("回拨已完成。"), "info")
        return redirect(url_for("expert.desk_page"))

    return bp
