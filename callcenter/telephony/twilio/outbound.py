"""Twilio webhook for outbound calls: ``POST /twilio/voice/outbound?o=<outbox id>``.

The dispatcher places each outbound call (recall, results, voice reminder) with this answer
URL; Twilio fetches it when the call is answered, with ``AnsweredBy`` when answering-machine
detection ran (``MachineDetection`` on the call). The view checks the signature (the outbox
id is in the signed URL), hands the call to :class:`~callcenter.recall.outbound.
OutboundService`, which runs the named flow, and renders its instructions as TwiML; the
caller's answers then come to ``/twilio/voice/input`` like any call's. Status callbacks of
outbound calls arrive at ``/twilio/voice/status?o=<outbox id>``
(:mod:`.webhooks`), which passes them on to :meth:`OutboundService.status`.

A call the service cannot place in a flow (an unknown outbox id, a failure) hears nothing
personal: a short apology, then the call ends.
"""

from __future__ import annotations

import logging
import re

from flask import Blueprint, Response, abort, request

from ...config import Config
from ...ivr.instructions import Hangup, Say
from ...recall.outbound import OutboundService
from .signing import signature_check
from .twiml import RenderContext, render
from .webhooks import PROVIDER, idempotency_token

log = logging.getLogger(__name__)
_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")
_SORRY = {
    "zh-CN": "抱歉，这里是健康热线，此次通知暂时无法播放，请稍后致电本热线。再见。",
    "en": "Sorry, this is the Health Hotline. This message cannot be played now; please call "
    "the hotline later. Goodbye.",
}


def _xml(body: str) -> Response:
    return Response(body, mimetype="text/xml")


def create_blueprint(config: Config, outbound: OutboundService) -> Blueprint:
    """The outbound-call webhook blueprint, bound to ``outbound``."""
    bp = Blueprint("twilio_outbound", __name__, url_prefix="/twilio")
    settings = config.settings
    base_url = settings.web.public_base_url
    voices = settings.twilio.voices
    signed = signature_check(config)

    def context(step: int = 0) -> RenderContext:
        return RenderContext(
            gather_action=f"{base_url}/twilio/voice/input?step={step}",
            enqueue_action=f"{base_url}/twilio/voice/queue",
            voices=voices,
            fallback_number=settings.twilio.fallback_number,
        )

    def sorry() -> Response:
        language = settings.ivr.default_language
        text = _SORRY.get(language, _SORRY["zh-CN"])
        return _xml(render((Say(text, language), Hangup()), context()))

    @bp.post("/voice/outbound")
    @signed
    def answer() -> Response:
        call_sid = request.form.get("CallSid", "")
        if not _SID.match(call_sid):
            abort(400, description="missing or malformed CallSid")
        raw = (request.args.get("o") or "").strip()
        if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
            abort(400, description="missing or malformed o (outbox id)")
        try:
            reply = outbound.answer(
                provider=PROVIDER,
                outbox_id=int(raw),
                provider_call_id=call_sid,
                answered_by=request.form.get("AnsweredBy", "")[:32] or None,
                idempotency_key=idempotency_token(),
            )
        except Exception:
            log.exception("outbound call %s (outbox %s) could not start", call_sid, raw)
            return sorry()
        if reply is None:
            return sorry()
        return _xml(render(reply.instructions, context(reply.step)))

    return bp
