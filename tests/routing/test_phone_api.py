"""The supervisor's routing JSON API through the real app and a real console sign-in:
queues, agents (and changing their state or skills), open escalations, callbacks due; and
who may use it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import Config
from tests.conftest import make_config
from tests.console.conftest import CHEAP_HASHING, PASSWORD, csrf_token, sign_in


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """The test configuration with cheap password hashing."""
    return make_config(database_url, tmp_path, console=CHEAP_HASHING)


def signed_in(services: Services, client: FlaskClient, role: str) -> FlaskClient:
    user = services.users.create(f"{role}1", f"Demo {role}", role, PASSWORD, actor="test")
    response = sign_in(client, user.username)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def post_json(client: FlaskClient, path: str, body: Any) -> Any:
    return client.post(path, json=body, headers={"X-CSRFToken": csrf_token(client)})


@pytest.fixture
def supervisor(services: Services, client: FlaskClient) -> FlaskClient:
    return signed_in(services, client, "supervisor")


def test_queues_agents_escalations_and_callbacks(
    services: Services, supervisor: FlaskClient, clock: FakeClock
) -> None:
    routing = services.routing
    routing.agent_sign_in("a1", levels={"general": 0}, skills={"info": 3})
    services.phone.set_agent_contact("a1", "+8613911112222")
    routing.enqueue_caller("CA1", "general")
    clock.advance(5)
    routing.enqueue_caller("CB1", "general", callback_number="+8613800138000")
    routing.dispatch()
    routing.accept("a1", "CA1")
    services.escalations.open("CA1", "a1", "cardiology", None, "question")
    clock.advance(40)

    queues = supervisor.get("/api/routing/queues").get_json()
    general = next(q for q in queues["queues"] if q["queue"] == "general")
    assert (general["waiting"], general["callbacks_waiting"]) == (1, 1)
    assert general["longest_wait_s"] == 40.0
    assert general["agents"]["on_call"] == 1

    agents = supervisor.get("/api/routing/agents").get_json()["agents"]
    assert agents == [
        {
            "id": "a1",
            "name": "a1",
            "state": "on_call",
            "reason": None,
            "since": (clock.now() - timedelta(seconds=40)).isoformat(),
            "skills": {"info": 3},
            "levels": {"general": 0},
            "languages": [],
            "calls_today": 0,
            "missed_in_row": 0,
            "call": "CA1",
            "phone": "+86 139****2222",
        }
    ]

    (escalation,) = supervisor.get("/api/routing/escalations").get_json()["escalations"]
    assert (escalation["state"], escalation["age_s"], escalation["call_id"]) == (
        "offered",
        40.0,
        "CA1",
    )

    (callback,) = supervisor.get("/api/routing/callbacks").get_json()["callbacks"]
    assert callback["call_id"] == "CB1"
    assert callback["number"] == "+86 138****8000"
    assert callback["waited_s"] == 40.0


def test_a_supervisor_changes_state_and_skills(services: Services, supervisor: FlaskClient) -> None:
    services.routing.agent_sign_in("a1", levels={"general": 0})
    response = post_json(
        supervisor, "/api/routing/agents/a1/state", {"state": "away", "reason": "break"}
    )
    assert response.status_code == 200
    assert response.get_json() == {"agent": "a1", "state": "away", "reason": "break"}
    response = post_json(
        supervisor,
        "/api/routing/agents/a1/profile",
        {"skills": {"booking": 4}, "levels": {"general": 0, "booking": 1}, "languages": ["en"]},
    )
    assert response.status_code == 200
    assert response.get_json()["levels"] == {"general": 0, "booking": 1}
    (agent,) = services.phone.agents()
    assert (agent.state, agent.skills, agent.languages) == ("away", {"booking": 4}, ["en"])


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/routing/agents/a1/state", {"state": "on_call"}, 400),
        ("/api/routing/agents/a1/state", {"state": "away", "reason": "x" * 65}, 400),
        ("/api/routing/agents/nobody/state", {"state": "away"}, 404),
        ("/api/routing/agents/a1/state", {"state": "offline"}, 200),
        ("/api/routing/agents/a1/profile", {"levels": {"nope": 0}}, 400),
        ("/api/routing/agents/a1/profile", {"skills": {"x": "high"}}, 400),
        ("/api/routing/agents/a1/profile", {"languages": ["fr"]}, 400),
        ("/api/routing/agents/a1/profile", [1, 2], 400),
        ("/api/routing/agents/nobody/profile", {"skills": {}}, 404),
    ],
)
def test_bad_changes_are_refused_and_change_nothing(
    services: Services, supervisor: FlaskClient, path: str, body: Any, status: int
) -> None:
    services.routing.agent_sign_in("a1", levels={"general": 0}, skills={"info": 1})
    response = post_json(supervisor, path, body)
    assert response.status_code == status, response.get_data(as_text=True)
    (agent,) = services.phone.agents()
    assert agent.skills == {"info": 1}
    assert agent.state == ("offline" if status == 200 else "available")


def test_only_supervisors_and_admins_may_use_it(services: Services, client: FlaskClient) -> None:
    assert client.get("/api/routing/queues").status_code == 401
    agent_client = signed_in(services, client, "agent")
    assert agent_client.get("/api/routing/queues").status_code == 403
    assert (
        post_json(agent_client, "/api/routing/agents/a1/state", {"state": "away"}).status_code
        == 403
    )


def test_a_change_without_the_csrf_token_is_refused(
    services: Services, supervisor: FlaskClient
) -> None:
    services.routing.agent_sign_in("a1", levels={"general": 0})
    response = supervisor.post("/api/routing/agents/a1/state", json={"state": "away"})
    assert response.status_code == 400
    assert services.phone.agents()[0].state == "available"
