"""The terminal simulator: "call" the hotline without a phone line.

It drives the same :class:`~callcenter.calls.service.CallService`, flows and database as the
Twilio webhooks, so a dialogue in the terminal is the dialogue a caller would have. Input rules:
a line of keypad characters (``0-9 * #``) is key presses, an empty line is silence (the
timeout), ``/hangup`` hangs up, anything else is speech.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from .calls.service import CallerInput, CallService, Reply
from .ivr import instructions as ins
from .ivr.engine import Digits, NoInput, Speech
from .phone import mask

PROVIDER = "sim"
KEYPAD = frozenset("0123456789*#")
HANGUP = "/hangup"

_LABELS = {
    "zh-CN": {
        "system": "系统",
        "caller": "来电者",
        "listen": "（请按键或说话；空行 = 不作答，/hangup = 挂机）",
        "silence": "（沉默）",
        "queue": "转入人工队列 {queue}（优先级 {priority}）——模拟通话到此结束",
        "hangup": "系统挂机",
        "caller_hangup": "来电者挂机",
        "dial": "转接电话 {number}",
        "begin": "模拟来电 {caller} → 健康热线",
        "sms": "（已记录短信发送请求：{template}）",
    },
    "en": {
        "system": "Hotline",
        "caller": "Caller",
        "listen": "(press keys or speak; empty line = silence, /hangup = hang up)",
        "silence": "(silence)",
        "queue": "Waiting for a person in queue {queue} (priority {priority}): simulation ends",
        "hangup": "Hotline hung up",
        "caller_hangup": "Caller hung up",
        "dial": "Transferring to {number}",
        "begin": "Simulated call from {caller} to the Health Hotline",
        "sms": "(SMS request recorded: {template})",
    },
}


def parse_input(line: str) -> CallerInput | None:
    """Read one typed line as caller input; ``None`` means hang up."""
    text = line.strip()
    if text == HANGUP:
        return None
    if not text:
        return NoInput()
    if all(ch in KEYPAD for ch in text):
        return Digits(text)
    return Speech(text)


@dataclass
class SimulatedCall:
    """The result of a simulated call: the lines printed and where the call ended."""

    call_id: str
    lines: list[str] = field(default_factory=list)
    outcome: str = ""
    replies: list[Reply] = field(default_factory=list)


class Simulator:
    """Runs one call in the terminal (interactive) or from a list of inputs (``--script``)."""

    def __init__(self, calls: CallService, out: TextIO, *, label_language: str = "zh-CN") -> None:
        self.calls = calls
        self.out = out
        self.labels = _LABELS["en" if label_language == "en" else "zh-CN"]
        self._fixed_labels = False

    def _print(self, result: SimulatedCall, line: str) -> None:
        result.lines.append(line)
        self.out.write(line + "\n")
        self.out.flush()

    def _show(self, result: SimulatedCall, reply: Reply) -> bool:
        """Print a reply; return ``True`` when the call waits for input."""
        if not self._fixed_labels:
            self.labels = _LABELS["en" if reply.language == "en" else "zh-CN"]
        result.replies.append(reply)
        waiting = False
        for item in reply.instructions:
            if isinstance(item, ins.Say):
                self._print(result, f"{self.labels['system']}: {item.text}")
            elif isinstance(item, ins.Gather):
                for prompt in item.prompts:
                    self._print(result, f"{self.labels['system']}: {prompt.text}")
                waiting = True
            elif isinstance(item, ins.Enqueue):
                text = self.labels["queue"].format(
                    queue=f"{item.queue}-{item.language}", priority=item.priority
                )
                self._print(result, f"[{text}]")
                result.outcome = f"enqueued:{item.queue}"
            elif isinstance(item, ins.Dial):
                self._print(result, f"[{self.labels['dial'].format(number=mask(item.number))}]")
                result.outcome = "dialled"
            elif isinstance(item, ins.Hangup):
                self._print(result, f"[{self.labels['hangup']}]")
                result.outcome = "hangup"
        return waiting and not reply.ended

    def run(
        self,
        inputs: Iterable[str] | Callable[[], str | None],
        *,
        caller: str | None,
        language: str | None = None,
        called: str | None = None,
    ) -> SimulatedCall:
        """Run a call. ``inputs`` is a list of lines, or a function returning the next line
        (``None`` at end of input, e.g. Ctrl-D)."""
        result = SimulatedCall(call_id="SIM" + uuid.uuid4().hex)
        if language is not None:
            self.labels = _LABELS["en" if language == "en" else "zh-CN"]
            self._fixed_labels = True
        next_line = _reader(inputs)
        self._print(result, f"=== {self.labels['begin'].format(caller=mask(caller))} ===")
        reply = self.calls.begin(
            provider=PROVIDER,
            provider_call_id=result.call_id,
            caller=caller,
            called=called,
            language=language,
        )
        while self._show(result, reply):
            line = next_line()
            if line is None:
                break
            event = parse_input(line)
            shown = line.strip() if line.strip() else self.labels["silence"]
            self._print(result, f"{self.labels['caller']}: {shown}")
            if event is None:
                break
            reply = self.calls.input(
                provider=PROVIDER, provider_call_id=result.call_id, step=reply.step, event=event
            )
        if not result.outcome:
            result.outcome = "caller_hangup"
            self._print(result, f"[{self.labels['caller_hangup']}]")
        self.calls.provider_status(
            provider=PROVIDER, provider_call_id=result.call_id, status="completed"
        )
        return result


def _reader(inputs: Iterable[str] | Callable[[], str | None]) -> Callable[[], str | None]:
    if callable(inputs):
        return inputs
    iterator: Iterator[str] = iter(list(inputs))
    return lambda: next(iterator, None)
