"""Flow ``evaluate_rankings``: score every stored ranking of a target against its measured transfer.

Measured: the newest measurement config's per-source mean performance (``transfer_gains``), with the mean
no-transfer baseline. Predicted: each method's newest ranking, oriented so higher = better. Beside the methods,
three reference rows: ``random`` (the metrics' expectation over ``n_random`` seeded random orders),
``source-prior`` (each source's mean gain on the other measured targets: Choshen et al. 2022 find much of transfer
is the source's general quality) and ``one-seed-oracle`` (rank by one seed's measured runs, scored against the mean
of the other seeds, averaged over the seed: the ceiling that seed noise puts on any ranker; needs >= 2 seeds).
Metrics: `transfer.metrics.ranking_quality`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import flow

from store.rankings import put_ranking_quality
from store.runs import recorded_run
from store.workspace import Workspace
from transfer.metrics import one_seed_oracle, ranking_quality


def random_expectation(measured: dict[str, float], baseline: float, ks: tuple[int, ...], n: int, seed: int) -> dict:
    """Mean of each metric over ``n`` seeded random orders of the sources (NaNs ignored)."""
    rng = np.random.default_rng(seed)
    sources = list(measured)
    draws = [
        ranking_quality(
            dict(zip(sources, rng.permutation(len(sources)).astype(float), strict=True)),
            measured,
            baseline=baseline,
            ks=ks,
        )
        for _ in range(n)
    ]
    return pd.DataFrame(draws).mean(skipna=True).to_dict()


@flow(name="evaluate_rankings")
def evaluate_rankings(
    target: str, ks: tuple[int, ...] = (1, 3, 5), n_random: int = 200, seed: int = 0, workspace: str | None = None
) -> pd.DataFrame:
    """Evaluate every stored method ranking of ``target``; returns (and stores) a method × metric table."""
    ws = Workspace(workspace)
    gains = ws.read("latest_transfer_gains", {"target": target})
    if gains.empty:
        raise LookupError(
            f"No measured transfer for target {target!r}; run `measure_transfer` (transferscope "
            f"measure {target}) first."
        )
    measured = dict(zip(gains.source, gains.source_mean, strict=True))
    baseline = float(gains.baseline_mean.iloc[0])
    rankings = ws.read("latest_rankings_all_methods", {"target": target})
    rows: list[dict[str, Any]] = []

    def add(method: str, predicted: dict[str, float], ranking_run_id: str | None) -> None:
        common = {s: v for s, v in predicted.items() if s in measured and v == v}
        if len(common) < 2:
            return
        metrics = ranking_quality(common, {s: measured[s] for s in common}, baseline=baseline, ks=ks)
        rows.extend(
            {"method": method, "ranking_run_id": ranking_run_id, "n_sources": len(common), "metric": m, "value": v}
            for m, v in metrics.items()
        )

    for method, ranking in rankings.groupby("method"):
        sign = 1.0 if ranking.higher_is_better.iloc[0] else -1.0
        add(str(method), dict(zip(ranking.source, sign * ranking.score, strict=True)), ranking.run_id.iloc[0])
    prior = ws.read("source_prior", {"target": target})
    add("source-prior", dict(zip(prior.source, prior.prior, strict=True)), None)
    rows.extend(
        {"method": "random", "ranking_run_id": None, "n_sources": len(measured), "metric": m, "value": v}
        for m, v in random_expectation(measured, baseline, ks, n_random, seed).items()
    )
    runs = ws.read("primary_transfer_results", {"config_hash": gains.config_hash.iloc[0], "target": target})
    runs = runs.pivot(index="source", columns="seed", values="value").dropna(axis=1)
    if runs.shape[1] >= 2 and "" in runs.index:
        per_source = {s: runs.loc[s].tolist() for s in measured if s in runs.index}
        rows.extend(
            {"method": "one-seed-oracle", "ranking_run_id": None, "n_sources": len(per_source), "metric": m, "value": v}
            for m, v in one_seed_oracle(per_source, runs.loc[""].tolist(), ks=ks).items()
        )
    with recorded_run(
        ws,
        "evaluate_rankings",
        {
            "target": target,
            "ks": list(ks),
            "n_random": n_random,
            "seed": seed,
            "measured_config": gains.config_hash.iloc[0],
        },
    ) as run:
        put_ranking_quality(ws, run.run_id, target, gains.config_hash.iloc[0], rows)
    return pd.DataFrame(rows).pivot(index="method", columns="metric", values="value")
