"""The log scan: what it flags, what it lets pass, and that it fails a run."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.privacy import log_scan
from tests.privacy.log_scan import LogScan

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("callback to 13812345678", ["phone number"]),
        ("callback to +8613812345678", ["phone number"]),
        ("callback to +86 138 1234 5678", ["phone number"]),
        ("callback to 138-1234-5678", ["phone number"]),
        ("sms to +15551234567 queued", ["phone number"]),
        ("resident 110101199003071234 looked up", ["ID number"]),
        ("resident 11010119900307123X looked up", ["ID number"]),
        ("id=110101199003071234;phone=13912345678", ["ID number", "phone number"]),
    ],
)
def test_full_numbers_are_flagged(text: str, kinds: list[str]) -> None:
    scan = LogScan()
    scan.capture("callcenter.x", text)
    found = scan.findings()
    assert sorted(f.kind for f in found) == sorted(kinds)
    for f in found:
        assert f.test == "(outside any test)"
        assert f.logger == "callcenter.x"
        assert f.shown.startswith("*")  # the report never repeats the number itself


@pytest.mark.parametrize(
    "text",
    [
        "callback to 138****5678",
        "sms to +86 138****5678 (2 segments)",
        "resident 11************1234",
        "call CA0123456789abcdef0123456789abcdef answered",
        "call CA13812345678abc answered",  # digits inside an identifier
        "please call 120 now",
        "queue general-zh-CN priority 100",
        "2026-11-26 09:00:00 step 12",
        "epoch 1764115200000",
        "hospital switchboard 021-64370045",
        "",
    ],
)
def test_masked_numbers_and_identifiers_pass(text: str) -> None:
    scan = LogScan()
    scan.capture("callcenter.x", text)
    assert scan.findings() == []


def test_known_secrets_are_flagged_only_as_whole_words() -> None:
    scan = LogScan()
    scan.remember("482913")  # a visit password
    scan.remember("correct-horse-9")  # a console password
    scan.remember("12345")  # too short to search for
    for text in (
        "pin 482913 rejected",
        "visit 104829130 booked",
        "user signed in with correct-horse-9",
        "correct-horse-99 is another word",
        "count 12345",
    ):
        scan.capture("agents_console.auth", text)
    assert sorted((f.kind, f.shown) for f in scan.findings()) == [
        ("password or PIN", "**2913"),
        ("password or secret", "***********se-9"),
    ]


def test_tests_own_loggers_and_marked_tests_are_skipped() -> None:
    scan = LogScan()
    scan.capture("tests.masking", "callback to 13812345678")
    scan.exempt = True
    scan.capture("callcenter.x", "callback to 13812345678")
    assert scan.findings() == []


def test_it_runs_in_this_session_and_sees_disabled_levels() -> None:
    logger = logging.getLogger("callcenter.log_scan_probe")
    logger.setLevel(logging.WARNING)
    try:
        assert not logger.isEnabledFor(logging.DEBUG)
        logger.debug("probe %s of %d", "message", 7)
    finally:
        logger.setLevel(logging.NOTSET)
    assert any(
        text == "probe message of 7" and name == "callcenter.log_scan_probe"
        for text, name, _test in log_scan._SCAN.texts
    )


def test_passwords_hashed_anywhere_become_known_secrets() -> None:
    from argon2 import PasswordHasher

    from callcenter.booking.crypto import BookingSecrets

    PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("a-console-password")
    BookingSecrets("k", cost=4).hash_password("907153")
    assert {"a-console-password", "907153"} <= log_scan._SCAN.secrets


def test_a_run_that_logs_a_phone_number_fails_and_names_the_test(tmp_path: Path) -> None:
    test_file = tmp_path / "test_leaky.py"
    test_file.write_text(
        textwrap.dedent(
            """
            import logging

            def test_leaks():
                logging.getLogger("callcenter.leaky").info("calling %s", "13812345678")

            def test_clean():
                logging.getLogger("callcenter.leaky").info("calling %s", "138****5678")
            """
        ),
        encoding="utf-8",
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.privacy.log_scan",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(test_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 passed" in run.stdout
    assert (
        "test_leaky.py::test_leaks: logger 'callcenter.leaky' logged a phone number" in run.stdout
    )
    assert "test_clean" not in run.stdout
    assert "13812345678" not in run.stdout


def test_records_still_name_the_callers_file_and_line(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("callcenter.log_scan_probe")
    with caplog.at_level(logging.INFO, logger="callcenter.log_scan_probe"):
        logger.info("where am I")
        logger.log(logging.WARNING, "and now")
    assert [(r.filename, r.funcName) for r in caplog.records] == [
        ("test_log_scan.py", "test_records_still_name_the_callers_file_and_line"),
    ] * 2
