"""``callcenter worker``: the outbox dispatcher process, and the sender it uses."""

from __future__ import annotations

import os
import signal
import socket
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
@click.pass_obj
def worker(state: Any, once: bool, worker_id: str | None, batch: int | None) -> None:
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
    dispatcher = Dispatcher(
        Outbox.from_config(config, db),
        sender,
        Templates(config.flows_dir),
        worker_id=worker_id or f"{socket.gethostname()}-{os.getpid()}",
        batch_size=batch,
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        dispatcher.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        with db.transaction() as session:  # fails fast on a missing or old schema
            dispatcher.outbox.counts(session)
        if once:
            handled = dispatcher.drain()
            click.echo(f"{handled} messages handled")
        else:
            dispatcher.run()
    except (OperationalError, ProgrammingError) as exc:
        if "outbox" in str(exc) or "no such" in str(exc) or "does not exist" in str(exc):
            raise click.ClickException(
                "the database schema is missing or old: run `callcenter db upgrade`"
            ) from None
        raise
    finally:
        db.dispose()
