"""Booking benchmark: many callers at once competing for fewer places, through the service.

Per database (SQLite file, PostgreSQL) and per run: ``--places`` places (slots of
``--capacity``) in tomorrow's and the day after's clinics, ``--callers`` fictional callers
(each its own patient and phone number) run by ``--threads`` threads. Each caller picks a
random slot and books it through :class:`~callcenter.booking.service.BookingService` (input
checks, the rules with the patient locked, the conditional UPDATE, visit number, scrypt
password hash, booking row, outbox SMS, one transaction); when the slot is full it tries
another, up to ``--tries`` slots. Printed: places booked, refusals, errors, **double
bookings** (slots holding more bookings than places, or a place counted twice: must be 0),
wall time, bookings/s, attempts/s and p50/p99 latency of one attempt.

The service runs twice: with a low scrypt cost (``--low-cost``, default 4: the figure
shows the database and the service's own work) and with the production cost from
``config.yaml`` (``booking.password_hash_cost``, 14: about 45 ms of CPU per password).

The baseline, in the same run, with the same callers, threads and slot choices: the bare
conditional ``UPDATE booking_slots SET booked = booked + 1 WHERE id = ? AND booked <
capacity AND NOT closed``, one transaction per attempt, without the service's rules,
hashing, booking rows or outbox.

    .venv/bin/python bench/booking.py [--callers 2000] [--places 1000] [--capacity 10]
        [--threads 32] [--tries 3] [--backends sqlite,postgresql] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callcenter.booking.identity import check_char  # noqa: E402
from callcenter.booking.models import Booking, Clinic, Place, Slot  # noqa: E402
from callcenter.booking.rules import BookingRefused  # noqa: E402
from callcenter.booking.service import BookingRequest, BookingService  # noqa: E402
from callcenter.booking.sql_backend import SqlBookingBackend  # noqa: E402
from callcenter.clock import FakeClock  # noqa: E402
from callcenter.config import load_config  # noqa: E402
from callcenter.db.engine import Database, make_engine  # noqa: E402
from callcenter.db.migrate import upgrade  # noqa: E402
from callcenter.db.models import OutboxMessage  # noqa: E402
from callcenter.messaging.outbox import Outbox  # noqa: E402
from knowledge_base.models import Department, Hospital  # noqa: E402

PG_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
SECRET = "bench-secret-key"
SURNAMES = "张李王赵钱孙周吴郑冯陈褚卫蒋沈韩杨朱秦尤许何吕施"
GIVEN = "测演示样例虚构假名甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"


# --- databases -----------------------------------------------------------------------------


@contextmanager
def database(backend: str, threads: int) -> Iterator[Database]:
    """A fresh migrated database: a SQLite file, or a PostgreSQL database dropped after."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{tmp}/bench.db")
            upgrade(engine)
            db = Database(engine)
            try:
                yield db
            finally:
                db.dispose()
        return
    name = f"bench_booking_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name} LOCALE 'C.UTF-8' TEMPLATE template0"))
    engine = make_engine(PG_URL.rsplit("/", 1)[0] + "/" + name, pool_size=threads)
    try:
        upgrade(engine)
        db = Database(engine)
        yield db
        db.dispose()
    finally:
        engine.dispose()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def seed(db: Database, run: str, places: int, capacity: int) -> list[str]:
    """One hospital and department (fictional) and ``places`` places in slots of
    ``capacity``, half tomorrow and half the day after; returns the slot ids."""
    with db.transaction() as tx:
        if tx.get(Hospital, "bench") is None:
            tx.add(
                Hospital(id="bench", name_zh="基准医院", name_en="Bench Hospital", updated_at=NOW)
            )
            tx.flush()
            tx.add(
                Department(
                    id="bench-med", hospital_id="bench", name_zh="内科", name_en="Medicine",
                    updated_at=NOW,
                )
            )  # fmt: skip
            tx.flush()
        slots = places // capacity
        ids: list[str] = []
        for day in (date(2026, 11, 27), date(2026, 11, 28)):
            clinic = f"{run}-{day:%m%d}"
            tx.add(
                Clinic(
                    id=clinic, hospital_id="bench", department_id="bench-med", date=day,
                    session="am", fee=Decimal("25.00"), status="open", is_demo=True,
                    updated_at=NOW,
                )
            )  # fmt: skip
            tx.flush()
            start = datetime.combine(day, dtime(7, 0), tzinfo=TZ)
            for k in range(slots // 2):
                begins = start + timedelta(minutes=5 * k)
                sid = f"{clinic}-{k:04d}"
                tx.add(
                    Slot(
                        id=sid, clinic_id=clinic, starts_at=begins,
                        ends_at=begins + timedelta(minutes=5), capacity=capacity, booked=0,
                        closed=False,
                    )
                )  # fmt: skip
                ids.append(sid)
    return ids


# --- callers -------------------------------------------------------------------------------


def cn_id(n: int) -> str:
    """A checksummed resident ID number of fictional caller ``n``."""
    born = date(1950, 1, 1) + timedelta(days=n % 20_000)
    body = f"110105{born:%Y%m%d}{(n // 20_000) % 1000:03d}"
    return body + check_char(body)


def caller_name(n: int) -> str:
    """A fictional name, different for every caller."""
    s, g = len(SURNAMES), len(GIVEN)
    return SURNAMES[n % s] + GIVEN[(n // s) % g] + GIVEN[(n // (s * g)) % g]


@dataclass
class Result:
    """One run's figures."""

    label: str
    cost: str
    booked: int
    refused: Counter[str]
    errors: int
    double: int
    wall_s: float
    latencies_ms: list[float]

    def line(self, callers: int) -> str:
        lat = sorted(self.latencies_ms)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        attempts = len(lat)
        refused = sum(self.refused.values())
        return (
            f"{self.label:<34}{self.cost:>5}{callers:>8}{attempts:>9}{self.booked:>8}"
            f"{refused:>9}{self.errors:>7}{self.double:>8}{self.wall_s:>8.2f}"
            f"{self.booked / self.wall_s:>11.0f}{attempts / self.wall_s:>11.0f}"
            f"{p50:>9.1f}{p99:>9.1f}"
        )


HEADER = (
    f"{'run':<34}{'cost':>5}{'callers':>8}{'attempts':>9}{'booked':>8}{'refused':>9}"
    f"{'errors':>7}{'double':>8}{'wall s':>8}{'booked/s':>11}{'tries/s':>11}"
    f"{'p50 ms':>9}{'p99 ms':>9}"
)


def compete(
    attempt: Callable[[int, str], str], slots: list[str], callers: int, threads: int, tries: int,
    seed_: int,
) -> tuple[Counter[str], int, float, list[float], int]:  # fmt: skip
    """Run ``callers`` callers on ``threads`` threads; each tries up to ``tries`` random
    slots. Returns outcomes of the last try, errors, wall time, attempt latencies, booked."""
    rng = random.Random(seed_)
    plans = [rng.sample(slots, tries) for _ in range(callers)]
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    errors = 0

    def caller(n: int) -> None:
        nonlocal errors
        for slot in plans[n]:
            began = time.perf_counter()
            try:
                outcome = attempt(n, slot)
            except Exception as exc:  # counted and shown, never hidden
                outcome = f"error {type(exc).__name__}"
            spent = (time.perf_counter() - began) * 1000
            with lock:
                latencies.append(spent)
                if outcome.startswith("error"):
                    errors += 1
                    if errors <= 3:
                        print(f"    {outcome}", file=sys.stderr)
            if outcome != "slot_full":
                break
        with lock:
            outcomes[outcome] += 1

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(caller, range(callers)))
    wall = time.perf_counter() - began
    return outcomes, errors, wall, latencies, outcomes["booked"]


def double_bookings(db: Database, slots: list[str], with_bookings: bool) -> int:
    """Slots over capacity, or holding more bookings / live places than their counter."""
    bad = 0
    with db.transaction() as tx:
        rows = tx.execute(
            select(Slot.id, Slot.capacity, Slot.booked).where(Slot.id.in_(slots))
        ).all()
        places = dict(
            tx.execute(
                select(Place.slot_id, func.count())
                .where(Place.slot_id.in_(slots), Place.released_at.is_(None))
                .group_by(Place.slot_id)
            ).all()
        )
        bookings = dict(
            tx.execute(
                select(Booking.slot_id, func.count())
                .where(Booking.slot_id.in_(slots), Booking.status == "booked")
                .group_by(Booking.slot_id)
            ).all()
        )
        for sid, capacity, booked in rows:
            if booked > capacity or (
                with_bookings and (bookings.get(sid, 0) != booked or places.get(sid, 0) != booked)
            ):
                bad += 1
    return bad


def run_service(
    db: Database, run: str, cost: int, args: argparse.Namespace, config_path: Path
) -> Result:
    slots = seed(db, run, args.places, args.capacity)
    config = load_config(config_path, environ={"SECRET_KEY": SECRET})
    settings = config.settings.booking.model_copy(update={"password_hash_cost": cost})
    clock = FakeClock(NOW)
    service = BookingService(
        db, SqlBookingBackend(clock), Outbox.from_config(config, db), clock, settings, SECRET, TZ
    )
    offset = 100_000 * (1 + len(run))

    def attempt(n: int, slot: str) -> str:
        person = offset + n
        request = BookingRequest(
            slot_id=slot,
            name=caller_name(person),
            id_type="cn_id",
            id_number=cn_id(person),
            contact_phone=f"+86139{person:08d}",
        )
        try:
            service.book(request)
        except BookingRefused as exc:
            return exc.refusal.code
        return "booked"

    outcomes, errors, wall, lat, booked = compete(
        attempt, slots, args.callers, args.threads, args.tries, args.seed
    )
    double = double_bookings(db, slots, with_bookings=True)
    with db.transaction() as tx:
        numbers = list(tx.scalars(select(Booking.visit_number).where(Booking.slot_id.in_(slots))))
        keys = [f"booking:{n}:confirmed" for n in numbers]
        sms = sum(
            tx.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.dedupe_key.in_(keys[i : i + 500]))
            )
            or 0
            for i in range(0, len(keys), 500)
        )
    rows = len(numbers)
    if sms != rows or rows != booked:
        double += abs(sms - rows) + abs(rows - booked)
    refused = Counter({k: v for k, v in outcomes.items() if k != "booked"})
    return Result(
        "service (rules+scrypt+SMS)", str(cost), booked, refused, errors, double, wall, lat
    )


def run_baseline(db: Database, run: str, args: argparse.Namespace) -> Result:
    slots = seed(db, run, args.places, args.capacity)
    stmt = text(
        "UPDATE booking_slots SET booked = booked + 1 "
        "WHERE id = :id AND booked < capacity AND NOT closed"
    )

    def attempt(_n: int, slot: str) -> str:
        with db.connection() as conn:
            done = conn.execute(stmt, {"id": slot}).rowcount
        return "booked" if done == 1 else "slot_full"

    outcomes, errors, wall, lat, booked = compete(
        attempt, slots, args.callers, args.threads, args.tries, args.seed
    )
    double = double_bookings(db, slots, with_bookings=False)
    with db.transaction() as tx:
        total = tx.scalar(select(func.sum(Slot.booked)).where(Slot.id.in_(slots)))
    if total != booked:
        double += abs((total or 0) - booked)
    refused = Counter({k: v for k, v in outcomes.items() if k != "booked"})
    return Result(
        "baseline: bare conditional UPDATE", "-", booked, refused, errors, double, wall, lat
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=2000)
    parser.add_argument("--places", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=10)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--low-cost", type=int, default=4)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    args = parser.parse_args()
    production = load_config(args.config, environ={"SECRET_KEY": SECRET})
    prod_cost = production.settings.booking.password_hash_cost
    print(
        f"{args.callers} callers, {args.places} places in slots of {args.capacity}, "
        f"{args.threads} threads, up to {args.tries} slots per caller; "
        f"scrypt cost (log2 N): {args.low_cost} (low) and {prod_cost} (production, config.yaml)"
    )
    print(f"cpus: {os.cpu_count()}")
    for backend in args.backends.split(","):
        print(f"\n== {backend}")
        print(HEADER)
        with database(backend, args.threads) as db:
            results = [
                run_baseline(db, "base", args),
                run_service(db, "low", args.low_cost, args, args.config),
                run_service(db, "prod", prod_cost, args, args.config),
            ]
            for result in results:
                print(result.line(args.callers))
            for result in results[1:]:
                print(f"  refusals ({result.cost}): {dict(result.refused)}")


if __name__ == "__main__":
    main()
