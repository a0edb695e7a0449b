"""``callcenter staffing`` and ``callcenter simulate``: Erlang tables and the simulator;
``callcenter queues status``: the live queues, from the database."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from .erlang import (
    ErlangError,
    agents_needed_a,
    agents_needed_c,
    erlang_a_metrics,
    erlang_c_metrics,
    offered_load,
    parse_target,
)
from .router import Agent, AgentState
from .simulation import SimulationSettings, simulate

if TYPE_CHECKING:
    from .service import RoutingService


def _target(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[float, float]:
    try:
        return parse_target(value)
    except ErlangError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--calls-per-hour", type=click.FloatRange(min=0, min_open=True), required=True)
@click.option("--aht", type=click.FloatRange(min=0, min_open=True), required=True, help="s")
@click.option("--target", default="80/20", callback=_target, help="Percent/seconds.")
@click.option(
    "--patience",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Mean caller patience in seconds: adds Erlang A (callers abandon).",
)
def staffing(
    calls_per_hour: float, aht: float, target: tuple[float, float], patience: float | None
) -> None:
    """Erlang C (and A) table: agents -> service level, ASA; and the agents needed.

    SL is answered within T / answered (Asterisk); Erlang A's "in T" is answered within T /
    offered, which staffing with patience aims at.
    """
    level, target_s = target
    load = offered_load(calls_per_hour, aht)
    need_c = agents_needed_c(calls_per_hour, aht, level, target_s)
    need_a = agents_needed_a(calls_per_hour, aht, patience, level, target_s) if patience else None
    click.echo(f"offered load {load:.2f} Erlangs; target {level:.0%} within {target_s:g} s")
    header = f"{'agents':>6}  {'C: P(wait)':>10}  {'C: SL':>7}  {'C: ASA s':>9}  {'occ':>5}"
    if patience:
        header += f"  {'A: SL':>7}  {'A: in T':>7}  {'A: abandon':>10}  {'A: wait s':>9}"
    click.echo(header)
    low = max(1, int(load) - (2 if patience else 0))
    high = max(need_c, need_a or 0) + 2
    for n in range(low, high + 1):
        c = erlang_c_metrics(n, calls_per_hour, aht, target_s)
        asa = f"{c.asa_s:9.1f}" if c.asa_s != float("inf") else f"{'inf':>9}"
        row = f"{n:>6}  {c.p_wait:>10.1%}  {c.service_level:>7.1%}  {asa}  {c.occupancy:>5.0%}"
        if patience:
            a = erlang_a_metrics(n, calls_per_hour, aht, patience, target_s)
            row += f"  {a.service_level:>7.1%}  {a.answered_within:>7.1%}"
            row += f"  {a.p_abandon:>10.1%}  {a.mean_wait_s:>9.1f}"
        click.echo(row)
    click.echo(f"Erlang C: {need_c} agents needed")
    if need_a is not None:
        click.echo(
            f"Erlang A (patience {patience:g} s, abandoned calls count as not in time): "
            f"{need_a} agents needed"
        )


@click.command("simulate")
@click.option("--calls-per-hour", type=click.FloatRange(min=0, min_open=True), required=True)
@click.option("--aht", type=click.FloatRange(min=0, min_open=True), required=True, help="s")
@click.option("--agents", type=click.IntRange(min=1), required=True)
@click.option("--calls", type=click.IntRange(min=1), default=50_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--patience", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--target-s", type=click.FloatRange(min=0), default=20.0, show_default=True)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also simulate every agent count up to --agents and draw SL, abandonment and ASA "
    "against it into this PNG file.",
)
@click.option(
    "--plot-from",
    type=click.IntRange(min=1),
    default=None,
    help="Fewest agents on the plot (default: the fewest that can keep up; with --patience, "
    "two fewer).",
)
def simulate_command(
    calls_per_hour: float,
    aht: float,
    agents: int,
    calls: int,
    seed: int,
    patience: float | None,
    target_s: float,
    plot_path: str | None,
    plot_from: int | None,
) -> None:
    """Simulate the router on one FIFO queue; print the figures beside Erlang C/A."""
    if plot_path is not None:
        _plot(calls_per_hour, aht, agents, calls, seed, patience, target_s, plot_path, plot_from)
        return
    settings = SimulationSettings(
        calls_per_hour=calls_per_hour,
        aht_s=aht,
        agents=agents,
        calls=calls,
        seed=seed,
        patience_s=patience,
        target_s=target_s,
    )
    started = time.perf_counter()
    r = simulate(settings)
    took = time.perf_counter() - started
    c = erlang_c_metrics(agents, calls_per_hour, aht, target_s)
    click.echo(f"{calls} calls simulated in {took:.2f} s ({calls / took:,.0f} calls/s)")
    click.echo(f"{'':<31}{'simulated':>10}  {'Erlang C':>9}" + ("  Erlang A" if patience else ""))
    a = erlang_a_metrics(agents, calls_per_hour, aht, patience, target_s) if patience else None

    def line(name: str, sim: str, ec: str, ea: str = "") -> None:
        click.echo(f"{name:<31}{sim:>10}  {ec:>9}" + (f"  {ea:>8}" if a else ""))

    t = f"{target_s:g}"
    line(f"SL (answered in {t} s)", f"{r.service_level:.1%}", f"{c.service_level:.1%}",
         f"{a.service_level:.1%}" if a else "")  # fmt: skip
    line(f"SL2 (incl. abandoned in {t} s)", f"{r.service_level2:.1%}", "", "")
    line("ASA (answered) s", f"{r.asa_s:.1f}", f"{c.asa_s:.1f}", "")
    line("abandoned", f"{r.abandon_rate:.1%}", "0.0%", f"{a.p_abandon:.1%}" if a else "")
    line("abandoned after 30 s", f"{r.abandon_rate_after:.1%}", "0.0%", "")
    line("occupancy", f"{r.occupancy:.1%}", f"{c.occupancy:.1%}",
         f"{a.occupancy:.1%}" if a else "")  # fmt: skip


def _plot(
    calls_per_hour: float,
    aht: float,
    agents: int,
    calls: int,
    seed: int,
    patience: float | None,
    target_s: float,
    path: str,
    first: int | None,
) -> None:
    """Simulate each agent count from ``first`` to ``agents``; table and PNG chart."""
    import math
    from pathlib import Path

    from .plot import BLUE, GREEN, GREY, RED, Panel, Series, chart, nice_max

    load = offered_load(calls_per_hour, aht)
    stable = math.floor(load) + 1
    low = first or max(1, stable - 2 if patience else stable)
    if low > agents:
        raise click.BadParameter(
            f"the plot starts at {low} agents (offered load {load:.2f} Erlangs); "
            "give --agents at least that, or a smaller --plot-from",
            param_hint="--agents",
        )
    counts = list(range(low, agents + 1))
    rows: list[tuple[float, float, float, float | None]] = []
    click.echo(f"{'agents':>6}  {'SL sim':>7}  {'SL Erlang':>9}  {'abandoned':>9}  {'ASA s':>7}")
    for n in counts:
        result = simulate(
            SimulationSettings(
                calls_per_hour=calls_per_hour,
                aht_s=aht,
                agents=n,
                calls=calls,
                seed=seed,
                patience_s=patience,
                target_s=target_s,
            )
        )
        theory: float | None = None
        if patience:
            theory = erlang_a_metrics(n, calls_per_hour, aht, patience, target_s).service_level
        elif n > load:
            theory = erlang_c_metrics(n, calls_per_hour, aht, target_s).service_level
        rows.append((result.service_level, result.abandon_rate, result.asa_s, theory))
        erlang = "-" if theory is None else f"{theory:.1%}"
        click.echo(
            f"{n:>6}  {result.service_level:>7.1%}  {erlang:>9}  "
            f"{result.abandon_rate:>9.1%}  {result.asa_s:>7.1f}"
        )
    model = "ERLANG A" if patience else "ERLANG C"
    png = chart(
        counts,
        [
            Panel(
                f"SERVICE LEVEL ({target_s:g} S) AND ABANDONMENT, %",
                100.0,
                [
                    Series("SL SIMULATED", BLUE, [100 * r[0] for r in rows]),
                    Series(
                        f"SL {model}",
                        GREY,
                        [None if r[3] is None else 100 * r[3] for r in rows],
                    ),
                    Series("ABANDONED", RED, [100 * r[1] for r in rows]),
                ],
                unit="%",
            ),
            Panel(
                "AVERAGE SPEED OF ANSWER, S",
                nice_max(max(r[2] for r in rows)),
                [Series("ASA", GREEN, [r[2] for r in rows])],
            ),
        ],
        "AGENTS",
    )
    Path(path).write_bytes(png)
    click.echo(f"plot written to {path} ({len(counts)} agent counts, {calls} calls each)")


@click.group()
def queues() -> None:
    """Live call queues: callers waiting, agents by state, service level."""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@queues.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def queues_status(state: Any, as_json: bool) -> None:
    """Per queue: callers waiting and ringing, longest wait, agents by state; for calls
    queued today (local time): service level (answered in target / answered), SL2 (/ answered and
    abandoned), abandonment and average speed of answer."""
    from ..cli import _services

    services = _services(state)
    try:
        status = services.routing.status()
    finally:
        services.db.dispose()
    if as_json:
        data = asdict(status)
        data["at"] = status.at.isoformat()
        data["since"] = status.since.isoformat()
        click.echo(json.dumps(data, indent=2))
        return
    t = f"{status.target_s:g}"
    click.echo(
        f"{'queue':<10} {'waiting':>7} {'ringing':>7} {'longest s':>9}  "
        f"{'avail':>5} {'busy':>4} {'wrap':>4} {'away':>4}  "
        f"{'answered':>8} {'SL ' + t + 's':>7} {'SL2':>5} {'aband.':>6} {'ASA s':>6}"
    )
    for q in status.queues:
        busy = q.agents.get("reserved", 0) + q.agents.get("on_call", 0)
        asa = "-" if q.asa_s is None else f"{q.asa_s:.0f}"
        click.echo(
            f"{q.queue:<10} {q.waiting:>7} {q.offered:>7} {q.longest_wait_s:>9.0f}  "
            f"{q.agents.get('available', 0):>5} {busy:>4} {q.agents.get('wrap_up', 0):>4} "
            f"{q.agents.get('away', 0):>4}  {q.answered:>8} {_pct(q.service_level):>7} "
            f"{_pct(q.service_level2):>5} {_pct(q.abandon_rate):>6} {asa:>6}"
        )


@queues.group("agent")
def queues_agent() -> None:
    """Change an agent's presence (sign in or out, away, available)."""


def _pairs(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, int]:
    pairs: dict[str, int] = {}
    for value in values:
        name, _, number = value.partition(":")
        try:
            pairs[name] = int(number or "0")
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected NAME or NAME:NUMBER") from None
    return pairs


def _presence(state: Any, change: Callable[[RoutingService], Agent]) -> None:
    from ..cli import _services
    from .router import RoutingError
    from .service import UnknownAgent, UnknownQueue

    services = _services(state)
    try:
        agent = change(services.routing)
    except (RoutingError, UnknownAgent, UnknownQueue, ValueError) as exc:
        raise click.ClickException(f"refused: {exc}") from None
    finally:
        services.db.dispose()
    reason = f" ({agent.away_reason})" if agent.away_reason else ""
    click.echo(f"agent {agent.id}: {agent.state}{reason}")


@queues_agent.command("sign-in")
@click.argument("agent_id")
@click.option("--name", default=None, help="Display name.")
@click.option("--queue", "levels", multiple=True, callback=_pairs, help="QUEUE[:LEVEL]")
@click.option("--skill", "skills", multiple=True, callback=_pairs, help="SKILL[:PROFICIENCY]")
@click.option("--language", "languages", multiple=True, help="A language spoken (zh-CN, en).")
@click.pass_obj
def agent_sign_in(
    state: Any,
    agent_id: str,
    name: str | None,
    levels: dict[str, int],
    skills: dict[str, int],
    languages: tuple[str, ...],
) -> None:
    """Sign AGENT_ID in (created the first time); options given replace the profile."""
    _presence(
        state,
        lambda routing: routing.agent_sign_in(
            agent_id,
            name=name,
            levels=levels or None,
            skills=skills or None,
            languages=languages or None,
        ),
    )


@queues_agent.command("sign-out")
@click.argument("agent_id")
@click.pass_obj
def agent_sign_out(state: Any, agent_id: str) -> None:
    """Sign AGENT_ID out (from available, wrap-up or away)."""
    _presence(state, lambda routing: routing.agent_sign_out(agent_id))


@queues_agent.command("away")
@click.argument("agent_id")
@click.option("--reason", default="away", show_default=True)
@click.pass_obj
def agent_away(state: Any, agent_id: str, reason: str) -> None:
    """Set AGENT_ID away with a reason (a ringing offer goes back to the queue)."""
    _presence(state, lambda routing: routing.set_state(agent_id, AgentState.AWAY, reason))


@queues_agent.command("available")
@click.argument("agent_id")
@click.pass_obj
def agent_available(state: Any, agent_id: str) -> None:
    """Set AGENT_ID available (back from away or wrap-up)."""
    _presence(state, lambda routing: routing.set_state(agent_id, AgentState.AVAILABLE))
