"""The reply handler registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy.orm import Session

from callcenter.clock import Clock
from callcenter.messaging.replies import ReplyHandlers


def confirm(session: Session, context: Mapping[str, Any], text: str, clock: Clock) -> str | None:
    return f"confirmed {context.get('booking_id')} with {text}"


def test_registered_handlers_are_found_by_name() -> None:
    handlers = ReplyHandlers()
    handlers.register("reminder.confirm", confirm)
    handlers.register("followup:q1", confirm)
    assert handlers.get("reminder.confirm") is confirm
    assert handlers.get("reminder.other") is None
    assert "reminder.confirm" in handlers
    assert "nobody" not in handlers
    assert list(handlers) == ["followup:q1", "reminder.confirm"]
    assert len(handlers) == 2


def test_a_name_is_registered_once() -> None:
    handlers = ReplyHandlers()
    handlers.register("reminder.confirm", confirm)
    with pytest.raises(ValueError, match="already registered"):
        handlers.register("reminder.confirm", confirm)


@pytest.mark.parametrize("name", ["", "Reminder", "1st", "has space", "x" * 65, "提醒"])
def test_names_fit_the_outbox_column(name: str) -> None:
    with pytest.raises(ValueError, match="reply handler name"):
        ReplyHandlers().register(name, confirm)
