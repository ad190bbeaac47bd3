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

    def __post_init__(self) -> None:
        # Every field, defaults filled in, as `flows.measure.plan_measure` hashes it: a recipe written in part (the
        # atlas rows carry only the fields they set) must give the same config as the full one.
        for name in ("source_recipe", "target_recipe"):
            object.__setattr__(self, name, complete_recipe(getattr(self, name)))

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


def complete_recipe(fields: dict[str, Any]) -> dict[str, Any]:
    """Every field of the fine-tuning `transfer.finetune.Recipe` given by ``fields`` (the others at their
    defaults), checked."""
    from transfer.finetune import Recipe  # torch: loaded only where a measurement recipe is built

    return Recipe(**fields).as_dict()


def put_transfer_result(
    ws: Workspace,
    config: str,
    target: str,
    source: str,
    seed: int,
    metrics: dict[str, float],
    run_id: str,
    *,
    start_key: str | None = None,
) -> None:
    """Store one fine-tuning run's metrics (``source`` '' = the no-transfer baseline) in one transaction, with
    ``start_key``, what the run started from: the source checkpoint's cache key (`flows.checkpoints.checkpoint_key`),
    or the base model's fingerprint for the baseline. None (runs imported without it, e.g. the committed atlas)
    is never counted as done by `flows.measure.plan_measure`."""
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
                    "start_key": start_key,
                },
            )


def done_transfer_runs(ws: Workspace, config: str, target: str) -> dict[tuple[str, int], str | None]:
    """{(source, seed): the start key it was measured from (None: not recorded)} of the runs stored under this
    measurement config. The config covers the target's side only: a run is current only while its start key is
    the one a plan would start from now (`flows.measure.plan_measure` compares them)."""
    rows = ws.read("done_transfer_runs", {"config_hash": config, "target": target})
    return {(r.source, int(r.seed)): None if pd.isna(r.start_key) else r.start_key for r in rows.itertuples()}


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
