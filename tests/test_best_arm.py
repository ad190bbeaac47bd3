"""Best-arm identification for `recommend` (`transfer.advisor.best_arm`): the posterior against a hand-worked
conjugate example, the seed-noise update, top-two Thompson sampling, and the procedure on hand-made arms whose
best is known (a helpful source; nothing helps: don't transfer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from transfer.advisor.best_arm import (
    NOISE_PRIOR_DOF,
    GainPosterior,
    answer,
    identify_best,
    top_two_thompson,
)
from transfer.advisor.simulation import Priors, curve, replay_target
from transfer.errors import InputError


def test_posterior_matches_the_hand_worked_conjugate_update():
    """One source, prior δ ~ N(2, 3²), σ = 1; one baseline pull (50) and one source pull (55): z = 5 with error
    variance σ² + σ² = 2, so K = 9 / 11, E δ = 2 + (9/11)·3 and Var δ = 9 − 81/11 = 18/11."""
    posterior = GainPosterior(np.array([2.0]), np.array([3.0]), noise_sd=1.0)
    mean, covariance = posterior.gains()
    assert mean[1] == pytest.approx(2.0) and covariance[1, 1] == pytest.approx(9.0)  # the prior, before any pull
    posterior.observe(1, 55.0)
    assert posterior.gains()[0][1] == pytest.approx(2.0)  # no baseline pull yet: nothing to measure a gain against
    posterior.observe(0, 50.0)
    mean, covariance = posterior.gains()
    assert mean[1] == pytest.approx(2 + 27 / 11) and covariance[1, 1] == pytest.approx(18 / 11)
    assert mean[0] == 0.0 and covariance[0, 0] == 0.0  # the baseline's gain is zero by definition


def test_two_sources_share_the_baseline_and_the_priors_error():
    """Two sources, priors 2 ± 2, σ = 1, the baseline once at 70 and source 1 once at 66 (4 below its prior). The
    update against the hand computation (z = −4, R = 2, P₀ = 4 [[1, ρ], [ρ, 1]]): source 2, never pulled, moves
    by 4ρ·(−6)/6 = −4ρ; with ρ = 0 it keeps its prior."""
    for rho in (0.0, 0.5):
        posterior = GainPosterior(np.array([2.0, 2.0]), np.array([2.0, 2.0]), noise_sd=1.0, correlation=rho)
        posterior.observe(0, 70.0)
        posterior.observe(1, 66.0)
        mean, covariance = posterior.gains()
        assert mean[1] == pytest.approx(2 + 4 / 6 * -6)  # K = 4 / (4 + 2)
        assert mean[2] == pytest.approx(2 - 4 * rho)
        assert covariance[2, 2] == pytest.approx(4 - (4 * rho) ** 2 / 6)
    with pytest.raises(InputError, match="'correlation' parameter of GainPosterior must be in \\[0, 1\\)"):
        GainPosterior(np.zeros(2), np.ones(2), 1.0, correlation=1.0)


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


def hand_matrix(shift: float = 0.0) -> pd.DataFrame:
    """Five seeds of a baseline at 70 (± 0.5 by seed), a good source at 75 and a bad one at 62, plus ``shift`` on
    every source: points, [arm × seed]."""
    wobble = np.array([0.5, -0.5, 0.25, -0.25, 0.0])
    return pd.DataFrame(
        [70 + wobble, 75 + shift - wobble, 62 + shift + wobble], index=["", "good", "bad"], columns=range(5)
    )


def test_replay_scores_every_policy_against_the_held_out_seeds():
    """Know-nothing priors and a zero-run score that prefers the bad source: the score's top-1 loses about 13 points
    of 75; measuring finds the good source; every one of the 10 truth splits is replayed for every policy."""
    priors = Priors(
        gain=pd.Series({"good": 0.0, "bad": 0.0}),
        sd=pd.Series({"good": 5.0, "bad": 5.0}),
        zero_run_score=pd.Series({"good": 0.1, "bad": 0.9}),
        noise_sd=1.0,
    )
    replays = replay_target(hand_matrix(), priors, budgets=(0, 2, 4, 9))
    assert len(replays) == 10 * (2 + 3 * 4) and replays.split.nunique() == 10
    logme = replays[replays.policy == "direct-logme"]
    assert (logme.chosen == "bad").all() and logme.points_lost.to_numpy() == pytest.approx(13.0, abs=1.0)
    assert logme.regret.to_numpy() == pytest.approx(100 * 13 / 75, abs=1.5)
    measured = replays[(replays.policy == "recommend") & (replays.budget == 9)]
    assert (measured.chosen == "good").all() and (measured.points_lost == 0).all() and (measured.runs <= 9).all()
    assert (replays[replays.policy == "one-seed-oracle"].chosen == "good").all()
    verified = replays[(replays.policy == "advisor+verify") & (replays.budget == 4)]
    assert (verified.runs == 3).all() and (verified.chosen == "good").all()
    table = curve(replays).set_index(["policy", "budget"])
    assert table.loc[("recommend", 9), "correct"] == 1.0 and table.loc[("direct-logme", 0), "correct"] == 0.0
    assert table.loc[("recommend", 9), "sure_correct"] == 1.0 and table.loc[("recommend", 9), "sure_answers"] > 0


def test_replay_says_dont_transfer_where_no_source_helps():
    """Every source shifted 8 points down (the good one now 3 below the baseline), priors that expect +2 and share
    half their error: with a few fine-tunes the procedure answers "don't transfer" on every split."""
    priors = Priors(
        gain=pd.Series({"good": 2.0, "bad": 2.0}),
        sd=pd.Series({"good": 2.0, "bad": 2.0}),
        zero_run_score=pd.Series({"good": 0.5, "bad": 0.4}),
        noise_sd=1.0,
        correlation=0.5,
    )
    replays = replay_target(hand_matrix(shift=-8.0), priors, budgets=(0, 6))
    table = curve(replays).set_index(["policy", "budget"])
    assert table.loc[("recommend", 6), "no_help_cases"] == 10
    assert table.loc[("recommend", 6), "dont_transfer_correct"] == 1.0
    assert table.loc[("recommend", 0), "dont_transfer_correct"] == 0.0  # the optimistic prior alone transfers
    with pytest.raises(InputError, match="'values' parameter of replay_target"):
        replay_target(hand_matrix().drop(index=""), priors, budgets=(1,))


def test_the_answer_is_the_highest_expected_gain_with_its_chance():
    """A measured source at +4 ± little and an unmeasured one whose prior says +6 ± 1: the answer is the one of
    higher expected gain, the unmeasured one, with its probability of being the best."""
    rng = np.random.default_rng(0)
    posterior = GainPosterior(np.array([0.0, 6.0]), np.array([3.0, 1.0]), noise_sd=1.0)
    posterior.observe(0, 70.0)
    posterior.observe(1, 74.0)
    best, chance = answer(posterior, rng)
    assert best == 2 and chance == pytest.approx(posterior.p_best(np.random.default_rng(1))[2], abs=0.03)
    assert 0.5 < chance < 1
