"""The tier-1 agent's screen: state, the offered call popping with the caller's record,
accept / reject, tools on the call, wrap-up, audit rows and the server-side checks.

A call comes in through the real signed Twilio webhooks (the caller presses 0 for a person),
waits in a queue and is offered by the router; the agent's screen is read as the browser gets
it (the panels agent.js reloads on live events).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.config import Config
from callcenter.db.models import AuditEntry, CallEvent
from callcenter.routing.models import RoutingAgent, RoutingPhoneTask
from knowledge_base.importer import import_path
from tests.booking.conftest import add_clinic, cn_id, seed_kb
from tests.conftest import TwilioSigner, make_config
from tests.console.conftest import CHEAP_HASHING, Login, csrf_token, post

CALLER = "+8613800000001"
HOTLINE = "+862155501234"
KB_DATA = Path(__file__).resolve().parent.parent / "knowledge_base" / "data" / "good"


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """Cheap password hashing for console users and visit passwords."""
    return make_config(
        database_url, tmp_path, console=CHEAP_HASHING, booking={"password_hash_cost": 4}
    )


def routing_agent(services: Services, agent_id: str, *, available: bool = True) -> None:
    """A routing agent for the general queue (created offline, then signed in)."""
    services.routing.agent_sign_in(
        agent_id, name=f"Demo {agent_id}", languages=["zh-CN", "en"], levels={"general": 1}
    )
    if not available:
        services.routing.agent_sign_out(agent_id)


def incoming_call(twilio: TwilioSigner, services: Services, sid: str, caller: str = CALLER) -> None:
    """A caller dials in, asks for a person (0) and is queued; the router offers the call."""
    assert (
        twilio.post("/twilio/voice", {"CallSid": sid, "From": caller, "To": HOTLINE}).status_code
        == 200
    )
    twilio.post("/twilio/voice/input?step=0", {"CallSid": sid, "Digits": "0"})
    services.routing.enqueue_caller(sid, "general", language="zh-CN")
    services.routing.dispatch()


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined]


@pytest.fixture
def agent(services: Services, client: FlaskClient, login: Login) -> str:
    """Agent a1 signed in to the console and available."""
    routing_agent(services, "a1")
    login(client, "agent", routing_agent_id="a1", username="agent_a1")
    return "a1"


def test_the_desk_shows_the_agents_state_and_changes_it(
    services: Services, client: FlaskClient, agent: str
) -> None:
    page = client.get("/agent")
    assert page.status_code == 200
    assert "坐席工作台" in text(page)
    assert 'id="agent-state">空闲' in text(page)

    away = post(client, "/agent/state", {"state": "away", "reason": "meal"})
    assert away.status_code == 200
    assert "暂离 · 用餐" in text(away)
    assert services.routing.status().queues[0].agents["away"] == 1

    back = post(client, "/agent/state", {"state": "available"})
    assert 'id="agent-state">空闲' in text(back)

    bad = post(client, "/agent/state", {"state": "away", "reason": "nap"})
    assert bad.status_code == 400
    assert "请选择暂离原因" in text(bad)


def test_an_offered_call_pops_with_the_callers_record_and_is_audited(
    services: Services, client: FlaskClient, agent: str, twilio: TwilioSigner
) -> None:
    incoming_call(twilio, services, "CA" + "1" * 32)
    panel = client.get("/agent/call", headers={"X-Console-Passive": "1"})
    body = text(panel)
    assert "来电振铃中" in body
    assert "+86 138****0001" in body
    assert CALLER not in body
    assert "13800000001" not in body
    assert 'id="accept-call"' in body
    assert 'id="reject-call"' in body
    assert "转人工" in body  # the menu path: the caller asked for a person
    with services.db.sessions() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "call.record.open")))
    assert [(a.actor, a.subject_id, a.reason) for a in rows] == [
        ("agent_a1", "CA" + "1" * 32, "call offered")
    ]


SID = "CA" + "2" * 32


@pytest.fixture
def on_call(services: Services, client: FlaskClient, agent: str, twilio: TwilioSigner) -> str:
    """Agent a1 has accepted a call (through the screen)."""
    incoming_call(twilio, services, SID)
    accepted = post(client, f"/agent/calls/{SID}/accept")
    assert accepted.status_code == 200
    assert "通话中" in text(accepted)
    return SID


def test_accepting_puts_the_agent_on_the_call_with_its_tools(
    services: Services, client: FlaskClient, on_call: str
) -> None:
    panel = text(client.get("/agent/call"))
    for tool in ("知识库", "转二线专家", "结束通话", "为来电者预约挂号"):
        assert tool in panel
    assert 'id="agent-state">通话中' in text(client.get("/agent/state"))
    assert services.routing.status().queues[0].answered == 1
    # the caller is moved from the waiting queue into the call's conference
    with services.db.transaction() as session:
        kinds = session.scalars(select(RoutingPhoneTask.kind)).all()
    assert "connect" in kinds


def test_rejecting_sends_the_call_to_another_agent(
    services: Services, client: FlaskClient, agent: str, twilio: TwilioSigner
) -> None:
    routing_agent(services, "a2", available=False)
    incoming_call(twilio, services, SID)
    services.routing.agent_sign_in("a2")  # a2 comes online while a1's phone rings
    rejected = post(client, f"/agent/calls/{SID}/reject")
    assert rejected.status_code == 200
    assert "等待来电" in text(rejected)
    assert 'id="agent-state">空闲' in text(client.get("/agent/state"))
    with services.db.sessions() as s:
        offers = {a.id: a.offer for a in s.scalars(select(RoutingAgent))}
    assert offers == {"a1": None, "a2": SID}


def test_ending_the_call_starts_wrap_up_with_a_timer_then_ready(
    services: Services, client: FlaskClient, on_call: str
) -> None:
    ended = post(client, f"/agent/calls/{on_call}/end")
    assert "话后整理" in text(ended)
    state = text(client.get("/agent/state"))
    assert 'id="wrap-up-timer" data-countdown-until="' in state
    assert "置为空闲" in state
    # the record stays open for notes during wrap-up
    note = post(client, f"/agent/calls/{on_call}/notes", {"text": "来电者已了解门诊时间"})
    assert "来电者已了解门诊时间" in text(note)
    ready = post(client, "/agent/state", {"state": "available"})
    assert 'id="agent-state">空闲' in text(ready)
    # after wrap-up the call is no longer the agent's to open
    assert post(client, f"/agent/calls/{on_call}/notes", {"text": "late"}).status_code == 404


def test_notes_and_disposition_are_kept_with_the_call(
    services: Services, client: FlaskClient, on_call: str
) -> None:
    saved = post(client, f"/agent/calls/{on_call}/notes", {"text": "询问<b>门诊</b>时间"})
    assert "询问&lt;b&gt;门诊&lt;/b&gt;时间" in text(saved)
    empty = post(client, f"/agent/calls/{on_call}/notes", {"text": "  "})
    assert empty.status_code == 400
    done = post(client, f"/agent/calls/{on_call}/disposition", {"code": "answered"})
    assert "处理结果已保存：已解答" in text(done)
    assert post(client, f"/agent/calls/{on_call}/disposition", {"code": "x"}).status_code == 400
    panel = text(client.get("/agent/call"))
    assert '<option value="answered" selected>' in panel
    with services.db.sessions() as s:
        kinds = [e.kind for e in s.scalars(select(CallEvent).order_by(CallEvent.id))]
    assert kinds[-2:] == ["agent_note", "disposition"]


def test_knowledge_base_search_and_reading_an_answer(
    services: Services, client: FlaskClient, on_call: str, clock: object
) -> None:
    import_path(services.db, KB_DATA, clock=services.clock)
    found = text(client.get(f"/agent/calls/{on_call}/kb", query_string={"q": "测试市中心医院"}))
    assert "测试市中心医院" in found
    link = re.search(r'hx-get="(/agent/calls/[^"]+/kb/hospital/test-central)"', found)
    assert link, found
    read = text(client.get(link.group(1)))
    assert "测试市中心医院在测试路1号" in read
    nothing = text(client.get(f"/agent/calls/{on_call}/kb", query_string={"q": "zzqqxx"}))
    assert "没有找到" in nothing
    # the entry read is offered as an attachment for an escalation
    panel = text(client.get("/agent/call"))
    assert 'name="articles" value="hospital:test-central" checked' in panel


def test_hostile_knowledge_base_text_is_shown_escaped(
    services: Services, client: FlaskClient, on_call: str
) -> None:
    import_path(services.db, KB_DATA, clock=services.clock)
    found = text(client.get(f"/agent/calls/{on_call}/kb", query_string={"q": "标记测试医院"}))
    assert "<Say>" not in found
    assert "标记&lt;Say&gt;测试&lt;/Say&gt;医院" in found


def test_escalating_to_an_expert(services: Services, client: FlaskClient, on_call: str) -> None:
    services.escalations.expert_sign_in("x1", name="Demo Expert", specialty="cardiology")
    panel = text(client.get("/agent/call"))
    assert '<option value="cardiology">' in panel
    who = text(
        client.get(f"/agent/calls/{on_call}/experts", query_string={"specialty": "cardiology"})
    )
    assert "Demo Expert" in who
    none = text(client.get(f"/agent/calls/{on_call}/experts", query_string={"specialty": "derm"}))
    assert "当前没有空闲的derm专家" in none
    sent = post(
        client,
        f"/agent/calls/{on_call}/escalate",
        {
            "specialty": "cardiology",
            "question": "胸闷三天，能否今天就诊？",
            "articles": ["hospital:test-central"],
        },
    )
    assert sent.status_code == 200
    assert "胸闷三天" in text(sent)
    assert "offered" in text(sent)
    [escalation] = services.escalations.for_call(on_call)
    assert escalation.article_ids == ("hospital:test-central",)
    assert escalation.agent_id == "a1"
    again = post(
        client, f"/agent/calls/{on_call}/escalate", {"specialty": "cardiology", "question": "再问"}
    )
    assert again.status_code == 422
    empty = post(
        client, f"/agent/calls/{on_call}/escalate", {"specialty": "cardiology", "question": ""}
    )
    assert empty.status_code == 422


# ---------------------------------------------------------------- bookings for the caller

DAY = date(2026, 11, 27)


@pytest.fixture
def clinic(services: Services) -> str:
    """A clinic tomorrow at the test hospital; returns its first slot id."""
    seed_kb(services.db)
    return add_clinic(services.db, "c1", DAY, (("08:00", "09:00", 5), ("09:00", "10:00", 5)))[0]


def test_booking_for_the_caller_shows_the_codes_once_and_lists_the_booking(
    services: Services, client: FlaskClient, on_call: str, clinic: str
) -> None:
    depts = text(client.get(f"/agent/calls/{on_call}/departments", query_string={"hospital": "h1"}))
    assert "心内科" in depts
    slots = text(
        client.get(
            f"/agent/calls/{on_call}/slots",
            query_string={"hospital": "h1", "department": "h1-card"},
        )
    )
    assert f'value="{clinic}"' in slots
    assert "11-27 08:00" in slots
    booked = post(
        client,
        f"/agent/calls/{on_call}/book",
        {"slot_id": clinic, "name": "张演示", "id_type": "cn_id", "id_number": cn_id(1)},
    )
    assert booked.status_code == 200, text(booked)
    visit = re.search(r'<strong class="mono">(\d{8})</strong>', text(booked))
    assert visit
    assert re.search(r'<strong class="mono secret">\d{6}</strong>', text(booked))
    # the booking went to the caller's own number, so it is on their record now
    panel = text(client.get("/agent/call"))
    assert visit.group(1) in panel
    assert "张演示" in panel
    refused = post(
        client,
        f"/agent/calls/{on_call}/book",
        {"slot_id": clinic, "name": "张演示", "id_type": "cn_id", "id_number": "123"},
    )
    assert refused.status_code == 422
    assert "证件" in text(refused) or "身份证" in text(refused)


def _book_for_caller(services: Services, slot: str, n: int = 2) -> tuple[str, str]:
    from callcenter.booking.service import BookingRequest

    assert services.booking is not None
    receipt = services.booking.book(
        BookingRequest(
            slot_id=slot, name="李演示", id_type="cn_id", id_number=cn_id(n), contact_phone=CALLER
        )
    )
    return receipt.visit_number, receipt.password


def test_cancel_resend_and_unlock_for_the_caller(
    services: Services, client: FlaskClient, clinic: str, agent: str, twilio: TwilioSigner
) -> None:
    visit, password = _book_for_caller(services, clinic)
    assert services.booking is not None
    for _ in range(5):  # five wrong passwords lock the patient
        services.booking.verify(visit, "000000", operator="desk_test")
    incoming_call(twilio, services, SID)
    post(client, f"/agent/calls/{SID}/accept")
    panel = text(client.get("/agent/call"))
    assert visit in panel
    assert "已锁定" in panel

    locked = post(client, f"/agent/calls/{SID}/bookings/{visit}/resend", {"password": password})
    assert "该患者已被锁定" in text(locked)
    patient = re.search(r"/patients/(\d+)/unlock", panel)
    assert patient
    no_reason = post(client, f"/agent/calls/{SID}/patients/{patient.group(1)}/unlock", {})
    assert no_reason.status_code == 422
    unlocked = post(
        client, f"/agent/calls/{SID}/patients/{patient.group(1)}/unlock", {"reason": "已核实身份"}
    )
    assert "已解锁" in text(unlocked)
    resent = post(client, f"/agent/calls/{SID}/bookings/{visit}/resend", {"password": password})
    assert "短信已重新发送" in text(resent)
    wrong = post(client, f"/agent/calls/{SID}/bookings/{visit}/resend", {"password": "111111"})
    assert "密码不正确" in text(wrong)
    cancelled = post(
        client, f"/agent/calls/{SID}/bookings/{visit}/cancel", {"reason": "来电者要求"}
    )
    assert f"预约 {visit} 已取消" in text(cancelled)
    with services.db.sessions() as s:
        actions = {
            a.action for a in s.scalars(select(AuditEntry).where(AuditEntry.actor == "agent_a1"))
        }
    assert {"call.record.open", "patient.unlock", "booking.resend_sms"} <= actions


def test_bookings_of_other_people_cannot_be_touched_through_a_call(
    services: Services, client: FlaskClient, clinic: str, on_call: str
) -> None:
    from callcenter.booking.service import BookingRequest

    assert services.booking is not None
    other = services.booking.book(
        BookingRequest(
            slot_id=clinic, name="王演示", id_type="cn_id", id_number=cn_id(3),
            contact_phone="+8613900000009",
        )
    )  # fmt: skip
    cancel = post(
        client, f"/agent/calls/{on_call}/bookings/{other.visit_number}/cancel", {"reason": "x"}
    )
    assert cancel.status_code == 404
    resend = post(
        client, f"/agent/calls/{on_call}/bookings/{other.visit_number}/resend",
        {"password": other.password},
    )  # fmt: skip
    assert resend.status_code == 404
    unlock = post(
        client,
        f"/agent/calls/{on_call}/patients/{other.booking.patient_id}/unlock",
        {"reason": "x"},
    )
    assert unlock.status_code == 404


# ---------------------------------------------------------------- who may open what


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/agent/calls/{sid}/kb?q=医院"),
        ("get", "/agent/calls/{sid}/kb/hospital/test-central"),
        ("get", "/agent/calls/{sid}/experts?specialty=x"),
        ("get", "/agent/calls/{sid}/escalations"),
        ("get", "/agent/calls/{sid}/slots?hospital=h1&department=h1-card"),
        ("post", "/agent/calls/{sid}/accept"),
        ("post", "/agent/calls/{sid}/reject"),
        ("post", "/agent/calls/{sid}/end"),
        ("post", "/agent/calls/{sid}/notes"),
        ("post", "/agent/calls/{sid}/disposition"),
        ("post", "/agent/calls/{sid}/book"),
        ("post", "/agent/calls/{sid}/escalate"),
        ("post", "/agent/calls/{sid}/bookings/12345678/cancel"),
        ("post", "/agent/calls/{sid}/patients/1/unlock"),
    ],
)
@pytest.mark.parametrize("whose", ["another agent's", "no one's"])
def test_guessing_a_call_id_opens_nothing(
    services: Services,
    app: object,
    twilio: TwilioSigner,
    login: Login,
    method: str,
    path: str,
    whose: str,
) -> None:
    routing_agent(services, "a1")
    routing_agent(services, "a2", available=False)
    incoming_call(twilio, services, SID)  # offered to a1
    thief = app.test_client()  # type: ignore[attr-defined]
    login(thief, "agent", routing_agent_id="a2")
    post(thief, "/agent/state", {"state": "available"})
    sid = SID if whose == "another agent's" else "CA" + "9" * 32
    url = path.format(sid=sid)
    if method == "get":
        response = thief.get(url)
    else:
        response = post(thief, url, {"text": "x", "code": "answered", "reason": "x"})
    assert response.status_code == 404
    with services.db.sessions() as s:
        opened = s.scalars(select(AuditEntry).where(AuditEntry.action == "call.record.open"))
        assert [a.actor for a in opened] == []


@pytest.mark.parametrize(("role", "status"), [("expert", 403), ("admin", 403)])
def test_other_roles_do_not_get_the_agent_screen(
    client: FlaskClient, login: Login, role: str, status: int
) -> None:
    login(client, role)
    assert client.get("/agent").status_code == status


def test_signed_out_users_are_sent_to_sign_in(client: FlaskClient) -> None:
    response = client.get("/agent")
    assert response.status_code == 302
    assert "/auth/sign-in" in response.headers["Location"]


def test_an_agent_without_an_agent_id_is_told_so_and_cannot_act(
    client: FlaskClient, login: Login
) -> None:
    login(client, "agent")
    assert "还没有关联坐席编号" in text(client.get("/agent"))
    assert post(client, "/agent/state", {"state": "available"}).status_code == 403


def test_a_supervisor_views_an_agents_screen_read_only_and_audited(
    services: Services,
    app: object,
    client: FlaskClient,
    agent: str,
    twilio: TwilioSigner,
    login: Login,
) -> None:
    incoming_call(twilio, services, SID)
    boss = app.test_client()  # type: ignore[attr-defined]
    login(boss, "supervisor", username="boss1")
    page = text(boss.get("/agent", query_string={"agent": "a1"}))
    assert "主管查看：a1" in page
    assert "+86 138****0001" in page
    assert 'id="accept-call"' not in page
    assert "置为空闲" not in page
    assert post(boss, f"/agent/calls/{SID}/accept").status_code == 403
    assert boss.get("/agent", query_string={"agent": "nobody"}).status_code == 404
    with services.db.sessions() as s:
        rows = list(
            s.scalars(
                select(AuditEntry).where(
                    AuditEntry.actor == "boss1", AuditEntry.action == "call.record.open"
                )
            )
        )
    assert [(a.subject_id, a.reason) for a in rows] == [(SID, "supervisor viewing agent a1")]


@pytest.mark.parametrize(
    "path", ["/agent/state", f"/agent/calls/{SID}/accept", f"/agent/calls/{SID}/notes"]
)
def test_forms_without_the_csrf_token_are_refused(
    services: Services, client: FlaskClient, agent: str, twilio: TwilioSigner, path: str
) -> None:
    incoming_call(twilio, services, SID)
    response = client.post(path, data={"state": "away", "reason": "meal", "text": "x"})
    assert response.status_code == 400
    assert services.routing.status().queues[0].agents["reserved"] == 1  # nothing changed
    token = csrf_token(client)
    assert client.post(path, data={"csrf_token": token + "x"}).status_code == 400


def test_the_desk_speaks_english_when_chosen(
    services: Services, client: FlaskClient, agent: str, twilio: TwilioSigner
) -> None:
    post(client, "/auth/language", {"lang": "en", "next": "/agent"})
    incoming_call(twilio, services, SID)
    page = text(client.get("/agent"))
    assert "Incoming call" in page
    assert "Accept" in page
    assert "Menu path" in page
    assert "来电振铃中" not in page


def test_a_supervisor_picks_whose_screen_to_view(
    services: Services, client: FlaskClient, login: Login
) -> None:
    routing_agent(services, "a1")
    routing_agent(services, "a2", available=False)
    login(client, "supervisor")
    page = text(client.get("/agent"))
    assert 'href="/agent?agent=a1"' in page
    assert "a2 · 离线" in page
