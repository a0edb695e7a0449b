"""A pytest plugin: no log call of the whole test run may carry personal data or a secret.

Registered by ``tests/conftest.py`` (``pytest_plugins``), so it runs in every ``pytest`` run,
including ``make test``. Every call of a logging method (``debug`` ... ``critical``,
``exception``, ``log``) on any logger is captured **at every level, whether or not the level is
enabled**, and **before** any masking filter or handler: production may run at a more verbose
level, and code must not rely on :mod:`callcenter.logs` to mask what it should never log.
At the end of the session the captured texts (message with its arguments, and traceback) are
scanned for:

* a full phone number: a Chinese mobile number (``13812345678``, ``+86 138 1234 5678``) or any
  E.164 number (``+15551234567``); masked forms such as ``138****5678`` pass;
* a Chinese resident ID number (18 characters with a plausible birth date);
* a password or PIN known to the test run: every password hashed or checked through the
  console's argon2 hasher or the booking's scrypt hasher, and the test secrets
  (``TWILIO_AUTH_TOKEN``, ``SECRET_KEY``); tests may add their own with
  :func:`remember_secret`.

Findings fail the run (exit status 1) and are listed with the test and logger that logged them
(the value itself is shown masked). Tests that must feed personal data into a logger on
purpose (the masking tests) are marked ``personal_data_in_logs``; records of loggers under
``tests.`` are the tests' own and are skipped too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

MARKER = "personal_data_in_logs"
#: Test modules that log personal data on purpose, to prove it is masked (until they carry
#: the marker themselves).
DELIBERATE_MODULES = ("tests/test_logs.py",)
#: Secrets shorter than this are not searched for (too many innocent matches).
MIN_SECRET_LEN = 6

_EDGE_L = r"(?<![0-9A-Za-z*])"
_EDGE_R = r"(?![0-9A-Za-z*])"
MOBILE = re.compile(r"(?<![0-9A-Za-z*+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _EDGE_R)
E164 = re.compile(_EDGE_L + r"\+[1-9]\d{7,14}" + _EDGE_R)
ID_NUMBER = re.compile(
    _EDGE_L
    + r"\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx]"
    + _EDGE_R
)
_DIGIT_RUN = re.compile(_EDGE_L + r"\d+" + _EDGE_R)
_LEVEL_METHODS = ("debug", "info", "warning", "warn", "error", "exception", "critical", "fatal")


@dataclass(frozen=True)
class Finding:
    """One captured log text that holds something it must not."""

    kind: str
    shown: str
    logger: str
    test: str


def mask(value: str) -> str:
    """``value`` with all but its last 4 characters starred (for the report)."""
    return "*" * max(len(value) - 4, 2) + value[-4:]


class LogScan:
    """Captures every logging call's text and scans them all at the end."""

    def __init__(self) -> None:
        self.texts: dict[tuple[str, str, str], None] = {}
        self.secrets: set[str] = set()
        self.current_test = "(outside any test)"
        self.exempt = False
        self._undo: list[Callable[[], None]] = []

    # -- capture

    def capture(self, logger: str, text: str) -> None:
        """Keep ``text`` logged by ``logger`` for the final scan."""
        if self.exempt or logger == "tests" or logger.startswith("tests."):
            return
        # One dict store: atomic under the GIL, and no lock, so a log call made while this
        # runs (a finalizer run by the garbage collector, a signal handler) cannot deadlock.
        self.texts[(text, logger, self.current_test)] = None

    def remember(self, secret: object) -> None:
        """Add a password, PIN or token the logs must never contain."""
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8", "replace")
        if isinstance(secret, str) and len(secret.strip()) >= MIN_SECRET_LEN:
            self.secrets.add(secret.strip())

    def install(self) -> None:
        """Wrap the logging methods and the password hashers."""
        for name in (*_LEVEL_METHODS, "log"):
            self._wrap_logging(name)
        self._wrap_hashers()

    def uninstall(self) -> None:
        """Undo :meth:`install`."""
        while self._undo:
            self._undo.pop()()

    def _patch(self, owner: Any, name: str, new: Any) -> None:
        old = owner.__dict__[name]
        setattr(owner, name, new)
        self._undo.append(lambda: setattr(owner, name, old))

    def _wrap_logging(self, name: str) -> None:
        original = getattr(logging.Logger, name)
        scan = self

        @functools.wraps(original)
        def wrapper(self: logging.Logger, *args: Any, **kwargs: Any) -> Any:
            with contextlib.suppress(Exception):  # never break the code under test
                scan.capture(self.name, _text(name, args, kwargs))
            # this wrapper is one more frame between the caller and logging: skip it, so
            # records still name the caller's file and line
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            return original(self, *args, **kwargs)

        self._patch(logging.Logger, name, wrapper)

    def _wrap_hashers(self) -> None:
        scan = self

        def remembering(owner: Any, name: str, position: int) -> None:
            original = owner.__dict__[name]

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if len(args) > position:
                    scan.remember(args[position])
                return original(*args, **kwargs)

            self._patch(owner, name, wrapper)

        try:
            from argon2 import PasswordHasher
        except ImportError:  # pragma: no cover (argon2 is a dependency)
            pass
        else:
            remembering(PasswordHasher, "hash", 1)
            remembering(PasswordHasher, "verify", 2)
        from callcenter.booking.crypto import BookingSecrets

        remembering(BookingSecrets, "hash_password", 1)
        remembering(BookingSecrets, "check_password", 1)

    # -- scan

    def findings(self) -> list[Finding]:
        """Everything found in the captured texts."""
        # copies made in one C-level step each, while threads of the code under test may
        # still be logging
        texts = list(self.texts)
        secrets = set(self.secrets)
        digit_secrets = {s for s in secrets if s.isdigit()}
        other_secrets = sorted(secrets - digit_secrets, key=len, reverse=True)
        out: list[Finding] = []
        for text, logger, test in texts:
            for kind, pattern in (
                ("ID number", ID_NUMBER),
                ("phone number", MOBILE),
                ("phone number", E164),
            ):
                out.extend(
                    Finding(kind, mask(m.group()), logger, test) for m in pattern.finditer(text)
                )
            out.extend(
                Finding("password or PIN", mask(m.group()), logger, test)
                for m in _DIGIT_RUN.finditer(text)
                if m.group() in digit_secrets and not ID_NUMBER.fullmatch(m.group())
            )
            out.extend(
                Finding("password or secret", mask(secret), logger, test)
                for secret in other_secrets
                if _contains_word(text, secret)
            )
        return list(dict.fromkeys(out))


def _contains_word(text: str, word: str) -> bool:
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() and word[0].isalnum()) and not (
            after.isalnum() and word[-1].isalnum()
        ):
            return True
        start = text.find(word, start + 1)
    return False


def _text(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The text a logging call would produce: message % args, plus the traceback."""
    if method == "log":
        args = args[1:]
    if not args:
        return ""
    msg, rest = args[0], args[1:]
    # Like LogRecord: a single non-empty mapping argument fills %(name)s placeholders.
    values: Any = rest[0] if len(rest) == 1 and isinstance(rest[0], Mapping) and rest[0] else rest
    try:
        text = str(msg) % values if rest else str(msg)
    except (TypeError, ValueError, KeyError):
        text = " ".join(map(str, (msg, *rest)))
    exc_info = kwargs.get("exc_info", method == "exception")
    if exc_info:
        if isinstance(exc_info, BaseException):
            info: Any = (type(exc_info), exc_info, exc_info.__traceback__)
        elif isinstance(exc_info, tuple):
            info = exc_info
        else:
            info = sys.exc_info()
        if info[0] is not None:
            text += "\n" + "".join(traceback.format_exception(*info))
    return text


# ---------------------------------------------------------------- the pytest hooks

_SCAN = LogScan()
_INSTALLED = pytest.StashKey[bool]()
_FOUND = pytest.StashKey[list[Finding]]()


def remember_secret(secret: str) -> None:
    """Tell the log scan about a password, PIN or token that must never be logged."""
    _SCAN.remember(secret)


def pytest_configure(config: pytest.Config) -> None:
    """Start capturing (once per run)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}: the test logs personal data on purpose (masking tests); the log scan "
        "skips what it logs",
    )
    if not config.stash.get(_INSTALLED, False):
        config.stash[_INSTALLED] = True
        _SCAN.install()
        from tests.conftest import AUTH_TOKEN, SECRET_KEY

        _SCAN.remember(AUTH_TOKEN)
        _SCAN.remember(SECRET_KEY)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop capturing."""
    _SCAN.uninstall()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Attribute what is logged to the test that runs."""
    _SCAN.current_test = item.nodeid
    module = item.nodeid.split("::", 1)[0]
    _SCAN.exempt = item.get_closest_marker(MARKER) is not None or module in DELIBERATE_MODULES
    try:
        return (yield)
    finally:
        _SCAN.current_test = "(between tests)"
        _SCAN.exempt = False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any captured text holds personal data or a known secret."""
    found = _SCAN.findings()
    session.config.stash[_FOUND] = found
    if found and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if found and reporter is not None:
        reporter.stats.setdefault("personal data in logs", []).extend(found)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List what the log scan found."""
    found = terminalreporter.config.stash.get(_FOUND, [])
    if not found:
        return
    terminalreporter.write_sep("=", "log scan: personal data or secrets in logs", red=True)
    for f in found[:50]:
        terminalreporter.write_line(f"{f.test}: logger {f.logger!r} logged a {f.kind} ({f.shown})")
    if len(found) > 50:
        terminalreporter.write_line(f"... and {len(found) - 50} more")
