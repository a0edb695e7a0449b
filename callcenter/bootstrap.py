"""The composition root: the one place that builds services and wires them together.

Nothing else constructs a database engine, loads flows or picks a clock; entry points (the
WSGI app, the CLI, tests, benchmarks) call :func:`build` and pass the result along.
"""

from __future__ import annotations

from dataclasses import dataclass

from knowledge_base.ivr_actions import ACTION_NAMES as KB_ACTIONS
from knowledge_base.ivr_actions import KnowledgeActions
from knowledge_base.search import KnowledgeSearch
from schedulers.reminders import register_reply_handlers

from .booking.fhir_backend import FhirBookingBackend
from .booking.ivr_actions import ACTION_NAMES as BOOKING_ACTIONS
from .booking.ivr_actions import BookingActions
from .booking.ports import BookingBackend
from .booking.service import BookingService
from .booking.sql_backend import SqlBookingBackend
from .calls.actions import ActionRegistry
from .calls.service import CallService
from .clock import Clock, SystemClock
from .config import Config
from .db.engine import Database
from .events import EventBus, for_database
from .feeds.service import FeedService, parse_feed_keys
from .ivr.engine import Engine, EngineSettings
from .ivr.loader import load_flows
from .messaging.inbound import InboundSmsService
from .messaging.outbox import Outbox
from .messaging.replies import ReplyHandlers
from .messaging.sealing import Sealer
from .recall.outbound import ACTION_NAMES as OUTBOUND_ACTIONS
from .recall.outbound import OutboundActions, OutboundService
from .recall.queue import RecallService
from .recall.results import ResultsService
from .routing.escalations import EscalationService
from .routing.phone import PhoneRouting
from .routing.service import RoutingService
from .users.service import UserService

#: Every action name the shipped flows may call (for checking flows without a database).
ACTION_NAMES = KB_ACTIONS | BOOKING_ACTIONS | OUTBOUND_ACTIONS


@dataclass(frozen=True)
class Services:
    """Everything the entry points need, built once per process."""

    config: Config
    clock: Clock
    db: Database
    engine: Engine
    actions: ActionRegistry
    calls: CallService
    sms_inbound: InboundSmsService
    knowledge: KnowledgeSearch
    outbox: Outbox
    #: handlers for numbered SMS answers ("reply 1 or 2"); features register theirs here
    replies: ReplyHandlers
    #: ``None`` without ``SECRET_KEY`` (visit passwords and ID numbers are keyed with it)
    booking: BookingService | None
    #: signed hospital feeds (results ready); refuses every hospital without HOSPITAL_FEED_KEYS
    feeds: FeedService
    #: agents' presence and the callers waiting for them (the router, persisted)
    routing: RoutingService
    #: console users, sign-in and server-side console sessions
    users: UserService
    #: live events for the console (in-process on SQLite, LISTEN/NOTIFY on PostgreSQL)
    events: EventBus
    #: tier-2 escalations to hospital experts and the experts' presence
    escalations: EscalationService
    #: routing on the phone: the queue's wait URL, callbacks, agents' and experts' calls
    #: (no call control here: ``callcenter router`` adds it for its loop)
    phone: PhoneRouting
    #: waiting-room recall from hospital queue events
    recall: RecallService
    #: outbound calls run as flows (answer, retries, SMS fallback)
    outbound: OutboundService
    #: results by phone: identity checks, disclosure, clinician tasks
    results: ResultsService


def database(config: Config) -> Database:
    """The database handle for ``config`` (no connection is made until first use)."""
    dbs = config.settings.database
    return Database.from_url(
        config.database_url,
        echo=dbs.echo,
        pool_size=dbs.pool_size,
        busy_timeout_ms=dbs.busy_timeout_ms,
    )


def booking_backend(config: Config, clock: Clock) -> BookingBackend:
    """Where clinic slots live: this database, or the hospital's system over FHIR."""
    if config.settings.booking.backend == "fhir":
        return FhirBookingBackend.from_config(config)
    return SqlBookingBackend(clock)


def build_actions(
    config: Config,
    knowledge: KnowledgeSearch,
    booking: BookingService | None,
    backend: BookingBackend,
) -> ActionRegistry:
    """The service actions flows may call. Each capability registers its own here."""
    registry = ActionRegistry()
    tz = config.settings.instance.timezone
    KnowledgeActions(knowledge, tz).register(registry)
    BookingActions(knowledge, booking, backend, config.settings.booking, tz).register(registry)
    return registry


def build_engine(config: Config, actions: ActionRegistry) -> Engine:
    """Load and validate the flows (raises ``FlowError``) and build the engine."""
    ivr = config.settings.ivr
    flows = load_flows(
        config.flows_dir,
        entry=ivr.entry_flow,
        default_queue=ivr.default_queue,
        actions=set(actions),
    )
    settings = EngineSettings(
        default_language=ivr.default_language,
        max_retries=ivr.max_retries,
        gather_timeout_s=config.settings.twilio.gather_timeout_s,
        default_queue=ivr.default_queue,
        red_flag_queue=ivr.red_flag_queue,
        red_flags={lang: tuple(p) for lang, p in ivr.red_flags.items()},
        timezone=config.settings.instance.timezone,
    )
    return Engine(flows, settings)


def build(config: Config, *, clock: Clock | None = None, db: Database | None = None) -> Services:
    """Build every service from ``config``. Does not connect to the database."""
    clock = clock or SystemClock()
    handle = db or database(config)
    knowledge = KnowledgeSearch(handle)
    sealer = Sealer(config.secrets.secret_key)
    outbox = Outbox(handle, sealer, config.settings)
    replies = ReplyHandlers()
    backend = booking_backend(config, clock)
    booking = None
    if config.secrets.secret_key:
        booking = BookingService(
            handle,
            backend,
            outbox,
            clock,
            config.settings.booking,
            config.secrets.secret_key,
            config.timezone,
        )
    register_reply_handlers(replies, booking)
    actions = build_actions(config, knowledge, booking, backend)
    results = ResultsService(handle, sealer, booking, clock)
    OutboundActions(outbox, results, booking, config.settings.recall).register(actions)
    engine = build_engine(config, actions)
    region = config.settings.instance.default_region
    events = for_database(handle)
    routing = RoutingService(
        handle, clock, config.settings.routing, events=events, timezone=config.timezone
    )
    escalations = EscalationService(handle, clock, config.settings.routing, events=events)
    return Services(
        config=config,
        clock=clock,
        db=handle,
        engine=engine,
        actions=actions,
        calls=(
            calls := CallService(
                handle, engine, actions, clock, default_region=region, sealer=sealer
            )
        ),
        sms_inbound=InboundSmsService(handle, clock, region, replies=replies, outbox=outbox),
        knowledge=knowledge,
        outbox=outbox,
        replies=replies,
        booking=booking,
        feeds=(
            feeds := FeedService(
                handle,
                outbox,
                clock,
                parse_feed_keys(config.secrets.hospital_feed_keys),
                sealer=sealer,
                results_call=config.settings.recall.results_call,
            )
        ),
        routing=routing,
        events=events,
        escalations=escalations,
        phone=PhoneRouting(
            handle,
            clock,
            config.settings.routing,
            routing,
            escalations,
            base_url=config.settings.web.public_base_url,
            default_region=region,
        ),
        users=UserService(handle, clock, config.settings.console),
        recall=RecallService(handle, outbox, feeds, clock, config.settings.recall),
        outbound=OutboundService(handle, outbox, calls, clock, config.settings.recall),
        results=results,
    )
