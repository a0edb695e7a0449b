"""Every SMS template renders in both languages, and its worst case fits its segment budget.

Worst-case params are the longest real values: the longest hospital, department and doctor
names in the demo knowledge base, an 8-digit visit number and password, a long date, and for
``article`` the longest article summary (what ``kb_search`` offers to text).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.messaging import segments
from callcenter.messaging.templates import TemplateError, Templates

FLOWS = Path(__file__).resolve().parents[2] / "ivr_flows"
LANGUAGES = ("zh-CN", "en")

WORST = {
    "zh-CN": {
        "hospital": "同济大学附属皮肤病医院（上海市皮肤病医院）",
        "department": "质子重离子放疗科",
        "doctor": "主任医师 欧阳明华",
        "when": "2026年12月31日（星期四）上午08:30-09:00",
        "visit_number": "12345678",
        "password": "73915604",
        "cancel_by": "12月30日16:00",
        "title": "高血压患者的日常管理",
        "text": "高血压要遵医嘱长期服药，不要自行停药；少盐、控制体重、多运动、戒烟限酒，"
        "每天在家测血压并记录；出现剧烈头痛、胸痛请立即拨打120。",
    },
    "en": {
        "hospital": "Shanghai Ninth People's Hospital, Shanghai Jiao Tong University School "
        "of Medicine",
        "department": "TCM Digestive (Spleen-Stomach) Diseases",
        "doctor": "Chief Physician Zheng Hongxiang",
        "when": "Thu 31 Dec 2026, 08:30-09:00",
        "visit_number": "12345678",
        "password": "73915604",
        "cancel_by": "16:00 on 30 Dec",
        "title": "Storing medicines at home and disposing of expired ones",
        "text": "Get a flu vaccine every autumn, wash hands and wear masks; if ill rest at home, "
        "drink fluids, use antivirals only as prescribed, and seek urgent care for breathing "
        "difficulty or persistent high fever.",
    },
}

#: (language, template) -> (encoding, parts) with the worst-case params above. Chinese
#: messages are UCS-2 (67 characters a part); English ones stay GSM-7 (153 a part).
#: ``article`` carries an article summary and may take 3 parts; the English service guide is
#: 166 characters, just over one part.
EXPECTED = {
    ("zh-CN", "service_guide"): ("UCS-2", 1),
    ("zh-CN", "article"): ("UCS-2", 2),
    ("zh-CN", "booking_confirmed"): ("UCS-2", 3),
    ("zh-CN", "booking_password"): ("UCS-2", 2),
    ("zh-CN", "booking_cancelled"): ("UCS-2", 2),
    ("zh-CN", "clinic_cancelled"): ("UCS-2", 2),
    ("zh-CN", "booking_reminder"): ("UCS-2", 2),
    ("zh-CN", "booking_reminder_late"): ("UCS-2", 2),
    ("zh-CN", "results_ready"): ("UCS-2", 2),
    ("en", "service_guide"): ("GSM-7", 1),
    ("en", "article"): ("GSM-7", 3),
    ("en", "booking_confirmed"): ("GSM-7", 3),
    ("en", "booking_password"): ("GSM-7", 2),
    ("en", "booking_cancelled"): ("GSM-7", 2),
    ("en", "clinic_cancelled"): ("GSM-7", 3),
    ("en", "booking_reminder"): ("GSM-7", 2),
    ("en", "booking_reminder_late"): ("GSM-7", 2),
    ("en", "results_ready"): ("GSM-7", 2),
}
#: Templates added later (not in the table yet) must still fit in this many parts.
DEFAULT_MAX_PARTS = 3

templates = Templates(FLOWS)
ALL = sorted({(lang, name) for lang in LANGUAGES for name in templates.names(lang)})


def test_both_languages_have_the_same_templates_and_placeholders() -> None:
    zh, en = (set(templates.names(lang)) for lang in LANGUAGES)
    assert zh == en
    for name in zh:
        assert set(templates.fields(name, "zh-CN")) == set(templates.fields(name, "en")), name


@pytest.mark.parametrize(("language", "name"), ALL)
def test_every_template_renders_within_its_budget(language: str, name: str) -> None:
    fields = templates.fields(name, language)
    missing = [f for f in fields if f not in WORST[language]]
    assert not missing, f"add a worst-case value for {missing} (sms.{name}) to WORST"
    body = templates.render(name, language, WORST[language])
    assert "{" not in body
    assert "}" not in body
    enc, parts = segments.encoding(body), segments.count(body)
    expected = EXPECTED.get((language, name))
    if expected is None:
        assert parts <= DEFAULT_MAX_PARTS, f"sms.{name} ({language}) takes {parts} parts"
    else:
        assert (enc, parts) == expected
    if language == "zh-CN":
        assert body.startswith("【健康热线】")
    if name.startswith("booking_confirmed"):
        assert parts <= 3


def test_values_are_inserted_as_text_not_formatted() -> None:
    params = dict(WORST["zh-CN"], hospital="{password}", doctor="{0}")
    body = templates.render("booking_confirmed", "zh-CN", params)
    assert "{password}" in body
    assert "{0}" in body


@pytest.mark.parametrize(
    ("name", "language", "params", "message"),
    [
        ("nope", "zh-CN", {}, "unknown SMS template sms.nope (zh-CN)"),
        ("article", "zh-CN", {"title": "x"}, "sms.article (zh-CN) needs a value for {text}"),
        ("article", "zh-CN", {"title": "x", "text": None}, "needs a value for {text}"),
        ("article", "fr", {}, "no prompt file for language 'fr'"),
    ],
)
def test_errors_are_clear(name: str, language: str, params: dict, message: str) -> None:
    with pytest.raises(
        TemplateError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("{", r"\{")
        .replace("}", r"\}"),
    ):
        templates.render(name, language, params)


def test_a_prompt_file_without_sms_section(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "en.yaml").write_text("prompts: {}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="no sms: section"):
        Templates(tmp_path).render("article", "en", {})
