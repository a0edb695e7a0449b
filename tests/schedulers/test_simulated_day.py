"""A simulated day and a half of reminders with two scheduler processes and two dispatcher
workers: every reminder goes out exactly once, at its moment, and none in quiet hours.

The four processes are real OS processes on the test database (PostgreSQL with
``TEST_DATABASE=postgresql``), each with its own connections: two run the reminder job
(:func:`schedulers.cli.run_reminders`, what ``callcenter scheduler`` runs on its timer) in a
loop, two run the real :class:`~callcenter.messaging.dispatcher.Dispatcher` (what
``callcenter worker`` runs) with a sender that writes down every message it is handed. They
share one clock, :class:`SharedClock`: the wall clock plus an offset that this test (the
driver) writes to a file. The driver moves the offset forward in 15-minute jumps from
Thursday 12:00 to Friday 18:15 (Shanghai); after each jump it waits until both schedulers
have finished a run that started after it and the outbox has nothing due or in flight, so the
processes see every moment of the day, in order, while the real seconds between jumps flow.

Run a process by hand: ``python -m tests.schedulers.test_simulated_day ROLE JSON``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select

from callcenter.bootstrap import Services, build
from callcenter.config import Config
from callcenter.db.models import OutboxMessage
from callcenter.messaging.ports import OutgoingCall, OutgoingSms, SendResult
from tests.booking.conftest import TZ, add_clinic, local, request, seed_kb
from tests.conftest import ROOT, make_config

THU = date(2026, 11, 26)
FRI = THU + timedelta(days=1)
SAT = THU + timedelta(days=2)
START = local(THU, "12:00")
END = local(FRI, "18:15")
STEP = timedelta(minutes=15)


class SharedClock:
    """The wall clock moved by an offset (seconds) read from ``path`` at every call."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        """The wall clock plus the driver's current offset."""
        return datetime.now(UTC) + timedelta(seconds=float(self.path.read_text()))

    def set(self, when: datetime) -> None:
        """Make the shared time ``when`` now (for every process; forward only)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(repr((when - datetime.now(UTC)).total_seconds()))
        os.replace(tmp, self.path)


def settings_overrides() -> dict[str, Any]:
    return {"booking": {"password_hash_cost": 4}, "messaging": {"poll_interval_s": 0.05}}


def process_config(args: dict[str, str]) -> Config:
    return make_config(args["database_url"], Path(args["data_dir"]), **settings_overrides())


class RecordingSender:
    """A sender that accepts everything and appends ``outbox id, recipient, shared time``."""

    name = "recording"

    def __init__(self, out: Path, clock: SharedClock) -> None:
        self.out = out
        self.clock = clock
        self.count = 0

    def _record(self, outbox_id: int, to: str) -> SendResult:
        with self.out.open("a", encoding="utf-8") as f:
            f.write(f"{outbox_id}\t{to}\t{self.clock.now().isoformat()}\n")
        self.count += 1
        return SendResult(self.name, f"REC{self.out.stem}-{self.count}", "queued")

    def send_sms(self, message: OutgoingSms) -> SendResult:
        """Record an SMS."""
        return self._record(message.outbox_id, message.to_e164)

    def place_call(self, call: OutgoingCall) -> SendResult:
        """Record a call."""
        return self._record(call.outbox_id, call.to_e164)


def run_worker(args: dict[str, str]) -> None:
    """A dispatcher worker process on the shared clock, until SIGTERM."""
    from callcenter.bootstrap import database
    from callcenter.messaging.dispatcher import Dispatcher
    from callcenter.messaging.outbox import Outbox
    from callcenter.messaging.templates import Templates

    config = process_config(args)
    clock = SharedClock(Path(args["clock"]))
    db = database(config)
    dispatcher = Dispatcher(
        Outbox.from_config(config, db),
        RecordingSender(Path(args["out"]), clock),
        Templates(config.flows_dir),
        clock=clock,
        worker_id=args["name"],
    )
    signal.signal(signal.SIGTERM, lambda *_: dispatcher.stop())
    dispatcher.run()
    db.dispose()


def run_scheduler(args: dict[str, str]) -> None:
    """The reminder job in a loop on the shared clock; after each run, the shared time at
    which it started goes into the heartbeat file."""
    from schedulers.cli import run_reminders

    services = build(process_config(args), clock=SharedClock(Path(args["clock"])))
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _f: stop.append(signum))
    beat = Path(args["out"])
    while not stop:
        started = services.clock.now()
        run_reminders(services)
        tmp = beat.with_suffix(".tmp")
        tmp.write_text(started.isoformat())
        os.replace(tmp, beat)
        time.sleep(0.02)
    services.db.dispose()


# ---------------------------------------------------------------- the day


@dataclass(frozen=True)
class Visit:
    """A booking made at ``booked`` (local), maybe cancelled at ``cancel``, and when each of
    its reminders must go out (local time) or why it never does."""

    n: int
    day: date
    at: str
    booked: datetime
    evening: datetime | str | None
    two_h: datetime | str | None
    cancel: datetime | None = None


VISITS = [
    # 2 h before 08:00 is 06:00, in quiet hours; 08:00 would leave under an hour
    Visit(1, FRI, "08:00", START, local(THU, "18:00"), "skipped: quiet_hours"),
    # 07:00 moves to the end of quiet hours, exactly an hour before: sent at 08:00
    Visit(2, FRI, "09:00", START, local(THU, "18:00"), local(FRI, "08:00")),
    Visit(3, FRI, "09:30", START, local(THU, "18:00"), local(FRI, "08:00")),
    Visit(4, FRI, "11:00", START, local(THU, "18:00"), local(FRI, "09:00")),
    Visit(5, FRI, "16:30", START, local(THU, "18:00"), local(FRI, "14:30")),
    # booked after the evening moment: that one is skipped, the 2-hour one goes
    Visit(6, FRI, "14:00", local(THU, "19:00"), "skipped: booked_after", local(FRI, "12:00")),
    # cancelled before the evening: nothing at all
    Visit(7, FRI, "10:00", START, None, None, cancel=local(THU, "15:00")),
    # Saturday's visit: its evening reminder is Friday 18:00
    Visit(8, SAT, "10:00", START, local(FRI, "18:00"), None),
    # this afternoon's visit, booked at noon: the evening before had passed before booking
    Visit(9, THU, "15:00", START, "skipped: booked_after", local(THU, "13:00")),
]


def spawn(role: str, args: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.schedulers.test_simulated_day", role, json.dumps(args)],
        cwd=str(ROOT),
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def quiescent(services: Services, now: datetime) -> bool:
    """Nothing due in the outbox and nothing being sent."""
    with services.db.transaction() as s:
        busy = s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                or_(
                    OutboxMessage.status == "claimed",
                    (OutboxMessage.status == "pending") & (OutboxMessage.not_before <= now),
                )
            )
        )
    return busy == 0


def wait_for(what: str, ok: Any, procs: list[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + 60
    while not ok():
        for p in procs:
            if p.poll() is not None:
                text = "\n".join(f.read_text(errors="replace")[-3000:] for f in logs.glob("*.log"))
                raise AssertionError(f"a process exited while waiting for {what}:\n{text}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def beat_at(path: Path) -> datetime | None:
    try:
        return datetime.fromisoformat(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def in_quiet_hours(moment: datetime) -> bool:
    t = moment.astimezone(TZ).time()
    return t.hour >= 21 or t.hour < 8


def test_two_schedulers_and_two_workers_send_every_reminder_once_over_a_day(
    database_url: str, tmp_path: Path
) -> None:
    clock_file = tmp_path / "clock"
    clock = SharedClock(clock_file)
    clock.set(START)
    config = make_config(database_url, tmp_path, **settings_overrides())
    services = build(config, clock=clock)
    assert services.booking is not None
    seed_kb(services.db)
    slots: dict[int, str] = {}
    for v in VISITS:
        end = f"{int(v.at[:2]) + 1:02d}{v.at[2:]}"
        (slots[v.n],) = add_clinic(services.db, f"sim-{v.n}", v.day, ((v.at, end, 1),))
    common = {"database_url": database_url, "data_dir": str(tmp_path), "clock": str(clock_file)}
    procs = [
        spawn("worker", {**common, "name": f"w{i}", "out": str(tmp_path / f"w{i}.sent")}, log)
        for i, log in ((0, tmp_path / "w0.log"), (1, tmp_path / "w1.log"))
    ] + [
        spawn("scheduler", {**common, "name": f"s{i}", "out": str(tmp_path / f"s{i}.beat")}, log)
        for i, log in ((0, tmp_path / "s0.log"), (1, tmp_path / "s1.log"))
    ]
    numbers: dict[int, str] = {}
    try:
        moment = START
        while moment <= END:
            clock.set(moment)
            for v in VISITS:
                if v.booked == moment:
                    numbers[v.n] = services.booking.book(request(slots[v.n], v.n)).visit_number
                if v.cancel == moment:
                    services.booking.cancel(numbers[v.n], operator="nurse1", reason="called")
            for i in (0, 1):
                beat = tmp_path / f"s{i}.beat"
                wait_for(
                    f"scheduler {i} at {moment:%a %H:%M}",
                    lambda b=beat, m=moment: (beat_at(b) or START - STEP) >= m,
                    procs,
                    tmp_path,
                )
            wait_for(
                f"the outbox at {moment:%a %H:%M}",
                lambda: quiescent(services, clock.now()),
                procs,
                tmp_path,
            )
            moment += STEP
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    with services.db.transaction() as s:
        rows = {r.id: r for r in s.scalars(select(OutboxMessage))}
        s.expunge_all()
    services.db.dispose()

    sends: list[tuple[int, str, datetime]] = []
    for i in (0, 1):
        path = tmp_path / f"w{i}.sent"
        for line in path.read_text().splitlines() if path.exists() else []:
            raw_id, to, raw_at = line.split("\t")
            sends.append((int(raw_id), to, datetime.fromisoformat(raw_at)))
    # both workers took part, and every message the day produced went out exactly once
    assert (tmp_path / "w0.sent").exists()
    assert (tmp_path / "w1.sent").exists()
    sent_ids = [oid for oid, _to, _at in sends]
    assert len(sent_ids) == len(set(sent_ids))
    assert {r.id for r in rows.values() if r.status not in ("cancelled",)} == set(sent_ids)
    # none in quiet hours, unless urgent (none here) or asked for during a call
    for oid, _to, at in sends:
        if not rows[oid].urgent and rows[oid].call_id is None:
            assert not in_quiet_hours(at), (rows[oid].template, at.astimezone(TZ))

    # every reminder: sent once within a minute of its moment, or recorded as skipped
    sent_at = {rows[oid].dedupe_key: at for oid, _to, at in sends}
    by_key = {r.dedupe_key: r for r in rows.values()}
    got: dict[str, datetime | str] = {}
    for key, row in by_key.items():
        if key.startswith("reminder:"):
            got[key] = sent_at[key] if key in sent_at else str(row.last_error)
    expected: dict[str, datetime | str] = {}
    for v in VISITS:
        for offset, want in (("evening", v.evening), ("2h", v.two_h)):
            if want is not None:
                expected[f"reminder:{numbers[v.n]}:{offset}"] = want
    assert set(got) == set(expected)
    for key, want in expected.items():
        if isinstance(want, str):
            assert got[key] == want, key
        else:
            went = got[key]
            assert isinstance(went, datetime), (key, went)
            assert want <= went < want + timedelta(minutes=1), (key, went.astimezone(TZ))
    # the cancelled booking's cancellation SMS went out, no reminder of it exists
    assert f"booking:{numbers[7]}:cancelled" in sent_at


def main(argv: list[str]) -> None:
    """Entry point of the scheduler and worker processes."""
    role, raw = argv
    args = json.loads(raw)
    {"worker": run_worker, "scheduler": run_scheduler}[role](args)


if __name__ == "__main__":
    main(sys.argv[1:])
