"""``callcenter booking ...`` as an operator runs it: exit codes scripts can trust."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import select

from callcenter import bootstrap
from callcenter.booking.cli import booking
from callcenter.booking.models import Booking, Clinic
from callcenter.cli import main
from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from callcenter.db.models import AuditEntry, OutboxMessage
from tests.booking.conftest import TODAY, add_clinic, cn_id
from tests.conftest import AUTH_TOKEN, FLOWS, PUBLIC_BASE_URL, ROOT, SECRET_KEY

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
TOMORROW = TODAY + timedelta(days=1)


@pytest.fixture(autouse=True)
def _keep_root_logger() -> Iterator[None]:
    """The CLI configures logging for a terminal; give pytest its root logger back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers = handlers
    root.setLevel(level)


@pytest.fixture
def cli_config(
    tmp_path: Path, database_url: str, kb: Database, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The shipped config.yaml on the test database (with the small knowledge base), a
    low password hashing cost, and the CLI's clock pinned to 2026-11-26 09:00 Shanghai."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["instance"]["data_dir"] = str(tmp_path / "var")
    raw["database"]["url"] = database_url
    raw["ivr"]["flows_dir"] = str(FLOWS)
    raw["web"]["public_base_url"] = PUBLIC_BASE_URL
    raw["booking"]["password_hash_cost"] = 4
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(bootstrap, "SystemClock", lambda: FakeClock(NOW))
    return path


def run(config: Path, *args: str, secret: bool = True, stdin: str | None = None) -> Result:
    """``callcenter --config CONFIG booking ARGS...``."""
    env = {
        "CALLCENTER_CONFIG": str(config),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SECRET_KEY": SECRET_KEY if secret else None,
        "PUBLIC_BASE_URL": None,
        "CALLCENTER_WEB_PUBLIC_BASE_URL": None,
    }
    return CliRunner(env=env).invoke(
        main, ["--config", str(config), "booking", *args], input=stdin, catch_exceptions=False
    )


def book(config: Path, slot: str, n: int = 1, *extra: str) -> Result:
    return run(
        config,
        "book",
        "--slot",
        slot,
        "--name",
        "张测试",
        "--id-number",
        cn_id(n),
        "--phone",
        f"1380000000{n}",
        "--operator",
        "agent7",
        *extra,
    )


def visit_number(result: Result) -> str:
    found = re.search(r"visit number 就诊号码 (\d{8})", result.output)
    assert found, result.output
    return found.group(1)


@pytest.mark.parametrize("command", [None, *sorted(booking.commands)])
def test_help(cli_config: Path, command: str | None) -> None:
    result = run(cli_config, *([command] if command else []), "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_import_good_and_bad_files(cli_config: Path, kb: Database, tmp_path: Path) -> None:
    good = tmp_path / "s.yaml"
    good.write_text(
        "clinics:\n"
        "  - {id: c1, hospital: h1, department: h1-card, date: 2026-11-30, session: am,\n"
        "     slots: [{start: '08:00', end: '09:00', capacity: 2}]}\n",
        encoding="utf-8",
    )
    result = run(cli_config, "import", str(good))
    assert result.exit_code == 0, result.output
    assert "clinics: 1 created" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        good.read_text(encoding="utf-8")
        .replace("id: c1", "id: c2")
        .replace("capacity: 2", "capacity: x"),
        encoding="utf-8",
    )
    result = run(cli_config, "import", str(bad))
    assert result.exit_code == 4
    assert f"{bad}: row 1 (line 2): field slots[1].capacity" in result.output
    with kb.transaction() as tx:
        assert tx.get(Clinic, "c2") is None


def test_book_show_cancel(cli_config: Path, kb: Database) -> None:
    ids = add_clinic(kb, "c", TOMORROW, (("08:00", "09:00", 1), ("09:00", "10:00", 1)))
    slots = run(cli_config, "slots", "h1", "h1-card")
    assert slots.exit_code == 0, slots.output
    assert ids[0] in slots.output
    assert "普通门诊 / general clinic" in slots.output
    result = book(cli_config, ids[0])
    assert result.exit_code == 0, result.output
    number = visit_number(result)
    assert "the password was sent by SMS" in result.output
    assert not re.search(r"\b\d{6}\b", result.output.replace(number, ""))  # no password shown
    full = book(cli_config, ids[0], 2)
    assert full.exit_code == 4
    assert "[slot_full]" in full.output
    shown = run(cli_config, "show", number, "--operator", "agent9")
    assert shown.exit_code == 0, shown.output
    assert "张测试" in shown.output
    assert "+86 138****0001" in shown.output
    unknown = run(cli_config, "show", "12345678")
    assert unknown.exit_code == 4
    assert "[unknown_booking]" in unknown.output
    no_reason = run(cli_config, "cancel", number)
    assert no_reason.exit_code == 2
    cancelled = run(
        cli_config, "cancel", number, "--reason", "caller asked", "--operator", "agent9"
    )
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled" in cancelled.output
    again = run(cli_config, "cancel", number, "--reason", "caller asked")
    assert again.exit_code == 0
    assert "already cancelled" in again.output
    with kb.transaction() as tx:
        actions = list(tx.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
        templates = list(tx.scalars(select(OutboxMessage.template).order_by(OutboxMessage.id)))
    assert actions == ["booking.book", "booking.view", "booking.cancel"]
    assert templates == ["booking_confirmed", "booking_cancelled"]


def test_book_by_department_and_time_with_password_shown(cli_config: Path, kb: Database) -> None:
    add_clinic(kb, "c", TOMORROW, (("08:00", "09:00", 1), ("09:00", "10:00", 1)))
    result = book(
        cli_config,
        "",
        3,
        "--hospital",
        "h1",
        "--department",
        "h1-card",
        "--date",
        TOMORROW.isoformat(),
        "--time",
        "09:00",
        "--show-password",
    )
    assert result.exit_code == 0, result.output
    password = re.search(r"password 密码: (\d{6})", result.output)
    assert password
    with kb.transaction() as tx:
        row = tx.scalars(select(Booking)).one()
    assert row.slot_id == "c-0900"
    assert password.group(1) not in row.password_hash


def test_prompts_for_personal_data(cli_config: Path, kb: Database) -> None:
    [sid] = add_clinic(kb, "c", TOMORROW)
    result = run(
        cli_config, "book", "--slot", sid, "--operator", "agent7",
        stdin=f"张测试\n{cn_id(4)}\n13800000004\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert cn_id(4) not in result.output  # typed hidden


def test_reset_unlock_no_show_and_clinic_cancel(cli_config: Path, kb: Database) -> None:
    [sid] = add_clinic(kb, "c", TOMORROW, (("08:00", "09:00", 3),))
    first = visit_number(book(cli_config, sid, 1))
    second = visit_number(book(cli_config, sid, 2))
    reset = run(cli_config, "reset-password", first, "--reason", "lost SMS")
    assert reset.exit_code == 0, reset.output
    unlock = run(cli_config, "unlock", "--visit-number", first, "--reason", "identified")
    assert unlock.exit_code == 0, unlock.output
    assert "was not locked" in unlock.output
    by_id = run(cli_config, "unlock", "--id-number", cn_id(2), "--reason", "identified")
    assert by_id.exit_code == 0, by_id.output
    nobody = run(cli_config, "unlock", "--id-number", cn_id(9), "--reason", "x")
    assert nobody.exit_code == 4
    both = run(cli_config, "unlock", "--reason", "x")
    assert both.exit_code == 2
    early = run(cli_config, "no-show", first)
    assert early.exit_code == 4
    assert "[visit_not_started]" in early.output
    stop = run(cli_config, "clinic-cancel", "c", "--reason", "doctor ill")
    assert stop.exit_code == 0, stop.output
    assert "2 booking(s) cancelled, 2 SMS queued" in stop.output
    again = run(cli_config, "clinic-cancel", "c", "--reason", "doctor ill")
    assert "already cancelled" in again.output
    assert "0 booking(s)" in again.output
    unknown = run(cli_config, "clinic-cancel", "nope", "--reason", "x")
    assert unknown.exit_code == 4
    with kb.transaction() as tx:
        statuses = set(tx.scalars(select(Booking.status)))
    assert statuses == {"cancelled"}
    assert second


def test_demo_schedules_and_missing_secret(cli_config: Path, kb: Database) -> None:
    result = run(cli_config, "demo-schedules", "--days", "3")
    assert result.exit_code == 0, result.output
    assert "clinics: 8 created" in result.output  # 2 departments x Thu, Fri x am, pm
    assert run(cli_config, "demo-schedules", "--days", "3").output.startswith(
        "clinics: 0 created, 0 updated, 8 unchanged"
    )
    missing = run(cli_config, "slots", "h1", "h1-card", secret=False)
    assert missing.exit_code == 3
    assert "SECRET_KEY" in missing.output
