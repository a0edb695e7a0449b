"""Results on the phone: values kept sealed, identity checked in the call (visit number +
password, or ID number + date of birth, with the password attempt limits), a normal result
read, an abnormal one never (a clinician task instead), every disclosure audited, and no
result value in any SMS, voicemail or unverified part of a call."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from sqlalchemy import select, text

from callcenter.booking.models import Patient
from callcenter.bootstrap import Services
from callcenter.clock import FakeClock
from callcenter.config import Config
from callcenter.db.models import AuditEntry
from callcenter.feeds.models import LabResult
from callcenter.messaging.dispatcher import Dispatcher
from callcenter.messaging.templates import Templates
from callcenter.recall.models import ClinicianTask
from tests.conftest import FLOWS, PUBLIC_BASE_URL, TwilioSigner, run_cli, write_cli_config
from tests.messaging.helpers import FakeSender
from tests.recall.conftest import (
    ID_EN,
    ID_ZH,
    PIN_ZH,
    VISIT_EN,
    VISIT_ZH,
    Hospital1,
    Phone,
    placed_calls,
    recall_config,
    seed,
    spoken,
)

VALUE = "987.65"
UNIT = "zq/L"
TEST_ZH = "血常规"
TEST_EN = "Full blood count"
SECRETS = (VALUE, UNIT, TEST_ZH, TEST_EN, "WBC")


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    """Results are texted and called (``recall.results_call``)."""
    return recall_config(database_url, tmp_path, recall={"results_call": True})


@pytest.fixture
def seeded(services: Services, clock: FakeClock) -> Services:
    """The recall tests' hospital, patients and bookings."""
    return seed(services, clock)


@pytest.fixture
def hospital(client: FlaskClient, clock: FakeClock, seeded: Services) -> Hospital1:
    """Hospital h1's lab system."""
    return Hospital1(client, clock)


@pytest.fixture
def sender() -> FakeSender:
    """The fake provider."""
    return FakeSender(name="twilio")


@pytest.fixture
def dispatcher(
    config: Config, services: Services, sender: FakeSender, clock: FakeClock
) -> Dispatcher:
    """A dispatcher on the fake clock."""
    return Dispatcher(
        services.outbox,
        sender,
        Templates(config.flows_dir),
        clock=clock,
        sleep=clock.advance,
        worker_id="test-worker",
    )


def result_event(n: int = 1, *, visit: str = VISIT_ZH, abnormal: bool = False) -> dict[str, Any]:
    return {
        "event_id": f"lab-{n}",
        "visit_number": visit,
        "result_id": f"R-{n}",
        "test_name": {"zh": TEST_ZH, "en": TEST_EN},
        "ready_at": "2026-11-26T08:30:00+08:00",
        "abnormal": abnormal,
        "values": [{"name": "WBC", "value": float(VALUE), "unit": UNIT}],
    }


def call_for(
    hospital: Hospital1,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    **event: Any,
) -> Phone:
    assert hospital.result(result_event(**event)).status_code == 200
    dispatcher.drain()
    return placed_calls(sender, twilio)[-1]


def keys(value: str) -> str:
    """What a caller presses for an ID number (X is keyed as *)."""
    return value.replace("X", "*")


def database_text(services: Services) -> str:
    """Every row of every table that could hold call or message content, as text."""
    out = []
    with services.db.engine.connect() as conn:
        for table in (
            "outbox",
            "call_steps",
            "call_sessions",
            "call_events",
            "audit_log",
            "lab_results",
            "clinician_tasks",
            "provider_status",
        ):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()  # noqa: S608 - fixed names
            out.extend(json.dumps([str(v) for v in r], ensure_ascii=False) for r in rows)
    return "\n".join(out)


def test_values_are_stored_sealed_and_nowhere_in_clear(
    hospital: Hospital1, seeded: Services
) -> None:
    assert hospital.result(result_event()).status_code == 200
    with seeded.db.transaction() as s:
        row = s.scalars(select(LabResult)).one()
        assert row.values_sealed is not None
        assert VALUE not in row.values_sealed
    assert AuditEntry.__tablename__ == "audit_log"
    assert VALUE not in database_text(seeded)


def test_normal_result_read_after_visit_number_and_password(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    phone = call_for(hospital, dispatcher, sender, twilio)
    intro = spoken(phone.answer())
    assert "测试医院" in intro
    for secret in SECRETS:
        assert secret not in intro
    assert "就诊号码" in spoken(phone.press("1"))
    assert "密码" in spoken(phone.press(VISIT_ZH))
    heard = spoken(phone.press(PIN_ZH))
    assert TEST_ZH in heard
    assert f"WBC {VALUE} {UNIT}" in heard
    assert "正常范围" in heard
    with seeded.db.transaction() as s:
        audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "results.disclosed")).one()
        assert audit.detail["method"] == "pin"
        assert audit.detail["values_read"] is True
    # The spoken value is kept only sealed in the call's records.
    assert VALUE not in database_text(seeded)


def test_a_patient_who_dials_in_presses_6_and_hears_a_normal_result_after_identity(
    hospital: Hospital1, seeded: Services, twilio: TwilioSigner
) -> None:
    assert hospital.result(result_event()).status_code == 200
    phone = Phone(twilio, "CA" + "6" * 32, f"{PUBLIC_BASE_URL}/twilio/voice", None)
    menu = spoken(phone.answer())
    assert "检验报告，请按6" in menu
    assert "核实您的身份" in spoken(phone.press("6"))
    assert "就诊号码" in spoken(phone.press("1"))
    assert "密码" in spoken(phone.press(VISIT_ZH))
    heard = spoken(phone.press(PIN_ZH))
    assert TEST_ZH in heard
    assert f"WBC {VALUE} {UNIT}" in heard


def test_normal_result_read_after_id_number_and_birth_date(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    phone = call_for(hospital, dispatcher, sender, twilio, visit=VISIT_EN)
    assert "Test Hospital" in spoken(phone.answer())
    assert "ID number" in spoken(phone.press("2"))
    assert "date of birth" in spoken(phone.press(keys(ID_EN)))
    heard = spoken(phone.press(ID_EN[6:14]))
    assert TEST_EN in heard
    assert VALUE in heard


def test_abnormal_result_is_never_read_and_a_clinician_task_is_created(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    database_url: str,
    tmp_path: Path,
) -> None:
    phone = call_for(hospital, dispatcher, sender, twilio, abnormal=True)
    phone.answer()
    phone.press("1")
    phone.press(VISIT_ZH)
    heard = spoken(phone.press(PIN_ZH))
    assert "联系您的医生" in heard
    assert VALUE not in heard
    assert "正常" not in heard
    with seeded.db.transaction() as s:
        task = s.scalars(select(ClinicianTask)).one()
        assert (task.kind, task.status, task.hospital_id) == ("abnormal_result", "open", "h1")
        told = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "results.abnormal_told")
        ).one()
        assert told.subject_id == str(task.lab_result_id)
    (listed,) = seeded.results.open_tasks("h1", operator="dr-demo")
    assert listed["id"] == task.id
    # the hospital's systems read the same list over the signed feed
    response = hospital.client.get(
        "/api/hospitals/h1/clinician-tasks", headers=hospital.headers(b"")
    )
    assert response.status_code == 200
    assert [t["id"] for t in response.get_json()["tasks"]] == [task.id]
    assert VALUE not in response.get_data(as_text=True)
    forged = hospital.client.get(
        "/api/hospitals/h1/clinician-tasks", headers=hospital.headers(b"", key="q" * 40)
    )
    assert forged.status_code == 403
    # ... and the hotline's own staff on the command line
    cli = write_cli_config(tmp_path / "cli", database_url)
    listed_cli = run_cli(cli, "recall", "tasks", "h1", "--operator", "dr-demo")
    assert f"#{task.id}" in listed_cli.output
    assert "abnormal_result" in listed_cli.output
    assert VALUE not in listed_cli.output
    closing = ["recall", "close-task", str(task.id), "--operator", "dr-demo"]
    closed = run_cli(cli, *closing, "--note", "patient called back")
    assert closed.output.strip() == f"task {task.id} closed"
    assert run_cli(cli, *closing).output.strip() == f"task {task.id} was already closed"
    assert seeded.results.open_tasks("h1", operator="dr-demo") == []
    with seeded.db.sessions() as s:
        closes = s.scalars(
            select(AuditEntry.actor).where(AuditEntry.action == "clinician_tasks.close")
        ).all()
    assert closes == ["dr-demo", "dr-demo"]


# (method, wrong inputs) -> after 3 failures in one call the caller goes to a person
WRONG = [
    ("1", [VISIT_ZH, "000000"]),
    ("1", ["39999999", "111111"]),  # unknown visit number
    ("2", [keys(ID_ZH), "19990101"]),  # wrong birth date
]


@pytest.mark.parametrize(("method", "inputs"), WRONG)
def test_three_failures_in_a_call_reach_a_person_and_read_nothing(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    method: str,
    inputs: list[str],
) -> None:
    phone = call_for(hospital, dispatcher, sender, twilio)
    phone.answer()
    heard = []
    for attempt in range(3):
        phone.press(method)
        for value in inputs:
            root = phone.press(value)
        heard.append(spoken(root))
        if attempt < 2:
            assert "核实未通过" in heard[-1]
            assert root.find("Gather") is not None
    assert "尝试" in heard[-1] or "次数过多" in heard[-1]
    assert root.find("Enqueue") is not None
    for text_ in heard:
        assert VALUE not in text_
        assert TEST_ZH not in text_


def test_five_wrong_passwords_across_calls_lock_the_patient(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    first = call_for(hospital, dispatcher, sender, twilio)
    sids = iter(f"CA{n:032d}" for n in range(1, 10))

    def new_call() -> Phone:
        phone = Phone(twilio, next(sids), first.answer_url, first.status_url)
        phone.answer()
        return phone

    for tries in (3, 2):
        phone = new_call()
        for _ in range(tries):
            phone.press("1")
            phone.press(VISIT_ZH)
            root = phone.press("999999")
    assert "次数过多" in spoken(root)
    with seeded.db.transaction() as s:
        assert s.get(Patient, 1).locked_at is not None  # type: ignore[union-attr]
    phone = new_call()  # the right password no longer works, in any call
    phone.press("1")
    phone.press(VISIT_ZH)
    root = phone.press(PIN_ZH)
    assert VALUE not in spoken(root)
    assert root.find("Enqueue") is not None


def test_a_machine_hears_nothing_of_the_result(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
) -> None:
    phone = call_for(hospital, dispatcher, sender, twilio)
    said = spoken(phone.answer(answered_by="machine_start"))
    for secret in (*SECRETS, "测试医院", "结果"):
        assert secret not in said


def test_no_result_value_in_any_sms_or_unverified_call_path(
    hospital: Hospital1,
    seeded: Services,
    dispatcher: Dispatcher,
    sender: FakeSender,
    twilio: TwilioSigner,
    clock: FakeClock,
) -> None:
    """Every path that speaks or texts before identity is proven: the results SMS, the
    results call answered by a machine, unanswered with its retry, the recall and reminder
    fallbacks; none carries the test, a value or the unit."""
    heard: list[str] = []
    for n, visit in ((1, VISIT_ZH), (2, VISIT_EN)):
        phone = call_for(hospital, dispatcher, sender, twilio, n=n, visit=visit)
        heard.append(spoken(phone.answer(answered_by="machine_end_silence" if n == 1 else "human")))
        phone.status("no-answer" if n == 2 else "completed")
    clock.advance(200)
    dispatcher.drain()
    for phone in placed_calls(sender, twilio)[2:]:
        heard.append(spoken(phone.answer()))
        phone.status("no-answer")
    dispatcher.drain()
    texts = [s.body for s in sender.sent if s.kind == "sms"]
    assert len(texts) == 2  # one results_ready each; unanswered results calls add none
    for said in heard + texts:
        for secret in SECRETS:
            assert secret not in said, said


FORBIDDEN_FIELDS = {"test", "test_name", "value", "values", "unit", "result", "abnormal"}


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_no_sms_template_can_carry_a_result(language: str) -> None:
    """No SMS template has a place for a test, a value or the abnormal flag, and the ones
    sent about results and outbound calls name only the hospital."""
    templates = Templates(FLOWS)
    for name in templates.names(language):
        assert not set(templates.fields(name, language)) & FORBIDDEN_FIELDS, name
    for name in ("results_ready", "recall_missed"):
        assert templates.fields(name, language) == ["hospital"]
    assert templates.fields("outbound_missed", language) == []
    prompts = yaml.safe_load((FLOWS / "prompts" / f"{language}.yaml").read_text("utf-8"))
    machine = prompts["outbound"]["machine"]
    assert [f for _, f, _, _ in string.Formatter().parse(machine) if f] == []
