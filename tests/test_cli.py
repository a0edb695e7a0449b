"""The ``callcenter`` command line: exit codes scripts can trust, and real processes."""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import socket
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import func, inspect, select
from twilio.request_validator import RequestValidator

import callcenter.cli as cli
from callcenter.cli import main
from callcenter.db.engine import Database, make_engine
from callcenter.db.migrate import current_revision, head_revision, upgrade
from callcenter.db.models import Resident
from callcenter.demo import DEMO_RESIDENTS
from tests.conftest import AUTH_TOKEN, FLOWS, PUBLIC_BASE_URL, ROOT, SECRET_KEY

CALLCENTER = Path(sys.executable).with_name("callcenter")
TABLES = {
    "residents",
    "calls",
    "call_events",
    "call_sessions",
    "call_steps",
    "outbox",
    "sms_inbound",
    "provider_status",
    "audit_log",
}


@pytest.fixture(autouse=True)
def _keep_root_logger() -> Iterator[None]:
    """The CLI configures logging for a terminal; give pytest its root logger back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers = handlers
    root.setLevel(level)


@pytest.fixture
def no_gunicorn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record instead of starting gunicorn, so a test that fails cannot hang on a server."""
    started: list[Any] = []
    monkeypatch.setattr(cli, "_gunicorn", lambda *args, **kw: started.append(args))
    return started


def write_config(
    path: Path, database_url: str, data_dir: Path, flows_dir: Path = FLOWS, **web: Any
) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["instance"]["data_dir"] = str(data_dir)
    raw["database"]["url"] = database_url
    raw["ivr"]["flows_dir"] = str(flows_dir)
    raw["web"]["public_base_url"] = PUBLIC_BASE_URL
    raw["web"].update(web)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def run_cli(config: Path, *args: str, secrets: bool = True, **env: str | None) -> Result:
    base: dict[str, str | None] = {
        "CALLCENTER_CONFIG": str(config),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN if secrets else None,
        "SECRET_KEY": SECRET_KEY if secrets else None,
        "PUBLIC_BASE_URL": None,
        # `demo` sets this in its own process; CliRunner restores what it names.
        "CALLCENTER_WEB_PUBLIC_BASE_URL": None,
    }
    base.update(env)
    return CliRunner(env=base).invoke(main, ["--config", str(config), *args])


def broken_flows(tmp_path: Path) -> Path:
    """A copy of the shipped flows where service.yaml's node 'hours' goes nowhere."""
    target = tmp_path / "flows"
    shutil.copytree(FLOWS, target)
    service = target / "service.yaml"
    text = service.read_text(encoding="utf-8")
    broken = text.replace(
        "prompt: service.hours\n    next: offer_sms", "prompt: service.hours\n    next: nowhere"
    )
    assert broken != text
    service.write_text(broken, encoding="utf-8")
    return target


def subprocess_env(config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env.update(
        CALLCENTER_CONFIG=str(config),
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        SECRET_KEY=SECRET_KEY,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
    )
    env.update(extra)
    return env


# ---------------------------------------------------------------- db


def test_db_upgrade_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    db_file = tmp_path / "new" / "deeper" / "callcenter.db"
    url = f"sqlite:///{db_file}"
    config = write_config(tmp_path / "config.yaml", url, tmp_path / "var")

    first = run_cli(config, "db", "upgrade")
    assert first.exit_code == 0, first.output
    engine = make_engine(url)
    try:
        head = head_revision(engine)
        assert head is not None
        assert f"database at revision {head} (sqlite)" in first.output
        assert set(inspect(engine).get_table_names()) >= TABLES

        second = run_cli(config, "db", "upgrade")
        assert second.exit_code == 0, second.output
        assert f"database at revision {head}" in second.output
        assert current_revision(engine) == head

        current = run_cli(config, "db", "current")
        assert current.exit_code == 0, current.output
        assert f"database: {head}; code: {head}" in current.output
    finally:
        engine.dispose()


def test_db_current_on_an_empty_database(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", f"sqlite:///{tmp_path / 'e.db'}", tmp_path)
    result = run_cli(config, "db", "current")
    assert result.exit_code == 0, result.output
    assert "database: (empty)" in result.output


def test_a_missing_config_file_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = CliRunner(env={"CALLCENTER_CONFIG": None}).invoke(
        main, ["--config", str(missing), "db", "current"]
    )
    assert result.exit_code == 3
    assert "nope.yaml" in result.output


# ---------------------------------------------------------------- flows


def test_flows_check_passes_on_the_shipped_flows(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", "sqlite:///unused.db", tmp_path)
    result = run_cli(config, "flows", "check")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 7 flows, ")
    assert str(FLOWS) in result.output


def test_flows_check_names_the_file_and_node_of_a_broken_flow(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", "sqlite:///unused.db", tmp_path)
    flows = broken_flows(tmp_path)
    result = run_cli(config, "flows", "check", str(flows))
    assert result.exit_code != 0
    assert "service.yaml" in result.output
    assert "node 'hours'" in result.output
    assert "'nowhere'" in result.output
    assert not result.output.startswith("ok")


def test_flows_check_of_a_missing_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", "sqlite:///unused.db", tmp_path)
    result = run_cli(config, "flows", "check", str(tmp_path / "no-such-flows"))
    assert result.exit_code != 0
    assert "no-such-flows" in result.output


# ---------------------------------------------------------------- demo


def test_demo_load_only(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "var"
    config = write_config(tmp_path / "config.yaml", database_url, data_dir)

    first = run_cli(
        config, "demo", "--load-only", secrets=False, PUBLIC_BASE_URL="https://demo.example.org"
    )
    assert first.exit_code == 0, first.output
    assert f"new residents: {len(DEMO_RESIDENTS)}" in first.output
    for path in ("/twilio/voice", "/twilio/voice/status", "/twilio/fallback", "/twilio/sms"):
        assert f"POST https://demo.example.org{path}\n" in first.output
    secrets_file = data_dir / "demo-secrets.env"
    assert str(secrets_file) in first.output
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    content = secrets_file.read_text(encoding="utf-8")
    values = dict(
        line.split("=", 1) for line in content.splitlines() if line and not line.startswith("#")
    )
    assert set(values) == {"TWILIO_AUTH_TOKEN", "SECRET_KEY"}
    assert all(len(v) >= 32 for v in values.values())
    assert values["TWILIO_AUTH_TOKEN"] not in first.output  # secrets are not printed

    # Without a public URL in the environment, the demo's URLs are where it listens.
    second = run_cli(config, "demo", "--load-only", "--port", "8123", secrets=False)
    assert second.exit_code == 0, second.output
    assert "new residents: 0" in second.output
    assert "POST http://localhost:8123/twilio/voice\n" in second.output
    assert secrets_file.read_text(encoding="utf-8") == content  # the same secrets are kept

    db = Database.from_url(database_url)
    try:
        assert current_revision(db.engine) == head_revision(db.engine)
        with db.sessions() as s:
            rows = s.scalars(select(Resident).order_by(Resident.phone_e164)).all()
            assert s.scalar(select(func.count()).select_from(Resident)) == len(DEMO_RESIDENTS)
        assert [(r.phone_e164, r.preferred_language, r.is_demo) for r in rows] == sorted(
            (phone, lang, True) for phone, lang, _name in DEMO_RESIDENTS
        )
    finally:
        db.dispose()


def test_demo_load_only_migrates_a_fresh_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    config = write_config(tmp_path / "config.yaml", url, tmp_path / "var")
    result = run_cli(config, "demo", "--load-only")
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()
    # Secrets already in the environment are used, not written to a file.
    assert not (tmp_path / "var" / "demo-secrets.env").exists()


# ---------------------------------------------------------------- serve


@pytest.mark.parametrize(
    ("missing", "present"),
    [("TWILIO_AUTH_TOKEN", "SECRET_KEY"), ("SECRET_KEY", "TWILIO_AUTH_TOKEN")],
    ids=["auth-token", "secret-key"],
)
def test_serve_without_a_secret_exits_3_naming_it(
    tmp_path: Path, no_gunicorn: list[Any], missing: str, present: str
) -> None:
    config = write_config(tmp_path / "config.yaml", "sqlite:///unused.db", tmp_path)
    result = run_cli(
        config,
        "serve",
        secrets=False,
        **{present: "set", missing: None},  # type: ignore[arg-type]
    )
    assert result.exit_code == 3
    assert missing in result.output
    assert present not in result.output.replace("(needed for", "")
    assert no_gunicorn == []


def test_serve_with_broken_flows_exits_3_naming_file_and_node(
    tmp_path: Path, no_gunicorn: list[Any]
) -> None:
    flows = broken_flows(tmp_path)
    config = write_config(tmp_path / "config.yaml", "sqlite:///unused.db", tmp_path, flows)
    result = run_cli(config, "serve")
    assert result.exit_code == 3
    assert "service.yaml" in result.output
    assert "node 'hours'" in result.output
    assert no_gunicorn == []


def test_serve_with_a_bad_config_value_exits_3(tmp_path: Path, no_gunicorn: list[Any]) -> None:
    config = write_config(tmp_path / "config.yaml", "sqlite:///unused.db", tmp_path)
    result = run_cli(config, "serve", CALLCENTER_WEB_PORT="eighty")
    assert result.exit_code == 3
    assert "web.port" in result.output
    assert "CALLCENTER_WEB_PORT" in result.output
    assert no_gunicorn == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_line(proc: subprocess.Popen[bytes], needle: str, timeout: float) -> str:
    """Read the server's stderr until a line holds ``needle`` (no sleeping)."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stderr.readline().decode("utf-8", "replace")
            if not line:
                break
            seen.append(line)
            if needle in line:
                return line
    raise AssertionError(f"server did not print {needle!r}; stderr was:\n{''.join(seen)}")


def test_real_serve_process_answers_health_and_signed_webhooks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    port = _free_port()
    config = write_config(tmp_path / "config.yaml", url, tmp_path / "var")
    proc = subprocess.Popen(
        [
            str(CALLCENTER),
            "--config",
            str(config),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=subprocess_env(config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_line(proc, "Listening at", timeout=30)
        local = f"http://127.0.0.1:{port}"
        health = requests.get(f"{local}/healthz", timeout=30)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        assert requests.get(f"{local}/readyz", timeout=10).status_code == 200

        form = {"CallSid": "CAserve00000000000000000000000001", "From": "+8613800138000"}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            f"{PUBLIC_BASE_URL}/twilio/voice", form
        )
        response = requests.post(
            f"{local}/twilio/voice",
            data=form,
            headers={"X-Twilio-Signature": signature},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/xml")
        root = ET.fromstring(response.content)  # noqa: S314 - our own TwiML, under test
        assert root.tag == "Response"
        gather = root.find("Gather")
        assert gather is not None
        assert gather.attrib["action"] == f"{PUBLIC_BASE_URL}/twilio/voice/input?step=0"

        forged = requests.post(
            f"{local}/twilio/voice", data=form, headers={"X-Twilio-Signature": "bad"}, timeout=10
        )
        assert forged.status_code == 403
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0  # a clean shutdown on SIGTERM


def test_wsgi_entry_point_imports(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", f"sqlite:///{tmp_path / 'w.db'}", tmp_path)
    code = (
        "import callcenter.wsgi as w\n"
        "rules = sorted(r.rule for r in w.application.url_map.iter_rules())\n"
        "print(w.application is w.app, '/twilio/voice' in rules, '/healthz' in rules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(config),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True True True"


def test_wsgi_entry_point_refuses_to_start_without_the_auth_token(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", f"sqlite:///{tmp_path / 'w.db'}", tmp_path)
    env = subprocess_env(config)
    del env["TWILIO_AUTH_TOKEN"]
    done = subprocess.run(
        [sys.executable, "-c", "import callcenter.wsgi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "TWILIO_AUTH_TOKEN" in done.stderr
