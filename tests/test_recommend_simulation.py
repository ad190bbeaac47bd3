"""The recommend simulation bench's own arithmetic (`bench.recommend_simulation`): the simulated no-help target and
the issue's goals read off a curve; the replay itself is tested in tests/test_best_arm.py."""

from __future__ import annotations

import pandas as pd
import pytest

from bench import recommend_simulation as sim


def test_no_help_puts_the_best_source_the_margin_below_the_baseline():
    values = pd.DataFrame([[70.0, 71.0], [75.0, 74.0], [62.0, 64.0]], index=["", "good", "bad"], columns=[0, 1])
    shifted = sim.no_help(values)
    gains = shifted.drop(index="").mean(axis=1) - shifted.loc[""].mean()
    assert gains.max() == pytest.approx(-sim.NO_HELP_MARGIN)
    assert shifted.loc[""].equals(values.loc[""])  # the baseline untouched
    assert (shifted.loc["good"] - shifted.loc["bad"]).equals(values.loc["good"] - values.loc["bad"])  # order kept


def test_goals_read_the_six_run_row_the_oracle_and_the_calibration():
    def row(policy, budget, runs, regret, sure_correct=float("nan"), sure_answers=0, scenario="real", dont=0.0):
        return {
            "policy": policy, "budget": budget, "runs": runs, "regret": regret, "group": "all", "scenario": scenario,
            "sure_correct": sure_correct, "sure_answers": sure_answers, "dont_transfer_correct": dont,
        }  # fmt: skip

    curves = pd.DataFrame(
        [
            row("one-seed-oracle", -2, 18.0, 2.0),
            row("recommend", 2, 2.0, 1.0, 0.8, 10),
            row("recommend", 6, 5.5, 1.5, 0.9, 30),
            row("recommend", 16, 9.0, 0.5, 1.0, 40),
            row("recommend", 16, 9.0, 0.0, scenario="no-help", dont=1.0),
        ]
    )
    goals = sim.goals(curves)
    assert goals["all"]["recommend_regret_at_6_runs"] == 1.5 and goals["all"]["regret_goal_met"]
    assert goals["all"]["p_best_0_9_correct_share"] == pytest.approx((8 + 27 + 40) / 80, abs=1e-3)
    assert goals["all"]["calibration_goal_met"] and goals["no_help"] == {"16": 1.0, "goal_met_at_16": True}
    assert "informative" not in goals  # no informative rows: no claim about them
