"""The proof: the real router, driven by the discrete-event simulator, meets queueing theory.

One FIFO queue, identical agents, Poisson arrivals, exponential handle times: the simulated
service level must agree with Erlang C within 2 percentage points; with exponential patience,
the abandonment rate with Erlang A within 1 point. Each load is pooled over several seeds
(100,000 calls per Erlang C load, 60,000 per Erlang A case).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from callcenter.cli import main
from callcenter.routing.erlang import erlang_a_metrics, erlang_c_metrics
from callcenter.routing.simulation import SimulationResult, SimulationSettings, simulate

CALLS_PER_HOUR = 100.0
AHT = 180.0


def pooled(
    agents: int, seeds: range, calls: int, patience: float | None = None
) -> SimulationResult:
    total = SimulationResult(agents=agents)
    for seed in seeds:
        r = simulate(
            SimulationSettings(CALLS_PER_HOUR, AHT, agents, calls, seed, patience_s=patience)
        )
        total.offered += r.offered
        total.answered += r.answered
        total.answered_within += r.answered_within
        total.abandoned += r.abandoned
        total.total_wait_answered_s += r.total_wait_answered_s
        total.talk_time_s += r.talk_time_s
        total.elapsed_s += r.elapsed_s
    return total


@pytest.mark.slow
@pytest.mark.parametrize("agents", [6, 7, 8])
def test_service_level_matches_erlang_c(agents: int) -> None:
    sim = pooled(agents, range(1, 5), 25_000)
    theory = erlang_c_metrics(agents, CALLS_PER_HOUR, AHT, 20)
    assert sim.offered >= 99_000
    assert sim.abandoned == 0
    assert abs(sim.service_level - theory.service_level) <= 0.02
    assert sim.occupancy == pytest.approx(theory.occupancy, abs=0.02)
    assert sim.asa_s == pytest.approx(theory.asa_s, rel=0.2)


@pytest.mark.slow
@pytest.mark.parametrize(("agents", "patience"), [(5, 120.0), (7, 60.0)])
def test_abandonment_matches_erlang_a(agents: int, patience: float) -> None:
    sim = pooled(agents, range(1, 4), 20_000, patience)
    theory = erlang_a_metrics(agents, CALLS_PER_HOUR, AHT, patience, 20)
    assert sim.offered >= 59_000
    assert abs(sim.abandon_rate - theory.p_abandon) <= 0.01
    assert abs(sim.service_level - theory.service_level) <= 0.02


def test_same_seed_same_figures_and_sl2_bounds() -> None:
    settings = SimulationSettings(CALLS_PER_HOUR, AHT, 6, 3_000, seed=7, patience_s=90)
    a, b = simulate(settings), simulate(settings)
    assert a == b
    assert a.offered == 3_000 - 30  # the warm-up is not counted
    assert a.answered + a.abandoned == a.offered
    assert 0 < a.abandon_rate_after < a.abandon_rate
    assert 0 < a.service_level2 <= 1
    assert a.decisions >= a.answered


def test_tiers_and_lognormal_handle_times() -> None:
    flat = simulate(SimulationSettings(CALLS_PER_HOUR, AHT, 7, 5_000, seed=3))
    tiered = simulate(
        SimulationSettings(CALLS_PER_HOUR, AHT, 7, 5_000, seed=3, levels=(5, 2), level_wait_s=30)
    )
    # Holding two agents back until a caller has waited 30 s can only slow answers down.
    assert tiered.asa_s > flat.asa_s
    assert tiered.answered == flat.answered
    logn = simulate(SimulationSettings(CALLS_PER_HOUR, AHT, 8, 5_000, seed=3, handle="lognormal"))
    assert logn.talk_time_s / logn.answered == pytest.approx(AHT, rel=0.08)


@pytest.mark.parametrize(
    "settings",
    [
        SimulationSettings(100, 180, 0),
        SimulationSettings(100, 180, 4, levels=(1, 1)),
        SimulationSettings(100, 180, 4, handle="gamma"),
    ],
)
def test_bad_settings(settings: SimulationSettings) -> None:
    with pytest.raises(ValueError, match=r"."):
        simulate(settings)


def test_staffing_command() -> None:
    args = ["staffing", "--calls-per-hour", "100", "--aht", "180", "--target", "80/20"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "47.4%" in out.output
    assert "88.0%" in out.output
    assert "Erlang C: 8 agents needed" in out.output
    out = CliRunner().invoke(main, [*args, "--patience", "120"])
    assert out.exit_code == 0, out.output
    assert "7 agents needed" in out.output.splitlines()[-1]
    bad = CliRunner().invoke(main, [*args[:-1], "80"])
    assert bad.exit_code == 2


def test_simulate_command() -> None:
    args = ["simulate", "--calls-per-hour", "100", "--aht", "180", "--agents", "8"]
    out = CliRunner().invoke(main, [*args, "--calls", "2000", "--seed", "2", "--patience", "60"])
    assert out.exit_code == 0, out.output
    assert "88.0%" in out.output  # Erlang C beside the simulated figures
    assert "abandoned after 30 s" in out.output
