"""Load and validate flow files and prompts.

A flow directory holds ``*.yaml`` flow files and ``prompts/<language>.yaml`` prompt files.
Loading checks, and reports every problem with file, node and reason:

* the schema of each node type (unknown fields are errors: a typo must not pass silently);
* that every target node, flow, prompt, action, validator and SMS template exists;
* that every prompt exists in every language and uses the same ``{placeholders}`` in each;
* that no node is unreachable from the flow's start;
* that no loop can run without waiting for the caller (it would never answer the webhook).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .model import (
    ActionNode,
    AskNode,
    BranchNode,
    ChooseNode,
    CollectNode,
    Condition,
    EnqueueNode,
    Flow,
    FlowSet,
    GotoNode,
    HangupNode,
    MenuNode,
    MenuOption,
    Node,
    Prompts,
    SayNode,
    SmsNode,
    local_targets,
    prompts_of,
)
from .validators import VALIDATORS

LANGUAGES = ("zh-CN", "en")
#: Prompts the engine itself speaks; every prompt set must define them.
SYSTEM_PROMPTS = (
    "system.invalid",
    "system.no_input",
    "system.transfer",
    "system.transfer_after_retries",
    "system.red_flag",
    "system.action_failed",
)
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _StrictLoader(yaml.SafeLoader):
    """YAML loader that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _keys_to_text(data: Any) -> Any:
    """Mapping keys as text, so ``1:`` and ``"1":`` mean the same and errors can name them."""
    if isinstance(data, dict):
        return {str(k): _keys_to_text(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_keys_to_text(v) for v in data]
    return data


def read_yaml(text: str) -> Any:
    """Parse YAML strictly (duplicate keys are errors) with text mapping keys."""
    return _keys_to_text(yaml.load(text, Loader=_StrictLoader))  # noqa: S506 - safe subclass


class FlowError(Exception):
    """One or more problems in flow files; ``problems`` lists them as ``file: node: reason``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid IVR flows:\n" + "\n".join(f"  {p}" for p in problems))


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        #: prompt languages whose file could not be read (already reported once)
        self.unreadable: set[str] = set()

    def add(self, where: str, reason: str) -> None:
        self.items.append(f"{where}: {reason}")


def _prompt_list(value: Any, where: str, problems: _Problems) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    problems.add(where, "field 'prompt': must be a prompt key or a list of prompt keys")
    return ()


_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # type: (required fields, optional fields)
    "say": ({"prompt", "next"}, set()),
    "menu": ({"prompt", "options"}, {"max_retries", "timeout_s", "otherwise"}),
    "ask": ({"prompt", "store", "next"}, {"max_retries", "timeout_s"}),
    "choose": ({"prompt", "options_from", "store", "next"}, {"max_retries", "timeout_s"}),
    "collect": (
        {"prompt", "store", "next"},
        {
            "min_digits",
            "max_digits",
            "finish_on_key",
            "validate",
            "sensitive",
            "max_retries",
            "timeout_s",
        },
    ),
    "branch": ({"cases", "otherwise"}, set()),
    "action": ({"action", "outcomes"}, {"args", "store", "prompt"}),
    "enqueue": ({"queue"}, {"priority", "prompt"}),
    "sms": ({"template", "next"}, {"params", "essential", "prompt"}),
    "hangup": (set(), {"prompt"}),
    "goto": ({"flow"}, {"node"}),
}


def _int(
    raw: Mapping[str, Any],
    key: str,
    where: str,
    problems: _Problems,
    lo: int,
    hi: int,
    default: int | None,
) -> int | None:
    if key not in raw:
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        problems.add(where, f"field '{key}': must be a whole number from {lo} to {hi}")
        return default
    return value


def _bool(raw: Mapping[str, Any], key: str, where: str, problems: _Problems) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        problems.add(where, f"field '{key}': must be true or false")
        return False
    return value


def _str(raw: Mapping[str, Any], key: str, where: str, problems: _Problems) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        problems.add(where, f"field '{key}': must be a non-empty string")
        return ""
    return value


def _condition(raw: Any, where: str, problems: _Problems) -> Condition | None:
    if not isinstance(raw, dict):
        problems.add(where, "each case needs a 'when' mapping")
        return None
    keys = set(raw)
    if keys == {"language"}:
        if raw["language"] not in LANGUAGES:
            problems.add(
                where,
                f"'language' is {raw['language']!r}; it must be one of {', '.join(LANGUAGES)}",
            )
            return None
        return Condition(language=str(raw["language"]))
    if keys == {"time_between"}:
        window = raw["time_between"]
        if (
            not isinstance(window, list)
            or len(window) != 2
            or not all(isinstance(t, str) and TIME_RE.match(t) for t in window)
        ):
            problems.add(where, "'time_between' must be two HH:MM times")
            return None
        return Condition(time_between=(window[0], window[1]))
    if keys == {"weekday_in"}:
        days = raw["weekday_in"]
        if not isinstance(days, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in days
        ):
            problems.add(where, "'weekday_in' must be a list of days 1 (Monday) to 7 (Sunday)")
            return None
        return Condition(weekday_in=tuple(days))
    if "var" in keys and len(keys) == 2:
        var = raw["var"]
        if not isinstance(var, str) or not var:
            problems.add(where, "'var' must name a session variable")
            return None
        if "equals" in keys:
            return Condition(var=var, equals=raw["equals"])
        if "in" in keys and isinstance(raw["in"], list):
            return Condition(var=var, in_=tuple(raw["in"]))
        if "exists" in keys and isinstance(raw["exists"], bool):
            return Condition(var=var, exists=raw["exists"])
    problems.add(
        where,
        "a condition is one of {var, equals}, {var, in: [...]}, {var, exists: bool}, "
        "{language}, {time_between: [HH:MM, HH:MM]}, {weekday_in: [1-7]}",
    )
    return None


def _keywords(raw: Any, where: str, problems: _Problems) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add(where, "'keywords' must map a language to a list of words")
        return {}
    result: dict[str, tuple[str, ...]] = {}
    for lang, words in raw.items():
        if lang not in LANGUAGES:
            problems.add(
                where, f"'keywords': unknown language {lang!r} (use {', '.join(LANGUAGES)})"
            )
            continue
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            problems.add(where, f"'keywords.{lang}' must be a list of non-empty strings")
            continue
        result[lang] = tuple(words)
    return result


def _node(node_id: str, raw: Any, where: str, problems: _Problems) -> Node | None:
    if not isinstance(raw, dict):
        problems.add(where, "must be a mapping with a 'type'")
        return None
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        problems.add(where, f"unknown node type {kind!r} (known: {', '.join(sorted(_FIELDS))})")
        return None
    required, optional = _FIELDS[kind]
    fields = set(raw) - {"type", "description"}
    for missing in sorted(required - fields):
        problems.add(where, f"{kind} node is missing field '{missing}'")
    for extra in sorted(fields - required - optional):
        problems.add(where, f"{kind} node has unknown field '{extra}'")
    if required - fields:
        return None
    prompt = _prompt_list(raw.get("prompt"), where, problems)
    if kind == "say":
        return SayNode(id=node_id, prompt=prompt, next=_str(raw, "next", where, problems))
    if kind == "menu":
        options_raw = raw["options"]
        options: list[MenuOption] = []
        if not isinstance(options_raw, dict) or not options_raw:
            problems.add(where, "'options' must map keypad keys to options")
        else:
            for key, opt in options_raw.items():
                key_s = str(key)
                owhere = f"{where}: option {key_s!r}"
                if key_s not in "123456789" or len(key_s) != 1:
                    problems.add(owhere, "menu keys are single digits 1-9 (0 = person, * = repeat)")
                    continue
                if not isinstance(opt, dict):
                    problems.add(owhere, "must be a mapping with 'next'")
                    continue
                unknown = set(opt) - {"next", "keywords", "set_language", "red_flag"}
                if unknown:
                    problems.add(owhere, f"unknown field(s) {', '.join(sorted(unknown))}")
                lang = opt.get("set_language")
                if lang is not None and lang not in LANGUAGES:
                    problems.add(owhere, f"'set_language' must be one of {', '.join(LANGUAGES)}")
                options.append(
                    MenuOption(
                        key=key_s,
                        next=_str(opt, "next", owhere, problems),
                        keywords=_keywords(opt.get("keywords"), owhere, problems),
                        set_language=lang,
                        red_flag=_bool(opt, "red_flag", owhere, problems),
                    )
                )
        otherwise = raw.get("otherwise")
        if otherwise is not None and not isinstance(otherwise, str):
            problems.add(where, "field 'otherwise': must name a node")
            otherwise = None
        return MenuNode(
            id=node_id,
            prompt=prompt,
            options=tuple(options),
            max_retries=_int(raw, "max_retries", where, problems, 0, 10, None),
            timeout_s=_int(raw, "timeout_s", where, problems, 1, 60, None),
            otherwise=otherwise,
        )
    if kind in ("ask", "choose"):
        store = _str(raw, "store", where, problems)
        if store and not NAME_RE.match(store):
            problems.add(where, "'store' must be a lower-case name (letters, digits, _)")
        retries = _int(raw, "max_retries", where, problems, 0, 10, None)
        timeout = _int(raw, "timeout_s", where, problems, 1, 60, None)
        nxt = _str(raw, "next", where, problems)
        if kind == "ask":
            return AskNode(
                id=node_id,
                prompt=prompt,
                store=store,
                next=nxt,
                max_retries=retries,
                timeout_s=timeout,
            )
        source = _str(raw, "options_from", where, problems)
        return ChooseNode(
            id=node_id,
            prompt=prompt,
            options_from=source,
            store=store,
            next=nxt,
            max_retries=retries,
            timeout_s=timeout,
        )
    if kind == "collect":
        store = _str(raw, "store", where, problems)
        if store and not NAME_RE.match(store):
            problems.add(where, "'store' must be a lower-case name (letters, digits, _)")
        validate = raw.get("validate", "digits")
        if not isinstance(validate, str) or validate not in VALIDATORS:
            problems.add(
                where, f"unknown validator {validate!r} (known: {', '.join(sorted(VALIDATORS))})"
            )
        min_d = _int(raw, "min_digits", where, problems, 1, 40, 1) or 1
        max_d = _int(raw, "max_digits", where, problems, 1, 40, 20) or 20
        if min_d > max_d:
            problems.add(where, "'min_digits' is larger than 'max_digits'")
        finish = raw.get("finish_on_key", "#")
        if finish not in ("#", "*", ""):
            problems.add(where, "'finish_on_key' must be '#', '*' or ''")
        return CollectNode(
            id=node_id,
            prompt=prompt,
            store=store,
            next=_str(raw, "next", where, problems),
            min_digits=min_d,
            max_digits=max_d,
            finish_on_key=str(finish),
            validate=str(validate),
            sensitive=_bool(raw, "sensitive", where, problems),
            max_retries=_int(raw, "max_retries", where, problems, 0, 10, None),
            timeout_s=_int(raw, "timeout_s", where, problems, 1, 60, None),
        )
    if kind == "branch":
        cases: list[tuple[Condition, str]] = []
        if not isinstance(raw["cases"], list) or not raw["cases"]:
            problems.add(where, "'cases' must be a non-empty list of {when, next}")
        else:
            for i, case in enumerate(raw["cases"], 1):
                cwhere = f"{where}: case {i}"
                if not isinstance(case, dict) or set(case) != {"when", "next"}:
                    problems.add(cwhere, "each case is exactly {when: condition, next: node}")
                    continue
                cond = _condition(case["when"], cwhere, problems)
                if cond is not None:
                    cases.append((cond, _str(case, "next", cwhere, problems)))
        return BranchNode(
            id=node_id, cases=tuple(cases), otherwise=_str(raw, "otherwise", where, problems)
        )
    if kind == "action":
        outcomes = raw["outcomes"]
        if (
            not isinstance(outcomes, dict)
            or not outcomes
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in outcomes.items())
        ):
            problems.add(where, "'outcomes' must map outcome names to nodes")
            outcomes = {}
        args = raw.get("args", {}) or {}
        if not isinstance(args, dict):
            problems.add(where, "'args' must be a mapping")
            args = {}
        action_store = raw.get("store")
        if action_store is not None and (
            not isinstance(action_store, str) or not NAME_RE.match(action_store)
        ):
            problems.add(where, "'store' must be a lower-case name (letters, digits, _)")
            action_store = None
        return ActionNode(
            id=node_id,
            action=_str(raw, "action", where, problems),
            args={str(k): str(v) for k, v in args.items()},
            outcomes=dict(outcomes),
            store=action_store,
            prompt=prompt,
        )
    if kind == "enqueue":
        return EnqueueNode(
            id=node_id,
            queue=_str(raw, "queue", where, problems),
            priority=_int(raw, "priority", where, problems, 0, 100, 0) or 0,
            prompt=prompt,
        )
    if kind == "sms":
        params = raw.get("params", {}) or {}
        if not isinstance(params, dict):
            problems.add(where, "'params' must be a mapping")
            params = {}
        return SmsNode(
            id=node_id,
            template=_str(raw, "template", where, problems),
            params={str(k): str(v) for k, v in params.items()},
            next=_str(raw, "next", where, problems),
            essential=_bool(raw, "essential", where, problems),
            prompt=prompt,
        )
    if kind == "hangup":
        return HangupNode(id=node_id, prompt=prompt)
    target = raw.get("node")
    return GotoNode(
        id=node_id,
        flow=_str(raw, "flow", where, problems),
        node=str(target) if target is not None else None,
    )


def parse_flow(
    name: str, data: Any, source: str, problems: _Problems, default_queue: str
) -> Flow | None:
    """Parse one flow document (already read from YAML) into a :class:`Flow`."""
    if not isinstance(data, dict):
        problems.add(source, "a flow file is a mapping with 'start' and 'nodes'")
        return None
    unknown = set(data) - {"name", "description", "start", "queue", "nodes"}
    if unknown:
        problems.add(source, f"unknown top-level field(s) {', '.join(sorted(unknown))}")
    if data.get("name", name) != name:
        problems.add(source, f"'name' is {data.get('name')!r} but the file is named {name!r}")
    nodes_raw = data.get("nodes")
    start = data.get("start")
    if not isinstance(nodes_raw, dict) or not nodes_raw:
        problems.add(source, "'nodes' must be a non-empty mapping of node id to node")
        return None
    if not isinstance(start, str):
        problems.add(source, "'start' must name the first node")
        return None
    nodes: dict[str, Node] = {}
    for node_id, raw in nodes_raw.items():
        where = f"{source}: node '{node_id}'"
        if not isinstance(node_id, str) or not NAME_RE.match(node_id):
            problems.add(where, "node ids are lower-case names (letters, digits, _)")
            continue
        node = _node(node_id, raw, where, problems)
        if node is not None:
            nodes[node_id] = node
    queue = data.get("queue", default_queue)
    if not isinstance(queue, str) or not NAME_RE.match(queue):
        problems.add(source, "'queue' must name a queue (lower-case letters, digits, _)")
        queue = default_queue
    return Flow(name=name, start=start, nodes=nodes, queue=str(queue), source=source)


def _check_flow(
    flow: Flow,
    flows: Mapping[str, Flow],
    prompts: Prompts,
    actions: Collection[str] | None,
    problems: _Problems,
) -> None:
    src = flow.source
    if flow.start not in flow.nodes:
        problems.add(src, f"'start' names node {flow.start!r}, which does not exist")
    for node in flow.nodes.values():
        where = f"{src}: node '{node.id}'"
        for target in local_targets(node):
            if target and target not in flow.nodes:
                problems.add(where, f"goes to node {target!r}, which does not exist in this flow")
        for key in prompts_of(node):
            _check_prompt(key, where, prompts, problems)
        if isinstance(node, GotoNode):
            other = flows.get(node.flow)
            if other is None:
                problems.add(where, f"goes to flow {node.flow!r}, which does not exist")
            elif node.node is not None and node.node not in other.nodes:
                problems.add(where, f"goes to node {node.node!r}, not in flow {node.flow!r}")
        if isinstance(node, ActionNode) and actions is not None and node.action not in actions:
            problems.add(
                where,
                f"calls unknown action {node.action!r} (known: {', '.join(sorted(actions))})",
            )
        if isinstance(node, SmsNode):
            _check_prompt(f"sms.{node.template}", where, prompts, problems)
    entries = {flow.start} | {
        n.node
        for other in flows.values()
        for n in other.nodes.values()
        if isinstance(n, GotoNode) and n.flow == flow.name and n.node
    }
    _check_reachable(flow, entries, problems)
    _check_silent_loops(flow, problems)


def _check_prompt(key: str, where: str, prompts: Prompts, problems: _Problems) -> None:
    present = [lang for lang in LANGUAGES if prompts.has(key, lang)]
    for lang in LANGUAGES:
        if lang not in present and lang not in problems.unreadable:
            problems.add(where, f"prompt {key!r} is missing in prompts/{lang}.yaml")
    if len(present) == len(LANGUAGES):
        names = {lang: Prompts.placeholders(prompts.get(key, lang)) for lang in LANGUAGES}
        first = names[LANGUAGES[0]]
        for lang in LANGUAGES[1:]:
            if names[lang] != first:
                problems.add(
                    where,
                    f"prompt {key!r} uses placeholders {sorted(first)} in {LANGUAGES[0]} "
                    f"but {sorted(names[lang])} in {lang}",
                )


def _check_reachable(flow: Flow, entries: set[str], problems: _Problems) -> None:
    """Every node must be reachable from the start or from a ``goto`` in another flow."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        current = todo.pop()
        if current in seen or current not in flow.nodes:
            continue
        seen.add(current)
        todo.extend(local_targets(flow.nodes[current]))
    for node_id in flow.nodes:
        if node_id not in seen:
            problems.add(
                f"{flow.source}: node '{node_id}'",
                "is unreachable (from the start node or any goto into this flow)",
            )


def _check_silent_loops(flow: Flow, problems: _Problems) -> None:
    """A cycle through say/branch/sms nodes only would loop forever without waiting."""
    silent = {
        nid: [t for t in local_targets(n) if t in flow.nodes]
        for nid, n in flow.nodes.items()
        if isinstance(n, (SayNode, BranchNode, SmsNode))
    }
    state: dict[str, int] = {}

    def visit(nid: str, path: list[str]) -> None:
        state[nid] = 1
        for nxt in silent.get(nid, []):
            if nxt not in silent:
                continue
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [nid, nxt]
                problems.add(
                    f"{flow.source}: node '{nxt}'",
                    "loops without waiting for the caller: " + " -> ".join(cycle),
                )
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[nid] = 2

    for nid in silent:
        if nid not in state:
            visit(nid, [nid])


def load_prompts(directory: Path, problems: _Problems) -> Prompts:
    """Read ``prompts/<language>.yaml`` for every supported language."""
    texts: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        file = directory / "prompts" / f"{lang}.yaml"
        where = str(file)
        if not file.is_file():
            problems.add(where, "prompt file is missing")
            texts[lang] = {}
            continue
        try:
            data = read_yaml(file.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            problems.add(where, "not UTF-8 text")
            problems.unreadable.add(lang)
            texts[lang] = {}
            continue
        except yaml.YAMLError as exc:
            problems.add(where, f"not valid YAML: {exc}")
            problems.unreadable.add(lang)
            texts[lang] = {}
            continue
        flat: dict[str, str] = {}
        _flatten(data, "", flat, where, problems)
        texts[lang] = flat
    return Prompts(texts=texts)


def _flatten(data: Any, prefix: str, out: dict[str, str], where: str, problems: _Problems) -> None:
    if not isinstance(data, dict):
        problems.add(where, f"{prefix or 'top level'}: must be a mapping of prompt keys")
        return
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, full + ".", out, where, problems)
        elif isinstance(value, str) and value.strip():
            try:
                Prompts.placeholders(value)
            except ValueError as exc:
                problems.add(where, f"prompt {full!r}: bad placeholder: {exc}")
                continue
            out[full] = value.strip()
        else:
            problems.add(where, f"prompt {full!r}: must be non-empty text")


def load_flows(
    directory: str | Path,
    *,
    entry: str = "main",
    default_queue: str = "general",
    actions: Collection[str] | None = None,
    read: Callable[[Path], str] | None = None,
) -> FlowSet:
    """Load every flow in ``directory`` and validate them together; raise :class:`FlowError`.

    ``actions`` is the set of service action names that flows may call (``None`` skips that
    check, for tools that validate flows without wiring services).
    """
    root = Path(directory)
    problems = _Problems()
    if not root.is_dir():
        raise FlowError([f"{root}: flow directory does not exist"])
    reader = read or (lambda p: p.read_text(encoding="utf-8"))
    prompts = load_prompts(root, problems)
    for key in SYSTEM_PROMPTS:
        _check_prompt(key, str(root / "prompts"), prompts, problems)
    flows: dict[str, Flow] = {}
    for file in sorted(root.glob("*.yaml")):
        name = file.stem
        if not NAME_RE.match(name):
            problems.add(str(file), "flow file names are lower-case names (letters, digits, _)")
            continue
        try:
            data = read_yaml(reader(file))
        except UnicodeDecodeError:
            problems.add(str(file), "not UTF-8 text")
            continue
        except yaml.YAMLError as exc:
            problems.add(str(file), f"not valid YAML: {exc}")
            continue
        flow = parse_flow(name, data, str(file), problems, default_queue)
        if flow is not None:
            flows[name] = flow
    if entry not in flows and not problems.items:
        problems.add(str(root), f"the entry flow {entry!r} ({entry}.yaml) does not exist")
    for flow in flows.values():
        _check_flow(flow, flows, prompts, actions, problems)
    if problems.items:
        raise FlowError(problems.items)
    return FlowSet(flows=flows, prompts=prompts, entry=entry)


def iter_prompt_keys(flowset: FlowSet) -> Iterable[str]:
    """Every prompt key the flows use (for tools and tests)."""
    for flow in flowset.flows.values():
        for node in flow.nodes.values():
            yield from prompts_of(node)
