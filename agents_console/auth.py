"""Sign-in for the console: users, server-side sessions, roles, CSRF, security headers, language.

For the screens built on top:

* ``@role_required("agent")`` (or several roles) on every console view: anonymous HTML
  requests are sent to the sign-in page, anonymous ``/api/...`` requests get 401 JSON (htmx
  requests get 401 with ``HX-Redirect``), a signed-in user of another role gets 403.
* :data:`current_user` is the signed-in :class:`SignedInUser` (``id``, ``username``,
  ``display_name``, ``role``, ``routing_agent_id``, ``specialty``, ``hospital``,
  ``language``); outside ``role_required`` views check ``current_user.is_authenticated``.
* Every POST/PUT/PATCH/DELETE needs the CSRF token: forms carry
  ``<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">``; htmx requests get the
  ``X-CSRFToken`` header from ``base.html``.
* A request counts as the user's activity (it extends the 15-minute idle timeout) unless it
  is a live-event stream (``Accept: text/event-stream``) or carries ``X-Console-Passive: 1``
  (background polling): those are checked but do not keep a session alive.

How a session works: signing in creates a row in ``console_sessions`` and puts its random
token in the signed Flask session cookie (as Flask-Login's user id). Every console request
looks the token up (:meth:`callcenter.users.service.UserService.touch_session`), so signing
out, a timeout, a lock or a deactivation ends the session on the server and a replayed old
cookie is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import flask_login
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import Babel
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.local import LocalProxy

from callcenter.bootstrap import Services
from callcenter.config import SUPPORTED_LANGUAGES
from callcenter.users.models import ROLES
from callcenter.users.service import SessionView, UserError

F = TypeVar("F", bound=Callable[..., Any])

#: the page each role lands on after signing in (and at ``/``)
HOME = {
    "agent": "/agent",
    "expert": "/expert",
    "supervisor": "/supervisor",
    "admin": "/admin/users",
}
#: paths that are not console pages: no session lookup, no sign-in (they check their own
#: signatures), no CSRF token
NON_CONSOLE_PREFIXES = ("/twilio/", "/api/hospitals/", "/static/", "/healthz", "/readyz")
#: console language (config form) -> translation directory name
BABEL_LOCALES = {"zh-CN": "zh_CN", "en": "en"}
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
#: navigation: (path, label, roles that see it)
NAV: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("/agent", _l("坐席工作台"), ("agent",)),
    ("/expert", _l("专家工作台"), ("expert",)),
    ("/supervisor", _l("监控大屏"), ("supervisor",)),
    ("/admin/users", _l("用户管理"), ("admin",)),
)
ROLE_LABELS = {
    "agent": _l("一线坐席"),
    "expert": _l("二线专家"),
    "supervisor": _l("值班主管"),
    "admin": _l("管理员"),
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), geolocation=(), microphone=()",
}


@dataclass
class SignedInUser:
    """The signed-in console user of this request (Flask-Login's user object).

    ``get_id()`` is the session token, so Flask-Login's cookie names a server-side session,
    not a user: ending the session ends the cookie's power.
    """

    id: int
    username: str
    display_name: str
    role: str
    language: str
    routing_agent_id: str | None
    specialty: str | None
    hospital: str | None
    must_change_password: bool
    session_id: int
    token: str = field(repr=False)
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        """The session token (Flask-Login stores it in the signed cookie)."""
        return self.token

    @classmethod
    def from_session(cls, found: SessionView, token: str) -> SignedInUser:
        """Build from a live session."""
        user = found.user
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            role=user.role,
            language=user.language,
            routing_agent_id=user.routing_agent_id,
            specialty=user.specialty,
            hospital=user.hospital,
            must_change_password=user.must_change_password,
            session_id=found.session_id,
            token=token,
        )


class AnonymousUser:
    """Nobody signed in: the same attributes, empty."""

    id = 0
    username = ""
    display_name = ""
    role = ""
    language = ""
    routing_agent_id: str | None = None
    specialty: str | None = None
    hospital: str | None = None
    must_change_password = False
    session_id = 0
    token = ""
    is_authenticated = False
    is_active = False
    is_anonymous = True

    def get_id(self) -> None:
        """No id."""
        return


def _current() -> SignedInUser:
    return cast(SignedInUser, flask_login.current_user._get_current_object())


#: the user of the current request (an :class:`AnonymousUser` when nobody is signed in)
current_user: SignedInUser = cast(SignedInUser, LocalProxy(_current))


def services() -> Services:
    """The application's services."""
    return cast(Services, current_app.extensions["callcenter"])


def is_console_request() -> bool:
    """Whether this request is for the console (not a webhook, feed, static file or probe)."""
    return not request.path.startswith(NON_CONSOLE_PREFIXES)


def wants_json() -> bool:
    """API requests get JSON errors, pages get pages."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def is_passive_request() -> bool:
    """A request that is not the user's doing (event stream, background poll)."""
    accept = request.headers.get("Accept", "")
    return "text/event-stream" in accept or request.headers.get("X-Console-Passive") == "1"


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site, else ``None`` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def home_for(role: str) -> str:
    """Where a user of ``role`` starts."""
    return HOME.get(role, "/auth/sign-in")


def _unauthorized() -> Any:
    if wants_json():
        return jsonify(error="sign-in required"), 401
    # come back to the page after signing in (a form's target cannot be come back to)
    back = request.full_path.rstrip("?") if request.method == "GET" else None
    target = url_for("auth.sign_in", next=back)
    if request.headers.get("HX-Request"):
        return Response(status=401, headers={"HX-Redirect": target})
    return redirect(target)


def role_required(*roles: str) -> Callable[[F], F]:
    """Let only signed-in users with one of ``roles`` through (checked on every request).

    Anonymous: sign-in page (HTML) or 401 (``/api``). Wrong role: 403. A user who must
    change a password handed out by an admin is sent to do that first.
    """
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"role_required needs roles from {ROLES}, got {roles!r}")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_user
            if not user.is_authenticated:
                return _unauthorized()
            if user.must_change_password:
                if wants_json():
                    return jsonify(error="password change required"), 403
                return redirect(url_for("auth.change_password"))
            if user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorator


#: any signed-in user
signin_required = role_required(*ROLES)


def local_time(moment: datetime | None) -> str:
    """``YYYY-MM-DD HH:MM`` in the hotline's time zone (empty for ``None``)."""
    if moment is None:
        return ""
    return f"{moment.astimezone(services().config.timezone):%Y-%m-%d %H:%M}"


def role_label(role: str) -> str:
    """A role's name in the console's language."""
    label = ROLE_LABELS.get(role)
    return str(label) if label is not None else role


def console_language() -> str:
    """The console language of this request: chosen in this browser, else the user's, else
    the configured default."""
    chosen = session.get("lang")
    if chosen in SUPPORTED_LANGUAGES:
        return str(chosen)
    if is_console_request():
        user = current_user
        if user.is_authenticated and user.language in SUPPORTED_LANGUAGES:
            return user.language
    return services().config.settings.console.default_language


def _load_user(token: str) -> SignedInUser | None:
    check = services().users.touch_session(token, active=not is_passive_request())
    if check.session is None:
        g.console_session_ended = check.ended
        return None
    return SignedInUser.from_session(check.session, token)


ENDED_MESSAGES = {
    "idle": _l("您长时间未操作，会话已结束，请重新登录。"),
    "expired": _l("会话已超过最长时限，请重新登录。"),
    "locked": _l("账号已被锁定，会话已结束。"),
    "deactivated": _l("账号已停用，会话已结束。"),
    "password_changed": _l("密码已更改，请重新登录。"),
    "signed_out": _l("会话已结束，请重新登录。"),
}


def _check_session() -> None:
    """Before every console request: load the session (checking its timeouts); a cookie whose
    session has ended is cleared, with a note on the sign-in page."""
    if not is_console_request():
        return
    if current_user.is_authenticated or "_user_id" not in session:
        return
    reason = g.get("console_session_ended")
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    message = ENDED_MESSAGES.get(str(reason))
    if message is not None:
        flash(str(message), "info")


def _security_headers(response: Response) -> Response:
    headers = response.headers
    present = {key.lower() for key, _value in headers.items()}
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            headers.add(name, value)
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        # served over https (PUBLIC_BASE_URL): browsers must never fall back to http
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if is_console_request() and response.mimetype in ("text/html", "application/json"):
        # pages and answers may hold patient data: never keep them in a cache
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _error_page(error: HTTPException) -> Any:
    if not is_console_request():
        return error
    code = error.code or 500
    if wants_json():
        return jsonify(error=error.description if code == 400 else error.name), code
    messages = {
        403: _("您没有权限访问此页面。"),
        404: _("找不到此页面。"),
    }
    message = messages.get(code, error.description or error.name)
    return render_template("auth/error.html", code=code, message=message), code


def _csrf_error(error: CSRFError) -> Any:
    if wants_json():
        return jsonify(error=f"CSRF check failed: {error.description}"), 400
    message = _("表单已过期或无效，请返回、刷新页面后再试。")
    return render_template("auth/error.html", code=400, message=message), 400


def init_auth(app: Flask, built: Services, *, csrf_exempt: Iterable[str] = ()) -> None:
    """Set up sign-in, CSRF, language and security headers on ``app``; register ``/auth``
    and ``/``. ``csrf_exempt``: names of blueprints already registered that check their own
    signatures (webhooks, hospital feeds)."""
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid as long as the session
    app.config.setdefault("BABEL_DEFAULT_LOCALE", BABEL_LOCALES["zh-CN"])
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))

    manager = flask_login.LoginManager()
    manager.init_app(app)
    manager.session_protection = "basic"
    manager.anonymous_user = AnonymousUser
    manager.user_loader(_load_user)
    manager.unauthorized_handler(_unauthorized)

    csrf = CSRFProtect(app)
    for name in csrf_exempt:
        csrf.exempt(app.blueprints[name])

    def _babel_locale() -> str:
        return BABEL_LOCALES[console_language()]

    Babel(app, locale_selector=_babel_locale)

    app.before_request(_check_session)
    app.after_request(_security_headers)
    for code in (403, 404):
        app.register_error_handler(code, _error_page)
    app.register_error_handler(CSRFError, _csrf_error)

    instance = built.config.settings.instance

    @app.context_processor
    def _console_context() -> dict[str, Any]:
        lang = console_language() if is_console_request() else "zh-CN"
        user = current_user
        nav = []
        if user.is_authenticated:
            nav = [
                {"href": href, "label": label, "active": request.path.startswith(href)}
                for href, label, roles in NAV
                if user.role in roles
            ]
        return {
            "console_user": user,
            "console_lang": lang,
            "console_nav": nav,
            "hotline_name": instance.name_en if lang == "en" else instance.name_zh,
            "role_label": role_label,
            "local_time": local_time,
        }

    app.register_blueprint(create_blueprint())


def create_blueprint() -> Blueprint:
    """``/auth/...`` (sign-in, sign-out, password, language) and ``/`` (home by role)."""
    bp = Blueprint("auth", __name__)

    @bp.get("/")
    def index() -> Any:
        """Send the user to their screen (or to sign in)."""
        user = current_user
        if not user.is_authenticated:
            return redirect(url_for("auth.sign_in"))
        if user.must_change_password:
            return redirect(url_for("auth.change_password"))
        return redirect(home_for(user.role))

    @bp.route("/auth/sign-in", methods=["GET", "POST"])
    def sign_in() -> Any:
        """The sign-in form; a good password opens a server-side session."""
        target = safe_next(request.values.get("next"))
        if current_user.is_authenticated:
            return redirect(target or home_for(current_user.role))
        error = None
        username = ""
        if request.method == "POST":
            username = request.form.get("username", "").strip()[:64]
            password = request.form.get("password", "")
            users = services().users
            result = users.authenticate(username, password, source=request.remote_addr)
            if result.outcome == "throttled":
                error = _(
                    "登录失败次数过多，请%(m)s分钟后再试，或联系管理员。",
                    m=users.settings.source_window_minutes,
                )
                return (
                    render_template(
                        "auth/sign_in.html", error=error, username=username, next=target
                    ),
                    429,
                )
            if result.outcome == "ok" and result.user is not None:
                lang = session.get("lang")
                session.clear()  # a new session: nothing carried over from before sign-in
                if lang:
                    session["lang"] = lang
                token = users.start_session(result.user.id)
                check = users.touch_session(token)
                assert check.session is not None
                user = SignedInUser.from_session(check.session, token)
                flask_login.login_user(user)
                if user.must_change_password:
                    return redirect(url_for("auth.change_password"))
                return redirect(target or home_for(user.role))
            error = _(
                "用户名或密码错误，或账号已停用。连续失败%(n)s次后账号将锁定%(m)s分钟。",
                n=users.settings.max_failed_sign_ins,
                m=users.settings.lockout_minutes,
            )
        status = 200 if error is None else 401
        return (
            render_template("auth/sign_in.html", error=error, username=username, next=target),
            status,
        )

    @bp.post("/auth/sign-out")
    def sign_out() -> Any:
        """End the session on the server and forget the cookie."""
        user = current_user
        if user.is_authenticated:
            services().users.end_session(user.token)
            flask_login.logout_user()
        lang = session.get("lang")
        session.clear()
        if lang:
            session["lang"] = lang
        flash(_("您已安全退出。"), "info")
        return redirect(url_for("auth.sign_in"))

    @bp.route("/auth/password", methods=["GET", "POST"])
    def change_password() -> Any:
        """A signed-in user sets a new password (required after an admin's reset)."""
        user = current_user
        if not user.is_authenticated:
            return _unauthorized()
        error = None
        if request.method == "POST":
            new = request.form.get("new_password", "")
            if new != request.form.get("confirm_password", ""):
                error = _("两次输入的新密码不一致。")
            else:
                users = services().users
                try:
                    users.change_password(user.id, request.form.get("current_password", ""), new)
                except UserError as exc:
                    error = user_error_message(exc)
                else:
                    # every session of the user ended with the change; start a fresh one here
                    token = users.start_session(user.id)
                    check = users.touch_session(token)
                    assert check.session is not None
                    flask_login.login_user(SignedInUser.from_session(check.session, token))
                    flash(_("密码已更改。"), "info")
                    return redirect(home_for(user.role))
        status = 200 if error is None else 400
        return render_template("auth/password.html", error=error), status

    @bp.post("/auth/language")
    def language() -> Any:
        """Switch the console language (remembered in this browser and for the user)."""
        lang = request.form.get("lang", "")
        if lang not in SUPPORTED_LANGUAGES:
            abort(400, description="unknown language")
        session["lang"] = lang
        user = current_user
        if user.is_authenticated:
            services().users.set_language(user.id, lang)
        return redirect(safe_next(request.form.get("next")) or url_for("auth.index"))

    return bp


def user_error_message(exc: UserError) -> str:
    """A :class:`UserError` in the console's language."""
    settings = services().users.settings
    messages = {
        "password_too_short": _("密码至少需要%(n)s个字符。", n=settings.min_password_length),
        "password_too_long": _("密码最多256个字符。"),
        "password_is_username": _("密码不能与用户名相同。"),
        "wrong_password": _("当前密码不正确。"),
        "password_unchanged": _("新密码不能与当前密码相同。"),
        "bad_username": _("用户名须为2到64个字符：小写字母、数字或 . _ -"),
        "bad_display_name": _("请填写显示名称（最多100个字符）。"),
        "bad_role": _("请选择角色。"),
        "bad_language": _("请选择语言。"),
        "username_taken": _("该用户名已被使用。"),
        "bad_agent_id": _("坐席编号最多64个字符：字母、数字或 . _ -"),
        "routing_agent_taken": _("该坐席编号已关联其他用户。"),
        "agent_link_role": _("只有坐席和专家可以关联坐席编号。"),
        "unknown_user": _("找不到该用户。"),
    }
    return str(messages.get(exc.code, exc.message))
