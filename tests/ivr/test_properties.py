"""Property tests (hypothesis) where input is wide: whatever a caller presses or says, the engine
answers sensibly and never echoes it; whatever a flow file holds, the loader answers with a
FlowSet or a FlowError, nothing else."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from callcenter.bootstrap import ACTION_NAMES
from callcenter.clock import FakeClock
from callcenter.ivr.engine import (
    ActionResult,
    Digits,
    Engine,
    EngineSettings,
    Event,
    NoInput,
    SessionState,
    Speech,
    Start,
    Step,
)
from callcenter.ivr.instructions import Enqueue, Gather, Say
from callcenter.ivr.loader import FlowError, load_flows
from callcenter.ivr.model import AskNode, ChooseNode, CollectNode, FlowSet, MenuNode
from callcenter.ivr.validators import VALIDATORS

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "tests" / "data" / "flows" / "good"
SHIPPED_FLOWS = load_flows(ROOT / "ivr_flows", actions=ACTION_NAMES)
_IVR = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))["ivr"]
SETTINGS = EngineSettings(
    max_retries=_IVR["max_retries"],
    red_flag_queue=_IVR["red_flag_queue"],
    red_flags={lang: tuple(words) for lang, words in _IVR["red_flags"].items()},
)
ENGINE = Engine(SHIPPED_FLOWS, SETTINGS)
GOOD_FLOWS = load_flows(GOOD, actions={"find_booking", "count_slots"})
GOOD_ENGINE = Engine(GOOD_FLOWS, SETTINGS)
CLOCK = FakeClock(datetime(2026, 11, 26, 1, 0, tzinfo=UTC))
MAIN_MENU = ENGINE.start(Start(caller="+8613800138000"), CLOCK).state
QUEUES = {"general", "info", "health", "booking", "urgent"}
#: Every text the flows can speak, in every language: input may only appear inside these.
FIXED_TEXTS = [text for by_key in SHIPPED_FLOWS.prompts.texts.values() for text in by_key.values()]
PROPS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def said(step: Step) -> list[str]:
    out: list[str] = []
    for ins in step.instructions:
        if isinstance(ins, Say):
            out.append(ins.text)
        elif isinstance(ins, Gather):
            out.extend(p.text for p in ins.prompts)
    return out


def _limit(flows: FlowSet, state: SessionState) -> int:
    node = flows.flows[state.flow].nodes[state.node or ""]
    assert isinstance(node, (MenuNode, AskNode, ChooseNode, CollectNode))
    return node.max_retries if node.max_retries is not None else SETTINGS.max_retries


def handle(state: SessionState, event: Event) -> Step:
    """One caller event, as the call service plays it: a service action the step asks for
    (the knowledge-base search behind the information options) is answered ``not_found``
    (and the check that opens the results flow, ``inbound``: this is a call that came in)
    and the engine goes on; what every step said is heard in order."""
    step = ENGINE.handle(state, event, CLOCK)
    instructions = list(step.instructions)
    trace = list(step.trace)
    for _ in range(10):
        if step.action is None:
            break
        answer = "inbound" if step.action.name == "outbound_context" else "not_found"
        step = ENGINE.handle(step.state, ActionResult(answer), CLOCK)
        instructions.extend(step.instructions)
        trace.extend(step.trace)
    assert step.action is None, "a step kept asking for actions"
    return Step(step.state, tuple(instructions), None, step.outcome, tuple(trace))


def check_answer(before: SessionState, step: Step, raw: str) -> None:
    """The step re-prompts, moves on to another question, or hands over to a person."""
    last = step.instructions[-1]
    assert isinstance(last, (Gather, Enqueue)), step.instructions
    if isinstance(last, Gather):
        assert step.outcome is None
        assert not step.state.ended
        assert step.action is None
        assert step.state.retries <= _limit(SHIPPED_FLOWS, step.state)
        if step.state.flow == before.flow and step.state.node == before.node:
            # a re-prompt (retries + 1) or a repeat / language switch (retries unchanged / 0)
            assert step.state.retries in (before.retries, before.retries + 1, 0)
    else:
        assert step.outcome == "enqueued"
        assert step.state.ended
        assert last.queue in QUEUES
        assert last.language in ("zh-CN", "en")
        assert last.priority in (0, 100)
    for text in said(step):
        if raw and raw in text:
            assert any(raw in fixed for fixed in FIXED_TEXTS), (raw, text)


MARKUP = st.sampled_from(
    [
        "<Say>1</Say>",
        "</Gather><Dial>+8613800138000</Dial>",
        "1<script>alert(1)</script>",
        "{language}",
        "{0}",
        "%s%s",
        "1\n2",
        "\x00",
        "1" * 41,
        "*" * 40,
        "#",
        "０",
        "١",
    ]
)
LONG = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=4), st.integers(200, 3000))
KEYPAD = st.text(alphabet="0123456789*# ", max_size=45)
ANY_DIGITS = st.one_of(st.text(), KEYPAD, MARKUP, LONG)

WORDS = st.sampled_from(
    [
        "挂号",
        "挂好",
        "预约",
        "药价",
        "人工",
        "转人工",
        "agent",
        "english",
        "中文",
        "按2",
        "第二项",
        "press two",
        "胸痛",
        "chest pain",
        "重复",
        "repeat",
        "天气",
        "幺三八",
        "嗯",
        "，",
        " ",
    ]
)
SENTENCE = st.lists(st.one_of(WORDS, st.text(max_size=6)), max_size=6).map("".join)
ANY_SPEECH = st.one_of(st.text(), SENTENCE, MARKUP, LONG)


@PROPS
@given(value=ANY_DIGITS)
def test_any_digits_at_main_menu(value: str) -> None:
    step = handle(MAIN_MENU, Digits(value))
    check_answer(MAIN_MENU, step, value)


@PROPS
@given(text=ANY_SPEECH, confidence=st.one_of(st.none(), st.floats(0, 1)))
def test_any_speech_at_main_menu(text: str, confidence: float | None) -> None:
    step = handle(MAIN_MENU, Speech(text, confidence))
    check_answer(MAIN_MENU, step, text)


EVENTS = st.one_of(
    ANY_DIGITS.map(Digits),
    ANY_SPEECH.map(Speech),
    st.just(NoInput()),
    st.sampled_from(["7", "*", "12", ""]).map(Digits),
)


@PROPS
@given(events=st.lists(EVENTS, min_size=1, max_size=12))
def test_retries_stay_within_limit_whatever_the_caller_does(events: list[Event]) -> None:
    state = MAIN_MENU
    for event in events:
        if state.ended:
            break
        step = handle(state, event)
        check_answer(state, step, getattr(event, "value", getattr(event, "text", "")))
        assert step.state.retries <= SETTINGS.max_retries + 1
        exhausted = [i for i in step.instructions if isinstance(i, Enqueue)]
        if exhausted and exhausted[0].reason == "retries_exhausted":
            assert state.retries == _limit(SHIPPED_FLOWS, state)
        state = step.state


def _at_collect() -> SessionState:
    return GOOD_ENGINE.handle(GOOD_ENGINE.start(Start(), CLOCK).state, Digits("1"), CLOCK).state


AT_PHONE = _at_collect()
AT_PIN = GOOD_ENGINE.handle(AT_PHONE, Digits("13800138000"), CLOCK).state


COLLECT_INPUT = st.one_of(
    ANY_DIGITS.map(Digits),
    ANY_SPEECH.map(Speech),
    st.text(alphabet="0123456789幺两一二三四五六七八九零 ", max_size=14).map(Speech),
    # digits of other scripts (Arabic-Indic, Devanagari, ...), as a recogniser might write them
    st.sampled_from([6, 11])
    .flatmap(
        lambda n: st.text(
            alphabet=st.characters(categories=["Nd"], min_codepoint=0x80), min_size=n, max_size=n
        )
    )
    .map(Speech),
)


@PROPS
@given(event=COLLECT_INPUT)
def test_collect_stores_only_valid_ascii_digits(event: Event) -> None:
    for state, store, length in ((AT_PHONE, "phone", 11), (AT_PIN, "pin", 6)):
        step = GOOD_ENGINE.handle(state, event, CLOCK)
        # the PIN is sensitive: kept under ``sealed``, never beside the other answers
        found = step.state.vars.get("sealed", {}) if store == "pin" else step.state.vars
        stored = found.get(store)
        if stored is None:
            assert isinstance(step.instructions[-1], (Gather, Enqueue))
            continue
        assert stored.isascii(), repr(stored)
        assert stored.isdigit(), repr(stored)
        assert len(stored) == length
        if store == "phone":
            assert VALIDATORS["cn_mobile"](stored)
        assert step.state.node != state.node


# ---------------------------------------------------------------- flow files

NODE_TYPES = ["say", "menu", "collect", "branch", "action", "enqueue", "sms", "hangup", "goto"]
FIELDS = [
    "type",
    "prompt",
    "next",
    "options",
    "store",
    "min_digits",
    "max_digits",
    "finish_on_key",
    "validate",
    "sensitive",
    "max_retries",
    "timeout_s",
    "cases",
    "otherwise",
    "action",
    "args",
    "outcomes",
    "queue",
    "priority",
    "template",
    "params",
    "essential",
    "flow",
    "node",
    "when",
    "var",
    "equals",
    "in",
    "exists",
    "language",
    "time_between",
    "weekday_in",
    "keywords",
    "set_language",
    "red_flag",
    "zh-CN",
    "en",
    "default",
]
NODE_IDS = ["welcome", "main_menu", "ask_phone", "lookup", "goodbye", "x", "Bad-Id"]
PROMPT_KEYS = ["main.welcome", "main.menu", "main.goodbye", "nope.missing", "sms.booking"]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(NODE_TYPES + NODE_IDS + PROMPT_KEYS + ["main", "other", "08:00", "25:99"]),
)
KEYS = st.one_of(
    st.sampled_from(FIELDS + NODE_IDS + ["1", "2", "0", "10"]),
    st.text(max_size=6),
    st.integers(0, 12),
    st.booleans(),
)
YAMLISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=20,
)
#: Each node type's fields (as documented): a generated node of a type has all of them, with
#: values that may or may not make sense, so the loader's per-field checks are reached.
SCHEMA = {
    "say": ["prompt", "next"],
    "menu": ["prompt", "options", "max_retries", "timeout_s"],
    "collect": [
        "prompt",
        "store",
        "next",
        "min_digits",
        "max_digits",
        "finish_on_key",
        "validate",
        "sensitive",
        "max_retries",
        "timeout_s",
    ],
    "branch": ["cases", "otherwise"],
    "action": ["action", "outcomes", "args", "store", "prompt"],
    "enqueue": ["queue", "priority", "prompt"],
    "sms": ["template", "next", "params", "essential", "prompt"],
    "hangup": ["prompt"],
    "goto": ["flow", "node"],
}
VALUE = st.one_of(
    SCALARS, st.lists(YAMLISH, max_size=3), st.dictionaries(KEYS, YAMLISH, max_size=3)
)
TYPED_NODE = st.sampled_from(sorted(SCHEMA)).flatmap(
    lambda kind: st.fixed_dictionaries(
        {"type": st.just(kind), **dict.fromkeys(SCHEMA[kind], VALUE)},
        optional={"description": VALUE, "extra": VALUE},
    )
)
LOOSE_NODE = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    st.one_of(st.sampled_from(NODE_TYPES), YAMLISH),
    st.dictionaries(KEYS, YAMLISH, max_size=6),
)
NODE = st.one_of(TYPED_NODE, TYPED_NODE, LOOSE_NODE)
FLOW_DOC = st.fixed_dictionaries(
    {
        "start": st.one_of(st.sampled_from(NODE_IDS), st.sampled_from(NODE_IDS), YAMLISH),
        "nodes": st.one_of(
            st.dictionaries(st.sampled_from(NODE_IDS), NODE, min_size=1, max_size=5),
            st.dictionaries(KEYS, NODE, max_size=3),
            YAMLISH,
        ),
    },
    optional={
        "name": st.sampled_from(["main", "other", "x"]),
        "queue": SCALARS,
        "description": SCALARS,
        "extra": YAMLISH,
    },
)
#: Mostly flow-shaped documents (they reach the per-node checks), some anything-at-all.
DOCUMENT = st.one_of(FLOW_DOC, FLOW_DOC, FLOW_DOC, YAMLISH, st.text(max_size=200))


def _dump(doc: Any) -> str:
    if isinstance(doc, str) and doc.startswith("raw:"):
        return doc[4:]
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


_CASE_NUMBERS = itertools.count()


@pytest.fixture(scope="module")
def flow_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzed_flows")


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    # one crash, shrunk, is enough to read; keep a failing run fast
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
@given(
    main=DOCUMENT,
    other=st.one_of(st.none(), DOCUMENT),
    prompts=st.one_of(st.none(), YAMLISH),
    raw=st.booleans(),
)
def test_any_flow_document_loads_or_raises_flow_error(
    flow_root: Path, main: Any, other: Any, prompts: Any, raw: bool
) -> None:
    directory = flow_root / f"case{next(_CASE_NUMBERS)}"
    shutil.copytree(GOOD / "prompts", directory / "prompts")
    if raw and isinstance(main, str):
        main = "raw:" + main
    (directory / "main.yaml").write_text(_dump(main), encoding="utf-8")
    if other is not None:
        (directory / "other.yaml").write_text(_dump(other), encoding="utf-8")
    if prompts is not None:
        (directory / "prompts" / "en.yaml").write_text(_dump(prompts), encoding="utf-8")
    problems: list[str] = []
    try:
        flows = load_flows(directory, actions={"find_booking"})
    except FlowError as err:
        problems = err.problems
    else:
        assert flows.entry == "main"
        assert "main" in flows.flows
        return
    assert problems
    assert all(isinstance(p, str) and p for p in problems)


# ---------------------------------------------------------------- every field, any shape

#: A small valid flow set with every node type, every option field and every condition.
#: Each test below puts a value of the wrong shape at one place in it.
BASE: dict[str, Any] = {
    "main": {
        "name": "main",
        "start": "menu",
        "queue": "q",
        "description": "d",
        "nodes": {
            "menu": {
                "type": "menu",
                "prompt": "p.a",
                "max_retries": 1,
                "timeout_s": 5,
                "options": {
                    "1": {"next": "ask", "keywords": {"zh-CN": ["甲"], "en": ["a"]}},
                    "2": {"next": "route", "set_language": "en", "red_flag": False},
                },
            },
            "ask": {
                "type": "collect",
                "prompt": ["p.a"],
                "store": "n",
                "next": "act",
                "min_digits": 1,
                "max_digits": 4,
                "finish_on_key": "#",
                "validate": "digits",
                "sensitive": False,
                "max_retries": 1,
                "timeout_s": 5,
            },
            "act": {
                "type": "action",
                "action": "find",
                "args": {"n": "{n}"},
                "store": "r",
                "prompt": "p.a",
                "outcomes": {"ok": "text", "default": "menu"},
            },
            "text": {
                "type": "sms",
                "template": "t",
                "params": {"n": "{n}"},
                "essential": False,
                "prompt": "p.a",
                "next": "say",
            },
            "say": {"type": "say", "prompt": "p.a", "next": "menu"},
            "route": {
                "type": "branch",
                "cases": [
                    {"when": {"var": "n", "equals": "1"}, "next": "queue"},
                    {"when": {"var": "n", "in": ["2"]}, "next": "queue"},
                    {"when": {"var": "n", "exists": True}, "next": "bye"},
                    {"when": {"language": "en"}, "next": "away"},
                    {"when": {"time_between": ["08:00", "17:00"]}, "next": "bye"},
                    {"when": {"weekday_in": [6, 7]}, "next": "bye"},
                ],
                "otherwise": "bye",
            },
            "queue": {"type": "enqueue", "queue": "q", "priority": 1, "prompt": "p.a"},
            "away": {"type": "goto", "flow": "other", "node": "end"},
            "bye": {"type": "hangup", "prompt": "p.a"},
        },
    },
    "other": {"start": "end", "nodes": {"end": {"type": "hangup"}}},
    "prompts/en": {
        "system": dict.fromkeys(
            (
                "invalid",
                "no_input",
                "transfer",
                "transfer_after_retries",
                "red_flag",
                "action_failed",
            ),
            "x",
        ),
        "p": {"a": "x"},
        "sms": {"t": "{n}"},
    },
}
ZH_PROMPTS = json.dumps(BASE["prompts/en"], ensure_ascii=False)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        path = (*prefix, key)
        out.append(path)
        if isinstance(value, (dict, list)):
            out.extend(_paths(value, path))
    return out


PATHS = _paths(BASE)


def _wrong_shape(value: Any) -> Any:
    """A container where text or a number belongs (or the other kind of container): the
    shapes that crash a careless ``in`` or ``sorted`` on a hashable or orderable value."""
    return {"k": ["v"]} if isinstance(value, list) else ["x", 1]


def _write(directory: Path, docs: dict[str, Any]) -> None:
    """Write the documents as JSON (which is YAML): fast to write and to parse."""
    (directory / "prompts").mkdir(parents=True)
    (directory / "prompts" / "zh-CN.yaml").write_text(ZH_PROMPTS, encoding="utf-8")
    for name, doc in docs.items():
        text = json.dumps(doc, ensure_ascii=False)
        (directory / f"{name}.yaml").write_text(text, encoding="utf-8")


def test_base_flow_set_is_valid(tmp_path: Path) -> None:
    _write(tmp_path, BASE)
    flows = load_flows(tmp_path, actions={"find"})
    assert set(flows.flows) == {"main", "other"}


@pytest.mark.parametrize("path", PATHS, ids=["/".join(map(str, p)) for p in PATHS])
def test_any_value_in_any_field_loads_or_raises_flow_error(
    path: tuple[Any, ...], tmp_path: Path
) -> None:
    docs = copy.deepcopy(BASE)
    target = docs
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = _wrong_shape(target[path[-1]])
    _write(tmp_path, docs)
    problems: list[str] = []
    try:
        load_flows(tmp_path, actions={"find"})
    except FlowError as err:
        problems = err.problems
    else:
        return
    assert problems
