"""``python -m bench selection_diagnosis``: its measures on hand-worked inputs, and its ``--quick`` run end to end
(tiny encoder; what a model learns is not asserted, only what holds for any weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import selection_diagnosis


def test_concentration_and_eta_squared_by_hand():
    # x = s − min s = [0, 0, 0, 0, 4]: the top 20% (one row) holds all the mass; Gini = 2·5·4/(5·4) − 6/5 = 0.8.
    assert selection_diagnosis.concentration(np.array([1.0, 1, 1, 1, 5])) == pytest.approx(
        {"top_mass_share": 1.0, "gini": 0.8}
    )
    assert selection_diagnosis.concentration(np.full(5, 2.0))["gini"] == 0.0
    # Class 0: sources a, a, b, b with scores 0, 2, 4, 6: SS_total 20, between 2·(1−3)² + 2·(5−3)² = 16; class 1 is
    # one source (between 0) with scores 1, 3 (SS_total 2): η² = 16 / 22.
    scores = np.array([0.0, 2, 4, 6, 1, 3])
    groups = np.array(["a", "a", "b", "b", "a", "a"])
    classes = np.array([0, 0, 0, 0, 1, 1])
    assert selection_diagnosis.eta_squared_within(scores, groups, classes) == pytest.approx(16 / 22)


def test_quick_run_reports_the_key_figures(tiny_encoder, capsys):
    result = selection_diagnosis.run(quick=True, model=tiny_encoder)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(result))
    mixed = result["summary"]["mixed"]
    # For binary cross-entropy the unit loss gradient of (x, 1 − y) is minus that of (x, y), whatever the weights.
    assert mixed["sign_identity_error"] < 1e-3
    subsets = mixed["subsets"]
    assert set(subsets) == {"pool", "random", "icons", "icons-stratified", "stratified-unnormalised"}
    for subset in subsets.values():
        assert sum(subset["domain_shares"].values()) == pytest.approx(1.0, abs=1e-3)
        assert 0 <= subset["positive_share"] <= 1 and 0 <= subset["warmup_accuracy"] <= 1
    stratified = subsets["icons-stratified"]
    assert stratified["n"] == subsets["icons"]["n"] == round(selection_diagnosis.TOP * subsets["pool"]["n"])
    # The stratified subset keeps the pool's class shares (to one row); plain ICONS need not.
    assert abs(stratified["positive_share"] - subsets["pool"]["positive_share"]) <= 1 / stratified["n"]
    for target in mixed["targets"].values():
        assert -1 <= target["class_correlation"] <= 1 and 0 <= target["gini"] <= 1
        assert 0 < target["top_mass_share"] <= 1
