"""The supervisor's screens: wallboard, agent states, daily CSV, article editing; roles and
CSRF checked on every URL."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.routing.router import AgentState
from knowledge_base.answers import answer
from knowledge_base.editing import get_article
from knowledge_base.importer import import_path
from tests.console.conftest import Login, post

GET_URLS = [
    "/supervisor",
    "/supervisor/wallboard",
    "/supervisor/charts.json",
    "/supervisor/reports",
    "/supervisor/reports/daily.csv?first=2026-11-20&last=2026-11-26",
    "/supervisor/kb",
    "/supervisor/kb/sleep-tips",
]
POSTS = [
    ("/supervisor/agents/a1/state", {"state": "away", "reason": "break"}),
    ("/supervisor/kb/sleep-tips/versions", {"body_zh": "x"}),
]

ARTICLE = """
articles:
- id: sleep-tips
  category: lifestyle
  title_zh: 睡个好觉
  title_en: Sleeping well
  keywords: [睡眠, sleep]
  versions:
  - version: 1
    body_zh: 规律作息。
    summary_zh: 每天按时睡觉和起床。
    reviewer: 乙医生（演示）
    reviewed_on: '2026-06-01'
    expires_on: '2027-06-01'
"""


@pytest.fixture
def floor(services: Services, tmp_path: Path) -> Services:
    """Two agents on the general queue and one article in the knowledge base."""
    services.routing.agent_sign_in("a1", name="坐席甲", levels={"general": 0})
    services.routing.agent_sign_in("a2", name="坐席乙", levels={"general": 0})
    path = tmp_path / "articles.yaml"
    path.write_text(ARTICLE, encoding="utf-8")
    import_path(services.db, path, clock=services.clock)
    return services


def _cell(html: str, queue: str, field: str) -> str:
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', html, re.S)
    assert row, f"no row for queue {queue}"
    cell = re.search(rf'data-field="{field}">(.*?)</td>', row.group(1), re.S)
    assert cell, f"no {field} cell"
    return re.sub(r"<[^>]+>", "", cell.group(1)).strip()


# ---------------------------------------------------------------- who gets in


@pytest.mark.parametrize("url", GET_URLS)
def test_anonymous_users_are_sent_to_sign_in(
    client: FlaskClient, floor: Services, url: str
) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/sign-in")


@pytest.mark.parametrize("role", ["agent", "expert"])
@pytest.mark.parametrize("url", GET_URLS)
def test_other_roles_are_refused(
    client: FlaskClient, login: Login, floor: Services, role: str, url: str
) -> None:
    login(client, role)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("role", ["agent", "expert"])
@pytest.mark.parametrize(("url", "form"), POSTS)
def test_other_roles_cannot_post(
    client: FlaskClient, login: Login, floor: Services, role: str, url: str, form: dict[str, str]
) -> None:
    login(client, role)
    assert post(client, url, form).status_code == 403
    assert floor.routing.status().queues[0].agents["away"] == 0
    assert len(get_article(floor.db, "sleep-tips", date(2026, 11, 26)).versions) == 1


@pytest.mark.parametrize("role", ["supervisor", "admin"])
@pytest.mark.parametrize("url", GET_URLS)
def test_supervisors_and_admins_get_in(
    client: FlaskClient, login: Login, floor: Services, role: str, url: str
) -> None:
    login(client, role)
    assert client.get(url).status_code == 200


# ---------------------------------------------------------------- the wallboard


def test_wallboard_numbers_follow_the_floor(
    client: FlaskClient, login: Login, floor: Services, clock: FakeClock
) -> None:
    login(client, "supervisor")
    routing = floor.routing
    routing.set_state("a2", AgentState.AWAY, "break")
    routing.enqueue_caller("CA-1", "general")
    routing.enqueue_caller("CA-2", "general")
    clock.advance(25)
    html = client.get("/supervisor/wallboard").get_data(as_text=True)
    assert _cell(html, "general", "waiting") == "2"
    assert _cell(html, "general", "longest_wait") == "25s"
    assert _cell(html, "general", "available") == "1"
    assert _cell(html, "general", "away") == "1"
    assert _cell(html, "general", "sl") == "–"

    (offer,) = routing.dispatch()
    assert routing.answer(offer)  # answered after 25 s: outside the 20 s target
    routing.caller_left("CA-2")
    html = client.get("/supervisor/wallboard").get_data(as_text=True)
    assert _cell(html, "general", "waiting") == "0"
    assert _cell(html, "general", "busy") == "1"
    assert _cell(html, "general", "answered") == "1"
    assert _cell(html, "general", "sl") == "0%"
    assert _cell(html, "general", "sl2") == "0%"
    assert _cell(html, "general", "asa") == "25s"
    assert _cell(html, "general", "abandoned") == "1"
    assert _cell(html, "general", "abandon_rate") == "50%"


def test_the_page_wires_live_refresh_without_inline_script(
    client: FlaskClient, login: Login, floor: Services
) -> None:
    login(client, "supervisor")
    response = client.get("/supervisor")
    html = response.get_data(as_text=True)
    assert 'sse-connect="/events"' in html
    assert "sse:queue" in html
    assert "sse:agent_state" in html
    assert "sse:escalation" in html
    assert "vendor/uPlot.iife.min.js" in html
    assert "/static/supervisor.js" in html
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None  # only script files
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_escalations_show_against_their_deadlines(
    client: FlaskClient, login: Login, floor: Services, clock: FakeClock
) -> None:
    login(client, "supervisor")
    routing = floor.routing
    routing.enqueue_caller("CA-9", "general")
    (offer,) = routing.dispatch()
    assert routing.answer(offer)
    view = floor.escalations.open(
        offer.caller_id, offer.agent_id, "cardiology", None, "胸闷三天，能否继续服药？"
    )
    html = client.get("/supervisor/wallboard").get_data(as_text=True)
    row = re.search(rf'<tr data-escalation="{view.id}" class="">(.*?)</tr>', html, re.S)
    assert row, html
    assert "cardiology" in row.group(1)
    assert "胸闷" not in html  # the wallboard shows no patient's question
    clock.advance(61)
    floor.escalations.tick()  # nobody accepted: an expert callback with a deadline
    html = client.get("/supervisor/wallboard").get_data(as_text=True)
    assert re.search(rf'<tr data-escalation="{view.id}" class="">', html)
    clock.advance(30 * 60 + 1)
    login(client, "supervisor")  # the first session ended after 15 idle minutes
    html = client.get("/supervisor/wallboard").get_data(as_text=True)
    assert re.search(rf'<tr data-escalation="{view.id}" class="overdue">', html)


def test_charts_json_counts_the_last_hours(
    client: FlaskClient, login: Login, floor: Services, clock: FakeClock
) -> None:
    login(client, "supervisor")
    floor.routing.enqueue_caller("CA-1", "general")
    clock.advance(5)
    (offer,) = floor.routing.dispatch()
    floor.routing.answer(offer)
    data = client.get("/supervisor/charts.json").get_json()
    assert data["hours"] == 8
    assert data["timezone"] == "Asia/Shanghai"
    general = next(q for q in data["queues"] if q["queue"] == "general")
    assert general["calls"] == [0, 0, 0, 0, 0, 0, 0, 1]
    assert general["answered"][-1] == 1
    assert general["service_level"][-1] == 100.0
    assert general["service_level"][0] is None
    assert general["starts"][1] - general["starts"][0] == 3600


# ---------------------------------------------------------------- agent states


def test_a_supervisor_sets_an_agent_away_and_back(
    client: FlaskClient, login: Login, floor: Services
) -> None:
    login(client, "supervisor")
    response = post(client, "/supervisor/agents/a1/state", {"state": "away", "reason": "meeting"})
    assert response.status_code == 302
    agents = {a.id: a for a in _agents(floor)}
    assert (agents["a1"].state, agents["a1"].reason) == ("away", "meeting")
    post(client, "/supervisor/agents/a1/state", {"state": "available"})
    assert {a.id: a.state for a in _agents(floor)}["a1"] == "available"
    post(client, "/supervisor/agents/a1/state", {"state": "offline"})
    assert {a.id: a.state for a in _agents(floor)}["a1"] == "offline"


def _agents(services: Services) -> list:  # type: ignore[type-arg]
    from agents_console.reports import agents_now

    return agents_now(services.db)


def test_a_state_change_needs_the_csrf_token(
    client: FlaskClient, login: Login, floor: Services
) -> None:
    login(client, "supervisor")
    response = client.post("/supervisor/agents/a1/state", data={"state": "away"})
    assert response.status_code == 400
    assert {a.id: a.state for a in _agents(floor)}["a1"] == "available"


@pytest.mark.parametrize(
    ("url", "form", "status"),
    [
        ("/supervisor/agents/nobody/state", {"state": "away"}, 404),
        ("/supervisor/agents/a1/state", {"state": "on_call"}, 400),
        ("/supervisor/agents/a1/state", {"state": "away", "reason": "lunch!"}, 400),
    ],
)
def test_bad_state_changes_are_refused(
    client: FlaskClient, login: Login, floor: Services, url: str, form: dict[str, str], status: int
) -> None:
    login(client, "supervisor")
    assert post(client, url, form).status_code == status
    assert {a.id: a.state for a in _agents(floor)}["a1"] == "available"


def test_an_agent_on_a_call_cannot_be_set_away(
    client: FlaskClient, login: Login, floor: Services
) -> None:
    login(client, "supervisor")
    floor.routing.set_state("a2", AgentState.AWAY, "break")
    floor.routing.enqueue_caller("CA-1", "general")
    (offer,) = floor.routing.dispatch()
    floor.routing.answer(offer)
    response = post(client, "/supervisor/agents/a1/state", {"state": "away"})
    assert response.status_code == 302
    page = client.get("/supervisor").get_data(as_text=True)
    assert "无法更改该坐席的状态" in page
    assert {a.id: a.state for a in _agents(floor)}["a1"] == "on_call"


# ---------------------------------------------------------------- reports


def test_the_daily_csv_downloads_for_excel(
    client: FlaskClient, login: Login, floor: Services, clock: FakeClock
) -> None:
    login(client, "supervisor")
    floor.routing.enqueue_caller("CA-1", "general")
    clock.advance(8)
    (offer,) = floor.routing.dispatch()
    floor.routing.answer(offer)
    response = client.get("/supervisor/reports/daily.csv?first=2026-11-25&last=2026-11-26")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response.headers["Content-Disposition"]
        == 'attachment; filename="hotline-daily-2026-11-25-2026-11-26.csv"'
    )
    assert response.data.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert table[0][:3] == ["日期 date", "队列 queue", "来电 calls"]
    rows = {(r[0], r[1]): r for r in table[1:]}
    assert rows[("2026-11-26", "general")][2:5] == ["1", "1", "1"]
    assert rows[("2026-11-25", "general")][2] == "0"
    assert len(table) == 1 + 2 * len(floor.config.settings.routing.queues)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "first=2026-11-26",
        "first=26/11/2026&last=2026-11-26",
        "first=2026-11-26&last=2026-11-01",
    ],
)
def test_bad_csv_periods_get_400(
    client: FlaskClient, login: Login, floor: Services, query: str
) -> None:
    login(client, "supervisor")
    assert client.get(f"/supervisor/reports/daily.csv?{query}").status_code == 400


def test_the_reports_page_shows_the_period_and_links_the_csv(
    client: FlaskClient, login: Login, floor: Services
) -> None:
    login(client, "supervisor")
    html = client.get("/supervisor/reports").get_data(as_text=True)
    assert "daily.csv?first=2026-11-20&amp;last=2026-11-26" in html
    bad = client.get("/supervisor/reports?first=2026-11-26&last=2026-11-01")
    assert bad.status_code == 400
    assert "日期范围无效" in bad.get_data(as_text=True)


# ---------------------------------------------------------------- knowledge base


def _form(**changes: str) -> dict[str, str]:
    form = {
        "base_version": "1",
        "summary_zh": "每天按时睡觉和起床，睡前一小时不看手机。",
        "body_zh": "规律作息，睡前少用电子产品。",
        "summary_en": "",
        "body_en": "",
        "reviewer": "丙医生（演示）",
        "reviewed_on": "2026-11-25",
        "expires_on": "2027-11-25",
    }
    form.update(changes)
    return form


def _spoken(services: Services) -> str:
    with services.db.transaction() as session:
        said = answer(session, "article", "sleep-tips", "zh-CN", date(2026, 11, 26))
    assert said is not None
    return said.text


def test_a_new_version_is_what_the_phone_reads(
    client: FlaskClient, login: Login, floor: Services
) -> None:
    login(client, "supervisor")
    page = client.get("/supervisor/kb/sleep-tips").get_data(as_text=True)
    assert "每天按时睡觉和起床。" in page  # the form starts from the latest text
    response = post(client, "/supervisor/kb/sleep-tips/versions", _form())
    assert response.status_code == 302
    assert _spoken(floor).startswith("每天按时睡觉和起床，睡前一小时不看手机。")
    page = client.get("/supervisor/kb/sleep-tips").get_data(as_text=True)
    assert "已保存第 2 版。" in page
    assert "丙医生（演示）" in page


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reviewer": ""}, "必填。"),
        ({"expires_on": "2026-11-01"}, "失效日期必须晚于审核日期。"),
        ({"reviewed_on": "2026-12-01"}, "审核日期不能晚于今天。"),
        ({"reviewed_on": "not a date"}, "必填。"),
    ],
)
def test_bad_versions_come_back_with_the_reason_and_the_text_kept(
    client: FlaskClient, login: Login, floor: Services, changes: dict[str, str], message: str
) -> None:
    login(client, "supervisor")
    response = post(client, "/supervisor/kb/sleep-tips/versions", _form(**changes))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert "睡前一小时不看手机" in html  # nothing the editor typed is lost
    assert _spoken(floor).startswith("每天按时睡觉和起床。")


def test_a_stale_form_is_refused_with_409(
    client: FlaskClient, login: Login, floor: Services
) -> None:
    login(client, "supervisor")
    assert post(client, "/supervisor/kb/sleep-tips/versions", _form()).status_code == 302
    again = post(client, "/supervisor/kb/sleep-tips/versions", _form(summary_zh="旧表单"))
    assert again.status_code == 409
    assert "保存前已有其他人保存了新版本" in again.get_data(as_text=True)
    assert "旧表单" not in _spoken(floor)


def test_saving_a_version_needs_the_csrf_token(
    client: FlaskClient, login: Login, floor: Services
) -> None:
    login(client, "supervisor")
    response = client.post("/supervisor/kb/sleep-tips/versions", data=_form())
    assert response.status_code == 400
    assert len(get_article(floor.db, "sleep-tips", date(2026, 11, 26)).versions) == 1


def test_unknown_articles_are_404(client: FlaskClient, login: Login, floor: Services) -> None:
    login(client, "supervisor")
    assert client.get("/supervisor/kb/nope").status_code == 404
    assert post(client, "/supervisor/kb/nope/versions", _form()).status_code == 404


def test_the_article_list_flags_what_callers_no_longer_hear(
    client: FlaskClient, login: Login, floor: Services, clock: FakeClock
) -> None:
    login(client, "supervisor")
    html = client.get("/supervisor/kb").get_data(as_text=True)
    assert "在用" in html
    clock.advance(timedelta(days=180).total_seconds())  # 2027-05-25: a week before expiry
    login(client, "supervisor")
    html = client.get("/supervisor/kb").get_data(as_text=True)
    assert "即将到期" in html
    clock.advance(timedelta(days=8).total_seconds())  # 2027-06-02: expired on 2027-06-01
    login(client, "supervisor")
    html = client.get("/supervisor/kb").get_data(as_text=True)
    assert "已过期，电话不再播报" in html


def test_experts_online_are_listed_with_their_state(
    client: FlaskClient, login: Login, floor: Services
) -> None:
    login(client, "supervisor")
    floor.escalations.expert_sign_in("x1", name="李医生（演示）", specialty="cardiology")
    floor.escalations.expert_sign_in("x2", name="周医生（演示）", specialty="dermatology")
    floor.escalations.expert_sign_out("x2")
    html = client.get("/supervisor/wallboard").get_data(as_text=True)
    row = re.search(r'<tr data-expert="x1">(.*?)</tr>', html, re.S)
    assert row
    assert "李医生（演示）" in row.group(1)
    assert "cardiology" in row.group(1)
    assert "空闲" in row.group(1)
    assert 'data-expert="x2"' not in html  # offline experts are not on the board
