"""Signing in to the console through the real app: sessions, timeouts, roles, CSRF, headers,
language, translations, vendored files."""

from __future__ import annotations

import gettext
import hashlib
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.bootstrap import Services, build
from callcenter.clock import FakeClock
from callcenter.db.models import AuditEntry
from callcenter.users.models import ConsoleSession
from tests.conftest import TwilioSigner, make_config
from tests.console.conftest import (
    CHEAP_HASHING,
    PASSWORD,
    BufferedClient,
    Login,
    MakeUser,
    post,
    sign_in,
)

CONSOLE = Path(__file__).resolve().parents[2] / "agents_console"
WRONG = "Not-The-Password-7"


@pytest.fixture(autouse=True)
def _whole_pages(app: Flask) -> None:
    """Pages are read whole and closed, as a browser does."""
    app.test_client_class = BufferedClient


def location(response: object) -> str:
    return str(getattr(response, "headers", {}).get("Location", ""))


def page(response: object) -> str:
    return str(response.get_data(as_text=True))  # type: ignore[attr-defined]


# ---------------------------------------------------------------- signing in


def test_anonymous_visitors_are_sent_to_the_sign_in_page(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert location(response) == "/auth/sign-in"
    form = client.get("/auth/sign-in")
    assert form.status_code == 200
    assert '<html lang="zh-CN">' in page(form)
    assert "用户名" in page(form)
    assert 'name="csrf_token"' in page(form)


@pytest.mark.parametrize(
    ("role", "home"),
    [
        ("agent", "/agent"),
        ("expert", "/expert"),
        ("supervisor", "/supervisor"),
        ("admin", "/admin/users"),
    ],
)
def test_each_role_lands_on_its_own_screen(
    client: FlaskClient, make_user: MakeUser, role: str, home: str
) -> None:
    user = make_user(role)
    response = sign_in(client, user.username)
    assert response.status_code == 302
    assert location(response) == home
    assert location(client.get("/")) == home


def test_a_wrong_password_is_refused_with_one_message_for_every_reason(
    client: FlaskClient, make_user: MakeUser, services: Services
) -> None:
    user = make_user("agent")
    gone = make_user("agent")
    services.users.deactivate(gone.id, actor="test")
    answers = [
        sign_in(client, user.username, WRONG),
        sign_in(client, "no-such-user", WRONG),
        sign_in(client, gone.username, PASSWORD),
    ]
    assert [a.status_code for a in answers] == [401, 401, 401]
    messages = {re.search(r'role="alert">([^<]+)<', page(a)).group(1) for a in answers}  # type: ignore[union-attr]
    assert messages == {"用户名或密码错误，或账号已停用。连续失败5次后账号将锁定15分钟。"}
    assert location(client.get("/admin/users")).startswith("/auth/sign-in")


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(
    client: FlaskClient, make_user: MakeUser
) -> None:
    first = client.get("/admin/users?sort=name")
    assert location(first) == "/auth/sign-in?next=/admin/users?sort%3Dname"
    admin = make_user("admin")
    token = client.get("/auth/sign-in")  # prime the session for the CSRF token
    assert token.status_code == 200
    response = post(
        client,
        "/auth/sign-in",
        {"username": admin.username, "password": PASSWORD, "next": "/admin/users?sort=name"},
    )
    assert location(response) == "/admin/users?sort=name"
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        other = client.application.test_client()
        response = post(
            other,
            "/auth/sign-in",
            {"username": admin.username, "password": PASSWORD, "next": target},
        )
        assert location(response) == "/admin/users", target


def test_five_failures_lock_the_account_until_15_minutes_have_passed(
    client: FlaskClient, make_user: MakeUser, clock: FakeClock
) -> None:
    user = make_user("agent")
    for _ in range(5):
        assert sign_in(client, user.username, WRONG).status_code == 401
    assert sign_in(client, user.username, PASSWORD).status_code == 401
    clock.advance(minutes=14)
    assert sign_in(client, user.username, PASSWORD).status_code == 401
    clock.advance(minutes=1)
    response = sign_in(client, user.username, PASSWORD)
    assert response.status_code == 302
    assert location(response) == "/agent"


def test_twenty_failures_from_one_address_make_it_wait_whatever_the_accounts(
    app: Flask, make_user: MakeUser, clock: FakeClock, services: Services
) -> None:
    """Password spraying: four guesses at each of five accounts (no account locks) from one
    address; then even a right password from there waits, while other desks sign in."""
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "198.51.100.23"
    for _ in range(5):
        victim = make_user("agent")
        for _ in range(4):
            assert sign_in(attacker, victim.username, WRONG).status_code == 401
    nurse = make_user("agent")
    refused = sign_in(attacker, nurse.username, PASSWORD)
    assert refused.status_code == 429
    assert "登录失败次数过多，请15分钟后再试" in page(refused)
    desk = app.test_client()
    desk.environ_base["REMOTE_ADDR"] = "10.20.0.8"
    assert sign_in(desk, nurse.username, PASSWORD).status_code == 302
    with services.db.sessions() as session:
        audit = session.scalars(
            select(AuditEntry.detail).where(AuditEntry.action == "console.sign_in_throttled")
        ).all()
    assert audit == [{"source": "198.51.100.23"}]
    clock.advance(minutes=15)
    assert sign_in(attacker, nurse.username, PASSWORD).status_code == 302


def test_behind_a_proxy_the_forwarded_client_address_is_the_one_limited(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    from agents_console import create_app

    config = make_config(
        database_url,
        tmp_path,
        console={**CHEAP_HASHING, "source_max_failed_sign_ins": 3},
        web={"proxy_hops": 1},
    )
    services = build(config, clock=clock)
    try:
        services.users.create("ward7", "Ward 7", "agent", PASSWORD, actor="test")
        proxied = create_app(services, TESTING=True).test_client()
        proxied.environ_base["REMOTE_ADDR"] = "10.0.0.2"  # the proxy
        proxied.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.9"
        for _ in range(3):
            assert sign_in(proxied, "nobody", WRONG).status_code == 401
        assert sign_in(proxied, "ward7").status_code == 429
        proxied.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.10"
        assert sign_in(proxied, "ward7").status_code == 302
    finally:
        services.db.dispose()


# ---------------------------------------------------------------- sessions and timeouts


def test_an_idle_session_ends_after_15_minutes(
    client: FlaskClient, login: Login, clock: FakeClock
) -> None:
    login(client, "admin")
    clock.advance(minutes=14, seconds=59)
    assert client.get("/admin/users").status_code == 200
    clock.advance(minutes=14, seconds=59)  # the last request counted as activity
    assert client.get("/admin/users").status_code == 200
    clock.advance(minutes=15)
    response = client.get("/admin/users")
    assert response.status_code == 302
    assert location(response).startswith("/auth/sign-in")
    notice = client.get(location(response))
    assert "您长时间未操作，会话已结束，请重新登录。" in page(notice)


def test_event_streams_and_passive_requests_do_not_keep_a_session_alive(
    client: FlaskClient, login: Login, clock: FakeClock
) -> None:
    login(client, "admin")
    for _ in range(2):
        clock.advance(minutes=5)
        response = client.get("/admin/users", headers={"X-Console-Passive": "1"})
        assert response.status_code == 200
    clock.advance(minutes=4)
    response = client.get("/admin/users", headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    clock.advance(minutes=1)  # 15 minutes since sign-in, the last thing the user did
    assert location(client.get("/admin/users")).startswith("/auth/sign-in")


def test_any_session_ends_after_10_hours(
    client: FlaskClient, login: Login, clock: FakeClock
) -> None:
    login(client, "admin")
    for _ in range(59):
        clock.advance(minutes=10)
        assert client.get("/admin/users").status_code == 200
    clock.advance(minutes=10)
    response = client.get("/admin/users")
    assert location(response).startswith("/auth/sign-in")
    assert "会话已超过最长时限，请重新登录。" in page(client.get(location(response)))


def test_signing_out_ends_the_session_on_the_server_and_an_old_cookie_is_refused(
    client: FlaskClient, login: Login, services: Services
) -> None:
    login(client, "admin")
    cookie = client.get_cookie("session")
    assert cookie is not None
    old = cookie.value
    response = post(client, "/auth/sign-out")
    assert location(response) == "/auth/sign-in"
    assert "您已安全退出。" in page(client.get("/auth/sign-in"))
    with services.db.sessions() as s:
        [row] = s.scalars(select(ConsoleSession))
    assert row.end_reason == "signed_out"
    client.set_cookie("session", old)  # replay the cookie from before signing out
    assert location(client.get("/admin/users")).startswith("/auth/sign-in")
    assert client.get("/api/kb/search?q=x").status_code == 401


def test_signing_in_again_starts_a_new_session(client: FlaskClient, make_user: MakeUser) -> None:
    user = make_user("admin")
    sign_in(client, user.username)
    first = client.get_cookie("session")
    post(client, "/auth/sign-out")
    sign_in(client, user.username)
    second = client.get_cookie("session")
    assert first is not None
    assert second is not None
    assert first.value != second.value
    assert client.get("/admin/users").status_code == 200


# ---------------------------------------------------------------- roles


@pytest.mark.parametrize("role", ["agent", "expert", "supervisor"])
def test_other_roles_get_403_on_admin_pages(client: FlaskClient, login: Login, role: str) -> None:
    login(client, role)
    response = client.get("/admin/users")
    assert response.status_code == 403
    assert "您没有权限访问此页面。" in page(response)


def test_anonymous_api_htmx_and_page_requests_each_get_the_right_answer(
    client: FlaskClient,
) -> None:
    api = client.get("/api/kb/search?q=阿司匹林")
    assert api.status_code == 401
    assert api.get_json() == {"error": "sign-in required"}
    htmx = client.get("/admin/users", headers={"HX-Request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["HX-Redirect"] == "/auth/sign-in?next=/admin/users"
    assert location(client.get("/admin/users")) == "/auth/sign-in?next=/admin/users"


def test_a_temporary_password_must_be_changed_before_anything_else(
    client: FlaskClient, make_user: MakeUser, services: Services
) -> None:
    user = make_user("admin")
    services.users.reset_password(user.id, "temporary pass 1", actor="test")
    response = sign_in(client, user.username, "temporary pass 1")
    assert location(response) == "/auth/password"
    assert location(client.get("/admin/users")) == "/auth/password"
    assert client.get("/api/kb/search?q=x").status_code == 403
    mismatch = post(
        client,
        "/auth/password",
        {
            "current_password": "temporary pass 1",
            "new_password": "my own password 1",
            "confirm_password": "my own password 2",
        },
    )
    assert mismatch.status_code == 400
    assert "两次输入的新密码不一致。" in page(mismatch)
    done = post(
        client,
        "/auth/password",
        {
            "current_password": "temporary pass 1",
            "new_password": "my own password 1",
            "confirm_password": "my own password 1",
        },
    )
    assert location(done) == "/admin/users"
    assert client.get("/admin/users").status_code == 200
    assert services.users.authenticate(user.username, "my own password 1").outcome == "ok"


# ---------------------------------------------------------------- CSRF


@pytest.mark.parametrize(
    "token",
    [None, "", "not-a-token", "forged"],
    ids=["missing", "empty", "garbage", "other-session"],
)
def test_a_form_without_the_right_csrf_token_is_refused(
    app: Flask, client: FlaskClient, make_user: MakeUser, token: str | None
) -> None:
    user = make_user("agent")
    client.get("/auth/sign-in")
    if token == "forged":  # a valid token, but of another browser's session
        other = app.test_client()
        html = page(other.get("/auth/sign-in"))
        token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    data = {"username": user.username, "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/auth/sign-in", data=data)
    assert response.status_code == 400
    assert "表单已过期或无效" in page(response)
    assert location(client.get("/agent")).startswith("/auth/sign-in")


def test_sign_out_without_a_csrf_token_keeps_the_session(client: FlaskClient, login: Login) -> None:
    login(client, "admin")
    assert client.post("/auth/sign-out").status_code == 400
    assert client.get("/admin/users").status_code == 200


def test_htmx_requests_send_the_token_in_a_header(client: FlaskClient, login: Login) -> None:
    login(client, "admin")
    html = page(client.get("/admin/users"))
    token = re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/auth/language", data={"lang": "en"}, headers={"X-CSRFToken": token, "HX-Request": "1"}
    )
    assert response.status_code == 302


def test_signed_webhooks_and_feeds_need_no_csrf_token(
    client: FlaskClient, twilio: TwilioSigner
) -> None:
    voice = twilio.post(
        "/twilio/voice", {"CallSid": "CAcsrf1", "From": "+8613800000001", "To": "+8610"}
    )
    assert voice.status_code == 200
    assert "<Response>" in page(voice)
    feed = client.post("/api/hospitals/nowhere/results", data=b"{}")
    assert feed.status_code == 404  # the feed's own answer, not a CSRF refusal
    assert "unknown hospital" in feed.get_json()["error"]


# ---------------------------------------------------------------- headers and cookies


def test_console_pages_carry_a_strict_csp_and_security_headers(
    client: FlaskClient, login: Login
) -> None:
    for response in (
        client.get("/auth/sign-in"),
        (login(client, "admin"), client.get("/admin/users"))[1],
    ):
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_the_session_cookie_is_httponly_lax_and_secure_behind_https(
    client: FlaskClient, make_user: MakeUser
) -> None:
    user = make_user("agent")
    response = sign_in(client, user.username)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" in cookie  # the tests' PUBLIC_BASE_URL is https


def test_the_cookie_is_not_marked_secure_on_a_plain_http_install(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    from agents_console import create_app

    config = make_config(
        database_url,
        tmp_path,
        console=CHEAP_HASHING,
        web={"public_base_url": "http://localhost:8000"},
    )
    services = build(config, clock=clock)
    try:
        services.users.create("plain", "Plain", "agent", PASSWORD, actor="test")
        http = create_app(services, TESTING=True).test_client()
        response = sign_in(http, "plain")
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "Secure" not in cookie
        assert "Strict-Transport-Security" not in response.headers
    finally:
        services.db.dispose()


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTR = re.compile(r"\sstyle\s*=", re.IGNORECASE)


def test_no_page_of_the_shell_needs_inline_script_or_style(
    client: FlaskClient, login: Login, make_user: MakeUser
) -> None:
    pages = [page(client.get("/auth/sign-in"))]
    login(client, "admin")
    other = make_user("agent")
    for path in ("/admin/users", "/admin/users/new", f"/admin/users/{other.id}", "/auth/password"):
        pages.append(page(client.get(path)))
    pages.append(page(client.get("/admin/users/99999")))
    for html in pages:
        assert not INLINE_SCRIPT.search(html)
        assert not INLINE_HANDLER.search(html)
        assert not STYLE_ATTR.search(html)
        assert "<style" not in html


# ---------------------------------------------------------------- language


def test_the_language_switch_shows_english_and_is_remembered_for_the_user(
    app: Flask, client: FlaskClient, login: Login, services: Services
) -> None:
    user = login(client, "admin")
    assert "用户管理" in page(client.get("/admin/users"))
    response = post(client, "/auth/language", {"lang": "en", "next": "/admin/users"})
    assert location(response) == "/admin/users"
    english = page(client.get("/admin/users"))
    assert '<html lang="en">' in english
    assert "<h1>Users</h1>" in english
    assert "Sign out" in english
    assert "用户管理" not in english
    stored = services.users.get(user.id)
    assert stored is not None
    assert stored.language == "en"
    fresh = app.test_client()  # another browser: the user's choice follows them
    sign_in(fresh, user.username)
    assert "<h1>Users</h1>" in page(fresh.get("/admin/users"))
    post(fresh, "/auth/language", {"lang": "zh-CN"})
    assert "<h1>用户管理</h1>" in page(fresh.get("/admin/users"))


def test_the_sign_in_page_switches_language_before_signing_in(client: FlaskClient) -> None:
    post(client, "/auth/language", {"lang": "en", "next": "/auth/sign-in"})
    html = page(client.get("/auth/sign-in"))
    assert "<h1>Sign in</h1>" in html
    assert "Username" in html
    assert post(client, "/auth/language", {"lang": "fr"}).status_code == 400


def catalogs() -> list[Path]:
    return sorted((CONSOLE / "translations").glob("*/LC_MESSAGES/messages.po"))


def test_both_languages_have_a_catalog() -> None:
    assert {p.parts[-3] for p in catalogs()} == {"en", "zh_CN"}


@pytest.mark.parametrize("po_path", catalogs(), ids=lambda p: p.parts[-3])
def test_every_catalog_is_compiled_and_current(po_path: Path) -> None:
    """The committed .mo files are what the console serves: each must match its .po."""
    with po_path.open("rb") as f:
        catalog = read_po(f)
    mo_path = po_path.with_suffix(".mo")
    assert mo_path.is_file(), f"{mo_path} missing: run sh agents_console/translations/refresh.sh"
    with mo_path.open("rb") as f:
        compiled = gettext.GNUTranslations(f)
    expected = {
        str(m.id): str(m.string)
        for m in catalog
        if m.id and m.string and not m.fuzzy and isinstance(m.id, str)
    }
    served = {k: v for k, v in compiled._catalog.items() if k}  # type: ignore[attr-defined]
    assert served == expected, f"{mo_path} is stale: run sh agents_console/translations/refresh.sh"


def test_every_console_string_has_an_english_translation(tmp_path: Path) -> None:
    """Extract the strings from the code and templates now: each must be in the English
    catalog, translated (run sh agents_console/translations/refresh.sh, then translate)."""
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(CONSOLE / "translations/babel.cfg"),
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "-o",
            str(pot),
            ".",
        ],
        cwd=CONSOLE.parent,
        check=True,
        capture_output=True,
    )
    with pot.open("rb") as f:
        in_code = {m.id for m in read_po(f) if m.id}
    assert len(in_code) > 50
    with (CONSOLE / "translations/en/LC_MESSAGES/messages.po").open("rb") as f:
        catalog = {m.id: m for m in read_po(f) if m.id}
    not_in_catalog = sorted(str(i) for i in in_code - set(catalog))
    assert not_in_catalog == []
    untranslated = sorted(str(i) for i in in_code if not catalog[i].string or catalog[i].fuzzy)
    assert untranslated == []


# ---------------------------------------------------------------- privacy and static files


def test_passwords_are_never_logged(
    client: FlaskClient,
    make_user: MakeUser,
    caplog: pytest.LogCaptureFixture,
    services: Services,
) -> None:
    caplog.set_level(logging.DEBUG)
    user = make_user("admin", password="Sekrit-Admin-Pass-42")
    sign_in(client, user.username, "Sekrit-Typo-Pass-42")
    sign_in(client, "Sekrit-In-Username-42", "Sekrit-Unknown-Pass-42")
    sign_in(client, user.username, "Sekrit-Admin-Pass-42")
    post(client, f"/admin/users/{user.id}/unlock")
    for _ in range(5):
        sign_in(client.application.test_client(), user.username, "Sekrit-Lock-42")
    assert services.users.authenticate(user.username, "Sekrit-Admin-Pass-42").outcome == "locked"
    assert caplog.records, "the sign-ins should have been logged"
    text = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "Sekrit" not in text
    assert user.username in text  # the log says who, never with what


def test_htmx_is_vendored_with_its_version_and_checksum(client: FlaskClient) -> None:
    versions = (CONSOLE / "static/vendor/VERSIONS.txt").read_text(encoding="utf-8")
    assert "htmx.org@2.0.11" in versions
    assert "htmx-ext-sse@2.2.4" in versions
    for name in ("htmx.min.js", "htmx-ext-sse.js"):
        body = client.get(f"/static/vendor/{name}").get_data()
        assert hashlib.sha256(body).hexdigest() + "  " + name in versions
    html = page(client.get("/auth/sign-in"))
    assert '<script src="/static/vendor/htmx.min.js" defer></script>' in html
    assert "https://" not in re.sub(r'<meta name="htmx-config"[^>]*>', "", html).split("<body")[0]
