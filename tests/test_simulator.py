"""The terminal simulator (``callcenter call``): the same dialogue as a phone call."""

from __future__ import annotations

import io
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.cli import main
from callcenter.db.models import Call, CallEvent, OutboxMessage
from callcenter.simulator import Simulator, parse_input
from tests.conftest import AUTH_TOKEN, FLOWS, PUBLIC_BASE_URL, ROOT, SECRET_KEY, TwilioSigner

CALLER = "+8613800138000"


def _prompts(language: str) -> dict[str, Any]:
    data = yaml.safe_load((FLOWS / "prompts" / f"{language}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


ZH = _prompts("zh-CN")
EN = _prompts("en")


@pytest.fixture(autouse=True)
def _keep_root_logger() -> Iterator[None]:
    """The CLI configures logging for a terminal; give pytest its root logger back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers = handlers
    root.setLevel(level)


def write_config(path: Path, database_url: str, data_dir: Path) -> Path:
    """The shipped config.yaml, pointed at the test database and the repository's flows."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["instance"]["data_dir"] = str(data_dir)
    raw["database"]["url"] = database_url
    raw["ivr"]["flows_dir"] = str(FLOWS)
    raw["web"]["public_base_url"] = PUBLIC_BASE_URL
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def cli_config(tmp_path: Path, database_url: str) -> Path:
    return write_config(tmp_path / "config.yaml", database_url, tmp_path / "var")


def run_cli(config: Path, *args: str) -> Result:
    env = {
        "CALLCENTER_CONFIG": str(config),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": None,
        # `demo` sets this in its own process; CliRunner restores what it names.
        "CALLCENTER_WEB_PUBLIC_BASE_URL": None,
    }
    return CliRunner(env=env).invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def system_lines(output: str, label: str = "系统") -> list[str]:
    prefix = f"{label}: "
    return [line[len(prefix) :] for line in output.splitlines() if line.startswith(prefix)]


def parse_twiml(response: Any) -> ET.Element:
    assert response.status_code == 200
    return ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML, under test


def sim_calls(services: Services) -> list[Call]:
    with services.db.sessions() as s:
        return list(s.scalars(select(Call).where(Call.provider == "sim").order_by(Call.id)))


def event_path(services: Services, call_id: int) -> list[tuple[int | None, str, str | None]]:
    with services.db.sessions() as s:
        rows = s.scalars(
            select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.id)
        )
        return [(e.step, e.kind, e.node) for e in rows]


# ---------------------------------------------------------------- script mode


def test_script_prints_the_whole_dialogue(
    cli_config: Path, tmp_path: Path, services: Services
) -> None:
    script = tmp_path / "dialogue.txt"
    script.write_text("5\n1\n1\n0\n", encoding="utf-8")
    result = run_cli(cli_config, "call", "--script", str(script), "--from", CALLER)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "=== 模拟来电 +86 138****8000 → 健康热线 ==="
    assert system_lines(result.output) == [
        ZH["main"]["welcome"],
        ZH["main"]["menu"],
        ZH["service"]["menu"],
        ZH["service"]["hours"],
        ZH["service"]["offer_sms"],
        ZH["service"]["sms_sent"],
        ZH["service"]["menu"],
        ZH["system"]["transfer"],
    ]
    assert [line for line in lines if line.startswith("来电者: ")] == [
        "来电者: 5",
        "来电者: 1",
        "来电者: 1",
        "来电者: 0",
    ]
    assert lines[-1].startswith("[转入人工队列 general-zh-CN")
    assert CALLER not in result.output  # the number is masked on screen
    [call] = sim_calls(services)
    assert (call.from_e164, call.outcome, call.queue, call.status) == (
        CALLER,
        "enqueued",
        "general",
        "completed",
    )
    with services.db.sessions() as s:
        [sms] = s.scalars(select(OutboxMessage)).all()
    assert (sms.template, sms.to_e164, sms.call_id) == ("service_guide", CALLER, call.id)


def test_script_follows_the_same_path_as_the_webhooks(
    cli_config: Path, tmp_path: Path, services: Services, twilio: TwilioSigner
) -> None:
    inputs = ["服务指南", "1", "", "1", "人工"]
    script = tmp_path / "dialogue.txt"
    script.write_text("".join(f"{line}\n" for line in inputs), encoding="utf-8")
    result = run_cli(cli_config, "call", "--script", str(script), "--from", CALLER)
    assert result.exit_code == 0, result.output
    sim_spoken = system_lines(result.output)
    sim_queue = result.output.splitlines()[-1]

    # The same inputs, as Twilio would post them.
    sid = "CAsamepath000000000000000000000001"
    response = twilio.post("/twilio/voice", {"CallSid": sid, "From": CALLER})
    phone_spoken: list[str] = []
    root = parse_twiml(response)
    phone_spoken += [el.text or "" for el in root.iter("Say")]
    for line in inputs:
        gather = root.find("Gather")
        assert gather is not None
        path = gather.attrib["action"][len(PUBLIC_BASE_URL) :]
        form = {"CallSid": sid}
        if line.isdigit():
            form["Digits"] = line
        elif line:
            form["SpeechResult"] = line
        root = parse_twiml(twilio.post(path, form))
        phone_spoken += [el.text or "" for el in root.iter("Say")]
    enqueue = root.find("Enqueue")
    assert enqueue is not None
    twilio.post("/twilio/voice/status", {"CallSid": sid, "CallStatus": "completed"})

    assert sim_spoken == phone_spoken
    assert ZH["system"]["no_input"] in sim_spoken  # the empty line was silence
    assert sim_queue.startswith(f"[转入人工队列 {enqueue.text}")

    [sim_call] = sim_calls(services)
    phone_call = services.calls.get_call("twilio", sid)
    assert phone_call is not None
    sim_events = event_path(services, sim_call.id)
    phone_events = event_path(services, phone_call.id)
    assert sim_events == phone_events
    kinds = [kind for _step, kind, _node in sim_events]
    assert {"start", "choice", "no_input", "sms", "enqueue", "end"} <= set(kinds)
    assert (sim_call.outcome, sim_call.queue) == (phone_call.outcome, phone_call.queue)


def test_inputs_given_with_i(cli_config: Path, services: Services) -> None:
    # main-menu option 2 is booking; 0 there reaches the booking desk
    result = run_cli(cli_config, "call", "-i", "2", "-i", "0", "--from", CALLER)
    assert result.exit_code == 0, result.output
    assert system_lines(result.output)[-2:] == [ZH["booking"]["menu"], ZH["system"]["transfer"]]
    assert result.output.splitlines()[-1].startswith("[转入人工队列 booking-zh-CN")
    [call] = sim_calls(services)
    assert call.queue == "booking"


def test_lang_en(cli_config: Path, services: Services) -> None:
    result = run_cli(cli_config, "call", "--lang", "en", "-i", "5", "-i", "0", "--from", CALLER)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("=== Simulated call from +86 138****8000")
    assert system_lines(result.output, "Hotline") == [
        EN["main"]["welcome"],
        EN["main"]["menu"],
        EN["service"]["menu"],
        EN["system"]["transfer"],
    ]
    assert "Caller: 5" in result.output.splitlines()
    assert result.output.splitlines()[-1].startswith("[Waiting for a person in queue general-en")
    [call] = sim_calls(services)
    assert call.language == "en"


NATIONAL_FORMS = ["13800138000", "138 0013 8000", "+86 138-0013-8000", "008613800138000"]


def test_from_is_normalised(cli_config: Path, services: Services) -> None:
    shown = {}
    for number in NATIONAL_FORMS:
        result = run_cli(cli_config, "call", "-i", "0", "--from", number)
        assert result.exit_code == 0, result.output
        shown[number] = result.output.splitlines()[0]
    assert shown == dict.fromkeys(NATIONAL_FORMS, "=== 模拟来电 +86 138****8000 → 健康热线 ===")
    assert [c.from_e164 for c in sim_calls(services)] == [CALLER] * len(NATIONAL_FORMS)


GARBAGE_NUMBERS = ["garbage", "123", "+86 12"]


def test_from_garbage_is_a_usage_error(cli_config: Path, services: Services) -> None:
    for number in GARBAGE_NUMBERS:
        result = run_cli(cli_config, "call", "-i", "0", "--from", number)
        assert result.exit_code == 2, (number, result.output)
        assert "Invalid value for --from" in result.output
        assert "phone number" in result.output
    assert sim_calls(services) == []  # no call was started


def test_call_on_an_empty_database_says_to_migrate(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.yaml", f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "var"
    )
    result = run_cli(config, "call", "-i", "0", "--from", CALLER)
    assert result.exit_code == 1
    assert "callcenter db upgrade" in result.output


# ---------------------------------------------------------------- interactive mode


def test_ctrl_d_ends_the_call_as_a_caller_hang_up(services: Services) -> None:
    typed = iter(["5"])
    out = io.StringIO()
    sim = Simulator(services.calls, out)
    result = sim.run(lambda: next(typed, None), caller=CALLER)
    assert result.outcome == "caller_hangup"
    assert result.lines[-1] == "[来电者挂机]"
    assert out.getvalue().splitlines() == result.lines
    assert system_lines(out.getvalue())[-1] == ZH["service"]["menu"]
    call = services.calls.get_call("sim", result.call_id)
    assert call is not None
    assert call.status == "completed"
    assert call.outcome == "abandoned_in_ivr"
    assert call.ended_at is not None


def test_slash_hangup_ends_the_call(services: Services) -> None:
    sim = Simulator(services.calls, io.StringIO())
    result = sim.run(["/hangup", "0"], caller=CALLER)
    assert result.outcome == "caller_hangup"
    assert result.lines[-2:] == ["来电者: /hangup", "[来电者挂机]"]
    call = services.calls.get_call("sim", result.call_id)
    assert call is not None
    assert call.outcome == "abandoned_in_ivr"


def test_simulator_with_hidden_number(services: Services) -> None:
    sim = Simulator(services.calls, io.StringIO())
    result = sim.run(["0"], caller=None)
    assert "(hidden)" in result.lines[0]
    assert result.outcome == "enqueued:general"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("5", "Digits('5')"),
        (" 12# ", "Digits('12#')"),
        ("*", "Digits('*')"),
        ("", "NoInput()"),
        ("   ", "NoInput()"),
        ("服务指南", "Speech(text='服务指南', confidence=None)"),
        ("5 please", "Speech(text='5 please', confidence=None)"),
        ("/hangup", "None"),
    ],
    ids=["digit", "digits-hash", "star", "empty", "blank", "speech", "mixed", "hangup"],
)
def test_parse_input(line: str, expected: str) -> None:
    parsed = parse_input(line)
    assert repr(parsed).replace("value=", "") == expected
