"""``callcenter worker``: the outbox dispatcher process."""

from __future__ import annotations

import click


@click.command()
def worker() -> None:
    """Send due SMS and calls from the outbox (run any number, on any machine)."""
    raise click.ClickException("the outbox dispatcher is not built yet")
