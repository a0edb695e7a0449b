"""Configuration: loaded once at start-up from ``config.yaml`` and the environment; validated.

Every key in ``config.yaml`` can be overridden by an environment variable named
``CALLCENTER_`` + the key path in upper case joined by ``_`` (``database.url`` ->
``CALLCENTER_DATABASE_URL``; ``ivr.max_retries`` -> ``CALLCENTER_IVR_MAX_RETRIES``). Values in the
environment are read as YAML scalars, so ``true``, ``5`` and ``[a, b]`` mean what they look like.

Secrets never live in the file: they come only from the environment (``TWILIO_AUTH_TOKEN``,
``TWILIO_ACCOUNT_SID``, ``SECRET_KEY``); ``PUBLIC_BASE_URL`` is accepted as a short name for
``CALLCENTER_WEB_PUBLIC_BASE_URL``. A bad value or a missing secret raises :class:`ConfigError`
whose message names the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "CALLCENTER_"
#: Environment variables that are about finding the configuration, not keys in it.
META_ENV = frozenset({"CALLCENTER_CONFIG"})
SUPPORTED_LANGUAGES = ("zh-CN", "en")
Language = Literal["zh-CN", "en"]


class ConfigError(Exception):
    """A configuration problem; the message names the key and says what is wrong."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceConfig(_Section):
    """Who runs this hotline and where."""

    name_zh: str = "健康热线"
    name_en: str = "Health Hotline"
    timezone: str = "Asia/Shanghai"
    default_region: str = "CN"
    data_dir: Path = Path("var")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if len(value) != 2 or not value.isalpha():
            raise ValueError("must be a two-letter region code such as CN")
        return value.upper()


class DatabaseConfig(_Section):
    """Where call state, knowledge base and bookings live."""

    url: str = ""
    echo: bool = False
    pool_size: int = Field(default=10, ge=1, le=200)
    busy_timeout_ms: int = Field(default=10_000, ge=0)


class WebConfig(_Section):
    """The web process (webhooks, API, console)."""

    public_base_url: str = "http://localhost:8000"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(default=8, ge=1, le=256)
    #: live-event streams (SSE) one worker process holds open; each holds a thread of its own,
    #: on top of ``threads`` (which stay free for webhooks and pages)
    max_streams: int = Field(default=200, ge=0, le=2000)
    max_body_bytes: int = Field(default=65_536, ge=1024)
    #: reverse proxies in front of the web process that append to ``X-Forwarded-For``: the
    #: client address is taken that many hops back (0: the address of the connection)
    proxy_hops: int = Field(default=0, ge=0, le=5)

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class VoiceConfig(_Section):
    """How one language is spoken and heard on Twilio."""

    say_voice: str
    say_language: str
    gather_language: str
    speech_model: str = ""


def _default_voices() -> dict[str, VoiceConfig]:
    return {
        "zh-CN": VoiceConfig(
            say_voice="Polly.Zhiyu", say_language="cmn-CN", gather_language="zh-CN"
        ),
        "en": VoiceConfig(say_voice="Polly.Joanna", say_language="en-US", gather_language="en-US"),
    }


class TwilioConfig(_Section):
    """Twilio voice and SMS."""

    api_base_url: str = "https://api.twilio.com"
    voices: dict[str, VoiceConfig] = Field(default_factory=_default_voices)
    gather_timeout_s: int = Field(default=6, ge=1, le=60)
    fallback_number: str = ""

    @field_validator("voices")
    @classmethod
    def _all_languages(cls, value: dict[str, VoiceConfig]) -> dict[str, VoiceConfig]:
        missing = [lang for lang in SUPPORTED_LANGUAGES if lang not in value]
        if missing:
            raise ValueError(f"missing voice settings for {', '.join(missing)}")
        return value


class IvrConfig(_Section):
    """The IVR engine and its flows."""

    flows_dir: Path = Path("ivr_flows")
    entry_flow: str = "main"
    default_language: Language = "zh-CN"
    max_retries: int = Field(default=2, ge=0, le=10)
    default_queue: str = "general"
    red_flag_queue: str = "urgent"
    red_flags: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("red_flags")
    @classmethod
    def _red_flag_languages(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for lang, phrases in value.items():
            if lang not in SUPPORTED_LANGUAGES:
                raise ValueError(f"unknown language {lang!r}")
            if any(not p.strip() for p in phrases):
                raise ValueError(f"empty phrase in the {lang} list")
        return value


def _clock_time(value: str) -> str:
    """Check an ``HH:MM`` local time of day."""
    parts = value.split(":")
    if len(parts) != 2 or not all(x.isdigit() and len(x) == 2 for x in parts):
        raise ValueError(f"{value!r} is not a time of day like 16:00")
    hour, minute = int(parts[0]), int(parts[1])
    if hour > 23 or minute > 59:
        raise ValueError(f"{value!r} is not a time of day like 16:00")
    return value


class FhirConfig(_Section):
    """A hospital information system reached over FHIR R4 (``booking.backend: fhir``).

    The bearer token comes only from the environment (``FHIR_TOKEN``).
    """

    base_url: str = ""
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    #: identifier system for Chinese resident ID numbers and for passports
    id_system_cn: str = "urn:oid:2.16.156.10011.1.5"
    id_system_passport: str = "urn:oid:2.16.156.10011.1.11"


class BookingConfig(_Section):
    """Booking rules (defaults follow common Chinese booking platforms) and the backend."""

    backend: Literal["sql", "fhir"] = "sql"
    horizon_days: int = Field(default=14, ge=1, le=90)
    release_time: str = "08:00"
    per_patient_per_day: int = Field(default=1, ge=1, le=10)
    patients_per_phone: int = Field(default=2, ge=1, le=20)
    cancel_deadline: str = "16:00"
    no_show_limit: int = Field(default=3, ge=1, le=100)
    no_show_window_days: int = Field(default=90, ge=1, le=3650)
    no_show_block_days: int = Field(default=90, ge=0, le=3650)
    pin_attempts_per_call: int = Field(default=3, ge=1, le=20)
    pin_attempts_per_day: int = Field(default=5, ge=1, le=100)
    password_valid_days: int = Field(default=1, ge=0, le=365)
    password_hash_cost: int = Field(default=14, ge=4, le=20)
    fhir: FhirConfig = Field(default_factory=FhirConfig)

    @field_validator("release_time", "cancel_deadline")
    @classmethod
    def _times(cls, value: str) -> str:
        return _clock_time(value)


class SenderLimits(_Section):
    """How fast one sender may go: units per second (an SMS segment, or a call)."""

    per_second: float = Field(default=1.0, gt=0, le=10_000)
    #: requests one sending loop has with the provider at once: enough to cover the
    #: provider's answer time at full rate (``per_second`` x seconds per request)
    concurrency: int = Field(default=4, ge=1, le=64)


class MessagingConfig(_Section):
    """The outbox dispatcher: provider, rates, retries, quiet hours."""

    #: ``twilio`` sends for real; ``local`` (the demo and simulator) marks messages delivered
    #: without sending them anywhere
    sender: Literal["twilio", "local"] = "local"
    sms_from: str = ""
    messaging_service_sid: str = ""
    call_from: str = ""
    sms: SenderLimits = Field(default_factory=SenderLimits)
    calls: SenderLimits = Field(default_factory=SenderLimits)
    rate_guard_ms: int = Field(default=20, ge=0, le=1000)
    max_attempts: int = Field(default=6, ge=1, le=50)
    backoff_base_s: float = Field(default=5.0, gt=0)
    backoff_max_s: float = Field(default=900.0, gt=0)
    lease_s: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=20, ge=1, le=1000)
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"
    reply_window_hours: int = Field(default=48, ge=1, le=720)
    status_callbacks: bool = True
    #: non-essential, non-urgent messages (reminders, results notices, articles) one number
    #: gets in any rolling 24 hours; more wait for a slot
    max_non_essential_per_day: int = Field(default=3, ge=1, le=1_000_000)

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _times(cls, value: str) -> str:
        return _clock_time(value)


class ReminderOffset(_Section):
    """One reminder before a visit: ``days_before`` at local ``at`` (the evening before at
    18:00), or ``minutes_before`` the visit starts (2 hours before)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,23}$")
    days_before: int | None = Field(default=None, ge=1, le=14)
    at: str | None = None
    minutes_before: int | None = Field(default=None, ge=1, le=20_160)

    @field_validator("at")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        return None if value is None else _clock_time(value)

    @model_validator(mode="after")
    def _one_kind(self) -> ReminderOffset:
        by_day = self.days_before is not None and self.at is not None
        by_minutes = self.minutes_before is not None
        if by_day == by_minutes or (not by_day and (self.days_before or self.at)):
            raise ValueError(
                f"reminder {self.name!r}: give either days_before and at, or minutes_before"
            )
        return self


def _default_offsets() -> list[ReminderOffset]:
    return [
        ReminderOffset(name="evening", days_before=1, at="18:00"),
        ReminderOffset(name="2h", minutes_before=120),
    ]


class RemindersConfig(_Section):
    """Appointment reminders: when they go out and how the scheduler fills the outbox."""

    enabled: bool = True
    offsets: list[ReminderOffset] = Field(default_factory=_default_offsets)
    #: how often ``callcenter scheduler`` looks for due reminders
    interval_s: float = Field(default=30.0, ge=1, le=3600)
    #: a reminder found this late (scheduler down) is skipped, not sent
    lateness_limit_minutes: int = Field(default=120, ge=1, le=2880)
    #: a reminder pushed by quiet hours to less than this before the visit is skipped
    min_lead_minutes: int = Field(default=60, ge=0, le=1440)
    #: how long "reply 1 / 2" answers count (never past the visit's start)
    reply_window_hours: int = Field(default=48, ge=1, le=720)

    @field_validator("offsets")
    @classmethod
    def _unique(cls, value: list[ReminderOffset]) -> list[ReminderOffset]:
        names = [o.name for o in value]
        if len(set(names)) != len(names):
            raise ValueError("reminder offset names must be unique")
        return value


class RoutingQueueConfig(_Section):
    """One call queue: who may serve it and how an agent is chosen."""

    #: only agents speaking this language serve the queue (none: any language)
    language: Language | None = None
    #: skills every agent of the queue must have
    skills: list[str] = Field(default_factory=list)
    strategy: Literal["longest_idle", "fewest_calls", "skill_proficiency"] = "longest_idle"
    #: tier level N opens after N x this many seconds of the caller's wait
    level_wait_s: float = Field(default=30.0, ge=0, le=3600)
    #: a level with nobody signed in is skipped and its wait not charged
    skip_empty_levels: bool = True


def _default_queues() -> dict[str, RoutingQueueConfig]:
    return {
        "general": RoutingQueueConfig(),
        "info": RoutingQueueConfig(skills=["info"]),
        "booking": RoutingQueueConfig(skills=["booking"]),
        "urgent": RoutingQueueConfig(skills=["triage"], level_wait_s=10.0),
    }


class RoutingPhoneConfig(_Section):
    """Routing on the phone: what waiting callers hear, callbacks, agents' calls."""

    #: the caller's position is announced while it is this or less
    announce_position_max: int = Field(default=5, ge=0, le=100)
    #: seconds of hold music or silence between announcements
    wait_cycle_s: int = Field(default=30, ge=5, le=600)
    #: hold music (an MP3/WAV URL Twilio can fetch); empty: silence between messages
    hold_music_url: str = ""
    #: "press 1 to be called back" is offered when the estimated wait is over this
    callback_offer_wait_s: float = Field(default=120.0, ge=0, le=24 * 3600)
    #: a callback not dialled within this long after it was asked for is dropped
    callback_expiry_s: float = Field(default=2 * 3600.0, gt=0, le=7 * 24 * 3600)
    #: times a callback is dialled before it is given up
    callback_max_attempts: int = Field(default=3, ge=1, le=20)
    #: a callback that did not answer is not dialled again before this many seconds
    callback_retry_delay_s: float = Field(default=120.0, ge=0, le=24 * 3600)
    #: handle time assumed until calls of the last ``handle_time_window_s`` tell better
    default_handle_time_s: float = Field(default=180.0, gt=0, le=24 * 3600)
    handle_time_window_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    #: seconds the agent has to press a key after the whisper (screens out voicemail)
    agent_accept_timeout_s: int = Field(default=8, ge=1, le=60)
    #: how often ``callcenter router`` dispatches and runs the timers
    tick_interval_s: float = Field(default=1.0, gt=0, le=60)


class RoutingPriorityConfig(_Section):
    """Caller priority when a caller is enqueued (higher waits less; red flags are always
    first; 0 turns a rule off; a caller matching several gets the highest)."""

    #: callers at least this old (ID number entered in the menu, or a known birth date) ...
    elderly_age: int = Field(default=75, ge=0, le=150)
    #: ... get this priority
    elderly: int = Field(default=5, ge=0, le=1000)
    #: a number that already called earlier the same local day
    repeat_caller: int = Field(default=3, ge=0, le=1000)


class RoutingConfig(_Section):
    """The router (ACD): queues, ring timeout, wrap-up and service-level target."""

    ring_timeout_s: float = Field(default=15.0, gt=0, le=300)
    wrap_up_s: float = Field(default=30.0, ge=0, le=3600)
    #: consecutive missed offers after which an agent is set away
    max_missed: int = Field(default=3, ge=1, le=100)
    #: service level counts calls answered within this many seconds
    service_level_s: float = Field(default=20.0, gt=0, le=3600)
    queues: dict[str, RoutingQueueConfig] = Field(default_factory=_default_queues)
    #: an escalation offered to experts and accepted by none in this long becomes a callback
    escalation_offer_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    #: an expert callback must be made within this long
    escalation_callback_deadline_s: float = Field(default=1800.0, gt=0, le=7 * 24 * 3600)
    phone: RoutingPhoneConfig = Field(default_factory=RoutingPhoneConfig)
    priority: RoutingPriorityConfig = Field(default_factory=RoutingPriorityConfig)

    @field_validator("queues")
    @classmethod
    def _some_queue(cls, value: dict[str, RoutingQueueConfig]) -> dict[str, RoutingQueueConfig]:
        if not value:
            raise ValueError("at least one queue is needed")
        return value


class ConsoleConfig(_Section):
    """The agents console: sign-in, lockout, session timeouts, password hashing."""

    #: a session with no request for this long ends
    session_idle_minutes: int = Field(default=15, ge=1, le=24 * 60)
    #: any session ends this long after sign-in
    session_absolute_hours: float = Field(default=10.0, gt=0, le=24 * 7)
    #: failed sign-ins in a row that lock the account
    max_failed_sign_ins: int = Field(default=5, ge=1, le=100)
    lockout_minutes: int = Field(default=15, ge=1, le=7 * 24 * 60)
    #: failed sign-ins (any accounts) from one network address within ``source_window_minutes``
    #: after which that address may not try again until the oldest leaves the window
    source_max_failed_sign_ins: int = Field(default=20, ge=1, le=10_000)
    source_window_minutes: int = Field(default=15, ge=1, le=24 * 60)
    min_password_length: int = Field(default=10, ge=8, le=128)
    #: argon2id cost (RFC 9106 "low memory" profile by default)
    password_hash_time_cost: int = Field(default=3, ge=1, le=20)
    password_hash_memory_kib: int = Field(default=65_536, ge=1024, le=4_194_304)
    password_hash_parallelism: int = Field(default=4, ge=1, le=64)
    #: the console's language for people who have not chosen one
    default_language: Language = "zh-CN"


class RecallConfig(_Section):
    """Waiting-room recall, results calls and voice reminders (``callcenter.recall``)."""

    #: call a patient who has not checked in when this many people (or fewer) are ahead;
    #: a clinic may set its own (``recall_clinics.recall_places``)
    default_places: int = Field(default=5, ge=0, le=100)
    #: busy / no answer / failed: call again this many times, this long after, then an SMS
    call_retries: int = Field(default=1, ge=0, le=5)
    retry_after_s: int = Field(default=120, ge=10, le=3600)
    #: also call (not only text) the patient when a result is ready
    results_call: bool = False


class LoggingConfig(_Section):
    """Log level and format; personal data is always masked."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(_Section):
    """The whole configuration."""

    instance: InstanceConfig = Field(default_factory=InstanceConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    twilio: TwilioConfig = Field(default_factory=TwilioConfig)
    ivr: IvrConfig = Field(default_factory=IvrConfig)
    booking: BookingConfig = Field(default_factory=BookingConfig)
    messaging: MessagingConfig = Field(default_factory=MessagingConfig)
    reminders: RemindersConfig = Field(default_factory=RemindersConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    recall: RecallConfig = Field(default_factory=RecallConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


@dataclass(frozen=True)
class Secrets:
    """Secrets, read only from the environment; ``None`` when not set."""

    # Kept out of repr: a secret must not surface in a log line or a test failure.
    twilio_auth_token: str | None = dataclass_field(repr=False)
    twilio_account_sid: str | None
    secret_key: str | None = dataclass_field(repr=False)
    fhir_token: str | None = dataclass_field(default=None, repr=False)
    #: ``HOSPITAL_FEED_KEYS``: ``hospital=key,hospital=key`` (parsed by ``callcenter.feeds``)
    hospital_feed_keys: str | None = dataclass_field(default=None, repr=False)

    #: environment variable name -> what needs it
    NEEDED_BY = {  # noqa: RUF012 - a constant table, not a mutable default
        "TWILIO_AUTH_TOKEN": "checking X-Twilio-Signature on every Twilio webhook",
        "SECRET_KEY": "signing web sessions",
        "TWILIO_ACCOUNT_SID": "sending SMS and placing calls through Twilio",
        "FHIR_TOKEN": "reaching the hospital's booking system over FHIR",
        "HOSPITAL_FEED_KEYS": "checking the signature of hospital feeds (results ready)",
    }

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigError` naming every listed secret that is not set."""
        values = {
            "TWILIO_AUTH_TOKEN": self.twilio_auth_token,
            "TWILIO_ACCOUNT_SID": self.twilio_account_sid,
            "SECRET_KEY": self.secret_key,
            "FHIR_TOKEN": self.fhir_token,
            "HOSPITAL_FEED_KEYS": self.hospital_feed_keys,
        }
        missing = [n for n in names if not values[n]]
        if missing:
            lines = [f"  {n}: not set (needed for {self.NEEDED_BY[n]})" for n in missing]
            raise ConfigError("missing secret(s) in the environment:\n" + "\n".join(lines))


@dataclass(frozen=True)
class Config:
    """Validated settings plus where they came from (paths are resolved against it)."""

    settings: Settings
    secrets: Secrets
    base_dir: Path

    @property
    def data_dir(self) -> Path:
        """The data directory, absolute."""
        return (self.base_dir / self.settings.instance.data_dir).resolve()

    @property
    def flows_dir(self) -> Path:
        """The IVR flows directory, absolute."""
        return (self.base_dir / self.settings.ivr.flows_dir).resolve()

    @property
    def database_url(self) -> str:
        """The database URL; the SQLite file under the data directory by default."""
        url = self.settings.database.url
        if url:
            return url
        return f"sqlite:///{self.data_dir / 'callcenter.db'}"

    @property
    def timezone(self) -> ZoneInfo:
        """The hotline's local time zone."""
        return ZoneInfo(self.settings.instance.timezone)


def _env_paths(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> dict[str, tuple[tuple[str, ...], bool]]:
    """Map each environment variable name to (the key path it overrides, is it plain text)."""
    paths: dict[str, tuple[tuple[str, ...], bool]] = {}
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, _Section):
            paths.update(_env_paths(annotation, path))
        else:
            plain = annotation is str or annotation is Path
            paths[ENV_PREFIX + "_".join(path).upper()] = (path, plain)
    return paths


_ENV = _env_paths(Settings)
#: environment variable name -> the key path it overrides
ENV_KEYS: dict[str, tuple[str, ...]] = {name: path for name, (path, _plain) in _ENV.items()}


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    unknown = sorted(
        k for k in environ if k.startswith(ENV_PREFIX) and k not in ENV_KEYS and k not in META_ENV
    )
    if unknown:
        raise ConfigError(
            f"unknown configuration variable {unknown[0]} in the environment "
            f"(known: {', '.join(sorted(ENV_KEYS))})"
        )
    overrides = {k: v for k, v in environ.items() if k in ENV_KEYS}
    if "PUBLIC_BASE_URL" in environ and "CALLCENTER_WEB_PUBLIC_BASE_URL" not in environ:
        overrides["CALLCENTER_WEB_PUBLIC_BASE_URL"] = environ["PUBLIC_BASE_URL"]
    for key, text in overrides.items():
        path, plain = _ENV[key]
        value: Any = text
        if not plain:
            # Numbers, booleans, lists and mappings are read as YAML; text stays text
            # (a fallback number "+8621..." must keep its plus sign).
            try:
                value = yaml.safe_load(text) if text.strip() else ""
            except yaml.YAMLError:
                value = text
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path[:-1])}: must be a mapping")
            node = child
        node[path[-1]] = value


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        env = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
        hint = f" [env {env}]" if env in ENV_KEYS else ""
        lines.append(f"  {key}: {err['msg']}{hint}")
    return "\n".join(lines)


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load ``config.yaml`` (or ``path``), apply environment overrides and validate.

    ``path`` defaults to ``$CALLCENTER_CONFIG``, then ``./config.yaml`` when it exists; with no
    file at all the built-in defaults are used. ``overrides`` (nested mapping) wins over both,
    for tests and the demo command.
    """
    env = os.environ if environ is None else environ
    chosen = path or env.get("CALLCENTER_CONFIG")
    raw: dict[str, Any] = {}
    if chosen:
        file = Path(chosen)
        if not file.is_file():
            raise ConfigError(f"configuration file {file} does not exist")
    else:
        file = Path("config.yaml")
    if file.is_file():
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of sections")
        raw = loaded or {}
        base_dir = file.resolve().parent
        source = str(file)
    else:
        base_dir = Path.cwd()
        source = "built-in defaults"
    _apply_env(raw, env)
    if overrides:
        _merge(raw, overrides)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    secrets = Secrets(
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
        twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
        secret_key=env.get("SECRET_KEY") or None,
        fhir_token=env.get("FHIR_TOKEN") or None,
        hospital_feed_keys=env.get("HOSPITAL_FEED_KEYS") or None,
    )
    return Config(settings=settings, secrets=secrets, base_dir=base_dir)


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, Mapping):
            target[key] = {}
            _merge(target[key], value)
        else:
            target[key] = value
