"""Erlang C and Erlang A against known answers."""

from __future__ import annotations

import math

import pytest

from callcenter.routing.erlang import (
    ErlangError,
    agents_needed_a,
    agents_needed_c,
    erlang_a_metrics,
    erlang_b,
    erlang_c,
    erlang_c_metrics,
    offered_load,
    parse_target,
)


@pytest.mark.parametrize(
    ("agents", "calls_per_hour", "aht", "sl", "asa", "p_wait"),
    [
        # DESIGN.md section 5: 100 calls/h, 180 s -> 6 agents 47.4 %, 8 agents 88.0 %.
        (6, 100, 180, 0.474, 105.75, 0.5875),
        (7, 100, 180, 0.740, 29.17, 0.3241),
        (8, 100, 180, 0.880, 10.04, 0.1673),
        (9, 100, 180, 0.948, 3.62, 0.0805),
    ],
)
def test_erlang_c_known_answers(
    agents: int, calls_per_hour: float, aht: float, sl: float, asa: float, p_wait: float
) -> None:
    r = erlang_c_metrics(agents, calls_per_hour, aht, 20)
    assert r.service_level == pytest.approx(sl, abs=0.0006)
    assert r.asa_s == pytest.approx(asa, abs=0.06)
    assert r.p_wait == pytest.approx(p_wait, abs=0.0006)
    assert r.occupancy == pytest.approx(offered_load(calls_per_hour, aht) / agents)


def test_agents_needed_for_80_20() -> None:
    assert agents_needed_c(100, 180, 0.8, 20) == 8
    assert agents_needed_c(100, 180, 0.9, 20) == 9


@pytest.mark.parametrize(("agents", "load"), [(1, 0.5), (10, 7.3), (200, 180.0), (2000, 1950.0)])
def test_erlang_b_recursion_matches_the_formula_and_stays_finite(agents: int, load: float) -> None:
    b = erlang_b(agents, load)
    assert 0.0 < b < 1.0
    if agents <= 10:
        terms = [load**k / math.factorial(k) for k in range(agents + 1)]
        assert b == pytest.approx(terms[-1] / sum(terms))
    assert 0.0 < erlang_c(agents, load) < 1.0


def test_overloaded_erlang_c_never_answers_in_time() -> None:
    r = erlang_c_metrics(5, 100, 180)
    assert (r.p_wait, r.service_level, r.asa_s) == (1.0, 0.0, math.inf)


@pytest.mark.parametrize(
    ("agents", "p_abandon", "sl"),
    [
        # 100 calls/h, 180 s handle, 120 s mean patience (checked by the simulator too).
        (4, 0.3043, 0.5833),
        (6, 0.1123, 0.8246),
        (8, 0.0299, 0.9480),
    ],
)
def test_erlang_a_known_answers(agents: int, p_abandon: float, sl: float) -> None:
    r = erlang_a_metrics(agents, 100, 180, 120, 20)
    assert r.p_abandon == pytest.approx(p_abandon, abs=0.0006)
    assert r.service_level == pytest.approx(sl, abs=0.0006)


def test_erlang_a_tends_to_erlang_c_with_endless_patience() -> None:
    a = erlang_a_metrics(8, 100, 180, 1e9, 20)
    c = erlang_c_metrics(8, 100, 180, 20)
    assert a.p_abandon < 1e-6
    assert a.p_wait == pytest.approx(c.p_wait, abs=1e-5)
    assert a.service_level == pytest.approx(c.service_level, abs=1e-5)
    assert a.mean_wait_s == pytest.approx(c.asa_s, rel=1e-4)


def test_erlang_a_is_stable_at_large_and_tiny_loads() -> None:
    big = erlang_a_metrics(1000, 19_000, 180, 60)
    assert 0 < big.p_abandon < 0.01
    idle = erlang_a_metrics(1000, 60, 180, 60)
    assert idle.p_wait == pytest.approx(0.0, abs=1e-12)
    overloaded = erlang_a_metrics(3, 1000, 180, 60)
    assert overloaded.p_abandon == pytest.approx(1 - 3 / 50, abs=1e-3)
    assert agents_needed_a(100, 180, 120, 0.8, 20) == 7  # 6 answer 73.2 % in 20 s
    assert erlang_a_metrics(1, 100, 180, 1e6).p_abandon == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize(("text", "parsed"), [("80/20", (0.8, 20.0)), ("90/15", (0.9, 15.0))])
def test_parse_target(text: str, parsed: tuple[float, float]) -> None:
    assert parse_target(text) == parsed


@pytest.mark.parametrize("text", ["80", "80/", "x/20", "100/20", "0/20"])
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(ErlangError):
        parse_target(text)
