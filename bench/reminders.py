"""Scheduled outbound benchmark: 10,000 reminders due in one minute and a burst of 1,000 recalls.

What runs, on a fresh PostgreSQL database (``LOCALE 'C.UTF-8' TEMPLATE template0``):

* ``--reminders`` bookings (fictional patients, demo hospital) whose 2-hours-before reminder
  moments are spread over one minute, starting ``--lead`` seconds after the processes start;
* ``--schedulers`` real ``callcenter scheduler`` processes (the reminder job, every
  ``reminders.interval_s``, default 30 s) writing the reminders into the outbox;
* ``--workers`` real ``callcenter worker`` processes sending through ``TwilioSender`` to a
  local fake Twilio API (:mod:`bench.fake_provider`) that refuses (429 / 20429) more than
  ``--call-rate`` calls and ``--sms-rate`` SMS segments in any second (Twilio meters SMS in
  message segments per second; the reminder text is two segments) and records every send with
  its arrival time; the dispatchers are configured with the same limits;
* at the first reminder moment, ``--recalls`` waiting-room recalls: the queues of
  ``--recalls / 5`` clinics move at once and each hospital queue system posts a signed
  ``POST /api/hospitals/h1/queue-events`` (through the real Flask app, one after another)
  with five patients who have not checked in and are now 1-5 places from the front; each
  becomes one urgent recall call in the outbox (a tenth of them to numbers in a time zone
  that is in quiet hours: urgent calls are exempt);
* and ``--trap`` ordinary (non-urgent) SMS to numbers in that quiet time zone, which must not
  go out at all while its quiet hours last.

Quiet hours are set relative to the moment of the run (from 3 h to 14 h after the current
Shanghai time, recipient-local), so that the reminders' recipients (mainland mobiles,
Asia/Shanghai) are outside them and the trap's (New York numbers) inside, whenever it runs.

Printed per stream: sends / expected, time to drain (from the first moment it was due to the
last send), achieved rate as % of the limit (units, that is SMS segments or calls, over the
span from the first to the last send; messages per second beside it), the most units in any
one-second window, p50/p99 lateness (send - due: a reminder's
moment, a recall's queue event), duplicates (outbox rows sent more than once, reminders sent more
than once per booking), sends in quiet hours (non-urgent sends whose recipient-local time is in
quiet hours) and 429s.

Baseline, in the same run: no database, no scheduler: the same due times and a reminder text
of the same length (:data:`BODY`, rendered from the same template) fed to the same fake
provider through ``TwilioSender`` by two threads (SMS and calls) that each send a message the
moment it is due and its channel's schedule (exactly units/limit apart) allows: the best any
sender at the limit can do.

    .venv/bin/python bench/reminders.py [--reminders 10000] [--recalls 1000] [--workers 2]
        [--schedulers 2] [--sms-rate 100] [--call-rate 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import insert, select, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fake_provider import ChannelLimitedProvider, units  # noqa: E402
from callcenter.booking.models import Booking, Patient  # noqa: E402
from callcenter.config import load_config  # noqa: E402
from callcenter.db.engine import Database, make_engine  # noqa: E402
from callcenter.db.migrate import upgrade  # noqa: E402
from callcenter.db.models import OutboxMessage  # noqa: E402
from callcenter.messaging.ports import OutgoingCall, OutgoingSms, SendError  # noqa: E402
from callcenter.messaging.quiet_hours import quiet_until, recipient_zone  # noqa: E402
from callcenter.messaging.templates import Templates  # noqa: E402
from callcenter.telephony.twilio.rest import TwilioSender  # noqa: E402
from tests.booking.conftest import seed_kb  # noqa: E402

ACCOUNT = "AC" + "0" * 32
TOKEN = "bench-token"
SECRET = "bench-secret"
SMS_FROM = "+862161234567"
CALL_FROM = "+862161234568"
BASE = "https://hotline.example.org"
TZ = ZoneInfo("Asia/Shanghai")
DB_NAME = "callcenter_bench_reminders"
FEED_KEY = "bench-feed-key-0123456789abcdef-0123456789"
#: the baseline's SMS: the reminder template with a demo booking's values, as long as the
#: reminders the hotline sends (two segments)
BODY = Templates(ROOT / "ivr_flows").render(
    "booking_reminder",
    "zh-CN",
    {
        "hospital": "测试医院（演示）",
        "department": "心内科",
        "doctor": "演示医生 主任医师",
        "when": "11月27日 上午 09:30",
        "visit_number": "10000001",
        "cancel_by": "11月26日 17:00",
    },
)


def reminder_phone(i: int) -> str:
    """A mainland mobile (Asia/Shanghai) for booking ``i``."""
    return f"+86139{i:08d}"


def recall_phone(i: int) -> str:
    """Recall ``i``'s number: every tenth a New York number (in quiet hours), else mainland."""
    if i % 10 == 9:
        return f"+1212555{i // 10 % 10000:04d}"
    return f"+86137{i:08d}"


def trap_phone(i: int) -> str:
    """A New York number for ordinary SMS that quiet hours must hold back."""
    return f"+1202555{i % 10000:04d}"


# ---------------------------------------------------------------- measuring


@dataclass
class Send:
    """One message the provider accepted."""

    key: str  # outbox id, or the baseline's message id
    kind: str
    to: str
    at: float  # Unix seconds of arrival
    due: float
    urgent: bool
    units: int = 1  # SMS segments, or 1 for a call


def quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def max_per_second(sends: list[tuple[float, int]]) -> int:
    """The most units (segments, calls) sent within any closed one-second window."""
    ordered = sorted(sends)
    best, start, total = 0, 0, 0
    for t, u in ordered:
        total += u
        while ordered[start][0] < t - 1.0:
            total -= ordered[start][1]
            start += 1
        best = max(best, total)
    return best


def in_quiet(send: Send, qs: str, qe: str) -> bool:
    moment = datetime.fromtimestamp(send.at, UTC)
    return quiet_until(moment, recipient_zone(send.to, "Asia/Shanghai"), qs, qe) is not None


def stream_row(
    name: str,
    sends: list[Send],
    expected: int,
    limit: float,
    first_due: float,
    extra_dups: int,
    qs: str,
    qe: str,
    r429: int | str,
) -> list[str]:
    copies = Counter(s.key for s in sends)
    first: dict[str, Send] = {}
    for s in sorted(sends, key=lambda s: s.at):
        first.setdefault(s.key, s)
    ordered = sorted(first.values(), key=lambda s: s.at)
    times = [s.at for s in ordered]
    lateness = sorted(s.at - s.due for s in first.values())
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    ok = bool(span and span > 0)
    # Units sent over the span: everything but the last send, which ends the span.
    rate = sum(s.units for s in ordered[:-1]) / span if ok else float("nan")
    messages = (len(times) - 1) / span if ok else float("nan")
    unit = "seg" if ordered and ordered[0].kind == "sms" else "calls"
    quiet = sum(1 for s in sends if not s.urgent and in_quiet(s, qs, qe))
    return [
        name,
        f"{len(first)}/{expected}",
        f"{times[-1] - first_due:.1f} s" if times else "-",
        f"{rate / limit * 100:.1f}% ({rate:.1f} {unit}/s, {messages:.1f} msg/s)",
        f"{max_per_second([(s.at, s.units) for s in sends])}",
        f"{quantile(lateness, 50):.2f} s",
        f"{quantile(lateness, 99):.2f} s",
        str(sum(n - 1 for n in copies.values()) + extra_dups),
        str(quiet),
        str(r429),
    ]


HEADER = [
    "stream",
    "sent",
    "drain",
    "achieved rate (% of limit)",
    "max units/1s",
    "late p50",
    "late p99",
    "dups",
    "quiet",
    "429s",
]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


# ---------------------------------------------------------------- set-up


def quiet_window(now: datetime) -> tuple[str, str]:
    """Quiet hours from 3 h to 14 h after Shanghai's current time (recipient-local)."""
    local = now.astimezone(TZ)
    start = (local + timedelta(hours=3)).strftime("%H:%M")
    end = (local + timedelta(hours=14)).strftime("%H:%M")
    return start, end


def admin_url() -> str:
    return os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_database() -> str:
    admin = make_engine(admin_url())
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {DB_NAME} LOCALE 'C.UTF-8' TEMPLATE template0"))
    admin.dispose()
    url = admin_url().rsplit("/", 1)[0] + "/" + DB_NAME
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def drop_database() -> None:
    admin = make_engine(admin_url())
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
    admin.dispose()


def write_config(
    workdir: Path, url: str, provider_url: str, args: argparse.Namespace, quiet: tuple[str, str]
) -> Path:
    """The repository's config.yaml with the benchmark's database, sender, limits and quiet
    hours, and only the 2-hours-before reminder."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["instance"]["data_dir"] = str(workdir)
    raw["ivr"]["flows_dir"] = str(ROOT / "ivr_flows")
    raw["database"]["url"] = url
    raw["twilio"]["api_base_url"] = provider_url
    raw["logging"]["level"] = "WARNING"
    m = raw["messaging"]
    m.update(
        {
            "sender": "twilio",
            "sms_from": SMS_FROM,
            "call_from": CALL_FROM,
            "quiet_start": quiet[0],
            "quiet_end": quiet[1],
        }
    )
    m["sms"] = {"per_second": args.sms_rate}
    m["calls"] = {"per_second": args.call_rate}
    if args.concurrency is not None:
        m["sms"]["concurrency"] = m["calls"]["concurrency"] = args.concurrency
    raw["reminders"]["offsets"] = [{"name": "2h", "minutes_before": 120}]
    if args.interval is not None:
        raw["reminders"]["interval_s"] = args.interval
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def seed_bookings(url: str, count: int, first_moment: datetime) -> dict[int, float]:
    """``count`` bookings whose reminder moments (2 h before) spread over one minute from
    ``first_moment``; returns each booking's moment (Unix seconds) by visit-number suffix."""
    db = Database.from_url(url)
    seed_kb(db)
    created = first_moment - timedelta(days=2)
    moments: dict[int, float] = {}
    patients, bookings = [], []
    for i in range(count):
        moment = first_moment + timedelta(seconds=60 * i / count)
        moments[i] = moment.timestamp()
        starts = moment + timedelta(hours=2)
        patients.append(
            {
                "id": i + 1,
                "name": "演示患者",
                "id_type": "cn_id",
                "id_hmac": f"{i:064d}",
                "id_last4": f"{i % 10000:04d}",
                "created_at": created,
                "updated_at": created,
            }
        )
        bookings.append(
            {
                "visit_number": f"{10_000_000 + i}",
                "patient_id": i + 1,
                "backend": "sql",
                "slot_id": "bench-slot",
                "clinic_id": "bench-clinic",
                "backend_ref": f"bench-{i}",
                "hospital_id": "h1",
                "department_id": "h1-card",
                "expert_id": None,
                "visit_date": starts.astimezone(TZ).date(),
                "starts_at": starts,
                "ends_at": starts + timedelta(minutes=30),
                "status": "booked",
                "password_hash": "bench",
                "password_expires_at": starts + timedelta(days=1),
                "contact_phone": reminder_phone(i),
                "language": "en" if i % 5 == 4 else "zh-CN",
                "channel": "ivr",
                "created_by": "bench",
                "created_at": created,
                "updated_at": created,
                "password_version": 1,
            }
        )
    with db.transaction() as s:
        s.execute(insert(Patient.__table__), patients)  # type: ignore[arg-type]
        s.execute(insert(Booking.__table__), bookings)  # type: ignore[arg-type]
    db.dispose()
    return moments


def seed_recall_bookings(url: str, count: int, now: datetime) -> None:
    """``count`` bookings (visits that started ten minutes ago: the patients are in the
    waiting room) for the recall patients, visit numbers ``20000000 + i``."""
    if count == 0:
        return
    db = Database.from_url(url)
    starts = now - timedelta(minutes=10)
    created = now - timedelta(days=2)
    patients, bookings = [], []
    for i in range(count):
        pid = 1_000_000 + i
        patients.append(
            {
                "id": pid,
                "name": "演示患者",
                "id_type": "cn_id",
                "id_hmac": f"r{i:063d}",
                "id_last4": f"{i % 10000:04d}",
                "created_at": created,
                "updated_at": created,
            }
        )
        bookings.append(
            {
                "visit_number": f"{20_000_000 + i}",
                "patient_id": pid,
                "backend": "sql",
                "slot_id": "bench-slot",
                "clinic_id": f"bench-c{i // 5}",
                "backend_ref": f"bench-r{i}",
                "hospital_id": "h1",
                "department_id": "h1-card",
                "expert_id": None,
                "visit_date": starts.astimezone(TZ).date(),
                "starts_at": starts,
                "ends_at": starts + timedelta(hours=3),
                "status": "booked",
                "password_hash": "bench",
                "password_expires_at": starts + timedelta(days=1),
                "contact_phone": recall_phone(i),
                "language": "zh-CN",
                "channel": "ivr",
                "created_by": "bench",
                "created_at": created,
                "updated_at": created,
                "password_version": 1,
            }
        )
    with db.transaction() as s:
        s.execute(insert(Patient.__table__), patients)  # type: ignore[arg-type]
        s.execute(insert(Booking.__table__), bookings)  # type: ignore[arg-type]
    db.dispose()


def recall_burst(
    config_path: Path, count: int, trap: int, at: datetime, done: dict[str, float]
) -> None:
    """At ``at``: the queues of ``count / 5`` clinics move at once, each posting one signed
    ``POST /api/hospitals/h1/queue-events`` (through the real Flask app) with five patients
    who have not checked in and are now 1-5 places from the front: ``count`` recall calls.
    Then ``trap`` ordinary SMS to numbers in quiet hours."""
    from agents_console import create_app
    from callcenter.bootstrap import build
    from callcenter.feeds.service import sign

    environ = {
        "SECRET_KEY": SECRET,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "HOSPITAL_FEED_KEYS": f"h1={FEED_KEY}",
        "PUBLIC_BASE_URL": BASE,
    }
    services = build(load_config(config_path, environ=environ))
    client = create_app(services).test_client()
    time.sleep(max(0.0, at.timestamp() - time.time()))
    refused: Counter[int] = Counter()
    for c in range(count // 5):
        event = {
            "event_id": f"bench-{c}",
            "clinic": {
                "id": f"bench-c{c}",
                "name": {"zh": "心内科门诊（演示）", "en": "Cardiology clinic (demo)"},
            },
            "now_calling": 10,
            "waiting": [
                {
                    "visit_number": f"{20_000_000 + 5 * c + j}",
                    "queue_number": 11 + j,
                    "checked_in": False,
                }
                for j in range(5)
            ],
            "at": datetime.now(UTC).isoformat(),
        }
        body = json.dumps(event).encode()
        ts = str(int(time.time()))
        response = client.post(
            "/api/hospitals/h1/queue-events",
            data=body,
            content_type="application/json",
            headers={
                "X-Hotline-Timestamp": ts,
                "X-Hotline-Signature": sign(FEED_KEY.encode(), ts, body),
            },
        )
        response.close()  # as a server does: frees the app's request slot
        if response.status_code != 200:
            refused[response.status_code] += 1
    done["recalls_written"] = time.time()
    done["refused"] = float(sum(refused.values()))
    now = datetime.now(UTC)
    with services.db.transaction() as s:
        for i in range(trap):
            services.outbox.enqueue(
                s,
                channel="sms",
                to_e164=trap_phone(i),
                template="service_guide",
                language="zh-CN",
                params={},
                dedupe_key=f"trap:{i}",
                now=now,
            )
    services.db.dispose()


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "callcenter.cli", *args],
        env=env,
        cwd=str(log.parent),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def run_system(args: argparse.Namespace, workdir: Path) -> list[list[str]]:
    url = create_database()
    procs: list[subprocess.Popen[bytes]] = []
    quiet = quiet_window(datetime.now(UTC))
    sample = datetime.now(UTC)
    assert quiet_until(sample, recipient_zone(trap_phone(0), "UTC"), *quiet) is not None
    assert quiet_until(sample, recipient_zone(reminder_phone(0), "UTC"), *quiet) is None
    with ChannelLimitedProvider(sms_per_s=args.sms_rate, calls_per_s=args.call_rate) as provider:
        config_path = write_config(workdir, url, provider.url, args, quiet)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
        env.update(
            {
                "CALLCENTER_CONFIG": str(config_path),
                "TWILIO_ACCOUNT_SID": ACCOUNT,
                "TWILIO_AUTH_TOKEN": TOKEN,
                "SECRET_KEY": SECRET,
                "PUBLIC_BASE_URL": BASE,
                "PYTHONPATH": str(ROOT),
            }
        )
        first_moment = datetime.now(UTC) + timedelta(seconds=args.lead)
        t_seed = time.time()
        moments = seed_bookings(url, args.reminders, first_moment)
        seed_recall_bookings(url, args.recalls, datetime.now(UTC))
        print(
            f"seeded {args.reminders} bookings in {time.time() - t_seed:.1f} s; quiet hours "
            f"{quiet[0]}-{quiet[1]} recipient-local; first reminder moment in "
            f"{first_moment.timestamp() - time.time():.1f} s",
            flush=True,
        )
        done: dict[str, float] = {}
        try:
            for n in range(args.workers):
                procs.append(spawn(["worker", "--worker-id", f"w{n}"], env, workdir / f"w{n}.log"))
            for n in range(args.schedulers):
                procs.append(spawn(["scheduler"], env, workdir / f"s{n}.log"))
            failed: list[BaseException] = []

            def burst_main() -> None:
                try:
                    recall_burst(config_path, args.recalls, args.trap, first_moment, done)
                except BaseException as exc:
                    failed.append(exc)

            burst = threading.Thread(target=burst_main)
            burst.start()
            expected = args.reminders + args.recalls
            deadline = (
                first_moment.timestamp()
                + 120
                + 1.6 * max(args.reminders / args.sms_rate, args.recalls / args.call_rate)
            )
            while len(set(provider.outbox_ids())) < expected and time.time() < deadline:
                if failed:
                    raise RuntimeError("the recall burst failed") from failed[0]
                dead = [p for p in procs if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"a process died; see the logs in {workdir}")
                time.sleep(0.5)
            time.sleep(2.0)  # anything still in flight, and time for a trap message to leak
            burst.join()
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        db = Database.from_url(url)
        with db.transaction() as s:
            rows = {
                r.id: r
                for r in s.execute(
                    select(
                        OutboxMessage.id,
                        OutboxMessage.dedupe_key,
                        OutboxMessage.channel,
                        OutboxMessage.urgent,
                        OutboxMessage.due_at,
                        OutboxMessage.to_e164,
                        OutboxMessage.status,
                        OutboxMessage.last_error,
                    )
                )
            }
        db.dispose()
        reminder_sends: list[Send] = []
        recall_sends: list[Send] = []
        trap_sends: list[Send] = []
        for r in provider.received:
            if r.outbox_id is None or r.outbox_id not in rows:
                continue
            row = rows[r.outbox_id]
            key = str(row.dedupe_key)
            if key.startswith("reminder:"):
                i = int(key.split(":")[1]) - 10_000_000
                reminder_sends.append(
                    Send(key, "sms", row.to_e164, r.wall, moments[i], False, units("sms", r.body))
                )
            elif key.startswith("recall:"):
                due = row.due_at.timestamp()
                recall_sends.append(Send(key, "call", row.to_e164, r.wall, due, True))
            elif key.startswith("trap:"):
                trap_sends.append(
                    Send(key, "sms", row.to_e164, r.wall, 0.0, False, units("sms", r.body))
                )
        reminder_rows = Counter(
            str(r.dedupe_key).split(":")[1]
            for r in rows.values()
            if str(r.dedupe_key).startswith("reminder:")
        )
        per_booking = Counter(s.to for s in reminder_sends)
        extra = sum(n - 1 for n in per_booking.values() if n > 1)
        held = Counter(
            str(r.last_error) for r in rows.values() if str(r.dedupe_key).startswith("trap:")
        )
        r429 = provider.count_429()
        result = [
            stream_row(
                f"reminders (SMS, {args.workers} workers, {args.schedulers} schedulers)",
                reminder_sends,
                args.reminders,
                args.sms_rate,
                first_moment.timestamp(),
                extra,
                *quiet,
                r429,
            ),
            stream_row(
                "recalls (urgent calls)",
                recall_sends,
                args.recalls,
                args.call_rate,
                first_moment.timestamp(),
                0,
                *quiet,
                "",
            ),
        ]
        written = done.get("recalls_written", 0.0) - first_moment.timestamp()
        print(
            f"reminder rows written: {sum(reminder_rows.values())} for {len(reminder_rows)} "
            f"bookings; recalls written by {written:.1f} s after the first moment; "
            "trap SMS (non-urgent, recipients in quiet hours): "
            f"{len(trap_sends)} of {args.trap} sent, held: {dict(held)}; queue events refused: "
            f"{int(done.get('refused', 0))}",
            flush=True,
        )
    drop_database()
    return result


# ---------------------------------------------------------------- baseline


def run_baseline(args: argparse.Namespace) -> list[list[str]]:
    """The same due times, no database: each channel's thread sends every message as soon as
    it is due and 1/limit after the previous one."""
    quiet = quiet_window(datetime.now(UTC))
    with ChannelLimitedProvider(sms_per_s=args.sms_rate, calls_per_s=args.call_rate) as provider:
        sender = TwilioSender(
            ACCOUNT, TOKEN, api_base_url=provider.url, sms_from=SMS_FROM, call_from=CALL_FROM
        )
        t0 = time.time() + 1.0
        sms_due = [t0 + 60 * i / args.reminders for i in range(args.reminders)]
        call_due = [t0] * args.recalls

        size = units("sms", BODY)

        def pump(kind: str, due: list[float], rate: float, offset: int) -> None:
            gap = (size if kind == "sms" else 1) / rate
            previous = -1e18
            for i, d in enumerate(due):
                at = max(d, previous + gap)
                time.sleep(max(0.0, at - time.time()))
                previous = max(at, time.time())
                oid = offset + i
                while True:
                    try:
                        if kind == "sms":
                            sender.send_sms(
                                OutgoingSms(
                                    outbox_id=oid,
                                    to_e164=reminder_phone(i),
                                    body=BODY,
                                    segments=size,
                                    status_callback=f"{BASE}/twilio/sms/status?o={oid}",
                                )
                            )
                        else:
                            sender.place_call(
                                OutgoingCall(
                                    outbox_id=oid,
                                    to_e164=recall_phone(i),
                                    answer_url=f"{BASE}/twilio/voice/outbound?o={oid}",
                                    status_callback=f"{BASE}/twilio/voice/status?o={oid}",
                                )
                            )
                    except SendError:
                        # refused (429): try again one slot later
                        time.sleep(gap)
                        previous = time.time()
                    else:
                        break

        threads = [
            threading.Thread(target=pump, args=("sms", sms_due, args.sms_rate, 1)),
            threading.Thread(
                target=pump, args=("call", call_due, args.call_rate, 1 + args.reminders)
            ),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sms, calls = [], []
        for r in provider.received:
            oid = r.outbox_id or 0
            if r.kind == "sms":
                sms.append(Send(str(oid), "sms", r.to, r.wall, sms_due[oid - 1], False, size))
            else:
                due = call_due[oid - 1 - args.reminders]
                calls.append(Send(str(oid), "call", r.to, r.wall, due, True))
        refused = provider.count_429()
    return [
        stream_row(
            "baseline reminders (no DB)",
            sms,
            args.reminders,
            args.sms_rate,
            t0,
            0,
            *quiet,
            refused,
        ),
        stream_row(
            "baseline recalls (no DB)", calls, args.recalls, args.call_rate, t0, 0, *quiet, ""
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--recalls", type=int, default=1_000)
    parser.add_argument("--trap", type=int, default=200, help="non-urgent SMS into quiet hours")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--sms-rate", type=float, default=100.0)
    parser.add_argument("--call-rate", type=float, default=10.0)
    parser.add_argument(
        "--interval", type=float, default=None, help="reminders.interval_s (default: config)"
    )
    parser.add_argument("--lead", type=float, default=20.0, help="seconds to the first moment")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="messaging.<channel>.concurrency"
    )
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    print(
        f"{args.reminders} reminders due within one minute + {args.recalls} recall calls at its "
        f"start; fake provider limits {args.sms_rate:g} SMS segments/s and "
        f"{args.call_rate:g} calls/s; PostgreSQL; {os.cpu_count()} CPUs shared with other work",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-reminders-"))
    rows: list[list[str]] = []
    try:
        if not args.no_baseline:
            rows += run_baseline(args)
            print_table(rows)
            print(flush=True)
        rows += run_system(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
