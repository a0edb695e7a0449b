"""``callcenter outbound status``: outbound messages grouped, failures explained, masked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from callcenter.cli import main
from callcenter.clock import SystemClock
from callcenter.db.engine import Database
from callcenter.db.models import OutboxMessage
from callcenter.messaging.outbox import DEFERRED_CAP, DEFERRED_QUIET, Outbox
from tests.conftest import FLOWS, ROOT, TEST_ENV, make_config

from .helpers import PHONE, enqueue

OTHER = "+8613900139000"


@pytest.fixture
def cli_env(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database]:
    for key, value in {
        **TEST_ENV,
        "CALLCENTER_CONFIG": str(ROOT / "config.yaml"),
        "CALLCENTER_DATABASE_URL": database_url,
        "CALLCENTER_INSTANCE_DATA_DIR": str(tmp_path),
        "CALLCENTER_IVR_FLOWS_DIR": str(FLOWS),
    }.items():
        monkeypatch.setenv(key, value)
    db = Database.from_url(database_url)
    yield db
    db.dispose()


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _set(db: Database, oid: int, **values: Any) -> None:
    with db.transaction() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == oid).values(**values))


@pytest.fixture
def filled(cli_env: Database, database_url: str, tmp_path: Path) -> Database:
    """An outbox with sent, failed, due and deferred messages of three templates."""
    outbox = Outbox.from_config(make_config(database_url, tmp_path), cli_env)
    now = SystemClock().now()
    later = now + timedelta(hours=3)

    def add(key: str, template: str, to: str = PHONE) -> int:
        return enqueue(outbox, cli_env, now, key, template=template, to_e164=to)

    for n in range(2):
        _set(cli_env, add(f"c{n}", "booking_confirmed"), status="delivered", status_rank=55)
    for n in range(3):
        _set(
            cli_env,
            add(f"f{n}", "booking_reminder", OTHER),
            status="undelivered",
            status_rank=51,
            last_error_code="30005",
            last_error=f"unknown destination {OTHER}",
        )
    _set(
        cli_env,
        add("f-other", "results_ready"),
        status="failed",
        status_rank=50,
        last_error_code="21211",
        last_error="invalid To",
    )
    add("due", "results_ready")
    _set(cli_env, add("cap1", "booking_reminder"), not_before=later, last_error=DEFERRED_CAP)
    _set(cli_env, add("cap2", "results_ready"), not_before=later, last_error=DEFERRED_CAP)
    _set(cli_env, add("quiet", "booking_reminder"), not_before=later, last_error=DEFERRED_QUIET)
    return cli_env


def test_status_groups_and_masks(filled: Database) -> None:
    out = _run("outbound", "status")
    assert PHONE not in out
    assert OTHER not in out
    assert "9000" in out  # the masked number keeps its last digits
    lines = out.splitlines()
    confirmed = next(line for line in lines if line.strip().startswith("booking_confirmed"))
    assert "delivered 2" in confirmed
    reminder = next(line for line in lines if line.strip().startswith("booking_reminder"))
    assert "undelivered 3" in reminder
    assert "waiting 2" in reminder
    results = next(line for line in lines if line.strip().startswith("results_ready"))
    assert "due 1" in results
    assert "failed 1" in results
    failures = out.split("top failure reasons:")[1].split("deferred now:")[0].splitlines()
    assert "[30005] unknown destination" in failures[1]
    assert failures[1].split()[0] == "3"
    assert "[21211] invalid To" in failures[2]
    deferred = out.split("deferred now:")[1]
    assert "2  frequency cap" in deferred
    assert "1  quiet hours" in deferred


def test_status_json_parses(filled: Database) -> None:
    out = _run("outbound", "status", "--json", "--since", "2")
    assert PHONE not in out
    assert OTHER not in out
    report = json.loads(out)
    assert report["by_template"]["booking_confirmed"] == {"delivered": 2}
    assert report["by_template"]["results_ready"] == {"due": 1, "failed": 1, "waiting": 1}
    assert report["top_failures"][0]["code"] == "30005"
    assert report["top_failures"][0]["count"] == 3
    assert report["deferred"] == {"frequency cap": 2, "quiet hours": 1}


def test_since_leaves_out_old_finished_messages(filled: Database) -> None:
    old = SystemClock().now() - timedelta(hours=30)
    with filled.transaction() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status.in_(("delivered", "undelivered", "failed")))
            .values(created_at=old, updated_at=old)
        )
    report = json.loads(_run("outbound", "status", "--json"))
    assert "booking_confirmed" not in report["by_template"]
    assert report["top_failures"] == []
    assert report["by_template"]["results_ready"] == {"due": 1, "waiting": 1}


def test_empty_outbox(cli_env: Database) -> None:
    out = _run("outbound", "status")
    assert "no messages" in out
    assert json.loads(_run("outbound", "status", "--json"))["deferred"] == {}
