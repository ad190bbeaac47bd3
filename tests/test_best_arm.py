"""Best-arm identification for `recommend` (`transfer.advisor.best_arm`): the posterior against a hand-worked
conjugate example, the seed-noise update, top-two Thompson sampling, and the procedure on hand-made arms whose
best is known (a helpful source; nothing helps: don't transfer)."""

from __future__ import annotations

import numpy as np
import pytest

from transfer.advisor.best_arm import NOISE_PRIOR_DOF, GainPosterior, identify_best, top_two_thompson
from transfer.errors import InputError


def test_posterior_matches_the_hand_worked_conjugate_update():
    """One source, prior δ ~ N(2, 3²), σ = 1; one baseline pull (50) and one source pull (55): with a flat level the
    data say δ = 55 − 50 = 5 with variance 2σ², so δ | data ~ N((2/9 + 5/2) / (1/9 + 1/2), 1 / (1/9 + 1/2))."""
    posterior = GainPosterior(np.array([2.0]), np.array([3.0]), noise_sd=1.0)
    mean, covariance = posterior.gains()
    assert mean[1] == pytest.approx(2.0) and covariance[1, 1] == pytest.approx(9.0)  # the prior, before any pull
    posterior.observe(0, 50.0)
    posterior.observe(1, 55.0)
    mean, covariance = posterior.gains()
    precision = 1 / 9 + 1 / 2
    assert mean[1] == pytest.approx((2 / 9 + 5 / 2) / precision, rel=1e-6)
    assert covariance[1, 1] == pytest.approx(1 / precision, rel=1e-6)
    assert mean[0] == 0.0 and covariance[0, 0] == 0.0  # the baseline's gain is zero by definition


def test_a_source_pulled_without_the_baseline_teaches_only_differences():
    """Two sources pulled, never the baseline: their difference is learned, each gain stays at its prior mean."""
    posterior = GainPosterior(np.array([0.0, 0.0]), np.array([2.0, 2.0]), noise_sd=0.5)
    for _ in range(3):
        posterior.observe(1, 80.0)
        posterior.observe(2, 76.0)
    mean, covariance = posterior.gains()
    assert mean[1] - mean[2] == pytest.approx(4.0, abs=0.3) and mean[1] + mean[2] == pytest.approx(0.0, abs=1e-4)


def test_seed_noise_is_updated_by_the_targets_repeated_pulls():
    posterior = GainPosterior(np.array([0.0]), np.array([1.0]), noise_sd=2.0)
    posterior.observe(0, 50.0)
    assert posterior.noise_sd() == pytest.approx(2.0)  # one pull per arm: no spread of its own yet
    posterior.observe(0, 52.0)  # within-arm sum of squares 2, one degree of freedom
    assert posterior.noise_sd() ** 2 == pytest.approx((NOISE_PRIOR_DOF * 4.0 + 2.0) / (NOISE_PRIOR_DOF + 1))


def test_probability_best_and_top_two_sampling():
    rng = np.random.default_rng(0)
    clear = GainPosterior(np.array([10.0, -10.0]), np.array([0.1, 0.1]), noise_sd=1.0)
    assert clear.p_best(rng)[1] == pytest.approx(1.0)
    tied = GainPosterior(np.array([0.0, 0.0]), np.array([1.0, 1.0]), noise_sd=1.0)
    chances = tied.p_best(rng, draws=20000)
    assert chances.sum() == pytest.approx(1.0) and chances[1] == pytest.approx(chances[2], abs=0.03)
    picks = np.bincount([top_two_thompson(clear, rng) for _ in range(400)], minlength=3)
    assert picks[1] == pytest.approx(200, abs=45)  # the leader about half the time (beta = 0.5)
    assert picks[2] == 0 and picks[0] == 400 - picks[1]  # the challenger is the runner-up, the baseline (gain 0)
    assert top_two_thompson(clear, rng, available=np.array([False, False, True])) == 2
    with pytest.raises(InputError, match="'available' parameter of top_two_thompson"):
        top_two_thompson(clear, rng, available=np.zeros(3, bool))


def arms_of(values: list[float], noise: float, rng: np.random.Generator):
    """A pull function over arms with true mean scores ``values`` (arm 0 = baseline) and Gaussian seed noise."""
    return lambda arm: float(values[arm] + noise * rng.normal())


@pytest.mark.parametrize(
    ("truth", "best"),
    [([70.0, 75.0, 70.0, 68.0], 1), ([70.0, 67.0, 66.0, 64.0], 0)],
    ids=["a-source-helps", "nothing-helps"],
)
def test_identify_best_finds_the_known_best_arm(truth, best):
    """Priors that know nothing (gain 0 ± 5 for every source), seed noise 1.5 points: the procedure stops confident
    on the true best arm well within 30 pulls, the baseline first; on the nothing-helps arms it says don't transfer."""
    found = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        posterior = GainPosterior(np.zeros(3), np.full(3, 5.0), noise_sd=1.5)
        answer = identify_best(posterior, arms_of(truth, 1.5, rng), budget=30, confidence=0.9, rng=rng)
        assert answer.pulls[0] == 0 and answer.stopped == "confident" and answer.p_best >= 0.9
        found.append(answer.best)
        assert answer.gain_mean[best] == pytest.approx(truth[best] - truth[0], abs=3.0)
    assert found == [best] * 5


def test_identify_best_respects_the_budget_and_what_can_be_pulled():
    rng = np.random.default_rng(0)
    posterior = GainPosterior(np.zeros(2), np.full(2, 5.0), noise_sd=3.0)
    left = np.array([1, 1, 1])  # one pull per arm available

    def pull(arm: int) -> float:
        left[arm] -= 1
        return [70.0, 70.5, 69.5][arm]

    answer = identify_best(posterior, pull, budget=10, rng=rng, available=lambda: left > 0)
    assert sorted(answer.pulls) == [0, 1, 2] and answer.stopped == "budget" and (left == 0).all()
    prior_only = identify_best(GainPosterior(np.array([2.0, -1.0]), np.ones(2), 1.0), pull, budget=0, rng=rng)
    assert prior_only.best == 1 and prior_only.pulls == ()
    with pytest.raises(InputError, match="'budget' parameter of identify_best must be an int >= 0. Got -1"):
        identify_best(posterior, pull, budget=-1, rng=rng)
    with pytest.raises(InputError, match="'prior_sd' parameter of GainPosterior"):
        GainPosterior(np.zeros(2), np.array([1.0, np.inf]), 1.0)
