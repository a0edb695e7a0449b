"""The expert's desk: offers shown with question, notes and entries before accepting; accept,
decline with a reason, callbacks with deadlines; only one's own escalations, whatever the id in
the URL; roles and CSRF on every URL."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.db.models import AuditEntry, Call
from callcenter.routing.escalations import EscalationView
from knowledge_base.importer import import_path
from tests.console.conftest import Login, post

CALLER = "+8613800000002"
ARTICLE = """
articles:
- id: chest-pain
  category: heart
  title_zh: 胸痛怎么办
  title_en: Chest pain
  keywords: [胸痛]
  versions:
  - version: 1
    body_zh: 胸痛持续不缓解请立即拨打120。
    summary_zh: 胸痛持续请立即拨打120。
    reviewer: 丁医生（演示）
    reviewed_on: '2026-01-01'
    expires_on: '2027-12-31'
"""


@pytest.fixture
def escalated(services: Services, tmp_path: Path, clock: FakeClock) -> EscalationView:
    """Agent a1 is on call CA-1 and has asked a cardiologist, with notes and an article."""
    path = tmp_path / "a.yaml"
    path.write_text(ARTICLE, encoding="utf-8")
    import_path(services.db, path, clock=clock)
    with services.db.transaction() as session:
        session.add(
            Call(
                provider="twilio",
                provider_call_id="CA-1",
                from_e164=CALLER,
                language="zh-CN",
                started_at=clock.now(),
            )
        )
    routing = services.routing
    routing.agent_sign_in("a1", levels={"general": 0})
    routing.enqueue_caller("CA-1", "general")
    (offer,) = routing.dispatch()
    assert routing.answer(offer)
    return services.escalations.open(
        "CA-1",
        "a1",
        "cardiology",
        None,
        "服用阿司匹林后胃不舒服，能否继续服用？",
        notes="患者72岁，已服药两周。",
        article_ids=["article:chest-pain"],
    )


def _expert(client: FlaskClient, login: Login, specialty: str = "cardiology") -> str:
    """Sign an expert in and make them available; returns their username (their id)."""
    user = login(client, "expert", specialty=specialty)
    assert post(client, "/expert/presence", {"state": "available"}).status_code == 302
    return user.username


def _urls(eid: str) -> list[tuple[str, str, dict[str, str]]]:
    return [
        ("GET", "/expert", {}),
        ("GET", "/expert/panel", {}),
        ("GET", f"/expert/escalations/{eid}", {}),
        ("POST", "/expert/presence", {"state": "available"}),
        ("POST", f"/expert/escalations/{eid}/accept", {}),
        ("POST", f"/expert/escalations/{eid}/decline", {"reason": "busy"}),
        ("POST", f"/expert/escalations/{eid}/finish", {}),
        ("POST", f"/expert/callbacks/{eid}/done", {"answer_note": "x"}),
    ]


def _call(client: FlaskClient, method: str, url: str, form: dict[str, str]) -> int:
    if method == "GET":
        return client.get(url).status_code
    return post(client, url, form).status_code


# ---------------------------------------------------------------- who gets in


def test_anonymous_users_are_sent_to_sign_in(
    client: FlaskClient, escalated: EscalationView
) -> None:
    for method, url, _form in _urls(escalated.id):
        if method == "GET":
            response = client.get(url)
            assert response.status_code == 302, url
            assert response.headers["Location"].startswith("/auth/sign-in")


@pytest.mark.parametrize("role", ["agent", "supervisor", "admin"])
def test_other_roles_are_refused_everywhere(
    client: FlaskClient, login: Login, escalated: EscalationView, services: Services, role: str
) -> None:
    login(client, role)
    for method, url, form in _urls(escalated.id):
        assert _call(client, method, url, form) == 403, url
    assert str(services.escalations.get(escalated.id).state) == "offered"


# ---------------------------------------------------------------- offers


def test_an_offer_shows_question_notes_and_entries_before_accepting(
    client: FlaskClient, login: Login, escalated: EscalationView
) -> None:
    _expert(client, login)
    html = client.get("/expert").get_data(as_text=True)
    offer = re.search(
        rf'<article class="offer" data-escalation="{escalated.id}">(.*?)</article>', html, re.S
    )
    assert offer, html
    text = offer.group(1)
    assert "服用阿司匹林后胃不舒服，能否继续服用？" in text
    assert "患者72岁，已服药两周。" in text
    assert "胸痛怎么办" in text
    assert "胸痛持续请立即拨打120。" in text
    assert "/accept" in text
    assert "13800000002" not in html


def test_an_offline_expert_sees_no_offers(
    client: FlaskClient, login: Login, escalated: EscalationView
) -> None:
    login(client, "expert", specialty="cardiology")
    html = client.get("/expert/panel").get_data(as_text=True)
    assert escalated.id not in html
    assert client.get(f"/expert/escalations/{escalated.id}").status_code == 404


def test_accepting_takes_the_escalation_and_opens_it_under_audit(
    client: FlaskClient, login: Login, escalated: EscalationView, services: Services
) -> None:
    me = _expert(client, login)
    response = post(client, f"/expert/escalations/{escalated.id}/accept")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/expert/escalations/{escalated.id}"
    view = services.escalations.get(escalated.id)
    assert (str(view.state), view.expert_id) == ("accepted", me)
    assert services.escalations.expert(me).state == "busy"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "您已接受此求助" in page
    assert CALLER in page  # on the call now: the full number, on an audited page
    with services.db.transaction() as session:
        rows = list(
            session.scalars(select(AuditEntry).where(AuditEntry.subject_id == escalated.id))
        )
        assert [(r.actor, r.action) for r in rows] == [(me, "escalation_opened")]
    assert (
        post(
            client, f"/expert/escalations/{escalated.id}/finish", {"answer_note": "可继续服用"}
        ).status_code
        == 302
    )
    assert str(services.escalations.get(escalated.id).state) == "completed"
    assert services.escalations.expert(me).state == "available"


def test_the_second_expert_to_accept_is_told_it_is_taken(
    app: object, login: Login, escalated: EscalationView, services: Services
) -> None:
    first, second = app.test_client(), app.test_client()  # type: ignore[attr-defined]
    winner = _expert(first, login)
    _expert(second, login)
    assert post(first, f"/expert/escalations/{escalated.id}/accept").status_code == 302
    response = post(second, f"/expert/escalations/{escalated.id}/accept")
    assert response.status_code == 404  # no longer offered to them: not theirs to see
    assert services.escalations.get(escalated.id).expert_id == winner


def test_declining_needs_a_reason(
    client: FlaskClient, login: Login, escalated: EscalationView, services: Services
) -> None:
    _expert(client, login)
    post(client, f"/expert/escalations/{escalated.id}/decline", {"reason": "  "})
    assert str(services.escalations.get(escalated.id).state) == "offered"
    assert "请填写拒绝原因" in client.get("/expert").get_data(as_text=True)
    post(client, f"/expert/escalations/{escalated.id}/decline", {"reason": "正在门诊"})
    view = services.escalations.get(escalated.id)
    # the only expert of the pool said no: an expert callback with a deadline
    assert str(view.state) == "callback_scheduled"
    history = services.escalations.history(escalated.id)
    assert any(t.detail.get("reason") == "正在门诊" for t in history)


def test_actions_need_the_csrf_token(
    client: FlaskClient, login: Login, escalated: EscalationView, services: Services
) -> None:
    _expert(client, login)
    for url in (
        f"/expert/escalations/{escalated.id}/accept",
        f"/expert/escalations/{escalated.id}/decline",
        "/expert/presence",
    ):
        assert client.post(url, data={"reason": "x", "state": "offline"}).status_code == 400
    assert str(services.escalations.get(escalated.id).state) == "offered"


# ---------------------------------------------------------------- id-guessing


def test_another_specialty_cannot_see_or_take_it_by_id(
    client: FlaskClient, login: Login, escalated: EscalationView, services: Services
) -> None:
    _expert(client, login, specialty="dermatology")
    assert escalated.id not in client.get("/expert/panel").get_data(as_text=True)
    assert client.get(f"/expert/escalations/{escalated.id}").status_code == 404
    assert post(client, f"/expert/escalations/{escalated.id}/accept").status_code == 404
    assert (
        post(client, f"/expert/escalations/{escalated.id}/decline", {"reason": "x"}).status_code
        == 404
    )
    assert (
        post(client, f"/expert/callbacks/{escalated.id}/done", {"answer_note": "x"}).status_code
        == 404
    )
    assert str(services.escalations.get(escalated.id).state) == "offered"


def test_an_unknown_id_is_404(client: FlaskClient, login: Login, escalated: EscalationView) -> None:
    _expert(client, login)
    assert client.get("/expert/escalations/00000000-0000-0000-0000-000000000000").status_code == 404


def test_one_experts_accepted_escalation_is_hidden_from_another(
    app: object, login: Login, escalated: EscalationView
) -> None:
    first, second = app.test_client(), app.test_client()  # type: ignore[attr-defined]
    _expert(first, login)
    _expert(second, login)
    post(first, f"/expert/escalations/{escalated.id}/accept")
    assert second.get(f"/expert/escalations/{escalated.id}").status_code == 404
    assert post(second, f"/expert/escalations/{escalated.id}/finish").status_code == 404


# ---------------------------------------------------------------- callbacks


def test_a_timed_out_offer_becomes_a_callback_with_its_deadline(
    client: FlaskClient,
    login: Login,
    escalated: EscalationView,
    services: Services,
    clock: FakeClock,
) -> None:
    clock.advance(61)
    services.escalations.tick()
    me = _expert(client, login)
    html = client.get("/expert/panel").get_data(as_text=True)
    row = re.search(rf'<tr data-escalation="{escalated.id}" class="">(.*?)</tr>', html, re.S)
    assert row, html
    assert "+86 138****0002" in row.group(1)
    assert "13800000002" not in html  # masked in the list
    deadline = services.escalations.get(escalated.id).callback_deadline
    assert isinstance(deadline, datetime)
    assert f"{deadline.astimezone(services.config.timezone):%H:%M:%S}" in row.group(1)

    page = client.get(f"/expert/escalations/{escalated.id}").get_data(as_text=True)
    assert CALLER in page  # the number to call, on the audited page

    post(client, f"/expert/callbacks/{escalated.id}/done", {"answer_note": ""})
    assert str(services.escalations.get(escalated.id).state) == "callback_scheduled"
    post(
        client,
        f"/expert/callbacks/{escalated.id}/done",
        {"answer_note": "已电话告知可继续服用，饭后服。"},
    )
    view = services.escalations.get(escalated.id)
    assert (str(view.state), view.expert_id) == ("completed", me)
    assert view.answer_note == "已电话告知可继续服用，饭后服。"
    assert escalated.id not in client.get("/expert/panel").get_data(as_text=True)


def test_an_overdue_callback_is_flagged(
    client: FlaskClient,
    login: Login,
    escalated: EscalationView,
    services: Services,
    clock: FakeClock,
) -> None:
    clock.advance(61)
    services.escalations.tick()
    clock.advance(29 * 60 + 59)  # one second before the 30-minute deadline... then past it
    _expert(client, login)
    html = client.get("/expert/panel").get_data(as_text=True)
    assert f'data-escalation="{escalated.id}" class=""' in html
    clock.advance(2)
    html = client.get("/expert/panel").get_data(as_text=True)
    assert f'data-escalation="{escalated.id}" class="overdue"' in html


def test_an_expert_without_a_specialty_cannot_go_available(
    client: FlaskClient, login: Login, services: Services
) -> None:
    user = login(client, "expert")
    post(client, "/expert/presence", {"state": "available"})
    assert "还没有设置专科" in client.get("/expert").get_data(as_text=True)
    assert all(e.id != user.username for e in services.escalations.experts())
