"""The experiments' sequential test (recsys/state/sequential.py): its false decisions stay at or below alpha
however often it is read (A/A sequences read after every decision), a fixed-sample z-test read as often does not,
and a real difference is found, in the right direction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.state.sequential import ALPHA, msprt, wilson_interval

DECISIONS = 4_000


def _sequence(seed: int, share: float, control: float, treatment: float, n: int = DECISIONS
              ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` decisions in arrival order: each in treatment with probability ``share``, accepted with its arm's rate."""
    rng = np.random.default_rng(seed)
    arm = rng.random(n) < share
    accepted = rng.random(n) < np.where(arm, treatment, control)
    return arm, accepted


def _z_test_peeking(arm: np.ndarray, accepted: np.ndarray, every: int = 100) -> bool:
    """A fixed-sample two-proportion z-test read every ``every`` decisions until it says "significant": what the
    sequential test replaces."""
    for n in range(every, arm.size + 1, every):
        a, y = arm[:n], accepted[:n]
        n_t, n_c = int(a.sum()), int((~a).sum())
        if min(n_t, n_c) < 30:
            continue
        pooled = y.mean()
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
        if se > 0 and abs(y[a].mean() - y[~a].mean()) / se > 1.959964:
            return True
    return False


@pytest.mark.parametrize(("rate", "share"), [(0.4, 0.5), (0.2, 0.2), (0.05, 0.2), (0.9, 0.5)])
def test_an_aa_test_read_after_every_decision_decides_falsely_at_most_alpha(rate: float, share: float) -> None:
    """200 seeded A/A sequences per setting (800 in all), each read after every one of its 4,000 decisions."""
    runs = 200
    false = sum(msprt(*_sequence(seed, share, rate, rate)).decided for seed in range(runs))
    peeking = sum(_z_test_peeking(*_sequence(seed, share, rate, rate)) for seed in range(runs))
    assert false / runs <= ALPHA, f"{false} of {runs} A/A sequences decided"
    # the same sequences fool a z-test read 40 times far beyond its 5%: why the service uses the sequential test
    assert peeking / runs > 2 * ALPHA, peeking


@pytest.mark.parametrize(("control", "treatment", "share"), [(0.40, 0.48, 0.5), (0.50, 0.42, 0.5),
                                                              (0.30, 0.38, 0.2)])
def test_a_real_difference_is_found_in_its_direction(control: float, treatment: float, share: float) -> None:
    runs = 100
    results = [msprt(*_sequence(1000 + seed, share, control, treatment)) for seed in range(runs)]
    right = sum(r.direction == (1 if treatment > control else -1) for r in results)
    wrong = sum(r.direction == (-1 if treatment > control else 1) for r in results)
    assert right >= 0.9 * runs and wrong == 0, (right, wrong)
    decided = [r for r in results if r.decided]
    covered = sum(r.difference_ci is not None and r.difference_ci[0] <= treatment - control <= r.difference_ci[1]
                  for r in decided)
    assert covered >= 0.95 * len(decided), "the always-valid interval misses the true difference too often"


def test_the_result_depends_on_the_data_not_on_when_it_is_read() -> None:
    arm, accepted = _sequence(7, 0.5, 0.40, 0.50)
    full = msprt(arm, accepted)
    assert full.decided and full.decided_after is not None
    previous = 1.0
    for n in range(100, arm.size + 1, 250):  # read part-way: the p-value only falls, and a decision stays
        result = msprt(arm[:n], accepted[:n])
        assert result.p_value <= previous + 1e-12
        previous = result.p_value
        if n >= full.decided_after:
            assert result.direction == full.direction and result.decided_after == full.decided_after
        else:
            assert not result.decided
    assert msprt(arm, accepted) == full, "the same data give the same answer"


def test_no_decision_before_both_arms_have_enough_decisions() -> None:
    empty = msprt([], [])
    assert empty.p_value == 1.0 and not empty.decided and empty.difference is None and empty.difference_ci is None
    # a large difference on 29 decisions per arm: too few for the normal approximation, so nothing yet
    arm = np.array([True, False] * 29)
    accepted = arm.copy()
    few = msprt(arm, accepted)
    assert not few.decided and few.p_value == 1.0 and few.difference == 1.0
    # every decision of an arm alike (no rejection in treatment): still nothing, however many
    many = msprt(np.array([True, False] * 500), np.array([True, False] * 500))
    assert not many.decided
    with pytest.raises(ValueError):
        msprt([True], [True, False])


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 10)  # type: ignore[misc]
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(50, 100)  # type: ignore[misc]
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    rng = np.random.default_rng(3)  # about 95% coverage at n = 200
    covered = sum(lo <= 0.3 <= hi for lo, hi in (wilson_interval(int(rng.binomial(200, 0.3)), 200)  # type: ignore[misc]
                                                  for _ in range(2000)))
    assert 0.93 <= covered / 2000 <= 0.97
