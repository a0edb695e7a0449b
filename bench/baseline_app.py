"""The benchmark baseline: a minimal Flask app that answers every POST with a fixed TwiML menu.

Served by gunicorn with the same settings as the hotline, it shows what the web stack alone
costs, so the hotline's figures can be read against it.
"""

from __future__ import annotations

from flask import Flask, Response

FIXED_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/twilio/voice/input?step=1" '
    'input="dtmf speech" numDigits="1" language="zh-CN" timeout="6">'
    '<Say language="cmn-CN" voice="Polly.Zhiyu">查询医院请按1；预约挂号请按2；人工服务请按0。</Say>'
    "</Gather></Response>"
)

application = Flask(__name__)


@application.post("/<path:path>")
def fixed(path: str) -> Response:
    """Return the same TwiML document for any path."""
    return Response(FIXED_TWIML, mimetype="text/xml")
