"""The ``callcenter`` command line.

Exit codes scripts can rely on: 0 success, 1 failure while running, 2 usage error (click),
3 configuration or flow error (nothing was started).
"""

from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from .config import Config, ConfigError, load_config
from .ivr.loader import FlowError, load_flows
from .logs import setup_logging

EXIT_CONFIG = 3


class _State:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise _Fatal(str(exc)) from None
            setup_logging(self._config.settings.logging.level)
        return self._config

    def reload(self) -> Config:
        self._config = None
        return self.config()


class _Fatal(click.ClickException):
    exit_code = EXIT_CONFIG


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="CALLCENTER_CONFIG",
    help="Configuration file (default: ./config.yaml, or $CALLCENTER_CONFIG).",
)
@click.version_option(package_name="callcenter")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Health Hotline (健康热线): a health call center for a hospital network."""
    if config_path:
        os.environ["CALLCENTER_CONFIG"] = str(Path(config_path).resolve())
    ctx.obj = _State(config_path)


def _services(state: _State) -> Any:
    from .bootstrap import build

    try:
        return build(state.config())
    except FlowError as exc:
        raise _Fatal(str(exc)) from None


# ---------------------------------------------------------------- db


@main.group()
def db() -> None:
    """Database schema (migrations)."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(state: _State) -> None:
    """Create or update the database schema to the latest version."""
    from .db.engine import make_engine
    from .db.migrate import current_revision, upgrade

    config = state.config()
    engine = make_engine(config.database_url)
    try:
        upgrade(engine)
        click.echo(
            f"database at revision {current_revision(engine)} ({engine.url.get_backend_name()})"
        )
    except Exception as exc:
        raise click.ClickException(f"migration failed: {exc}") from None
    finally:
        engine.dispose()


@db.command("current")
@click.pass_obj
def db_current(state: _State) -> None:
    """Show the schema revision of the database and the newest one this version knows."""
    from .db.engine import make_engine
    from .db.migrate import current_revision, head_revision

    engine = make_engine(state.config().database_url)
    try:
        click.echo(
            f"database: {current_revision(engine) or '(empty)'}; code: {head_revision(engine)}"
        )
    finally:
        engine.dispose()


# ---------------------------------------------------------------- flows


@main.group()
def flows() -> None:
    """IVR flow files."""


@flows.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.pass_obj
def flows_check(state: _State, directory: str | None) -> None:
    """Validate the flow files (schema, targets, prompts in both languages, reachability)."""
    from .bootstrap import ACTION_NAMES

    config = state.config()
    path = Path(directory) if directory else config.flows_dir
    try:
        flowset = load_flows(
            path,
            entry=config.settings.ivr.entry_flow,
            default_queue=config.settings.ivr.default_queue,
            actions=set(ACTION_NAMES),
        )
    except FlowError as exc:
        raise click.ClickException(str(exc)) from None
    nodes = sum(len(f.nodes) for f in flowset.flows.values())
    click.echo(f"ok: {len(flowset.flows)} flows, {nodes} nodes in {path}")


# ---------------------------------------------------------------- serve and demo


def _gunicorn(config: Config, host: str, port: int, workers: int | None, access_log: bool) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.util import import_app

    web = config.settings.web
    # SQLite too: its writers queue on a lock shared by every process (callcenter.db.engine),
    # while the rest of each request (HTTP, signatures, TwiML) runs on every CPU.
    count = workers or web.workers
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": count,
        "worker_class": "gthread",
        # A console's live-event stream holds a thread while open: room for web.max_streams
        # of them beside the threads that answer webhooks and pages.
        "threads": web.threads + web.max_streams,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": "-" if access_log else None,
        "proc_name": "callcenter",
    }

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Imported by name: only the WSGI module knows the console package.
            return import_app("callcenter.wsgi:application")

    _App().run()


def _check_serve(state: _State) -> Config:
    config = state.config()
    try:
        config.secrets.require("TWILIO_AUTH_TOKEN", "SECRET_KEY")
    except ConfigError as exc:
        raise _Fatal(str(exc)) from None
    services = _services(state)  # validates flows before any worker starts
    services.db.dispose()
    return config


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: web.host).")
@click.option("--port", type=int, default=None, help="Port (default: web.port).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: web.workers).")
@click.option("--access-log/--no-access-log", default=False, help="Log every request.")
@click.pass_obj
def serve(
    state: _State, host: str | None, port: int | None, workers: int | None, access_log: bool
) -> None:
    """Serve the web app (webhooks, API, console) under gunicorn.

    Starts even while the database is unreachable, so the fallback webhook still answers.
    """
    config = _check_serve(state)
    web = config.settings.web
    _gunicorn(config, host or web.host, port or web.port, workers, access_log)


def _demo_secrets(config: Config) -> Path:
    """Make sure the demo has secrets: generated once, kept in the data directory (0600)."""
    path = config.data_dir / "demo-secrets.env"
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    changed = False
    for key in ("TWILIO_AUTH_TOKEN", "SECRET_KEY"):
        if not os.environ.get(key):
            if key not in values:
                values[key] = secrets.token_hex(16 if key == "TWILIO_AUTH_TOKEN" else 32)
                changed = True
            os.environ[key] = values[key]
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "# Generated by `callcenter demo` for local use only.\n" + "".join(
            f"{k}={v}\n" for k, v in values.items()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    return path


@main.command()
@click.option("--load-only", is_flag=True, help="Migrate and load demo data, then stop.")
@click.option("--host", default=None, help="Address to listen on (default: web.host).")
@click.option("--port", type=int, default=None, help="Port (default: web.port).")
@click.pass_obj
def demo(state: _State, load_only: bool, host: str | None, port: int | None) -> None:
    """Run the hotline locally with demo data: migrate, load, serve on localhost."""
    from .db.engine import make_engine
    from .db.migrate import upgrade
    from .demo import DEMO_CALLER, load_demo

    config = state.config()
    secrets_file = _demo_secrets(config)
    if not (os.environ.get("PUBLIC_BASE_URL") or os.environ.get("CALLCENTER_WEB_PUBLIC_BASE_URL")):
        # Locally the public URL is where the demo listens (workers read it from here too).
        os.environ["CALLCENTER_WEB_PUBLIC_BASE_URL"] = (
            f"http://localhost:{port or config.settings.web.port}"
        )
    config = state.reload()
    engine = make_engine(config.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    from knowledge_base.importer import load_demo as load_kb_demo

    from .booking.schedules import load_demo_schedules

    services = _services(state)
    report = load_demo(services.db, services.clock)
    kb_report = load_kb_demo(services.db, services.clock)
    schedules = load_demo_schedules(services.db, services.clock, config.timezone)
    from .users.demo import ensure_demo_users

    console_users = ensure_demo_users(services.users, config.data_dir)
    services.db.dispose()
    base = config.settings.web.public_base_url
    click.echo(
        "\n".join(
            [
                f"健康热线演示 / Health Hotline demo — database: {config.database_url}",
                f"  demo data loaded (new residents: {report.residents}; knowledge base: "
                f"{kb_report.changes} new or changed entries; clinic schedules: "
                f"{schedules.clinics_created} new clinics for two weeks); all people are fictional",
                "  call it from this terminal:   callcenter call            (English: --lang en)",
                f"  scripted call:                callcenter call -i 5 -i 1 --from {DEMO_CALLER}",
                f"  Twilio voice webhook:         POST {base}/twilio/voice",
                f"  Twilio status callback:       POST {base}/twilio/voice/status",
                f"  Twilio fallback URL:          POST {base}/twilio/fallback",
                f"  Twilio SMS webhook:           POST {base}/twilio/sms",
                f"  demo secrets (signing token): {secrets_file}",
                f"  console:                      {base}/  (sign in as "
                f"{', '.join(console_users.usernames)}; passwords in {console_users.path})",
            ]
        )
    )
    if load_only:
        return
    web = config.settings.web
    _check_serve(state)
    # The demo sends with the local sender: messages are marked delivered, nothing leaves
    # the machine. One dispatcher process beside the web server, stopped with it.
    dispatcher = subprocess.Popen(
        [sys.executable, "-m", "callcenter.cli", "worker"], env=os.environ.copy()
    )
    atexit.register(dispatcher.terminate)
    click.echo(f"  outbox dispatcher:            pid {dispatcher.pid} (callcenter worker)")
    # The router loop offers waiting callers to agents signed in to the console (with the
    # local sender it dials nobody: agents answer on screen).
    router_loop = subprocess.Popen(
        [sys.executable, "-m", "callcenter.cli", "router", "run"], env=os.environ.copy()
    )
    atexit.register(router_loop.terminate)
    click.echo(f"  router loop:                  pid {router_loop.pid} (callcenter router run)")
    _gunicorn(config, host or web.host, port or web.port, None, access_log=False)


# ---------------------------------------------------------------- knowledge base


@main.group()
def kb() -> None:
    """Knowledge base: search, import, export, articles due for review."""


@kb.command("search")
@click.argument("query")
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(["hospital", "department", "expert", "drug", "article", "service"]),
    help="Only this entity type (repeatable).",
)
@click.option("--limit", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option("--lang", type=click.Choice(["zh-CN", "en"]), default="zh-CN", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_obj
def kb_search(
    state: _State, query: str, types: tuple[str, ...], limit: int, lang: str, as_json: bool
) -> None:
    """Search the knowledge base with the same ranking as the phone and the console."""
    import json

    services = _services(state)
    try:
        today = services.clock.now().astimezone(services.config.timezone).date()
        result = services.knowledge.search(
            query,
            types=types or None,
            language="en" if lang == "en" else "zh",
            limit=limit,
            today=today,
        )
    finally:
        services.db.dispose()
    if as_json:
        click.echo(json.dumps(result.to_data(), ensure_ascii=False, indent=2))
        return
    if not result.hits:
        click.echo("no match")
        return
    for rank, hit in enumerate(result.hits, 1):
        click.echo(
            f"{rank}. [{hit.type}] {hit.name_zh} / {hit.name_en}  ({hit.id}, {hit.score:.2f})"
        )
    if result.ambiguous:
        click.echo("(the top results are too close to call: a caller would be asked to choose)")


@kb.command("import")
@click.argument("path", type=click.Path(exists=True))
@click.pass_obj
def kb_import(state: _State, path: str) -> None:
    """Import YAML or CSV files (a file or a folder); all or nothing, idempotent."""
    from knowledge_base.importer import KbImportError, import_path

    services = _services(state)
    try:
        with click.progressbar(length=1, label=f"importing {path}") as bar:
            report = import_path(services.db, path, clock=services.clock)
            bar.update(1)
    except KbImportError as exc:
        raise click.ClickException(f"nothing was imported:\n{exc}") from None
    finally:
        services.db.dispose()
    click.echo(report.summary())
    click.echo(f"{report.changes} changes; {report.indexed} search entries rebuilt")


@kb.command("export")
@click.argument("path", type=click.Path(file_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["yaml", "csv"]), default="yaml", show_default=True
)
@click.pass_obj
def kb_export(state: _State, path: str, fmt: str) -> None:
    """Export the whole knowledge base to a folder, in the import format."""
    from knowledge_base.importer import export_path

    services = _services(state)
    try:
        files = export_path(services.db, path, fmt)
    finally:
        services.db.dispose()
    for file in files:
        click.echo(str(file))


@kb.command("review")
@click.option(
    "--within",
    type=int,
    default=30,
    show_default=True,
    help="Also list articles expiring within this many days.",
)
@click.pass_obj
def kb_review(state: _State, within: int) -> None:
    """Articles whose reviewed text has expired (not read to callers) or expires soon."""
    from knowledge_base.answers import review_list

    services = _services(state)
    today = services.clock.now().astimezone(services.config.timezone).date()
    try:
        with services.db.sessions() as session:
            rows = review_list(session, today, within)
    finally:
        services.db.dispose()
    if not rows:
        click.echo("no article needs review")
    for article_id, version, expires in rows:
        status = "EXPIRED" if expires < today else "expires"
        click.echo(f"{article_id} v{version}: {status} {expires.isoformat()}")


# ---------------------------------------------------------------- simulator


@main.command()
@click.option(
    "--lang",
    type=click.Choice(["zh-CN", "en"]),
    default=None,
    help="Caller's language (default: the resident's preference, else zh-CN).",
)
@click.option(
    "--from",
    "caller",
    default=None,
    metavar="NUMBER",
    help="Caller id, E.164 or national (default: a demo resident).",
)
@click.option(
    "--script",
    "script",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="File of inputs, one per line ('-' for stdin); prints the whole dialogue.",
)
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="INPUT",
    help="An input (repeatable), as in --script: keys, a sentence, '' for silence.",
)
@click.pass_obj
def call(
    state: _State, lang: str | None, caller: str | None, script: Any, inputs: tuple[str, ...]
) -> None:
    """Call the hotline from the terminal: same engine, flows and database as the phone.

    Type keypad digits (0-9 * #) or a sentence as if spoken; an empty line is silence;
    /hangup hangs up.
    """
    from .demo import DEMO_CALLER
    from .phone import InvalidPhoneNumber, normalize
    from .simulator import Simulator

    config = state.config()
    if not os.environ.get("SECRET_KEY"):
        # Booking hashes visit passwords with SECRET_KEY: on a machine without one, the
        # simulator uses the demo's (generated once, like `callcenter demo` does).
        _demo_secrets(config)
        config = state.reload()
    number = caller or DEMO_CALLER
    try:
        number = normalize(number, config.settings.instance.default_region)
    except InvalidPhoneNumber as exc:
        raise click.BadParameter(str(exc), param_hint="--from") from None
    services = _services(state)
    label_lang = lang or config.settings.ivr.default_language
    sim = Simulator(services.calls, sys.stdout, label_language=label_lang)
    source: Any
    if script is not None:
        source = [line.rstrip("\n") for line in script]
    elif inputs:
        source = list(inputs)
    else:

        def source() -> str | None:
            try:
                return input("> ")
            except EOFError:
                return None

    try:
        sim.run(source, caller=number, language=lang)
    except Exception as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            raise click.ClickException(
                "the database has no schema yet: run `callcenter db upgrade` (or `callcenter demo`)"
            ) from None
        raise
    finally:
        services.db.dispose()


def _register() -> None:
    """Command groups that live beside the code they drive."""
    from schedulers.cli import scheduler

    from .booking.cli import booking
    from .messaging.cli import outbound, outbox, worker
    from .recall.cli import recall
    from .routing.cli import queues, simulate_command, staffing
    from .routing.phone_cli import router
    from .users.cli import users

    main.add_command(booking)
    main.add_command(worker)
    main.add_command(outbox)
    main.add_command(outbound)
    main.add_command(scheduler)
    main.add_command(staffing)
    main.add_command(simulate_command)
    main.add_command(queues)
    main.add_command(router)
    main.add_command(users)
    main.add_command(recall)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
