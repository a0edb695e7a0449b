"""Sealed message parameters: secrets (a visit password) never sit in the outbox in clear.

A message's secret params are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key
derived from ``SECRET_KEY`` with HKDF-SHA256, stored in ``outbox.sealed``, opened only by the
dispatcher just before rendering, and erased once the message is final. Rotating
``SECRET_KEY`` makes messages sealed under the old key unreadable: they fail with a clear
reason instead of going out wrong.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: HKDF context: a key derived for the outbox is useless for anything else.
_INFO = b"callcenter outbox sealed params v1"
_SALT = b"callcenter.messaging.sealing"


class SealingError(Exception):
    """A sealed value cannot be made or opened (no key, wrong key, damaged data)."""


class Sealer:
    """Encrypts and decrypts the secret params of outbox messages."""

    def __init__(self, secret_key: str | None) -> None:
        self._fernet: Fernet | None = None
        if secret_key:
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(
                secret_key.encode("utf-8")
            )
            self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def _key(self) -> Fernet:
        if self._fernet is None:
            raise SealingError("SECRET_KEY is not set: it is needed to seal message secrets")
        return self._fernet

    def seal(self, values: Mapping[str, str]) -> str:
        """Encrypt ``values`` (text params) into one opaque token."""
        clean = {str(k): str(v) for k, v in values.items()}
        payload = json.dumps(clean, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return self._key().encrypt(payload).decode("ascii")

    def open(self, token: str) -> dict[str, str]:
        """Decrypt a token made by :meth:`seal`; :class:`SealingError` when it cannot."""
        try:
            data = json.loads(self._key().decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError) as exc:
            raise SealingError(
                "sealed params cannot be opened (key changed or data damaged)"
            ) from exc
        if not isinstance(data, dict):
            raise SealingError("sealed params are not a mapping")
        return {str(k): str(v) for k, v in data.items()}
