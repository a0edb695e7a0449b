"""Checking Twilio's ``X-Twilio-Signature`` on every webhook, shared by all Twilio blueprints.

The URL Twilio signed is rebuilt from ``PUBLIC_BASE_URL`` (so the check holds behind a
TLS-terminating proxy, whatever ``Host`` the proxy forwards). Bodies over the configured limit
get 413 before anything is parsed; a missing, forged or replayed-to-another-URL signature 403.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import abort, request
from twilio.request_validator import RequestValidator, get_signature_algorithm

from ...config import Config

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def signature_check(config: Config) -> Callable[[F], F]:
    """A view decorator that refuses requests Twilio did not sign for this URL."""
    settings = config.settings
    base_url = settings.web.public_base_url
    token = config.secrets.twilio_auth_token
    validator = RequestValidator(token) if token else None
    max_body = settings.web.max_body_bytes

    def signed(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            length = request.content_length
            if length is not None and length > max_body:
                abort(413)
            signature = request.headers.get("X-Twilio-Signature", "")
            if validator is None or not signature:
                log.warning("twilio webhook %s without a signature refused", request.path)
                abort(403)
            url = base_url + request.full_path.rstrip("?")
            algorithm = get_signature_algorithm(
                request.headers.get("X-Twilio-Webhooks-Signature-Settings")
            )
            # Twilio signs the URL it requested: check that one first (one HMAC); the library
            # also tries the URL with and without an explicit port, for the rare proxy that
            # changes it.
            try:
                exact = validator.compute_signature(url, request.form, algorithm)
            except ValueError:  # an algorithm the library does not know
                exact = ""
            if exact and hmac.compare_digest(exact, signature):
                return view(*args, **kwargs)
            if not validator.validate(url, request.form, signature, algorithm):
                log.warning("twilio webhook %s with a bad signature refused", request.path)
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return signed
