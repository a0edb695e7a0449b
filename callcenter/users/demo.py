"""Demo console users for ``callcenter demo``: one per role, fictional, marked as demo.

Their passwords are random per machine, made once and kept in ``<data_dir>/demo-console-
users.txt`` (mode 0600) beside the demo secrets, never printed to a log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .service import UserService, temporary_password

#: username, display name, role, routing agent id, specialty
DEMO_USERS = (
    ("demo-admin", "演示管理员 (demo)", "admin", None, None),
    ("demo-supervisor", "演示主管 (demo)", "supervisor", None, None),
    ("demo-agent", "演示坐席 (demo)", "agent", "demo-agent", None),
    ("demo-expert", "演示专家 (demo)", "expert", "demo-expert", "cardiology"),
)


@dataclass(frozen=True)
class DemoUsers:
    """Where the demo users' passwords are and which users were new."""

    path: Path
    usernames: tuple[str, ...]
    created: int


def ensure_demo_users(users: UserService, data_dir: Path) -> DemoUsers:
    """Create the demo users that do not exist yet; their passwords go to the file."""
    path = data_dir / "demo-console-users.txt"
    known: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, sep, password = line.partition(" ")
            if sep and not line.startswith("#"):
                known[name] = password.strip()
    created = 0
    for username, display, role, agent_id, specialty in DEMO_USERS:
        if users.by_username(username) is not None:
            continue
        password = known.get(username) or temporary_password()
        users.create(
            username,
            display,
            role,
            password,
            actor="demo",
            routing_agent_id=agent_id,
            specialty=specialty,
        )
        known[username] = password
        created += 1
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "# Demo console users (username password), made by `callcenter demo`.\n"
        text += "".join(f"{name} {known[name]}\n" for name, *_ in DEMO_USERS if name in known)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    return DemoUsers(path, tuple(name for name, *_ in DEMO_USERS), created)
