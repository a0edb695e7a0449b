"""Routing on the phone: how fast the queue's wait URL answers, and one router-loop turn.

In one process, on a migrated SQLite file (or ``--database-url`` for PostgreSQL), with
``--waiting`` callers in the queue, ``--agents`` agents signed in and a day of ended calls
for the handle-time estimate:

* the signed ``POST /twilio/queue/wait`` webhook through the real Flask app (Werkzeug test
  client: no network), p50/p99 over ``--requests`` requests for random waiting callers;
* baseline, same app, same signatures: ``POST /twilio/fallback`` (signature check and TwiML,
  no database), so the difference is the routing work;
* ``PhoneRouting.run_once`` with everyone busy (nothing to offer: the cost of a turn that
  only checks timers), and one turn that makes ``--offers`` offers.

    .venv/bin/python bench/phone_wait.py [--waiting 500] [--agents 200] [--requests 1000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-auth-token"
BASE = "https://bench.example.org"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=500)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--offers", type=int, default=50)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    import logging

    logging.disable(logging.ERROR - 1)  # the fallback baseline logs a warning per request
    from agents_console import create_app
    from callcenter.bootstrap import build
    from callcenter.clock import FakeClock
    from callcenter.config import load_config
    from callcenter.db.engine import make_engine
    from callcenter.db.migrate import upgrade
    from callcenter.db.models import Call

    tmp = Path(tempfile.mkdtemp(prefix="bench-phone-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    env = {"TWILIO_AUTH_TOKEN": TOKEN, "SECRET_KEY": "bench", "PUBLIC_BASE_URL": BASE}
    config = load_config(
        ROOT / "config.yaml",
        environ=env,
        overrides={"database": {"url": url}, "instance": {"data_dir": str(tmp)}},
    )
    clock = FakeClock(datetime(2026, 11, 26, 1, 0, tzinfo=UTC))
    services = build(config, clock=clock)
    routing = services.routing

    # A day of ended calls (handle times), then agents all busy, then the waiting callers.
    for n in range(args.agents):
        routing.agent_sign_in(f"a{n}", levels={"general": 0})
    for n in range(args.agents):
        routing.enqueue_caller(f"CAold{n:06d}", "general")
    for offer in routing.dispatch():
        routing.accept(offer.agent_id, offer.caller_id)
    clock.advance(200)
    sids = [f"CA{n:032d}" for n in range(args.waiting)]
    with services.db.transaction() as session:
        for sid in sids:
            session.add(
                Call(
                    provider="twilio",
                    provider_call_id=sid,
                    from_e164="+8613800138000",
                    language="zh-CN",
                    queue="general",
                    started_at=clock.now(),
                )
            )
    for n, sid in enumerate(sids):
        routing.enqueue_caller(sid, "general", language="zh-CN", priority=n % 3)
    app = create_app(services, TESTING=True)
    client = app.test_client()
    validator = RequestValidator(TOKEN)

    def timed(path: str, params: dict[str, str]) -> float:
        signature = validator.compute_signature(BASE + path, params)
        start = time.perf_counter()
        response = client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        elapsed = time.perf_counter() - start
        assert response.status_code == 200, response.status_code
        if path.startswith("/twilio/queue/wait"):
            body = response.get_data(as_text=True)
            assert "预计等待" in body or "坐席即将" in body, "the wait URL fell back"
        return elapsed * 1000

    rng = random.Random(7)
    wait_path = "/twilio/queue/wait?lang=zh-CN&q=general"
    for _ in range(20):  # warm up
        timed(wait_path, {"CallSid": rng.choice(sids), "QueueTime": "30"})
        timed("/twilio/fallback", {"CallSid": rng.choice(sids)})
    waits, fallbacks = [], []
    for _ in range(args.requests):
        waits.append(timed(wait_path, {"CallSid": rng.choice(sids), "QueueTime": "30"}))
        fallbacks.append(timed("/twilio/fallback", {"CallSid": rng.choice(sids)}))
    # Memory, in a separate pass (tracing slows every allocation down).
    tracemalloc.start()
    for _ in range(min(200, args.requests)):
        timed(wait_path, {"CallSid": rng.choice(sids), "QueueTime": "30"})
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    idle = []
    for _ in range(20):
        start = time.perf_counter()
        services.phone.run_once()
        idle.append((time.perf_counter() - start) * 1000)
    # Free some agents: one turn offers them callers.
    for n in range(min(args.offers, args.agents)):
        routing.end_call(f"a{n}")
    clock.advance(31)
    start = time.perf_counter()
    report = services.phone.run_once()
    busy_turn = (time.perf_counter() - start) * 1000

    backend = url.split(":", 1)[0]
    print(f"database {backend}; {args.waiting} waiting, {args.agents} agents, {args.requests} req")
    print(f"{'endpoint':<28} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in (("/twilio/queue/wait", waits), ("/twilio/fallback (base)", fallbacks)):
        print(
            f"{name:<28} {statistics.median(values):>8.2f} {percentile(values, 0.99):>8.2f} "
            f"{statistics.fmean(values):>8.2f}"
        )
    print(f"peak traced memory over 200 wait requests: {peak / 1e6:.1f} MB")
    print(
        f"router turn, nothing to offer: p50 {statistics.median(idle):.1f} ms, "
        f"max {max(idle):.1f} ms"
    )
    print(f"router turn making {report.offers} offers: {busy_turn:.1f} ms")
    services.db.dispose()


if __name__ == "__main__":
    main()
