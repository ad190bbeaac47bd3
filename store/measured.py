"""Measured transfer: per-seed fine-tune results (``transfer_results``) and their per-pair gain summaries
(``transfer_gains``), keyed by the measurement config so a resumed grid never repeats a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from store.runs import config_hash
from store.workspace import Workspace, query


@dataclass(frozen=True)
class MeasurementRecipe:
    """What a measured-transfer number depends on besides the target's data: the encoder, the source's and the
    target's fine-tuning recipes (dicts of `transfer.finetune.Recipe` fields) and the cap on held-out rows. Runs
    are stored under `config` of this recipe and the target's content hash, so two numbers compare exactly when
    their configs are equal."""

    model: str
    source_recipe: dict[str, Any]
    target_recipe: dict[str, Any]
    max_test: int

    def setup(self, target_content: str) -> dict[str, Any]:
        """The measurement setup `flows.measure.plan_measure` records and hashes."""
        return {
            "model": self.model,
            "source_recipe": self.source_recipe,
            "target_recipe": self.target_recipe,
            "max_test": self.max_test,
            "target_content": target_content,
        }

    def config(self, target_content: str) -> str:
        """The config hash a target with content hash ``target_content`` is measured under with this recipe."""
        return config_hash(self.setup(target_content))


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
