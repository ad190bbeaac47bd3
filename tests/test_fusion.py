"""Rank fusion by hand-worked examples."""

from __future__ import annotations

import pytest

from transfer.fusion import fuse_rankings


def test_reciprocal_rank_fusion_by_hand():
    ranks = {"a": {"x": 1, "y": 2, "z": 3}, "b": {"x": 3, "y": 1, "z": 2}}
    fused = fuse_rankings(ranks, k=1)
    # x: 1/2 + 1/4 = 0.75; y: 1/3 + 1/2 = 0.8333; z: 1/4 + 1/3 = 0.5833
    assert fused == pytest.approx({"x": 0.75, "y": 5 / 6, "z": 7 / 12})
    weighted = fuse_rankings(ranks, k=1, weights={"a": 3.0})
    # x: 3/2 + 1/4 = 1.75; y: 3/3 + 1/2 = 1.5; z: 3/4 + 1/3 = 1.0833
    assert max(weighted, key=weighted.get) == "x"


def test_borda_by_hand_and_unranked_sources():
    ranks = {"a": {"x": 1, "y": 2, "z": 3}, "b": {"x": 2, "y": 1, "w": float("nan")}}
    fused = fuse_rankings(ranks, method="borda")
    # a: x 1, y 0.5, z 0; b (n = 3 incl. the unranked w): x (3-2)/2 = 0.5, y (3-1)/2 = 1
    assert fused == pytest.approx({"x": 1.5, "y": 1.5, "z": 0.0, "w": 0.0})


def test_bad_parameters():
    with pytest.raises(ValueError, match="'method' parameter of fuse_rankings must be one of"):
        fuse_rankings({"a": {"x": 1}}, method="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'weights' parameter"):
        fuse_rankings({"a": {"x": 1}}, weights={"b": 1.0})
    with pytest.raises(ValueError, match="at least one method"):
        fuse_rankings({})


def test_fusion_inputs_leave_out_a_source_a_method_could_not_score():
    """A NaN score is stored with no rank (pd.NA): fusion skips it instead of failing on float(<NA>)."""
    import pandas as pd

    from flows.rank import fusion_inputs

    stored = {
        "mmd": pd.DataFrame({"source": ["a", "b", "c"], "rank": pd.array([1, 2, pd.NA], dtype="Int64")}),
        "leep": pd.DataFrame({"source": ["a", "b", "c"], "rank": pd.array([3, 1, 2], dtype="Int64")}),
    }
    ranks = fusion_inputs(stored, ["a", "b", "c"])
    assert ranks == {"mmd": {"a": 1.0, "b": 2.0}, "leep": {"a": 3.0, "b": 1.0, "c": 2.0}}
    assert fusion_inputs(stored, ["a", "c"])["leep"] == {"a": 3.0, "c": 2.0}  # only the pre-filter's survivors
    fused = fuse_rankings(ranks)
    assert max(fused, key=fused.get) == "b" and fused["c"] == pytest.approx(1 / 62)
