"""The pure IVR engine, driven event by event over the good test flows and the shipped flows.

No database and no wall clock: ``Engine(load_flows(...), EngineSettings(...))`` and a FakeClock.
Expectations name prompt keys; the text compared is the prompt file's text in the caller's
language, so a test fails if the caller would hear something else.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from callcenter.bootstrap import ACTION_NAMES
from callcenter.clock import FakeClock
from callcenter.ivr.engine import (
    ActionRequest,
    ActionResult,
    CallerHangup,
    Digits,
    Engine,
    EngineError,
    EngineSettings,
    Event,
    NoInput,
    SessionState,
    Speech,
    Start,
    Step,
)
from callcenter.ivr.instructions import Enqueue, Gather, Hangup, Say, SendSms
from callcenter.ivr.loader import load_flows
from callcenter.ivr.model import FlowSet

ROOT = Path(__file__).resolve().parents[2]
SHANGHAI = ZoneInfo("Asia/Shanghai")

GOOD_FLOWS = load_flows(
    ROOT / "tests" / "data" / "flows" / "good", actions={"find_booking", "count_slots"}
)
SHIPPED_FLOWS = load_flows(ROOT / "ivr_flows", actions=ACTION_NAMES)
_IVR = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))["ivr"]

#: The shipped configuration's IVR settings, as bootstrap builds them.
SHIPPED_SETTINGS = EngineSettings(
    default_language=_IVR["default_language"],
    max_retries=_IVR["max_retries"],
    default_queue=_IVR["default_queue"],
    red_flag_queue=_IVR["red_flag_queue"],
    red_flags={lang: tuple(words) for lang, words in _IVR["red_flags"].items()},
    timezone="Asia/Shanghai",
)
GOOD_SETTINGS = EngineSettings(
    max_retries=2,
    gather_timeout_s=5,
    red_flag_queue="urgent",
    red_flags={"zh-CN": ("胸痛", "呼吸困难"), "en": ("chest pain", "can't breathe")},
)
FLOWS: dict[str, FlowSet] = {"good": GOOD_FLOWS, "shipped": SHIPPED_FLOWS}
ENGINES: dict[str, Engine] = {
    "good": Engine(GOOD_FLOWS, GOOD_SETTINGS),
    "shipped": Engine(SHIPPED_FLOWS, SHIPPED_SETTINGS),
}
CALLER = "+8613800138000"


def local_clock(when: str) -> FakeClock:
    """A fake clock at a Shanghai local time ("2026-11-26 09:00")."""
    return FakeClock(datetime.fromisoformat(when).replace(tzinfo=SHANGHAI))


def prompt(flows: str, key: str, language: str) -> str:
    return FLOWS[flows].prompts.get(key, language)


def said(step: Step) -> list[str]:
    """Every text the caller hears in this step, in order (Gather prompts included)."""
    out: list[str] = []
    for ins in step.instructions:
        if isinstance(ins, Say):
            out.append(ins.text)
        elif isinstance(ins, Gather):
            out.extend(p.text for p in ins.prompts)
    return out


def languages(step: Step) -> set[str]:
    out: set[str] = set()
    for ins in step.instructions:
        if isinstance(ins, Say):
            out.add(ins.language)
        elif isinstance(ins, Gather):
            out.add(ins.language)
            out.update(p.language for p in ins.prompts)
    return out


def where(step: Step) -> str:
    return f"{step.state.flow}:{step.state.node}"


class Call:
    """One call driven through an engine; ``send`` applies events and returns the last step."""

    def __init__(
        self,
        flows: str = "good",
        *,
        language: str | None = None,
        clock: FakeClock | None = None,
        engine: Engine | None = None,
        state: SessionState | None = None,
    ) -> None:
        self.engine = engine or ENGINES[flows]
        self.clock = clock or local_clock("2026-11-26 09:00")
        self.steps: list[Step] = []
        if state is None:
            self.steps.append(
                self.engine.start(Start(caller=CALLER, language=language), self.clock)
            )
        self._initial = state

    @property
    def state(self) -> SessionState:
        if self.steps:
            return self.steps[-1].state
        assert self._initial is not None
        return self._initial

    @property
    def last(self) -> Step:
        return self.steps[-1]

    def send(self, *events: Event) -> Step:
        for event in events:
            self.steps.append(self.engine.handle(self.state, event, self.clock))
        return self.steps[-1]


# ---------------------------------------------------------------- the scenario tables

ZH, EN = "zh-CN", "en"
MAIN = "main:main_menu"
MENU = "main.menu"
D, S = Digits, Speech


def desk(queue: str, language: str = ZH) -> Enqueue:
    """A flow's enqueue node."""
    return Enqueue(queue=queue, language=language, priority=0, reason="flow")


def to_person(queue: str, language: str = ZH, reason: str = "caller_request") -> Enqueue:
    return Enqueue(queue=queue, language=language, priority=0, reason=reason)


def urgent(language: str = ZH) -> Enqueue:
    return Enqueue(queue="urgent", language=language, priority=100, reason="red_flag")


#: What the call service feeds back when the knowledge-base search finds nothing.
NOT_FOUND = ActionResult("not_found")


def run(flows: str, start_language: str | None, events: list[Event]) -> Step:
    """The last step of a call driven by ``events``; an :class:`ActionResult` answers the
    action the step before asked for, and what that step said is heard first (as the call
    service plays it)."""
    call = Call(flows, language=start_language)
    step = call.last
    for event in events:
        before = step
        step = call.send(event)
        if isinstance(event, ActionResult) and before.action is not None:
            step = replace(step, instructions=before.instructions + step.instructions)
    return step


def assert_said(step: Step, flows: str, keys: list[str], language: str) -> None:
    assert said(step) == [prompt(flows, key, language) for key in keys]
    assert languages(step) <= {language}


# fmt: off
# Calls that end waiting for the caller again.
# (id, start language, events, prompt keys heard, waits at, language then, retries then)
WAITS = {
    "shipped": [
        ("start", None, [], ["main.welcome", MENU], MAIN, ZH, 0),
        ("start_in_english", EN, [], ["main.welcome", MENU], MAIN, EN, 0),
        ("start_unknown_language_is_chinese", "fr", [], ["main.welcome", MENU], MAIN, ZH, 0),
        ("digit_5_service_menu", None, [D("5")], ["service.menu"], "service:service_menu", ZH, 0),
        ("star_repeats_menu", None, [D("*")], [MENU], MAIN, ZH, 0),
        ("speech_repeat_zh", None, [S("没听清，再说一遍")], [MENU], MAIN, ZH, 0),
        ("speech_repeat_en", EN, [S("say that again")], [MENU], MAIN, EN, 0),
        ("no_input_reprompts", None, [NoInput()], ["system.no_input", MENU], MAIN, ZH, 1),
        ("empty_speech_is_no_input", None, [S(" \t ")], ["system.no_input", MENU], MAIN, ZH, 1),
        ("unused_key_invalid", None, [D("7")], ["system.invalid", MENU], MAIN, ZH, 1),
        ("two_keys_invalid", None, [D("12")], ["system.invalid", MENU], MAIN, ZH, 1),
        ("markup_invalid", None, [D("<Say>1</Say>")], ["system.invalid", MENU], MAIN, ZH, 1),
        ("empty_digits_invalid", None, [D("")], ["system.invalid", MENU], MAIN, ZH, 1),
        # Speech that chooses no option is searched (everything); nothing found offers a person.
        ("speech_not_understood", None, [S("今天天气怎么样"), NOT_FOUND],
         ["info.not_found", "info.offer_person"], "info:offer_person", ZH, 0),
        ("speech_choice_not_offered", None, [S("按7"), NOT_FOUND],
         ["info.not_found", "info.offer_person"], "info:offer_person", ZH, 0),
        # By keypad nothing was said: the search finds nothing and the flow asks.
        ("digit_1_information_menu", None, [D("1"), NOT_FOUND], ["info.menu"], "info:info_menu",
         ZH, 0),
        ("digit_3_goto_node_in_other_flow", None, [D("3"), NOT_FOUND], ["info.ask_drug"],
         "info:ask_drug", ZH, 0),
        ("digit_4_asks_health_topic", None, [D("4"), NOT_FOUND], ["info.ask_topic"],
         "info:ask_topic", ZH, 0),
        ("digit_4_asks_health_topic_en", EN, [D("4"), NOT_FOUND], ["info.ask_topic"],
         "info:ask_topic", EN, 0),
        ("speech_keyword_drug_price", None, [S("药价多少钱"), NOT_FOUND], ["info.ask_drug"],
         "info:ask_drug", ZH, 0),
        ("keypad_info_then_hospital", None, [D("1"), NOT_FOUND, D("1"), NOT_FOUND],
         ["info.ask_hospital"], "info:ask_hospital", ZH, 0),
        ("asked_drug_not_found", None, [D("3"), NOT_FOUND, S("某某药"), NOT_FOUND],
         ["info.not_found", "info.offer_person"], "info:offer_person", ZH, 0),
        ("keys_at_ask_prompt_invalid", None, [D("3"), NOT_FOUND, D("5")],
         ["system.invalid", "info.ask_drug"], "info:ask_drug", ZH, 1),
        ("second_failure_reprompts", None, [D("7"), NoInput()], ["system.no_input", MENU], MAIN,
         ZH, 2),
        ("star_does_not_count_a_retry", None, [D("7"), D("*"), D("*"), D("*"), NoInput()],
         ["system.no_input", MENU], MAIN, ZH, 2),
        ("option_9_english", None, [D("9")], [MENU], MAIN, EN, 0),
        ("option_9_then_8_chinese", None, [D("9"), D("8")], [MENU], MAIN, ZH, 0),
        ("speech_english_while_zh", None, [S("English please")], [MENU], MAIN, EN, 0),
        ("speech_zhongwen_while_en", EN, [S("中文")], [MENU], MAIN, ZH, 0),
        ("service_say_then_menu", None, [D("5"), D("1")], ["service.hours", "service.offer_sms"],
         "service:offer_sms", ZH, 0),
        ("service_goto_main_menu", None, [D("5"), D("9")], [MENU], MAIN, ZH, 0),
        ("service_sms_say_menu", None, [D("5"), D("3"), D("1")],
         ["service.sms_sent", "service.menu"], "service:service_menu", ZH, 0),
    ],
    "good": [
        ("start", None, [], ["main.welcome", MENU], MAIN, ZH, 0),
        ("keyword_choice", None, [S("我想查预约")], ["main.ask_phone"], "main:ask_phone", ZH, 0),
        ("keyword_choice_en", EN, [S("about my booking")], ["main.ask_phone"], "main:ask_phone",
         EN, 0),
        ("goto_other_flow", None, [D("2")], ["routing.menu"], "routing:routing_menu", ZH, 0),
        ("collect_valid_phone", None, [D("1"), D("13800138000")], ["main.ask_pin", "main.pin_hint"],
         "main:ask_pin", ZH, 0),
        ("collect_finish_key_stripped", None, [D("1"), D("13800138000#")],
         ["main.ask_pin", "main.pin_hint"], "main:ask_pin", ZH, 0),
        ("collect_spoken_yao_digits", None, [D("1"), S("幺三八，零零幺三，八零零零")],
         ["main.ask_pin", "main.pin_hint"], "main:ask_pin", ZH, 0),
        ("collect_spoken_en_digits", EN,
         [D("1"), S("one three eight oh oh one three eight zero zero zero")],
         ["main.ask_pin", "main.pin_hint"], "main:ask_pin", EN, 0),
        ("collect_too_short", None, [D("1"), D("1380013800")],
         ["system.invalid", "main.ask_phone"], "main:ask_phone", ZH, 1),
        ("collect_too_long", None, [D("1"), D("138001380001")],
         ["system.invalid", "main.ask_phone"], "main:ask_phone", ZH, 1),
        ("collect_fails_validator", None, [D("1"), D("12345678901")],
         ["system.invalid", "main.ask_phone"], "main:ask_phone", ZH, 1),
        ("collect_star_inside_digits", None, [D("1"), D("1380*138000")],
         ["system.invalid", "main.ask_phone"], "main:ask_phone", ZH, 1),
        ("collect_speech_not_digits", None, [D("1"), S("我不知道")],
         ["system.invalid", "main.ask_phone"], "main:ask_phone", ZH, 1),
        ("collect_no_input", None, [D("1"), NoInput()],
         ["system.no_input", "main.ask_phone"], "main:ask_phone", ZH, 1),
        ("collect_star_repeats", None, [D("1"), D("5"), D("*")], ["main.ask_phone"],
         "main:ask_phone", ZH, 1),
    ],
}

# Calls handed to a person (or to a flow's queue).
# (id, start language, events, prompt keys heard, the Enqueue instruction)
QUEUED = {
    "shipped": [
        ("digit_1_information_desk", None, [D("1"), NOT_FOUND, D("0")], ["system.transfer"],
         to_person("info")),
        ("digit_2_booking_then_0_booking_desk", None, [D("2"), NOT_FOUND, D("0")],
         ["system.transfer"],
         to_person("booking")),
        ("drug_not_found_offers_information_desk", None,
         [D("3"), NOT_FOUND, S("某某药"), NOT_FOUND, D("1")], ["system.transfer"], desk("info")),
        ("digit_4_then_0_information_desk", None, [D("4"), NOT_FOUND, D("0")],
         ["system.transfer"], to_person("info")),
        ("digit_with_spaces_around", None, [D(" 2 "), NOT_FOUND, D("0")], ["system.transfer"],
         to_person("booking")),
        ("speech_keyword_guahao", None, [S("我想挂号"), NOT_FOUND, D("0")], ["system.transfer"],
         to_person("booking")),
        ("speech_homophone_guahao", None, [S("我要挂好"), NOT_FOUND, D("0")], ["system.transfer"],
         to_person("booking")),
        ("speech_full_width_punct", None, [S("　预约，挂号！"), NOT_FOUND, D("0")],
         ["system.transfer"],
         to_person("booking")),
        ("speech_an_2", None, [S("按2"), NOT_FOUND, D("0")], ["system.transfer"],
         to_person("booking")),
        ("speech_di_er_xiang", None, [S("第二项"), NOT_FOUND, D("0")], ["system.transfer"],
         to_person("booking")),
        ("speech_press_two_en", EN, [S("press two"), NOT_FOUND, D("0")], ["system.transfer"],
         to_person("booking", EN)),
        # recognisers usually write "press two" as "press 2"
        ("speech_press_2_numeral_en", EN, [S("Press 2."), NOT_FOUND, D("0")], ["system.transfer"],
         to_person("booking", EN)),
        ("speech_keyword_en", EN, [S("I need an appointment"), NOT_FOUND, D("0")],
         ["system.transfer"],
         to_person("booking", EN)),
        ("english_then_booking", None, [D("9"), D("2"), NOT_FOUND, D("0")], ["system.transfer"],
         to_person("booking", EN)),
        ("zero_reaches_person", None, [D("0")], ["system.transfer"], to_person("general")),
        ("zero_reaches_person_en", EN, [D("0")], ["system.transfer"], to_person("general", EN)),
        ("speech_rengong", None, [S("转人工")], ["system.transfer"], to_person("general")),
        ("speech_agent_en", EN, [S("agent please")], ["system.transfer"],
         to_person("general", EN)),
        ("speech_agent_while_zh", None, [S("agent")], ["system.transfer"], to_person("general")),
        ("zero_in_service_menu", None, [D("5"), D("0")], ["system.transfer"],
         to_person("general")),
        ("third_failure_reaches_person", None, [D("7"), NoInput(), D("#")],
         ["system.transfer_after_retries"], to_person("general", reason="retries_exhausted")),
        ("node_max_retries_1", None, [D("5"), D("1"), NoInput(), NoInput()],
         ["system.transfer_after_retries"], to_person("general", reason="retries_exhausted")),
        ("red_flag_zh_in_sentence", None, [S("我爸爸突然胸口痛，喘不上气")], ["system.red_flag"],
         urgent()),
        ("red_flag_en_in_sentence", EN, [S("My wife has chest pain and feels dizzy")],
         ["system.red_flag"], urgent(EN)),
        ("red_flag_en_words_while_zh", None, [S("he says chest pain")], ["system.red_flag"],
         urgent()),
        ("red_flag_beats_keyword", None, [S("挂号的时候突然胸痛")], ["system.red_flag"], urgent()),
        ("red_flag_ideographic_space", None, [S("胸　痛")], ["system.red_flag"], urgent()),
        ("red_flag_in_submenu", None, [D("5"), D("1"), S("我不想活了")], ["system.red_flag"],
         urgent()),
    ],
    "good": [
        ("zero_uses_flow_queue_after_goto", None, [D("2"), D("0")], ["system.transfer"],
         to_person("routing_desk")),
        ("red_flag_option_key", None, [D("6")], ["system.red_flag"], urgent()),
        ("red_flag_option_keyword", None, [S("是急症")], ["system.red_flag"], urgent()),
        ("red_flag_option_en", EN, [D("6")], ["system.red_flag"], urgent(EN)),
        ("red_flag_at_collect", None, [D("1"), S("我现在呼吸困难")], ["system.red_flag"],
         urgent()),
        ("collect_zero_reaches_person", None, [D("1"), D("0")], ["system.transfer"],
         to_person("front_desk")),
        ("collect_speech_person", None, [D("1"), S("我要人工服务")], ["system.transfer"],
         to_person("front_desk")),
        ("collect_default_retries_2", None, [D("1"), D("5"), D("5"), D("5")],
         ["system.transfer_after_retries"], to_person("front_desk", reason="retries_exhausted")),
        ("collect_node_max_retries_1", None, [D("1"), D("13800138000"), D("12"), D("34")],
         ["system.transfer_after_retries"], to_person("front_desk", reason="retries_exhausted")),
    ],
}


def _rows(table: dict[str, list[tuple[Any, ...]]]) -> list[Any]:
    return [
        pytest.param(flows, *row[1:], id=f"{flows}-{row[0]}")
        for flows, rows in table.items()
        for row in rows
    ]


@pytest.mark.parametrize(
    ("flows", "start_language", "events", "keys", "at", "language", "retries"), _rows(WAITS)
)
def test_call_waits_for_the_caller(
    flows: str,
    start_language: str | None,
    events: list[Event],
    keys: list[str],
    at: str,
    language: str,
    retries: int,
) -> None:
    step = run(flows, start_language, events)
    assert_said(step, flows, keys, language)
    gather = step.instructions[-1]
    assert isinstance(gather, Gather)
    assert gather.language == language
    assert where(step) == at
    assert step.state.language == language
    assert step.state.retries == retries
    assert step.outcome is None
    assert step.action is None
    assert not step.state.ended


@pytest.mark.parametrize(
    ("flows", "start_language", "events", "keys", "enqueue"), _rows(QUEUED)
)
def test_call_is_queued(
    flows: str,
    start_language: str | None,
    events: list[Event],
    keys: list[str],
    enqueue: Enqueue,
) -> None:
    step = run(flows, start_language, events)
    assert_said(step, flows, keys, enqueue.language)
    assert step.instructions[-1] == enqueue
    assert sum(isinstance(i, Enqueue) for i in step.instructions) == 1
    assert step.outcome == "enqueued"
    assert step.state.ended
    assert step.state.node is None


@pytest.mark.parametrize(
    ("start_language", "event"),
    [(None, D("5")), (None, S("再见")), (EN, S("goodbye")), (EN, D("5"))],
    ids=["digit", "speech-zh", "speech-en", "digit-en"],
)
def test_hangup_node_says_goodbye_and_hangs_up(start_language: str | None, event: Event) -> None:
    step = run("good", start_language, [event])
    language = start_language or ZH
    assert step.instructions == (Say(prompt("good", "main.goodbye", language), language), Hangup())
    assert step.outcome == "hangup"
    assert step.state.ended
    assert step.state.node is None


# ---------------------------------------------------------------- gathering


def test_start_gathers_main_menu_with_keypad_and_speech_hints() -> None:
    step = Call("shipped").last
    welcome, gather = step.instructions
    assert welcome == Say(prompt("shipped", "main.welcome", "zh-CN"), "zh-CN")
    assert "120" in welcome.text
    assert isinstance(gather, Gather)
    assert gather.prompts == (Say(prompt("shipped", "main.menu", "zh-CN"), "zh-CN"),)
    assert gather.max_digits == 1
    assert gather.finish_on_key == ""
    assert gather.speech
    assert gather.dtmf
    assert gather.timeout_s == 6
    assert {"挂号", "预约", "药价"} <= set(gather.hints)
    assert "英文" in gather.hints  # the language switch is offered by voice too
    assert "appointment" not in gather.hints  # hints are in the caller's language
    assert step.action is None
    assert step.outcome is None
    assert step.state.caller == CALLER
    assert step.trace[0].kind == "start"


def test_english_menu_hints_are_english() -> None:
    gather = Call("shipped", language="en").last.instructions[-1]
    assert isinstance(gather, Gather)
    assert gather.language == "en"
    assert {"book", "appointment", "english"} <= set(gather.hints)
    assert "挂号" not in gather.hints


def test_menu_and_collect_timeouts_and_collect_gather() -> None:
    call = Call("good")
    menu = call.last.instructions[-1]
    assert isinstance(menu, Gather)
    assert (menu.max_digits, menu.timeout_s) == (1, 8)  # node timeout_s overrides settings
    phone = call.send(Digits("1")).instructions[-1]
    assert isinstance(phone, Gather)
    assert (phone.max_digits, phone.finish_on_key, phone.timeout_s) == (11, "#", 5)
    pin = call.send(Digits("13800138000")).instructions[-1]
    assert isinstance(pin, Gather)
    assert (pin.max_digits, pin.finish_on_key, pin.timeout_s) == (6, "*", 10)
    assert [p.text for p in pin.prompts] == ["请输入6位密码，", "以星号键结束。"]


def test_choice_is_traced_with_key_and_how() -> None:
    call = Call("shipped")
    step = call.send(Digits("2"))
    assert [t.detail for t in step.trace if t.kind == "choice"] == [{"key": "2", "via": "dtmf"}]
    # the booking flow first looks at what was said (nothing, by keypad)
    assert step.action is not None
    assert (step.action.name, step.action.node, dict(step.action.args)) == (
        "booking_find",
        "start",
        {"query": ""},
    )
    step = Call("shipped").send(Speech("我要挂好"))
    assert [t.detail for t in step.trace if t.kind == "choice"] == [
        {"key": "2", "via": "speech", "speech": "我要挂好"}
    ]


@pytest.mark.parametrize(
    ("max_retries", "flows"),
    [(0, "shipped"), (1, "shipped"), (2, "shipped"), (3, "shipped"), (0, "good"), (3, "good")],
    ids=["0-shipped", "1-shipped", "2-shipped", "3-shipped", "0-good", "3-good"],
)
def test_settings_max_retries_reprompts_then_person(max_retries: int, flows: str) -> None:
    base = SHIPPED_SETTINGS if flows == "shipped" else GOOD_SETTINGS
    settings = replace(base, max_retries=max_retries)
    call = Call(flows, engine=Engine(FLOWS[flows], settings))
    queue = "general" if flows == "shipped" else "front_desk"
    for n in range(1, max_retries + 1):
        step = call.send(NoInput())
        assert said(step)[0] == prompt(flows, "system.no_input", "zh-CN")
        assert isinstance(step.instructions[-1], Gather)
        assert step.state.retries == n
    step = call.send(Digits("7"))
    assert said(step) == [prompt(flows, "system.transfer_after_retries", "zh-CN")]
    assert step.instructions[-1] == to_person(queue, reason="retries_exhausted")
    assert any(t.kind == "retries_exhausted" for t in step.trace)


def test_retries_reset_on_a_new_menu() -> None:
    call = Call("shipped")
    call.send(Digits("7"), Digits("7"))
    assert call.state.retries == 2
    step = call.send(Digits("5"))
    assert where(step) == "service:service_menu"
    assert step.state.retries == 0


def test_replay_prompt_asks_the_waiting_question_again() -> None:
    call = Call("good")
    call.send(Digits("1"))
    (gather,) = ENGINES["good"].replay_prompt(call.state)
    assert isinstance(gather, Gather)
    assert [p.text for p in gather.prompts] == [prompt("good", "main.ask_phone", "zh-CN")]


# ---------------------------------------------------------------- language


def test_language_switch_changes_prompts_and_hints_and_back() -> None:
    call = Call("shipped")
    step = call.send(Digits("9"))
    gather = step.instructions[-1]
    assert isinstance(gather, Gather)
    assert gather.language == "en"
    assert gather.prompts[0].text.startswith("For hospitals, departments and doctors, press 1.")
    assert "appointment" in gather.hints
    assert [t.detail for t in step.trace if t.kind == "language"] == [{"to": "en"}]
    step = call.send(Speech("chinese"))
    assert step.state.language == "zh-CN"
    assert said(step) == [prompt("shipped", "main.menu", "zh-CN")]


# ---------------------------------------------------------------- red flags


@pytest.mark.parametrize(
    ("before", "utterance", "phrase"),
    [
        ((), "我妈妈说胸口痛得厉害", "胸口痛"),
        ((Digits("5"),), "他刚才晕倒了", "晕倒"),
        ((Digits("7"), Digits("7")), "I think he is having a stroke right now", "stroke"),
        ((Digits("9"),), "she CAN'T BREATHE", "can't breathe"),
    ],
    ids=["main-menu-zh", "service-menu-zh", "after-two-retries-en", "upper-case-en"],
)
def test_red_flag_speech_goes_to_urgent_queue_first(
    before: tuple[Event, ...], utterance: str, phrase: str
) -> None:
    call = Call("shipped")
    if before:
        call.send(*before)
    language = call.state.language
    step = call.send(Speech(utterance))
    assert said(step) == [prompt("shipped", "system.red_flag", language)]
    assert step.instructions[-1] == urgent(language)
    assert step.state.vars["red_flag"] == phrase
    assert [t.detail for t in step.trace if t.kind == "red_flag"] == [{"phrase": phrase}]


def test_red_flag_menu_option_is_recorded() -> None:
    step = Call("good").send(Digits("6"))
    assert step.state.vars["red_flag"] == "option 6"
    assert step.instructions == (
        Say(prompt("good", "system.red_flag", "zh-CN"), "zh-CN"),
        urgent(),
    )


def test_red_flag_queue_comes_from_settings() -> None:
    settings = replace(GOOD_SETTINGS, red_flag_queue="emergency")
    call = Call("good", engine=Engine(GOOD_FLOWS, settings))
    step = call.send(Speech("chest pain"))
    assert step.instructions[-1] == Enqueue("emergency", "zh-CN", 100, "red_flag")


def test_no_red_flags_configured_means_no_red_flag() -> None:
    call = Call("good", engine=Engine(GOOD_FLOWS, EngineSettings()))
    step = call.send(Speech("胸痛"))
    assert said(step)[0] == prompt("good", "system.invalid", "zh-CN")
    assert step.outcome is None


# ---------------------------------------------------------------- collect


def test_collected_digits_are_stored_and_traced() -> None:
    call = Call("good")
    step = call.send(Digits("1"), Digits("13800138000#"))
    assert step.state.vars == {"phone": "13800138000"}
    (collected,) = [t for t in step.trace if t.kind == "collected"]
    assert collected.node == "main:ask_phone"
    assert collected.detail == {"store": "phone", "value": "13800138000", "via": "dtmf"}


def test_spoken_digits_are_stored_as_ascii() -> None:
    call = Call("good")
    step = call.send(Digits("1"), Speech("幺三八 零零幺三 八零零零"))
    assert step.state.vars["phone"] == "13800138000"
    assert [t.detail["via"] for t in step.trace if t.kind == "collected"] == ["speech"]


def test_sensitive_collect_masks_value_in_trace() -> None:
    call = Call("good")
    call.send(Digits("1"), Digits("13800138000"))
    step = call.send(Digits("246810"))
    (collected,) = [t for t in step.trace if t.kind == "collected"]
    assert collected.detail == {"store": "pin", "value": "******", "via": "dtmf"}
    assert "246810" not in repr(step.trace)
    assert "246810" not in repr(said(step))
    # the action that checks it does get the real value
    assert step.state.vars["sealed"]["pin"] == "246810"
    assert "pin" not in step.state.vars
    assert step.action is not None
    assert step.action.args["pin"] == "246810"


def test_sensitive_collect_invalid_entry_not_traced() -> None:
    call = Call("good")
    call.send(Digits("1"), Digits("13800138000"))
    step = call.send(Digits("24681"))
    assert "24681" not in repr(step.trace)
    assert said(step)[0] == prompt("good", "system.invalid", "zh-CN")


# ---------------------------------------------------------------- branch


def _branch(key: str, vars_: dict[str, Any], language: str, clock: FakeClock) -> Step:
    state = SessionState(flow="routing", node="routing_menu", language=language, vars=vars_)
    return ENGINES["good"].handle(state, Digits(key), clock)


NINE_AM = "2026-11-26 09:00"
BRANCH_CASES = [
    # (id, routing option, vars, language, Shanghai local time or aware datetime, queue)
    ("equals-yes", "1", {"member": "yes"}, "zh-CN", NINE_AM, "matched"),
    ("equals-no", "1", {"member": "no"}, "zh-CN", NINE_AM, "not_matched"),
    ("equals-absent", "1", {}, "zh-CN", NINE_AM, "not_matched"),
    ("in-first", "2", {"district": "01"}, "zh-CN", NINE_AM, "matched"),
    ("in-second", "2", {"district": "02"}, "zh-CN", NINE_AM, "matched"),
    ("in-other", "2", {"district": "03"}, "zh-CN", NINE_AM, "not_matched"),
    ("in-absent", "2", {}, "zh-CN", NINE_AM, "not_matched"),
    ("exists-set", "3", {"phone": "13800138000"}, "zh-CN", NINE_AM, "matched"),
    ("exists-empty", "3", {"phone": ""}, "zh-CN", NINE_AM, "not_matched"),
    ("exists-none", "3", {"phone": None}, "zh-CN", NINE_AM, "not_matched"),
    ("exists-absent", "3", {}, "zh-CN", NINE_AM, "not_matched"),
    ("language-en", "4", {}, "en", NINE_AM, "matched"),
    ("language-zh", "4", {}, "zh-CN", NINE_AM, "not_matched"),
    ("office-start-inclusive", "5", {}, "zh-CN", "2026-11-26 08:00", "matched"),
    ("office-inside", "5", {}, "zh-CN", "2026-11-26 17:29", "matched"),
    ("office-end-exclusive", "5", {}, "zh-CN", "2026-11-26 17:30", "not_matched"),
    ("office-before", "5", {}, "zh-CN", "2026-11-26 07:59", "not_matched"),
    # 10:00 UTC is inside 08:00-17:30 in UTC, but it is 18:00 in Shanghai
    (
        "office-local-not-utc",
        "5",
        {},
        "zh-CN",
        datetime(2026, 11, 26, 10, tzinfo=UTC),
        "not_matched",
    ),
    ("night-late-evening", "6", {}, "zh-CN", "2026-11-26 23:30", "matched"),
    ("night-midnight", "6", {}, "zh-CN", "2026-11-27 00:00", "matched"),
    ("night-early-morning", "6", {}, "zh-CN", "2026-11-27 05:59", "matched"),
    ("night-ends-06", "6", {}, "zh-CN", "2026-11-27 06:00", "not_matched"),
    ("night-before-22", "6", {}, "zh-CN", "2026-11-26 21:59", "not_matched"),
    ("night-noon", "6", {}, "zh-CN", "2026-11-26 12:00", "not_matched"),
    # 15:00 UTC is daytime in UTC, 23:00 in Shanghai
    ("night-local-not-utc", "6", {}, "zh-CN", datetime(2026, 11, 26, 15, tzinfo=UTC), "matched"),
    ("weekend-saturday", "7", {}, "zh-CN", "2026-11-28 10:00", "matched"),
    ("weekend-sunday-late", "7", {}, "zh-CN", "2026-11-29 23:59", "matched"),
    ("weekend-friday", "7", {}, "zh-CN", "2026-11-27 23:59", "not_matched"),
    ("weekend-monday", "7", {}, "zh-CN", "2026-11-30 00:00", "not_matched"),
    # Friday 20:00 UTC is already Saturday 04:00 in Shanghai
    ("weekend-local-not-utc", "7", {}, "zh-CN", datetime(2026, 11, 27, 20, tzinfo=UTC), "matched"),
]


@pytest.mark.parametrize(
    ("key", "vars_", "language", "when", "queue"),
    [c[1:] for c in BRANCH_CASES],
    ids=[c[0] for c in BRANCH_CASES],
)
def test_branch_conditions(
    key: str, vars_: dict[str, Any], language: str, when: str | datetime, queue: str
) -> None:
    clock = FakeClock(when) if isinstance(when, datetime) else local_clock(when)
    step = _branch(key, vars_, language, clock)
    last = step.instructions[-1]
    assert isinstance(last, Enqueue)
    assert last.queue == queue
    assert last.language == language
    assert last.priority == (0 if queue == "matched" else 5)
    if queue == "matched":
        assert said(step) == [prompt("good", "routing.matched", language)]
    else:
        assert said(step) == []


def test_branch_follows_the_clock_as_it_moves() -> None:
    clock = local_clock("2026-11-26 21:00")
    assert _branch("6", {}, "zh-CN", clock).instructions[-1] == Enqueue(
        "not_matched", "zh-CN", 5, "flow"
    )
    clock.advance(hours=2)
    assert _branch("6", {}, "zh-CN", clock).instructions[-1] == Enqueue(
        "matched", "zh-CN", 0, "flow"
    )


# ---------------------------------------------------------------- knowledge-base search

INFO_TYPES = "hospital,department,expert,service"
#: Where main-menu option 1 enters the information flow.
INFO_START = SHIPPED_FLOWS.flows["info"].start
# (id, start language, events, the node that asks, the kb_search arguments)
SEARCHES = [
    ("digit_1_nothing_said", None, [D("1")], INFO_START, {"query": "", "types": INFO_TYPES}),
    ("digit_3_nothing_said", None, [D("3")], "drugs_entry", {"query": "", "types": "drug"}),
    ("digit_4_nothing_said", None, [D("4")], "health_entry", {"query": "", "types": "article"}),
    ("speech_drug_price", None, [S("阿斯匹林多少钱")], "drugs_entry",
     {"query": "阿斯匹林多少钱", "types": "drug"}),
    ("speech_hospital_hours", None, [S("华山医院几点开门")], INFO_START,
     {"query": "华山医院几点开门", "types": INFO_TYPES}),
    ("speech_department", None, [S("瑞金医院心内科在几楼")], INFO_START,
     {"query": "瑞金医院心内科在几楼", "types": INFO_TYPES}),
    ("speech_health_topic", None, [S("糖尿病怎么吃")], "health_entry",
     {"query": "糖尿病怎么吃", "types": "article"}),
    ("speech_drug_price_en", EN, [S("how much is aspirin")], "drugs_entry",
     {"query": "how much is aspirin", "types": "drug"}),
    ("speech_no_option_searches_everything", None, [S("今天天气怎么样")], "search_all",
     {"query": "今天天气怎么样"}),
    ("keypad_after_speech_forgets_the_words", None, [S("瑞金医院"), NOT_FOUND, D("2")],
     "department_entry", {"query": "", "types": "department,hospital"}),
    ("asked_drug_name", None, [D("3"), NOT_FOUND, S("阿司匹林")], "find_drug",
     {"query": "阿司匹林", "types": "drug"}),
    ("asked_topic", None, [D("4"), NOT_FOUND, S("高血压")], "find_topic",
     {"query": "高血压", "types": "article"}),
    ("asked_expert", None, [D("1"), NOT_FOUND, D("3"), NOT_FOUND, S("林兰")], "find_expert",
     {"query": "林兰", "types": "expert"}),
]


@pytest.mark.parametrize(
    ("start_language", "events", "node", "args"),
    [pytest.param(*row[1:], id=row[0]) for row in SEARCHES],
)
def test_information_options_ask_for_a_knowledge_base_search(
    start_language: str | None, events: list[Event], node: str, args: dict[str, str]
) -> None:
    step = run("shipped", start_language, events)
    assert step.action == ActionRequest(name="kb_search", args=args, node=node)
    assert where(step) == f"info:{node}"
    assert step.instructions == ()  # the search is silent; its answer is what is heard
    assert step.outcome is None
    assert not step.state.ended


# Keypad callers pick from lists instead of saying a name.
# (id, events, the node that asks, the kb_browse arguments)
BROWSES = [
    ("hospitals", [D("1"), NOT_FOUND, D("1"), NOT_FOUND, D("1")], "browse_hospitals",
     {"type": "hospital"}),
    ("drug_categories", [D("3"), NOT_FOUND, D("1")], "browse_drug_categories",
     {"type": "drug_category"}),
    ("chronic_topics", [D("4"), NOT_FOUND, D("1"), D("1")], "topics_chronic",
     {"type": "article", "parent": "chronic"}),
    ("topics_by_voice", [D("4"), NOT_FOUND, D("1"), S("传染病")], "topics_infectious",
     {"type": "article", "parent": "infectious"}),
]


@pytest.mark.parametrize(
    ("events", "node", "args"), [pytest.param(*row[1:], id=row[0]) for row in BROWSES]
)
def test_keypad_lists_ask_for_a_knowledge_base_list(
    events: list[Event], node: str, args: dict[str, str]
) -> None:
    step = run("shipped", None, events)
    assert step.action == ActionRequest(name="kb_browse", args=args, node=node)
    assert where(step) == f"info:{node}"


ASPIRIN = {
    "answer": "阿司匹林肠溶片，处方药，请遵医嘱。参考价格每盒十五元八角，以医院实际价格为准。",
    "title": "阿司匹林肠溶片",
    "ref": "drug:aspirin-ec",
}
ARTICLE = {
    "answer": "高血压要遵医嘱长期服药。以上为一般健康知识，不能代替医生诊断。",
    "title": "高血压患者的日常管理",
    "ref": "article:hypertension-daily",
    "sms": "高血压要遵医嘱长期服药。",
}
CHOICES: dict[str, Any] = {
    "choices": ["王一", "王二", "王三"],
    "refs": "expert:e1,expert:e2,expert:e3",
    "menu": "王一请按1；王二请按2；王三请按3",
}


def test_found_answer_is_read_then_offers_again_more_or_main_menu() -> None:
    call = Call("shipped")
    call.send(S("阿斯匹林多少钱"))
    step = call.send(ActionResult("found", ASPIRIN))
    assert said(step) == [ASPIRIN["answer"], prompt("shipped", "info.after_answer", ZH)]
    assert where(step) == "info:after_answer"
    assert step.state.vars["found"] == ASPIRIN
    step = call.send(D("1"))
    assert said(step) == [ASPIRIN["answer"], prompt("shipped", "info.after_answer", ZH)]
    step = call.send(D("2"))
    assert said(step) == [prompt("shipped", "info.menu", ZH)]
    assert where(step) == "info:info_menu"


def test_found_article_is_read_and_sent_by_sms_on_2() -> None:
    call = Call("shipped")
    call.send(S("高血压要注意什么"))
    step = call.send(ActionResult("found_article", ARTICLE))
    assert said(step) == [ARTICLE["answer"], prompt("shipped", "info.after_article", ZH)]
    assert where(step) == "info:after_article"
    step = call.send(D("2"))
    sms = [i for i in step.instructions if isinstance(i, SendSms)]
    assert sms == [
        SendSms(
            template="article",
            language=ZH,
            params={"title": ARTICLE["title"], "text": ARTICLE["sms"]},
            essential=False,
        )
    ]
    assert said(step) == [
        prompt("shipped", "info.sms_sent", ZH),
        prompt("shipped", "info.after_article", ZH),
    ]
    assert where(step) == "info:after_article"
    step = call.send(D("3"))
    assert said(step) == [prompt("shipped", "info.ask_topic", ZH)]


def test_close_matches_are_offered_and_the_pick_is_answered() -> None:
    call = Call("shipped")
    call.send(D("1"), NOT_FOUND, D("3"), NOT_FOUND, S("王"))
    step = call.send(ActionResult("choose", CHOICES))
    heard = prompt("shipped", "info.choose", ZH).replace("{found[menu]}", CHOICES["menu"])
    assert said(step) == [heard]
    assert "王一请按1；王二请按2；王三请按3" in heard
    gather = step.instructions[-1]
    assert isinstance(gather, Gather)
    assert gather.hints == ("王一", "王二", "王三")
    assert where(step) == "info:pick"
    step = call.send(D("2"))
    assert step.action == ActionRequest(
        name="kb_answer", args={"refs": CHOICES["refs"], "pick": "2"}, node="answer_pick"
    )
    step = call.send(ActionResult("found", {"answer": "王二，主任医师。"}))
    assert said(step) == ["王二，主任医师。", prompt("shipped", "info.after_answer", ZH)]


@pytest.mark.parametrize(
    ("event", "pick"),
    [(S("王三"), "3"), (S("第一个"), "1"), (D("2"), "2")],
    ids=["label", "ordinal", "key"],
)
def test_a_choice_is_picked_by_name_number_or_key(event: Event, pick: str) -> None:
    call = Call("shipped")
    call.send(S("今天天气怎么样"), ActionResult("choose", CHOICES))
    step = call.send(event)
    assert step.action is not None
    assert step.action.args["pick"] == pick


def test_a_choice_not_offered_asks_again() -> None:
    call = Call("shipped")
    call.send(S("今天天气怎么样"), ActionResult("choose", CHOICES))
    step = call.send(D("4"))
    assert said(step)[0] == prompt("shipped", "system.invalid", ZH)
    assert where(step) == "info:pick"
    assert step.state.retries == 1


def test_failed_search_reaches_the_information_desk() -> None:
    call = Call("shipped")
    call.send(S("阿斯匹林多少钱"))
    step = call.send(ActionResult("error"))
    assert said(step) == [prompt("shipped", "system.action_failed", ZH)]
    assert step.instructions[-1] == to_person("info", reason="action_error")


# ---------------------------------------------------------------- action, sms, hangup


def _at_lookup(language: str | None = None) -> Call:
    call = Call("good", language=language)
    call.send(Digits("1"), Digits("13800138000"), Digits("246810"))
    return call


def test_action_request_has_args_from_vars_and_waits() -> None:
    call = _at_lookup()
    step = call.last
    assert step.action == ActionRequest(
        name="find_booking", args={"phone": "13800138000", "pin": "246810"}, node="lookup"
    )
    assert step.instructions == (Say(prompt("good", "main.looking_up", "zh-CN"), "zh-CN"),)
    assert step.outcome is None
    assert where(step) == "main:lookup"
    assert not step.state.ended


def test_action_result_found_reads_stores_texts_and_hangs_up() -> None:
    call = _at_lookup()
    data = {"date": "12月1日上午", "doctor": "王医生"}
    step = call.send(ActionResult("found", data))
    assert step.state.vars["booking"] == data
    assert step.instructions == (
        Say("您的预约是12月1日上午，王医生。", "zh-CN"),
        Say(prompt("good", "main.sms_sent", "zh-CN"), "zh-CN"),
        SendSms(
            template="booking",
            language="zh-CN",
            params={"date": "12月1日上午", "doctor": "王医生"},
            essential=True,
        ),
        Say(prompt("good", "main.goodbye", "zh-CN"), "zh-CN"),
        Hangup(),
    )
    assert step.outcome == "hangup"
    assert step.state.ended
    assert step.state.node is None
    assert [t.detail for t in step.trace if t.kind == "action"] == [
        {"action": "find_booking", "outcome": "found"}
    ]
    assert [t.detail for t in step.trace if t.kind == "sms"] == [{"template": "booking"}]


def test_action_result_in_english_fills_english_prompt_and_sms_language() -> None:
    call = _at_lookup("en")
    step = call.send(ActionResult("found", {"date": "1 December", "doctor": "Dr Wang"}))
    assert said(step)[0] == "Your booking is on 1 December with Dr Wang."
    sms = [i for i in step.instructions if isinstance(i, SendSms)]
    assert [(s.template, s.language) for s in sms] == [("booking", "en")]


def test_missing_field_in_action_data_is_never_spoken_as_placeholder_code() -> None:
    # The booking service answered without the doctor's name: the caller must still hear
    # the date, and never "{booking[doctor]}" read aloud or texted.
    call = _at_lookup()
    step = call.send(ActionResult("found", {"date": "12月1日上午"}))
    spoken = said(step)[0]
    assert "12月1日上午" in spoken
    assert "{" not in spoken
    (sms,) = [i for i in step.instructions if isinstance(i, SendSms)]
    assert sms.params["date"] == "12月1日上午"
    assert "{" not in sms.params["doctor"]


def test_action_result_outcome_picks_next_node() -> None:
    call = _at_lookup()
    step = call.send(ActionResult("not_found"))
    assert said(step) == [
        prompt("good", "main.not_found", "zh-CN"),
        prompt("good", "main.menu", "zh-CN"),
    ]
    assert where(step) == "main:main_menu"
    assert step.state.vars["booking"] == {}


def test_unknown_action_outcome_without_default_reaches_person() -> None:
    call = _at_lookup()
    step = call.send(ActionResult("timeout"))
    assert said(step) == [prompt("good", "system.action_failed", "zh-CN")]
    assert step.instructions[-1] == to_person("front_desk", reason="action_timeout")
    assert step.outcome == "enqueued"


@pytest.mark.parametrize(
    ("outcome", "data", "expected"),
    [
        ("ok", {"count": 7}, "心内科还有7个号。"),
        ("busy", {}, "暂时无法查询号源。"),
        ("error", {"count": 7}, "暂时无法查询号源。"),
    ],
    ids=["known-outcome-uses-data", "unknown-goes-to-default", "error-goes-to-default"],
)
def test_action_with_default_outcome(outcome: str, data: dict[str, Any], expected: str) -> None:
    state = SessionState(
        flow="main", node="main_menu", language="zh-CN", vars={"department": "心内科"}
    )
    call = Call("good", state=state)
    step = call.send(Digits("3"))
    assert step.action == ActionRequest(
        name="count_slots", args={"department": "心内科", "language": "zh-CN"}, node="count_slots"
    )
    step = call.send(ActionResult(outcome, data))
    assert said(step) == [expected, prompt("good", "routing.menu", "zh-CN")]
    assert where(step) == "routing:routing_menu"
    assert step.state.vars["slots"] == data


def test_caller_input_while_action_runs_is_an_engine_error() -> None:
    call = _at_lookup()
    with pytest.raises(EngineError):
        call.send(Digits("1"))


def test_action_result_when_no_action_is_waiting_is_an_engine_error() -> None:
    call = Call("good")
    with pytest.raises(EngineError):
        call.send(ActionResult("found"))


def test_shipped_sms_node_emits_send_sms() -> None:
    call = Call("shipped")
    step = call.send(Digits("5"), Digits("2"), Digits("1"))
    sms = [i for i in step.instructions if isinstance(i, SendSms)]
    assert sms == [SendSms(template="service_guide", language="zh-CN", params={}, essential=False)]


# ---------------------------------------------------------------- ending and state


def test_hangup_ends_and_further_events_are_engine_errors() -> None:
    call = Call("good")
    step = call.send(Digits("5"))
    assert step.instructions == (Say(prompt("good", "main.goodbye", "zh-CN"), "zh-CN"), Hangup())
    assert step.state.ended
    assert step.state.node is None
    for event in (Digits("1"), NoInput(), Speech("人工"), ActionResult("ok")):
        with pytest.raises(EngineError):
            ENGINES["good"].handle(step.state, event, call.clock)


def test_handle_after_enqueue_is_an_engine_error() -> None:
    call = Call("shipped")
    call.send(Digits("0"))
    with pytest.raises(EngineError, match="already ended"):
        call.send(Digits("1"))


def test_start_event_mid_call_is_an_engine_error() -> None:
    call = Call("shipped")
    with pytest.raises(EngineError):
        call.send(Start())


@pytest.mark.parametrize(
    "before",
    [(), (Digits("1"),), (Digits("1"), Digits("13800138000"), Digits("246810"))],
    ids=["at-menu", "at-collect", "at-action"],
)
def test_caller_hangup_ends_the_session(before: tuple[Event, ...]) -> None:
    call = Call("good")
    if before:
        call.send(*before)
    step = call.send(CallerHangup())
    assert step.outcome == "caller_hangup"
    assert step.instructions == ()
    assert step.state.ended
    assert step.state.node is None
    assert [t.kind for t in step.trace] == ["caller_hangup"]


def test_session_state_round_trips_through_json() -> None:
    call = Call("good", language="en")
    call.send(Digits("1"), Digits("13800138000"), Digits("12"))
    state = call.state
    assert (state.node, state.retries, state.vars) == ("ask_pin", 1, {"phone": "13800138000"})
    data = json.loads(json.dumps(state.to_data(), ensure_ascii=False))
    restored = SessionState.from_data(data)
    assert restored == state
    assert restored.caller == CALLER
    assert restored.history[-1] == "main:ask_pin"
    # a call continued from the stored state behaves exactly like the original
    clock = call.clock
    assert ENGINES["good"].handle(restored, Digits("246810"), clock) == ENGINES["good"].handle(
        state, Digits("246810"), clock
    )


def test_history_records_nodes_visited() -> None:
    call = Call("shipped")
    step = call.send(Digits("5"), Digits("1"))
    assert step.state.history == (
        "main:welcome",
        "main:main_menu",
        "main:to_service",
        "service:service_menu",
        "service:hours",
        "service:offer_sms",
    )
