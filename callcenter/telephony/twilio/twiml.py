"""Render provider-neutral instructions as TwiML. Pure: instructions in, XML text out.

Text from flows, the knowledge base or a caller is data: the ``twilio`` TwiML builder writes
it through ElementTree, so ``<``, ``&`` and quotes are escaped and nothing a caller says can
become markup.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from twilio.twiml.voice_response import Gather as TwimlGather
from twilio.twiml.voice_response import VoiceResponse

from ...config import VoiceConfig
from ...ivr import instructions as ins

#: Twilio's limit on the total length of speech hints.
MAX_HINTS_CHARS = 500
#: Characters XML 1.0 cannot carry at all (a document holding one does not parse).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: str) -> str:
    """``text`` with the characters XML cannot carry replaced by spaces."""
    return _NOT_XML.sub(" ", text)


@dataclass(frozen=True)
class RenderContext:
    """Where Twilio should post what happens next."""

    gather_action: str
    enqueue_action: str
    voices: Mapping[str, VoiceConfig]
    fallback_number: str = ""
    #: the queue's wait URL (``/twilio/queue/wait``); the queue and language are added
    wait_url: str = ""


def queue_name(queue: str, language: str) -> str:
    """The Twilio queue a caller waits in: one per topic and language (``general-zh-CN``)."""
    return f"{queue}-{language}"


def _say(parent: VoiceResponse | TwimlGather, item: ins.Say, ctx: RenderContext) -> None:
    voice = ctx.voices[item.language]
    parent.say(xml_text(item.text), voice=voice.say_voice, language=voice.say_language)


def render(instructions: Sequence[ins.Instruction], ctx: RenderContext) -> str:
    """Return the TwiML document for ``instructions``."""
    response = VoiceResponse()
    for item in instructions:
        if isinstance(item, ins.Say):
            _say(response, item, ctx)
        elif isinstance(item, ins.Pause):
            response.pause(length=item.seconds)
        elif isinstance(item, ins.Gather):
            voice = ctx.voices[item.language]
            inputs = " ".join(
                name for name, on in (("dtmf", item.dtmf), ("speech", item.speech)) if on
            )
            attrs: dict[str, object] = {
                "input": inputs,
                "action": ctx.gather_action,
                "method": "POST",
                "timeout": item.timeout_s,
                "action_on_empty_result": True,
                "language": voice.gather_language,
            }
            if item.max_digits == 1:
                attrs["num_digits"] = 1
            else:
                attrs["num_digits"] = item.max_digits
                attrs["finish_on_key"] = item.finish_on_key
            if item.speech:
                attrs["speech_timeout"] = "auto"
                if voice.speech_model:
                    attrs["speech_model"] = voice.speech_model
                hints = _hints(tuple(item.hints))
                if hints:
                    attrs["hints"] = hints
            gather = response.gather(**attrs)
            for prompt in item.prompts:
                _say(gather, prompt, ctx)
        elif isinstance(item, ins.Enqueue):
            waiting: dict[str, object] = {}
            if ctx.wait_url:
                query = urlencode({"lang": item.language, "q": item.queue})
                waiting = {"wait_url": f"{ctx.wait_url}?{query}", "wait_url_method": "POST"}
            response.enqueue(
                xml_text(queue_name(item.queue, item.language)),
                action=ctx.enqueue_action,
                method="POST",
                **waiting,
            )
        elif isinstance(item, ins.Dial):
            response.dial(item.number)
        elif isinstance(item, ins.Hangup):
            response.hangup()
        # SendSms is handled by the call service (outbox), never rendered.
    return str(response)


@functools.lru_cache(maxsize=512)
def _hints(words: tuple[str, ...]) -> str:
    """Comma-separated hints within Twilio's length limit (commas removed from words).

    Cached: a menu offers the same hints every time it is asked."""
    out: list[str] = []
    used = 0
    for word in words:
        clean = xml_text(word).replace(",", " ").strip()
        if not clean:
            continue
        cost = len(clean) + (1 if out else 0)
        if used + cost > MAX_HINTS_CHARS:
            break
        out.append(clean)
        used += cost
    return ",".join(out)


def busy_fallback(voices: Mapping[str, VoiceConfig], fallback_number: str) -> str:
    """The fallback document: a short apology in both languages, then a person if configured."""
    response = VoiceResponse()
    zh = voices["zh-CN"]
    en = voices["en"]
    response.say(
        "系统繁忙，正在为您转接人工服务，请稍候。如遇急症请拨打120。",
        voice=zh.say_voice,
        language=zh.say_language,
    )
    response.say(
        "The system is busy. Connecting you to a person. In an emergency, call 120.",
        voice=en.say_voice,
        language=en.say_language,
    )
    if fallback_number:
        response.dial(fallback_number)
    else:
        response.say(
            "抱歉，请稍后再拨。Sorry, please call again later.",
            voice=zh.say_voice,
            language=zh.say_language,
        )
        response.hangup()
    return str(response)


def message_reply(text: str | None) -> str:
    """A TwiML messaging reply (empty when ``text`` is ``None``)."""
    from twilio.twiml.messaging_response import MessagingResponse

    response = MessagingResponse()
    if text:
        response.message(xml_text(text))
    return str(response)
