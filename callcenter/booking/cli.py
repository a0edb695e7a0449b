"""``callcenter booking ...``: book, look up, cancel and unlock for a caller; import schedules."""

from __future__ import annotations

import click


@click.group()
def booking() -> None:
    """Bookings and clinic schedules (operators and hospital IT)."""
