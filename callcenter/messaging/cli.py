"""``callcenter worker``: the outbox dispatcher process, and the sender it uses."""

from __future__ import annotations

import os
import signal
import socket
import threading
from types import FrameType
from typing import Any

import click

from ..config import Config, ConfigError
from .ports import Sender


def build_sender(config: Config) -> Sender:
    """The sender ``messaging.sender`` names: ``local`` (demo) or ``twilio``.

    Raises :class:`~callcenter.config.ConfigError` when Twilio is chosen without its
    credentials (``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``) or a number to send from.
    """
    m = config.settings.messaging
    if m.sender == "local":
        from .local_sender import LocalSender

        return LocalSender()
    config.secrets.require("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    if not (m.sms_from or m.messaging_service_sid):
        raise ConfigError(
            "messaging.sms_from or messaging.messaging_service_sid must be set to send SMS "
            "through Twilio [env CALLCENTER_MESSAGING_SMS_FROM]"
        )
    from ..telephony.twilio.rest import TwilioSender

    return TwilioSender(
        config.secrets.twilio_account_sid or "",
        config.secrets.twilio_auth_token or "",
        api_base_url=config.settings.twilio.api_base_url,
        sms_from=m.sms_from or None,
        messaging_service_sid=m.messaging_service_sid or None,
        call_from=m.call_from or None,
    )


@click.command()
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option(
    "--worker-id",
    default=None,
    help="This worker's name in the outbox and its attempts (default: host-pid).",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 1000),
    default=None,
    help="Messages claimed at once (default: messaging.batch_size).",
)
@click.option(
    "--channel",
    type=click.Choice(["sms", "call", "both"]),
    default="both",
    show_default=True,
    help="What this worker sends. 'both' runs one sending loop per channel, so calls paced "
    "at their own rate never hold up SMS.",
)
@click.pass_obj
def worker(state: Any, once: bool, worker_id: str | None, batch: int | None, channel: str) -> None:
    """Send due SMS and calls from the outbox (run any number, on any machine).

    SIGTERM or Ctrl-C lets the message being sent finish, hands the rest back and exits.
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from ..bootstrap import database
    from ..cli import _Fatal
    from .dispatcher import Dispatcher
    from .outbox import Outbox
    from .templates import Templates

    config: Config = state.config()
    try:
        config.secrets.require("SECRET_KEY")
        sender = build_sender(config)
    except ConfigError as exc:
        raise _Fatal(str(exc)) from None
    db = database(config)
    outbox = Outbox.from_config(config, db)
    templates = Templates(config.flows_dir)
    name = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    loops = ["sms", "call"] if channel == "both" else [channel]
    dispatchers = [
        Dispatcher(
            outbox,
            sender,
            templates,
            worker_id=name,
            batch_size=batch,
            channels=[c],
        )
        for c in loops
    ]

    def _stop(signum: int, _frame: FrameType | None) -> None:
        for d in dispatchers:
            d.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        with db.transaction() as session:  # fails fast on a missing or old schema
            outbox.counts(session)
        if once:
            handled = sum(d.drain() for d in dispatchers)
            click.echo(f"{handled} messages handled")
        else:
            threads = [
                threading.Thread(target=d.run, name=f"dispatch-{d.channels}", daemon=True)
                for d in dispatchers[1:]
            ]
            for t in threads:
                t.start()
            dispatchers[0].run()  # the main thread keeps the signal handlers
            for d in dispatchers:
                d.stop()
            for t in threads:
                t.join()
    except (OperationalError, ProgrammingError) as exc:
        if "outbox" in str(exc) or "no such" in str(exc) or "does not exist" in str(exc):
            raise click.ClickException(
                "the database schema is missing or old: run `callcenter db upgrade`"
            ) from None
        raise
    finally:
        db.dispose()


# ---------------------------------------------------------------- operators: what happened


@click.group()
def outbox() -> None:
    """What the outbox holds: counts, failed messages, one message's attempts."""


def _outbox_services(state: Any) -> Any:
    from ..cli import _services

    return _services(state)


def _line(view: Any) -> str:
    error = f"  [{view.last_error_code}] {view.last_error or ''}" if view.last_error_code else ""
    return (
        f"{view.id:>8}  {view.created_at:%Y-%m-%d %H:%M}  {view.channel:<4}  {view.to_masked:<16}  "
        f"{view.template:<20}  {view.status:<11}  tries {view.attempts}{error}"
    )


@outbox.command("status")
@click.pass_obj
def outbox_status(state: Any) -> None:
    """How many messages are in each status (pending, sent, delivered, failed, ...)."""
    services = _outbox_services(state)
    try:
        with services.db.sessions() as s:
            counts = services.outbox.counts(s)
            unknown = len(services.outbox.unknown_attempts(s))
    finally:
        services.db.dispose()
    for status, count in sorted(counts.items()):
        click.echo(f"{status:<12} {count}")
    click.echo(
        f"{'unknown attempts':<12} {unknown}  (possible duplicates: `callcenter outbox unknown`)"
    )


@outbox.command("list")
@click.option("--status", default=None, help="Only messages in this status (e.g. failed).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.pass_obj
def outbox_list(state: Any, status: str | None, limit: int) -> None:
    """The newest messages, recipients masked; `--status failed` for those to follow up."""
    services = _outbox_services(state)
    try:
        with services.db.sessions() as s:
            views = services.outbox.list_messages(s, status=status, limit=limit)
    finally:
        services.db.dispose()
    for view in views:
        click.echo(_line(view))
    if not views:
        click.echo("no messages")


@outbox.command("show")
@click.argument("outbox_id", type=int)
@click.pass_obj
def outbox_show(state: Any, outbox_id: int) -> None:
    """One message and every attempt at sending it."""
    services = _outbox_services(state)
    try:
        with services.db.sessions() as s:
            view = services.outbox.get(s, outbox_id)
            attempts = services.outbox.attempts(s, outbox_id) if view else []
    finally:
        services.db.dispose()
    if view is None:
        raise click.ClickException(f"no outbox message {outbox_id}")
    click.echo(_line(view))
    for a in attempts:
        done = f"{a.finished_at:%H:%M:%S}" if a.finished_at else "-"
        click.echo(
            f"  attempt {a.attempt}: {a.started_at:%Y-%m-%d %H:%M:%S} -> {done}  "
            f"{a.result or 'in progress'}  {a.error_code or ''}  {a.provider_id or ''}"
            f"  ({a.worker})"
        )


@outbox.command("unknown")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.pass_obj
def outbox_unknown(state: Any, limit: int) -> None:
    """Attempts whose outcome is unknown (a worker died mid-send): each may have reached the
    provider before the message was retried. Check them in the provider's message log."""
    services = _outbox_services(state)
    try:
        with services.db.sessions() as s:
            rows = services.outbox.unknown_attempts(s, limit=limit)
    finally:
        services.db.dispose()
    for a in rows:
        click.echo(
            f"outbox {a.outbox_id} attempt {a.attempt} at {a.started_at:%Y-%m-%d %H:%M:%S}"
            f" ({a.worker})"
        )
    if not rows:
        click.echo("none")


# ---------------------------------------------------------------- operators: outbound overview


@click.group()
def outbound() -> None:
    """Outbound messages at a glance: due, sent, failed and why, held back and why."""


@outbound.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--since",
    "since_hours",
    type=click.FloatRange(min=0, min_open=True, max=24 * 366),
    default=24.0,
    show_default=True,
    help="Look back this many hours (messages still in the dispatcher always count).",
)
@click.pass_obj
def outbound_status(state: Any, as_json: bool, since_hours: float) -> None:
    """Messages per template and status, the top failure reasons, deferred messages by
    reason. Recipients are never shown; error texts are masked."""
    import json
    from datetime import timedelta

    from ..logs import mask_text

    services = _outbox_services(state)
    now = services.clock.now()
    since = now - timedelta(hours=since_hours)
    try:
        with services.db.sessions() as s:
            by_template = services.outbox.counts_by_template(s, since=since, now=now)
            failures = services.outbox.top_failures(s, since=since)
            deferred = services.outbox.deferred_counts(s, now=now)
    finally:
        services.db.dispose()
    top = [
        {"code": code, "error": mask_text(text) if text else None, "count": n}
        for code, text, n in failures
    ]
    held = {reason.removeprefix("deferred: "): n for reason, n in sorted(deferred.items())}
    if as_json:
        report = {
            "now": now.isoformat(),
            "since": since.isoformat(),
            "by_template": {t: dict(sorted(c.items())) for t, c in sorted(by_template.items())},
            "top_failures": top,
            "deferred": held,
        }
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    click.echo(f"outbound messages since {since:%Y-%m-%d %H:%M} UTC (and all still pending)")
    for template, counts in sorted(by_template.items()):
        states = ", ".join(f"{st} {n}" for st, n in sorted(counts.items()))
        click.echo(f"  {template:<24} {states}")
    if not by_template:
        click.echo("  no messages")
    click.echo("top failure reasons:")
    for item in top:
        click.echo(f"  {item['count']:>6}  [{item['code'] or '-'}] {item['error'] or ''}")
    if not top:
        click.echo("  none")
    click.echo("deferred now:")
    for reason, n in held.items():
        click.echo(f"  {n:>6}  {reason}")
    if not held:
        click.echo("  none")
