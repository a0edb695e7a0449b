"""Twilio webhooks: parse the request, check its signature, call a service, render TwiML.

Every endpoint checks ``X-Twilio-Signature`` against ``TWILIO_AUTH_TOKEN`` and the URL Twilio
called, rebuilt from ``PUBLIC_BASE_URL`` (so the check holds behind a TLS-terminating proxy,
whatever ``Host`` the proxy forwards). Bodies over the configured limit get 413 before
anything is parsed. Voice endpoints that fail answer with the busy fallback rather than an
error, so a caller is never left with Twilio's "application error" message.

Endpoints (stable, documented in the README):

* ``POST /twilio/voice``: a call comes in (the number's voice URL);
* ``POST /twilio/voice/input?step=N``: the answer to the question asked at step N;
* ``POST /twilio/voice/queue``: the caller left the waiting queue (``<Enqueue action>``);
* ``POST /twilio/voice/status``: call status callback (``?o=<outbox id>`` for outbound
  calls: also passed to :meth:`callcenter.recall.outbound.OutboundService.status`, which
  retries or falls back to SMS; the answer URL of those calls is in :mod:`.outbound`);
* ``POST /twilio/fallback``: the number's fallback URL; touches no database;
* ``POST /twilio/sms``: an inbound SMS (opt-out and re-subscribe keywords, numbered answers,
  anything else; see :mod:`callcenter.messaging.inbound`);
* ``POST /twilio/sms/status?o=<outbox id>``: SMS delivery status callback.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, request

from ...calls.service import CallerInput, CallService, Reply
from ...config import Config
from ...ivr.engine import Digits, NoInput, Speech
from ...messaging.inbound import InboundSmsService
from ...recall.outbound import OutboundService
from .signing import signature_check
from .twiml import RenderContext, busy_fallback, message_reply, render

log = logging.getLogger(__name__)
PROVIDER = "twilio"
_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")


def _xml(body: str) -> Response:
    return Response(body, mimetype="text/xml")


def _sid(name: str) -> str:
    value = request.form.get(name, "")
    if not _SID.match(value):
        abort(400, description=f"missing or malformed {name}")
    return value


def _int(value: str | None) -> int | None:
    text = (value or "").strip()
    if not text or not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    return int(text)


def idempotency_token() -> str | None:
    """The provider's retry token (not covered by the signature, so bounded here)."""
    token = request.headers.get("I-Twilio-Idempotency-Token")
    if not token:
        return None
    if len(token) > 100 or not token.isascii():
        return "sha256:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
    return token


def caller_input(form: Any) -> CallerInput:
    """Turn a Gather callback's form into an engine event (speech wins over digits)."""
    speech = form.get("SpeechResult", "")
    if speech and speech.strip():
        confidence: float | None
        try:
            confidence = float(form.get("Confidence", ""))
        except ValueError:
            confidence = None
        if confidence is not None and not math.isfinite(confidence):
            confidence = None
        return Speech(text=speech, confidence=confidence)
    digits = form.get("Digits", "")
    if digits:
        return Digits(value=digits)
    return NoInput()


def create_blueprint(
    config: Config,
    calls: CallService,
    sms: InboundSmsService,
    outbound: OutboundService | None = None,
    queue_exit: Callable[[str, str], None] | None = None,
) -> Blueprint:
    """The Twilio webhook blueprint, bound to the given services. ``queue_exit(call sid,
    QueueResult)`` tells the router a caller left the queue (routing on the phone)."""
    bp = Blueprint("twilio", __name__, url_prefix="/twilio")
    settings = config.settings
    base_url = settings.web.public_base_url
    voices = settings.twilio.voices
    fallback_number = settings.twilio.fallback_number

    signed = signature_check(config)

    def render_reply(reply: Reply) -> Response:
        ctx = RenderContext(
            gather_action=f"{base_url}/twilio/voice/input?step={reply.step}",
            enqueue_action=f"{base_url}/twilio/voice/queue",
            voices=voices,
            fallback_number=fallback_number,
            wait_url=f"{base_url}/twilio/queue/wait" if queue_exit is not None else "",
        )
        return _xml(render(reply.instructions, ctx))

    def busy() -> Response:
        return _xml(busy_fallback(voices, fallback_number))

    @bp.post("/voice")
    @signed
    def voice() -> Response:
        call_sid = _sid("CallSid")
        try:
            reply = calls.begin(
                provider=PROVIDER,
                provider_call_id=call_sid,
                caller=request.form.get("From"),
                called=request.form.get("To"),
                idempotency_key=idempotency_token(),
                direction="inbound",
            )
        except Exception:
            log.exception("call %s could not start; answering with the fallback", call_sid)
            return busy()
        return render_reply(reply)

    @bp.post("/voice/input")
    @signed
    def voice_input() -> Response:
        call_sid = _sid("CallSid")
        step = _int(request.args.get("step"))
        if step is None:
            abort(400, description="missing or malformed step")
        try:
            reply = calls.input(
                provider=PROVIDER,
                provider_call_id=call_sid,
                step=step,
                event=caller_input(request.form),
                idempotency_key=idempotency_token(),
            )
        except Exception:
            log.exception("call %s input failed; answering with the fallback", call_sid)
            return busy()
        return render_reply(reply)

    @bp.post("/voice/queue")
    @signed
    def voice_queue() -> Response:
        call_sid = _sid("CallSid")
        result = request.form.get("QueueResult", "unknown")
        calls.queue_exit(
            provider=PROVIDER,
            provider_call_id=call_sid,
            result=result,
            queue_time_s=_int(request.form.get("QueueTime")),
        )
        if queue_exit is not None:
            queue_exit(call_sid, result[:32])
        return _xml(render((), RenderContext("", "", voices)))

    @bp.post("/voice/status")
    @signed
    def voice_status() -> Response:
        status = request.form.get("CallStatus", "")
        if not status:
            abort(400, description="missing CallStatus")
        calls.provider_status(
            provider=PROVIDER,
            provider_call_id=_sid("CallSid"),
            status=status,
            duration_s=_int(request.form.get("CallDuration")),
            detail={
                k: request.form.get(k, "")[:64]
                for k in ("Direction", "SequenceNumber", "AnsweredBy")
                if k in request.form
            },
        )
        outbox_id = _int(request.args.get("o"))
        if outbound is not None and outbox_id is not None:
            # An outbound call placed by the dispatcher: retry or SMS when not reached.
            outbound.status(
                provider=PROVIDER,
                outbox_id=outbox_id,
                provider_call_id=_sid("CallSid"),
                status=status,
                answered_by=request.form.get("AnsweredBy", "")[:32] or None,
            )
        return Response(status=204)

    @bp.post("/fallback")
    @signed
    def fallback() -> Response:
        # Deliberately touches no database: this answers when everything else is down.
        log.warning(
            "fallback used for call %s (error %s)",
            request.form.get("CallSid", "?")[:64],
            request.form.get("ErrorCode", "?")[:16],
        )
        return busy()

    @bp.post("/sms")
    @signed
    def sms_in() -> Response:
        reply = sms.receive(
            provider=PROVIDER,
            message_id=_sid("MessageSid"),
            sender=request.form.get("From"),
            recipient=request.form.get("To"),
            body=request.form.get("Body", ""),
        )
        return _xml(message_reply(reply))

    @bp.post("/sms/status")
    @signed
    def sms_status() -> Response:
        # The callback URL the dispatcher gives Twilio carries the outbox id as ``?o=<id>``
        # (covered by the signature), so statuses of every copy of a message find its row.
        status = request.form.get("MessageStatus") or request.form.get("SmsStatus") or ""
        if not status:
            abort(400, description="missing MessageStatus")
        error_code = request.form.get("ErrorCode", "").strip()[:32]
        sms.status(
            provider=PROVIDER,
            message_id=_sid("MessageSid"),
            status=status,
            detail={k: request.form.get(k, "")[:64] for k in ("ErrorCode",) if k in request.form},
            error_code=error_code or None,
            outbox_id=_int(request.args.get("o")),
        )
        return Response(status=204)

    return bp
