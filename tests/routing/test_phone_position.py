"""The position a waiting caller hears is their place in the router's order (red flag, then
priority, then original queue time), for any mix of callers and callbacks."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.routing.models import RoutingCaller
from callcenter.routing.router import Caller, caller_order

CALLERS = st.lists(
    st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 5), st.booleans()),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(callers=CALLERS)
def test_position_is_the_place_in_the_router_order(
    services: Services, clock: FakeClock, callers: list[tuple[bool, int, int, bool]]
) -> None:
    with services.db.transaction() as session:
        session.execute(delete(RoutingCaller))
    start = clock.now()
    expected: list[Caller] = []
    for n, (red, priority, minute, callback) in enumerate(callers):
        call_id = f"CA{n:04d}"
        at = start + timedelta(minutes=minute)
        services.routing.enqueue_caller(
            call_id,
            "general",
            priority=priority,
            red_flag=red,
            enqueued_at=at,
            callback_number="+8613800138000" if callback else None,
        )
        expected.append(Caller(call_id, "general", at, priority, red, callback))
    order = [c.id for c in sorted(expected, key=caller_order)]
    for caller in expected:
        info = services.phone.where(caller.id)
        assert info is not None
        assert info.position == order.index(caller.id) + 1
        assert info.announce_position == (info.position <= 5)
        # Nobody signed in: no estimate, and a callback offer only to plain waiting callers.
        assert info.estimated_wait_s is None
        assert info.offer_callback == (not caller.callback)
