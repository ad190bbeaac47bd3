"""Flow ``evaluate_rankings``: score every stored ranking of a target against its measured transfer.

Measured: the per-source mean performance of the target's current measurement (``transfer_gains`` through the view
``current_measurements``), with the mean no-transfer baseline; the one-seed oracle reads its per-seed runs (the
seeds every run has). Predicted: each method's newest ranking, oriented so higher = better. Scored by
`transfer.metrics.evaluate_target`, beside three reference rows: ``random`` (the metrics' expectation over
``n_random`` seeded random orders), ``source-prior`` (each source's mean gain on the other measured targets: Choshen
et al. 2022 find much of transfer is the source's general quality) and ``one-seed-oracle`` (rank by one seed's
measured runs, scored against the mean of the other seeds, averaged over the seed: the ceiling that seed noise puts
on any ranker; needs >= 2 seeds). Metrics: `transfer.metrics.ranking_quality`, among them regret@k (% of the best
performance, no transfer included, lost by the best of the top k) and points_lost@k (the same loss in points: what a
user pays); one stored row per (method, metric) in ``ranking_quality``."""

from __future__ import annotations

import pandas as pd
from prefect import flow

from store.errors import MissingResultError
from store.rankings import put_ranking_quality
from store.runs import recorded_run
from store.workspace import Workspace
from transfer.metrics import evaluate_target


@flow(name="evaluate_rankings")
def evaluate_rankings(
    target: str, ks: tuple[int, ...] = (1, 3, 5), n_random: int = 200, seed: int = 0, workspace: str | None = None
) -> pd.DataFrame:
    """Evaluate every stored method ranking of ``target``; returns (and stores) a method × metric table."""
    ws = Workspace(workspace)
    gains = ws.read("latest_transfer_gains", {"target": target})
    if gains.empty:
        raise MissingResultError(
            f"No measured transfer for target {target!r}; run `measure_transfer` (transferscope "
            f"measure {target}) first."
        )
    rankings = ws.read("latest_rankings_all_methods", {"target": target})
    predicted, ranking_runs = {}, {}
    for method, ranking in rankings.groupby("method"):
        sign = 1.0 if ranking.higher_is_better.iloc[0] else -1.0
        predicted[str(method)] = dict(zip(ranking.source, sign * ranking.score, strict=True))
        ranking_runs[str(method)] = ranking.run_id.iloc[0]
    prior = ws.read("source_prior", {"target": target})
    runs = ws.read("primary_transfer_results", {"config_hash": gains.config_hash.iloc[0], "target": target})
    runs = runs.pivot(index="source", columns="seed", values="value").dropna(axis=1)  # the seeds every run has
    rows = evaluate_target(
        predicted,
        dict(zip(gains.source, gains.source_mean, strict=True)),
        float(gains.baseline_mean.iloc[0]),
        runs={s: runs.loc[s].tolist() for s in runs.index},
        prior=dict(zip(prior.source, prior.prior, strict=True)),
        ks=ks,
        n_random=n_random,
        seed=seed,
    )
    rows = [{**row, "ranking_run_id": ranking_runs.get(row["method"])} for row in rows]
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
