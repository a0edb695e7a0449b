"""Sealing: secrets are encrypted under a key derived from SECRET_KEY, and only opened there."""

from __future__ import annotations

import pytest

from callcenter.messaging.sealing import Sealer, SealingError


def test_round_trip_and_no_clear_text() -> None:
    sealer = Sealer("k1")
    token = sealer.seal({"password": "73915604", "pin": "1234"})
    assert "73915604" not in token
    assert sealer.open(token) == {"password": "73915604", "pin": "1234"}
    assert sealer.seal({"password": "73915604"}) != sealer.seal({"password": "73915604"})


def test_another_key_cannot_open() -> None:
    token = Sealer("k1").seal({"password": "73915604"})
    with pytest.raises(SealingError, match="cannot be opened"):
        Sealer("k2").open(token)
    with pytest.raises(SealingError, match="cannot be opened"):
        Sealer("k1").open(token[:-4] + "AAAA")


def test_no_key_is_a_clear_error() -> None:
    with pytest.raises(SealingError, match="SECRET_KEY is not set"):
        Sealer(None).seal({"password": "1"})
