"""``python -m bench transfer_atlas``: the transfer atlas, measured intermediate-task transfer on a broad grid of the
shared tasks, committed as data (``reports/results/transfer_atlas.{parquet,csv}``) for judging and learning rankers.

Grid: 12 targets (single texts, pairs, regression; six shared with TaskWeb) x 17 sources (sentiment, subjectivity,
question type, topic, offensive/hate, emotion, spam, grammaticality, NLI, paraphrase, intent, clickbait, fact
checking, similarity) x 5 seeds; a target is never its own source and never one of the reserved tasks
(`bench.common.RESERVED_TARGETS`). Each (target, source, seed) run is one `measure_transfer` flow call: the source's
cached checkpoint (fine-tuned on the source recipe), a new head, then the target recipe (300 examples, 3 epochs,
batch 16, lr 5e-5, 6% warm-up, max_length 64, length-bucketed batches), evaluated on at most 1,000 held-out rows.
Beside each seed's runs, the no-transfer baseline of that target and seed.

Stages, in order: ``recipe`` measures 2 targets x 6 sources x 2 seeds (`RECIPE_SEEDS`) under both candidate source
recipes (``small``: 500 examples x 1 epoch; ``medium``: 1,000 x 2) and compares them; ``grid`` measures the atlas
under `ATLAS_RECIPE` (on a lent GPU machine: `bench.atlas_device`); ``pilot`` screens the v2 candidate targets
(`CANDIDATES`) cheaply before any of them gets a grid: its baseline and 3 contrasting sources (`pilot_sources`) x 2
seeds each, under the atlas's recipes, and the targets that do not learn from 300 examples
(`LARGER_TARGET_CANDIDATES`) again under the separately named target recipe ``medium+t1000`` (1,000 target
examples; `TARGET_RECIPES`); ``grid2``
measures every pilot that passed (`passed_pilots`) on the atlas's sources x `V2_SEEDS`. Every finished run is
appended to the committed table at once (temporary file, then rename), with its config hash, recipes, model, weights
dtype, where it ran, its wall time and library versions, so a session that ends mid-grid loses nothing: the next run
skips every row already in the table. ``--quick``: one small target, two sources, two seeds, tiny recipes, written
beside the workspace instead of the committed table (CI runs it).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import SHARED_TASKS, check_targets, machine_provenance

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "results"
ATLAS = RESULTS / "transfer_atlas.parquet"
WORKSPACE = Path(os.environ.get("TRANSFERSCOPE_BENCH_WORKSPACE", "~/.cache/transferscope/bench/transfer-atlas"))
WORKSPACE = WORKSPACE.expanduser()
TARGETS = (
    "rte", "cb", "mrpc", "stsb", "wic", "mr",  # shared with TaskWeb
    "cola", "trec", "tweeteval_irony", "tweeteval_hate", "tweeteval_stance_abortion", "emobank_valence",
)  # fmt: skip
SOURCES = (
    "sst2", "sst5", "subj", "trec", "ag_news", "tweeteval_offensive", "hate_offensive_davidson", "tweeteval_emotion",
    "sms_spam", "cola", "sick_nli", "rte", "mrpc", "banking77", "clickbait", "liar", "stsb",
)  # fmt: skip
SEEDS = (0, 1, 2, 3, 4)  # 0-1 mostly on CPU here, the rest on a lent H200 (`bench.atlas_device`; rows say where)
RECIPE_SEEDS = (0, 1)
RECIPE_TARGETS = ("mr", "stsb")  # rte sits at chance with 300 examples (measured: 0.47-0.52 for every run)
RECIPE_SOURCES = ("sst2", "sick_nli", "mrpc", "trec", "ag_news", "tweeteval_emotion")
COMMON: dict[str, Any] = {"lr": 5e-5, "batch_size": 16, "max_length": 64, "warmup_ratio": 0.06, "length_buckets": True}
SOURCE_RECIPES: dict[str, dict[str, Any]] = {
    "small": {**COMMON, "epochs": 1, "max_examples": 500},
    "medium": {**COMMON, "epochs": 2, "max_examples": 1000},
}
TARGET_RECIPE: dict[str, Any] = {**COMMON, "epochs": 3, "max_examples": 300}
# Named (source recipe, target recipe) pairs: a target measured under two target recipes is two atlas targets.
TARGET_RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "small": ("small", TARGET_RECIPE),
    "medium": ("medium", TARGET_RECIPE),
    "medium+t1000": ("medium", {**TARGET_RECIPE, "max_examples": 1000}),
}
CANDIDATES = (  # atlas v2 targets to pilot (issue #29); none is reserved; tweeteval_sentiment has no train split
    "sst2", "sst5", "subj", "mpqa", "uci_sentiment_amazon", "uci_sentiment_imdb", "tweeteval_emotion",
    "tweeteval_offensive", "tweeteval_emoji", "tweeteval_stance_atheism",
    "tweeteval_stance_climate", "tweeteval_stance_hillary", "ag_news", "clickbait", "liar", "hate_offensive_davidson",
    "sick_nli", "sick_relatedness", "atis_intent", "banking77", "clinc150", "sms_spam",
)  # fmt: skip
# Targets that do not learn from 300 examples (the v1 grid's and failed pilots', `bench.atlas_targets`) and have at
# least 1,000 training rows (the three failed stance tasks have 461-620): screened again with 1,000.
LARGER_TARGET_CANDIDATES = (
    "cola", "rte", "mrpc", "wic", "tweeteval_hate", "tweeteval_irony", "sst5", "tweeteval_emoji",
)  # fmt: skip
PILOT_SOURCES = ("sst2", "ag_news", "sick_nli")  # sentiment, topic, NLI pairs: three unlike kinds of transfer
PILOT_SEEDS = (0, 1)
V2_SEEDS = (0, 1, 2)  # the v2 grid: every passed pilot x the atlas's sources x 3 seeds
MAX_TEST = 1000
ATLAS_RECIPE = "medium"
QUICK: dict[str, Any] = {
    "targets": ("uci_sentiment_imdb",),
    "sources": ("tweeteval_stance_atheism", "uci_sentiment_amazon"),
    "seeds": (0, 1),
    "recipe": {**COMMON, "epochs": 1, "max_examples": 48, "max_length": 32},
    "target_recipe": {**COMMON, "epochs": 1, "max_examples": 48, "max_length": 32},
    "max_test": 64,
}
KEY = ["recipe", "config_hash", "target", "source", "seed"]


def read_atlas(path: Path = ATLAS) -> pd.DataFrame:
    """The atlas table (one row per (recipe, target, source, seed) run; source '' = no transfer), or an empty one."""
    return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=KEY)


def append_rows(path: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Append ``rows`` to the Parquet table and its CSV twin, each written to a temporary file and renamed."""
    table = pd.DataFrame(rows)
    if path.exists():
        table = pd.concat([read_atlas(path), table], ignore_index=True)
    table = table.drop_duplicates(KEY, keep="first").sort_values(KEY).reset_index(drop=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    for out, write in ((path, table.to_parquet), (path.with_suffix(".csv"), table.to_csv)):
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        write(tmp, index=False)
        os.replace(tmp, out)
    return table


def provenance(device: str) -> dict[str, Any]:
    """Where and with what a run was measured (stored on every row)."""
    import torch

    name = torch.cuda.get_device_name() if device != "cpu" and torch.cuda.is_available() else "cpu"
    machine = machine_provenance()
    return {
        "device": name,
        "host": machine["host"],
        "weights_dtype": "float32",
        "optimizer": "AdamW fused",  # the 7 rte rows measured before the fused kernel say "AdamW foreach"
        "versions": machine["versions"],
    }


def measure_one(
    ws: Any, path: Path, recipe_name: str, recipe: dict, target: str, source: str, seed: int, setup: dict
) -> int:
    """Measure one (target, source, seed) run (and the seed's baseline if missing); append what is new."""
    from flows.measure import MeasureRequest, measure_transfer

    target_recipe = setup["target_recipe"] or TARGET_RECIPES[recipe_name][1]
    start = time.perf_counter()
    measure_transfer(
        MeasureRequest(
            target,
            (source,),
            (seed,),
            recipe,
            target_recipe,
            max_test=setup["max_test"],
            device=setup["device"],
            workspace=str(ws.root),
        )
    )
    seconds = time.perf_counter() - start
    stored = ws.sql(
        "SELECT config_hash, target, source, seed, metric, value, created_at FROM transfer_results "
        "WHERE target = $target AND seed = $seed",
        {"target": target, "seed": seed},
    )
    wide = stored.pivot_table(index=["config_hash", "target", "source", "seed"], columns="metric", values="value")
    wide = wide.reset_index()
    config = ws.sql(
        "SELECT config_hash FROM transfer_gains WHERE target = $target AND source = $source "
        "ORDER BY created_at DESC LIMIT 1",
        {"target": target, "source": source},
    ).config_hash.iloc[0]
    wide = wide[(wide.config_hash == config) & wide.source.isin(["", source])]
    done = read_atlas(path)
    done_keys = set(map(tuple, done[KEY].astype(str).to_numpy())) if len(done) else set()
    new = []
    for row in wide.to_dict("records"):
        key = (recipe_name, row["config_hash"], row["target"], row["source"], str(row["seed"]))
        if key in done_keys:
            continue
        new.append(
            {
                "recipe": recipe_name,
                **{k: row[k] for k in ("config_hash", "target", "source", "seed")},
                "value": row["primary"],
                "metrics": json.dumps({k: v for k, v in row.items() if k not in KEY and v == v}, sort_keys=True),
                "source_recipe": json.dumps(recipe, sort_keys=True),
                "target_recipe": json.dumps(target_recipe, sort_keys=True),
                "max_test": setup["max_test"],
                "model": "all-MiniLM-L6-v2",
                "measured_at": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
                **setup["provenance"],
            }
        )
    for (
        row
    ) in new:  # the call's wall time, shared among the rows it added (a source's first run carries its checkpoint)
        row["seconds"] = seconds / len(new)
    if new:
        append_rows(path, new)
    return len(new)


def gains(table: pd.DataFrame) -> pd.DataFrame:
    """Per (recipe, target, source, seed): the run's primary metric minus its seed's baseline, in points (x100)."""
    base = table[table.source == ""][["recipe", "config_hash", "target", "seed", "value"]]
    runs = table[table.source != ""].merge(base, on=["recipe", "config_hash", "target", "seed"], suffixes=("", "_base"))
    runs = runs.assign(gain=100 * (runs.value - runs.value_base))
    return runs[["recipe", "target", "source", "seed", "gain"]]


def compare_recipes(table: pd.DataFrame) -> dict[str, Any]:
    """Per recipe and target: the spread of mean gains across sources, the seed-to-seed Spearman of the source
    order (its noise ceiling), and across recipes the Spearman of the mean-gain orders and the mean shift."""
    from scipy import stats

    stage = table.target.isin(RECIPE_TARGETS) & table.source.isin(["", *RECIPE_SOURCES]) & table.seed.isin(RECIPE_SEEDS)
    g = gains(table[stage])
    out: dict[str, Any] = {"per_target": []}
    for target, frame in g.groupby("target"):
        wide = frame.pivot_table(index="source", columns=["recipe", "seed"], values="gain")
        if wide.isna().any().any() or set(wide.columns.get_level_values(0)) != set(SOURCE_RECIPES):
            continue
        entry: dict[str, Any] = {"target": target}
        for recipe in SOURCE_RECIPES:
            seeds = wide[recipe]
            entry[recipe] = {
                "mean_gain": float(seeds.mean(axis=1).mean()),
                "source_spread": float(seeds.mean(axis=1).std(ddof=1)),
                "seed_noise": float(seeds.std(axis=1, ddof=1).mean()),
                "seed_spearman": float(stats.spearmanr(seeds.iloc[:, 0], seeds.iloc[:, 1]).statistic),
            }
        means = {recipe: wide[recipe].mean(axis=1) for recipe in SOURCE_RECIPES}
        entry["recipes_spearman"] = float(stats.spearmanr(means["small"], means["medium"]).statistic)
        entry["medium_minus_small"] = float((means["medium"] - means["small"]).mean())
        entry["medium_minus_small_per_source"] = {
            k: round(float(v), 2) for k, v in (means["medium"] - means["small"]).items()
        }
        out["per_target"].append(entry)
    return out


def pilot_sources(target: str) -> tuple[str, ...]:
    """`PILOT_SOURCES` for ``target``, with trec in place of the target itself."""
    return tuple("trec" if source == target else source for source in PILOT_SOURCES)


def pilot_table() -> pd.DataFrame:
    """The finished pilots' rows of `bench.atlas_targets` (its committed ``atlas_targets.csv``, which ``python -m
    bench atlas_targets`` refreshes from the atlas)."""
    table = pd.read_csv(RESULTS / "atlas_targets.csv")
    return table[table.stage == "pilot"]


def pilot_verdicts() -> dict[tuple[str, str], bool]:
    """{(recipe name, target): whether its pilot passed (its baseline learns on every seed)} for every finished
    pilot (`pilot_table`)."""
    pilots = pilot_table()
    return dict(zip(zip(pilots.recipe, pilots.target, strict=True), pilots.passes.astype(bool), strict=True))


def passed_pilots() -> list[tuple[str, str]]:
    """(recipe name, target) of every pilot that passed (`pilot_table`), most promising first: by the pilot's
    block-ANOVA p-value over its 3 sources (the evidence, weak at 2 seeds, that the source matters there; a grid on
    a target whose sources do not differ is not informative), then by name."""
    pilots = pilot_table()
    passed = pilots[pilots.passes.astype(bool)].sort_values(["anova_p", "recipe", "target"], na_position="last")
    return list(zip(passed.recipe, passed.target, strict=True))


def plan(quick: bool, stage: str) -> list[tuple[str, dict, str, str, int]]:
    """The runs of a stage, in order: (recipe name, source recipe, target, source, seed)."""
    if quick:
        return [
            ("quick", QUICK["recipe"], t, s, seed)
            for t in QUICK["targets"]
            for seed in QUICK["seeds"]
            for s in QUICK["sources"]
        ]
    if stage == "recipe":
        return [
            (name, recipe, target, source, seed)
            for target in RECIPE_TARGETS
            for name, recipe in SOURCE_RECIPES.items()
            for seed in RECIPE_SEEDS
            for source in RECIPE_SOURCES
        ]
    if stage == "pilot":
        screens = [(ATLAS_RECIPE, t) for t in CANDIDATES] + [("medium+t1000", t) for t in LARGER_TARGET_CANDIDATES]
        return [
            (name, SOURCE_RECIPES[TARGET_RECIPES[name][0]], target, source, seed)
            for name, target in screens
            for seed in PILOT_SEEDS
            for source in pilot_sources(target)
        ]
    if stage == "grid2":
        return [
            (name, SOURCE_RECIPES[TARGET_RECIPES[name][0]], target, source, seed)
            for name, target in passed_pilots()
            for seed in V2_SEEDS
            for source in SOURCES
            if source != target
        ]
    recipe = SOURCE_RECIPES[ATLAS_RECIPE]
    return [
        (ATLAS_RECIPE, recipe, target, source, seed)
        for target in TARGETS
        for seed in SEEDS
        for source in SOURCES
        if source != target
    ]


def atlas_workspace(names: list[str], quick: bool = False) -> Any:
    """The atlas's workspace (beside `WORKSPACE`), with the shared tasks ``names`` stored in it."""
    from store.catalog import put_task
    from store.task_files import load_task_dir
    from store.workspace import Workspace

    ws = Workspace(WORKSPACE / ("quick" if quick else "full"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            put_task(ws, load_task_dir(SHARED_TASKS / name))
    return ws


def run(quick: bool = False, stage: str = "all", device: str = "cpu", path: Path | None = None) -> None:
    stages = ("quick",) if quick else ("recipe", "grid", "pilot", "grid2") if stage == "all" else (stage,)
    workspace = WORKSPACE / ("quick" if quick else "full")
    path = path or (workspace / "transfer_atlas.parquet" if quick else ATLAS)
    setup = {
        "target_recipe": QUICK["target_recipe"] if quick else None,  # None: `TARGET_RECIPES` by the run's name
        "max_test": QUICK["max_test"] if quick else MAX_TEST,
        "device": device,
        "provenance": provenance(device),
    }
    runs = [r for s in stages for r in plan(quick, s)]
    check_targets("transfer_atlas", sorted({r[2] for r in runs}))
    ws = atlas_workspace(sorted({r[2] for r in runs} | {r[3] for r in runs}), quick)
    started, added = time.perf_counter(), 0
    for recipe_name, recipe, target, source, seed in runs:
        done = read_atlas(path)
        if (
            len(done)
            and (
                (done.recipe == recipe_name) & (done.target == target) & (done.source == source) & (done.seed == seed)
            ).any()
        ):
            continue
        added += measure_one(ws, path, recipe_name, recipe, target, source, seed, setup)
    table = read_atlas(path)
    expected = {(r[0], r[2], r[3], r[4]) for r in runs} | {(r[0], r[2], "", r[4]) for r in runs}
    have = (
        set(zip(table.recipe, table.target, table.source, table.seed.astype(int), strict=True)) if len(table) else set()
    )
    result = {
        "bench": "transfer_atlas",
        "quick": quick,
        "stages": list(stages),
        "rows": len(table),
        "rows_added": added,
        "runs_expected": len(expected),
        "runs_missing": len(expected - have),
        "seconds_this_call": round(time.perf_counter() - started, 1),
        "seconds_recorded_total": round(float(table.seconds.sum()), 1) if len(table) else 0.0,
        "recipe_comparison": compare_recipes(table) if not quick else None,
    }
    print(json.dumps(result))
