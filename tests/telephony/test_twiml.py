"""The pure TwiML renderer: provider-neutral instructions in, a TwiML document out.

Every document is parsed with ElementTree; raw strings are only compared to check escaping.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.config import VoiceConfig
from callcenter.ivr import instructions as ins
from callcenter.telephony.twilio.twiml import (
    MAX_HINTS_CHARS,
    RenderContext,
    busy_fallback,
    message_reply,
    queue_name,
    render,
)

GATHER_URL = "https://hotline.example.org/twilio/voice/input?step=7"
QUEUE_URL = "https://hotline.example.org/twilio/voice/queue"
# Deliberately not the shipped defaults, so the test proves the configuration is used.
VOICES = {
    "zh-CN": VoiceConfig(
        say_voice="Polly.Zhiyu-Test", say_language="cmn-CN", gather_language="zh-CN"
    ),
    "en": VoiceConfig(
        say_voice="Polly.Joanna-Test",
        say_language="en-GB",
        gather_language="en-US",
        speech_model="phone_call",
    ),
}
CTX = RenderContext(gather_action=GATHER_URL, enqueue_action=QUEUE_URL, voices=VOICES)
# Control characters are covered by their own test (XML 1.0 cannot carry most of them).
PRINTABLE = st.characters(blacklist_categories=("Cs", "Cc"))
TWIML_VERBS = {"Response", "Say", "Gather", "Enqueue", "Dial", "Hangup", "Pause", "Number"}


def parse(document: str) -> ET.Element:
    root = ET.fromstring(document)  # noqa: S314 - our own TwiML, under test
    assert root.tag == "Response"
    return root


def menu_gather(language: str = "zh-CN", **kw: object) -> ins.Gather:
    fields: dict[str, object] = {
        "prompts": (ins.Say("请选择", language),),
        "language": language,
        "max_digits": 1,
        "hints": ("挂号", "预约"),
        "timeout_s": 6,
    }
    fields.update(kw)
    return ins.Gather(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Say


@pytest.mark.parametrize(
    ("language", "voice", "say_language"),
    [("zh-CN", "Polly.Zhiyu-Test", "cmn-CN"), ("en", "Polly.Joanna-Test", "en-GB")],
    ids=["mandarin", "english"],
)
def test_say_uses_the_configured_voice_and_language(
    language: str, voice: str, say_language: str
) -> None:
    root = parse(render([ins.Say("您好 hello", language)], CTX))
    [say] = list(root)
    assert say.tag == "Say"
    assert say.text == "您好 hello"
    assert say.attrib == {"voice": voice, "language": say_language}


def test_instructions_render_in_order() -> None:
    root = parse(
        render(
            [
                ins.Say("one", "en"),
                ins.Pause(2),
                ins.Say("two", "en"),
                ins.Hangup(),
            ],
            CTX,
        )
    )
    assert [(el.tag, el.text) for el in root] == [
        ("Say", "one"),
        ("Pause", None),
        ("Say", "two"),
        ("Hangup", None),
    ]
    assert root[1].attrib == {"length": "2"}


# ---------------------------------------------------------------- Gather


def test_menu_gather_attributes() -> None:
    root = parse(render([menu_gather()], CTX))
    [gather] = list(root)
    assert gather.tag == "Gather"
    a = gather.attrib
    assert a["input"] == "dtmf speech"
    assert a["numDigits"] == "1"
    assert "finishOnKey" not in a  # one key ends a menu choice by itself
    assert a["actionOnEmptyResult"] == "true"  # silence still reaches us: we re-prompt
    assert a["action"] == GATHER_URL
    assert a["method"] == "POST"
    assert a["timeout"] == "6"
    assert a["language"] == "zh-CN"
    assert a["hints"] == "挂号,预约"
    assert a["speechTimeout"] == "auto"
    assert "speechModel" not in a  # not configured for zh-CN
    [prompt] = list(gather)
    assert (prompt.tag, prompt.text) == ("Say", "请选择")
    assert prompt.attrib["voice"] == "Polly.Zhiyu-Test"


def test_gather_language_is_the_recognition_language_not_the_voice_language() -> None:
    root = parse(render([menu_gather("en", prompts=(ins.Say("Choose", "en"),))], CTX))
    gather = root.find("Gather")
    assert gather is not None
    assert gather.attrib["language"] == "en-US"  # gather_language
    assert gather.attrib["speechModel"] == "phone_call"
    say = gather.find("Say")
    assert say is not None
    assert say.attrib["language"] == "en-GB"  # say_language


def test_collect_gather_has_num_digits_and_finish_on_key() -> None:
    gather_ins = ins.Gather(
        prompts=(ins.Say("请输入就诊号码，以井号键结束", "zh-CN"),),
        language="zh-CN",
        max_digits=8,
        finish_on_key="#",
        timeout_s=10,
    )
    gather = parse(render([gather_ins], CTX)).find("Gather")
    assert gather is not None
    assert gather.attrib["numDigits"] == "8"
    assert gather.attrib["finishOnKey"] == "#"
    assert gather.attrib["timeout"] == "10"
    assert gather.attrib["actionOnEmptyResult"] == "true"
    assert "hints" not in gather.attrib


def test_collect_gather_without_finish_key_disables_it_explicitly() -> None:
    """Twilio's default finishOnKey is '#'; an empty attribute is how it is switched off."""
    gather_ins = ins.Gather(prompts=(), language="zh-CN", max_digits=6, finish_on_key="")
    gather = parse(render([gather_ins], CTX)).find("Gather")
    assert gather is not None
    assert gather.attrib["finishOnKey"] == ""


def test_keypad_only_gather_has_no_speech_attributes() -> None:
    gather = parse(render([menu_gather(speech=False)], CTX)).find("Gather")
    assert gather is not None
    assert gather.attrib["input"] == "dtmf"
    assert "hints" not in gather.attrib
    assert "speechTimeout" not in gather.attrib


def test_hints_are_truncated_at_whole_words_within_twilio_limit() -> None:
    words = tuple(f"关键词{i:03d}" for i in range(200))  # 6 characters each
    gather = parse(render([menu_gather(hints=words)], CTX)).find("Gather")
    assert gather is not None
    hints = gather.attrib["hints"]
    assert len(hints) <= MAX_HINTS_CHARS
    parts = hints.split(",")
    assert parts == list(words[: len(parts)])  # a prefix of whole words, in order
    # As many as fit: one more word would go over the limit.
    assert len(hints) + 1 + len(words[len(parts)]) > MAX_HINTS_CHARS


def test_hints_never_contain_a_comma_inside_a_word() -> None:
    gather = parse(render([menu_gather(hints=("blood, pressure", " ", "挂号"))], CTX)).find(
        "Gather"
    )
    assert gather is not None
    assert gather.attrib["hints"].split(",") == ["blood  pressure", "挂号"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=PRINTABLE, max_size=80), max_size=60))
def test_hints_always_within_limit(words: list[str]) -> None:
    root = parse(render([menu_gather(hints=tuple(words))], CTX))
    gather = root.find("Gather")
    assert gather is not None
    assert len(gather.attrib.get("hints", "")) <= MAX_HINTS_CHARS


# ---------------------------------------------------------------- Enqueue, Dial, Hangup, SMS


@pytest.mark.parametrize(
    ("queue", "language", "expected"),
    [
        ("general", "zh-CN", "general-zh-CN"),
        ("urgent", "zh-CN", "urgent-zh-CN"),
        ("booking", "en", "booking-en"),
    ],
    ids=["general-zh", "urgent-zh", "booking-en"],
)
def test_enqueue_names_queue_per_language(queue: str, language: str, expected: str) -> None:
    root = parse(render([ins.Enqueue(queue=queue, language=language, priority=5)], CTX))
    [enqueue] = list(root)
    assert enqueue.tag == "Enqueue"
    assert enqueue.text == expected == queue_name(queue, language)
    assert enqueue.attrib["action"] == QUEUE_URL
    assert enqueue.attrib["method"] == "POST"


def test_hangup_and_dial() -> None:
    root = parse(render([ins.Dial("+862162345678"), ins.Hangup()], CTX))
    assert [el.tag for el in root] == ["Dial", "Hangup"]
    assert root[0].text == "+862162345678"


def test_send_sms_is_never_rendered() -> None:
    root = parse(
        render(
            [
                ins.Say("好的", "zh-CN"),
                ins.SendSms(template="service_guide", language="zh-CN"),
            ],
            CTX,
        )
    )
    assert [el.tag for el in root] == ["Say"]


def test_empty_instructions_give_an_empty_response() -> None:
    root = parse(render([], CTX))
    assert list(root) == []


# ---------------------------------------------------------------- escaping

HOSTILE_TEXTS = [
    pytest.param("a < b & c > d", id="lt-amp-gt"),
    pytest.param('He said "hi" & left', id="quotes"),
    pytest.param("end of data ]]> still text", id="cdata-end"),
    pytest.param("<speak><break time='3s'/>你好</speak>", id="ssml"),
    pytest.param("<Dial>+8613800138000</Dial>", id="twiml-dial"),
    pytest.param("</Say><Hangup/><Say>", id="close-and-inject"),
    pytest.param("&amp; &#60; &lt;", id="entities"),
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_say_text_is_escaped(text: str) -> None:
    document = render([ins.Say(text, "zh-CN")], CTX)
    root = parse(document)
    assert [el.tag for el in root] == ["Say"]  # no element made from the text
    assert root[0].text == text  # read back exactly
    assert list(root[0]) == []
    if "<" in text:
        assert "&lt;" in document


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_gather_prompt_text_is_escaped(text: str) -> None:
    root = parse(render([menu_gather(prompts=(ins.Say(text, "zh-CN"),))], CTX))
    assert [el.tag for el in root.iter()] == ["Response", "Gather", "Say"]
    say = root.find("Gather/Say")
    assert say is not None
    assert say.text == text


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_hints_and_queue_names_are_escaped(text: str) -> None:
    root = parse(
        render(
            [menu_gather(hints=(text,)), ins.Enqueue(queue=text, language="en")],
            CTX,
        )
    )
    assert [el.tag for el in root.iter()] == ["Response", "Gather", "Say", "Enqueue"]
    enqueue = root.find("Enqueue")
    assert enqueue is not None
    assert enqueue.text == f"{text}-en"


def test_say_text_with_a_control_character_still_renders_well_formed_xml() -> None:
    """Text pasted from a word processor may hold a vertical tab or form feed (legal in a
    double-quoted YAML prompt as "\\v"). XML 1.0 cannot carry them: the document must still
    parse, or Twilio plays its "application error" message instead of the prompt."""
    text = "就诊时请带好身份证。\x0b请提前十五分钟到达。\x0c"
    document = render([ins.Say(text, "zh-CN")], CTX)
    root = parse(document)
    say = root.find("Say")
    assert say is not None
    assert say.text is not None
    assert "就诊时请带好身份证。" in say.text
    assert "请提前十五分钟到达。" in say.text


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=PRINTABLE, max_size=200))
def test_any_printable_text_round_trips(text: str) -> None:
    root = parse(render([ins.Say(text, "en")], CTX))
    assert {el.tag for el in root.iter()} <= TWIML_VERBS
    say = root.find("Say")
    assert say is not None
    assert (say.text or "") == text


# ---------------------------------------------------------------- fallback and SMS replies


def test_busy_fallback_with_a_number_apologises_in_both_languages_then_dials() -> None:
    root = parse(busy_fallback(VOICES, "+862162345678"))
    assert [el.tag for el in root] == ["Say", "Say", "Dial"]
    zh, en, dial = list(root)
    assert zh.attrib == {"voice": "Polly.Zhiyu-Test", "language": "cmn-CN"}
    assert "120" in (zh.text or "")
    assert "人工" in (zh.text or "")
    assert en.attrib == {"voice": "Polly.Joanna-Test", "language": "en-GB"}
    assert "120" in (en.text or "")
    assert dial.text == "+862162345678"


def test_busy_fallback_without_a_number_apologises_and_hangs_up() -> None:
    root = parse(busy_fallback(VOICES, ""))
    assert [el.tag for el in root] == ["Say", "Say", "Say", "Hangup"]
    assert root.find("Dial") is None
    assert "call again later" in (root[2].text or "")


def test_message_reply_with_text() -> None:
    root = parse(message_reply("您好 <b>&"))
    assert [(el.tag, el.text) for el in root] == [("Message", "您好 <b>&")]


def test_message_reply_without_text_is_empty() -> None:
    root = parse(message_reply(None))
    assert list(root) == []
