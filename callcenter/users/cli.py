"""``callcenter users ...``: console users from the command line (the first admin, too).

Exit codes: 0 done; 1 failure while running; 2 usage error; 3 configuration error (nothing
was started); 4 refused (unknown user, username taken, password too weak: the message says
why, with its machine code in brackets).

Passwords are never command-line arguments (they would end up in the shell history and the
process list): they are asked for at a hidden prompt, twice, or read from the first line of
standard input with ``--password-stdin``. Every change is written to the audit trail under
``--operator`` (default: the login name).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..config import SUPPORTED_LANGUAGES
from .models import ROLES

if TYPE_CHECKING:
    from .service import UserService, UserView

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


def _password_stdin_option(fn: F) -> F:
    return click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from the first line of standard input instead of a prompt.",
    )(fn)


@contextmanager
def _users(state: Any) -> Iterator[tuple[UserService, Any]]:
    """The user service (and the time zone); refusals become exit code 4."""
    from ..cli import _services
    from .service import UserError

    services = _services(state)
    try:
        try:
            yield services.users, services.config.timezone
        except UserError as exc:
            raise Refused(f"[{exc.code}] {exc.message}") from None
    finally:
        services.db.dispose()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: standard input held no password")
        return password
    value = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return str(value)


def _find(users: UserService, username: str) -> UserView:
    from .service import UserError

    user = users.by_username(username)
    if user is None:
        raise UserError("unknown_user", f"no console user named {username!r}")
    return user


def _when(moment: Any, tz: Any) -> str:
    return "" if moment is None else f"{moment.astimezone(tz):%Y-%m-%d %H:%M}"


def _state_text(user: UserView, now: Any) -> str:
    if not user.active:
        return "deactivated"
    if user.is_locked(now):
        return "locked"
    return "active"


@click.group()
def users() -> None:
    """Console users: create (the first admin too), list, reset passwords, lock, unlock."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may do.")
@click.option("--display-name", default=None, help="Name shown in the console (default: USERNAME).")
@click.option(
    "--agent-id",
    default=None,
    help="Routing agent id of an agent or expert (created offline if new).",
)
@click.option("--specialty", default=None, help="Experts: their specialty.")
@click.option("--hospital", default=None, help="Experts: their hospital id.")
@click.option(
    "--language", type=click.Choice(SUPPORTED_LANGUAGES), default="zh-CN", show_default=True
)
@click.option(
    "--temporary",
    is_flag=True,
    help="The user must choose a new password at the first sign-in.",
)
@_password_stdin_option
@_operator_option
@click.pass_obj
def users_create(
    state: Any,
    username: str,
    role: str,
    display_name: str | None,
    agent_id: str | None,
    specialty: str | None,
    hospital: str | None,
    language: str,
    temporary: bool,
    password_stdin: bool,
    operator: str,
) -> None:
    """Create console user USERNAME (the password is asked for, never given as an argument)."""
    with _users(state) as (service, _tz):
        password = _read_password(password_stdin)
        user = service.create(
            username,
            display_name or username,
            role,
            password,
            actor=f"cli:{operator}",
            routing_agent_id=agent_id,
            specialty=specialty,
            hospital=hospital,
            language=language,
            must_change_password=temporary,
        )
        click.echo(f"created {user.role} {user.username} (id {user.id})")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per user, per line.")
@click.option("--active-only", is_flag=True, help="Leave out deactivated users.")
@click.pass_obj
def users_list(state: Any, as_json: bool, active_only: bool) -> None:
    """List console users with role, state and last sign-in (never a password)."""
    with _users(state) as (service, tz):
        now = service.clock.now()
        found = service.list_users(include_inactive=not active_only)
        for user in found:
            if as_json:
                data = asdict(user)
                for key in ("locked_until", "created_at", "password_changed_at", "last_sign_in_at"):
                    data[key] = data[key].isoformat() if data[key] else None
                data["state"] = _state_text(user, now)
                click.echo(json.dumps(data, ensure_ascii=False))
                continue
            click.echo(
                f"{user.username:<20} {user.role:<10} {_state_text(user, now):<11} "
                f"{user.routing_agent_id or '-':<12} {user.display_name}"
                f"  last sign-in {_when(user.last_sign_in_at, tz) or 'never'}"
            )
        if not found and not as_json:
            click.echo("no console users")


@users.command("reset-password")
@click.argument("username")
@click.option(
    "--temporary/--permanent",
    default=True,
    show_default=True,
    help="Whether the user must choose a new password at the next sign-in.",
)
@_password_stdin_option
@_operator_option
@click.pass_obj
def users_reset_password(
    state: Any, username: str, temporary: bool, password_stdin: bool, operator: str
) -> None:
    """Set a new password for USERNAME (lifts a lock, ends the user's sessions)."""
    with _users(state) as (service, _tz):
        user = _find(service, username)
        password = _read_password(password_stdin)
        service.reset_password(user.id, password, actor=f"cli:{operator}", temporary=temporary)
        click.echo(f"password of {user.username} reset; their sessions ended")


@users.command("lock")
@click.argument("username")
@click.option(
    "--minutes",
    type=click.IntRange(min=1),
    default=None,
    help="How long (default: console.lockout_minutes).",
)
@_operator_option
@click.pass_obj
def users_lock(state: Any, username: str, minutes: int | None, operator: str) -> None:
    """Lock USERNAME for a while and end their sessions."""
    with _users(state) as (service, tz):
        user = _find(service, username)
        locked = service.lock(user.id, actor=f"cli:{operator}", minutes=minutes)
        click.echo(f"{user.username} locked until {_when(locked.locked_until, tz)}")


@users.command("unlock")
@click.argument("username")
@_operator_option
@click.pass_obj
def users_unlock(state: Any, username: str, operator: str) -> None:
    """Lift the lock on USERNAME (after too many failed sign-ins)."""
    with _users(state) as (service, _tz):
        user = _find(service, username)
        service.unlock(user.id, actor=f"cli:{operator}")
        click.echo(f"{user.username} unlocked")


@users.command("deactivate")
@click.argument("username")
@_operator_option
@click.pass_obj
def users_deactivate(state: Any, username: str, operator: str) -> None:
    """Stop USERNAME from signing in (their sessions end; the record stays for the audit)."""
    with _users(state) as (service, _tz):
        user = _find(service, username)
        service.deactivate(user.id, actor=f"cli:{operator}")
        click.echo(f"{user.username} deactivated")
