"""``/admin/users``: admins manage console users; nobody else gets in, whatever the URL."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.db.models import AuditEntry
from callcenter.routing.models import RoutingAgent
from callcenter.users.service import UserView
from tests.console.conftest import (
    PASSWORD,
    BufferedClient,
    Login,
    MakeUser,
    csrf_token,
    post,
    sign_in,
)

WRONG = "Not-The-Password-7"


@pytest.fixture(autouse=True)
def _whole_pages(app: Flask) -> None:
    """Pages are read whole and closed, as a browser does."""
    app.test_client_class = BufferedClient


def page(response: object) -> str:
    return str(response.get_data(as_text=True))  # type: ignore[attr-defined]


def issued_password(html: str) -> str:
    match = re.search(r'<span class="secret">([^<]+)</span>', html)
    assert match, "no temporary password on the page"
    return match.group(1)


def test_the_list_shows_every_user_with_role_and_state(
    client: FlaskClient, login: Login, make_user: MakeUser, services: Services
) -> None:
    login(client, "admin", username="root")
    make_user("agent", username="li", display_name="李伟")
    locked = make_user("expert", username="zhang")
    services.users.lock(locked.id, actor="test")
    gone = make_user("supervisor", username="zhao")
    services.users.deactivate(gone.id, actor="test")
    html = page(client.get("/admin/users"))
    rows = re.findall(r"<tr>\s*<td><a href=\"/admin/users/\d+\">([^<]+)</a>(.*?)</tr>", html, re.S)
    table = dict(rows)
    assert set(table) == {"root", "li", "zhang", "zhao"}
    assert "李伟" in table["li"]
    assert "一线坐席" in table["li"]
    assert "正常" in table["li"]
    assert "已锁定" in table["zhang"]
    assert "已停用" in table["zhao"]


def test_an_admin_creates_a_user_who_signs_in_with_the_temporary_password(
    app: Flask, client: FlaskClient, login: Login, services: Services
) -> None:
    with services.db.transaction() as s:
        s.add(RoutingAgent(id="a7", name="Demo agent 7"))
    admin = login(client, "admin")
    response = post(
        client,
        "/admin/users/new",
        {
            "username": "Wang.Fang",
            "display_name": "王芳",
            "role": "agent",
            "language": "zh-CN",
            "routing_agent_id": "a7",
        },
    )
    assert response.status_code == 200
    temporary = issued_password(page(response))
    created = services.users.by_username("wang.fang")
    assert created is not None
    assert (created.role, created.routing_agent_id) == ("agent", "a7")
    assert created.must_change_password is True
    # shown once: the user's page never shows it again
    assert temporary not in page(client.get(f"/admin/users/{created.id}"))
    newcomer = app.test_client()
    assert sign_in(newcomer, "wang.fang", temporary).headers["Location"] == "/auth/password"
    with services.db.sessions() as s:
        entry = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "console.user_created")
        ).all()[-1]
    assert (entry.actor, entry.subject_id) == (admin.username, str(created.id))


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"username": "taken"}, "该用户名已被使用。"),
        ({"username": "a"}, "用户名须为2到64个字符"),
        ({"role": "nurse"}, "请选择角色。"),
        ({"display_name": ""}, "请填写显示名称"),
        ({"routing_agent_id": "no spaces"}, "坐席编号最多64个字符"),
    ],
)
def test_a_bad_new_user_form_is_shown_again_with_the_reason(
    client: FlaskClient,
    login: Login,
    make_user: MakeUser,
    services: Services,
    form: dict[str, str],
    message: str,
) -> None:
    login(client, "admin")
    make_user("agent", username="taken")
    before = services.users.count()
    data = {"username": "newbie", "display_name": "New", "role": "agent", **form}
    response = post(client, "/admin/users/new", data)
    assert response.status_code == 400
    assert message in page(response)
    assert f'value="{data["display_name"]}"' in page(response)  # the form keeps what was typed
    assert services.users.count() == before


def test_a_reset_ends_the_users_sessions_and_only_the_new_password_works(
    app: Flask, client: FlaskClient, login: Login, make_user: MakeUser
) -> None:
    login(client, "admin")
    user = make_user("agent")
    theirs = app.test_client()
    sign_in(theirs, user.username)
    assert theirs.get("/api/kb/search?q=x").status_code != 401
    response = post(client, f"/admin/users/{user.id}/reset-password")
    temporary = issued_password(page(response))
    assert theirs.get("/api/kb/search?q=x").status_code == 401  # signed out on the server
    assert sign_in(app.test_client(), user.username, PASSWORD).status_code == 401
    assert sign_in(app.test_client(), user.username, temporary).status_code == 302


def test_an_admin_unlocks_a_locked_user(
    app: Flask, client: FlaskClient, login: Login, make_user: MakeUser
) -> None:
    login(client, "admin")
    user = make_user("agent")
    for _ in range(5):
        sign_in(app.test_client(), user.username, WRONG)
    assert sign_in(app.test_client(), user.username).status_code == 401
    assert "已锁定" in page(client.get(f"/admin/users/{user.id}"))
    response = post(client, f"/admin/users/{user.id}/unlock")
    assert response.headers["Location"] == f"/admin/users/{user.id}"
    assert f"已解锁 {user.username}。" in page(client.get(f"/admin/users/{user.id}"))
    assert sign_in(app.test_client(), user.username).status_code == 302


def test_an_admin_deactivates_a_user_but_not_themselves(
    app: Flask, client: FlaskClient, login: Login, make_user: MakeUser, services: Services
) -> None:
    admin = login(client, "admin")
    user = make_user("expert")
    theirs = app.test_client()
    sign_in(theirs, user.username)
    post(client, f"/admin/users/{user.id}/deactivate")
    assert theirs.get("/api/kb/search?q=x").status_code == 401
    assert sign_in(app.test_client(), user.username).status_code == 401
    refused = post(client, f"/admin/users/{admin.id}/deactivate")
    assert refused.status_code == 302
    assert "不能停用自己的账号。" in page(client.get(refused.headers["Location"]))
    me = services.users.get(admin.id)
    assert me is not None
    assert me.active is True


def test_an_unknown_user_id_is_404_for_an_admin(client: FlaskClient, login: Login) -> None:
    login(client, "admin")
    assert client.get("/admin/users/424242").status_code == 404
    assert post(client, "/admin/users/424242/unlock").status_code == 404
    assert post(client, "/admin/users/424242/reset-password").status_code == 404


def admin_urls(target: UserView, me: UserView) -> list[tuple[str, str]]:
    """Every admin URL, aimed at another user, at oneself and at an id that does not exist."""
    urls = [("GET", "/admin/users"), ("GET", "/admin/users/new"), ("POST", "/admin/users/new")]
    for user_id in (target.id, me.id, 424242):
        urls += [
            ("GET", f"/admin/users/{user_id}"),
            ("POST", f"/admin/users/{user_id}/reset-password"),
            ("POST", f"/admin/users/{user_id}/unlock"),
            ("POST", f"/admin/users/{user_id}/deactivate"),
        ]
    return urls


@pytest.mark.parametrize("role", ["agent", "expert", "supervisor"])
def test_every_admin_url_is_403_for_other_roles_whatever_the_id(
    client: FlaskClient, login: Login, make_user: MakeUser, services: Services, role: str
) -> None:
    target = make_user("agent")
    me = login(client, role)
    token = csrf_token(client)
    for method, url in admin_urls(target, me):
        if method == "GET":
            response = client.get(url)
        else:
            data = {"csrf_token": token, "username": "sneaky", "display_name": "x", "role": "admin"}
            response = client.post(url, data=data)
        assert response.status_code == 403, (method, url)
    # nothing happened to anybody
    assert services.users.by_username("sneaky") is None
    for user in (target, me):
        after = services.users.get(user.id)
        assert after is not None
        assert after.active is True
        assert after.must_change_password is False
    assert sign_in(client.application.test_client(), target.username).status_code == 302


def test_every_admin_url_needs_sign_in(app: Flask, make_user: MakeUser, services: Services) -> None:
    target = make_user("agent")
    client = app.test_client()
    token = csrf_token(client)
    for method, url in admin_urls(target, target):
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={"csrf_token": token})
        assert response.status_code == 302, (method, url)
        expected = f"/auth/sign-in?next={url}" if method == "GET" else "/auth/sign-in"
        assert response.headers["Location"] == expected
    after = services.users.get(target.id)
    assert after is not None
    assert after.active is True
