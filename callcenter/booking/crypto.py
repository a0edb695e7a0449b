"""Secrets of the booking service: visit numbers, visit passwords and identity-number HMACs.

* Visit numbers are 8 random digits and passwords 6 random digits, drawn with :mod:`secrets`.
* A password is stored only as ``scrypt$<log2 N>$<r>$<p>$<salt>$<hash>``: scrypt (RFC 7914) over
  HMAC-SHA256(pepper, password), with a random 16-byte salt per password. The pepper is
  derived from ``SECRET_KEY`` and never stored, so a copy of the database alone cannot be
  brute-forced through the one million possible passwords.
* Identity numbers are looked up by HMAC-SHA256 under another key derived from
  ``SECRET_KEY``; the number itself is not stored.

Changing ``SECRET_KEY`` makes existing passwords unverifiable (operators reset them) and
existing patients unfindable by identity number (they are created again on next booking).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .ports import IdType

_ID_LABEL = b"callcenter booking identity-number v1"
_PEPPER_LABEL = b"callcenter booking visit-password pepper v1"
_R = 8
_P = 1


def _derive(secret_key: str, label: bytes) -> bytes:
    return hmac.new(secret_key.encode("utf-8"), label, hashlib.sha256).digest()


def new_visit_number() -> str:
    """8 random digits, never starting with 0 (so no system drops a leading zero)."""
    return str(10_000_000 + secrets.randbelow(90_000_000))


def new_password() -> str:
    """6 random digits (leading zeros kept)."""
    return f"{secrets.randbelow(1_000_000):06d}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class BookingSecrets:
    """Hashes visit passwords and identity numbers with keys derived from ``SECRET_KEY``."""

    def __init__(self, secret_key: str, *, cost: int) -> None:
        if not secret_key:
            raise ValueError("SECRET_KEY is needed to hash visit passwords and identity numbers")
        if not 4 <= cost <= 20:
            raise ValueError("password_hash_cost is log2 of scrypt's N, from 4 to 20")
        self._id_key = _derive(secret_key, _ID_LABEL)
        self._pepper = _derive(secret_key, _PEPPER_LABEL)
        self.cost = cost

    def id_hmac(self, id_type: IdType, normalized: str) -> str:
        """The look-up key of a normalised identity number (hex)."""
        message = f"{id_type}:{normalized}".encode()
        return hmac.new(self._id_key, message, hashlib.sha256).hexdigest()

    def _scrypt(self, password: str, salt: bytes, cost: int, r: int, p: int) -> bytes:
        peppered = hmac.new(self._pepper, password.encode("utf-8"), hashlib.sha256).digest()
        # cryptography's scrypt releases the GIL (hashlib's does not), so concurrent
        # requests of one process hash on all cores
        return Scrypt(salt=salt, length=32, n=1 << cost, r=r, p=p).derive(peppered)

    def hash_password(self, password: str) -> str:
        """A new salted, peppered scrypt hash of ``password`` at the configured cost."""
        salt = secrets.token_bytes(16)
        digest = self._scrypt(password, salt, self.cost, _R, _P)
        return f"scrypt${self.cost}${_R}${_P}${_b64(salt)}${_b64(digest)}"

    def check_password(self, password: str, stored: str) -> bool:
        """Whether ``password`` matches ``stored`` (constant-time comparison)."""
        try:
            scheme, cost, r, p, salt, digest = stored.split("$")
            if scheme != "scrypt":
                return False
            expected = _unb64(digest)
            actual = self._scrypt(password, _unb64(salt), int(cost), int(r), int(p))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(actual, expected)

    def burn(self) -> None:
        """Spend the time of one password check (for unknown visit numbers)."""
        self._scrypt("000000", b"\x00" * 16, self.cost, _R, _P)
