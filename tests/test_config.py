"""Configuration: config.yaml + environment, typed and validated, with errors that name the key."""

from __future__ import annotations

from operator import attrgetter
from pathlib import Path

import pytest

from callcenter.config import ENV_KEYS, Config, ConfigError, Secrets, load_config
from tests.conftest import ROOT

SHIPPED = ROOT / "config.yaml"


def load(environ: dict[str, str], path: Path | None = SHIPPED) -> Config:
    return load_config(path, environ=environ)


# ---------------------------------------------------------------- the shipped file


def test_shipped_config_loads_with_defaults_and_red_flags() -> None:
    config = load({})
    s = config.settings
    assert s.ivr.default_language == "zh-CN"
    assert s.ivr.max_retries == 2
    assert s.web.max_body_bytes == 65536
    assert "胸口痛" in s.ivr.red_flags["zh-CN"]
    assert "chest pain" in s.ivr.red_flags["en"]
    assert config.base_dir == ROOT
    assert config.flows_dir == ROOT / "ivr_flows"
    assert config.secrets == Secrets(None, None, None)  # never read from the file


def test_default_database_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("instance:\n  data_dir: data\n", encoding="utf-8")
    config = load({}, file)
    assert config.data_dir == tmp_path / "data"
    assert config.database_url == f"sqlite:///{tmp_path / 'data' / 'callcenter.db'}"


def test_no_file_at_all_uses_built_in_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={})
    assert config.base_dir == tmp_path
    assert config.database_url == f"sqlite:///{tmp_path / 'var' / 'callcenter.db'}"
    assert config.settings.ivr.red_flags == {}


def test_callcenter_config_env_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "other.yaml"
    file.write_text("ivr:\n  max_retries: 4\n", encoding="utf-8")
    config = load_config(None, environ={"CALLCENTER_CONFIG": str(file)})
    assert config.settings.ivr.max_retries == 4


# ---------------------------------------------------------------- environment overrides


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        (
            "CALLCENTER_DATABASE_URL",
            "postgresql://callcenter@db.internal:5432/callcenter",
            "database_url",
            "postgresql://callcenter@db.internal:5432/callcenter",
        ),
        ("CALLCENTER_IVR_MAX_RETRIES", "3", "settings.ivr.max_retries", 3),
        ("CALLCENTER_DATABASE_ECHO", "true", "settings.database.echo", True),
        ("CALLCENTER_WEB_PORT", "8080", "settings.web.port", 8080),
        ("CALLCENTER_IVR_DEFAULT_LANGUAGE", "en", "settings.ivr.default_language", "en"),
        ("CALLCENTER_INSTANCE_DEFAULT_REGION", "hk", "settings.instance.default_region", "HK"),
        (
            "CALLCENTER_WEB_PUBLIC_BASE_URL",
            "https://hotline.example.org/",
            "settings.web.public_base_url",
            "https://hotline.example.org",
        ),
        (
            "PUBLIC_BASE_URL",
            "https://short.example.org///",
            "settings.web.public_base_url",
            "https://short.example.org",
        ),
        ("CALLCENTER_DATABASE_URL", "12345", "database_url", "12345"),
        ("CALLCENTER_TWILIO_GATHER_TIMEOUT_S", "10", "settings.twilio.gather_timeout_s", 10),
    ],
    ids=[
        "database-url",
        "max-retries-int",
        "bool",
        "port",
        "language",
        "region-upper-cased",
        "public-url-slash-stripped",
        "public-url-short-name",
        "numeric-looking-url-stays-text",
        "gather-timeout",
    ],
)
def test_environment_overrides(variable: str, value: str, attribute: str, expected: object) -> None:
    got = attrgetter(attribute)(load({variable: value}))
    assert got == expected
    assert type(got) is type(expected)


def test_an_empty_database_url_means_the_default_sqlite_file() -> None:
    config = load({"CALLCENTER_DATABASE_URL": ""})
    assert config.database_url == f"sqlite:///{ROOT / 'var' / 'callcenter.db'}"


def test_the_long_public_url_name_wins_over_the_short_one() -> None:
    config = load(
        {
            "PUBLIC_BASE_URL": "https://short.example.org",
            "CALLCENTER_WEB_PUBLIC_BASE_URL": "https://long.example.org",
        }
    )
    assert config.settings.web.public_base_url == "https://long.example.org"


def test_fallback_number_from_the_environment_keeps_its_plus() -> None:
    """Operators set the fallback number (E.164) from the environment like any other key.

    ``+8621...`` must stay the text it is, not become the integer 8621... (YAML reads a
    leading '+' and digits as a number)."""
    config = load({"CALLCENTER_TWILIO_FALLBACK_NUMBER": "+862162345678"})
    assert config.settings.twilio.fallback_number == "+862162345678"


def test_secrets_come_from_the_environment() -> None:
    config = load({"TWILIO_AUTH_TOKEN": "tok", "SECRET_KEY": "key", "TWILIO_ACCOUNT_SID": "AC123"})
    assert config.secrets == Secrets("tok", "AC123", "key")
    config.secrets.require("TWILIO_AUTH_TOKEN", "SECRET_KEY", "TWILIO_ACCOUNT_SID")


def test_every_config_key_has_an_environment_variable() -> None:
    assert ENV_KEYS["CALLCENTER_DATABASE_URL"] == ("database", "url")
    assert ENV_KEYS["CALLCENTER_IVR_MAX_RETRIES"] == ("ivr", "max_retries")
    assert ENV_KEYS["CALLCENTER_TWILIO_FALLBACK_NUMBER"] == ("twilio", "fallback_number")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("CALLCENTER_IVR_MAX_RETRIES", "many", "ivr.max_retries"),
        ("CALLCENTER_IVR_MAX_RETRIES", "99", "ivr.max_retries"),
        ("CALLCENTER_WEB_PORT", "0", "web.port"),
        ("CALLCENTER_WEB_PUBLIC_BASE_URL", "hotline.example.org", "web.public_base_url"),
        ("CALLCENTER_IVR_DEFAULT_LANGUAGE", "fr", "ivr.default_language"),
        ("CALLCENTER_INSTANCE_TIMEZONE", "Mars/Olympus", "instance.timezone"),
        ("CALLCENTER_INSTANCE_DEFAULT_REGION", "CHN", "instance.default_region"),
        ("CALLCENTER_WEB_MAX_BODY_BYTES", "10", "web.max_body_bytes"),
        ("CALLCENTER_LOGGING_LEVEL", "LOUD", "logging.level"),
    ],
    ids=[
        "not-a-number",
        "out-of-range",
        "port-zero",
        "url-without-scheme",
        "unsupported-language",
        "unknown-timezone",
        "three-letter-region",
        "tiny-body-limit",
        "unknown-level",
    ],
)
def test_a_bad_value_names_the_key_and_its_variable(variable: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({variable: value})
    message = str(info.value)
    assert key in message
    assert f"[env {variable}]" in message


def test_a_bad_value_in_the_file_names_the_file_and_key(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("database:\n  pool_size: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load({}, file)
    assert str(file) in str(info.value)
    assert "database.pool_size" in str(info.value)
    assert "CALLCENTER_DATABASE_POOL_SIZE" in str(info.value)


def test_an_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("database:\n  ulr: sqlite:///x.db\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"database\.ulr"):
        load({}, file)


@pytest.mark.parametrize(
    "variable",
    ["CALLCENTER_DATABASE_URI", "CALLCENTER_MAX_RETRIES", "CALLCENTER_"],
    ids=["typo", "missing-section", "bare-prefix"],
)
def test_an_unknown_callcenter_variable_is_an_error_naming_it(variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({variable: "x"})
    assert f"unknown configuration variable {variable} " in str(info.value)


def test_unrelated_environment_variables_are_ignored() -> None:
    config = load({"HOME": "/root", "CALLCENTERX": "1", "DATABASE_URL": "postgresql://x/y"})
    assert config.database_url.startswith("sqlite:///")


def test_a_missing_config_file_given_explicitly_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load({}, missing)
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_config(None, environ={"CALLCENTER_CONFIG": str(missing)})


@pytest.mark.parametrize(
    "content",
    ["- a\n- b\n", "just a string\n", "42\n"],
    ids=["list", "string", "number"],
)
def test_a_non_mapping_yaml_file_is_an_error(tmp_path: Path, content: str) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load({}, file)


def test_invalid_yaml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("database: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load({}, file)


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("# nothing here\n", encoding="utf-8")
    assert load({}, file).settings.ivr.max_retries == 2


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({}, ["TWILIO_AUTH_TOKEN", "SECRET_KEY", "TWILIO_ACCOUNT_SID"]),
        ({"SECRET_KEY": "k"}, ["TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID"]),
        ({"TWILIO_AUTH_TOKEN": "", "SECRET_KEY": "k"}, ["TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID"]),
    ],
    ids=["none", "one-present", "empty-is-missing"],
)
def test_secrets_require_names_every_missing_secret(
    present: dict[str, str], missing: list[str]
) -> None:
    config = load(present)
    with pytest.raises(ConfigError) as info:
        config.secrets.require("TWILIO_AUTH_TOKEN", "SECRET_KEY", "TWILIO_ACCOUNT_SID")
    message = str(info.value)
    for name in missing:
        assert f"{name}: not set" in message
    for name in {"TWILIO_AUTH_TOKEN", "SECRET_KEY", "TWILIO_ACCOUNT_SID"} - set(missing):
        assert name not in message
