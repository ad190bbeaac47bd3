"""``python -m bench finetune --quick``: one JSON line comparing `fine_tune` with a Trainer loop, both trained."""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.slow


def test_quick_run_reports_both_contenders_trained(shared_tasks, capsys):
    from bench.finetune import run

    run(quick=True)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert result["bench"] == "finetune" and result["peer"] == "transformers.Trainer" and result["quick"] is True
    assert result["ours"] > 0 and result["peer_value"] > 0
    assert result["ratio"] == pytest.approx(result["ours"] / result["peer_value"])
    assert result["n_examples"] == 64 and result["held_out"] == 64 and result["steps"] == 4
    assert result["recipe"]["length_buckets"] is True and result["recipe"]["max_length"] == 32
    assert result["threads"] >= 1 and {"torch", "transformers", "accelerate"} <= set(result["versions"])
    for side in ("ours", "peer"):
        final, first, accuracy = result["final_loss"][side], result["first_loss"][side], result["accuracy"][side]
        assert math.isfinite(final) and 0 < final < 2 * math.log(2), (side, final)
        assert 0 <= accuracy <= 1
        assert final < first or accuracy > 0.5, (side, first, final, accuracy)
