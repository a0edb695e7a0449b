"""Fixtures for console tests: users of every role and signing them in.

* ``make_user(role="agent", **fields) -> UserView``: a user in the test database (password
  :data:`PASSWORD` unless given; username made unique unless given).
* ``login(client, role="agent", **fields) -> UserView``: makes a user and signs ``client`` in
  through the real sign-in form (CSRF token and all).
* :func:`csrf_token` / :func:`post` for posting forms and htmx requests as a browser would.

Password hashing is made cheap here (argon2id with the smallest cost) so tests stay fast;
everything else is the shipped configuration.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from callcenter.bootstrap import Services
from callcenter.config import Config
from callcenter.users.service import UserView
from tests.conftest import make_config

PASSWORD = "correct horse battery"
CHEAP_HASHING = {
    "password_hash_time_cost": 1,
    "password_hash_memory_kib": 1024,
    "password_hash_parallelism": 1,
}
_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_counter = itertools.count(1)

MakeUser = Callable[..., UserView]
Login = Callable[..., UserView]


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """The test configuration with cheap password hashing."""
    return make_config(database_url, tmp_path, console=CHEAP_HASHING)


@pytest.fixture
def make_user(services: Services) -> MakeUser:
    """A factory for console users."""

    def make(role: str = "agent", **fields: Any) -> UserView:
        fields.setdefault("username", f"{role}{next(_counter)}")
        fields.setdefault("display_name", f"Demo {role} {fields['username']}")
        password = fields.pop("password", PASSWORD)
        username = fields.pop("username")
        display_name = fields.pop("display_name")
        return services.users.create(username, display_name, role, password, actor="test", **fields)

    return make


class BufferedClient(FlaskClient):
    """A test client that reads every answer whole and closes it, as a browser does with a
    page (use ``buffered=False`` for an event stream)."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        """Like :meth:`FlaskClient.open`, buffered unless told otherwise."""
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def _done(response: TestResponse) -> TestResponse:
    """Read the whole body and close the response (the server's per-request resources are
    released; the body stays readable)."""
    response.get_data()
    response.close()
    return response


def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of ``client``'s session, read from a page as a browser would."""
    page = _done(client.get("/auth/sign-in"))
    if page.status_code == 302:
        page = _done(client.get("/auth/password"))
    match = _META.search(page.get_data(as_text=True))
    assert match, "no csrf-token meta tag on the page"
    return match.group(1)


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    """POST a form to ``path`` with the session's CSRF token."""
    form = {"csrf_token": csrf_token(client), **(data or {})}
    return _done(client.post(path, data=form, **kw))


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD) -> TestResponse:
    """Submit the sign-in form."""
    token = csrf_token(client)
    return _done(
        client.post(
            "/auth/sign-in",
            data={"csrf_token": token, "username": username, "password": password},
        )
    )


@pytest.fixture
def login(make_user: MakeUser) -> Login:
    """``login(client, role="agent", **fields)``: a new user of ``role``, signed in."""

    def do(client: FlaskClient, role: str = "agent", **fields: Any) -> UserView:
        user = make_user(role, **fields)
        response = sign_in(client, user.username, fields.get("password", PASSWORD))
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return do
