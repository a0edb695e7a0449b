"""Prism serving Twilio's official OpenAPI description, as a local stand-in for api.twilio.com.

Prism runs in mock mode with ``--errors``: a request that does not match the spec (a missing
required field, a wrong type, a bad path, no credentials) is answered with an error instead of
a warning in a log nobody reads, so every REST call the hotline makes is checked against
Twilio's contract.

Prism is ``@stoplight/prism-cli@5.14.2`` from npm (later versions need Node 24), installed by
``.ci/run`` and ``make`` into ``.ci/node``. ``PRISM_BIN`` names another binary. When Prism is
missing the tests fail (they do not skip) with the command that installs it.

Prism reads each form field as one string, even when the field is repeated, so a property the
spec declares as an array (``StatusCallbackEvent``, ``MediaUrl``...) is widened in a copy of
the spec to accept a single string as well.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

PRISM_VERSION = "5.14.2"
INSTALL = f"npm install --prefix .ci/node @stoplight/prism-cli@{PRISM_VERSION}"
#: Twilio's official OpenAPI description of the 2010-04-01 API (twilio/twilio-oai, MIT
#: licence beside it), kept with the tests so a clean checkout runs them as they are.
SPEC = Path(__file__).resolve().parent / "twilio_oai" / "twilio_api_v2010.json"
DEFAULT_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "prism"
START_TIMEOUT_S = 90.0
FORM = "application/x-www-form-urlencoded"


def prism_bin() -> Path:
    """The Prism executable (``$PRISM_BIN`` or the copy in ``.ci/node``); fails if missing."""
    configured = os.environ.get("PRISM_BIN")
    path = Path(configured) if configured else DEFAULT_BIN
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"Prism (the Twilio contract test server) is not installed at {path}.\n"
            f"Install it from the project root with:\n    {INSTALL}\n"
            "(`make test` and `.ci/run` do this when npm is available; Node.js 20 + npm "
            "are needed: `apt-get install nodejs npm`). Or set PRISM_BIN to a prism binary.",
            pytrace=False,
        )
    return path


def spec_path() -> Path:
    """Twilio's OpenAPI description (``$TWILIO_OAI_SPEC`` names a newer copy to test with)."""
    configured = os.environ.get("TWILIO_OAI_SPEC")
    path = Path(configured) if configured else SPEC
    if not path.is_file():
        pytest.fail(f"Twilio's OpenAPI spec is missing: {path}", pytrace=False)
    return path


def widen_form_arrays(spec: dict[str, Any]) -> int:
    """Let every array property of a form request body also be a single value; return count.

    Twilio's API takes a repeated form key (``StatusCallbackEvent=initiated&...=completed``)
    as a list, but Prism hands the validator a plain string for a key sent once, which the
    array schema refuses. ``anyOf: [the array, one item]`` accepts both.
    """
    widened = 0
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get(FORM, {}).get("schema", {})
            properties = schema.get("properties", {})
            for name, prop in list(properties.items()):
                if prop.get("type") != "array":
                    continue
                single = copy.deepcopy(prop.get("items", {"type": "string"}))
                properties[name] = {
                    "description": prop.get("description", ""),
                    "anyOf": [prop, single],
                }
                widened += 1
    return widened


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody is listening on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Prism:
    """A running Prism mock server."""

    base_url: str
    log: Path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prism]:
    """Prism serving Twilio's 2010-04-01 API (arrays widened) in validating mock mode."""
    binary = prism_bin()
    workdir = tmp_path_factory.mktemp("prism")
    spec = json.loads(spec_path().read_text(encoding="utf-8"))
    assert widen_form_arrays(spec) > 0, "no array form property found: has the spec changed?"
    patched = workdir / "twilio_api_v2010.json"
    patched.write_text(json.dumps(spec), encoding="utf-8")
    port = free_port()
    log = workdir / "prism.log"
    command = [str(binary), "mock", "--errors", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, str(patched)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(port):
            if process.poll() is not None:
                pytest.fail(
                    f"Prism exited with code {process.returncode} before listening:\n"
                    + log.read_text(encoding="utf-8", errors="replace")[-4000:],
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Prism did not listen on port {port} within {START_TIMEOUT_S:.0f} s:\n"
                    + log.read_text(encoding="utf-8", errors="replace")[-4000:],
                    pytrace=False,
                )
            time.sleep(0.2)
        yield Prism(base_url=f"http://127.0.0.1:{port}", log=log)
    finally:
        _stop(process)
