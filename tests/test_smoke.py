"""Every entry point imports and answers, so none can rot."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from callcenter.cli import main


def test_cli_help_for_every_command() -> None:
    runner = CliRunner()
    for args in (
        [],
        ["db"],
        ["db", "upgrade"],
        ["db", "current"],
        ["serve"],
        ["demo"],
        ["call"],
        ["flows"],
        ["flows", "check"],
    ):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.output


def test_console_script_is_installed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Health Hotline" in out.stdout
