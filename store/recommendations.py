"""Stored answers of ``recommend`` (`flows.recommend`): one row per arm (source, or '' for no transfer) of one run,
in the ``recommendations`` table (store/schema/012_recommendations.sql)."""

from __future__ import annotations

import pandas as pd

from store.workspace import Workspace, optional_float, query

ARM_COLUMNS = ["source", "prior_gain", "prior_sd", "pulls", "gain", "gain_sd", "p_best", "chosen"]


def put_recommendation(
    ws: Workspace,
    run_id: str,
    config: str,
    target: str,
    arms: pd.DataFrame,
    *,
    confidence: float,
    stopped: str,
    noise_sd: float,
    correlation: float,
    seconds: float,
) -> None:
    """Store one recommendation (``arms``: `ARM_COLUMNS`, prior_gain and prior_sd NaN for the baseline) as one
    batch in one transaction."""

    with ws.transaction() as con:
        for arm in arms.itertuples():
            con.execute(
                query("insert_recommendation"),
                {
                    "run_id": run_id,
                    "config_hash": config,
                    "target": target,
                    "source": arm.source,
                    "prior_gain": optional_float(arm.prior_gain),
                    "prior_sd": optional_float(arm.prior_sd),
                    "pulls": int(arm.pulls),
                    "gain": float(arm.gain),
                    "gain_sd": float(arm.gain_sd),
                    "p_best": float(arm.p_best),
                    "chosen": bool(arm.chosen),
                    "confidence": float(confidence),
                    "stopped": stopped,
                    "noise_sd": float(noise_sd),
                    "correlation": float(correlation),
                    "seconds": float(seconds),
                },
            )


def read_recommendation(ws: Workspace, target: str) -> pd.DataFrame:
    """The newest stored recommendation for ``target`` (columns of ``latest_recommendation.sql``, the answer
    first); empty when there is none."""
    frame = ws.read("latest_recommendation", {"target": target})
    frame["chosen"] = frame.chosen.astype(bool)
    return frame
