"""Flow loading: the shipped flows and the good test flows load; every broken flow directory
under tests/data/flows/bad/ is refused with a FlowError naming the file, the node and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.bootstrap import ACTION_NAMES
from callcenter.ivr.loader import SYSTEM_PROMPTS, FlowError, iter_prompt_keys, load_flows
from callcenter.ivr.model import (
    ActionNode,
    BranchNode,
    CollectNode,
    EnqueueNode,
    GotoNode,
    HangupNode,
    MenuNode,
    SayNode,
    SmsNode,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "ivr_flows"
DATA = ROOT / "tests" / "data" / "flows"
GOOD = DATA / "good"
BAD = DATA / "bad"
GOOD_ACTIONS = {"find_booking", "count_slots"}


# ---------------------------------------------------------------- flows that load


def test_shipped_flows_load_with_no_service_actions() -> None:
    flows = load_flows(SHIPPED, actions=ACTION_NAMES)
    assert flows.entry == "main"
    assert set(flows.flows) == {
        "main",
        "info",
        "booking",
        "service",
        "recall",
        "results",
        "reminder_call",
    }
    assert flows.flows["main"].start == "welcome"
    assert flows.flows["booking"].queue == "booking"


def test_shipped_prompts_exist_in_both_languages() -> None:
    flows = load_flows(SHIPPED, actions=ACTION_NAMES)
    for key in [*iter_prompt_keys(flows), *SYSTEM_PROMPTS, "sms.service_guide"]:
        assert flows.prompts.has(key, "zh-CN"), key
        assert flows.prompts.has(key, "en"), key
    assert "120" in flows.prompts.get("system.red_flag", "zh-CN")
    assert "120" in flows.prompts.get("system.red_flag", "en")


def test_good_test_flows_load_and_use_every_node_type() -> None:
    flows = load_flows(GOOD, actions=GOOD_ACTIONS)
    assert set(flows.flows) == {"main", "routing"}
    used = {type(node) for flow in flows.flows.values() for node in flow.nodes.values()}
    assert used == {
        SayNode,
        MenuNode,
        CollectNode,
        BranchNode,
        ActionNode,
        EnqueueNode,
        SmsNode,
        HangupNode,
        GotoNode,
    }
    pin = flows.flows["main"].nodes["ask_pin"]
    assert isinstance(pin, CollectNode)
    assert (pin.min_digits, pin.max_digits, pin.sensitive, pin.max_retries) == (6, 6, True, 1)
    assert pin.prompt == ("main.ask_pin", "main.pin_hint")
    menu = flows.flows["main"].nodes["main_menu"]
    assert isinstance(menu, MenuNode)
    by_key = {o.key: o for o in menu.options}
    assert by_key["6"].red_flag is True
    assert by_key["9"].set_language == "en"
    assert by_key["1"].keywords["zh-CN"] == ("查预约", "手机")
    # the flow's own queue, and the default queue when a flow names none
    assert flows.flows["routing"].queue == "routing_desk"


def test_flow_without_queue_gets_the_default_queue(tmp_path: Path) -> None:
    flow = BAD / "unreachable_node"
    (tmp_path / "prompts").mkdir()
    for lang in ("zh-CN", "en"):
        (tmp_path / "prompts" / f"{lang}.yaml").write_text(
            (flow / "prompts" / f"{lang}.yaml").read_text(encoding="utf-8"), encoding="utf-8"
        )
    (tmp_path / "main.yaml").write_text(
        "name: main\nstart: bye\nnodes:\n  bye:\n    type: hangup\n", encoding="utf-8"
    )
    flows = load_flows(tmp_path, default_queue="front")
    assert flows.flows["main"].queue == "front"


def test_good_flows_refused_when_an_action_is_not_provided() -> None:
    with pytest.raises(FlowError) as err:
        load_flows(GOOD, actions={"find_booking"})
    assert any(
        "routing.yaml: node 'count_slots': calls unknown action 'count_slots'" in p
        for p in err.value.problems
    ), err.value.problems


def test_missing_directory_is_a_flow_error(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match="flow directory does not exist"):
        load_flows(tmp_path / "nope")


def test_missing_system_prompt_is_reported(tmp_path: Path) -> None:
    for rel in ("main.yaml", "prompts/zh-CN.yaml", "prompts/en.yaml"):
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (BAD / "unreachable_node" / rel).read_text(encoding="utf-8")
        if rel == "main.yaml":
            text = text.replace(
                "  orphan:\n    type: say\n    prompt: main.welcome\n    next: bye\n", ""
            )
        if rel == "prompts/en.yaml":
            text = text.replace("  red_flag: Call 120 now.\n", "")
        target.write_text(text, encoding="utf-8")
    with pytest.raises(FlowError) as err:
        load_flows(tmp_path)
    assert err.value.problems == [
        f"{tmp_path / 'prompts'}: prompt 'system.red_flag' is missing in prompts/en.yaml"
    ]


# ---------------------------------------------------------------- flows that are refused

# (folder under tests/data/flows/bad, file named in the problem, node named or None, fragment)
BAD_CASES = [
    ("unknown_node_type", "main.yaml", "bye", "unknown node type 'hang_up'"),
    ("missing_field", "main.yaml", "ask", "collect node is missing field 'store'"),
    ("unknown_field", "main.yaml", "ask", "collect node has unknown field 'max_digit'"),
    ("target_missing", "main.yaml", "welcome", "goes to node 'menuu', which does not exist"),
    ("goto_missing_flow", "main.yaml", "to_billing", "goes to flow 'billing', which does not"),
    ("goto_missing_node", "main.yaml", "to_other", "goes to node 'nowhere', not in flow 'other'"),
    ("prompt_missing_en", "main.yaml", "bye", "'main.bye' is missing in prompts/en.yaml"),
    ("prompt_missing_zh", "main.yaml", "bye", "'main.bye' is missing in prompts/zh-CN.yaml"),
    (
        "placeholders_differ",
        "main.yaml",
        "welcome",
        "uses placeholders ['name'] in zh-CN but ['nmae'] in en",
    ),
    ("unreachable_node", "main.yaml", "orphan", "is unreachable"),
    (
        "silent_loop",
        "main.yaml",
        "loop_a",
        "loops without waiting for the caller: loop_a -> loop_b",
    ),
    ("menu_key_zero", "main.yaml", "menu", "option '0': menu keys are single digits 1-9"),
    ("menu_key_ten", "main.yaml", "menu", "option '10': menu keys are single digits 1-9"),
    ("unknown_action", "main.yaml", "lookup", "calls unknown action 'lookup_booking'"),
    ("unknown_validator", "main.yaml", "ask", "unknown validator 'phone'"),
    ("min_digits_over_max", "main.yaml", "ask", "'min_digits' is larger than 'max_digits'"),
    ("invalid_yaml", "main.yaml", None, "not valid YAML"),
    ("missing_entry_flow", "", None, "the entry flow 'main' (main.yaml) does not exist"),
    ("sms_template_missing", "main.yaml", "text_me", "prompt 'sms.booking_done' is missing"),
    ("bad_branch_condition", "main.yaml", "route", "case 1: a condition is one of"),
    # The loader must turn every bad file into a FlowError, never crash on it:
    ("node_type_not_text", "main.yaml", "welcome", "unknown node type"),
    ("unknown_fields_mixed_keys", "main.yaml", "ask", "collect node has unknown field"),
    ("not_utf8", "main.yaml", None, "utf-8"),
    ("validator_not_text", "main.yaml", "ask", "validator"),
    # A repeated key must not silently drop the first definition ("a typo must not pass").
    ("duplicate_node_id", "main.yaml", None, "duplicate key 'bye'"),
    # Values that load silently but cannot be what the author meant:
    # 'english' is no language code, so the case could never match;
    ("branch_language_typo", "main.yaml", "route", "english"),
    # an empty 'queue:' would send callers who press 0 to a queue named "None";
    ("flow_queue_empty", "main.yaml", None, "queue"),
    # red_flag "false" (text) would make the option an emergency route.
    ("red_flag_not_boolean", "main.yaml", "menu", "red_flag"),
]


def test_every_bad_folder_is_in_the_table() -> None:
    folders = {p.name for p in BAD.iterdir() if p.is_dir()}
    assert folders == {case[0] for case in BAD_CASES} | {"several_problems"}


@pytest.mark.parametrize(
    ("folder", "file", "node", "fragment"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_bad_flow_is_refused_with_file_node_and_reason(
    folder: str, file: str, node: str | None, fragment: str
) -> None:
    directory = BAD / folder
    with pytest.raises(FlowError) as err:
        load_flows(directory, actions={"known"})
    where = str(directory / file) if file else str(directory)
    matching = [p for p in err.value.problems if fragment.lower() in p.lower()]
    assert matching, f"no problem mentions {fragment!r}: {err.value.problems}"
    problem = matching[0]
    assert problem.startswith(where + ":"), problem
    if node is not None:
        assert f"node '{node}'" in problem, problem
    # the exception text a person reads carries the same line
    assert problem in str(err.value)


def test_flow_error_lists_several_problems_at_once() -> None:
    directory = BAD / "several_problems"
    with pytest.raises(FlowError) as err:
        load_flows(directory)
    main = directory / "main.yaml"
    expected = [
        f"{main}: node 'extra': unknown node type 'speak'",
        f"{main}: node 'welcome': goes to node 'menuu', which does not exist in this flow",
        f"{main}: node 'bye': prompt 'main.bye' is missing in prompts/en.yaml",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in err.value.problems), (line, err.value.problems)
    message = str(err.value)
    assert message.startswith("invalid IVR flows:\n")
    for line in expected:
        assert line in message


def test_name_field_must_match_file_name(tmp_path: Path) -> None:
    for rel in ("prompts/zh-CN.yaml", "prompts/en.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(
            (BAD / "unreachable_node" / rel).read_text(encoding="utf-8"), encoding="utf-8"
        )
    (tmp_path / "main.yaml").write_text(
        "name: mian\nstart: bye\nnodes:\n  bye:\n    type: hangup\n", encoding="utf-8"
    )
    with pytest.raises(FlowError) as err:
        load_flows(tmp_path)
    assert err.value.problems == [
        f"{tmp_path / 'main.yaml'}: 'name' is 'mian' but the file is named 'main'"
    ]
