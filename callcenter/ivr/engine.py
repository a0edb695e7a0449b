"""The IVR engine: a pure function of (flows, session state, event, clock) to instructions.

The engine never waits, sleeps, reads a database or talks to a provider. The call service
loads the session, calls :meth:`Engine.start` or :meth:`Engine.handle`, runs any service action
the step asks for (feeding its result back as :class:`ActionResult`), persists the new state
and hands the instructions to an adapter. Because it is pure, the same code answers Twilio
webhooks, drives the terminal simulator and runs in tests with a fake clock.

Rules every menu and collect node follows, whatever the flow says:

* ``*`` (or "repeat") repeats the prompt, without counting as a retry;
* ``0`` (or "agent" / "人工") reaches a person;
* no input or invalid input re-prompts, up to ``max_retries``, then reaches a person;
* a red-flag phrase anywhere in the caller's speech gives the emergency advice (call 120) and
  puts the caller at the front of the urgent queue.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from ..clock import Clock
from . import speech
from .instructions import Enqueue, Gather, Hangup, Instruction, Say, SendSms
from .model import (
    INPUT_TYPES,
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
    Node,
    SayNode,
    SmsNode,
)
from .validators import VALIDATORS, normalize

#: Nodes entered in one step before the engine gives up (flows are checked for silent loops,
#: so this only guards against a bug, never a valid flow).
MAX_TRANSITIONS = 64
MAX_HISTORY = 200
MAX_DIGITS_INPUT = 40
RED_FLAG_PRIORITY = 100
#: The session variable holding sensitive values (see :meth:`Engine._collected`).
SEALED = "sealed"
_DIGITS_RE = re.compile(rf"^[0-9*#]{{1,{MAX_DIGITS_INPUT}}}$")


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """A call begins. ``caller`` is E.164 or ``None`` when hidden."""

    caller: str | None = None
    called: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Digits:
    """The caller pressed keys (raw, as the provider reported them; validated here)."""

    value: str


@dataclass(frozen=True)
class Speech:
    """The recogniser heard ``text`` (raw; cleaned here)."""

    text: str
    confidence: float | None = None


@dataclass(frozen=True)
class NoInput:
    """The caller said and pressed nothing before the timeout."""


@dataclass(frozen=True)
class ActionResult:
    """The outcome of a service action the engine asked for."""

    outcome: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallerHangup:
    """The caller hung up."""


Event = Start | Digits | Speech | NoInput | ActionResult | CallerHangup


# ---------------------------------------------------------------- state and results


@dataclass(frozen=True)
class SessionState:
    """Everything the engine knows about one call; JSON-serialisable via :meth:`to_data`."""

    flow: str
    node: str | None
    language: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    ended: bool = False
    history: tuple[str, ...] = ()
    caller: str | None = None

    def to_data(self) -> dict[str, Any]:
        """Plain data for storage."""
        return {
            "flow": self.flow,
            "node": self.node,
            "language": self.language,
            "vars": dict(self.vars),
            "retries": self.retries,
            "ended": self.ended,
            "history": list(self.history),
            "caller": self.caller,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SessionState:
        """Rebuild a state stored with :meth:`to_data`."""
        return cls(
            flow=str(data["flow"]),
            node=data.get("node"),
            language=str(data["language"]),
            vars=dict(data.get("vars") or {}),
            retries=int(data.get("retries", 0)),
            ended=bool(data.get("ended", False)),
            history=tuple(data.get("history") or ()),
            caller=data.get("caller"),
        )


@dataclass(frozen=True)
class ActionRequest:
    """A service action the engine needs run before it can go on."""

    name: str
    args: Mapping[str, str]
    node: str


@dataclass(frozen=True)
class Trace:
    """Something worth recording in the call's event log."""

    kind: str
    node: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """What one engine step produced.

    ``action`` set: run it and call :meth:`Engine.handle` with its :class:`ActionResult`;
    the instructions so far are to be played before what that next step returns.
    ``outcome`` set: the IVR part of the call is over (``enqueued``, ``hangup``,
    ``caller_hangup``).
    """

    state: SessionState
    instructions: tuple[Instruction, ...]
    action: ActionRequest | None = None
    outcome: str | None = None
    trace: tuple[Trace, ...] = ()


@dataclass(frozen=True)
class EngineSettings:
    """Engine-wide settings (from configuration)."""

    default_language: str = "zh-CN"
    max_retries: int = 2
    gather_timeout_s: int = 6
    default_queue: str = "general"
    red_flag_queue: str = "urgent"
    red_flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    timezone: str = "Asia/Shanghai"


class EngineError(Exception):
    """An event that makes no sense in the session's state (a bug in the caller, not input)."""


class _SafeVars(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


class _SafeFormatter(string.Formatter):
    """Fills ``{name}``, ``{result[field]}``; anything missing is spoken as nothing, never as
    the placeholder itself."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        try:
            found: tuple[Any, str] = super().get_field(field_name, args, kwargs)
            return found
        except (KeyError, IndexError, AttributeError, TypeError, ValueError):
            return "", field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            return str(super().format_field(value, format_spec))
        except (ValueError, TypeError):
            return str(value)


_FORMATTER = _SafeFormatter()


class _Run:
    """Accumulates one step's output while the engine walks nodes."""

    def __init__(self, state: SessionState) -> None:
        self.state = state
        self.out: list[Instruction] = []
        self.trace: list[Trace] = []
        self.action: ActionRequest | None = None
        self.outcome: str | None = None

    def step(self) -> Step:
        return Step(
            state=self.state,
            instructions=tuple(self.out),
            action=self.action,
            outcome=self.outcome,
            trace=tuple(self.trace),
        )


class Engine:
    """Runs validated flows. Build one per :class:`FlowSet`; it is immutable and thread-safe."""

    def __init__(self, flows: FlowSet, settings: EngineSettings | None = None) -> None:
        self.flows = flows
        self.settings = settings or EngineSettings()
        self._tz = ZoneInfo(self.settings.timezone)
        self._person = {
            lang: speech.PhraseMatcher(("person", p) for p in phrases)
            for lang, phrases in speech.PERSON_PHRASES.items()
        }
        self._repeat = {
            lang: speech.PhraseMatcher(("repeat", p) for p in phrases)
            for lang, phrases in speech.REPEAT_PHRASES.items()
        }
        # Red flags are checked in every language: a caller may mix them.
        self._red_flags = speech.PhraseMatcher(
            (phrase, phrase) for phrases in self.settings.red_flags.values() for phrase in phrases
        )
        self._menus: dict[tuple[str, str, str], speech.PhraseMatcher] = {}
        for flow in flows.flows.values():
            for node in flow.nodes.values():
                if isinstance(node, MenuNode):
                    for lang in ("zh-CN", "en"):
                        pairs = [
                            (opt.key, word)
                            for opt in node.options
                            for kw_lang, words in opt.keywords.items()
                            for word in words
                            # A language switch must work whichever language is active.
                            if kw_lang == lang or opt.set_language is not None
                        ]
                        self._menus[(flow.name, node.id, lang)] = speech.PhraseMatcher(pairs)

    # ------------------------------------------------------------ public API

    def start(self, event: Start, clock: Clock) -> Step:
        """Begin a call at the entry flow's start node."""
        language = event.language or self.settings.default_language
        if language not in ("zh-CN", "en"):
            language = self.settings.default_language
        entry = self.flows.flows[self.flows.entry]
        state = SessionState(flow=entry.name, node=None, language=language, caller=event.caller)
        run = _Run(state)
        run.trace.append(Trace("start", f"{entry.name}:{entry.start}", {"language": language}))
        self._enter(run, entry.name, entry.start, clock)
        return run.step()

    def handle(self, state: SessionState, event: Event, clock: Clock) -> Step:
        """Apply one event to a call in progress."""
        run = _Run(state)
        if isinstance(event, CallerHangup):
            run.state = replace(state, ended=True, node=None)
            run.outcome = "caller_hangup"
            run.trace.append(Trace("caller_hangup", self._where(state)))
            return run.step()
        if state.ended or state.node is None:
            raise EngineError("the call's IVR session has already ended")
        if isinstance(event, Start):
            raise EngineError("Start is only valid for a new call")
        flow = self.flows.flows[state.flow]
        node = flow.nodes[state.node]
        if isinstance(event, ActionResult):
            if not isinstance(node, ActionNode):
                raise EngineError(f"an action result arrived while waiting at {node.id!r}")
            self._action_result(run, flow, node, event, clock)
            return run.step()
        if isinstance(node, ActionNode):
            raise EngineError(f"caller input arrived while action {node.action!r} is running")
        assert isinstance(node, INPUT_TYPES)
        if isinstance(event, Speech):
            text = speech.clean(event.text)
            if text and self._red_flag(run, flow, node, text):
                return run.step()
            if isinstance(node, MenuNode):
                self._menu_speech(run, flow, node, text, clock)
            elif isinstance(node, AskNode):
                self._ask_speech(run, flow, node, text, clock)
            elif isinstance(node, ChooseNode):
                self._choose_speech(run, flow, node, text, clock)
            else:
                self._collect_speech(run, flow, node, text, clock)
        elif isinstance(event, Digits):
            self._digits(run, flow, node, event.value, clock)
        else:
            run.trace.append(Trace("no_input", self._where(state)))
            self._retry(run, flow, node, "system.no_input", clock)
        return run.step()

    def replay_prompt(self, state: SessionState) -> tuple[Instruction, ...]:
        """The instructions that (re-)ask the question the session is waiting on."""
        if state.ended or state.node is None:
            return (Hangup(),)
        node = self.flows.flows[state.flow].nodes[state.node]
        run = _Run(state)
        if isinstance(node, INPUT_TYPES):
            self._gather(run, node)
        return tuple(run.out)

    # ------------------------------------------------------------ walking

    def _where(self, state: SessionState) -> str:
        return f"{state.flow}:{state.node}"

    def _enter(self, run: _Run, flow_name: str, node_id: str, clock: Clock) -> None:
        for _ in range(MAX_TRANSITIONS):
            flow = self.flows.flows[flow_name]
            node: Node = flow.nodes[node_id]
            history = (*run.state.history, f"{flow_name}:{node_id}")[-MAX_HISTORY:]
            run.state = replace(run.state, flow=flow_name, node=node_id, history=history)
            run.trace.append(Trace("node", f"{flow_name}:{node_id}", {"type": _type_name(node)}))
            nxt = self._visit(run, flow, node, clock)
            if nxt is None:
                return
            flow_name, node_id = nxt
        raise EngineError(f"more than {MAX_TRANSITIONS} nodes in one step at {flow_name}:{node_id}")

    def _visit(self, run: _Run, flow: Flow, node: Node, clock: Clock) -> tuple[str, str] | None:
        """Do what ``node`` does; return the next (flow, node) or ``None`` to stop here."""
        if isinstance(node, SayNode):
            self._say(run, node.prompt)
            return flow.name, node.next
        if isinstance(node, INPUT_TYPES):
            run.state = replace(run.state, retries=0)
            self._gather(run, node)
            return None
        if isinstance(node, BranchNode):
            for cond, target in node.cases:
                if self._holds(cond, run.state, clock):
                    return flow.name, target
            return flow.name, node.otherwise
        if isinstance(node, ActionNode):
            self._say(run, node.prompt)
            run.action = ActionRequest(
                name=node.action,
                args={k: self._fill(v, run.state) for k, v in node.args.items()},
                node=node.id,
            )
            return None
        if isinstance(node, EnqueueNode):
            self._say(run, node.prompt)
            self._enqueue(run, node.queue, node.priority, "flow")
            return None
        if isinstance(node, SmsNode):
            self._say(run, node.prompt)
            run.out.append(
                SendSms(
                    template=node.template,
                    language=run.state.language,
                    params={k: self._fill(v, run.state) for k, v in node.params.items()},
                    essential=node.essential,
                )
            )
            run.trace.append(Trace("sms", self._where(run.state), {"template": node.template}))
            return flow.name, node.next
        if isinstance(node, HangupNode):
            self._say(run, node.prompt)
            run.out.append(Hangup())
            run.state = replace(run.state, ended=True, node=None)
            run.outcome = "hangup"
            return None
        assert isinstance(node, GotoNode)
        goto_flow = self.flows.flows[node.flow]
        return goto_flow.name, node.node or goto_flow.start

    # ------------------------------------------------------------ output helpers

    def _text(self, key: str, state: SessionState) -> str:
        return self._fill(self.flows.prompts.get(key, state.language), state)

    def _fill(self, template: str, state: SessionState) -> str:
        values = _SafeVars(state.vars)
        values.setdefault("language", state.language)
        try:
            return _FORMATTER.vformat(template, (), values)
        except (ValueError, IndexError):
            # Only a malformed template gets here; the loader refuses those in prompts.
            return ""

    def _say(self, run: _Run, keys: tuple[str, ...]) -> None:
        for key in keys:
            run.out.append(Say(self._text(key, run.state), run.state.language))

    def _gather(self, run: _Run, node: MenuNode | AskNode | ChooseNode | CollectNode) -> None:
        lang = run.state.language
        prompts = tuple(Say(self._text(k, run.state), lang) for k in node.prompt)
        timeout = node.timeout_s or self.settings.gather_timeout_s
        if isinstance(node, MenuNode):
            hints = tuple(
                dict.fromkeys(
                    word
                    for opt in node.options
                    for kw_lang, words in opt.keywords.items()
                    if kw_lang == lang
                    for word in words
                )
            )
            run.out.append(
                Gather(prompts=prompts, language=lang, max_digits=1, hints=hints, timeout_s=timeout)
            )
        elif isinstance(node, (AskNode, ChooseNode)):
            hints = ()
            if isinstance(node, ChooseNode):
                hints = tuple(self._choices(run.state, node))
            run.out.append(
                Gather(prompts=prompts, language=lang, max_digits=1, hints=hints, timeout_s=timeout)
            )
        else:
            run.out.append(
                Gather(
                    prompts=prompts,
                    language=lang,
                    max_digits=node.max_digits,
                    finish_on_key=node.finish_on_key,
                    timeout_s=timeout,
                )
            )

    def _enqueue(self, run: _Run, queue: str, priority: int, reason: str) -> None:
        run.out.append(
            Enqueue(queue=queue, language=run.state.language, priority=priority, reason=reason)
        )
        run.trace.append(
            Trace("enqueue", self._where(run.state), {"queue": queue, "reason": reason})
        )
        run.state = replace(run.state, ended=True, node=None)
        run.outcome = "enqueued"

    def _to_person(self, run: _Run, flow: Flow, prompt: str, reason: str) -> None:
        self._say(run, (prompt,))
        self._enqueue(run, flow.queue, 0, reason)

    # ------------------------------------------------------------ input handling

    def _red_flag(self, run: _Run, flow: Flow, node: Node, text: str) -> bool:
        phrase = self._red_flags.all_matches(text)
        if not phrase:
            return False
        run.trace.append(Trace("red_flag", self._where(run.state), {"phrase": phrase[0][0]}))
        run.state = replace(run.state, vars={**run.state.vars, "red_flag": phrase[0][0]})
        self._say(run, ("system.red_flag",))
        self._enqueue(run, self.settings.red_flag_queue, RED_FLAG_PRIORITY, "red_flag")
        return True

    def _digits(
        self,
        run: _Run,
        flow: Flow,
        node: MenuNode | AskNode | ChooseNode | CollectNode,
        raw: str,
        clock: Clock,
    ) -> None:
        value = (raw or "").strip()
        if not _DIGITS_RE.match(value):
            run.trace.append(Trace("invalid", self._where(run.state), {"reason": "bad_digits"}))
            self._retry(run, flow, node, "system.invalid", clock)
            return
        if value == "*":
            run.trace.append(Trace("repeat", self._where(run.state)))
            self._gather(run, node)
            return
        if value == "0":
            run.trace.append(Trace("choice", self._where(run.state), {"key": "0"}))
            self._to_person(run, flow, "system.transfer", "caller_request")
            return
        if isinstance(node, MenuNode):
            option = next((o for o in node.options if o.key == value), None)
            if option is None:
                run.trace.append(Trace("invalid", self._where(run.state), {"reason": "no_option"}))
                self._retry(run, flow, node, "system.invalid", clock)
                return
            self._choose(run, flow, node, option.key, "dtmf", clock)
            return
        if isinstance(node, ChooseNode):
            count = len(self._choices(run.state, node))
            if value.isdigit() and 1 <= int(value) <= count:
                self._picked(run, flow, node, int(value), "dtmf", clock)
                return
            run.trace.append(Trace("invalid", self._where(run.state), {"reason": "no_option"}))
            self._retry(run, flow, node, "system.invalid", clock)
            return
        if isinstance(node, AskNode):
            # An open question wants words; keys other than * and 0 are not an answer.
            run.trace.append(Trace("invalid", self._where(run.state), {"reason": "keys_for_ask"}))
            self._retry(run, flow, node, "system.invalid", clock)
            return
        self._collected(run, flow, node, value.rstrip("#"), "dtmf", clock)

    def _menu_speech(self, run: _Run, flow: Flow, node: MenuNode, text: str, clock: Clock) -> None:
        lang = run.state.language
        where = self._where(run.state)
        if not text:
            run.trace.append(Trace("no_input", where, {"via": "speech"}))
            self._retry(run, flow, node, "system.no_input", clock)
            return
        key = self._menus[(flow.name, node.id, lang)].match(text)
        if key is None:
            choice = speech.spoken_choice(text)
            if choice is not None and any(o.key == choice for o in node.options):
                key = choice
            elif choice == "0" or self._person[lang].match(text) or self._person["en"].match(text):
                run.trace.append(Trace("choice", where, {"key": "0", "via": "speech"}))
                self._to_person(run, flow, "system.transfer", "caller_request")
                return
            elif self._repeat[lang].match(text):
                run.trace.append(Trace("repeat", where, {"via": "speech"}))
                self._gather(run, node)
                return
        if key is None and node.otherwise is not None:
            run.trace.append(Trace("heard", where, {"speech": text}))
            run.state = replace(run.state, vars={**run.state.vars, "heard": text})
            self._enter(run, flow.name, node.otherwise, clock)
            return
        if key is None:
            run.trace.append(Trace("invalid", where, {"reason": "not_understood", "speech": text}))
            self._retry(run, flow, node, "system.invalid", clock)
            return
        run.state = replace(run.state, vars={**run.state.vars, "heard": text})
        self._choose(run, flow, node, key, "speech", clock, heard=text)

    def _is_person_or_repeat(
        self, run: _Run, flow: Flow, node: AskNode | ChooseNode, text: str
    ) -> bool:
        lang = run.state.language
        where = self._where(run.state)
        if self._person[lang].match(text) or self._person["en"].match(text):
            run.trace.append(Trace("choice", where, {"key": "0", "via": "speech"}))
            self._to_person(run, flow, "system.transfer", "caller_request")
            return True
        if self._repeat[lang].match(text):
            run.trace.append(Trace("repeat", where, {"via": "speech"}))
            self._gather(run, node)
            return True
        return False

    def _ask_speech(self, run: _Run, flow: Flow, node: AskNode, text: str, clock: Clock) -> None:
        where = self._where(run.state)
        if not text:
            run.trace.append(Trace("no_input", where, {"via": "speech"}))
            self._retry(run, flow, node, "system.no_input", clock)
            return
        if len(speech.normalize(text)) <= 8 and self._is_person_or_repeat(run, flow, node, text):
            return
        run.trace.append(Trace("heard", where, {"store": node.store, "speech": text}))
        run.state = replace(run.state, vars={**run.state.vars, node.store: text})
        self._enter(run, flow.name, node.next, clock)

    def _choices(self, state: SessionState, node: ChooseNode) -> list[str]:
        value: Any = state.vars
        for part in node.options_from.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if not isinstance(value, list):
            return []
        return [str(v) for v in value[:9]]

    def _choose_speech(
        self, run: _Run, flow: Flow, node: ChooseNode, text: str, clock: Clock
    ) -> None:
        where = self._where(run.state)
        if not text:
            run.trace.append(Trace("no_input", where, {"via": "speech"}))
            self._retry(run, flow, node, "system.no_input", clock)
            return
        labels = self._choices(run.state, node)
        matcher = speech.PhraseMatcher((str(i), label) for i, label in enumerate(labels, 1))
        picked = matcher.match(text) or speech.spoken_choice(text)
        if picked is None:
            part = speech.partial_choice(labels, text)
            picked = str(part) if part is not None else None
        if picked is not None and picked.isdigit() and 1 <= int(picked) <= len(labels):
            self._picked(run, flow, node, int(picked), "speech", clock)
            return
        if self._is_person_or_repeat(run, flow, node, text):
            return
        run.trace.append(Trace("invalid", where, {"reason": "not_understood", "speech": text}))
        self._retry(run, flow, node, "system.invalid", clock)

    def _picked(
        self, run: _Run, flow: Flow, node: ChooseNode, number: int, via: str, clock: Clock
    ) -> None:
        run.trace.append(Trace("choice", self._where(run.state), {"key": str(number), "via": via}))
        run.state = replace(run.state, vars={**run.state.vars, node.store: number})
        self._enter(run, flow.name, node.next, clock)

    def _collect_speech(
        self, run: _Run, flow: Flow, node: CollectNode, text: str, clock: Clock
    ) -> None:
        lang = run.state.language
        where = self._where(run.state)
        digits = speech.spoken_digits(text) if text else None
        if digits is None:
            if text and (self._person[lang].match(text) or self._person["en"].match(text)):
                run.trace.append(Trace("choice", where, {"key": "0", "via": "speech"}))
                self._to_person(run, flow, "system.transfer", "caller_request")
                return
            if text and self._repeat[lang].match(text):
                run.trace.append(Trace("repeat", where, {"via": "speech"}))
                self._gather(run, node)
                return
            run.trace.append(Trace("invalid", where, {"reason": "not_digits"}))
            self._retry(run, flow, node, "system.invalid" if text else "system.no_input", clock)
            return
        self._collected(run, flow, node, digits, "speech", clock)

    def _choose(
        self,
        run: _Run,
        flow: Flow,
        node: MenuNode,
        key: str,
        via: str,
        clock: Clock,
        heard: str | None = None,
    ) -> None:
        option = next(o for o in node.options if o.key == key)
        detail: dict[str, Any] = {"key": key, "via": via}
        if heard is not None:
            detail["speech"] = heard
        else:
            # ``heard`` holds the words that chose the option (a flow may search with them);
            # a key press said nothing, so nothing from an earlier answer may linger there.
            if "heard" in run.state.vars:
                kept = {k: v for k, v in run.state.vars.items() if k != "heard"}
                run.state = replace(run.state, vars=kept)
        run.trace.append(Trace("choice", self._where(run.state), detail))
        if option.red_flag:
            run.trace.append(Trace("red_flag", self._where(run.state), {"option": key}))
            run.state = replace(run.state, vars={**run.state.vars, "red_flag": f"option {key}"})
            self._say(run, ("system.red_flag",))
            self._enqueue(run, self.settings.red_flag_queue, RED_FLAG_PRIORITY, "red_flag")
            return
        if option.set_language is not None:
            run.state = replace(run.state, language=option.set_language)
            run.trace.append(Trace("language", self._where(run.state), {"to": option.set_language}))
        self._enter(run, flow.name, option.next, clock)

    def _collected(
        self, run: _Run, flow: Flow, node: CollectNode, value: str, via: str, clock: Clock
    ) -> None:
        where = self._where(run.state)
        value = normalize(node.validate, value)
        ok = node.min_digits <= len(value) <= node.max_digits and VALIDATORS[node.validate](value)
        if not ok:
            run.trace.append(Trace("invalid", where, {"reason": "validation", "via": via}))
            self._retry(run, flow, node, "system.invalid", clock)
            return
        shown = "*" * len(value) if node.sensitive else value
        run.trace.append(
            Trace("collected", where, {"store": node.store, "value": shown, "via": via})
        )
        if node.sensitive:
            # Sensitive answers (PINs, ID numbers) live under ``sealed``: the call service
            # encrypts that part of the session at rest and drops it when the call ends.
            sealed = {**run.state.vars.get(SEALED, {}), node.store: value}
            run.state = replace(run.state, vars={**run.state.vars, SEALED: sealed})
        else:
            run.state = replace(run.state, vars={**run.state.vars, node.store: value})
        self._enter(run, flow.name, node.next, clock)

    def _retry(
        self,
        run: _Run,
        flow: Flow,
        node: MenuNode | AskNode | ChooseNode | CollectNode,
        prompt: str,
        clock: Clock,
    ) -> None:
        limit = node.max_retries if node.max_retries is not None else self.settings.max_retries
        retries = run.state.retries + 1
        if retries > limit:
            run.trace.append(Trace("retries_exhausted", self._where(run.state)))
            self._to_person(run, flow, "system.transfer_after_retries", "retries_exhausted")
            return
        run.state = replace(run.state, retries=retries)
        self._say(run, (prompt,))
        self._gather(run, node)

    def _action_result(
        self, run: _Run, flow: Flow, node: ActionNode, result: ActionResult, clock: Clock
    ) -> None:
        target = node.outcomes.get(result.outcome) or node.outcomes.get("default")
        run.trace.append(
            Trace(
                "action", self._where(run.state), {"action": node.action, "outcome": result.outcome}
            )
        )
        if node.store is not None:
            run.state = replace(run.state, vars={**run.state.vars, node.store: dict(result.data)})
        if target is None:
            self._to_person(run, flow, "system.action_failed", f"action_{result.outcome}")
            return
        self._enter(run, flow.name, target, clock)

    # ------------------------------------------------------------ conditions

    def _holds(self, cond: Condition, state: SessionState, clock: Clock) -> bool:
        if cond.language is not None:
            return state.language == cond.language
        local = clock.now().astimezone(self._tz)
        if cond.time_between is not None:
            return _in_window(local, *cond.time_between)
        if cond.weekday_in is not None:
            return local.isoweekday() in cond.weekday_in
        assert cond.var is not None
        value: Any = state.vars
        for part in cond.var.split("."):  # "found.type" looks inside an action's result
            value = value.get(part) if isinstance(value, Mapping) else None
        if cond.var == "caller" and "caller" not in state.vars:
            value = state.caller  # the caller's number (E.164), when it was not hidden
        present = value not in (None, "")
        if cond.exists is not None:
            return present == cond.exists
        if cond.in_ is not None:
            return value in cond.in_
        if isinstance(value, str) != isinstance(cond.equals, str) and cond.equals is not None:
            # Collected input is text; `equals: 1` in YAML is a number. Compare as written.
            return str(value) == str(cond.equals)
        return bool(value == cond.equals)


def _in_window(local: datetime, start: str, end: str) -> bool:
    """Whether local time-of-day is in [start, end); windows may cross midnight."""
    now = local.time().replace(second=0, microsecond=0)
    begin = time.fromisoformat(start)
    finish = time.fromisoformat(end)
    if begin <= finish:
        return begin <= now < finish
    return now >= begin or now < finish


def _type_name(node: Node) -> str:
    return type(node).__name__.removesuffix("Node").lower()
