"""Plans cost fine-tuning at the rate measured in the workspace (`store.rates`), or say they use the default."""

from __future__ import annotations

import json

import pytest


def test_plans_cost_fine_tuning_at_the_rate_measured_here(workspace):
    from store.checkpoints import CheckpointKey, checkpoint_path, put_checkpoint
    from store.rates import DEFAULT_SECONDS_PER_EXAMPLE_EPOCH, fine_tune_rate

    fresh = fine_tune_rate(workspace)
    assert fresh.seconds_per_example_epoch == DEFAULT_SECONDS_PER_EXAMPLE_EPOCH
    assert "no fine-tune stored in this workspace yet" in fresh.basis
    # three fine-tunes: 100 examples x 2 epochs in 40 s, 100 x 1 in 30 s, 50 x 2 in 10 s -> 0.2, 0.3, 0.1 s
    for task, examples, epochs, seconds in (("a", 100, 2, 40.0), ("b", 100, 1, 30.0), ("c", 50, 2, 10.0)):
        key = CheckpointKey("m", "fp", task, "h", json.dumps({"epochs": epochs}), 0)
        checkpoint_path(workspace, key).mkdir(parents=True)
        (checkpoint_path(workspace, key) / "weights").write_text("w")
        put_checkpoint(workspace, key, n_examples=examples, steps=1, seconds=seconds)
    rate = fine_tune_rate(workspace)
    assert rate.seconds_per_example_epoch == pytest.approx(0.2) and rate.seconds(1000) == pytest.approx(200.0)
    assert rate.basis == "0.200 s per example-epoch, the median of the 3 newest fine-tunes here"
