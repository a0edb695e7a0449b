"""``POST /api/hospitals/<hospital>/results``: signed, validated, idempotent, and the SMS
says only that a result is ready (never the test, its values or the abnormal flag)."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from callcenter.bootstrap import Services, build
from callcenter.clock import FakeClock
from callcenter.config import ConfigError
from callcenter.db.models import AuditEntry
from callcenter.db.models import OutboxMessage as Outbox
from callcenter.feeds.models import LabResult
from callcenter.feeds.service import parse_feed_keys, sign
from callcenter.messaging.templates import Templates
from tests.conftest import FLOWS, make_config

from .conftest import KEYS, PHONE_EN, PHONE_ZH, VISIT_EN, VISIT_H2, FeedClient, event

TEMPLATES = Templates(FLOWS)


def counts(services: Services) -> tuple[int, int, int]:
    """(lab results, outbox rows, audit rows)."""
    with services.db.transaction() as s:
        return (
            s.scalar(select(func.count()).select_from(LabResult)) or 0,
            s.scalar(select(func.count()).select_from(Outbox)) or 0,
            s.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


def outbox_rows(services: Services) -> list[Outbox]:
    with services.db.transaction() as s:
        return list(s.scalars(select(Outbox).order_by(Outbox.id)))


def test_a_signed_event_is_stored_notified_and_audited(feed: FeedClient, seeded: Services) -> None:
    response = feed.post(event())
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "accepted",
        "event_id": "evt-0001",
        "result_id": "res-0001",
    }
    with seeded.db.transaction() as s:
        row = s.scalars(select(LabResult)).one()
        assert (row.hospital_id, row.event_id, row.result_id) == ("h1", "evt-0001", "res-0001")
        assert (row.test_name_zh, row.test_name_en) == ("血常规", "Complete blood count")
        assert row.abnormal is False
        assert row.had_values is True
        audit = s.scalars(select(AuditEntry)).one()
        assert (audit.actor, audit.action, audit.subject_type) == (
            "feed:h1",
            "results.ready_received",
            "lab_result",
        )
        assert audit.subject_id == str(row.id)
        assert audit.detail["event_id"] == "evt-0001"
        assert audit.detail["sms_queued"] is True
    (sms,) = outbox_rows(seeded)
    assert (sms.channel, sms.template, sms.language) == ("sms", "results_ready", "zh-CN")
    assert sms.to_e164 == PHONE_ZH
    assert sms.dedupe_key == "results:h1:res-0001"
    assert sms.params == {"hospital": "测试医院"}
    assert sms.sealed is None
    assert sms.essential is False
    assert sms.urgent is False
    body = TEMPLATES.render(sms.template, sms.language, sms.params)
    assert body.startswith("【健康热线】")
    assert "测试医院" in body


def test_english_booking_gets_english_sms(feed: FeedClient, seeded: Services) -> None:
    assert feed.post(event(visit_number=VISIT_EN)).status_code == 200
    (sms,) = outbox_rows(seeded)
    assert (sms.language, sms.to_e164, sms.params) == (
        "en",
        PHONE_EN,
        {"hospital": "Test Hospital"},
    )


def test_a_replayed_event_stores_nothing_new_and_answers_the_same(
    feed: FeedClient, seeded: Services, clock: FakeClock
) -> None:
    first = feed.post(event())
    clock.advance(60)
    second = feed.post(event())
    assert (second.status_code, second.get_json()) == (first.status_code, first.get_json())
    assert counts(seeded) == (1, 1, 1)


def test_same_event_id_with_another_body_is_refused(feed: FeedClient, seeded: Services) -> None:
    assert feed.post(event()).status_code == 200
    response = feed.post(event(abnormal=True))
    assert response.status_code == 409
    assert "different body" in response.get_json()["error"]
    assert counts(seeded) == (1, 1, 1)


def test_same_result_id_under_a_new_event_is_refused(feed: FeedClient, seeded: Services) -> None:
    assert feed.post(event()).status_code == 200
    response = feed.post(event(event_id="evt-0002"))
    assert response.status_code == 409
    assert "result id" in response.get_json()["error"]
    assert counts(seeded) == (1, 1, 1)


TS, SIG = "X-Hotline-Timestamp", "X-Hotline-Signature"


@pytest.mark.parametrize(
    ("case", "template"),
    [
        ("no headers", {}),
        ("no signature", {TS: "ts"}),
        ("no timestamp", {SIG: "good"}),
        ("empty signature", {TS: "ts", SIG: ""}),
        ("signature without prefix", {TS: "ts", SIG: "bare"}),
        ("upper-case hex", {TS: "ts", SIG: "upper"}),
        ("other timestamp than signed", {TS: "ts+1", SIG: "good"}),
        ("timestamp not a number", {TS: "ts.0", SIG: "good"}),
    ],
)
def test_missing_or_malformed_signature_headers_are_refused(
    feed: FeedClient, seeded: Services, clock: FakeClock, case: str, template: dict[str, str]
) -> None:
    body = json.dumps(event()).encode()
    ts = str(int(clock.now().timestamp()))
    good = sign(KEYS["h1"].encode(), ts, body)
    fill = {
        "ts": ts,
        "ts+1": str(int(ts) + 1),
        "ts.0": ts + ".0",
        "good": good,
        "bare": good.removeprefix("sha256="),
        "upper": "sha256=" + good.removeprefix("sha256=").upper(),
    }
    headers = {name: fill.get(value, value) for name, value in template.items()}
    response = feed.post(body, headers=headers)
    assert response.status_code == 403, case
    assert response.get_json()["error"]
    assert counts(seeded) == (0, 0, 0)


@pytest.mark.parametrize(
    ("case", "key", "delta"),
    [
        ("wrong key", "w" * 40, 0),
        ("other hospital's key", KEYS["h2"], 0),
        ("stale timestamp", None, -301),
        ("future timestamp", None, 301),
    ],
)
def test_forged_or_stale_signatures_are_refused(
    feed: FeedClient,
    seeded: Services,
    clock: FakeClock,
    case: str,
    key: str | None,
    delta: int,
) -> None:
    ts = str(int(clock.now().timestamp()) + delta)
    response = feed.post(event(), key=key, timestamp=ts)
    assert response.status_code == 403, case
    assert counts(seeded) == (0, 0, 0)


def test_a_body_changed_after_signing_is_refused(
    feed: FeedClient, seeded: Services, clock: FakeClock
) -> None:
    ts = str(int(clock.now().timestamp()))
    good = sign(KEYS["h1"].encode(), ts, json.dumps(event()).encode())
    headers = {"X-Hotline-Timestamp": ts, "X-Hotline-Signature": good}
    response = feed.post(json.dumps(event(abnormal=True)).encode(), headers=headers)
    assert response.status_code == 403
    assert counts(seeded) == (0, 0, 0)


def test_timestamps_within_five_minutes_are_accepted(
    feed: FeedClient, seeded: Services, clock: FakeClock
) -> None:
    ts = str(int(clock.now().timestamp()) - 300)
    assert feed.post(event(), timestamp=ts).status_code == 200


def test_unknown_hospital(feed: FeedClient, seeded: Services) -> None:
    response = feed.post(event(), hospital="nowhere")
    assert response.status_code == 404
    assert "unknown hospital" in response.get_json()["error"]
    assert counts(seeded) == (0, 0, 0)


def test_a_hospital_cannot_notify_another_hospitals_patient(
    feed: FeedClient, seeded: Services
) -> None:
    response = feed.post(event(visit_number=VISIT_H2))  # signed by h1, booking at h2
    assert response.status_code == 422
    assert counts(seeded) == (0, 0, 0)
    assert feed.post(event(visit_number=VISIT_H2), hospital="h2").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "not valid JSON"),
        (b"[]", 400, "invalid payload"),
        (json.dumps({k: v for k, v in event().items() if k != "event_id"}), 400, "event_id"),
        (
            json.dumps({k: v for k, v in event().items() if k != "visit_number"}),
            400,
            "visit_number",
        ),
        (json.dumps({k: v for k, v in event().items() if k != "result_id"}), 400, "result_id"),
        (json.dumps({k: v for k, v in event().items() if k != "test_name"}), 400, "test_name"),
        (json.dumps({k: v for k, v in event().items() if k != "ready_at"}), 400, "ready_at"),
        (json.dumps({k: v for k, v in event().items() if k != "abnormal"}), 400, "abnormal"),
        (json.dumps(event(visit_number=10000001)), 400, "visit_number"),
        (json.dumps(event(visit_number="1000")), 400, "visit_number"),
        (json.dumps(event(abnormal="no")), 400, "abnormal"),
        (json.dumps(event(abnormal=0)), 400, "abnormal"),
        (json.dumps(event(ready_at="yesterday")), 400, "ready_at"),
        (json.dumps(event(ready_at="2026-11-26T08:30:00")), 400, "ready_at"),
        (json.dumps(event(test_name={"zh": "血常规"})), 400, "test_name.en"),
        (json.dumps(event(test_name="血常规")), 400, "test_name"),
        (json.dumps(event(test_name={"zh": "血\u0000常规", "en": "x"})), 400, "control char"),
        (json.dumps(event(test_name={"zh": " ", "en": "x"})), 400, "blank"),
        (json.dumps(event(event_id="")), 400, "event_id"),
        (json.dumps(event(event_id="a" * 65)), 400, "event_id"),
        (json.dumps(event(result_id="<script>")), 400, "result_id"),
        (json.dumps(event(values="WBC 6.1")), 400, "values"),
        (json.dumps(event(values=[{"v": [1, 2]}])), 400, "values"),
        (json.dumps(event(diagnosis="x")), 400, "diagnosis"),
        (json.dumps(event(visit_number="99999999")), 422, "no booking with this visit number"),
    ],
)
def test_malformed_payloads_are_refused_and_nothing_is_stored(
    feed: FeedClient, seeded: Services, body: str | bytes, status: int, message: str
) -> None:
    raw = body if isinstance(body, bytes) else body.encode()
    response = feed.post(raw)
    assert response.status_code == status
    assert message in response.get_json()["error"]
    assert counts(seeded) == (0, 0, 0)


def test_error_messages_do_not_echo_values(feed: FeedClient, seeded: Services) -> None:
    response = feed.post(event(values=[{"secret-marker": ["x"]}]))
    assert response.status_code == 400
    assert "x" not in response.get_json()["error"].replace("values", "")


def test_oversized_bodies_get_413_before_anything_else(feed: FeedClient, seeded: Services) -> None:
    limit = seeded.config.settings.web.max_body_bytes
    big = json.dumps(event(values=[{"name": "n" * (limit + 1)}])).encode()
    assert feed.post(big).status_code == 413
    assert feed.post(big, headers={}).status_code == 413
    assert counts(seeded) == (0, 0, 0)


def test_logs_carry_no_phone_number_test_name_or_values(
    feed: FeedClient, seeded: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    feed.post(event())
    feed.post(event(event_id="evt-9", visit_number="99999999"))
    text = caplog.text
    assert "evt-0001" in text
    for secret in (PHONE_ZH, PHONE_ZH[3:], "血常规", "Complete blood count", "6.1", "WBC"):
        assert secret not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("h1", "entry 1 is not"),
        ("h1=short", "shorter than 32"),
        (f"h1={'k' * 32},h1={'k' * 32}", "listed twice"),
        (f"bad id={'k' * 32}", "entry 1 is not"),
    ],
)
def test_bad_feed_keys_are_a_clear_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_feed_keys(text)
    assert "k" * 32 not in str(info.value)


def test_feed_keys_parse() -> None:
    assert parse_feed_keys(None) == {}
    assert parse_feed_keys(f" a={'x' * 32} , b-2={'y' * 40},") == {
        "a": b"x" * 32,
        "b-2": b"y" * 40,
    }


_values = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=20),
            "value": st.one_of(
                st.text(min_size=1, max_size=20),
                st.integers(),
                st.floats(allow_nan=False, allow_infinity=False),
            ),
        }
    ),
    min_size=1,
    max_size=5,
)
_names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=100).filter(
    lambda t: bool(t.strip())
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    values=_values,
    test_zh=_names,
    test_en=_names,
    abnormal=st.booleans(),
    visit=st.sampled_from(["10000001", VISIT_EN]),
)
def test_the_sms_never_carries_the_test_its_values_or_the_abnormal_flag(
    seeded: Services,
    values: list[dict[str, Any]],
    test_zh: str,
    test_en: str,
    abnormal: bool,
    visit: str,
) -> None:
    with seeded.db.transaction() as s:
        before = s.scalar(select(func.max(Outbox.id))) or 0
        n = (s.scalar(select(func.count()).select_from(LabResult)) or 0) + 1
    body = json.dumps(
        event(
            event_id=f"evt-h{n}",
            result_id=f"res-h{n}",
            visit_number=visit,
            test_name={"zh": test_zh, "en": test_en},
            abnormal=abnormal,
            values=values,
        )
    ).encode()
    ts = str(int(seeded.clock.now().timestamp()))
    answer = seeded.feeds.results_ready("h1", ts, sign(KEYS["h1"].encode(), ts, body), body)
    assert answer.status == 200
    with seeded.db.transaction() as s:
        sms = s.scalars(select(Outbox).where(Outbox.id > before)).one()
        audits = s.scalar(select(func.count()).select_from(AuditEntry))
    assert audits == n
    assert sms.sealed is None
    hospital = "Test Hospital" if sms.language == "en" else "测试医院"
    text = TEMPLATES.render(sms.template, sms.language, sms.params)
    # The text depends on the hospital and the language only.
    assert text == TEMPLATES.render("results_ready", sms.language, {"hospital": hospital})
    assert sms.params == {"hospital": hospital}


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_template_names_no_result_or_verdict(language: str) -> None:
    assert TEMPLATES.fields("results_ready", language) == ["hospital"]
    text = TEMPLATES.render("results_ready", language, {"hospital": "X"}).lower()
    for word in ("异常", "正常", "阳性", "阴性", "abnormal", "normal", "positive", "negative"):
        assert word not in text


def test_the_same_event_sent_concurrently_is_stored_once(
    seeded: Services, clock: FakeClock
) -> None:
    body = json.dumps(event()).encode()
    ts = str(int(clock.now().timestamp()))
    signature = sign(KEYS["h1"].encode(), ts, body)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(lambda _: seeded.feeds.results_ready("h1", ts, signature, body), range(4))
        )
    assert {(a.status, json.dumps(a.body, sort_keys=True)) for a in answers} == {
        (200, json.dumps(answers[0].body, sort_keys=True))
    }
    assert counts(seeded) == (1, 1, 1)


def test_without_feed_keys_every_hospital_is_refused(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    services = build(make_config(database_url, tmp_path), clock=clock)
    try:
        body = json.dumps(event()).encode()
        ts = str(int(clock.now().timestamp()))
        answer = services.feeds.results_ready("h1", ts, sign(KEYS["h1"].encode(), ts, body), body)
        assert answer.status == 404
        assert services.feeds.hospitals == frozenset()
    finally:
        services.db.dispose()


def test_an_unknown_hospital_name_is_not_logged(
    feed: FeedClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert feed.post(event(), hospital="evil%0Aforged").status_code == 404
    assert "evil" not in caplog.text
    assert "an unknown hospital" in caplog.text
