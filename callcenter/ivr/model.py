"""The flow model: what a validated flow file becomes. Each node type is its own frozen class.

Flows are data. Adding behaviour means adding a node type here, in :mod:`.loader` (its schema)
and in :mod:`.engine` (what it does), with tests — never code inside a flow file.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Condition:
    """One test in a ``branch`` node. Exactly one of the test fields is set.

    ``var`` + ``equals`` / ``in_`` / ``exists``: a session variable; ``language``: the caller's
    language; ``time_between`` ("08:00", "20:00", local time, may cross midnight);
    ``weekday_in`` (1 = Monday ... 7 = Sunday, local time).
    """

    var: str | None = None
    equals: Any = None
    in_: tuple[Any, ...] | None = None
    exists: bool | None = None
    language: str | None = None
    time_between: tuple[str, str] | None = None
    weekday_in: tuple[int, ...] | None = None


@dataclass(frozen=True)
class MenuOption:
    """One keypad key of a menu, with the words that choose it by voice."""

    key: str
    next: str
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    set_language: str | None = None
    red_flag: bool = False


@dataclass(frozen=True)
class SayNode:
    """Speak one or more prompts, then go on."""

    id: str
    prompt: tuple[str, ...]
    next: str


@dataclass(frozen=True)
class MenuNode:
    """Offer keypad options (and their spoken keywords); ``*`` repeats, ``0`` reaches a person."""

    id: str
    prompt: tuple[str, ...]
    options: tuple[MenuOption, ...]
    max_retries: int | None = None
    timeout_s: int | None = None
    #: Where speech that chooses no option goes (the words are stored in ``heard``); without
    #: it, such speech is invalid input and the menu asks again.
    otherwise: str | None = None


@dataclass(frozen=True)
class AskNode:
    """Ask an open question and keep what the caller said in a session variable."""

    id: str
    prompt: tuple[str, ...]
    store: str
    next: str
    max_retries: int | None = None
    timeout_s: int | None = None


@dataclass(frozen=True)
class ChooseNode:
    """Offer up to 9 choices held in a session variable (a list of spoken labels).

    The caller presses the choice's number or says its label; the chosen number (1-based) is
    stored in ``store``. Used to pick among search results when the best match is uncertain.
    """

    id: str
    prompt: tuple[str, ...]
    options_from: str
    store: str
    next: str
    max_retries: int | None = None
    timeout_s: int | None = None


@dataclass(frozen=True)
class CollectNode:
    """Collect a number (by keypad, or spoken digits) into a session variable."""

    id: str
    prompt: tuple[str, ...]
    store: str
    next: str
    min_digits: int = 1
    max_digits: int = 20
    finish_on_key: str = "#"
    validate: str = "digits"
    sensitive: bool = False
    max_retries: int | None = None
    timeout_s: int | None = None


@dataclass(frozen=True)
class BranchNode:
    """Go to the first case whose condition holds, else ``otherwise``."""

    id: str
    cases: tuple[tuple[Condition, str], ...]
    otherwise: str


@dataclass(frozen=True)
class ActionNode:
    """Call a named service action; its outcome picks the next node, its data is stored."""

    id: str
    action: str
    args: Mapping[str, str]
    outcomes: Mapping[str, str]
    store: str | None = None
    prompt: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnqueueNode:
    """Hand the caller to a person: wait in a named queue."""

    id: str
    queue: str
    priority: int = 0
    prompt: tuple[str, ...] = ()


@dataclass(frozen=True)
class SmsNode:
    """Ask for an SMS to the caller from a template, then go on."""

    id: str
    template: str
    params: Mapping[str, str]
    next: str
    essential: bool = False
    prompt: tuple[str, ...] = ()


@dataclass(frozen=True)
class HangupNode:
    """Say goodbye (optionally) and end the call."""

    id: str
    prompt: tuple[str, ...] = ()


@dataclass(frozen=True)
class GotoNode:
    """Continue in another flow (at its start, or at a named node)."""

    id: str
    flow: str
    node: str | None = None


Node = (
    SayNode
    | MenuNode
    | AskNode
    | ChooseNode
    | CollectNode
    | BranchNode
    | ActionNode
    | EnqueueNode
    | SmsNode
    | HangupNode
    | GotoNode
)

#: Node types that stop and wait for the caller or for a service.
WAITING_TYPES = (MenuNode, AskNode, ChooseNode, CollectNode, ActionNode)
#: Node types that gather caller input.
INPUT_TYPES = (MenuNode, AskNode, ChooseNode, CollectNode)


def local_targets(node: Node) -> Iterator[str]:
    """Yield the ids of nodes in the same flow that ``node`` can go to."""
    if isinstance(node, (SayNode, CollectNode, SmsNode, AskNode, ChooseNode)):
        yield node.next
    elif isinstance(node, MenuNode):
        for option in node.options:
            yield option.next
        if node.otherwise is not None:
            yield node.otherwise
    elif isinstance(node, BranchNode):
        for _cond, target in node.cases:
            yield target
        yield node.otherwise
    elif isinstance(node, ActionNode):
        yield from node.outcomes.values()


def prompts_of(node: Node) -> tuple[str, ...]:
    """The prompt keys a node speaks."""
    return getattr(node, "prompt", ())


@dataclass(frozen=True)
class Flow:
    """A named flow: its nodes, the node it starts at and its default queue for ``0``."""

    name: str
    start: str
    nodes: Mapping[str, Node]
    queue: str
    source: str = ""


@dataclass(frozen=True)
class Prompts:
    """Prompt texts per language: ``texts[language][key]``."""

    texts: Mapping[str, Mapping[str, str]]

    def get(self, key: str, language: str) -> str:
        """Return the text of ``key`` in ``language``."""
        return self.texts[language][key]

    def has(self, key: str, language: str) -> bool:
        """Whether ``key`` exists in ``language``."""
        return key in self.texts.get(language, {})

    @staticmethod
    def placeholders(text: str) -> set[str]:
        """The ``{names}`` a prompt text uses."""
        names: set[str] = set()
        for _lit, name, _spec, _conv in string.Formatter().parse(text):
            if name:
                names.add(name.split(".")[0].split("[")[0])
        return names


@dataclass(frozen=True)
class FlowSet:
    """Every flow and prompt the engine runs, validated together."""

    flows: Mapping[str, Flow]
    prompts: Prompts
    entry: str
