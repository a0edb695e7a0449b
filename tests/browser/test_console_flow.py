"""A whole shift in real browsers: an agent signs in and goes available, a call comes in over
signed Twilio webhooks and pops on their screen, they search the knowledge base, book for the
caller and escalate; an expert (a second browser context) sees the question and accepts; the
supervisor's wallboard follows every step; everyone signs out.

The router loop (``callcenter router``) is played by the test: it calls
``services.phone.run_once()`` where that process would. Screenshots of each step are saved
(see ``conftest.py``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, expect

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from knowledge_base.importer import import_path
from tests.booking.conftest import add_clinic, cn_id, seed_kb
from tests.browser.conftest import LiveServer, Shots
from tests.console.conftest import PASSWORD, MakeUser

CALLER = "+8613800000007"
HOTLINE = "+862155501234"
SID = "CA" + "7" * 32
KB_DATA = Path(__file__).resolve().parents[1] / "knowledge_base" / "data" / "good"
QUESTION = "来电者服用降压药后头晕，能否今天调整剂量？"
TIMEOUT_MS = 10_000


def _setup(services: Services, make_user: MakeUser) -> None:
    import_path(services.db, KB_DATA, clock=services.clock)
    seed_kb(services.db)
    add_clinic(services.db, "c1", date(2026, 11, 27), (("08:00", "09:00", 5),))
    services.routing.agent_sign_in(
        "a1", name="王坐席（演示）", languages=["zh-CN", "en"], levels={"general": 0}
    )
    services.routing.agent_sign_out("a1")
    make_user("agent", username="agent_wang", display_name="王坐席（演示）", routing_agent_id="a1")
    make_user("expert", username="dr_li", display_name="李医生（演示）", specialty="cardiology")
    make_user("supervisor", username="sup_zhao", display_name="赵主管（演示）")


def _sign_in(context: BrowserContext, live: LiveServer, username: str) -> Page:
    page = context.new_page()
    page.goto(live.url + "/auth/sign-in")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    return page


def _sign_out(page: Page, home: str) -> None:
    """Sign out; the screen is then closed to this browser (the session ended on the
    server, not just in the page)."""
    page.click("header form button:has-text('退出')")
    expect(page).to_have_url(re.compile(r"/auth/sign-in"))
    page.goto(home)
    expect(page).to_have_url(re.compile(r"/auth/sign-in\?next="))


def _cell(page: Page, queue: str, field: str) -> str:
    return page.locator(f'#queues tr[data-queue="{queue}"] td[data-field="{field}"]').inner_text()


def _incoming_call(live: LiveServer) -> None:
    """The caller dials in, presses 0 for a person, and Twilio starts the queue's wait URL."""
    voice = live.twilio_post("/twilio/voice", {"CallSid": SID, "From": CALLER, "To": HOTLINE})
    assert voice.status_code == 200, voice.text
    person = live.twilio_post("/twilio/voice/input?step=0", {"CallSid": SID, "Digits": "0"})
    assert person.status_code == 200, person.text
    enqueue = ET.fromstring(person.text).find(".//Enqueue")  # noqa: S314 (our own TwiML)
    assert enqueue is not None, person.text
    wait = urlsplit(enqueue.attrib["waitUrl"])
    path = wait.path + (f"?{wait.query}" if wait.query else "")
    waiting = live.twilio_post(
        path, {"CallSid": SID, "QueuePosition": "1", "QueueTime": "0", "CurrentQueueSize": "1"}
    )
    assert waiting.status_code == 200, waiting.text


def test_a_call_from_ringing_to_expert_with_the_wallboard_following(
    browser: Browser,
    live: LiveServer,
    services: Services,
    make_user: MakeUser,
    clock: FakeClock,
    shots: Shots,
) -> None:
    _setup(services, make_user)
    viewport = {"width": 1400, "height": 1000}
    agent_ctx = browser.new_context(locale="zh-CN", viewport=viewport, timezone_id="UTC")
    expert_ctx = browser.new_context(locale="zh-CN", viewport=viewport, timezone_id="UTC")
    boss_ctx = browser.new_context(locale="zh-CN", viewport=viewport, timezone_id="UTC")
    for ctx in (agent_ctx, expert_ctx, boss_ctx):
        ctx.set_default_timeout(TIMEOUT_MS)
    try:
        # -- the supervisor opens the wallboard: a quiet floor
        boss = _sign_in(boss_ctx, live, "sup_zhao")
        expect(boss).to_have_url(re.compile(r"/supervisor$"))
        expect(boss.locator('#queues tr[data-queue="general"]')).to_be_visible()
        assert _cell(boss, "general", "waiting") == "0"
        assert _cell(boss, "general", "available") == "0"

        # -- the expert signs in and goes available
        expert = _sign_in(expert_ctx, live, "dr_li")
        expect(expert).to_have_url(re.compile(r"/expert$"))
        expert.click("#presence button[value=available]")
        expect(expert.locator("[data-testid=expert-state]")).to_have_text("空闲，可接受求助")

        # -- the agent signs in and goes available
        agent = _sign_in(agent_ctx, live, "agent_wang")
        expect(agent).to_have_url(re.compile(r"/agent$"))
        expect(agent.locator("#live-status")).to_have_text("实时连接正常")
        agent.click("#desk-state button[value=available]")
        expect(agent.locator("#agent-state")).to_have_text("空闲")
        expect(
            boss.locator('#queues tr[data-queue="general"] td[data-field="available"]')
        ).to_have_text("1")
        shots.take(agent, "agent-available")

        # -- a call comes in and waits; the wallboard shows it
        _incoming_call(live)
        clock.advance(12)
        expect(
            boss.locator('#queues tr[data-queue="general"] td[data-field="waiting"]')
        ).to_have_text("1")
        expect(
            boss.locator('#queues tr[data-queue="general"] td[data-field="longest_wait"]')
        ).to_have_text("12s")
        shots.take(boss, "wallboard-caller-waiting")

        # -- the router offers it: it pops on the agent's screen
        report = services.phone.run_once()
        assert report.offers == 1
        expect(agent.locator("#accept-call")).to_be_visible()
        expect(agent.locator("#caller-phone")).to_have_text("+86 138****0007")
        assert "13800000007" not in agent.content()
        shots.take(agent, "agent-call-offered")
        agent.click("#accept-call")
        expect(agent.locator("#agent-state")).to_have_text("通话中")
        expect(agent.locator("#desk-call [data-call-key^='on_call:']")).to_be_visible()
        # the accept answer and the live event's panel reload cross; let the last one land
        # before typing into the panel (the screen never reloads it again during the call)
        agent.wait_for_timeout(1500)

        # -- knowledge base: search and read the answer
        agent.fill("#kb-query", "测试市中心医院")
        hit = agent.locator("#kb-results a", has_text="测试市中心医院").first
        expect(hit).to_be_visible()
        hit.click()
        expect(agent.locator("#kb-answer")).to_contain_text("测试市中心医院在测试路1号")
        shots.take(agent, "agent-knowledge-base")

        # -- book for the caller
        agent.select_option("select[name=hospital] >> nth=0", "h1")
        expect(agent.locator("#book-departments option[value=h1-card]")).to_have_count(1)
        agent.select_option("#book-departments", "h1-card")
        expect(agent.locator("#book-slots select[name=slot_id]")).to_be_visible()
        booking = agent.locator("form[hx-post$='/book']")
        booking.locator("input[name=name]").fill("张演示")
        booking.locator("input[name=id_number]").fill(cn_id(7))
        booking.locator("button[type=submit]").click()
        expect(agent.locator("#booked")).to_contain_text("预约成功")
        visit = agent.locator("#booked strong.mono").first.inner_text()
        assert re.fullmatch(r"\d{8}", visit)
        shots.take(agent, "agent-booked")

        # -- escalate to a cardiologist, with the entry read attached (the escalation form
        # lists the entries read on this call when the call panel is drawn: redraw it)
        agent.reload()
        expect(agent.locator("input[name=articles][value='hospital:test-central']")).to_be_checked()
        escalate = agent.locator("form[hx-post$='/escalate']")
        escalate.locator("select[name=specialty]").select_option("cardiology")
        expect(agent.locator("#experts-now")).to_contain_text("李医生（演示）")
        escalate.locator("textarea[name=question]").fill(QUESTION)
        escalate.locator("textarea[name=notes]").fill("来电者68岁，今晨血压偏低。")
        escalate.locator("button[type=submit]").click()
        expect(agent.locator("#escalations")).to_contain_text(QUESTION)

        # -- the expert sees the question, notes and entry before accepting, and accepts
        offer = expert.locator("article.offer").first
        expect(offer).to_contain_text(QUESTION)
        expect(offer).to_contain_text("来电者68岁，今晨血压偏低。")
        expect(offer).to_contain_text("测试市中心医院")
        shots.take(expert, "expert-offer")
        offer.locator("button:has-text('接受并加入通话')").click()
        expect(expert.locator("[data-testid=accepted]")).to_be_visible()
        shots.take(expert, "expert-accepted")
        (view,) = services.escalations.for_call(SID)
        assert (str(view.state), view.expert_id) == ("accepted", "dr_li")

        # -- the wallboard followed: answered in 12 s, one agent busy, an expert on the call
        row = '#queues tr[data-queue="general"] '
        expect(boss.locator(row + 'td[data-field="waiting"]')).to_have_text("0")
        expect(boss.locator(row + 'td[data-field="answered"]')).to_have_text("1")
        expect(boss.locator(row + 'td[data-field="busy"]')).to_have_text("1")
        expect(boss.locator(row + 'td[data-field="sl"]')).to_have_text("100%")
        expect(boss.locator(row + 'td[data-field="asa"]')).to_have_text("12s")
        expect(boss.locator(f'#escalations tr[data-escalation="{view.id}"]')).to_contain_text(
            "专家通话中"
        )
        boss.reload()  # the charts redraw every minute; a reload draws them now
        expect(boss.locator("#charts .chart")).to_have_count(len(services.routing.queues))
        expect(boss.locator("#escalations tr[data-escalation]")).to_have_count(1)
        shots.take(boss, "wallboard-after-escalation")

        # -- Chinese text renders with a real CJK font, not boxes
        width = boss.evaluate(
            "() => { const c = document.createElement('canvas').getContext('2d');"
            " c.font = '16px sans-serif'; return c.measureText('监控大屏').width; }"
        )
        assert width > 40

        # -- everyone signs out; the session is over on the server
        for page, home in ((agent, "/agent"), (expert, "/expert"), (boss, "/supervisor")):
            _sign_out(page, live.url + home)
    finally:
        for ctx in (agent_ctx, expert_ctx, boss_ctx):
            ctx.close()
