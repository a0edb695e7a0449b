"""The user service: passwords, lockout, server-side sessions and their timeouts, audit rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import ConsoleConfig
from callcenter.db.models import AuditEntry
from callcenter.routing.models import RoutingAgent
from callcenter.users.models import ConsoleSession, ConsoleUser
from callcenter.users.service import UserError, UserService
from tests.console.conftest import CHEAP_HASHING, PASSWORD, MakeUser

WRONG = "Not-The-Password-7"


def audit(services: Services, action: str) -> list[AuditEntry]:
    with services.db.sessions() as s:
        return list(
            s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
        )


def stored_hash(services: Services, user_id: int) -> str:
    with services.db.sessions() as s:
        user = s.get(ConsoleUser, user_id)
        assert user is not None
        return user.password_hash


# ---------------------------------------------------------------- users and passwords


def test_a_new_user_signs_in_and_the_password_is_stored_as_argon2id(
    services: Services, make_user: MakeUser
) -> None:
    user = make_user("agent", username="Li.Wei", display_name="李伟")
    assert user.username == "li.wei"
    stored = stored_hash(services, user.id)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    result = services.users.authenticate("LI.WEI", PASSWORD)
    assert result.outcome == "ok"
    assert result.user is not None
    assert result.user.display_name == "李伟"
    [created] = audit(services, "console.user_created")
    assert (created.actor, created.subject_id) == ("test", str(user.id))
    assert len(audit(services, "console.signed_in")) == 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"username": "x"}, "bad_username"),
        ({"username": "has space"}, "bad_username"),
        ({"username": "李伟"}, "bad_username"),
        ({"display_name": "  "}, "bad_display_name"),
        ({"role": "nurse"}, "bad_role"),
        ({"password": "short"}, "password_too_short"),
        ({"username": "zhangsan01", "password": "ZhangSan01"}, "password_is_username"),
        ({"routing_agent_id": "has space"}, "bad_agent_id"),
        ({"role": "supervisor", "routing_agent_id": "a1"}, "agent_link_role"),
        ({"language": "fr"}, "bad_language"),
    ],
)
def test_creating_a_bad_user_is_refused_and_creates_nothing(
    services: Services, fields: dict[str, Any], code: str
) -> None:
    args: dict[str, Any] = {
        "username": "newuser",
        "display_name": "New user",
        "role": "agent",
        "password": PASSWORD,
        **fields,
    }
    with pytest.raises(UserError) as caught:
        services.users.create(
            args.pop("username"),
            args.pop("display_name"),
            args.pop("role"),
            args.pop("password"),
            actor="test",
            **args,
        )
    assert caught.value.code == code
    assert services.users.count() == 0


def test_usernames_are_unique_whatever_the_case(make_user: MakeUser) -> None:
    make_user("agent", username="wang")
    with pytest.raises(UserError) as caught:
        make_user("expert", username="WANG")
    assert caught.value.code == "username_taken"


def test_a_new_agent_id_gets_an_offline_presence_row(
    services: Services, make_user: MakeUser
) -> None:
    user = make_user("expert", routing_agent_id="exp-7", display_name="周医生", language="en")
    assert user.routing_agent_id == "exp-7"
    with services.db.sessions() as s:
        row = s.get(RoutingAgent, "exp-7")
        assert row is not None
        assert (row.name, row.state, row.languages) == ("周医生", "offline", ["en"])


def test_an_agent_links_to_one_routing_agent_only(services: Services, make_user: MakeUser) -> None:
    with services.db.transaction() as s:
        s.add(RoutingAgent(id="a1", name="Demo agent"))
    first = make_user("agent", routing_agent_id="a1")
    assert first.routing_agent_id == "a1"
    with pytest.raises(UserError) as caught:
        make_user("expert", routing_agent_id="a1")
    assert caught.value.code == "routing_agent_taken"


def test_an_unknown_username_costs_a_password_verification(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = services.users
    users._waste_a_verification("warm-up")  # the dummy hash is made once
    calls: list[str] = []
    real = users.hasher

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def verify(self, stored: str, password: str) -> bool:
            calls.append(stored)
            return real.verify(stored, password)

    monkeypatch.setattr(users, "hasher", Counting())
    assert users.authenticate("nobody", "whatever password").outcome == "bad_credentials"
    assert len(calls) == 1
    [failed] = audit(services, "console.sign_in_failed")
    assert (failed.actor, failed.subject_id) == ("anonymous", "unknown")
    assert "nobody" not in str(failed.detail)


def test_a_changed_hashing_cost_is_applied_at_the_next_sign_in(
    services: Services, make_user: MakeUser, clock: FakeClock
) -> None:
    user = make_user("agent")
    before = stored_hash(services, user.id)
    stronger = ConsoleConfig(**{**CHEAP_HASHING, "password_hash_time_cost": 2})
    assert UserService(services.db, clock, stronger).authenticate(user.username, PASSWORD).user
    after = stored_hash(services, user.id)
    assert after != before
    assert "t=2" in after
    assert services.users.authenticate(user.username, PASSWORD).outcome == "ok"


# ---------------------------------------------------------------- lockout


def test_five_failed_sign_ins_lock_the_account_for_15_minutes(
    services: Services, make_user: MakeUser, clock: FakeClock
) -> None:
    user = make_user("agent")
    outcomes = [services.users.authenticate(user.username, WRONG).outcome for _ in "12345"]
    assert outcomes == ["bad_credentials"] * 4 + ["locked"]
    # even the right password is refused while locked
    assert services.users.authenticate(user.username, PASSWORD).outcome == "locked"
    clock.advance(minutes=14, seconds=59)
    assert services.users.authenticate(user.username, PASSWORD).outcome == "locked"
    clock.advance(seconds=1)
    assert services.users.authenticate(user.username, PASSWORD).outcome == "ok"
    [locked] = audit(services, "console.user_locked")
    assert locked.reason == "too_many_failed_sign_ins"
    assert [a.reason for a in audit(services, "console.sign_in_failed")] == ["bad_password"] * 5 + [
        "locked",
        "locked",
    ]


def test_a_good_sign_in_resets_the_failure_count(services: Services, make_user: MakeUser) -> None:
    user = make_user("agent")
    for _ in range(4):
        services.users.authenticate(user.username, WRONG)
    assert services.users.authenticate(user.username, PASSWORD).outcome == "ok"
    for _ in range(4):
        assert services.users.authenticate(user.username, WRONG).outcome == "bad_credentials"
    assert services.users.authenticate(user.username, PASSWORD).outcome == "ok"


def test_lockout_count_and_time_are_configurable(
    services: Services, make_user: MakeUser, clock: FakeClock
) -> None:
    settings = ConsoleConfig(**CHEAP_HASHING, max_failed_sign_ins=3, lockout_minutes=60)
    users = UserService(services.db, clock, settings)
    user = make_user("agent")
    assert [users.authenticate(user.username, "x").outcome for _ in "123"][-1] == "locked"
    clock.advance(minutes=59)
    assert users.authenticate(user.username, PASSWORD).outcome == "locked"
    clock.advance(minutes=1)
    assert users.authenticate(user.username, PASSWORD).outcome == "ok"


def test_unlock_lets_a_locked_user_in_at_once(services: Services, make_user: MakeUser) -> None:
    user = make_user("agent")
    for _ in range(5):
        services.users.authenticate(user.username, WRONG)
    services.users.unlock(user.id, actor="admin")
    assert services.users.authenticate(user.username, PASSWORD).outcome == "ok"
    assert audit(services, "console.user_unlocked")[0].actor == "admin"


def test_a_deactivated_user_cannot_sign_in(services: Services, make_user: MakeUser) -> None:
    user = make_user("agent")
    token = services.users.start_session(user.id)
    services.users.deactivate(user.id, actor="admin")
    assert services.users.authenticate(user.username, PASSWORD).outcome == "inactive"
    assert services.users.touch_session(token).ended == "deactivated"


# ---------------------------------------------------------------- sessions


def test_the_token_is_stored_only_as_a_hash(services: Services, make_user: MakeUser) -> None:
    user = make_user("agent")
    token = services.users.start_session(user.id)
    with services.db.sessions() as s:
        [row] = s.scalars(select(ConsoleSession))
    assert token not in row.token_hash
    assert len(row.token_hash) == 64
    check = services.users.touch_session(token)
    assert check.session is not None
    assert check.session.user.id == user.id
    assert services.users.touch_session(token + "x").ended == "unknown"


def test_a_session_ends_after_15_idle_minutes_and_activity_extends_it(
    services: Services, make_user: MakeUser, clock: FakeClock
) -> None:
    users = services.users
    token = users.start_session(make_user("agent").id)
    for _ in range(5):  # an hour of work, a request every 14 minutes
        clock.advance(minutes=14)
        assert users.touch_session(token).session is not None
    clock.advance(minutes=14, seconds=59)
    assert users.touch_session(token, active=False).session is not None
    clock.advance(seconds=1)  # a passive check did not extend it: 15 minutes since the last
    check = users.touch_session(token)
    assert (check.session, check.ended) == (None, "idle")
    assert users.touch_session(token).ended == "idle"  # and it stays ended


def test_any_session_ends_10_hours_after_sign_in(
    services: Services, make_user: MakeUser, clock: FakeClock
) -> None:
    users = services.users
    token = users.start_session(make_user("agent").id)
    for _ in range(59):  # busy all day: a request every 10 minutes
        clock.advance(minutes=10)
        assert users.touch_session(token).session is not None
    clock.advance(minutes=9, seconds=59)
    assert users.touch_session(token).session is not None
    clock.advance(seconds=1)
    assert users.touch_session(token).ended == "expired"


def test_timeouts_are_configurable(
    services: Services, make_user: MakeUser, clock: FakeClock
) -> None:
    settings = ConsoleConfig(**CHEAP_HASHING, session_idle_minutes=5, session_absolute_hours=1)
    users = UserService(services.db, clock, settings)
    token = users.start_session(make_user("agent").id)
    clock.advance(minutes=5)
    assert users.touch_session(token).ended == "idle"
    token = users.start_session(make_user("agent").id)
    for _ in range(14):
        clock.advance(minutes=4)
        assert users.touch_session(token).session is not None
    clock.advance(minutes=4)
    assert users.touch_session(token).ended == "expired"


def test_signing_out_ends_the_session_for_good(services: Services, make_user: MakeUser) -> None:
    user = make_user("agent")
    token = services.users.start_session(user.id)
    other = services.users.start_session(user.id)
    assert services.users.end_session(token) is True
    assert services.users.end_session(token) is False
    assert services.users.touch_session(token).ended == "signed_out"
    assert services.users.touch_session(other).session is not None
    assert services.users.open_sessions(user.id) == 1
    assert len(audit(services, "console.signed_out")) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda users, uid: users.reset_password(uid, "a new password 1", actor="admin"),
            "password_changed",
        ),
        (lambda users, uid: users.lock(uid, actor="admin"), "locked"),
        (lambda users, uid: users.deactivate(uid, actor="admin"), "deactivated"),
    ],
    ids=["reset", "lock", "deactivate"],
)
def test_reset_lock_and_deactivate_end_every_session_of_the_user(
    services: Services, make_user: MakeUser, change: Any, reason: str
) -> None:
    user = make_user("agent")
    bystander = make_user("agent")
    tokens = [services.users.start_session(user.id) for _ in range(2)]
    kept = services.users.start_session(bystander.id)
    change(services.users, user.id)
    assert [services.users.touch_session(t).ended for t in tokens] == [reason, reason]
    assert services.users.touch_session(kept).session is not None


def test_a_reset_password_is_temporary_and_the_user_changes_it(
    services: Services, make_user: MakeUser
) -> None:
    users = services.users
    user = make_user("agent")
    for _ in range(5):
        users.authenticate(user.username, WRONG)
    users.reset_password(user.id, "temporary pass 1", actor="admin")
    signed = users.authenticate(user.username, "temporary pass 1")
    assert signed.outcome == "ok"
    assert signed.user is not None
    assert signed.user.must_change_password is True
    assert users.authenticate(user.username, PASSWORD).outcome == "bad_credentials"
    with pytest.raises(UserError) as caught:
        users.change_password(user.id, "not it", "my own password 1")
    assert caught.value.code == "wrong_password"
    changed = users.change_password(user.id, "temporary pass 1", "my own password 1")
    assert changed.must_change_password is False
    assert users.authenticate(user.username, "my own password 1").outcome == "ok"
    [reset] = audit(services, "console.password_reset")
    assert reset.actor == "admin"
    assert reset.detail["temporary"] is True


def test_lock_by_an_admin_lasts_the_given_minutes(
    services: Services, make_user: MakeUser, clock: FakeClock
) -> None:
    user = make_user("agent")
    locked = services.users.lock(user.id, actor="admin", minutes=90)
    assert locked.locked_until == clock.now() + timedelta(minutes=90)
    assert services.users.authenticate(user.username, PASSWORD).outcome == "locked"
    clock.advance(minutes=90)
    assert services.users.authenticate(user.username, PASSWORD).outcome == "ok"


def test_list_users_by_role_then_name(services: Services, make_user: MakeUser) -> None:
    make_user("supervisor", username="zhou")
    make_user("agent", username="wu")
    make_user("agent", username="chen")
    gone = make_user("expert", username="qian")
    services.users.deactivate(gone.id, actor="admin")
    assert [u.username for u in services.users.list_users()] == ["chen", "wu", "qian", "zhou"]
    assert "qian" not in [u.username for u in services.users.list_users(include_inactive=False)]
