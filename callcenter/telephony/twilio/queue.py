"""Twilio webhooks for routing on the phone: the queue's wait URL, callbacks, agents' and
experts' calls, and conference status callbacks.

Every endpoint checks ``X-Twilio-Signature`` (:func:`~.signing.signature_check`), parses the
request, calls :class:`~callcenter.routing.phone.PhoneRouting` and renders TwiML. None calls
Twilio's REST API: what needs one (moving the caller into the conference, dialling a
callback, hanging a leg up) is a task the ``callcenter router`` loop runs.

Endpoints (under ``/twilio/queue``):

* ``POST /wait?q=<queue>&lang=<language>``: ``<Enqueue waitUrl>``: position (announced while it
  is 5 or less), estimated wait, "press 1 to be called back" when the wait is long, a short
  health message, then hold music or a pause; Twilio asks again when that has played;
* ``POST /callback?lang=<language>``: the caller's key press from the wait URL's ``<Gather>``;
* ``POST /agent?a=<agent>&c=<call>``: the agent picked up: the whisper (queue, red flag,
  callback), "press any key to take the call";
* ``POST /agent/accept?a=<agent>&c=<call>``: the key press: the agent joins the call's
  conference (the caller follows);
* ``POST /agent/status?a=<agent>&c=<call>``: status callback of the agent's leg;
* ``POST /join?c=<call>``: the queued caller, redirected into the conference;
* ``POST /callback/answer?c=<call>``, ``POST /callback/status?c=<call>``: the callback leg;
* ``POST /expert?e=<escalation>``, ``POST /expert/status?e=<escalation>``: the expert's leg;
* ``POST /conference?c=<call>``: conference status callbacks (join, leave, end), recorded.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping

from flask import Blueprint, Response, abort, request
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from ...config import Config, VoiceConfig
from ...routing.phone import (
    PATH_CONFERENCE,
    PATH_WAIT,
    PhoneRouting,
    WaitInfo,
    Whisper,
    sign_url,
)
from .signing import signature_check
from .twiml import xml_text

log = logging.getLogger(__name__)
_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")

#: Short, reviewed, non-diagnostic messages played between announcements (zh-CN, en).
HEALTH_MESSAGES: Mapping[str, tuple[str, ...]] = {
    "zh-CN": (
        "温馨提示：如出现胸痛、呼吸困难、口角歪斜或说话不清，请立即挂机拨打120。",
        "温馨提示：就诊时请携带身份证和医保卡。",
        "温馨提示：您也可以通过本热线预约挂号，预约成功后会收到短信。",
    ),
    "en": (
        "A reminder: for chest pain, difficulty breathing, a drooping face or slurred speech, "
        "hang up and call 120 now.",
        "Please bring your ID card and medical insurance card to your visit.",
        "You can also book appointments through this hotline; a text message confirms them.",
    ),
}

TEXT: Mapping[str, Mapping[str, str]] = {
    "zh-CN": {
        "position": "您现在排在第{n}位。",
        "soon": "坐席即将为您接听。",
        "wait_one": "预计等待约1分钟。",
        "wait": "预计等待约{m}分钟。",
        "busy": "目前所有坐席都在忙，请您耐心等待。",
        "urgent": "如情况紧急，请挂机拨打120。",
        "offer": "如需稍后回拨并保留您的排队位置，请按1。",
        "callback_ok": "好的，我们将回拨尾号{d}的电话，您的排队位置会保留。您现在可以挂机了。",
        "callback_no_number": "抱歉，无法识别您的来电号码，暂时不能回拨。请继续等待。",
        "callback_not_waiting": "坐席正在为您接通，请稍候。",
        "whisper": "健康热线来电，{queue}队列。",
        "whisper_red": "紧急情况，请优先处理。",
        "whisper_callback": "这是一通回拨。",
        "whisper_press": "按任意键接听。",
        "whisper_missed": "未接听，来电将转给其他坐席。",
        "gone": "该来电已被接听或已挂断。",
        "connecting": "正在接通。",
        "callback_hello": "您好，这里是健康热线，为您回电。正在为您接通坐席，请稍候。",
        "callback_gone": "抱歉，本次回拨已取消。",
        "expert": "健康热线专家会诊，{specialty}。问题已显示在您的工作台上，正在接入通话。",
        "expert_gone": "该会诊已结束，谢谢。",
    },
    "en": {
        "position": "You are number {n} in the queue.",
        "soon": "An agent will be with you shortly.",
        "wait_one": "The estimated wait is about 1 minute.",
        "wait": "The estimated wait is about {m} minutes.",
        "busy": "All our agents are busy. Please hold.",
        "urgent": "If this is an emergency, hang up and call 120.",
        "offer": "To be called back later and keep your place in the queue, press 1.",
        "callback_ok": (
            "We will call you back on the number ending {d}, and you keep your place. "
            "You may hang up now."
        ),
        "callback_no_number": (
            "Sorry, we cannot read your phone number, so we cannot call you back. Please hold."
        ),
        "callback_not_waiting": "An agent is about to answer. Please hold.",
        "whisper": "Health Hotline call, {queue} queue.",
        "whisper_red": "Urgent: red flag.",
        "whisper_callback": "This is a callback.",
        "whisper_press": "Press any key to take the call.",
        "whisper_missed": "Not taken; the call goes to another agent.",
        "gone": "This call was answered elsewhere or the caller hung up.",
        "connecting": "Connecting.",
        "callback_hello": (
            "Hello, this is the Health Hotline calling you back. Connecting you to an agent."
        ),
        "callback_gone": "Sorry, this callback was cancelled.",
        "expert": (
            "Health Hotline expert consult, {specialty}. The question is on your screen. "
            "Joining the call."
        ),
        "expert_gone": "This consult has ended. Thank you.",
    },
}


def _xml(body: str) -> Response:
    return Response(body, mimetype="text/xml")


def announcement(info: WaitInfo) -> list[str]:
    """What a waiting caller hears at the start of each wait cycle (pure; for tests too)."""
    text = TEXT[info.language if info.language in TEXT else "zh-CN"]
    lines: list[str] = []
    if info.red_flag:
        lines.append(text["urgent"])
    if info.announce_position:
        lines.append(text["position"].format(n=info.position))
    if info.estimated_wait_s is None:
        lines.append(text["busy"])
    elif info.estimated_wait_s <= 0:
        lines.append(text["soon"])
    else:
        minutes = max(1, math.ceil(info.estimated_wait_s / 60))
        lines.append(text["wait_one"] if minutes == 1 else text["wait"].format(m=minutes))
    return lines


def whisper_text(whisper: Whisper) -> str:
    """What the agent hears on picking up."""
    text = TEXT[whisper.language if whisper.language in TEXT else "zh-CN"]
    parts = [text["whisper"].format(queue=whisper.queue)]
    if whisper.red_flag:
        parts.append(text["whisper_red"])
    if whisper.callback:
        parts.append(text["whisper_callback"])
    return "".join(parts) if whisper.language == "zh-CN" else " ".join(parts)


def create_blueprint(config: Config, phone: PhoneRouting) -> Blueprint:
    """The queue blueprint, bound to the phone routing service."""
    bp = Blueprint("twilio_queue", __name__, url_prefix="/twilio/queue")
    settings = config.settings
    base_url = settings.web.public_base_url
    voices: Mapping[str, VoiceConfig] = settings.twilio.voices
    cycle_s = settings.routing.phone.wait_cycle_s
    music = settings.routing.phone.hold_music_url
    accept_timeout = settings.routing.phone.agent_accept_timeout_s
    signed = signature_check(config)

    def lang_of(value: str | None) -> str:
        return value if value is not None and value in voices else "zh-CN"

    def say(parent: VoiceResponse | Gather, language: str, line: str) -> None:
        voice = voices[language]
        parent.say(xml_text(line), voice=voice.say_voice, language=voice.say_language)

    def arg(name: str, pattern: re.Pattern[str] = _ID) -> str:
        value = request.args.get(name, "")
        if not pattern.match(value):
            abort(400, description=f"missing or malformed {name}")
        return value

    def form_sid(name: str) -> str | None:
        value = request.form.get(name, "")
        return value if _SID.match(value) else None

    def status_of() -> str:
        status = request.form.get("CallStatus", "")
        if not status:
            abort(400, description="missing CallStatus")
        return status[:32]

    def conference(dial: Dial, name: str, call_id: str, *, ends_it: bool) -> None:
        dial.conference(
            xml_text(name),
            start_conference_on_enter=True,
            end_conference_on_exit=ends_it,
            beep=False,
            status_callback=sign_url(base_url, PATH_CONFERENCE, c=call_id),
            status_callback_method="POST",
            status_callback_event="start end join leave",
        )

    def hold(response: VoiceResponse, language: str, turn: int) -> None:
        messages = HEALTH_MESSAGES[language]
        say(response, language, messages[turn % len(messages)])
        if music:
            response.play(music)
        else:
            response.pause(length=cycle_s)

    # ---------------------------------------------------------------- the queue

    @bp.post("/wait")
    @signed
    def wait() -> Response:
        call_id = form_sid("CallSid")
        if call_id is None:
            abort(400, description="missing or malformed CallSid")
        queue = arg("q")
        language = lang_of(request.args.get("lang"))
        response = VoiceResponse()
        try:
            info = phone.waiting(call_id, queue, language)
        except Exception:
            log.exception("call %s: wait URL failed; playing hold only", call_id)
            info = None
        turn = 0
        queue_time = request.form.get("QueueTime", "")
        if queue_time.isascii() and queue_time.isdigit() and len(queue_time) < 9:
            turn = int(queue_time) // cycle_s
        if info is not None:
            language = lang_of(info.language)
            lines = announcement(info)
            if info.offer_callback:
                gather = response.gather(
                    num_digits=1,
                    action=sign_url(base_url, "/twilio/queue/callback", lang=language),
                    method="POST",
                    timeout=5,
                )
                for line in lines:
                    say(gather, language, line)
                say(gather, language, TEXT[language]["offer"])
            else:
                for line in lines:
                    say(response, language, line)
        hold(response, language, turn)
        return _xml(str(response))

    @bp.post("/callback")
    @signed
    def callback() -> Response:
        call_id = form_sid("CallSid")
        if call_id is None:
            abort(400, description="missing or malformed CallSid")
        language = lang_of(request.args.get("lang"))
        text = TEXT[language]
        response = VoiceResponse()
        digits = request.form.get("Digits", "")
        if digits != "1":
            response.redirect(_wait_url(base_url, phone, call_id, language), method="POST")
            return _xml(str(response))
        result = phone.request_callback(call_id)
        if result.accepted:
            say(response, language, text["callback_ok"].format(d=result.last_digits))
            response.leave()
        else:
            key = "callback_no_number" if result.reason == "no_number" else "callback_not_waiting"
            say(response, language, text[key])
            response.redirect(_wait_url(base_url, phone, call_id, language), method="POST")
        return _xml(str(response))

    # ---------------------------------------------------------------- agents

    @bp.post("/agent")
    @signed
    def agent() -> Response:
        agent_id, call_id = arg("a"), arg("c", _SID)
        whisper = phone.whisper(call_id, agent_id)
        response = VoiceResponse()
        if whisper is None:
            say(response, "zh-CN", TEXT["zh-CN"]["gone"])
            response.hangup()
            return _xml(str(response))
        language = lang_of(whisper.language)
        gather = response.gather(
            num_digits=1,
            action=sign_url(base_url, "/twilio/queue/agent/accept", a=agent_id, c=call_id),
            method="POST",
            timeout=accept_timeout,
        )
        say(gather, language, whisper_text(whisper))
        say(gather, language, TEXT[language]["whisper_press"])
        say(response, language, TEXT[language]["whisper_missed"])
        response.hangup()
        return _xml(str(response))

    @bp.post("/agent/accept")
    @signed
    def agent_accept() -> Response:
        agent_id, call_id = arg("a"), arg("c", _SID)
        response = VoiceResponse()
        name = phone.agent_accepted(call_id, agent_id) if request.form.get("Digits") else None
        if name is None:
            say(response, "zh-CN", TEXT["zh-CN"]["gone"])
            response.hangup()
            return _xml(str(response))
        say(response, "zh-CN", TEXT["zh-CN"]["connecting"])
        dial = response.dial()
        conference(dial, name, call_id, ends_it=False)
        return _xml(str(response))

    @bp.post("/agent/status")
    @signed
    def agent_status() -> Response:
        agent_id, call_id = arg("a"), arg("c", _SID)
        phone.agent_leg_status(call_id, agent_id, status_of())
        return Response(status=204)

    # ---------------------------------------------------------------- the caller

    @bp.post("/join")
    @signed
    def join() -> Response:
        call_id = arg("c", _SID)
        response = VoiceResponse()
        dial = response.dial()
        conference(dial, f"hh-{call_id}", call_id, ends_it=True)
        return _xml(str(response))

    @bp.post("/callback/answer")
    @signed
    def callback_answer() -> Response:
        call_id = arg("c", _SID)
        found = phone.callback_answered(call_id)
        response = VoiceResponse()
        if found is None:
            say(response, "zh-CN", TEXT["zh-CN"]["callback_gone"])
            response.hangup()
            return _xml(str(response))
        name, language = found
        language = lang_of(language)
        say(response, language, TEXT[language]["callback_hello"])
        dial = response.dial()
        conference(dial, name, call_id, ends_it=True)
        return _xml(str(response))

    @bp.post("/callback/status")
    @signed
    def callback_status() -> Response:
        phone.callback_leg_status(arg("c", _SID), status_of())
        return Response(status=204)

    # ---------------------------------------------------------------- experts

    @bp.post("/expert")
    @signed
    def expert() -> Response:
        escalation_id = arg("e")
        brief = phone.expert_brief(escalation_id)
        response = VoiceResponse()
        if brief is None:
            say(response, "zh-CN", TEXT["zh-CN"]["expert_gone"])
            response.hangup()
            return _xml(str(response))
        say(response, "zh-CN", TEXT["zh-CN"]["expert"].format(specialty=brief.specialty))
        dial = response.dial()
        conference(dial, brief.conference, brief.conference.removeprefix("hh-"), ends_it=False)
        return _xml(str(response))

    @bp.post("/expert/status")
    @signed
    def expert_status() -> Response:
        phone.expert_leg_status(arg("e"), status_of())
        return Response(status=204)

    # ---------------------------------------------------------------- conferences

    @bp.post("/conference")
    @signed
    def conference_status() -> Response:
        call_id = arg("c", _SID)
        event = request.form.get("StatusCallbackEvent", "")
        if not event:
            abort(400, description="missing StatusCallbackEvent")
        sequence_text = request.form.get("SequenceNumber", "")
        sequence = (
            int(sequence_text)
            if sequence_text.isascii() and sequence_text.isdigit() and len(sequence_text) < 9
            else None
        )
        phone.conference_event(call_id, event, form_sid("CallSid"), sequence)
        return Response(status=204)

    return bp


def _wait_url(base_url: str, phone: PhoneRouting, call_id: str, language: str) -> str:
    info = phone.where(call_id)
    queue = info.queue if info is not None else "general"
    return sign_url(base_url, PATH_WAIT, lang=language, q=queue)
