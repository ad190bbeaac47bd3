"""Measured transfer: per-seed fine-tune results (``transfer_results``) and their per-pair gain summaries
(``transfer_gains``), keyed by the measurement config so a resumed grid never repeats a run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from store.workspace import Workspace, query


def put_transfer_result(
    ws: Workspace, config: str, target: str, source: str, seed: int, metrics: dict[str, float], run_id: str
) -> None:
    """Store one fine-tuning run's metrics (``source`` '' = the no-transfer baseline) in one transaction."""
    with ws.transaction() as con:
        for metric, value in metrics.items():
            con.execute(
                query("insert_transfer_result"),
                {
                    "config_hash": config,
                    "target": target,
                    "source": source,
                    "seed": seed,
                    "metric": metric,
                    "value": float(value),
                    "run_id": run_id,
                },
            )


def done_transfer_runs(ws: Workspace, config: str, target: str) -> set[tuple[str, int]]:
    """(source, seed) pairs already measured under this measurement config."""
    rows = ws.read("done_transfer_runs", {"config_hash": config, "target": target})
    return {(r.source, int(r.seed)) for r in rows.itertuples()}


def put_transfer_gains(ws: Workspace, config: str, target: str, gains: pd.DataFrame, run_id: str) -> None:
    """Store per-pair gain summaries (columns as `transfer.groundtruth.GainSummary` plus source, baseline_mean and
    source_mean) in one transaction, replacing earlier summaries of the same config and pair."""
    with ws.transaction() as con:
        for row in gains.itertuples(index=False):
            values = row._asdict()
            con.execute(
                query("upsert_transfer_gain"),
                {
                    **values,
                    "config_hash": config,
                    "target": target,
                    "run_id": run_id,
                    "p_value": None if np.isnan(values["p_value"]) else values["p_value"],
                },
            )
