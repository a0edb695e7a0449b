"""``callcenter outbox``: what an operator sees of the outbox, numbers masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from callcenter.cli import main
from callcenter.clock import SystemClock
from callcenter.db.engine import Database
from callcenter.db.models import OutboxAttempt, OutboxMessage
from callcenter.messaging.outbox import Outbox
from tests.conftest import FLOWS, ROOT, TEST_ENV, make_config

from .helpers import PHONE, enqueue


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    for key, value in {
        **TEST_ENV,
        "CALLCENTER_CONFIG": str(ROOT / "config.yaml"),
        "CALLCENTER_DATABASE_URL": database_url,
        "CALLCENTER_INSTANCE_DATA_DIR": str(tmp_path),
        "CALLCENTER_IVR_FLOWS_DIR": str(FLOWS),
    }.items():
        monkeypatch.setenv(key, value)
    db = Database.from_url(database_url)
    yield db  # type: ignore[misc]
    db.dispose()


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_failed_messages_and_their_attempts_are_listed(
    cli_env: Database, database_url: str, tmp_path: Path
) -> None:
    outbox = Outbox.from_config(make_config(database_url, tmp_path), cli_env)
    now = SystemClock().now()
    ok = enqueue(outbox, cli_env, now, "cli-ok")
    bad = enqueue(outbox, cli_env, now, "cli-bad")
    with cli_env.transaction() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == bad)
            .values(status="failed", attempts=1, last_error_code="21211", last_error="invalid To")
        )
        s.add(
            OutboxAttempt(
                outbox_id=bad,
                attempt=1,
                worker="w1",
                started_at=now,
                finished_at=now,
                result="permanent",
                error_code="21211",
            )
        )
    status = _run("outbox", "status")
    assert "failed       1" in status
    assert "pending      1" in status
    failed = _run("outbox", "list", "--status", "failed")
    assert f"{bad:>8}" in failed
    assert f"{ok:>8}" not in failed
    assert "[21211] invalid To" in failed
    assert "+86 138****8000" in failed
    assert PHONE not in failed
    shown = _run("outbox", "show", str(bad))
    assert "attempt 1:" in shown
    assert "permanent" in shown
    assert "21211" in shown
    assert _run("outbox", "unknown").strip() == "none"


def test_an_unknown_message_is_an_error(cli_env: Database) -> None:
    result = CliRunner().invoke(main, ["outbox", "show", "999999"])
    assert result.exit_code == 1
    assert "no outbox message 999999" in result.output
