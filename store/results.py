"""The read-only results API: stored rankings as pandas DataFrames.

``Results(workspace).recommend_sources(target, k=5, method="direct-logme")`` returns the newest run's ranking of one
method for one target; ``recommendation(target)`` the newest answer of ``recommend``; ``compare_methods(target)``
puts every stored method side by side; ``method_quality()`` scores the rankings against measured transfer;
``stored_subset(pool, targets, method, budget)`` returns a stored training subset; ``selection_quality(pool)`` says
what the subsets were worth when trained on (shares of the full-pool score, paired against random). Nothing here
computes: rankings come from the ``rank_sources`` flow (``transferscope rank TARGET``), answers from
``recommend_source`` (``transferscope recommend TARGET``), subsets from ``select_training_subset`` (``transferscope
select``), their measured worth from ``measure_selection`` (``transferscope measure-selection``).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

import pandas as pd

from store.advice import read_advice
from store.errors import InputError, MissingResultError
from store.recommendations import ARM_COLUMNS, read_recommendation
from store.selections import budget_kind, find_selection, selection_frame, selection_results
from store.workspace import Workspace
from transfer.advisor import BEST_RANKING_METHOD
from transfer.arms import summarise_selection


class Results:
    """Read stored results from a workspace (``None``: ``$TRANSFERSCOPE_WORKSPACE`` or the default folder)."""

    def __init__(self, workspace: str | os.PathLike[str] | Workspace | None = None) -> None:
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)

    def recommend_sources(self, target: str, k: int = 5, method: str = BEST_RANKING_METHOD) -> pd.DataFrame:
        """Top ``k`` sources for ``target`` by ``method``: columns source, score, rank, method, run_id (rank 1 is
        the best, whatever the method's direction). For ``method="advisor"`` (or ``"advisor+verify"``, after
        ``rank --verify``) the columns are source, rank, expected_gain, lower, upper (points over no transfer; NaN
        when the advisor had no measured transfer to learn from and fused its inputs' ranks), measured_gain,
        top_features, method, run_id, and ``frame.attrs`` holds ``dont_transfer`` (even the best source's
        interval lies below zero: fine-tune on the target alone), ``basis`` ('learned' or 'fused'), ``learner``,
        ``training_targets`` and ``level`` (the intervals' nominal coverage; None when fused)."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"The 'k' parameter of recommend_sources must be a positive int. Got {k!r} instead.")
        advised = method in ("advisor", "advisor+verify")
        ranking = (
            read_advice(self.workspace, target, method)
            if advised
            else self.workspace.read("latest_ranking", {"target": target, "method": method})
        )
        if ranking.empty:
            verify = " --verify 2" if method == "advisor+verify" else ""
            raise MissingResultError(
                f"No {method!r} ranking stored for target {target!r}; compute one with "
                f"`transferscope rank {target} --method {method.partition('+')[0]}{verify}` (or flows.rank_sources"
                f"{', flows.advise_sources' if advised else ''})."
            )
        if not advised:
            return ranking.head(k)[["source", "score", "rank", "method", "run_id"]].reset_index(drop=True)
        first = ranking.iloc[0]
        columns = ["source", "rank", "expected_gain", "lower", "upper", "measured_gain", "top_features", "method"]
        top = ranking.head(k)[[*columns, "run_id"]].reset_index(drop=True)
        top.attrs.update(
            dont_transfer=bool(first.dont_transfer),
            basis=first.basis,
            learner=first.learner,
            training_targets=int(first.training_targets),
            level=None if pd.isna(first.level) else float(first.level),
        )
        return top

    def recommendation(self, target: str) -> pd.DataFrame:
        """The newest stored answer of ``recommend`` for ``target``: one row per arm, the answer first (columns
        `store.recommendations.ARM_COLUMNS`: source, '' = no transfer; prior and posterior gain over no transfer in
        points; the target fine-tunes it was measured with; P(best); chosen) and ``attrs``: ``answer``,
        ``dont_transfer``, ``p_best``, ``runs``, ``confidence``, ``stopped``, ``seconds``, ``run_id``."""
        stored = read_recommendation(self.workspace, target)
        if stored.empty:
            raise MissingResultError(
                f"No recommendation stored for target {target!r}; compute one with `transferscope recommend "
                f"{target}` (or ts.recommend)."
            )
        first = stored.iloc[0]
        arms = stored[ARM_COLUMNS].reset_index(drop=True)
        arms.attrs.update(
            answer=first.source, dont_transfer=first.source == "", p_best=float(first.p_best),
            runs=int(stored.pulls.sum()), confidence=float(first.confidence), stopped=first.stopped,
            seconds=float(first.seconds), run_id=first.run_id,
        )  # fmt: skip
        return arms

    def compare_methods(self, target: str) -> pd.DataFrame:
        """Every stored method's newest ranking for ``target`` side by side: one row per source, a ``rank:<method>``
        column (1 = best in that method's direction) and a ``score:<method> (higher|lower is better)`` column per
        method, sorted by the mean rank."""
        rows = self.workspace.read("latest_rankings_all_methods", {"target": target})
        if rows.empty:
            raise MissingResultError(
                f"No rankings stored for target {target!r}; run `transferscope rank {target}` first."
            )
        direction = rows.groupby("method")["higher_is_better"].first()
        wide = rows.pivot(index="source", columns="method", values=["score", "rank"])
        wide.columns = [
            f"score:{method} ({'higher' if direction[method] else 'lower'} is better)"
            if kind == "score"
            else f"rank:{method}"
            for kind, method in wide.columns
        ]
        rank_columns = [c for c in wide.columns if c.startswith("rank:")]
        wide = wide.assign(mean_rank=wide[rank_columns].mean(axis=1)).sort_values("mean_rank")
        return wide.reset_index()

    def near_ties(self, target: str) -> dict[str, list[list[str]]]:
        """Per stored method, the groups of ``target``'s sources its newest ranking cannot tell apart
        (`transfer.metrics.near_ties`: scores within 0.5% of their size); methods without ties are left out."""
        from transfer.metrics import near_ties

        rows = self.workspace.read("latest_rankings_all_methods", {"target": target})
        ties = {m: near_ties(dict(zip(r.source, r.score, strict=True))) for m, r in rows.groupby("method")}
        return {m: groups for m, groups in ties.items() if groups}

    def method_quality(self, target: str | None = None) -> pd.DataFrame:
        """How well each method's ranking predicted measured transfer (the newest evaluation per target), with the
        ``random`` expectation and the ``source-prior`` baseline beside the methods: one row per (target, method),
        one column per metric (`transfer.metrics.ranking_quality`: regret@k, the % of the best performance lost by
        the best of the top k; points_lost@k, the same loss in points; ndcg@k, spearman, ...)."""
        rows = self.workspace.read("latest_ranking_quality")
        if target is not None:
            rows = rows[rows.target == target]
        if rows.empty:
            raise MissingResultError(
                "No ranking-quality evaluation stored"
                + (f" for target {target!r}" if target else "")
                + "; run measure_transfer, then evaluate_rankings."
            )
        return rows.pivot_table(
            index=["target", "method"], columns="metric", values="value", dropna=False
        ).reset_index()

    def stored_subset(
        self, pool: str, targets: str | Sequence[str], method: str = "gio", budget: int | float | None = 0.2
    ) -> pd.DataFrame:
        """The newest stored subset of ``pool`` for ``targets`` by ``method`` at ``budget`` (a float in (0, 1] is a
        fraction of the pool: ``1.0`` the whole pool; an int ≥ 1 a count: ``1`` one example; None the method's own
        stopping rule); it reads, never selects (``transferscope select`` or ``ts.select_subset`` compute one).
        Returns its rows in selection order: rank, example_id, text, text_pair, label, label_index
        (classification) and score; ``frame.attrs`` holds the subset id, run id, method and parameters."""
        names = [targets] if isinstance(targets, str) else list(targets)
        kind = budget_kind(budget)
        row = self.workspace.read(
            "latest_selection",
            {
                "pool": pool,
                "targets": names,
                "method": method,
                "budget_kind": kind,
                "budget": None if budget is None else float(budget),
            },
        )
        if row.empty:
            flags = " ".join(f"--target {shlex.quote(t)}" for t in names)
            budget_flag = "" if budget is None else f" --budget {budget}"
            raise MissingResultError(
                f"No {method!r} subset of pool {pool!r} for targets {names} at budget {budget!r} is stored; compute it "
                f"with `transferscope select {shlex.quote(pool)} {flags} --method {method}{budget_flag}` (or "
                "flows.select_training_subset)."
            )
        return self._subset(row.iloc[0])

    def subset(self, subset_id: str) -> pd.DataFrame:
        """The stored training subset with id ``subset_id`` (what ``select_training_subset`` returned), as
        `stored_subset` returns it."""
        selection = find_selection(self.workspace, subset_id)
        if selection is None:
            raise MissingResultError(
                f"No training subset {subset_id!r} is stored in workspace '{self.workspace.root}'."
            )
        return self._subset(selection)

    def _subset(self, selection: pd.Series) -> pd.DataFrame:
        frame = selection_frame(self.workspace, selection)
        frame.attrs.update(
            subset_id=selection.subset_id,
            run_id=selection.run_id,
            params=selection.params_json,
            method=selection.method,
        )
        return frame

    def selection_quality(self, pool: str | None = None) -> pd.DataFrame:
        """What the subsets of ``pool`` (None: the newest measured pool) were worth: the newest
        ``measure_selection`` of it, summarised per (target, arm, budget) by `transfer.arms.summarise_selection`
        (share of the full-pool score with its seed spread, paired difference to random; target ``"all"``
        averages the targets). ``frame.attrs`` holds the pool and the measurement's config hash."""
        runs = selection_results(self.workspace, pool=pool)
        if runs.empty:
            where = f" of pool {pool!r}" if pool else ""
            raise MissingResultError(
                f"No selection-quality measurement{where} is stored; run `transferscope measure-selection POOL "
                "--target T` (or flows.measure_selection.measure_selection)."
            )
        summary = summarise_selection(runs)
        summary.attrs.update(pool=runs.pool.iloc[0], config_hash=runs.config_hash.iloc[0])
        return summary
