"""The supervisor's tools in a real browser: set an agent away from the wallboard, export the
daily report (a CSV that Excel opens in Chinese), and publish a reviewed article version that
the phone then reads."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from playwright.sync_api import Browser, expect

from callcenter.bootstrap import Services
from knowledge_base.answers import answer
from knowledge_base.importer import import_path
from tests.browser.conftest import LiveServer, Shots
from tests.console.conftest import PASSWORD, MakeUser

KB_DATA = Path(__file__).resolve().parents[1] / "knowledge_base" / "data" / "good"
NEW_SUMMARY = "测试病患者要按时服药，定期复查；症状加重请及时就医。"


def test_agent_state_csv_export_and_article_review(
    browser: Browser, live: LiveServer, services: Services, make_user: MakeUser, shots: Shots
) -> None:
    import_path(services.db, KB_DATA, clock=services.clock)
    services.routing.agent_sign_in("a1", name="王坐席（演示）", levels={"general": 0})
    make_user("supervisor", username="sup_zhao", display_name="赵主管（演示）")
    context = browser.new_context(
        locale="zh-CN", viewport={"width": 1400, "height": 1000}, accept_downloads=True
    )
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(live.url + "/auth/sign-in")
        page.fill("input[name=username]", "sup_zhao")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit].primary")
        expect(page).to_have_url(re.compile(r"/supervisor$"))

        # -- set the agent away from the wallboard
        row = page.locator('#agents tr[data-agent="a1"]')
        expect(row).to_contain_text("空闲")
        row.locator("select[name=reason]").select_option("training")
        row.locator("button[value=away]").click()
        expect(page.locator(".flash")).to_contain_text("已更改坐席 a1 的状态")
        expect(page.locator('#agents tr[data-agent="a1"]')).to_contain_text("离开")
        expect(page.locator('#queues tr[data-queue="general"] td[data-field="away"]')).to_have_text(
            "1"
        )
        assert {a.id: a.state for a in _agents(services)}["a1"] == "away"

        # -- the daily report, on screen and as CSV
        page.click("nav.subnav a:has-text('日报表')")
        expect(page.locator("#daily tbody tr")).to_have_count(7 * len(services.routing.queues))
        shots.take(page, "supervisor-reports")
        with page.expect_download() as download_info:
            page.click("#export-csv")
        download = download_info.value
        assert download.suggested_filename == "hotline-daily-2026-11-20-2026-11-26.csv"
        data = Path(download.path()).read_bytes()
        assert data.startswith("\ufeff日期 date,队列 queue".encode())

        # -- review an article: a new version, read by the phone at once
        page.click("nav.subnav a:has-text('知识库文章')")
        page.click("#articles a:has-text('测试病的日常管理')")
        form = page.locator("#new-version")
        form.locator("textarea[name=summary_zh]").fill(NEW_SUMMARY)
        form.locator("input[name=reviewer]").fill("周医生（演示）")
        form.locator("input[name=reviewed_on]").fill("2026-11-25")
        form.locator("input[name=expires_on]").fill("2027-11-25")
        form.locator("button[type=submit]").click()
        expect(page.locator(".flash")).to_contain_text("已保存第")
        expect(page.locator("article.version").first).to_contain_text("周医生（演示）")
        shots.take(page, "supervisor-article-review")
        with services.db.transaction() as session:
            said = answer(session, "article", "test-article", "zh-CN", date(2026, 11, 26))
        assert said is not None
        assert said.text.startswith(NEW_SUMMARY)

        # -- and in English
        page.click("header button:has-text('English')")
        expect(page.locator("nav.subnav")).to_contain_text("Knowledge base")
        page.click("nav.subnav a:has-text('Wallboard')")
        expect(page.locator("#queues")).to_be_visible()
        shots.take(page, "supervisor-wallboard-en")
    finally:
        context.close()


def _agents(services: Services) -> list:  # type: ignore[type-arg]
    from agents_console.reports import agents_now

    return agents_now(services.db)
