"""Queueing formulas for staffing: Erlang C (M/M/N) and Erlang A (M/M/N+M).

Erlang C assumes callers never hang up; Erlang A adds exponential patience (mean
``patience_s``), so callers abandon. Both are computed without factorials:

* Erlang B by its recursion ``B(0) = 1``, ``B(n) = A·B(n-1) / (n + A·B(n-1))``, which stays in
  [0, 1] for any load, and Erlang C from it: ``C = N·B / (N - A·(1 - B))``;
* Erlang A from the birth-death chain's stationary distribution, built as ratios to the state
  "all agents busy, nobody waiting" (each ratio is bounded, the tail is cut when negligible),
  and its waiting-time distribution by uniformisation of the tagged caller's position chain.

Units: arrival rate in calls per hour, times in seconds. Service level follows Asterisk's SL:
calls answered within ``T`` over calls answered (with no abandonment, simply P(wait <= T)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Relative size below which the tail of the Erlang A distribution is cut.
_TAIL_EPS = 1e-15
#: Longest queue the Erlang A distribution is built for.
_MAX_QUEUE = 200_000
#: Largest uniformisation rate x time handled in one Poisson series (keeps exp(-x) normal).
_MAX_STEP_RATE = 30.0


class ErlangError(ValueError):
    """Inputs out of range (non-positive rates, no agents, a bad target)."""


def offered_load(calls_per_hour: float, aht_s: float) -> float:
    """Offered traffic in Erlangs: arrival rate x average handle time."""
    if calls_per_hour <= 0 or aht_s <= 0:
        raise ErlangError("calls per hour and handle time must be positive")
    return calls_per_hour * aht_s / 3600.0


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of ``agents`` servers offered ``load`` Erlangs (iterative)."""
    if agents < 0 or load < 0:
        raise ErlangError("agents and load must not be negative")
    b = 1.0
    for n in range(1, agents + 1):
        b = load * b / (n + load * b)
    return b


def erlang_c(agents: int, load: float) -> float:
    """Probability an arriving caller waits (M/M/N, infinite patience); 1.0 if overloaded."""
    if agents <= 0:
        raise ErlangError("at least one agent is needed")
    if load >= agents:
        return 1.0
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1.0 - b))


@dataclass(frozen=True)
class ErlangCResult:
    """Erlang C figures for one staffing level."""

    agents: int
    load: float
    p_wait: float
    service_level: float
    asa_s: float
    occupancy: float


def erlang_c_metrics(
    agents: int, calls_per_hour: float, aht_s: float, target_s: float = 20.0
) -> ErlangCResult:
    """Probability of waiting, service level within ``target_s``, ASA and occupancy."""
    load = offered_load(calls_per_hour, aht_s)
    if agents <= load:
        return ErlangCResult(agents, load, 1.0, 0.0, math.inf, 1.0)
    pw = erlang_c(agents, load)
    sl = 1.0 - pw * math.exp(-(agents - load) * target_s / aht_s)
    asa = pw * aht_s / (agents - load)
    return ErlangCResult(agents, load, pw, sl, asa, load / agents)


def parse_target(text: str) -> tuple[float, float]:
    """``"80/20"`` -> (0.80, 20.0): a service level fraction and its time in seconds."""
    try:
        pct, secs = text.split("/")
        fraction, seconds = float(pct) / 100.0, float(secs)
    except ValueError:
        raise ErlangError(f"target must look like 80/20, not {text!r}") from None
    if not 0 < fraction < 1 or seconds < 0:
        raise ErlangError(f"target {text!r} out of range")
    return fraction, seconds


def agents_needed_c(
    calls_per_hour: float, aht_s: float, service_level: float = 0.8, target_s: float = 20.0
) -> int:
    """Fewest agents whose Erlang C service level within ``target_s`` reaches the target."""
    if not 0 < service_level < 1:
        raise ErlangError("service level must be between 0 and 1")
    load = offered_load(calls_per_hour, aht_s)
    n = max(1, math.floor(load) + 1)
    while erlang_c_metrics(n, calls_per_hour, aht_s, target_s).service_level < service_level:
        n += 1
    return n


# ---------------------------------------------------------------- Erlang A


@dataclass(frozen=True)
class ErlangAResult:
    """Erlang A figures for one staffing level.

    ``service_level`` is answered within T over answered (Asterisk SL); ``answered_within``
    is answered within T over all calls offered; ``mean_wait_s`` is the mean wait of all
    callers, those who abandon included (by Little's law), not the ASA of answered calls.
    """

    agents: int
    load: float
    p_wait: float
    p_abandon: float
    service_level: float
    answered_within: float
    mean_wait_s: float
    occupancy: float


def _erlang_a_distribution(
    agents: int, lam: float, mu: float, theta: float
) -> tuple[list[float], list[float]]:
    """Stationary probabilities scaled by a common factor: below (n < N, index n) and queue
    (n = N + j, index j). Built in logarithms, so no ratio overflows at any load."""
    logs_below = [0.0] * agents
    lp = 0.0
    for n in range(agents, 0, -1):
        lp += math.log(n * mu / lam)
        logs_below[n - 1] = lp
    logs_queue = [0.0]
    lq = 0.0
    j = 0
    log_eps = math.log(_TAIL_EPS)
    while True:
        j += 1
        ratio = lam / (agents * mu + j * theta)
        lq += math.log(ratio)
        logs_queue.append(lq)
        # Ratios only fall from here on: once below 1 the tail is at most q x r / (1 - r).
        if ratio < 1.0 and lq + math.log(ratio / (1.0 - ratio)) < log_eps:
            break
        if j > _MAX_QUEUE:
            raise ErlangError("overloaded with near-endless patience: the queue has no bound")
    top = max(max(logs_below, default=0.0), max(logs_queue))
    below = [math.exp(x - top) for x in logs_below]
    queue = [math.exp(x - top) for x in logs_queue]
    return below, queue


def _served_within(
    start: list[float], agents: int, mu: float, theta: float, horizon_s: float
) -> float:
    """Mass served within ``horizon_s`` for a tagged caller with ``j`` callers ahead.

    With ``j`` ahead, the caller moves up at rate ``N·mu + j·theta`` (a service ends or someone
    ahead abandons), is served from ``j = 0`` at rate ``N·mu`` and abandons at rate ``theta``.
    """
    if horizon_s <= 0:
        return 0.0
    k = len(start)
    rates = [agents * mu + j * theta for j in range(k)]
    big = rates[-1] + theta
    steps = max(1, math.ceil(big * horizon_s / _MAX_STEP_RATE))
    dt = horizon_s / steps
    x = big * dt
    v = list(start)
    served = 0.0
    stay = [1.0 - (rates[j] + theta) / big for j in range(k)]
    move = [rates[j] / big for j in range(k)]
    for _ in range(steps):
        # Uniformisation over dt: sum over n of Poisson(n; x) times the chain after n jumps.
        weight = math.exp(-x)
        acc_v = [weight * a for a in v]
        acc_s = weight * served
        cur_v, cur_s = v, served
        n = 0
        cumulative = weight
        while cumulative < 1.0 - 1e-13 and n < 10_000:
            n += 1
            new_v = [cur_v[j] * stay[j] + (cur_v[j + 1] * move[j + 1]) for j in range(k - 1)]
            new_v.append(cur_v[k - 1] * stay[k - 1])
            cur_s = cur_s + cur_v[0] * move[0]
            cur_v = new_v
            weight = weight * x / n
            cumulative += weight
            acc_v = [a + weight * b for a, b in zip(acc_v, cur_v, strict=True)]
            acc_s += weight * cur_s
        v, served = acc_v, acc_s
    return served


def erlang_a_metrics(
    agents: int,
    calls_per_hour: float,
    aht_s: float,
    patience_s: float,
    target_s: float = 20.0,
) -> ErlangAResult:
    """Erlang A (exponential patience with mean ``patience_s``) for ``agents`` agents."""
    if agents <= 0:
        raise ErlangError("at least one agent is needed")
    if patience_s <= 0:
        raise ErlangError("patience must be positive")
    load = offered_load(calls_per_hour, aht_s)
    lam = calls_per_hour / 3600.0
    mu = 1.0 / aht_s
    theta = 1.0 / patience_s
    below, queue = _erlang_a_distribution(agents, lam, mu, theta)
    total = sum(below) + sum(queue)
    p_wait = sum(queue) / total
    mean_queue = sum(j * q for j, q in enumerate(queue)) / total
    p_abandon = theta * mean_queue / lam
    p_answered = 1.0 - p_abandon
    # An arrival finding N + j (PASTA) waits with j ahead of it.
    start = [q / total for q in queue]
    served_late = _served_within(start, agents, mu, theta, target_s)
    immediate = 1.0 - p_wait
    answered_within = immediate + served_late
    sl = answered_within / p_answered if p_answered > 0 else 0.0
    mean_wait = mean_queue / lam  # Little's law, over every arrival
    busy = load * p_answered
    return ErlangAResult(
        agents=agents,
        load=load,
        p_wait=p_wait,
        p_abandon=p_abandon,
        service_level=min(1.0, sl),
        answered_within=answered_within,
        mean_wait_s=mean_wait,
        occupancy=min(1.0, busy / agents),
    )


def agents_needed_a(
    calls_per_hour: float,
    aht_s: float,
    patience_s: float,
    service_level: float = 0.8,
    target_s: float = 20.0,
) -> int:
    """Fewest agents who answer ``service_level`` of all calls offered within ``target_s``.

    Staffing counts a caller who abandons as not answered in time (``answered_within``):
    Asterisk's SL leaves abandoned calls out, so a center could meet it by letting callers
    hang up. The service level grows with the agents: an upper bound is found by doubling,
    then the fewest by binary search.
    """
    if not 0 < service_level < 1:
        raise ErlangError("service level must be between 0 and 1")

    def good(n: int) -> bool:
        m = erlang_a_metrics(n, calls_per_hour, aht_s, patience_s, target_s)
        return m.answered_within >= service_level

    high = max(1, math.ceil(offered_load(calls_per_hour, aht_s)))
    while not good(high):
        high *= 2
    low = 1
    while low < high:
        mid = (low + high) // 2
        if good(mid):
            high = mid
        else:
            low = mid + 1
    return low
