"""``callcenter users ...`` as an operator runs it: a config file naming the test database,
secrets in the environment, the password at a prompt or on standard input."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from typing import cast

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.cli import main
from callcenter.db.models import AuditEntry
from tests.conftest import run_cli, write_cli_config
from tests.console.conftest import CHEAP_HASHING, MakeUser

ADMIN_PASSWORD = "First-Admin-Pass-1"


@pytest.fixture
def cli_config(tmp_path: Path, database_url: str) -> Path:
    """The shipped config.yaml pointed at the test database, with cheap hashing."""
    return write_cli_config(tmp_path, database_url, console=CHEAP_HASHING)


def users(config: Path, *args: str, input: str | None = None) -> Result:
    """``callcenter --config CONFIG users ARGS...``."""
    return cast(Result, run_cli(config, "users", *args, input=input))


def test_the_first_admin_is_made_from_a_prompt_and_signs_in(
    cli_config: Path, services: Services
) -> None:
    assert services.users.count() == 0
    result = users(
        cli_config,
        "create",
        "admin",
        "--role",
        "admin",
        "--display-name",
        "系统管理员",
        "--operator",
        "ops",
        input=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "created admin admin (id 1)" in result.output
    assert ADMIN_PASSWORD not in result.output  # the prompt does not echo it
    signed = services.users.authenticate("admin", ADMIN_PASSWORD)
    assert signed.outcome == "ok"
    assert signed.user is not None
    assert (signed.user.role, signed.user.display_name) == ("admin", "系统管理员")
    assert signed.user.must_change_password is False
    with services.db.sessions() as s:
        entry = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "console.user_created")
        ).one()
    assert entry.actor == "cli:ops"


def test_the_password_can_come_from_standard_input(cli_config: Path, services: Services) -> None:
    result = users(
        cli_config,
        "create",
        "li.wei",
        "--role",
        "agent",
        "--password-stdin",
        "--temporary",
        input="Agent-Pass-Li-1\n",
    )
    assert result.exit_code == 0, result.output
    signed = services.users.authenticate("li.wei", "Agent-Pass-Li-1")
    assert signed.user is not None
    assert signed.user.must_change_password is True


def test_a_password_is_never_a_command_line_argument(cli_config: Path) -> None:
    result = users(cli_config, "create", "x1", "--role", "agent", "--password", "Pass-In-Argv-1")
    assert result.exit_code == 2
    assert "No such option '--password'" in result.output


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        (
            ("create", "shorty", "--role", "agent", "--password-stdin"),
            "short\n",
            "password_too_short",
        ),
        (("create", "a", "--role", "agent", "--password-stdin"), "Long-Enough-1\n", "bad_username"),
        (
            ("create", "li", "--role", "supervisor", "--agent-id", "s1", "--password-stdin"),
            "Long-Enough-1\n",
            "agent_link_role",
        ),
        (("unlock", "nobody"), None, "unknown_user"),
        (("reset-password", "nobody", "--password-stdin"), "Long-Enough-1\n", "unknown_user"),
    ],
)
def test_refusals_exit_4_with_the_reason(
    cli_config: Path, services: Services, args: tuple[str, ...], stdin: str | None, code: str
) -> None:
    result = users(cli_config, *args, input=stdin)
    assert result.exit_code == 4, result.output
    assert f"[{code}]" in result.output
    assert services.users.count() == 0


def test_a_taken_username_exits_4(cli_config: Path, make_user: MakeUser) -> None:
    make_user("agent", username="wang")
    result = users(
        cli_config, "create", "WANG", "--role", "agent", "--password-stdin", input="Long-Enough-1\n"
    )
    assert result.exit_code == 4
    assert "[username_taken]" in result.output


def test_an_empty_standard_input_is_a_usage_error(cli_config: Path, services: Services) -> None:
    result = users(cli_config, "create", "li", "--role", "agent", "--password-stdin", input="")
    assert result.exit_code == 2
    assert "held no password" in result.output
    assert services.users.count() == 0


def test_list_reset_lock_unlock_and_deactivate(
    cli_config: Path, services: Services, make_user: MakeUser
) -> None:
    agent = make_user("agent", username="li", display_name="李伟")
    make_user("supervisor", username="zhou")
    listed = users(cli_config, "list")
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert [line.split()[0] for line in lines] == ["li", "zhou"]
    assert "李伟" in lines[0]
    assert "active" in lines[0]

    locked = users(cli_config, "lock", "li", "--minutes", "30")
    assert locked.exit_code == 0
    assert "li locked until" in locked.output
    data = [json.loads(line) for line in users(cli_config, "list", "--json").output.splitlines()]
    assert {d["username"]: d["state"] for d in data} == {"li": "locked", "zhou": "active"}
    assert all("password_hash" not in d for d in data)

    assert users(cli_config, "unlock", "li").exit_code == 0
    reset = users(
        cli_config,
        "reset-password",
        "li",
        "--permanent",
        "--password-stdin",
        input="New-Pass-Li-22\n",
    )
    assert reset.exit_code == 0, reset.output
    signed = services.users.authenticate("li", "New-Pass-Li-22")
    assert signed.user is not None
    assert signed.user.must_change_password is False

    assert users(cli_config, "deactivate", "li").exit_code == 0
    assert services.users.authenticate("li", "New-Pass-Li-22").outcome == "inactive"
    active = users(cli_config, "list", "--active-only")
    assert [line.split()[0] for line in active.output.splitlines()] == ["zhou"]
    assert services.users.get(agent.id) is not None


def test_no_password_reaches_the_logs(cli_config: Path, services: Services) -> None:
    # The CLI sets up the root logger for a terminal; listen on the package's logger instead.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("callcenter")
    logger.addHandler(handler)
    try:
        pw = "Logged-Never-Pass-9"
        users(cli_config, "create", "ops", "--role", "admin", "--password-stdin", input=f"{pw}\n")
        users(cli_config, "reset-password", "ops", "--password-stdin", input=f"{pw}-2\n")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(r.getMessage() for r in records)
    assert "console user ops created" in text  # the log says who and what
    assert "password reset" in text
    assert pw not in text
    assert services.users.by_username("ops") is not None


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("create",),
        ("list",),
        ("reset-password",),
        ("lock",),
        ("unlock",),
        ("deactivate",),
    ],
)
def test_every_users_command_has_help(args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, ["users", *args, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_the_demo_gets_one_user_per_role_with_passwords_in_a_private_file(
    services: Services, tmp_path: Path
) -> None:
    from callcenter.users.demo import ensure_demo_users

    first = ensure_demo_users(services.users, tmp_path)
    assert first.created == 4
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    lines = [line.split() for line in first.path.read_text(encoding="utf-8").splitlines()[1:]]
    assert [name for name, _ in lines] == list(first.usernames)
    for name, password in lines:
        assert services.users.authenticate(name, password).outcome == "ok"
    roles = {u.username: u.role for u in services.users.list_users()}
    assert roles == {
        "demo-admin": "admin",
        "demo-supervisor": "supervisor",
        "demo-agent": "agent",
        "demo-expert": "expert",
    }
    content = first.path.read_text(encoding="utf-8")
    again = ensure_demo_users(services.users, tmp_path)
    assert again.created == 0
    assert again.path.read_text(encoding="utf-8") == content
