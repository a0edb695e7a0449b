"""``callcenter router``: one turn of the loop as JSON, agents' and experts' phones."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock


@pytest.fixture
def runner(services: Services, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    from callcenter import cli

    monkeypatch.setattr(cli, "_services", lambda _state: services)
    return CliRunner()


def test_router_run_once_reports_what_it_did(
    runner: CliRunner, services: Services, clock: FakeClock
) -> None:
    from callcenter import cli

    services.routing.agent_sign_in("a1", levels={"general": 0})
    services.routing.enqueue_caller("CA1", "general")
    result = runner.invoke(cli.main, ["router", "run", "--once"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # The demo sender is local: no provider, so the offer is made but nobody is dialled
    # (the agent answers in the console).
    assert (report["offers"], report["agents_dialled"]) == (1, 0)
    assert report["errors"] == []


def test_agent_phone_accepts_numbers_sip_and_client_and_refuses_the_rest(
    runner: CliRunner, services: Services
) -> None:
    from callcenter import cli

    services.routing.agent_sign_in("a1", levels={"general": 0})
    cases = [
        ("13911112222", 0, "agent a1: +86 139****2222"),
        ("sip:a1@pbx.hospital.example", 0, "agent a1: sip:a1@pbx.hospital.example"),
        ("client:a1", 0, "agent a1: client:a1"),
        ("-", 0, "agent a1: console only"),
        ("12345", 1, "refused: expected a phone number, sip:user@host or client:name"),
        ("sip:<script>@x", 1, "refused"),
    ]
    for contact, code, text in cases:
        result = runner.invoke(cli.main, ["router", "agent-phone", "a1", contact])
        assert result.exit_code == code, (contact, result.output)
        assert text in result.output
    unknown = runner.invoke(cli.main, ["router", "agent-phone", "nobody", "client:x"])
    assert unknown.exit_code == 1


def test_expert_sign_in_and_out(runner: CliRunner, services: Services) -> None:
    from callcenter import cli

    result = runner.invoke(cli.main, ["router", "expert-sign-in", "dr-wang"])
    assert result.exit_code == 1
    assert "needs a specialty" in result.output
    result = runner.invoke(
        cli.main,
        [
            "router",
            "expert-sign-in",
            "dr-wang",
            "--specialty",
            "cardiology",
            "--phone",
            "13922223333",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "expert dr-wang (cardiology): available"
    assert services.escalations.expert_contact("dr-wang") == "+8613922223333"
    result = runner.invoke(cli.main, ["router", "expert-sign-out", "dr-wang"])
    assert result.output.strip() == "expert dr-wang: offline"
