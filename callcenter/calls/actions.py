"""Service actions that flows call by name (``type: action``), and their registry.

An action gets an :class:`ActionContext` (the call, the open database transaction, the
arguments the flow passed) and returns an :class:`~callcenter.ivr.engine.ActionResult` whose
``outcome`` picks the flow's next node. Actions run inside the webhook's transaction, so what
they write commits or rolls back with the call step. An action that raises is reported to the
flow as the ``error`` outcome; it never breaks the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ..clock import Clock
from ..ivr.engine import ActionResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionContext:
    """What an action may use: the call's identity, language, arguments and the transaction."""

    session: Session
    call_id: int
    caller: str | None
    language: str
    args: Mapping[str, str]
    clock: Clock
    #: the session's variables (read-only): what the caller chose so far, ``sealed`` values
    vars: Mapping[str, Any] = field(default_factory=dict)


Action = Callable[[ActionContext], ActionResult]


class ActionRegistry(Mapping[str, Action]):
    """Named actions. Flows are validated against the names registered here at start-up."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def register(self, name: str, action: Action) -> None:
        """Add ``action`` under ``name`` (each name once)."""
        if name in self._actions:
            raise ValueError(f"action {name!r} is already registered")
        self._actions[name] = action

    def __getitem__(self, name: str) -> Action:
        return self._actions[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._actions)

    def __len__(self) -> int:
        return len(self._actions)

    def run(self, name: str, ctx: ActionContext) -> ActionResult:
        """Run an action; unknown names and exceptions become the ``error`` outcome."""
        action = self._actions.get(name)
        if action is None:
            log.error("flow called unregistered action %s", name)
            return ActionResult("error", {})
        try:
            with ctx.session.begin_nested():
                return action(ctx)
        except Exception:
            log.exception("action %s failed on call %s", name, ctx.call_id)
            return ActionResult("error", {})


def describe(registry: Mapping[str, Any]) -> list[str]:
    """Sorted action names, for ``--help`` texts and error messages."""
    return sorted(registry)
