"""``callcenter recall``: per-clinic recall settings and the clinicians' task list, for the
people who run the hotline (the same as the signed JSON endpoints hospitals' systems use).

Every change and every listing of tasks writes an audit row with the operator's name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click


@contextmanager
def _services(state: Any) -> Iterator[Any]:
    from ..cli import _services as build

    services = build(state)
    try:
        try:
            yield services
        except (LookupError, ValueError) as exc:
            raise click.ClickException(str(exc).strip("'\"")) from None
    finally:
        services.db.dispose()


def _operator(value: str) -> str:
    who = value.strip()
    if not who or len(who) > 64:
        raise click.BadParameter("give your user name (1-64 characters)")
    return who


@click.group()
def recall() -> None:
    """Waiting-room recall per clinic, and clinician tasks from results."""


@recall.command("clinics")
@click.argument("hospital")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def clinics(state: Any, hospital: str, as_json: bool) -> None:
    """The clinics of HOSPITAL and how near the front their patients are recalled."""
    with _services(state) as services:
        rows = services.recall.clinics(hospital)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo(f"no clinic of {hospital} has sent a queue event yet")
        return
    for row in rows:
        own = "" if row["own_setting"] else " (default)"
        click.echo(
            f"{row['clinic_id']:<16} {row['name_zh']} / {row['name_en']}: "
            f"recalled {row['recall_places']} places from the front{own}"
        )


@recall.command("places")
@click.argument("hospital")
@click.argument("clinic")
@click.argument("places")
@click.option("--operator", required=True, help="Your user name (written to the audit log).")
@click.pass_obj
def places(state: Any, hospital: str, clinic: str, places: str, operator: str) -> None:
    """Recall CLINIC's patients PLACES from the front (0-100), or `default`."""
    who = _operator(operator)
    value: int | None
    if places.strip().lower() == "default":
        value = None
    else:
        try:
            value = int(places)
        except ValueError:
            raise click.BadParameter("a number from 0 to 100, or `default`") from None
    with _services(state) as services:
        services.recall.set_places(hospital, clinic, value, actor=who)
        default = services.config.settings.recall.default_places
    shown = f"the default ({default})" if value is None else str(value)
    click.echo(f"{hospital}/{clinic}: patients are recalled at {shown} places from the front")


@recall.command("tasks")
@click.argument("hospital")
@click.option("--operator", required=True, help="Your user name (written to the audit log).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def tasks(state: Any, hospital: str, operator: str, as_json: bool) -> None:
    """Open clinician tasks of HOSPITAL (abnormal results the patient was told to discuss
    with their doctor), oldest first."""
    who = _operator(operator)
    with _services(state) as services:
        rows = services.results.open_tasks(hospital, operator=who)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo(f"no open clinician tasks for {hospital}")
        return
    for row in rows:
        click.echo(
            f"#{row['id']}  {row['created_at']}  {row['kind']}  result {row['lab_result_id']}"
            f"  booking {row['booking_id'] or '-'}  {row['note'] or ''}"
        )


@recall.command("close-task")
@click.argument("task_id", type=int)
@click.option("--operator", required=True, help="Your user name (written to the audit log).")
@click.option("--note", default=None, help="What was done (at most 200 characters).")
@click.pass_obj
def close_task(state: Any, task_id: int, operator: str, note: str | None) -> None:
    """Mark clinician task TASK_ID done."""
    who = _operator(operator)
    with _services(state) as services:
        changed = services.results.close_task(task_id, operator=who, note=note)
    click.echo(f"task {task_id} {'closed' if changed else 'was already closed'}")
