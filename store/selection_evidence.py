"""What measured data says about a selection method against random selection, for ``select``'s plan (issue #31).

A method earns its cost only where it beats random on data it was not tuned on. The evidence, most specific first:

1. **This pool, measured in this workspace** (``transferscope measure-selection POOL``): the newest measurement of
   the pool, when it compares the method's arm with random;
2. **the held-out pools of the committed benchmark** (``python -m bench selection_generalisation``, complete or
   partial): the average over its pools ("all held-out"), and on how many pools the method beat random.

Either is read at the measured budget nearest the request's (20% for a method's own stopping rule). The comparison
is `transfer.arms.random_interval`'s: the paired difference to random in points of the primary metric, with its 95%
t-interval over the seeds both arms have; the method *beats random* when the interval's lower end is above 0.
Otherwise the plan says that random is as good on the measured data, and cheap. Only the arm a request names is
matched: a method run with other parameters than the measured arms' has no evidence. Read-only; it never fails a
plan (a measurement it cannot summarise is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from store.advice import SHIPPED_ATLAS
from store.benchmarks import committed_selection_generalisation
from store.selections import selection_results
from store.workspace import Workspace
from transfer.arms import ALL_POOLS, ALL_TARGETS, random_interval, summarise_selection
from transfer.errors import InputError

DEFAULT_FRACTION = 0.2  # the budget read for a method's own stopping rule (GIO's): the benchmarks' headline budget


@dataclass(frozen=True)
class SelectionEvidence:
    """The method's measured worth against random: ``basis`` ``"this pool"``, ``"held-out pools"`` or ``"none"``;
    ``budget`` the measured fraction read; ``points`` the mean paired difference to random (points of the primary
    metric) with its 95% interval ``low``..``high`` over ``seeds`` seeds; ``pools_beaten`` of ``pools`` held-out
    pools (None for this pool); ``partial`` when the benchmark's grid is not complete; ``message`` says it all."""

    arm: str
    basis: str
    budget: float | None
    points: float | None
    low: float | None
    high: float | None
    seeds: int
    beats_random: bool
    pools_beaten: int | None
    pools: int | None
    partial: bool
    message: str


def selection_evidence(
    ws: Workspace,
    pool: str,
    arms: tuple[str, ...],
    fraction: float | None,
    spec: dict,
    folder: Path = SHIPPED_ATLAS,
) -> SelectionEvidence:
    """The evidence for the first of ``arms`` (the request's arm names, most specific first, e.g. ``("vog-
    prune_easiest", "vog")``) found: this pool's measurement in ``ws``, else the committed held-out pools in
    ``folder``; ``fraction``: the request's budget as a fraction of the pool (None: the method's own rule);
    ``spec``: the request's arm as `flows.measure_selection` takes it ({"method": ..., "params": ...}), for the
    advice on how to measure it."""
    wanted = DEFAULT_FRACTION if fraction is None else fraction
    runs = selection_results(ws, pool=pool)
    try:
        summary = random_interval(summarise_selection(runs)) if set(arms) & set(runs.arm) else None
    except InputError:  # e.g. a measurement without its full-pool runs: no share, no summary
        summary = None
    if summary is not None:
        compared = summary[(summary.target == ALL_TARGETS) & summary.vs_random_points.notna()]
        measured = [arm for arm in arms if arm in set(compared.arm)]
        if measured:
            row = _nearest(compared[compared.arm == measured[0]], wanted)
            return _evidence(measured[0], "this pool", row, None, None, False)
    committed = committed_selection_generalisation(folder)
    if committed is not None:
        table, meta = committed
        found = [arm for arm in arms if arm in set(table.arm)]
        if found:
            rows = table[table.arm == found[0]]
            row = _nearest(rows, wanted)
            per_pool = rows[(rows.pool != ALL_POOLS) & (rows.budget == row.budget)]
            overall = rows[(rows.pool == ALL_POOLS) & (rows.budget == row.budget)]
            headline = overall.iloc[0] if len(overall) else row
            beaten = int(per_pool.beats_random.sum())
            return _evidence(found[0], "held-out pools", headline, beaten, len(per_pool), not meta["complete"])
    method, params = spec["method"], spec.get("params") or {}
    how = (
        f"`transferscope measure-selection {pool} --target T --method {method} --method random`"
        if not params
        else f"`ts.measure_selection(ws, {pool!r}, [T], arms={{{arms[0]!r}: {spec!r}, 'random': {{'method': "
        "'random'}})`"
    )
    message = (
        f"No measurement compares {arms[0]} with random on this pool or on the benchmark's held-out pools. Random "
        f"selection is a legitimate, cheap answer (--method random); to check on your pool first: {how}."
    )
    return SelectionEvidence(arms[0], "none", None, None, None, None, 0, False, None, None, False, message)


def _nearest(rows: pd.DataFrame, fraction: float) -> pd.Series:
    """The row at the measured budget nearest ``fraction`` (the larger on a tie, to 1e-9)."""
    distance = (rows.budget - fraction).abs().round(9)
    return rows.assign(distance=distance).sort_values(["distance", "budget"], ascending=[True, False]).iloc[0]


def _evidence(
    arm: str, basis: str, row: pd.Series, beaten: int | None, pools: int | None, partial: bool
) -> SelectionEvidence:
    seeds = int(row.vs_random_n) if "vs_random_n" in row else int(row.n_seeds)
    points = float(row.vs_random_points)
    low, high = (None, None) if pd.isna(row.ci95_low) else (float(row.ci95_low), float(row.ci95_high))
    beats = bool(row.beats_random)
    where = "on this pool (measured in this workspace)" if basis == "this pool" else "on the benchmark's held-out pools"
    interval = f"95% interval {low:+.1f} to {high:+.1f}" if low is not None else "one seed: no interval"
    pooled = f"; beat random on {beaten} of {pools} pools" if pools else ""
    unfinished = "; partial benchmark, not every seed measured yet" if partial else ""
    measured = (
        f"{arm} vs random {where} at {row.budget:.0%}: {points:+.1f} points ({interval}, {seeds} seeds{pooled}"
        f"{unfinished})."
    )
    if beats:
        message = f"{measured} It beat random there."
    else:
        message = (
            f"{measured} Not shown to beat random on measured data: random selection is as good there, and cheap "
            f"(--method random). Check on your own pool with `transferscope measure-selection`."
        )
    return SelectionEvidence(
        arm, basis, float(row.budget), points, low, high, seeds, beats, beaten, pools, partial, message
    )
