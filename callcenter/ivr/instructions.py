"""Provider-neutral instructions the engine returns; adapters render them (TwiML, AGI, terminal)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Say:
    """Speak ``text`` in ``language``."""

    text: str
    language: str


@dataclass(frozen=True)
class Pause:
    """Silence for ``seconds``."""

    seconds: int


@dataclass(frozen=True)
class Gather:
    """Play ``prompts`` while listening for keypad digits and/or speech.

    ``max_digits`` is how many digits end the input by themselves (1 for a menu);
    ``finish_on_key`` ends a longer entry early. ``hints`` are phrases the recogniser should
    expect; ``timeout_s`` is how long to wait after the prompt for the caller to start.
    """

    prompts: tuple[Say, ...]
    language: str
    max_digits: int
    finish_on_key: str = ""
    speech: bool = True
    dtmf: bool = True
    hints: tuple[str, ...] = ()
    timeout_s: int = 6


@dataclass(frozen=True)
class Enqueue:
    """Put the caller in the named queue to wait for a person."""

    queue: str
    language: str
    priority: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Dial:
    """Connect the caller to a phone number."""

    number: str


@dataclass(frozen=True)
class SendSms:
    """Ask for an SMS to the caller (the call service writes it to the outbox, never inline)."""

    template: str
    language: str
    params: Mapping[str, Any] = field(default_factory=dict)
    essential: bool = False


@dataclass(frozen=True)
class Hangup:
    """End the call."""


Instruction = Say | Pause | Gather | Enqueue | Dial | SendSms | Hangup


def to_data(instruction: Instruction) -> dict[str, Any]:
    """Serialise an instruction to plain JSON-able data (for replaying a stored response)."""
    kind = type(instruction).__name__
    if isinstance(instruction, Say):
        return {"type": kind, "text": instruction.text, "language": instruction.language}
    if isinstance(instruction, Pause):
        return {"type": kind, "seconds": instruction.seconds}
    if isinstance(instruction, Gather):
        return {
            "type": kind,
            "prompts": [to_data(p) for p in instruction.prompts],
            "language": instruction.language,
            "max_digits": instruction.max_digits,
            "finish_on_key": instruction.finish_on_key,
            "speech": instruction.speech,
            "dtmf": instruction.dtmf,
            "hints": list(instruction.hints),
            "timeout_s": instruction.timeout_s,
        }
    if isinstance(instruction, Enqueue):
        return {
            "type": kind,
            "queue": instruction.queue,
            "language": instruction.language,
            "priority": instruction.priority,
            "reason": instruction.reason,
        }
    if isinstance(instruction, Dial):
        return {"type": kind, "number": instruction.number}
    if isinstance(instruction, SendSms):
        return {
            "type": kind,
            "template": instruction.template,
            "language": instruction.language,
            "params": dict(instruction.params),
            "essential": instruction.essential,
        }
    return {"type": kind}


def from_data(data: Mapping[str, Any]) -> Instruction:
    """Rebuild an instruction from :func:`to_data` output."""
    kind = data["type"]
    if kind == "Say":
        return Say(text=data["text"], language=data["language"])
    if kind == "Pause":
        return Pause(seconds=int(data["seconds"]))
    if kind == "Gather":
        return Gather(
            prompts=tuple(Say(text=p["text"], language=p["language"]) for p in data["prompts"]),
            language=data["language"],
            max_digits=int(data["max_digits"]),
            finish_on_key=data["finish_on_key"],
            speech=bool(data["speech"]),
            dtmf=bool(data["dtmf"]),
            hints=tuple(data["hints"]),
            timeout_s=int(data["timeout_s"]),
        )
    if kind == "Enqueue":
        return Enqueue(
            queue=data["queue"],
            language=data["language"],
            priority=int(data["priority"]),
            reason=data["reason"],
        )
    if kind == "Dial":
        return Dial(number=data["number"])
    if kind == "SendSms":
        return SendSms(
            template=data["template"],
            language=data["language"],
            params=dict(data["params"]),
            essential=bool(data["essential"]),
        )
    if kind == "Hangup":
        return Hangup()
    raise ValueError(f"unknown instruction type {kind!r}")
