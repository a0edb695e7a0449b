"""Information by phone: the knowledge base behind main-menu options 1, 3 and 4.

Every test is a call through the real Flask app, posted and signed the way Twilio posts
(``twilio`` fixture), on a database holding the demo knowledge base. What is asserted is
what the caller hears (the ``<Say>`` texts of the TwiML, in order) and what the call leaves
behind (call events, outbox rows, the queue it reached).

By voice, the words that chose a menu option are searched first ("阿斯匹林多少钱" at the
main menu is option 3 and the aspirin answer at once); by keypad, the flow asks for a name.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.db.models import Call as CallRow
from callcenter.db.models import CallEvent, OutboxMessage
from knowledge_base.answers import DISCLAIMER
from knowledge_base.importer import DEMO_DIR, import_path
from tests.conftest import FLOWS, PUBLIC_BASE_URL, TwilioSigner
from tests.knowledge_base.demo_db import copy_of, demo_database

CALLER = "+8613800138000"
HOTLINE = "+862162345678"
BUSY = "The system is busy"


def _prompts(language: str) -> dict[str, Any]:
    data = yaml.safe_load((FLOWS / "prompts" / f"{language}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


ZH = _prompts("zh-CN")
EN = _prompts("en")


def _demo(section: str) -> dict[str, dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text = (DEMO_DIR / f"{section}.yaml").read_text(encoding="utf-8")
    return {item["id"]: item for item in yaml.load(text, Loader=loader)[section]}  # noqa: S506


HOSPITALS = _demo("hospitals")
EXPERTS = _demo("experts")
ARTICLES = _demo("articles")


# ---------------------------------------------------------------- the database


@pytest.fixture(scope="module")
def demo_kb(database_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo knowledge base, loaded once for the module."""
    with demo_database(database_template, tmp_path_factory.mktemp("kb")) as url:
        yield url


@pytest.fixture
def database_url(demo_kb: str, tmp_path: Path) -> Iterator[str]:
    """Each test calls in on its own copy of the demo knowledge base."""
    with copy_of(demo_kb, tmp_path) as url:
        yield url


# ---------------------------------------------------------------- a phone call


class Phone:
    """One call to the hotline: each method posts what Twilio would post and returns what
    the caller hears next."""

    _numbers = iter(range(1, 10_000))

    def __init__(self, twilio: TwilioSigner, caller: str = CALLER) -> None:
        self.twilio = twilio
        self.sid = f"CAkb{next(self._numbers):030d}"
        self.caller = caller
        self.root: ET.Element | None = None
        self.body = ""

    def _read(self, response: Any) -> list[str]:
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/xml"
        self.body = response.get_data(as_text=True)
        self.root = ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML
        assert self.root.tag == "Response"
        heard = [el.text or "" for el in self.root.iter("Say")]
        assert not any(BUSY in text for text in heard), "the app answered with its fallback"
        return heard

    def call(self) -> list[str]:
        params = {"CallSid": self.sid, "From": self.caller, "To": HOTLINE}
        return self._read(self.twilio.post("/twilio/voice", {**params, "CallStatus": "ringing"}))

    def _next_path(self) -> str:
        assert self.root is not None
        gathers = self.root.findall("Gather")
        assert len(gathers) == 1, f"the call is not waiting for the caller: {self.body}"
        action = gathers[0].attrib["action"]
        assert action.startswith(PUBLIC_BASE_URL + "/")
        return action[len(PUBLIC_BASE_URL) :]

    def press(self, keys: str, headers: dict[str, str] | None = None) -> list[str]:
        params = {"CallSid": self.sid, "Digits": keys}
        return self._read(self.twilio.post(self._next_path(), params, headers=headers))

    def say(self, text: str, headers: dict[str, str] | None = None) -> list[str]:
        params = {"CallSid": self.sid, "SpeechResult": text, "Confidence": "0.92"}
        return self._read(self.twilio.post(self._next_path(), params, headers=headers))

    @property
    def queue(self) -> str | None:
        """The Twilio queue the caller was put in (``info-zh-CN``), if any."""
        assert self.root is not None
        element = self.root.find("Enqueue")
        return None if element is None else element.text

    @property
    def hints(self) -> list[str]:
        assert self.root is not None
        gather = self.root.find("Gather")
        assert gather is not None
        return [h for h in gather.attrib.get("hints", "").split(",") if h]


def pick(call: Phone, listed: list[str], label: str, pages: int = 8) -> list[str]:
    """Choose ``label`` from the keypad list just heard, turning pages ("更多", 9) as a
    caller would; returns what the caller hears after choosing it."""
    for _page in range(pages):
        (menu,) = listed
        found = re.search(f"(?:^|；|：){re.escape(label)}请按(\\d)", menu)
        if found:
            return call.press(found.group(1))
        assert menu.endswith("更多请按9。"), f"{label} is not in the list: {menu}"
        listed = call.press("9")
    raise AssertionError(f"{label} not found in {pages} pages")


@pytest.fixture
def phone(twilio: TwilioSigner) -> Phone:
    """A caller with a phone, the main menu heard."""
    call = Phone(twilio)
    assert call.call() == [ZH["main"]["welcome"], ZH["main"]["menu"]]
    return call


@pytest.fixture
def phone_en(twilio: TwilioSigner) -> Phone:
    """A caller who pressed 9 for English at the main menu."""
    call = Phone(twilio)
    call.call()
    assert call.press("9") == [EN["main"]["menu"]]
    return call


def call_row(services: Services, call: Phone) -> CallRow:
    row = services.calls.get_call("twilio", call.sid)
    assert row is not None
    return row


def events(services: Services, call: Phone, kind: str) -> list[CallEvent]:
    row = call_row(services, call)
    with services.db.sessions() as s:
        return list(
            s.scalars(
                select(CallEvent)
                .where(CallEvent.call_id == row.id, CallEvent.kind == kind)
                .order_by(CallEvent.id)
            )
        )


def outbox(services: Services) -> list[OutboxMessage]:
    with services.db.sessions() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


# ---------------------------------------------------------------- what is said

HUASHAN_ZH = HOSPITALS["huashan"]["summary_zh"] + "咨询电话：零二幺，五五五零，零幺零八。"
HUASHAN_EN = HOSPITALS["huashan"]["summary_en"] + " Phone: 0 2 1, 5 5 5 0, 0 1 0 8."
RUIJIN_CARDIOLOGY_ZH = (
    "上海交通大学医学院附属瑞金医院心内科位于门诊楼2楼。"
    "门诊时间：周一至周五 08:00–17:00，周六 08:00–11:30。"
)
LIN_LAN_ZH = (
    "林兰，副主任医师，上海交通大学医学院附属瑞金医院妇产科。"
    "擅长妊娠保健、子宫肌瘤、妇科炎症。出诊时间：周三上午、周四上午。"
)
ASPIRIN_PRICE_ZH = "参考价格每盒十五元八角（2026年10月1日演示价格），以医院实际价格为准。"
ASPIRIN_PRICE_EN = "Reference price: 15 yuan 80 per box (demo price of 2026-10-01)"
HYPERTENSION = ARTICLES["hypertension-daily"]["versions"][-1]


# ---------------------------------------------------------------- hospitals


def test_hospital_by_voice(phone: Phone) -> None:
    heard = phone.say("华山医院几点开门")
    assert heard == [HUASHAN_ZH, ZH["info"]["after_hospital"]]


def test_hospital_by_keypad(phone: Phone) -> None:
    assert phone.press("1") == [ZH["info"]["menu"]]
    assert phone.press("1") == [ZH["info"]["ask_hospital"]]
    assert phone.say("华山医院") == [HUASHAN_ZH, ZH["info"]["after_hospital"]]
    # again, then on to this hospital's departments
    assert phone.press("1") == [HUASHAN_ZH, ZH["info"]["after_hospital"]]


def test_hospital_in_english(phone_en: Phone) -> None:
    heard = phone_en.say("Huashan Hospital opening hours")
    assert heard == [HUASHAN_EN, EN["info"]["after_hospital"]]


def test_hospital_from_the_keypad_list(phone: Phone) -> None:
    phone.press("1")
    phone.press("1")
    listed = phone.press("1")  # press 1 at the name prompt: the list of hospitals
    assert listed[0].count("请按") == 9  # 8 hospitals, and 9 for more
    assert listed[0].endswith("更多请按9。")
    (said, after) = pick(phone, listed, "华山医院")
    assert said == HUASHAN_ZH
    assert after == ZH["info"]["after_hospital"]


# ---------------------------------------------------------------- departments


def test_department_by_voice(phone: Phone) -> None:
    heard = phone.say("瑞金医院心内科在几楼")
    assert heard == [RUIJIN_CARDIOLOGY_ZH, ZH["info"]["after_department"]]


def test_department_by_keypad(phone: Phone) -> None:
    phone.press("1")
    assert phone.press("2") == [ZH["info"]["ask_department"]]
    assert phone.say("瑞金医院心内科") == [RUIJIN_CARDIOLOGY_ZH, ZH["info"]["after_department"]]


def test_department_said_at_the_information_menu(phone: Phone) -> None:
    # The information menu invites "say the name of a hospital, department or expert".
    assert phone.press("1") == [ZH["info"]["menu"]]
    heard = phone.say("瑞金医院心内科在几楼")
    assert heard == [RUIJIN_CARDIOLOGY_ZH, ZH["info"]["after_department"]]


# "医院" (hospital) is the menu word, not a name: the caller must be asked which hospital,
# not read the one whose short name sounds the same (一院, yi yuan, for 上海市第一人民医院).


def test_saying_hospital_at_the_main_menu_names_no_hospital(phone: Phone) -> None:
    assert phone.say("我想查医院") == [ZH["info"]["menu"]]


def test_saying_hospital_at_the_information_menu_names_no_hospital(phone: Phone) -> None:
    phone.press("1")
    assert phone.say("医院") == [ZH["info"]["ask_hospital"]]


def test_departments_of_the_hospital_just_heard(phone: Phone) -> None:
    phone.say("瑞金医院在哪里")
    heard = pick(phone, phone.press("3"), "心内科")
    assert heard == [RUIJIN_CARDIOLOGY_ZH, ZH["info"]["after_department"]]
    # and on to the experts of that department
    experts = phone.press("3")
    assert "请按1" in experts[0]


# ---------------------------------------------------------------- experts


def test_expert_by_voice(phone: Phone) -> None:
    assert EXPERTS["exp-0001"]["name_zh"] == "林兰"
    heard = phone.say("我想找林兰医生")
    assert heard == [LIN_LAN_ZH, ZH["info"]["after_answer"]]


def test_expert_by_keypad(phone: Phone) -> None:
    phone.press("1")
    assert phone.press("3") == [ZH["info"]["ask_expert"]]
    assert phone.say("林兰") == [LIN_LAN_ZH, ZH["info"]["after_answer"]]


def test_expert_in_english(phone_en: Phone) -> None:
    phone_en.press("1")
    phone_en.press("3")
    (said, after) = phone_en.say("Lin Lan")
    assert said.startswith("Lin Lan, Associate Chief Physician, Obstetrics")
    assert said.endswith("Clinics: Wednesday morning, Thursday morning.")
    assert after == EN["info"]["after_answer"]


# ---------------------------------------------------------------- drugs and prices


def test_drug_price_by_voice(phone: Phone) -> None:
    (said, after) = phone.say("阿斯匹林多少钱")
    assert said.startswith("阿司匹林肠溶片")
    assert said.endswith(ASPIRIN_PRICE_ZH)
    assert "十五元八角" in said
    assert "15.80" not in said
    assert after == ZH["info"]["after_answer"]


def test_drug_price_by_keypad_then_the_spoken_name(phone: Phone) -> None:
    assert phone.press("3") == [ZH["info"]["ask_drug"]]
    (said, after) = phone.say("阿斯匹林")
    assert said.endswith(ASPIRIN_PRICE_ZH)
    assert after == ZH["info"]["after_answer"]


def test_drug_price_in_english(phone_en: Phone) -> None:
    (said, after) = phone_en.say("how much is aspirin")
    assert said.startswith("Aspirin Enteric-coated Tablets")
    assert ASPIRIN_PRICE_EN in said
    assert "15 yuan 80" in said
    assert said.endswith("the hospital's own price applies.")
    assert after == EN["info"]["after_answer"]
    assert phone_en.root is not None
    say = phone_en.root.find("Say")
    assert say is not None
    assert say.attrib["language"].startswith("en")


def test_drug_price_in_english_by_keypad(phone_en: Phone) -> None:
    assert phone_en.press("3") == [EN["info"]["ask_drug"]]
    (said, _after) = phone_en.say("aspirin")
    assert "15 yuan 80" in said


def test_drug_from_the_category_lists(phone: Phone) -> None:
    phone.press("3")
    drugs = pick(phone, phone.press("1"), "抗血小板与抗凝药")
    (said, _after) = pick(phone, drugs, "阿司匹林肠溶片")
    assert said.endswith(ASPIRIN_PRICE_ZH)


# ---------------------------------------------------------------- health topics


def test_health_topic_by_voice_is_read_with_the_disclaimer_and_recorded(
    phone: Phone, services: Services
) -> None:
    (said, after) = phone.say("高血压平时要注意什么")
    assert said == HYPERTENSION["summary_zh"] + DISCLAIMER["zh-CN"]
    assert after == ZH["info"]["after_article"]
    [read] = events(services, phone, "article_read")
    assert read.detail == {"article_id": "hypertension-daily", "version": 2}


def test_health_topic_by_keypad(phone: Phone, services: Services) -> None:
    assert phone.press("4") == [ZH["info"]["ask_topic"]]
    (said, after) = phone.say("高血压")
    assert said.endswith(DISCLAIMER["zh-CN"])
    assert after == ZH["info"]["after_article"]
    assert [e.detail["article_id"] for e in events(services, phone, "article_read")] == [
        "hypertension-daily"
    ]


def test_health_topic_in_english(phone_en: Phone, services: Services) -> None:
    phone_en.press("4")
    (said, after) = phone_en.say("high blood pressure")
    assert said == HYPERTENSION["summary_en"] + " " + DISCLAIMER["en"]
    assert after == EN["info"]["after_article"]
    assert len(events(services, phone_en, "article_read")) == 1
    assert phone_en.press("2") == [EN["info"]["sms_sent"], EN["info"]["after_article"]]
    [sms] = outbox(services)
    assert (sms.template, sms.language) == ("article", "en")
    assert sms.params == {
        "title": "Managing high blood pressure day to day",
        "text": HYPERTENSION["summary_en"],
    }


def test_no_sms_for_a_hidden_caller_id(twilio: TwilioSigner, services: Services) -> None:
    call = Phone(twilio, caller="anonymous")
    call.call()
    call.say("高血压平时要注意什么")
    call.press("2")
    assert outbox(services) == []
    assert call_row(services, call).from_e164 is None


def test_health_topic_from_the_category_list(phone: Phone, services: Services) -> None:
    phone.press("4")
    assert phone.press("1") == [ZH["info"]["topic_categories"]]
    articles = phone.press("1")  # chronic diseases
    (said, _after) = pick(phone, articles, "高血压患者的日常管理")
    assert said.endswith(DISCLAIMER["zh-CN"])
    assert len(events(services, phone, "article_read")) == 1


def test_article_sent_by_sms_on_2(phone: Phone, services: Services) -> None:
    phone.say("高血压平时要注意什么")
    assert outbox(services) == []
    assert phone.press("2") == [ZH["info"]["sms_sent"], ZH["info"]["after_article"]]
    [sms] = outbox(services)
    assert sms.channel == "sms"
    assert sms.template == "article"
    assert sms.to_e164 == CALLER
    assert sms.language == "zh-CN"
    assert sms.status == "pending"
    assert sms.essential is False  # health information respects opt-outs
    assert sms.call_id == call_row(services, phone).id
    # the reviewed text and its title, nothing else (no answer, no results, no placeholders)
    assert sms.params == {"title": "高血压患者的日常管理", "text": HYPERTENSION["summary_zh"]}
    # hearing it again sends nothing more
    assert phone.press("1")[0] == HYPERTENSION["summary_zh"] + DISCLAIMER["zh-CN"]
    assert len(outbox(services)) == 1


def test_replayed_webhook_reads_and_records_an_article_once(
    phone: Phone, services: Services
) -> None:
    token = {"I-Twilio-Idempotency-Token": "kb-article-0000-4000-8000-000000000001"}
    path = phone._next_path()
    first = phone.say("高血压平时要注意什么", headers=token)
    params = {"CallSid": phone.sid, "SpeechResult": "高血压平时要注意什么", "Confidence": "0.9"}
    again = phone._read(phone.twilio.post(path, params, headers=token))
    assert again == first
    assert len(events(services, phone, "article_read")) == 1


# ---------------------------------------------------------------- unsure and not found


def test_unclear_match_offers_choices_and_2_reads_the_second(
    phone: Phone, services: Services, clock: FakeClock
) -> None:
    today = clock.now().astimezone(services.config.timezone).date()
    result = services.knowledge.search("感冒药", types=["drug"], language="zh", today=today)
    assert result.ambiguous, "感冒药 no longer ambiguous in the demo data: pick another query"
    close = [h for h in result.hits if h.score >= 0.6][:3]
    assert len(close) >= 2
    phone.press("3")
    (offered,) = phone.say("感冒药")
    for number, hit in enumerate(close, 1):
        assert f"{hit.name_zh}请按{number}" in offered
    assert [h.name_zh for h in close] == phone.hints[: len(close)]
    (said, after) = phone.press("2")
    assert said.startswith(close[1].name_zh)
    assert "以医院实际价格为准" in said
    assert after == ZH["info"]["after_answer"]


def test_a_bare_surname_offers_experts_to_choose_from(phone: Phone, services: Services) -> None:
    phone.press("1")
    phone.press("3")
    (offered,) = phone.say("王")
    labels = re.findall(r"([^；。]+?)请按(\d)", offered)
    assert [n for _label, n in labels] == ["1", "2", "3"]
    (said, _after) = phone.press("2")
    # The choice names the expert and the hospital ("市六医院王军敏"); the answer reads the
    # expert's own entry.
    name = said.split("，")[0]
    assert labels[1][0].endswith(name)
    assert name != labels[0][0].split("医院")[-1]


def test_choices_offered_can_be_told_apart(phone: Phone) -> None:
    # "心内科" is a department of many hospitals: the caller must hear which is which.
    phone.press("1")
    phone.press("2")
    (offered,) = phone.say("心内科")
    labels = [label for label, _n in re.findall(r"([^；。]+?)请按(\d)", offered)]
    assert len(labels) >= 2, offered
    assert len(set(labels)) == len(labels), f"the caller hears the same choice twice: {offered}"


def test_nothing_found_offers_a_person_in_the_info_queue(phone: Phone, services: Services) -> None:
    phone.press("3")
    assert phone.say("外星人药水") == [ZH["info"]["not_found"], ZH["info"]["offer_person"]]
    assert phone.press("1") == [ZH["system"]["transfer"]]
    assert phone.queue == "info-zh-CN"
    row = call_row(services, phone)
    assert (row.outcome, row.queue, row.priority) == ("enqueued", "info", 0)


def test_words_that_choose_no_option_search_everything(phone: Phone) -> None:
    assert phone.say("今天天气怎么样") == [ZH["info"]["not_found"], ZH["info"]["offer_person"]]
    assert phone.press("1") == [ZH["system"]["transfer"]]
    assert phone.queue == "info-zh-CN"


def test_words_that_choose_no_option_find_what_they_name(phone: Phone) -> None:
    # No menu word in "林兰": the search of everything finds the expert.
    assert phone.say("林兰") == [LIN_LAN_ZH, ZH["info"]["after_answer"]]


def test_nothing_found_in_english(phone_en: Phone) -> None:
    phone_en.press("3")
    heard = phone_en.say("moon rock elixir")
    assert heard == [EN["info"]["not_found"], EN["info"]["offer_person"]]
    phone_en.press("1")
    assert phone_en.queue == "info-en"


# ---------------------------------------------------------------- safety


@pytest.mark.parametrize(("option", "prompt"), [("4", "ask_topic"), ("3", "ask_drug")])
def test_red_flag_at_the_name_prompt_gives_120_advice_and_urgent_queue(
    phone: Phone, services: Services, option: str, prompt: str
) -> None:
    assert phone.press(option) == [ZH["info"][prompt]]
    assert phone.say("我胸口痛") == [ZH["system"]["red_flag"]]
    assert phone.queue == "urgent-zh-CN"
    row = call_row(services, phone)
    assert row.red_flag is True
    assert (row.queue, row.priority) == ("urgent", 100)
    assert events(services, phone, "article_read") == []


EXPIRED = {
    "dengue": ["登革热怎么预防", "登革热"],
    "covid-home-care": ["新冠病毒感染居家护理", "新冠居家护理"],
}


@pytest.mark.parametrize("article_id", sorted(EXPIRED))
def test_an_expired_article_is_never_read(
    twilio: TwilioSigner, services: Services, article_id: str
) -> None:
    versions = ARTICLES[article_id]["versions"]
    texts = [v[k] for v in versions for k in ("summary_zh", "body_zh") if v.get(k)]
    heard: list[str] = []
    for words in EXPIRED[article_id]:
        # by voice at the main menu, and by name at the health-topic prompt
        call = Phone(twilio)
        call.call()
        heard += call.say(words)
        call = Phone(twilio)
        call.call()
        call.press("4")
        heard += call.say(words)
    for said in heard:
        for text in texts:
            assert text[:20] not in said, (article_id, said)
    with services.db.sessions() as s:
        reads = s.scalars(select(CallEvent).where(CallEvent.kind == "article_read")).all()
    assert article_id not in {e.detail["article_id"] for e in reads}


# ---------------------------------------------------------------- text is data, not markup

MARKUP_DRUG = """
drugs:
  - id: test-markup
    generic_zh: "测试<b>&胶囊"
    generic_en: "Test <b>& Capsules"
    aliases: ["测试胶囊", "test capsules"]
    specification: "<1g>&<2g>"
    unit_zh: 盒
    unit_en: box
    price: "12.50"
    currency: CNY
    price_date: "2026-10-01"
    otc: true
"""


def test_knowledge_base_text_is_escaped_in_twiml(
    phone: Phone, services: Services, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "markup.yaml"
    path.write_text(MARKUP_DRUG, encoding="utf-8")
    import_path(services.db, path, clock=clock)
    phone.press("3")
    (said, _after) = phone.say("测试胶囊多少钱")
    assert said.startswith("测试<b>&胶囊，规格<1g>&<2g>。")
    assert "十二元五角" in said
    # the document parsed (Phone does it) and holds the text escaped, never as markup
    assert "测试&lt;b&gt;&amp;胶囊" in phone.body
    assert phone.root is not None
    assert phone.root.find(".//b") is None
    assert all(el.tag in {"Response", "Say", "Gather"} for el in phone.root.iter())
