"""``/admin/users``: admins list, create, reset, unlock and deactivate console users.

Only admins get in (403 for every other role, on every URL, whatever the user id in it).
New users and reset passwords get a random temporary password, shown to the admin once and
never stored in clear or logged; the user must choose their own at the next sign-in.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from callcenter.bootstrap import Services
from callcenter.config import SUPPORTED_LANGUAGES
from callcenter.users.models import ROLES
from callcenter.users.service import UserError, UserView, temporary_password

from .auth import current_user, role_required, user_error_message

admin_only = role_required("admin")


def create_blueprint(services: Services) -> Blueprint:
    """The ``/admin`` blueprint bound to ``services``."""
    bp = Blueprint("admin", __name__, url_prefix="/admin")
    users = services.users

    def _user_or_404(user_id: int) -> UserView:
        user = users.get(user_id)
        if user is None:
            abort(404)
        return user

    def _actor() -> str:
        return current_user.username

    @bp.get("/users")
    @admin_only
    def user_list() -> Any:
        """Every console user with role, state and last sign-in."""
        return render_template(
            "admin/users.html", users=users.list_users(), now=services.clock.now()
        )

    @bp.route("/users/new", methods=["GET", "POST"])
    @admin_only
    def user_new() -> Any:
        """Create a user; the temporary password is shown once."""
        form = {k: request.form.get(k, "").strip() for k in request.form}
        error = None
        if request.method == "POST":
            password = temporary_password()
            try:
                created = users.create(
                    form.get("username", ""),
                    form.get("display_name", ""),
                    form.get("role", ""),
                    password,
                    actor=_actor(),
                    routing_agent_id=form.get("routing_agent_id") or None,
                    specialty=form.get("specialty") or None,
                    hospital=form.get("hospital") or None,
                    language=form.get("language") or "zh-CN",
                    must_change_password=True,
                )
            except UserError as exc:
                error = user_error_message(exc)
            else:
                return render_template(
                    "admin/password_issued.html", user=created, password=password, created=True
                )
        return (
            render_template(
                "admin/user_new.html",
                form=form,
                error=error,
                roles=ROLES,
                languages=SUPPORTED_LANGUAGES,
            ),
            200 if error is None else 400,
        )

    @bp.get("/users/<int:user_id>")
    @admin_only
    def user_detail(user_id: int) -> Any:
        """One user and the actions on them."""
        user = _user_or_404(user_id)
        return render_template(
            "admin/user_detail.html",
            user=user,
            now=services.clock.now(),
            open_sessions=users.open_sessions(user.id),
        )

    @bp.post("/users/<int:user_id>/reset-password")
    @admin_only
    def user_reset(user_id: int) -> Any:
        """Give the user a new temporary password (ends their sessions, lifts a lock)."""
        user = _user_or_404(user_id)
        password = temporary_password()
        updated = users.reset_password(user.id, password, actor=_actor(), temporary=True)
        return render_template(
            "admin/password_issued.html", user=updated, password=password, created=False
        )

    @bp.post("/users/<int:user_id>/unlock")
    @admin_only
    def user_unlock(user_id: int) -> Any:
        """Lift a lockout."""
        user = _user_or_404(user_id)
        users.unlock(user.id, actor=_actor())
        flash(_("已解锁 %(name)s。", name=user.username), "info")
        return redirect(url_for("admin.user_detail", user_id=user.id))

    @bp.post("/users/<int:user_id>/deactivate")
    @admin_only
    def user_deactivate(user_id: int) -> Any:
        """Stop the user from signing in (their sessions end)."""
        user = _user_or_404(user_id)
        if user.id == current_user.id:
            flash(_("不能停用自己的账号。"), "error")
            return redirect(url_for("admin.user_detail", user_id=user.id))
        users.deactivate(user.id, actor=_actor())
        flash(_("已停用 %(name)s。", name=user.username), "info")
        return redirect(url_for("admin.user_detail", user_id=user.id))

    return bp
