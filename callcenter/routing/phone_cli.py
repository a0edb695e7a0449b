"""``callcenter router``: the loop that routes calls on the phone, and the phone details of
agents and experts.

``callcenter router run`` dispatches waiting callers to free agents (dialling them), times
out rings, wrap-ups, callbacks and escalation offers, dials experts into conferences and runs
the provider tasks webhooks asked for, every ``routing.phone.tick_interval_s``. Any number of
these processes can run at once: every step works on rows it locked (``SKIP LOCKED`` on
PostgreSQL), so one offer goes to one agent and one task runs once.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import asdict
from typing import Any

import click

from ..config import ConfigError

log = logging.getLogger(__name__)


def build_call_control(config: Any) -> Any:
    """Twilio call control when ``messaging.sender`` is ``twilio``; ``None`` (no provider:
    offers are answered in the console) otherwise."""
    m = config.settings.messaging
    if m.sender != "twilio":
        return None
    config.secrets.require("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    if not m.call_from:
        raise ConfigError(
            "messaging.call_from must be set to dial agents and callbacks through Twilio "
            "[env CALLCENTER_MESSAGING_CALL_FROM]"
        )
    from ..telephony.twilio.rest import TwilioCallControl

    return TwilioCallControl(
        config.secrets.twilio_account_sid or "",
        config.secrets.twilio_auth_token or "",
        api_base_url=config.settings.twilio.api_base_url,
        call_from=m.call_from,
    )


@click.group()
def router() -> None:
    """Routing on the phone: the router loop, agents' and experts' phones."""


@router.command("run")
@click.option("--once", is_flag=True, help="One turn, print what it did as JSON, and stop.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=None, help="Seconds.")
@click.pass_obj
def run(state: Any, once: bool, interval: float | None) -> None:
    """Dispatch, time out and dial, every tick (stop with Ctrl-C or SIGTERM)."""
    import json

    from ..cli import _services

    services = _services(state)
    try:
        services.phone.control = build_call_control(services.config)
    except ConfigError as exc:
        services.db.dispose()
        raise click.ClickException(str(exc)) from None
    pause = interval or services.config.settings.routing.phone.tick_interval_s
    stop = threading.Event()
    if not once:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        click.echo(f"router running every {pause:g} s; Ctrl-C stops it", err=True)
    try:
        while True:
            try:
                report = services.phone.run_once()
            except Exception:
                if once:
                    raise
                log.exception("router turn failed; trying again next tick")
            else:
                if once:
                    click.echo(json.dumps(asdict(report)))
                    return
            if stop.wait(pause):
                return
    except KeyboardInterrupt:
        return
    finally:
        services.db.dispose()


@router.command("agent-phone")
@click.argument("agent_id")
@click.argument("contact")
@click.pass_obj
def agent_phone(state: Any, agent_id: str, contact: str) -> None:
    """How the phone reaches AGENT_ID: a phone number, sip:URI, client:NAME, or "-" for the
    console only."""
    from ..cli import _services
    from .phone import InvalidContact
    from .service import UnknownAgent

    services = _services(state)
    try:
        shown = services.phone.set_agent_contact(agent_id, None if contact == "-" else contact)
    except (InvalidContact, UnknownAgent) as exc:
        raise click.ClickException(f"refused: {exc}") from None
    finally:
        services.db.dispose()
    click.echo(f"agent {agent_id}: {shown}")


@router.command("expert-sign-in")
@click.argument("expert_id")
@click.option("--specialty", default=None, help="Needed the first time.")
@click.option("--hospital", default=None)
@click.option("--name", default=None)
@click.option("--phone", "contact", default=None, help="Number, sip:URI or client:NAME.")
@click.pass_obj
def expert_sign_in(
    state: Any,
    expert_id: str,
    specialty: str | None,
    hospital: str | None,
    name: str | None,
    contact: str | None,
) -> None:
    """Make EXPERT_ID available for escalations (created the first time)."""
    from ..cli import _services
    from .escalation import EscalationError
    from .phone import InvalidContact, normalize_contact

    services = _services(state)
    try:
        if contact is not None:
            contact = normalize_contact(contact, services.config.settings.instance.default_region)
        view = services.escalations.expert_sign_in(
            expert_id, name=name, specialty=specialty, hospital=hospital, contact=contact
        )
    except (InvalidContact, EscalationError) as exc:
        raise click.ClickException(f"refused: {exc}") from None
    finally:
        services.db.dispose()
    click.echo(f"expert {view.id} ({view.specialty}): {view.state}")


@router.command("expert-sign-out")
@click.argument("expert_id")
@click.pass_obj
def expert_sign_out(state: Any, expert_id: str) -> None:
    """Make EXPERT_ID offline."""
    from ..cli import _services
    from .escalation import EscalationError
    from .escalations import UnknownExpert

    services = _services(state)
    try:
        view = services.escalations.expert_sign_out(expert_id)
    except (EscalationError, UnknownExpert) as exc:
        raise click.ClickException(f"refused: {exc}") from None
    finally:
        services.db.dispose()
    click.echo(f"expert {view.id}: {view.state}")
