"""``/supervisor``: the live wallboard, agents' states, daily reports and article editing.

Supervisors and admins only (403 for every other role on every URL). Views are thin: the
figures come from :mod:`agents_console.reports` and :class:`RoutingService.status`, state
changes go through :class:`~callcenter.routing.service.RoutingService`, article versions
through :mod:`knowledge_base.editing`.

The wallboard page loads its panel (``/supervisor/wallboard``) with htmx, re-fetches it on
every live event about queues, agents and escalations (``/events``) and every few seconds
(waits grow while nothing happens); ``static/supervisor.js`` draws the charts of the last
hours from ``/supervisor/charts.json`` with the vendored uPlot.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from callcenter.bootstrap import Services
from callcenter.routing.router import AgentState, RoutingError
from callcenter.routing.service import UnknownAgent
from knowledge_base.editing import (
    ArticleEditRejected,
    ArticleNotFound,
    VersionDraft,
    add_version,
    get_article,
    list_articles,
)

from . import reports
from .auth import current_user, role_required

log = logging.getLogger(__name__)

supervisors = role_required("supervisor", "admin")

#: hours of history in the wallboard charts
CHART_HOURS = 8
#: reasons a supervisor may give when setting an agent away (value -> label in the template)
AWAY_REASONS = ("break", "meeting", "training", "supervisor")
#: the states a supervisor may set (the others follow calls and timers)
SETTABLE_STATES = {
    "available": AgentState.AVAILABLE,
    "away": AgentState.AWAY,
    "offline": AgentState.OFFLINE,
}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    whole = round(value)
    return f"{whole // 60}:{whole % 60:02d}" if whole >= 60 else f"{whole}s"


def _parse_day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text or "")
    except ValueError:
        return None


def create_blueprint(services: Services) -> Blueprint:
    """The ``/supervisor`` blueprint bound to ``services``."""
    bp = Blueprint("supervisor", __name__, url_prefix="/supervisor")
    settings = services.config.settings
    tz = services.config.timezone

    def today() -> date:
        return services.clock.now().astimezone(tz).date()

    @bp.app_template_filter("percent")
    def percent_filter(value: float | None) -> str:
        """0.873 -> ``87%``; ``None`` -> ``–``."""
        return _percent(value)

    @bp.app_template_filter("clock_time")
    def clock_time_filter(moment: datetime | None) -> str:
        """``HH:MM:SS`` in the hotline's time zone (empty for ``None``)."""
        return "" if moment is None else f"{moment.astimezone(tz):%H:%M:%S}"

    @bp.app_template_filter("duration")
    def duration_filter(value: float | None) -> str:
        """Seconds as ``42s`` or ``3:05``; ``None`` -> ``–``."""
        return _seconds(value)

    # -- the wallboard

    @bp.get("")
    @supervisors
    def wallboard_page() -> Any:
        """The wallboard page (its panel is loaded and refreshed by htmx)."""
        return render_template("supervisor/wallboard.html", **_wallboard())

    @bp.get("/wallboard")
    @supervisors
    def wallboard_panel() -> Any:
        """The wallboard panel alone (htmx refreshes)."""
        return render_template("supervisor/_panel.html", **_wallboard())

    def _wallboard() -> dict[str, Any]:
        now = services.clock.now()
        status = services.routing.status()
        callbacks = reports.callbacks_waiting(services.db)
        return {
            "status": status,
            "callbacks": callbacks,
            "agents": reports.agents_now(services.db),
            "experts": [e for e in services.escalations.experts() if e.state != "offline"],
            "escalations": reports.escalations_now(services.escalations.open_escalations(), now),
            "now": now,
            "away_reasons": AWAY_REASONS,
            "target_s": settings.routing.service_level_s,
            "short_abandon_s": reports.SHORT_ABANDON_S,
        }

    @bp.get("/charts.json")
    @supervisors
    def charts() -> Any:
        """Hour-by-hour calls, answered, abandoned and service level per queue."""
        series = reports.hourly_series(
            services.db,
            services.clock.now(),
            hours=CHART_HOURS,
            target_s=settings.routing.service_level_s,
            queues=list(settings.routing.queues),
        )
        return jsonify(
            hours=CHART_HOURS,
            timezone=settings.instance.timezone,
            target_s=settings.routing.service_level_s,
            queues=[
                {
                    "queue": s.queue,
                    "starts": [int(t.timestamp()) for t in s.starts],
                    "calls": s.calls,
                    "answered": s.answered,
                    "abandoned": s.abandoned,
                    "service_level": [
                        None if v is None else round(v * 100, 1) for v in s.service_level
                    ],
                }
                for s in series
            ],
        )

    @bp.post("/agents/<agent_id>/state")
    @supervisors
    def agent_state(agent_id: str) -> Any:
        """Set an agent available, away (with a reason) or signed out."""
        target = SETTABLE_STATES.get(request.form.get("state", ""))
        if target is None:
            abort(400, description="state must be available, away or offline")
        reason = request.form.get("reason", "") or "supervisor"
        if target is AgentState.AWAY and reason not in AWAY_REASONS:
            abort(400, description="unknown away reason")
        try:
            services.routing.set_state(agent_id, target, reason)
        except UnknownAgent:
            abort(404)
        except (RoutingError, ValueError):
            flash(_("无法更改该坐席的状态（坐席正在通话或状态已变化）。"), "error")
        else:
            log.info("supervisor %s set agent %s %s", current_user.id, agent_id, target.value)
            flash(_("已更改坐席 %(agent)s 的状态。", agent=agent_id), "info")
        return redirect(url_for("supervisor.wallboard_page"))

    # -- reports

    @bp.get("/reports")
    @supervisors
    def reports_page() -> Any:
        """Choose a period; the last 7 days by default, shown on screen and exportable."""
        last = _parse_day(request.args.get("last")) or today()
        first = _parse_day(request.args.get("first")) or last - timedelta(days=6)
        error = None
        rows: list[reports.DailyRow] = []
        try:
            rows = _daily(first, last)
        except ValueError:
            error = _(
                "日期范围无效：结束日期不能早于开始日期，且最多 %(n)s 天。",
                n=reports.MAX_REPORT_DAYS,
            )
        return (
            render_template(
                "supervisor/reports.html", rows=rows, first=first, last=last, error=error
            ),
            200 if error is None else 400,
        )

    def _daily(first: date, last: date) -> list[reports.DailyRow]:
        return reports.daily_report(
            services.db,
            first,
            last,
            tz=tz,
            target_s=settings.routing.service_level_s,
            queues=list(settings.routing.queues),
        )

    @bp.get("/reports/daily.csv")
    @supervisors
    def report_csv() -> Any:
        """The daily report as a CSV download (UTF-8 with BOM, for Excel)."""
        first = _parse_day(request.args.get("first"))
        last = _parse_day(request.args.get("last"))
        if first is None or last is None:
            abort(400, description="first and last must be dates (YYYY-MM-DD)")
        try:
            rows = _daily(first, last)
        except ValueError as exc:
            abort(400, description=str(exc))
        name = f"hotline-daily-{first.isoformat()}-{last.isoformat()}.csv"
        return Response(
            reports.report_csv(rows).encode("utf-8"),
            mimetype="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Content-Type": "text/csv; charset=utf-8",
            },
        )

    # -- knowledge base

    @bp.get("/kb")
    @supervisors
    def kb_list() -> Any:
        """Every article with what callers hear today; expired and expiring first."""
        articles = list_articles(services.db, today())
        order = {"expired": 0, "unpublished": 1, "expiring": 2, "live": 3}
        articles.sort(key=lambda a: (order[a.status], a.id))
        return render_template("supervisor/kb_list.html", articles=articles, today=today())

    @bp.get("/kb/<article_id>")
    @supervisors
    def kb_article(article_id: str) -> Any:
        """An article's versions and the form for a new reviewed version."""
        try:
            article = get_article(services.db, article_id, today())
        except ArticleNotFound:
            abort(404)
        latest = article.versions[-1] if article.versions else None
        form = {
            "body_zh": latest.body_zh if latest else "",
            "body_en": (latest.body_en or "") if latest else "",
            "summary_zh": (latest.summary_zh or "") if latest else "",
            "summary_en": (latest.summary_en or "") if latest else "",
            "reviewer": "",
            "reviewed_on": today().isoformat(),
            "expires_on": (today() + timedelta(days=365)).isoformat(),
        }
        return render_template(
            "supervisor/kb_article.html",
            article=article,
            form=form,
            problems={},
            messages=problem_messages(),
            today=today(),
        )

    @bp.post("/kb/<article_id>/versions")
    @supervisors
    def kb_new_version(article_id: str) -> Any:
        """Save a new reviewed version (refused, with the reasons, if anything is wrong)."""
        form = {
            key: request.form.get(key, "")
            for key in (
                "body_zh",
                "body_en",
                "summary_zh",
                "summary_en",
                "reviewer",
                "reviewed_on",
                "expires_on",
            )
        }
        base_text = request.form.get("base_version", "")
        base = int(base_text) if base_text.isdigit() else None
        draft = VersionDraft(
            body_zh=form["body_zh"],
            body_en=form["body_en"],
            summary_zh=form["summary_zh"],
            summary_en=form["summary_en"],
            reviewer=form["reviewer"],
            reviewed_on=_parse_day(form["reviewed_on"]),
            expires_on=_parse_day(form["expires_on"]),
        )
        try:
            number = add_version(
                services.db,
                services.clock,
                article_id,
                draft,
                base_version=base,
                actor=current_user.username,
                today=today(),
            )
        except ArticleNotFound:
            abort(404)
        except ArticleEditRejected as exc:
            article = get_article(services.db, article_id, today())
            return (
                render_template(
                    "supervisor/kb_article.html",
                    article=article,
                    form=form,
                    problems=exc.problems,
                    messages=problem_messages(),
                    today=today(),
                ),
                409 if "base_version" in exc.problems else 400,
            )
        flash(_("已保存第 %(n)s 版。", n=number), "info")
        return redirect(url_for("supervisor.kb_article", article_id=article_id))

    return bp


def problem_messages() -> dict[str, str]:
    """Article-edit problem codes (:class:`ArticleEditRejected`) in the console's language."""
    return {
        "required": _("必填。"),
        "too_long": _("内容过长。"),
        "review_in_future": _("审核日期不能晚于今天。"),
        "expires_before_review": _("失效日期必须晚于审核日期。"),
        "already_expired": _("失效日期不能早于今天。"),
        "stale": _("保存前已有其他人保存了新版本：请查看最新版本后再修改。"),
    }
