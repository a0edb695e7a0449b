"""SMS delivery status callbacks through the real, signed ``POST /twilio/sms/status``.

Twilio posts statuses in any order and sometimes more than once; the callback URL carries the
outbox id (``?o=<id>``). Whatever arrives, the outbox message ends at the furthest status and
each status is recorded once.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from callcenter.calls.service import CallService
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.engine import Database
from callcenter.db.models import OutboxMessage, ProviderStatus
from callcenter.messaging.inbound import InboundSmsService
from callcenter.messaging.outbox import STATUS_RANK, Outbox
from callcenter.telephony.twilio.webhooks import create_blueprint
from tests.conftest import TwilioSigner

PHONE = "+8613800138000"
SMS_STATUSES = ["accepted", "queued", "sending", "sent", "delivered", "undelivered", "failed"]
_ids = itertools.count(1)


@dataclass
class Statuses:
    """The webhook app with the outbox wired in, and helpers to drive it."""

    twilio: TwilioSigner
    db: Database
    outbox: Outbox
    clock: FakeClock

    def message(self) -> int:
        """A new SMS in the outbox (as the dispatcher would have sent it)."""
        n = next(_ids)
        with self.db.transaction() as s:
            assert self.outbox.enqueue(
                s,
                channel="sms",
                to_e164=PHONE,
                template="visit_reminder",
                language="zh-CN",
                params={},
                dedupe_key=f"status-test:{n}",
                now=self.clock.now(),
            )
            row = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like(f"%:{n}")))
            return row.one().id

    def post(self, sid: str, status: str, outbox_id: int | str | None, **extra: str) -> None:
        path = "/twilio/sms/status" if outbox_id is None else f"/twilio/sms/status?o={outbox_id}"
        response = self.twilio.post(path, {"MessageSid": sid, "MessageStatus": status, **extra})
        assert response.status_code == 204, response.get_data(as_text=True)

    def row(self, outbox_id: int) -> OutboxMessage:
        with self.db.sessions() as s:
            row = s.get(OutboxMessage, outbox_id)
            assert row is not None
            return row

    def recorded(self, sid: str) -> list[str]:
        with self.db.sessions() as s:
            return list(
                s.scalars(
                    select(ProviderStatus.status)
                    .where(ProviderStatus.provider_id == sid)
                    .order_by(ProviderStatus.id)
                )
            )


@pytest.fixture
def statuses(config: Config, clock: FakeClock) -> Iterator[Statuses]:
    """The Twilio blueprint around an inbound service that passes statuses to the outbox."""
    db = Database.from_url(config.database_url)
    outbox = Outbox.from_config(config, db)
    inbound = InboundSmsService(db, clock, outbox=outbox)
    app = Flask(__name__)
    app.config["TESTING"] = True
    # The SMS routes never touch the call service.
    app.register_blueprint(create_blueprint(config, cast(CallService, object()), inbound))
    yield Statuses(TwilioSigner(app.test_client()), db, outbox, clock)
    db.dispose()


def furthest(sent: list[str]) -> str:
    return max(sent, key=lambda s: STATUS_RANK[s])


def test_shuffled_and_repeated_statuses_end_at_the_furthest(statuses: Statuses) -> None:
    outbox_id = statuses.message()
    sid = "SMdeliv000000000000000000000000001"
    for status in ["sent", "queued", "delivered", "sent", "delivered", "queued", "sending"]:
        statuses.post(sid, status, outbox_id)
        statuses.clock.advance(1)
    row = statuses.row(outbox_id)
    assert row.status == "delivered"
    assert (row.provider, row.provider_id) == ("twilio", sid)
    assert row.finished_at is not None
    assert statuses.recorded(sid) == ["sent", "queued", "delivered", "sending"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sent=st.lists(st.sampled_from(SMS_STATUSES), min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
    with_id=st.booleans(),
)
def test_any_order_any_repeats_end_at_the_furthest(
    statuses: Statuses, sent: list[str], seed: int, with_id: bool
) -> None:
    outbox_id = statuses.message()
    sid = f"SMprop{next(_ids):028d}"
    # The first callback carries the outbox id; later ones may rely on the provider id.
    order = [*sent, *random.Random(seed).sample(sent, len(sent))]
    for n, status in enumerate(order):
        statuses.post(sid, status, outbox_id if with_id or n == 0 else None)
    assert statuses.row(outbox_id).status == furthest(sent)
    assert sorted(statuses.recorded(sid)) == sorted(set(sent))


def test_statuses_of_two_copies_land_on_one_message(statuses: Statuses) -> None:
    """The duplicate window: the same message sent twice, reported under two provider ids."""
    outbox_id = statuses.message()
    first, second = "SMcopy0000000000000000000000000001", "SMcopy0000000000000000000000000002"
    statuses.post(first, "sent", outbox_id)
    statuses.post(second, "delivered", outbox_id)
    statuses.post(first, "undelivered", outbox_id, ErrorCode="30003")
    row = statuses.row(outbox_id)
    assert row.status == "delivered"  # one copy arrived: the best news wins
    assert row.provider_id == first


def test_an_error_code_reaches_the_outbox(statuses: Statuses) -> None:
    outbox_id = statuses.message()
    sid = "SMerror000000000000000000000000001"
    statuses.post(sid, "sent", outbox_id)
    statuses.post(sid, "undelivered", outbox_id, ErrorCode="30005")
    row = statuses.row(outbox_id)
    assert (row.status, row.last_error_code) == ("undelivered", "30005")
    with statuses.db.sessions() as s:
        detail = s.scalar(
            select(ProviderStatus.detail).where(
                ProviderStatus.provider_id == sid, ProviderStatus.status == "undelivered"
            )
        )
    assert detail == {"ErrorCode": "30005"}


@pytest.mark.parametrize("bad", ["abc", "-1", "1e3", "9999999999", ""])
def test_a_malformed_outbox_id_falls_back_on_the_provider_id(statuses: Statuses, bad: str) -> None:
    outbox_id = statuses.message()
    sid = f"SMbad{next(_ids):029d}"
    statuses.post(sid, "queued", outbox_id)
    statuses.post(sid, "delivered", bad)
    assert statuses.row(outbox_id).status == "delivered"


def test_a_status_for_a_message_the_outbox_never_sent_is_still_recorded(
    statuses: Statuses,
) -> None:
    sid = "SMforeign00000000000000000000000001"
    statuses.post(sid, "delivered", None)
    statuses.post(sid, "delivered", None)
    assert statuses.recorded(sid) == ["delivered"]


def test_an_unknown_outbox_id_changes_no_other_message(statuses: Statuses) -> None:
    outbox_id = statuses.message()
    statuses.post("SMghost000000000000000000000000001", "delivered", outbox_id + 1000)
    assert statuses.row(outbox_id).status == "pending"
