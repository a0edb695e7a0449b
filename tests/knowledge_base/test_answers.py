"""Spoken answers (knowledge_base.answers) on the demo data, in Mandarin and English.

What the caller hears for each kind of entry: a hospital's summary and phone, a department's
location and hours, an expert's clinics, a drug's price (read the way people say it, with its
date and "the hospital's own price applies"), an article's reviewed summary with the "not a
diagnosis" line, service information. Expired articles are never read; ``review_list`` names
them (and those expiring soon) for the editors.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from knowledge_base.answers import (
    DISCLAIMER,
    DRUG_ADVICE,
    Answer,
    answer,
    readable_version,
    review_list,
)
from knowledge_base.importer import DEMO_DIR, import_path
from knowledge_base.models import Article
from tests.knowledge_base.demo_db import copy_of, demo_database

#: The FakeClock's date in Shanghai (2026-11-26 09:00 local).
TODAY = date(2026, 11, 26)


@functools.cache
def demo_section(section: str) -> list[dict[str, Any]]:
    """One section of the demo data (``drugs``...), as its YAML file gives it."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text = (DEMO_DIR / f"{section}.yaml").read_text(encoding="utf-8")
    items = yaml.load(text, Loader=loader)[section]  # noqa: S506 - a safe loader
    assert isinstance(items, list)
    return items


def demo(section: str, entry_id: str) -> dict[str, Any]:
    """One entry of the demo data."""
    for item in demo_section(section):
        if item["id"] == entry_id:
            return item
    raise KeyError(entry_id)


@pytest.fixture(scope="module")
def demo_kb(database_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with demo_database(database_template, tmp_path_factory.mktemp("kb")) as url:
        yield url


@pytest.fixture(scope="module")
def kb(demo_kb: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """The demo knowledge base, read only, shared by the module's tests (a copy: the
    template itself must stay free of connections to be copied on PostgreSQL)."""
    with copy_of(demo_kb, tmp_path_factory.mktemp("kb-read")) as url:
        handle = Database.from_url(url)
        yield handle
        handle.dispose()


@pytest.fixture
def fresh(demo_kb: str, tmp_path: Path) -> Iterator[Database]:
    """A copy of the demo knowledge base this test may write to."""
    with copy_of(demo_kb, tmp_path) as url:
        handle = Database.from_url(url)
        yield handle
        handle.dispose()


def say(db: Database, kind: str, entry_id: str, language: str, today: date = TODAY) -> Answer:
    with db.sessions() as session:
        found = answer(session, kind, entry_id, language, today)
    assert found is not None, (kind, entry_id)
    return found


def import_yaml(db: Database, tmp_path: Path, text: str, clock: FakeClock) -> None:
    path = tmp_path / "extra.yaml"
    path.write_text(text, encoding="utf-8")
    import_path(db, path, clock=clock)


# ---------------------------------------------------------------- hospitals


def test_hospital_summary_and_phone_in_mandarin(kb: Database) -> None:
    said = say(kb, "hospital", "huashan", "zh-CN")
    assert said.text == (
        "华山医院在静安区乌鲁木齐中路12号，门诊工作日8点至17点，急诊24小时。"
        "咨询电话：零二幺，五五五零，零幺零八。"
    )
    assert said.title == "复旦大学附属华山医院"
    assert said.article_id is None


def test_hospital_summary_and_phone_in_english(kb: Database) -> None:
    said = say(kb, "hospital", "huashan", "en")
    assert said.text == (
        demo("hospitals", "huashan")["summary_en"] + " Phone: 0 2 1, 5 5 5 0, 0 1 0 8."
    )
    assert said.title == "Huashan Hospital, Fudan University"


HOSPITAL_WITHOUT_SUMMARY = """
hospitals:
  - id: test-plain
    name_zh: 测试医院
    name_en: Test Hospital
    address_zh: 上海市测试路1号
    address_en: 1 Test Road, Shanghai
    opening_hours_zh: 门诊周一至周五 08:00–17:00
    opening_hours_en: Outpatients Mon–Fri 08:00–17:00
    phone: "021-5550 0999"
"""


def test_hospital_without_summary_reads_address_and_hours(
    fresh: Database, tmp_path: Path, clock: FakeClock
) -> None:
    import_yaml(fresh, tmp_path, HOSPITAL_WITHOUT_SUMMARY, clock)
    assert say(fresh, "hospital", "test-plain", "zh-CN").text == (
        "测试医院位于上海市测试路1号。开放时间：门诊周一至周五 08:00–17:00。"
        "咨询电话：零二幺，五五五零，零九九九。"
    )
    said_en = say(fresh, "hospital", "test-plain", "en").text
    assert said_en.startswith("Test Hospital, 1 Test Road, Shanghai.")
    assert "Opening hours: Outpatients Mon–Fri 08:00–17:00." in said_en
    assert said_en.endswith("Phone: 0 2 1, 5 5 5 0, 0 9 9 9.")


# ---------------------------------------------------------------- departments and experts


def test_department_location_and_hours(kb: Database) -> None:
    zh = say(kb, "department", "ruijin-cardiology", "zh-CN")
    assert zh.text == (
        "上海交通大学医学院附属瑞金医院心内科位于门诊楼2楼。"
        "门诊时间：周一至周五 08:00–17:00，周六 08:00–11:30。"
    )
    assert zh.title == "上海交通大学医学院附属瑞金医院心内科"
    en = say(kb, "department", "ruijin-cardiology", "en")
    assert en.text.startswith("Cardiology at Ruijin Hospital")
    assert "is in Outpatient Building, 2F." in en.text
    assert en.text.endswith("Clinic hours: Mon–Fri 08:00–17:00, Sat 08:00–11:30.")


def test_expert_title_place_specialties_and_clinics(kb: Database) -> None:
    entry = demo("experts", "exp-0001")
    zh = say(kb, "expert", "exp-0001", "zh-CN")
    assert zh.title == entry["name_zh"] == "林兰"
    assert zh.text == (
        "林兰，副主任医师，上海交通大学医学院附属瑞金医院妇产科。"
        "擅长妊娠保健、子宫肌瘤、妇科炎症。出诊时间：周三上午、周四上午。"
    )
    en = say(kb, "expert", "exp-0001", "en")
    assert en.title == "Lin Lan"
    assert en.text.startswith("Lin Lan, Associate Chief Physician, ")
    assert "Specialties: prenatal care, uterine fibroids, gynecological infections." in en.text
    assert en.text.endswith("Clinics: Wednesday morning, Thursday morning.")


# ---------------------------------------------------------------- drugs


def test_drug_price_in_mandarin(kb: Database) -> None:
    said = say(kb, "drug", "aspirin-ec", "zh-CN")
    assert said.text == (
        demo("drugs", "aspirin-ec")["summary_zh"]
        + "参考价格每盒十五元八角（2026年10月1日演示价格），以医院实际价格为准。"
    )
    assert said.title == "阿司匹林肠溶片"
    # the summary already says 遵医嘱: the advice is not said twice
    assert DRUG_ADVICE["zh-CN"] not in said.text


def test_drug_price_in_english(kb: Database) -> None:
    said = say(kb, "drug", "aspirin-ec", "en")
    assert "Reference price: 15 yuan 80 per box (demo price of 2026-10-01)" in said.text
    assert said.text.endswith("the hospital's own price applies.")
    assert "15.80" not in said.text
    assert said.title == "Aspirin Enteric-coated Tablets"


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_every_priced_demo_drug_says_its_price_and_that_the_hospital_price_applies(
    kb: Database, language: str
) -> None:
    priced = [d for d in demo_section("drugs") if d.get("price")]
    assert len(priced) > 100
    own_price = "以医院实际价格为准" if language == "zh-CN" else "the hospital's own price applies"
    with kb.sessions() as session:
        for drug in priced:
            found = answer(session, "drug", drug["id"], language, TODAY)
            assert found is not None, drug["id"]
            assert own_price in found.text, drug["id"]
            assert drug["price"] not in found.text, drug["id"]  # never "15.80" read as digits


DRUG_WITHOUT_SUMMARY = """
drugs:
  - id: test-rx
    generic_zh: 测试处方片
    generic_en: Test Rx Tablets
    specification: 10mg×7片
    unit_zh: 盒
    unit_en: box
    price: "128.00"
    currency: CNY
    price_date: "2026-09-15"
    otc: false
  - id: test-otc
    generic_zh: 测试非处方片
    generic_en: Test OTC Tablets
    otc: true
"""


def test_drug_without_summary_says_prescription_status_and_advice(
    fresh: Database, tmp_path: Path, clock: FakeClock
) -> None:
    import_yaml(fresh, tmp_path, DRUG_WITHOUT_SUMMARY, clock)
    assert say(fresh, "drug", "test-rx", "zh-CN").text == (
        "测试处方片，规格10mg×7片。处方药，需凭医生处方购买。"
        "参考价格每盒一百二十八元整（2026年9月15日演示价格），以医院实际价格为准。"
        + DRUG_ADVICE["zh-CN"]
    )
    assert say(fresh, "drug", "test-rx", "en").text == (
        "Test Rx Tablets, 10mg×7片. Prescription only. Reference price: 128 yuan per box "
        "(demo price of 2026-09-15); the hospital's own price applies. " + DRUG_ADVICE["en"]
    )
    # no price: nothing about a price is said
    otc = say(fresh, "drug", "test-otc", "zh-CN").text
    assert otc == "测试非处方片。非处方药。" + DRUG_ADVICE["zh-CN"]
    assert "Over the counter." in say(fresh, "drug", "test-otc", "en").text


# ---------------------------------------------------------------- articles


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_article_reads_the_reviewed_summary_then_not_a_diagnosis(
    kb: Database, language: str
) -> None:
    said = say(kb, "article", "hypertension-daily", language)
    version = demo("articles", "hypertension-daily")["versions"][-1]
    summary = version["summary_zh" if language == "zh-CN" else "summary_en"]
    assert said.text.startswith(summary)
    assert said.text.endswith(DISCLAIMER[language])
    assert (said.article_id, said.article_version) == ("hypertension-daily", 2)
    # the SMS text is the summary; the SMS template adds its own disclaimer
    assert said.sms_text == summary
    assert DISCLAIMER[language] not in (said.sms_text or "")


def test_every_readable_demo_article_ends_with_the_disclaimer(kb: Database) -> None:
    with kb.sessions() as session:
        ids = [a.id for a in session.query(Article).order_by(Article.id)]
        assert len(ids) >= 30
        for article_id in ids:
            for language in ("zh-CN", "en"):
                found = answer(session, "article", article_id, language, TODAY)
                if article_id in ("dengue", "covid-home-care"):
                    assert found is None
                    continue
                assert found is not None, article_id
                assert found.text.endswith(DISCLAIMER[language]), (article_id, language)


def test_article_whose_older_version_expired_reads_the_newest(kb: Database) -> None:
    said = say(kb, "article", "influenza", "zh-CN")
    versions = demo("articles", "influenza")["versions"]
    assert said.article_version == 2
    assert said.text.startswith(versions[1]["summary_zh"])
    assert versions[0]["summary_zh"] not in said.text


@pytest.mark.parametrize("article_id", ["dengue", "covid-home-care"])
@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_expired_article_is_never_read(kb: Database, article_id: str, language: str) -> None:
    with kb.sessions() as session:
        assert answer(session, "article", article_id, language, TODAY) is None
        article = session.get(Article, article_id)
        assert article is not None
        assert readable_version(article, TODAY) is None
        # it was readable before it expired
        newest = max(article.versions, key=lambda v: v.version)
        assert readable_version(article, newest.expires_on) is newest
        assert answer(session, "article", article_id, language, newest.expires_on) is not None


ARTICLES_DUE = """
articles:
  - id: test-due-soon
    category: chronic
    title_zh: 测试：即将到期
    title_en: "Test: due soon"
    versions:
      - version: 1
        body_zh: 正文一。
        summary_zh: 旧版摘要。
        reviewer: 测试审核人
        reviewed_on: "2025-01-01"
        expires_on: "2025-12-31"
      - version: 2
        body_zh: 正文二。
        summary_zh: 新版摘要。
        summary_en: New summary.
        reviewer: 测试审核人
        reviewed_on: "2026-01-01"
        expires_on: "2026-12-10"
  - id: test-expires-today
    category: chronic
    title_zh: 测试：今天到期
    title_en: "Test: expires today"
    versions:
      - version: 1
        body_zh: 正文。
        summary_zh: 今天还能听到。
        reviewer: 测试审核人
        reviewed_on: "2026-01-01"
        expires_on: "2026-11-26"
  - id: test-newest-expired
    category: chronic
    title_zh: 测试：新版已过期
    title_en: "Test: newest expired"
    versions:
      - version: 1
        body_zh: 正文一。
        summary_zh: 旧版没有过期。
        reviewer: 测试审核人
        reviewed_on: "2026-01-01"
        expires_on: "2027-12-31"
      - version: 2
        body_zh: 正文二。
        summary_zh: 新版已经过期。
        reviewer: 测试审核人
        reviewed_on: "2026-01-01"
        expires_on: "2026-11-01"
"""


def test_readable_version_follows_the_date(
    fresh: Database, tmp_path: Path, clock: FakeClock
) -> None:
    import_yaml(fresh, tmp_path, ARTICLES_DUE, clock)
    with fresh.sessions() as session:
        soon = session.get(Article, "test-due-soon")
        today = session.get(Article, "test-expires-today")
        newest_expired = session.get(Article, "test-newest-expired")
        assert soon is not None
        assert today is not None
        assert newest_expired is not None
        assert readable_version(soon, TODAY).version == 2  # type: ignore[union-attr]
        assert readable_version(today, TODAY) is not None  # the expiry day is still valid
        assert readable_version(today, date(2026, 11, 27)) is None
        # a newer reviewed text replaced the old one: the old text is no fallback
        assert readable_version(newest_expired, TODAY) is None
        found = answer(session, "article", "test-due-soon", "zh-CN", TODAY)
        assert found is not None
        assert found.text == "新版摘要。" + DISCLAIMER["zh-CN"]
        assert answer(session, "article", "test-newest-expired", "zh-CN", TODAY) is None


def test_review_list_names_expired_articles_on_the_demo_data(kb: Database) -> None:
    with kb.sessions() as session:
        assert review_list(session, TODAY) == [
            ("covid-home-care", 1, date(2026, 10, 15)),
            ("dengue", 1, date(2026, 9, 30)),
        ]
        # further ahead, articles expiring by the end of January come up too
        later = {article_id for article_id, _v, _e in review_list(session, TODAY, 70)}
        assert {"covid-home-care", "dengue", "copd", "hiv-prevention"} <= later


def test_review_list_names_articles_expiring_within_30_days(
    fresh: Database, tmp_path: Path, clock: FakeClock
) -> None:
    import_yaml(fresh, tmp_path, ARTICLES_DUE, clock)
    with fresh.sessions() as session:
        listed = review_list(session, TODAY)
    assert listed == [
        ("covid-home-care", 1, date(2026, 10, 15)),
        ("dengue", 1, date(2026, 9, 30)),
        ("test-due-soon", 2, date(2026, 12, 10)),
        ("test-expires-today", 1, date(2026, 11, 26)),
        ("test-newest-expired", 2, date(2026, 11, 1)),
    ]
    with fresh.sessions() as session:
        assert ("test-due-soon", 2, date(2026, 12, 10)) not in review_list(session, TODAY, 13)


# ---------------------------------------------------------------- service information


@pytest.mark.parametrize(("language", "field"), [("zh-CN", "summary_zh"), ("en", "summary_en")])
def test_service_information_reads_its_summary(kb: Database, language: str, field: str) -> None:
    said = say(kb, "service", "hotline-hours", language)
    assert said.text == demo("service_info", "hotline-hours")[field]
    assert said.title == ("热线服务时间" if language == "zh-CN" else "Hotline service hours")


@pytest.mark.parametrize(
    ("kind", "entry_id"),
    [
        ("hospital", "no-such-hospital"),
        ("department", "nope"),
        ("expert", "exp-9999"),
        ("drug", "nope"),
        ("article", "nope"),
        ("service", "nope"),
        ("unicorn", "ruijin"),
    ],
)
def test_unknown_entry_has_no_answer(kb: Database, kind: str, entry_id: str) -> None:
    with kb.sessions() as session:
        assert answer(session, kind, entry_id, "zh-CN", TODAY) is None
