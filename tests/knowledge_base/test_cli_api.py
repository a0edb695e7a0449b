"""The knowledge base from the command line (``callcenter kb ...``) and the JSON API
(``GET /api/kb/search``), on a database holding the demo knowledge base.

The CLI runs as an operator runs it: ``--config`` naming a config file that points at the
test database, secrets in the environment. Its clock is pinned to the tests' date
(2026-11-26), so "expired" means the same thing whenever the suite runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from callcenter import bootstrap
from callcenter.bootstrap import Services
from callcenter.cli import main
from callcenter.clock import FakeClock
from knowledge_base.models import Drug, SearchEntry
from tests.conftest import AUTH_TOKEN, FLOWS, PUBLIC_BASE_URL, ROOT, SECRET_KEY
from tests.knowledge_base.demo_db import copy_of, demo_database

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo_kb(database_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with demo_database(database_template, tmp_path_factory.mktemp("kb")) as url:
        yield url


@pytest.fixture
def database_url(demo_kb: str, tmp_path: Path) -> Iterator[str]:
    with copy_of(demo_kb, tmp_path) as url:
        yield url


@pytest.fixture(autouse=True)
def _keep_root_logger() -> Iterator[None]:
    """The CLI configures logging for a terminal; give pytest its root logger back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers = handlers
    root.setLevel(level)


@pytest.fixture
def cli_config(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped config.yaml pointed at the test database; the CLI's clock pinned."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["instance"]["data_dir"] = str(tmp_path / "var")
    raw["database"]["url"] = database_url
    raw["ivr"]["flows_dir"] = str(FLOWS)
    raw["web"]["public_base_url"] = PUBLIC_BASE_URL
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(bootstrap, "SystemClock", lambda: FakeClock(NOW))
    return path


def kb(config: Path, *args: str) -> Result:
    """``callcenter --config CONFIG kb ARGS...``."""
    env = {
        "CALLCENTER_CONFIG": str(config),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": None,
        "CALLCENTER_WEB_PUBLIC_BASE_URL": None,
    }
    return CliRunner(env=env).invoke(
        main, ["--config", str(config), "kb", *args], catch_exceptions=False
    )


def count(services: Services, model: Any) -> int:
    with services.db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# ---------------------------------------------------------------- kb search


def test_search_json_puts_aspirin_first(cli_config: Path) -> None:
    result = kb(cli_config, "search", "阿斯匹林", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"query", "ambiguous", "hits"}
    top = data["hits"][0]
    assert (top["type"], top["id"]) == ("drug", "aspirin-ec")
    assert top["name_zh"] == "阿司匹林肠溶片"
    assert top["name_en"] == "Aspirin Enteric-coated Tablets"
    assert 0.6 <= top["score"] <= 1.0
    assert data["ambiguous"] is False
    assert len(data["hits"]) <= 5


def test_search_text_output_type_filter_and_limit(cli_config: Path) -> None:
    result = kb(
        cli_config,
        "search",
        "瑞金医院心内科",
        "--type",
        "department",
        "--type",
        "hospital",
        "--limit",
        "2",
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("1. [department] 心内科 / Cardiology  (ruijin-cardiology, ")
    assert len(lines) == 2
    assert lines[1].startswith("2. [")


def test_search_of_departments_only_still_knows_the_hospital_named(cli_config: Path) -> None:
    # "瑞金医院心内科" with --type department: the hospital named is part of the question,
    # even when hospitals themselves are not wanted in the results.
    result = kb(cli_config, "search", "瑞金医院心内科", "--type", "department", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    assert hits[0]["id"] == "ruijin-cardiology", hits[:3]


def test_search_in_english(cli_config: Path) -> None:
    result = kb(cli_config, "search", "how much is aspirin", "--lang", "en", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["hits"][0]["id"] == "aspirin-ec"


def test_search_leaves_out_expired_articles(cli_config: Path) -> None:
    for query in ("登革热", "新冠病毒感染居家护理"):
        result = kb(cli_config, "search", query, "--type", "article", "--json")
        assert result.exit_code == 0, result.output
        ids = [hit["id"] for hit in json.loads(result.output)["hits"]]
        assert "dengue" not in ids
        assert "covid-home-care" not in ids


@pytest.mark.parametrize("query", ["zzzzqqqq", "   "], ids=["nonsense", "blank"])
def test_search_with_no_match_says_so(cli_config: Path, query: str) -> None:
    result = kb(cli_config, "search", query, "--type", "hospital")
    assert result.exit_code == 0, result.output
    assert result.output == "no match\n"
    as_json = kb(cli_config, "search", query, "--type", "hospital", "--json")
    assert json.loads(as_json.output)["hits"] == []


@pytest.mark.parametrize(
    "args",
    [("--type", "unicorn"), ("--limit", "0"), ("--limit", "51"), ("--lang", "fr")],
    ids=["type", "limit-0", "limit-51", "lang"],
)
def test_search_usage_errors_exit_2(cli_config: Path, args: tuple[str, ...]) -> None:
    result = kb(cli_config, "search", "阿司匹林", *args)
    assert result.exit_code == 2, result.output


# ---------------------------------------------------------------- kb import / export

BAD_DRUGS = """\
drugs:
  - id: test-good
    generic_zh: 测试好药
    generic_en: Test Good
    otc: true
  - id: test-bad
    generic_zh: 测试坏药
    generic_en: Test Bad
    price: "abc"
    currency: CNY
    price_date: "2026-10-01"
    otc: true
"""


def test_import_of_a_bad_file_names_file_row_field_and_imports_nothing(
    cli_config: Path, services: Services, tmp_path: Path
) -> None:
    bad = tmp_path / "bad_drugs.yaml"
    bad.write_text(BAD_DRUGS, encoding="utf-8")
    drugs, entries = count(services, Drug), count(services, SearchEntry)
    result = kb(cli_config, "import", str(bad))
    assert result.exit_code != 0
    assert result.exit_code == 1, result.output
    assert "bad_drugs.yaml" in result.output
    assert "row 2" in result.output
    assert "field price" in result.output
    assert "'abc'" in result.output
    assert "nothing was imported" in result.output
    # the good record in the same file was not imported either
    assert (count(services, Drug), count(services, SearchEntry)) == (drugs, entries)
    with services.db.sessions() as s:
        assert s.get(Drug, "test-good") is None


def test_import_of_a_bad_csv_names_row_and_field(
    cli_config: Path, services: Services, tmp_path: Path
) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "drugs.csv").write_text(
        "id,generic_zh,generic_en,otc\ntest-one,测试一,Test One,true\ntest-two,测试二,,maybe\n",
        encoding="utf-8",
    )
    drugs = count(services, Drug)
    result = kb(cli_config, "import", str(folder))
    assert result.exit_code == 1, result.output
    assert "drugs.csv: row 2" in result.output
    assert "field generic_en" in result.output
    assert "field otc" in result.output
    assert count(services, Drug) == drugs


def test_import_of_a_missing_path_is_a_usage_error(cli_config: Path, tmp_path: Path) -> None:
    result = kb(cli_config, "import", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize("fmt", ["yaml", "csv"])
def test_export_then_import_changes_nothing(
    cli_config: Path, services: Services, tmp_path: Path, fmt: str
) -> None:
    folder = tmp_path / f"export-{fmt}"
    exported = kb(cli_config, "export", str(folder), "--format", fmt)
    assert exported.exit_code == 0, exported.output
    files = [Path(line) for line in exported.output.splitlines() if line.strip()]
    assert files
    assert all(f.exists() and f.parent == folder for f in files)
    drugs = count(services, Drug)
    imported = kb(cli_config, "import", str(folder))
    assert imported.exit_code == 0, imported.output
    assert "0 changes" in imported.output
    assert count(services, Drug) == drugs


def test_import_of_a_good_file_reports_what_changed(
    cli_config: Path, services: Services, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BAD_DRUGS.split("  - id: test-bad")[0], encoding="utf-8")
    first = kb(cli_config, "import", str(good))
    assert first.exit_code == 0, first.output
    assert "drug: 1 created, 0 updated, 0 unchanged" in first.output
    assert "1 changes" in first.output
    again = kb(cli_config, "import", str(good))
    assert "0 changes" in again.output
    found = kb(cli_config, "search", "测试好药", "--json")
    assert json.loads(found.output)["hits"][0]["id"] == "test-good"


# ---------------------------------------------------------------- kb review


def test_review_lists_the_expired_articles(cli_config: Path) -> None:
    result = kb(cli_config, "review")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "covid-home-care v1: EXPIRED 2026-10-15",
        "dengue v1: EXPIRED 2026-09-30",
    ]


def test_review_within_more_days_lists_articles_expiring_soon(cli_config: Path) -> None:
    result = kb(cli_config, "review", "--within", "70")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "dengue v1: EXPIRED 2026-09-30" in lines
    assert "copd v1: expires 2027-01-31" in lines


# ---------------------------------------------------------------- GET /api/kb/search


@pytest.fixture
def client(app: Flask, services: Services) -> FlaskClient:
    """A client signed in to the console as an agent (the API needs a signed-in user)."""
    from tests.console.conftest import sign_in

    services.users.create("kb-agent", "KB agent", "agent", "kb agent password", actor="test")
    signed_in = app.test_client()
    assert sign_in(signed_in, "kb-agent", "kb agent password").status_code == 302
    return signed_in


def test_api_needs_a_signed_in_user(app: Flask) -> None:
    response = app.test_client().get("/api/kb/search", query_string={"q": "阿司匹林"})
    assert response.status_code == 401
    assert response.get_json() == {"error": "sign-in required"}


def test_api_search_puts_aspirin_first(client: FlaskClient) -> None:
    response = client.get("/api/kb/search", query_string={"q": "阿斯匹林"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    data = response.get_json()
    assert data["hits"][0]["id"] == "aspirin-ec"
    assert data["hits"][0]["type"] == "drug"
    assert set(data["hits"][0]) == {"type", "id", "name_zh", "name_en", "score"}
    assert data["ambiguous"] is False


def test_api_and_cli_give_the_same_ranking(client: FlaskClient, cli_config: Path) -> None:
    api = client.get("/api/kb/search", query_string={"q": "瑞金医院心内科", "limit": "3"})
    cli = kb(cli_config, "search", "瑞金医院心内科", "--limit", "3", "--json")
    assert api.get_json() == json.loads(cli.output)


def test_api_type_limit_and_language(client: FlaskClient) -> None:
    response = client.get(
        "/api/kb/search",
        query_string=[
            ("q", "aspirin"),
            ("type", "drug"),
            ("type", "article"),
            ("limit", "2"),
            ("lang", "en"),
        ],
    )
    assert response.status_code == 200
    hits = response.get_json()["hits"]
    assert hits[0]["id"] == "aspirin-ec"
    assert 1 <= len(hits) <= 2
    assert {h["type"] for h in hits} <= {"drug", "article"}


def test_api_leaves_out_expired_articles(client: FlaskClient) -> None:
    response = client.get("/api/kb/search", query_string={"q": "登革热", "type": "article"})
    assert response.status_code == 200
    assert "dengue" not in [h["id"] for h in response.get_json()["hits"]]


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "阿司匹林", "type": "unicorn"},
        {"q": "阿司匹林", "limit": "0"},
        {"q": "阿司匹林", "limit": "51"},
        {"q": "阿司匹林", "limit": "abc"},
        {"q": "阿司匹林", "limit": "-1"},
        {"q": "阿司匹林", "limit": "５"},
        {"q": "阿司匹林", "limit": ""},
        {"q": "药" * 201},
    ],
    ids=[
        "no-q",
        "empty-q",
        "blank-q",
        "unknown-type",
        "limit-0",
        "limit-51",
        "limit-word",
        "limit-negative",
        "limit-full-width",
        "limit-empty",
        "q-too-long",
    ],
)
def test_api_bad_request_is_400(client: FlaskClient, query: dict[str, str]) -> None:
    response = client.get("/api/kb/search", query_string=query)
    assert response.status_code == 400, response.get_data(as_text=True)


def test_api_query_of_the_maximum_length_is_answered(client: FlaskClient) -> None:
    response = client.get("/api/kb/search", query_string={"q": "阿司匹林" * 50})
    assert response.status_code == 200


def test_api_only_answers_get(client: FlaskClient) -> None:
    assert client.post("/api/kb/search", data={"q": "阿司匹林"}).status_code == 405
