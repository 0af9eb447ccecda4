"""The test that decides an experiment: an always-valid p-value from a mixture sequential probability ratio test
(mSPRT) on the difference of two proportions, after Johari, Koomen, Pekelis and Walsh, "Always valid inference:
continuous monitoring of A/B tests" (Operations Research, 2022).

An experiment's report may be read at any time, as often as anyone likes. A fixed-sample test (a z-test read
until it says "significant") is wrong far more often than its alpha when it is read many times; this one is not:
its p-value is a running minimum over the whole sequence of decisions, in the order they arrived, so it is a
function of the data alone, never of when or how often it was read, and the chance that it ever falls to alpha
when the arms do not differ is at most alpha (Ville's inequality on the mixture likelihood ratio).

With theta the treatment's acceptance rate minus the control's, its estimate ``d`` and that estimate's variance
``V`` (normal approximation), the likelihood ratio of "theta ~ N(0, tau^2)" against "theta = 0" is

    Lambda = sqrt(V / (V + tau^2)) * exp(d^2 tau^2 / (2 V (V + tau^2)))

and the p-value after n decisions is min(1, 1 / Lambda_1, ..., 1 / Lambda_n). ``tau`` (:data:`MIXING_SD`) says
which differences the test is quickest to find: about tau and larger. ``V`` is the pooled estimate (both arms'
rate, as under "no difference"): with each arm's own rate, a rare outcome (5% acceptance) made the test decide
falsely 15 to 20% of the time in simulation; pooled, at most 4% (``tests/core/test_sequential.py``). The
confidence sequence for theta, the set where Lambda(theta) < 1 / alpha intersected over time, uses each arm's own
rate. Nothing is decided before each arm has :data:`MIN_DECIDED` decisions, :data:`MIN_OUTCOMES` of them
accepted and as many not, where the normal approximation starts to hold.

Pure: numpy only, no state, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

#: the error rate the decision keeps, however often it is read
ALPHA: Final[float] = 0.05
#: the mixing distribution's standard deviation: the size of difference in acceptance the test finds quickest
MIXING_SD: Final[float] = 0.05
#: decisions each arm needs before the test may decide (the normal approximation's burn-in)
MIN_DECIDED: Final[int] = 30
#: acceptances, and decisions without one, each arm needs before the test may decide
MIN_OUTCOMES: Final[int] = 5
_Z95: Final[float] = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = _Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); None without trials. A fixed-sample interval:
    it describes one arm, the decision is the sequential test's."""
    if trials <= 0:
        return None
    rate = successes / trials
    z2 = z * z
    centre = (rate + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(rate * (1 - rate) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """What the test says after the decisions it was given."""

    p_value: float  # always valid: the running minimum of 1 / Lambda
    direction: int  # +1 treatment better, -1 treatment worse, 0 no decision
    decided_after: int | None  # decisions (both arms) when p first fell to alpha; None: not yet
    difference: float | None  # treatment's acceptance minus control's, over all decisions; None before both have some
    difference_ci: tuple[float, float] | None  # the always-valid (1 - alpha) confidence sequence, at the end

    @property
    def decided(self) -> bool:
        return self.direction != 0


def msprt(treatment: Sequence[bool] | np.ndarray, accepted: Sequence[bool] | np.ndarray, alpha: float = ALPHA,
          mixing_sd: float = MIXING_SD, min_decided: int = MIN_DECIDED) -> SequentialResult:
    """The test on decisions in the order they arrived: ``treatment[i]`` says the i-th decision's arm,
    ``accepted[i]`` whether a substitute was accepted. Replaying the whole sequence makes the result the same
    whenever it is computed."""
    arm = np.asarray(treatment, dtype=bool)
    outcome = np.asarray(accepted, dtype=bool)
    if arm.shape != outcome.shape or arm.ndim != 1:
        raise ValueError("treatment and accepted must be sequences of the same length")
    if not 0 < alpha < 1 or mixing_sd <= 0 or min_decided < 1:
        raise ValueError("alpha in (0, 1), mixing_sd > 0 and min_decided >= 1")
    n_t = np.cumsum(arm)
    n_c = np.cumsum(~arm)
    s_t = np.cumsum(outcome & arm)
    s_c = np.cumsum(outcome & ~arm)
    ready = ((n_t >= min_decided) & (n_c >= min_decided) & (np.minimum(s_t, n_t - s_t) >= MIN_OUTCOMES)
             & (np.minimum(s_c, n_c - s_c) >= MIN_OUTCOMES))
    difference = float(s_t[-1] / n_t[-1] - s_c[-1] / n_c[-1]) if arm.size and n_t[-1] and n_c[-1] else None
    if not ready.any():
        return SequentialResult(1.0, 0, None, difference, None)
    first = int(np.argmax(ready))
    n_t, n_c, s_t, s_c = n_t[first:], n_c[first:], s_t[first:], s_c[first:]
    theta = s_t / n_t - s_c / n_c
    pooled = (s_t + s_c) / (n_t + n_c)  # never 0 or 1 once ready: each arm has both outcomes
    null_variance = pooled * (1 - pooled) * (1 / n_t + 1 / n_c)
    tau2 = mixing_sd * mixing_sd
    log_ratio = (0.5 * np.log(null_variance / (null_variance + tau2))
                 + theta * theta * tau2 / (2 * null_variance * (null_variance + tau2)))
    p_values = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_ratio)))
    crossed = p_values <= alpha
    decided_at = int(np.argmax(crossed)) if crossed.any() else None
    direction = 0 if decided_at is None else (1 if theta[decided_at] > 0 else -1)
    # the confidence sequence: {theta' : Lambda(theta') < 1/alpha}, intersected over time, with each arm's rate
    rate_t, rate_c = s_t / n_t, s_c / n_c
    variance = rate_t * (1 - rate_t) / n_t + rate_c * (1 - rate_c) / n_c  # > 0 once ready
    half = np.sqrt(2 * variance * (variance + tau2) / tau2
                   * (math.log(1 / alpha) + 0.5 * np.log((variance + tau2) / variance)))
    low = float(np.max(theta - half))
    high = float(np.min(theta + half))
    if low > high:  # the approximation's intervals can drift apart: keep the last estimate's own
        low, high = float(theta[-1] - half[-1]), float(theta[-1] + half[-1])
    return SequentialResult(
        p_value=float(p_values[-1]), direction=direction,
        decided_after=None if decided_at is None else first + decided_at + 1,
        difference=difference, difference_ci=(max(-1.0, low), min(1.0, high)))
