"""``callcenter scheduler``: runs the scheduled jobs (APScheduler) that fill the outbox.

The jobs only insert outbox rows under dedupe keys, so any number of scheduler processes may
run; each keeps its jobs in memory (no shared job store: one would run one-shot jobs twice and
drop ones that came due while it was down). A job that came due while every scheduler was down
is caught up by the next run (see :mod:`schedulers.reminders`).
"""

from __future__ import annotations

import json
import logging
import signal
from types import FrameType
from typing import Any

import click

from callcenter.bootstrap import Services

from .reminders import fill_reminders

log = logging.getLogger(__name__)


def run_reminders(services: Services) -> dict[str, Any]:
    """One run of the reminder job with the process's services; returns its counts."""
    if services.booking is None:
        raise click.ClickException("reminders need SECRET_KEY (the booking service)")
    result = fill_reminders(
        services.db, services.outbox, services.booking, services.clock, services.config.settings
    )
    return result.as_dict()


@click.command()
@click.option("--once", is_flag=True, help="Run every job once now, print what it did, exit.")
@click.option(
    "--interval",
    type=click.FloatRange(1, 3600),
    default=None,
    help="Seconds between reminder runs (default: reminders.interval_s).",
)
@click.pass_obj
def scheduler(state: Any, once: bool, interval: float | None) -> None:
    """Fill the outbox with appointment reminders on a timer (sends nothing itself)."""
    from callcenter.cli import _services

    services: Services = _services(state)
    try:
        if once:
            click.echo(json.dumps({"reminders": run_reminders(services)}, ensure_ascii=False))
            return
        _run_forever(services, interval or services.config.settings.reminders.interval_s)
    finally:
        services.db.dispose()


def _run_forever(services: Services, interval_s: float) -> None:
    """Run the jobs with APScheduler until SIGINT or SIGTERM."""
    from apscheduler.schedulers.blocking import (  # type: ignore[import-untyped]
        BlockingScheduler,
    )

    # one line per tick from APScheduler is noise; its warnings (a missed run) still show
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    sched = BlockingScheduler(timezone="UTC")

    def reminders_job() -> None:
        try:
            run_reminders(services)
        except Exception:
            log.exception("reminder job failed; the next run tries again")

    sched.add_job(
        reminders_job,
        "interval",
        seconds=interval_s,
        id="reminders",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=services.clock.now(),
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("scheduler stopping (signal %s)", signum)
        sched.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("scheduler started: reminders every %ss", interval_s)
    sched.start()
