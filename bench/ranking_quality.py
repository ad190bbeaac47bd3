"""``python -m bench ranking_quality``: how well each ranking method predicts measured intermediate-task transfer,
judged on the transfer atlas (`bench.transfer_atlas`, committed as ``reports/results/transfer_atlas.parquet``).

For every atlas target whose grid is complete (every source, every seed: the v1 grid's 5, the v2 grid's 3;
`atlas_grid`): the atlas runs are put into the atlas
workspace (so the product's flows read them; nothing is measured again) and summarised over the seeds; every
method ranks the target's atlas sources (`rank_sources`, the atlas's source recipe and seed 0, so the checkpoints
of measured transfer are reused by direct LogME and LEEP); `evaluate_rankings` scores each method and the reference
rows (random, source prior, one-seed oracle). The table gives regret@1/3/5 (% of the best performance, no transfer
included, lost by the best of the top k), points lost@1/3/5 (the same loss in points), NDCG@5 and Spearman per
method as the mean and std over targets, the paired difference of each method to the best single method, and, for
the six targets shared with TaskWeb (Kim et al. 2023), each method's Spearman against TaskWeb's released transfer scores
(`taskweb_score`) over the other five shared tasks: an external check that no one here measured.

Resumable: rankings, ESMs and checkpoints are cached in the workspace. Writes ``reports/results/
ranking_quality.{json,csv}`` over the atlas targets complete so far (the JSON lists them and says whether the atlas
is complete), the per-pair scores of every method (``atlas_method_scores.parquet``, the features the advisor learns
from) and the tasks' descriptors (``atlas_tasks.csv``). ``--quick``: the quick atlas, two cheap methods (LEEP on a
seeded sample of the target's texts, `QUICK_SAMPLES`), nothing written. ``--stage learned``: only the learned rows
(advisor, fusion) are evaluated again, from the rankings and evaluations the last full run stored in the atlas
workspace (and its committed TaskWeb check): minutes instead of the full run's hour, after a change to the advisor.
``--stage new``: ranks only the complete targets that the committed method scores lack (a v2 target whose grid
just finished), adds their scores to ``atlas_method_scores.parquet``, then recomputes every row from the committed
files like ``--stage committed``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bench import transfer_atlas
from bench.common import SHARED_TASKS, check_targets
from transfer.advisor import DEFAULT_INPUTS

if TYPE_CHECKING:
    from store.workspace import Workspace

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "results"
TASKWEB = SHARED_TASKS.parent / "taskweb" / "taskweb_overlap.csv"
METHODS = DEFAULT_INPUTS  # every ranking method but OTDD, which needs class labels on both sides (regression here)
QUICK_METHODS = ("centroid-cosine", "leep")
QUICK_SAMPLES: dict[str, Any] = {"max_target_examples": 200}  # quick: LEEP reads 200 target texts, not all 800
REFERENCES = ("one-seed-oracle", "source-prior", "random")
LEARNED = (
    "advisor", "advisor+verify@2", "advisor+verify@3", "advisor-cheap-inputs", "advisor-cheap-inputs+verify@2",
    "advisor-cheap-inputs+verify@3", "fused-rrf",
)  # fmt: skip
METRICS = (
    "regret@1", "regret@3", "regret@5", "points_lost@1", "points_lost@3", "points_lost@5", "ndcg@5", "spearman",
)  # fmt: skip
DEFINITIONS = {  # written into the JSON beside the numbers
    "regret@k": "% of the best performance (the best mean score over the sources and no transfer; a score, not a "
    "gain) lost by taking the best of the method's top k (Poth et al. 2021); lower is better",
    "points_lost@k": "the same loss in points of the target's primary metric (best mean score minus the best of the "
    "top k's, x100): what following the ranking costs; lower is better",
    "regret@1_removed": "regret@1 (% of the best performance) that verifying removes from its advisor, mean over "
    "targets",
}


Grid = list[tuple[str, list[str], tuple[int, ...]]]  # (target, its sources, its seeds)


def atlas_grid() -> Grid:
    """The atlas targets under `bench.transfer_atlas.ATLAS_RECIPE`: the v1 grid's (every atlas source but the
    target x `SEEDS`) and the v2 grid's (`passed_pilots` under that recipe x `V2_SEEDS`). A pilot passed under
    another target recipe (``medium+t1000``) is a different atlas target of the same task, and the workspace keys
    measured transfer by task, so it is not ranked here."""
    sources = transfer_atlas.SOURCES
    v2 = [t for name, t in transfer_atlas.passed_pilots() if name == transfer_atlas.ATLAS_RECIPE]
    return [
        *((t, [s for s in sources if s != t], transfer_atlas.SEEDS) for t in transfer_atlas.TARGETS),
        *((t, [s for s in sources if s != t], transfer_atlas.V2_SEEDS) for t in v2),
    ]


def complete_targets(atlas: pd.DataFrame, grid: Grid) -> list[str]:
    """Targets of ``grid`` whose runs (every source and the baseline, each of the target's seeds) are all in the
    atlas."""
    have = set(zip(atlas.target, atlas.source, atlas.seed.astype(int), strict=True))
    return [t for t, sources, seeds in grid if all((t, s, seed) in have for s in ["", *sources] for seed in seeds)]


def import_runs(ws: Workspace, atlas: pd.DataFrame, target: str, sources: list[str], seeds: tuple[int, ...]) -> None:
    """Store the atlas runs of ``target`` in the workspace (those it lacks) and summarise them over ``seeds``. Runs
    are matched by config only: the atlas records no start keys, so they are stored without one (a later
    `measure_transfer` of the same runs measures them again, `store.measured.put_transfer_result`)."""
    from flows.measure import summarise
    from store.measured import done_transfer_runs, put_transfer_result

    rows = atlas[atlas.target == target]
    (config,) = rows.config_hash.unique()
    done = done_transfer_runs(ws, config, target)
    for row in rows.itertuples():
        if (row.source, int(row.seed)) not in done:
            metrics = {**json.loads(row.metrics), "primary": row.value}
            put_transfer_result(ws, config, target, row.source, int(row.seed), metrics, "atlas")
    summarise(ws, config, target, sources, seeds, "atlas")


def taskweb_spearman(ws: Workspace, targets: list[str], methods: tuple[str, ...], recipe: dict) -> pd.DataFrame:
    """Per (target, method): Spearman of the method's scores (oriented, higher = better) with TaskWeb's
    ``taskweb_score`` over the other shared tasks as sources, each fine-tuned under ``recipe`` (the atlas's)."""
    from scipy import stats

    from flows.rank import RankRequest, rank_sources

    taskweb = pd.read_csv(TASKWEB)
    rows = []
    for target in targets:
        truth = taskweb[taskweb.target == target].set_index("source").taskweb_score
        ranking = pd.DataFrame(
            rank_sources(RankRequest(target, tuple(truth.index), methods, recipe, device="cpu", workspace=str(ws.root)))
        )
        for method, frame in ranking.groupby("method"):
            oriented = frame.set_index("source").score * (1 if frame.higher_is_better.iloc[0] else -1)
            rho = stats.spearmanr(oriented.loc[truth.index], truth).statistic
            rows.append({"target": target, "method": method, "taskweb_spearman": float(rho)})
    return pd.DataFrame(rows)


def learned_rows(scores: pd.DataFrame, atlas: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """Per target (wide, like `Results.method_quality`): the advisor as `rank --method advisor` runs it (its default
    inputs, `transfer.advisor.DEFAULT_INPUTS`: every method), ``advisor-cheap-inputs`` (the checkpoint-free methods
    only, `transfer.advisor.CHEAP_INPUTS`) and their +verify@K rows, evaluated strictly leave-one-target-out
    (`transfer.advisor.leave_one_target_out`), with the calibration columns, and ``fused-rrf`` (reciprocal-rank
    fusion of every single method's ranks) scored like the methods."""
    from transfer.advisor import CHEAP_INPUTS, describe_tasks, leave_one_target_out
    from transfer.fusion import fuse_rankings
    from transfer.metrics import ranking_quality

    runs = atlas[["target", "source", "seed", "value"]]
    described = describe_tasks(tasks)
    rows = [
        leave_one_target_out(scores[scores.method.isin(DEFAULT_INPUTS)], runs, described, name="advisor"),
        leave_one_target_out(scores[scores.method.isin(CHEAP_INPUTS)], runs, described, name="advisor-cheap-inputs"),
    ]
    fused = []
    for target, frame in scores.groupby("target"):
        ranks = {m: dict(zip(r.source, r["rank"].astype(float), strict=True)) for m, r in frame.groupby("method")}
        runs = atlas[atlas.target == target]
        measured = runs[runs.source != ""].groupby("source").value.mean().to_dict()
        baseline = float(runs[runs.source == ""].value.mean())
        quality = ranking_quality(fuse_rankings(ranks), measured, baseline=baseline)
        fused += [{"target": target, "method": "fused-rrf", "metric": m, "value": v} for m, v in quality.items()]
    long = pd.concat([*rows, pd.DataFrame(fused)], ignore_index=True)
    return long.pivot_table(index=["target", "method"], columns="metric", values="value", dropna=False).reset_index()


def verification_value(quality: pd.DataFrame, seconds_per_run: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per ``<advisor>+verify@K`` row: the regret@1 it removes from its advisor (mean over targets, in regret@1's
    unit: % of the best performance), and per device in ``seconds_per_run`` (the atlas's median wall seconds per run
    there) the minutes it costs (K + 1 target fine-tunes; the sources' checkpoints are cached) and the regret removed
    per minute."""
    regret = quality.pivot_table(index="target", columns="method", values="regret@1")
    out = {}
    for method in [m for m in regret.columns if "+verify@" in m]:
        advisor, _, k = method.partition("+verify@")
        removed = float((regret[advisor] - regret[method]).mean())
        out[method] = {"regret@1_removed": round(removed, 3)}
        for device, seconds in seconds_per_run.items():
            minutes = (int(k) + 1) * seconds / 60
            out[method][f"{device}_minutes"] = round(minutes, 2)
            out[method][f"regret@1_removed_per_{device}_minute"] = round(removed / minutes, 3)
    return out


def run_seconds(atlas: pd.DataFrame) -> dict[str, float]:
    """The atlas's median wall seconds per run: ``cpu`` (2 cores here) and ``gpu`` (the lent H200, timed while 6-7
    processes shared it: one run alone is somewhat faster), where measured."""
    on_gpu = atlas.device != "cpu"
    medians = {"cpu": atlas[~on_gpu].seconds.median(), "gpu": atlas[on_gpu].seconds.median()}
    return {device: round(float(seconds), 2) for device, seconds in medians.items() if seconds == seconds}


def summary_table(quality: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean and std over targets of each metric, and the paired (per-target) difference of regret@1,
    points lost@1 and NDCG@5 to the best single method by mean NDCG@5 (none among the references and learned rows):
    its mean, std and the half-width of its 95% t-interval over targets (t_{0.975, n−1}·sd/√n)."""
    from scipy import stats

    metrics = [m for m in (*METRICS, "coverage", "width") if m in quality.columns]
    table = quality.groupby("method")[metrics].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    singles = table.drop(index=[r for r in (*REFERENCES, *LEARNED) if r in table.index])
    best = str(singles["ndcg@5_mean"].idxmax()) if len(singles) else None
    paired = [m for m in ("regret@1", "points_lost@1", "ndcg@5") if m in quality.columns]
    wide = {m: quality.pivot_table(index="target", columns="method", values=m) for m in paired}
    for metric, frame in wide.items() if best else ():
        difference = frame.sub(frame[best], axis=0)
        n = difference.notna().sum()
        table[f"{metric}_minus_best_mean"] = difference.mean()
        table[f"{metric}_minus_best_std"] = difference.std()
        half = stats.t.ppf(0.975, (n - 1).clip(lower=1)) * difference.std() / np.sqrt(n)
        table[f"{metric}_minus_best_ci95"] = half.where(n >= 2)
    table["n_targets"] = quality.groupby("method").target.nunique()
    table.attrs["best_single_method"] = best
    return table


def committed_quality(atlas: pd.DataFrame, scores: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """The single methods' and reference rows' quality per target (wide, like `Results.method_quality`), from the
    committed atlas runs and method scores alone (`transfer.metrics.evaluate_target`, as `evaluate_rankings`
    scores them): minutes, no workspace. The source prior of a target is each source's mean gain over the other
    ``targets``."""
    from transfer.advisor import mean_gains
    from transfer.metrics import evaluate_target

    gains = mean_gains(atlas[atlas.target.isin(targets)])
    rows = []
    for target in targets:
        runs = atlas[atlas.target == target].pivot_table(index="source", columns="seed", values="value").dropna(axis=1)
        frame = scores[scores.target == target]
        predicted = {
            str(m): dict(zip(f.source, f.score * (1.0 if f.higher_is_better.iloc[0] else -1.0), strict=True))
            for m, f in frame.groupby("method")
        }
        prior = gains[gains.target != target].groupby("source").gain.mean().to_dict()
        means = runs.mean(axis=1)
        per_seed = {s: runs.loc[s].tolist() for s in runs.index}
        rows += [
            {"target": target, **row}
            for row in evaluate_target(
                predicted, means.drop("").to_dict(), float(means[""]), runs=per_seed, prior=prior
            )
        ]
    long = pd.DataFrame(rows)
    return long.pivot_table(index=["target", "method"], columns="metric", values="value", dropna=False).reset_index()


def run(quick: bool = False, stage: str = "all") -> None:
    """``stage``: ``all`` (rank every target with every method, evaluate, learn), ``learned`` (the learned rows
    again, from the rankings the last full run stored in the atlas workspace), ``committed`` (every row again
    from the committed atlas, method scores and TaskWeb check: no workspace, no ranking) or ``new`` (rank only the
    complete targets the committed method scores lack, add their scores, then ``committed``)."""
    if stage == "committed":
        run_committed()
        return
    from flows import evaluate_rankings
    from store.catalog import put_task
    from store.results import Results
    from store.task_files import load_task_dir
    from store.workspace import Workspace

    methods = QUICK_METHODS if quick else METHODS
    samples = QUICK_SAMPLES if quick else {}
    if quick:
        transfer_atlas.run(quick=True)  # the quick atlas, in its own workspace
        quick_seeds = tuple(transfer_atlas.QUICK["seeds"])
        grid = [(t, list(transfer_atlas.QUICK["sources"]), quick_seeds) for t in transfer_atlas.QUICK["targets"]]
        recipe = transfer_atlas.QUICK["recipe"]
        workspace = transfer_atlas.WORKSPACE / "quick"
        atlas = transfer_atlas.read_atlas(workspace / "transfer_atlas.parquet")
    else:
        grid = atlas_grid()
        recipe = transfer_atlas.SOURCE_RECIPES[transfer_atlas.ATLAS_RECIPE]
        workspace = transfer_atlas.WORKSPACE / "full"
        atlas = transfer_atlas.read_atlas()
        atlas = atlas[atlas.recipe == transfer_atlas.ATLAS_RECIPE]
    check_targets("ranking_quality", [t for t, _, _ in grid])
    ws = Workspace(workspace)
    taskweb_tasks = sorted(set(pd.read_csv(TASKWEB).target)) if not quick else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted({t for t, _, _ in grid} | {s for _, s, _ in grid for s in s} | set(taskweb_tasks)):
            put_task(ws, load_task_dir(SHARED_TASKS / name))
    targets = complete_targets(atlas, grid)
    started = time.perf_counter()
    if stage == "new":
        add_new_targets(ws, atlas, grid, targets, recipe, methods, samples)
        run_committed()
        return
    if stage == "learned":  # the rankings, their evaluations and the TaskWeb check of the last full run stand
        external = pd.DataFrame(
            json.loads((RESULTS / "ranking_quality.json").read_text())["taskweb"] if not quick else []
        )
    else:
        external = taskweb_spearman(ws, [t for t in targets if t in taskweb_tasks], methods, recipe)
        for target, sources, seeds in grid:
            if target in targets:
                rank_target(ws, atlas, target, sources, seeds, methods, recipe, samples)
                evaluate_rankings(target=target, workspace=str(ws.root))
    quality = Results(ws).method_quality()
    quality = quality[quality.target.isin(targets)]
    scores = stored_scores(ws, targets)
    tasks = ws.read("list_tasks").set_index("name")
    result, table = summarise(quality, scores, atlas[atlas.target.isin(targets)], tasks, external, targets)
    result.update(
        quick=quick,
        complete=len(targets) == len(grid),
        targets_missing=[t for t, _, _ in grid if t not in targets],
        methods=list(methods),
        atlas_recipe=recipe,
        seconds=round(time.perf_counter() - started, 1),
    )
    if not quick and targets:
        write_results(result, table, scores.assign(recipe=transfer_atlas.ATLAS_RECIPE), tasks.reset_index())
    print(json.dumps(result))


def rank_target(
    ws: Workspace,
    atlas: pd.DataFrame,
    target: str,
    sources: list[str],
    seeds: tuple[int, ...],
    methods: tuple[str, ...],
    recipe: dict,
    samples: dict[str, Any],
) -> None:
    """Import ``target``'s atlas runs into ``ws`` (`import_runs`) and rank its ``sources`` with every method."""
    from flows.rank import RankRequest, rank_sources

    import_runs(ws, atlas, target, sources, seeds)
    rank_sources(RankRequest(target, tuple(sources), methods, recipe, device="cpu", workspace=str(ws.root), **samples))


def stored_scores(ws: Workspace, targets: list[str]) -> pd.DataFrame:
    """Every method's latest scores of each target's sources in ``ws``, with a ``target`` column."""
    frames = [ws.read("latest_rankings_all_methods", {"target": t}).assign(target=t) for t in targets]
    return pd.concat(frames or [pd.DataFrame()])


def add_new_targets(
    ws: Workspace,
    atlas: pd.DataFrame,
    grid: Grid,
    targets: list[str],
    recipe: dict,
    methods: tuple[str, ...],
    samples: dict[str, Any],
) -> None:
    """Rank the complete ``targets`` that the committed method scores (``atlas_method_scores.parquet``) lack, with
    ``methods`` in ``ws`` (`rank_target`), and write their scores beside the committed ones and every task's
    descriptors (`write_results`, each file to a temporary file, then renamed); committed rows are kept as they
    are."""
    from store.advice import ATLAS_SCORES

    committed = pd.read_parquet(RESULTS / ATLAS_SCORES)
    new = [(t, s, seeds) for t, s, seeds in grid if t in targets and t not in set(committed.target)]
    for target, sources, seeds in new:
        rank_target(ws, atlas, target, sources, seeds, methods, recipe, samples)
    if new:
        added = stored_scores(ws, [t for t, _, _ in new]).assign(recipe=transfer_atlas.ATLAS_RECIPE)
        write_results(scores=pd.concat([committed, added], ignore_index=True), tasks=ws.read("list_tasks"))


def run_committed() -> None:
    """Every row of the table again from the committed files (`run`, stage ``committed``): the complete atlas targets
    (`atlas_grid`) that the committed method scores cover."""
    from store.advice import ATLAS_SCORES, ATLAS_TASKS

    started = time.perf_counter()
    previous = json.loads((RESULTS / "ranking_quality.json").read_text())
    atlas = transfer_atlas.read_atlas()
    atlas = atlas[atlas.recipe == transfer_atlas.ATLAS_RECIPE]
    scores = pd.read_parquet(RESULTS / ATLAS_SCORES)
    grid = atlas_grid()
    complete = complete_targets(atlas, grid)
    targets = [t for t in complete if t in set(scores.target)]
    check_targets("ranking_quality", targets)
    atlas = atlas[atlas.target.isin(targets)]
    quality = committed_quality(atlas, scores, targets)
    tasks = pd.read_csv(RESULTS / ATLAS_TASKS, index_col="name")
    result, table = summarise(quality, scores, atlas, tasks, pd.DataFrame(previous["taskweb"]), targets)
    result.update(
        {k: previous[k] for k in ("quick", "methods", "atlas_recipe")},
        complete=len(targets) == len(grid),
        targets_missing=[t for t, _, _ in grid if t not in targets],
        stage="committed",
        seconds=round(time.perf_counter() - started, 1),
    )
    write_results(result, table)
    print(json.dumps(result))


def summarise(
    quality: pd.DataFrame,
    scores: pd.DataFrame,
    atlas: pd.DataFrame,
    tasks: pd.DataFrame,
    external: pd.DataFrame,
    targets: list[str],
) -> tuple[dict, pd.DataFrame]:
    """The learned rows added to ``quality`` (with ≥ 4 targets: the advisor learns from the other targets), the
    summary table over every target and over the informative ones (`bench.atlas_targets`), the TaskWeb check, the
    verification value: the result dict (without its run details) and the all-targets table."""
    if len(targets) >= 4:
        quality = pd.concat([quality, learned_rows(scores, atlas, tasks)], ignore_index=True)
    informative = [t for t in informative_targets() if t in targets]
    table = summary_table(quality) if len(quality) else pd.DataFrame()
    if len(external):
        table["taskweb_spearman_mean"] = external.groupby("method").taskweb_spearman.mean()
        table["taskweb_spearman_std"] = external.groupby("method").taskweb_spearman.std()
    focused = quality[quality.target.isin(informative)]
    headline = summary_table(focused) if len(informative) >= 2 else pd.DataFrame()

    def records(frame: pd.DataFrame) -> list:
        return json.loads(frame.reset_index().to_json(orient="records")) if len(frame) else []

    result = {
        "bench": "ranking_quality",
        "targets": targets,
        "informative_targets": informative,
        "best_single_method": table.attrs.get("best_single_method"),
        "best_single_method_informative": headline.attrs.get("best_single_method"),
        "definitions": DEFINITIONS,
        "table": records(table),
        "table_informative": records(headline),
        "per_target": json.loads(quality.to_json(orient="records")),
        "taskweb": json.loads(external.to_json(orient="records")),
        "verification": verification_value(quality, run_seconds(atlas)) if len(quality) else {},
    }
    return result, table


def informative_targets() -> list[str]:
    """The informative atlas targets (`bench.atlas_targets`, committed ``atlas_targets.csv``); none without it."""
    from bench import atlas_targets

    path = RESULTS / "atlas_targets.csv"
    return atlas_targets.informative_targets(path) if path.exists() else []


def write_results(
    result: dict | None = None,
    table: pd.DataFrame | None = None,
    scores: pd.DataFrame | None = None,
    tasks: pd.DataFrame | None = None,
) -> None:
    """The committed results given (each to a temporary file, then renamed): the table (``ranking_quality.{json,
    csv}``) and, from a run that ranked, what the advisor ships with (`store.advice`): every method's ``scores`` of
    the complete targets' pairs (``atlas_method_scores.parquet``) and the ``tasks``' descriptors (``atlas_tasks.
    csv``)."""
    from store.advice import ATLAS_SCORES, ATLAS_TASKS, TASK_COLUMNS

    RESULTS.mkdir(parents=True, exist_ok=True)
    writes: dict[str, Any] = {}
    if result is not None:
        writes["ranking_quality.json"] = lambda path: path.write_text(json.dumps(result, indent=1) + "\n")
    if table is not None:
        writes["ranking_quality.csv"] = lambda path: table.round(4).to_csv(path)
    if scores is not None:
        writes[ATLAS_SCORES] = lambda path: scores.drop(columns="run_id", errors="ignore").to_parquet(path, index=False)
    if tasks is not None:
        writes[ATLAS_TASKS] = lambda path: tasks.set_index("name")[TASK_COLUMNS].to_csv(path)
    for name, write in writes.items():
        temporary = RESULTS / f".{name}.tmp"
        write(temporary)
        temporary.replace(RESULTS / name)
