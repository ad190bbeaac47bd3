"""Stored rankings (``pair_scores``) and their evaluations (``ranking_quality``), one batch per transaction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from store.workspace import Workspace, query


def put_ranking(
    ws: Workspace,
    run_id: str,
    config: str,
    target: str,
    method: str,
    scores: dict[str, float],
    *,
    higher_is_better: bool,
) -> pd.DataFrame:
    """Rank one method's scores for one target (rank 1 = best in the method's direction; NaN scores unranked,
    last) and store them as one batch in one transaction. Returns the ranking: source, score, rank, method, run_id,
    higher_is_better."""
    frame = pd.DataFrame({"source": list(scores), "score": np.asarray(list(scores.values()), dtype=np.float64)})
    frame["rank"] = frame["score"].rank(ascending=not higher_is_better, method="min").astype("Int64")
    frame = frame.sort_values(["rank", "source"], na_position="last").reset_index(drop=True)
    with ws.transaction() as con:
        for row in frame.itertuples():
            con.execute(
                query("insert_pair_score"),
                {
                    "run_id": run_id,
                    "config_hash": config,
                    "target": target,
                    "source": row.source,
                    "method": method,
                    "score": None if pd.isna(row.score) else float(row.score),
                    "rank": None if pd.isna(row.rank) else int(row.rank),
                    "higher_is_better": higher_is_better,
                },
            )
    return frame.assign(method=method, run_id=run_id, higher_is_better=higher_is_better)


def put_ranking_quality(ws: Workspace, run_id: str, target: str, measured_config: str, rows: list[dict]) -> None:
    """Store one evaluation of a target's rankings (rows: method, ranking_run_id, n_sources, metric, value) in one
    transaction."""
    with ws.transaction() as con:
        for row in rows:
            value = row["value"]
            con.execute(
                query("insert_ranking_quality"),
                {
                    **row,
                    "run_id": run_id,
                    "target": target,
                    "measured_config": measured_config,
                    "value": None if value != value else float(value),
                },
            )
