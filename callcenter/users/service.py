"""Console users: create, sign in (with lockout), server-side sessions, password resets.

Passwords are hashed with argon2id (``argon2-cffi``); the cost comes from ``console.*`` in the
configuration. Five failed sign-ins in a row (``console.max_failed_sign_ins``) lock the account
for ``console.lockout_minutes``; an unknown username costs the same hash verification as a
known one, so the answer time does not tell which usernames exist. One network address that
fails ``console.source_max_failed_sign_ins`` times (any accounts) within
``console.source_window_minutes`` is refused until the oldest failure leaves the window.

A session is a random token: the user's cookie holds it, the database only its SHA-256. It
ends when the user signs out, after ``console.session_idle_minutes`` without a request, and
``console.session_absolute_hours`` after sign-in, whichever comes first; locking, deactivating
or resetting the password of a user ends all their sessions.

Every sign-in, failure, lockout, user creation, reset, lock, unlock and deactivation writes an
:class:`~callcenter.db.models.AuditEntry`. Neither passwords nor tokens are ever logged.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..clock import Clock
from ..config import SUPPORTED_LANGUAGES, ConsoleConfig
from ..db.engine import Database
from ..db.models import AuditEntry
from ..routing.models import RoutingAgent
from .models import ROLES, ConsoleSession, ConsoleUser, SignInFailure

log = logging.getLogger(__name__)

SignInOutcome = Literal["ok", "bad_credentials", "locked", "inactive", "throttled"]
#: how often a session's last-seen time is written (requests closer together than this
#: count as one; keeps a busy screen from writing on every click)
TOUCH_GRANULARITY = timedelta(seconds=5)
USERNAME_CHARS = frozenset(string.ascii_lowercase + string.digits + "._-")
AGENT_ID_CHARS = frozenset(string.ascii_letters + string.digits + "._-")


class UserError(Exception):
    """A refused change; ``code`` is stable (the console translates it), the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class UserView:
    """A console user as the console and the CLI see it (never the password hash)."""

    id: int
    username: str
    display_name: str
    role: str
    active: bool
    locked_until: datetime | None
    failed_sign_ins: int
    must_change_password: bool
    routing_agent_id: str | None
    specialty: str | None
    hospital: str | None
    language: str
    created_at: datetime
    password_changed_at: datetime
    last_sign_in_at: datetime | None

    def is_locked(self, now: datetime) -> bool:
        """Whether the account is locked at ``now``."""
        return self.locked_until is not None and self.locked_until > now


@dataclass(frozen=True)
class SignIn:
    """The answer to a sign-in attempt; ``user`` only when ``outcome`` is ``ok``."""

    outcome: SignInOutcome
    user: UserView | None = None


@dataclass(frozen=True)
class SessionView:
    """A live session and its user."""

    session_id: int
    user: UserView
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class SessionCheck:
    """The answer to :meth:`UserService.touch_session`: the session, or why there is none."""

    session: SessionView | None
    #: ``None`` when alive; else unknown, signed_out, idle, expired, locked, deactivated,
    #: password_changed
    ended: str | None = None


def _view(user: ConsoleUser) -> UserView:
    return UserView(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        active=user.active,
        locked_until=user.locked_until,
        failed_sign_ins=user.failed_sign_ins,
        must_change_password=user.must_change_password,
        routing_agent_id=user.routing_agent_id,
        specialty=user.specialty,
        hospital=user.hospital,
        language=user.language,
        created_at=user.created_at,
        password_changed_at=user.password_changed_at,
        last_sign_in_at=user.last_sign_in_at,
    )


def hash_token(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: stored and looked up in lower case, trimmed."""
    return username.strip().lower()


def temporary_password() -> str:
    """A random password for an admin to hand out (14 characters, easy to read aloud)."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(14))


class UserService:
    """Console users, passwords and sessions, in the database, on the given clock."""

    def __init__(self, db: Database, clock: Clock, settings: ConsoleConfig) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )
        self._dummy_hash: str | None = None

    # ------------------------------------------------------------ helpers

    @property
    def idle_timeout(self) -> timedelta:
        """How long a session lives without a request."""
        return timedelta(minutes=self.settings.session_idle_minutes)

    @property
    def absolute_timeout(self) -> timedelta:
        """How long any session lives."""
        return timedelta(hours=self.settings.session_absolute_hours)

    def _audit(
        self,
        session: Session,
        actor: str,
        action: str,
        subject_id: str,
        reason: str | None = None,
        **detail: Any,
    ) -> None:
        session.add(
            AuditEntry(
                at=self.clock.now(),
                actor=actor[:64],
                action=action,
                subject_type="console_user",
                subject_id=subject_id[:64],
                reason=reason[:200] if reason else None,
                detail=detail,
            )
        )

    def check_password(self, password: str, username: str = "") -> None:
        """Raise :class:`UserError` unless ``password`` meets the password rules."""
        minimum = self.settings.min_password_length
        if len(password) < minimum:
            raise UserError(
                "password_too_short", f"the password must have at least {minimum} characters"
            )
        if len(password) > 256:
            raise UserError("password_too_long", "the password must have at most 256 characters")
        if username and normalise_username(password) == normalise_username(username):
            raise UserError("password_is_username", "the password must not be the username")

    def _hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _waste_a_verification(self, password: str) -> None:
        """Spend what a real verification costs (unknown usernames answer no faster)."""
        if self._dummy_hash is None:
            self._dummy_hash = self._hash(secrets.token_hex(16))
        self._verify(self._dummy_hash, password)

    def _user(self, session: Session, user_id: int, *, lock: bool = False) -> ConsoleUser:
        stmt = select(ConsoleUser).where(ConsoleUser.id == user_id)
        if lock:
            stmt = stmt.with_for_update()
        user = session.scalars(stmt).one_or_none()
        if user is None:
            raise UserError("unknown_user", f"no console user with id {user_id}")
        return user

    def _end_sessions(self, session: Session, user_id: int, reason: str) -> int:
        result = session.execute(
            update(ConsoleSession)
            .where(ConsoleSession.user_id == user_id, ConsoleSession.ended_at.is_(None))
            .values(ended_at=self.clock.now(), end_reason=reason)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    # ------------------------------------------------------------ users

    def create(
        self,
        username: str,
        display_name: str,
        role: str,
        password: str,
        *,
        actor: str,
        routing_agent_id: str | None = None,
        specialty: str | None = None,
        hospital: str | None = None,
        language: str = "zh-CN",
        must_change_password: bool = False,
    ) -> UserView:
        """Create a user. Raises :class:`UserError` (taken username, bad role, weak password,
        routing agent linked to someone else...).

        ``routing_agent_id`` links an agent or expert to their presence row in
        ``routing_agents``; a row that does not exist yet is created, offline.
        """
        name = normalise_username(username)
        if not 2 <= len(name) <= 64 or not set(name) <= USERNAME_CHARS:
            raise UserError(
                "bad_username",
                "the username must be 2-64 characters: lower-case letters, digits, . _ -",
            )
        display = display_name.strip()
        if not display or len(display) > 100:
            raise UserError("bad_display_name", "the display name must be 1-100 characters")
        if role not in ROLES:
            raise UserError("bad_role", f"the role must be one of {', '.join(ROLES)}")
        if language not in SUPPORTED_LANGUAGES:
            raise UserError(
                "bad_language", f"the language must be one of {', '.join(SUPPORTED_LANGUAGES)}"
            )
        agent_id = (routing_agent_id or "").strip() or None
        if agent_id and (len(agent_id) > 64 or not set(agent_id) <= AGENT_ID_CHARS):
            raise UserError(
                "bad_agent_id", "the agent id must be up to 64 letters, digits, . _ - characters"
            )
        if agent_id and role not in ("agent", "expert"):
            raise UserError("agent_link_role", "only agents and experts link to a routing agent")
        self.check_password(password, name)
        password_hash = self._hash(password)
        now = self.clock.now()
        with self.db.transaction() as session:
            if session.scalar(select(ConsoleUser.id).where(ConsoleUser.username == name)):
                raise UserError("username_taken", f"the username {name!r} is taken")
            if agent_id is not None:
                if session.get(RoutingAgent, agent_id) is None:
                    # a new agent: their presence row starts offline, with no skills yet
                    session.add(
                        RoutingAgent(
                            id=agent_id,
                            name=display,
                            state="offline",
                            skills={},
                            languages=[language],
                            levels={},
                            calls_today=0,
                            missed_in_row=0,
                            version=0,
                        )
                    )
                taken = session.scalar(
                    select(ConsoleUser.username).where(ConsoleUser.routing_agent_id == agent_id)
                )
                if taken:
                    raise UserError(
                        "routing_agent_taken",
                        f"routing agent {agent_id!r} is already linked to {taken!r}",
                    )
            user = ConsoleUser(
                username=name,
                display_name=display,
                role=role,
                password_hash=password_hash,
                must_change_password=must_change_password,
                failed_sign_ins=0,
                active=True,
                routing_agent_id=agent_id,
                specialty=(specialty or "").strip() or None,
                hospital=(hospital or "").strip() or None,
                language=language,
                created_at=now,
                password_changed_at=now,
            )
            session.add(user)
            session.flush()
            self._audit(session, actor, "console.user_created", str(user.id), role=role)
            view = _view(user)
        log.info("console user %s created (id %s, role %s)", view.username, view.id, role)
        return view

    def get(self, user_id: int) -> UserView | None:
        """One user by id, or ``None``."""
        with self.db.sessions() as session:
            user = session.get(ConsoleUser, user_id)
            return _view(user) if user else None

    def by_username(self, username: str) -> UserView | None:
        """One user by username (case-insensitive), or ``None``."""
        with self.db.sessions() as session:
            user = session.scalars(
                select(ConsoleUser).where(ConsoleUser.username == normalise_username(username))
            ).one_or_none()
            return _view(user) if user else None

    def list_users(self, *, include_inactive: bool = True) -> list[UserView]:
        """Every user, by role then username."""
        with self.db.sessions() as session:
            stmt = select(ConsoleUser).order_by(ConsoleUser.role, ConsoleUser.username)
            if not include_inactive:
                stmt = stmt.where(ConsoleUser.active.is_(True))
            return [_view(u) for u in session.scalars(stmt)]

    def count(self) -> int:
        """How many users exist (any role, active or not)."""
        with self.db.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(ConsoleUser)) or 0)

    def reset_password(
        self, user_id: int, new_password: str, *, actor: str, temporary: bool = True
    ) -> UserView:
        """Set a new password (``temporary``: the user must change it at the next sign-in);
        clears the lock and failed count and ends the user's sessions."""
        current = self.get(user_id)
        if current is None:
            raise UserError("unknown_user", f"no console user with id {user_id}")
        self.check_password(new_password, current.username)
        # hashing takes a while: never inside a write transaction (SQLite has one writer)
        new_hash = self._hash(new_password)
        with self.db.transaction() as session:
            user = self._user(session, user_id, lock=True)
            user.password_hash = new_hash
            user.password_changed_at = self.clock.now()
            user.must_change_password = temporary
            user.failed_sign_ins = 0
            user.locked_until = None
            ended = self._end_sessions(session, user.id, "password_changed")
            self._audit(
                session,
                actor,
                "console.password_reset",
                str(user.id),
                temporary=temporary,
                sessions_ended=ended,
            )
            view = _view(user)
        log.info("console user %s: password reset by %s", view.username, actor)
        return view

    def change_password(self, user_id: int, current: str, new_password: str) -> UserView:
        """A user changes their own password (knowing the current one). Ends their
        sessions; the caller starts a fresh one."""
        with self.db.sessions() as session:
            found = self._user(session, user_id)
            username, stored = found.username, found.password_hash
        if not self._verify(stored, current):
            raise UserError("wrong_password", "the current password is not right")
        if current == new_password:
            raise UserError("password_unchanged", "the new password must be different")
        self.check_password(new_password, username)
        new_hash = self._hash(new_password)
        with self.db.transaction() as session:
            user = self._user(session, user_id, lock=True)
            if user.password_hash != stored:  # changed by someone else meanwhile
                raise UserError("wrong_password", "the current password is not right")
            user.password_hash = new_hash
            user.password_changed_at = self.clock.now()
            user.must_change_password = False
            self._end_sessions(session, user.id, "password_changed")
            self._audit(session, user.username, "console.password_changed", str(user.id))
            return _view(user)

    def lock(self, user_id: int, *, actor: str, minutes: int | None = None) -> UserView:
        """Lock the account (for ``minutes``, default the lockout time) and end its sessions."""
        span = timedelta(minutes=minutes or self.settings.lockout_minutes)
        with self.db.transaction() as session:
            user = self._user(session, user_id, lock=True)
            user.locked_until = self.clock.now() + span
            self._end_sessions(session, user.id, "locked")
            self._audit(
                session,
                actor,
                "console.user_locked",
                str(user.id),
                minutes=span // timedelta(minutes=1),
            )
            return _view(user)

    def unlock(self, user_id: int, *, actor: str) -> UserView:
        """Lift a lock and forget failed sign-ins."""
        with self.db.transaction() as session:
            user = self._user(session, user_id, lock=True)
            user.locked_until = None
            user.failed_sign_ins = 0
            self._audit(session, actor, "console.user_unlocked", str(user.id))
            return _view(user)

    def deactivate(self, user_id: int, *, actor: str) -> UserView:
        """The user can no longer sign in; their sessions end. The row stays (audit)."""
        with self.db.transaction() as session:
            user = self._user(session, user_id, lock=True)
            user.active = False
            self._end_sessions(session, user.id, "deactivated")
            self._audit(session, actor, "console.user_deactivated", str(user.id))
            return _view(user)

    def set_language(self, user_id: int, language: str) -> None:
        """Remember the console language a user chose."""
        if language not in SUPPORTED_LANGUAGES:
            raise UserError("bad_language", f"unknown language {language!r}")
        with self.db.transaction() as session:
            self._user(session, user_id).language = language

    # ------------------------------------------------------------ sign-in

    def authenticate(self, username: str, password: str, source: str | None = None) -> SignIn:
        """Check a username and password; count failures and lock after too many.

        A locked, inactive or unknown account never says whether the password was right.
        The password is verified outside any write transaction (it takes a while on purpose,
        and SQLite has one writer); the outcome is then recorded on the locked row.

        ``source`` (the client's network address): after ``console.source_max_failed_sign_ins``
        failures from it within ``console.source_window_minutes``, whatever the accounts, it
        gets ``throttled`` without a password check until the oldest failure leaves the window
        (the per-account lockout alone lets one place try a few passwords on every account).
        """
        source = source.strip()[:64] if source else None
        if source and self._throttled(source):
            with self.db.transaction() as session:
                self._audit(
                    session,
                    "anonymous",
                    "console.sign_in_throttled",
                    "-",
                    "too_many_failures",
                    source=source,
                )
            log.warning("console sign-in refused: too many failed sign-ins from %s", source)
            return SignIn("throttled")
        result = self._check_credentials(username, password)
        if source and result.outcome != "ok":
            self._count_failure(source)
        return result

    def _throttled(self, source: str) -> bool:
        since = self.clock.now() - timedelta(minutes=self.settings.source_window_minutes)
        with self.db.sessions() as session:
            failures = session.scalar(
                select(func.count())
                .select_from(SignInFailure)
                .where(SignInFailure.source == source, SignInFailure.at > since)
            )
        return int(failures or 0) >= self.settings.source_max_failed_sign_ins

    def _count_failure(self, source: str) -> None:
        now = self.clock.now()
        since = now - timedelta(minutes=self.settings.source_window_minutes)
        with self.db.transaction() as session:
            session.add(SignInFailure(source=source, at=now))
            # Failures older than the window count for nothing: keep the table small.
            session.execute(delete(SignInFailure).where(SignInFailure.at <= since))

    def _check_credentials(self, username: str, password: str) -> SignIn:
        name = normalise_username(username)
        with self.db.sessions() as session:
            found = (
                session.scalars(
                    select(ConsoleUser).where(ConsoleUser.username == name)
                ).one_or_none()
                if name
                else None
            )
            snapshot = (
                None
                if found is None
                else (found.id, found.active, found.locked_until, found.password_hash)
            )
        now = self.clock.now()
        if snapshot is None:
            self._waste_a_verification(password)
            with self.db.transaction() as session:
                self._audit(session, "anonymous", "console.sign_in_failed", "unknown")
            log.info("console sign-in refused: unknown username")
            return SignIn("bad_credentials")
        user_id, active, locked_until, stored = snapshot
        if not active or (locked_until is not None and locked_until > now):
            self._waste_a_verification(password)
            matched = False
        else:
            matched = self._verify(stored, password)
        new_hash = (
            self._hash(password) if matched and self.hasher.check_needs_rehash(stored) else None
        )
        with self.db.transaction() as session:
            user = self._user(session, user_id, lock=True)
            subject = str(user.id)
            if not user.active:
                self._audit(session, user.username, "console.sign_in_failed", subject, "inactive")
                log.info("console sign-in refused for %s: deactivated", user.username)
                return SignIn("inactive")
            if user.locked_until is not None and user.locked_until > now:
                self._audit(session, user.username, "console.sign_in_failed", subject, "locked")
                log.info("console sign-in refused for %s: locked", user.username)
                return SignIn("locked")
            if not matched or user.password_hash != stored:
                user.failed_sign_ins += 1
                self._audit(
                    session,
                    user.username,
                    "console.sign_in_failed",
                    subject,
                    "bad_password",
                    failed_in_row=user.failed_sign_ins,
                )
                if user.failed_sign_ins >= self.settings.max_failed_sign_ins:
                    user.locked_until = now + timedelta(minutes=self.settings.lockout_minutes)
                    user.failed_sign_ins = 0
                    self._audit(
                        session,
                        "system",
                        "console.user_locked",
                        subject,
                        "too_many_failed_sign_ins",
                        minutes=self.settings.lockout_minutes,
                    )
                    log.warning("console user %s locked after failed sign-ins", user.username)
                    return SignIn("locked")
                log.info("console sign-in refused for %s: password mismatch", user.username)
                return SignIn("bad_credentials")
            if new_hash is not None:
                user.password_hash = new_hash
            user.failed_sign_ins = 0
            user.locked_until = None
            user.last_sign_in_at = now
            self._audit(session, user.username, "console.signed_in", subject)
            view = _view(user)
        log.info("console user %s signed in", view.username)
        return SignIn("ok", view)

    # ------------------------------------------------------------ sessions

    def start_session(self, user_id: int) -> str:
        """Open a session for the user; returns the raw token (only the caller ever sees it)."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        with self.db.transaction() as session:
            self._user(session, user_id)
            session.add(
                ConsoleSession(
                    token_hash=hash_token(token),
                    user_id=user_id,
                    created_at=now,
                    last_seen_at=now,
                )
            )
        return token

    def touch_session(self, token: str, *, active: bool = True) -> SessionCheck:
        """Look up the session for ``token`` and check its timeouts.

        ``active``: the request is the user's doing (it extends the idle timeout); a
        background request (a live-event stream) checks without extending. A session found
        past a timeout is ended on the spot.
        """
        if not token:
            return SessionCheck(None, "unknown")
        now = self.clock.now()
        with self.db.sessions() as session:
            row = session.execute(
                select(ConsoleSession, ConsoleUser)
                .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
                .where(ConsoleSession.token_hash == hash_token(token))
            ).one_or_none()
            if row is None:
                return SessionCheck(None, "unknown")
            found, user = row
            if found.ended_at is not None:
                return SessionCheck(None, found.end_reason or "signed_out")
            reason: str | None = None
            if not user.active:
                reason = "deactivated"
            elif user.locked_until is not None and user.locked_until > now:
                reason = "locked"
            elif now - found.created_at >= self.absolute_timeout:
                reason = "expired"
            elif now - found.last_seen_at >= self.idle_timeout:
                reason = "idle"
            session_id, created, last_seen = found.id, found.created_at, found.last_seen_at
            view = _view(user)
        if reason is not None:
            self._end_session_row(session_id, reason)
            return SessionCheck(None, reason)
        if active and now - last_seen >= TOUCH_GRANULARITY:
            with self.db.transaction() as session:
                session.execute(
                    update(ConsoleSession)
                    .where(ConsoleSession.id == session_id, ConsoleSession.ended_at.is_(None))
                    .values(last_seen_at=now)
                )
            last_seen = now
        return SessionCheck(SessionView(session_id, view, created, last_seen))

    def _end_session_row(self, session_id: int, reason: str) -> None:
        with self.db.transaction() as session:
            session.execute(
                update(ConsoleSession)
                .where(ConsoleSession.id == session_id, ConsoleSession.ended_at.is_(None))
                .values(ended_at=self.clock.now(), end_reason=reason)
            )

    def end_session(self, token: str, reason: str = "signed_out") -> bool:
        """End the session for ``token`` (sign-out). Returns whether one was open."""
        now = self.clock.now()
        with self.db.transaction() as session:
            found = session.scalars(
                select(ConsoleSession).where(ConsoleSession.token_hash == hash_token(token))
            ).one_or_none()
            if found is None or found.ended_at is not None:
                return False
            found.ended_at = now
            found.end_reason = reason
            user = session.get(ConsoleUser, found.user_id)
            if reason == "signed_out" and user is not None:
                self._audit(session, user.username, "console.signed_out", str(user.id))
            return True

    def open_sessions(self, user_id: int) -> int:
        """How many sessions of the user have not been ended (timeouts are applied lazily)."""
        with self.db.sessions() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(ConsoleSession)
                    .where(ConsoleSession.user_id == user_id, ConsoleSession.ended_at.is_(None))
                )
                or 0
            )
