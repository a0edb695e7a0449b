"""``callcenter recall ...`` as the people who run the hotline use it: per-clinic recall
places and the clinicians' task list, every change audited with the operator's name."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from callcenter.bootstrap import Services
from callcenter.db.models import AuditEntry
from tests.conftest import run_cli, write_cli_config

from .conftest import Hospital1, queue_body


@pytest.fixture
def cli_config(tmp_path: Path, database_url: str) -> Path:
    return write_cli_config(tmp_path / "cli", database_url)


@pytest.fixture
def clinic(hospital: Hospital1) -> str:
    """card-am has sent its first queue event (so the hotline knows it)."""
    assert hospital.queue(queue_body("setup", 0, [])).status_code == 200
    return "card-am"


def test_an_operator_sets_a_clinics_recall_places_and_back_to_the_default(
    cli_config: Path, seeded: Services, clinic: str
) -> None:
    listed = run_cli(cli_config, "recall", "clinics", "h1")
    assert listed.exit_code == 0
    assert "card-am" in listed.output
    assert "recalled 5 places from the front (default)" in listed.output

    done = run_cli(cli_config, "recall", "places", "h1", clinic, "3", "--operator", "ops-li")
    assert done.exit_code == 0, done.output
    assert "recalled at 3 places" in done.output
    (row,) = seeded.recall.clinics("h1")
    assert (row["recall_places"], row["own_setting"]) == (3, True)

    back = run_cli(cli_config, "recall", "places", "h1", clinic, "default", "--operator", "ops-li")
    assert "the default (5)" in back.output
    assert seeded.recall.clinics("h1")[0]["own_setting"] is False
    with seeded.db.sessions() as s:
        audit = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "recall.places_set")
            .order_by(AuditEntry.id)
        ).all()
    assert [(a.actor, a.subject_id, a.detail) for a in audit] == [
        ("ops-li", "h1/card-am", {"before": None, "after": 3}),
        ("ops-li", "h1/card-am", {"before": 3, "after": None}),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["h1", "card-am", "101"], "from 0 to 100"),
        (["h1", "card-am", "three"], "a number from 0 to 100"),
        (["h1", "no-such-clinic", "3"], "no queue event from this clinic yet"),
        (["h1", "card-am", "3", "--operator", " "], "give your user name"),
    ],
)
def test_a_bad_setting_is_refused_with_a_clear_message_and_changes_nothing(
    cli_config: Path, seeded: Services, clinic: str, args: list[str], message: str
) -> None:
    full = ["recall", "places", *args]
    if "--operator" not in args:
        full += ["--operator", "ops-li"]
    result = run_cli(cli_config, *full)
    assert result.exit_code != 0
    assert message in result.output
    assert seeded.recall.clinics("h1")[0]["own_setting"] is False


def test_no_clinics_and_no_tasks_are_said_plainly(cli_config: Path, seeded: Services) -> None:
    assert (
        "no clinic of h9 has sent a queue event yet"
        in run_cli(cli_config, "recall", "clinics", "h9").output
    )
    assert (
        "no open clinician tasks for h9"
        in run_cli(cli_config, "recall", "tasks", "h9", "--operator", "dr-demo").output
    )
    missing = run_cli(cli_config, "recall", "close-task", "999", "--operator", "dr-demo")
    assert missing.exit_code != 0
    assert "no clinician task 999" in missing.output
