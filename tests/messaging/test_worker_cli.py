"""``callcenter worker``: help, --once with the local sender, clear errors; the local sender."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from callcenter.cli import main
from callcenter.db.engine import Database
from callcenter.messaging.local_sender import LocalSender
from callcenter.messaging.outbox import Outbox
from callcenter.messaging.ports import OutgoingSms
from tests.conftest import FLOWS, ROOT, SECRET_KEY, make_config

from .helpers import PHONE, enqueue, row


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env.update(
        {
            "CALLCENTER_CONFIG": str(ROOT / "config.yaml"),
            "CALLCENTER_DATABASE_URL": database_url,
            "CALLCENTER_INSTANCE_DATA_DIR": str(tmp_path),
            "CALLCENTER_IVR_FLOWS_DIR": str(FLOWS),
            "CALLCENTER_MESSAGING_QUIET_START": "00:00",
            "CALLCENTER_MESSAGING_QUIET_END": "00:00",
            "SECRET_KEY": SECRET_KEY,
        }
    )
    env.update(extra)
    return env


def _worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "worker", *args],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help() -> None:
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    assert "--once" in result.output
    assert "--worker-id" in result.output


def test_once_sends_what_is_due_with_the_local_sender(database_url: str, tmp_path: Path) -> None:
    from callcenter.clock import SystemClock

    config = make_config(database_url, tmp_path)
    db = Database.from_url(database_url)
    outbox = Outbox.from_config(config, db)
    oid = enqueue(outbox, db, SystemClock().now(), "cli-1")
    result = _worker(_env(database_url, tmp_path), "--once", "--worker-id", "cli")
    assert result.returncode == 0, result.stderr
    assert "1 messages handled" in result.stdout
    r = row(db, oid)
    assert r.status == "delivered"
    assert r.provider == "local"
    assert r.provider_id is not None
    assert r.provider_id.startswith("LOCALSM")
    assert r.claimed_by == "cli"
    assert "73915604" not in result.stderr
    assert PHONE not in result.stderr
    db.dispose()


def test_twilio_without_credentials_is_a_config_error(database_url: str, tmp_path: Path) -> None:
    env = _env(database_url, tmp_path, CALLCENTER_MESSAGING_SENDER="twilio")
    env.pop("TWILIO_ACCOUNT_SID", None)
    result = _worker(env, "--once")
    assert result.returncode == 3
    assert "TWILIO_ACCOUNT_SID" in result.stderr


def test_missing_schema_says_what_to_do(tmp_path: Path) -> None:
    result = _worker(_env(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path), "--once")
    assert result.returncode == 1
    assert "callcenter db upgrade" in result.stderr


def test_local_sender_logs_masked_and_never_the_body(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        result = LocalSender().send_sms(
            OutgoingSms(outbox_id=1, to_e164=PHONE, body="密码73915604", segments=2)
        )
    assert result.provider_id.startswith("LOCAL")
    assert "sms to +86 138****8000 (2 segments)" in caplog.text
    assert "73915604" not in caplog.text
    assert PHONE not in caplog.text
