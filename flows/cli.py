"""The ``transferscope`` command line: tasks, embeddings, SQL, the HTML report and the demo."""

from __future__ import annotations

import functools
import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, cast

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from store.errors import ExpectedError
from store.workspace import WORKSPACE_ENV, SQLError, Workspace

if TYPE_CHECKING:
    from prefect import Flow

    from flows.rank import RankPlan

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    help="TransferScope: which source tasks to fine-tune on first, and which training data to keep.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tasks_app = typer.Typer(help="Register and list tasks (datasets).", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
console = Console(width=None if os.isatty(1) else 160)


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Annotated[
        str | None,
        typer.Option(help=f"Workspace directory (default ${WORKSPACE_ENV} or ./transferscope-workspace)."),
    ] = None,
    device: Annotated[str, typer.Option(help="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'.")] = "auto",
    dask_address: Annotated[
        str | None,
        typer.Option(
            help="Run the flows' tasks on the Dask scheduler at this address (tcp://HOST:8786); workers need the "
            "workspace at the same path and PREFECT_API_URL."
        ),
    ] = None,
    dask_local: Annotated[
        int | None, typer.Option(help="Run the flows' tasks on a local Dask cluster of N single-threaded workers.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of every error.")] = False,
) -> None:
    if dask_address is not None or dask_local is not None:  # flows.runners imports Prefect: only for a cluster
        from flows.runners import check_runner_options

        try:
            check_runner_options(dask_address, dask_local)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--dask-address/--dask-local") from None
    ctx.obj = {
        "workspace": workspace,
        "device": device,
        "dask_address": dask_address,
        "dask_local": dask_local,
        "debug": debug,
    }


def with_runner(ctx: typer.Context, flow: Flow[P, R]) -> Flow[P, R]:
    """``flow`` with the task runner the global --dask-address / --dask-local options ask for (flows/runners.py)."""
    from flows.runners import task_runner

    return flow.with_options(task_runner=task_runner(ctx.obj["dask_address"], ctx.obj["dask_local"]))


def print_frame(frame: pd.DataFrame, title: str | None = None) -> None:
    """A DataFrame as a rich table (floats to 4 significant digits, a missing value as "NULL", as SQL says)."""
    table = Table(title=title, show_lines=False)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*[cell_text(v) for v in row])
    console.print(table)


def cell_text(value: Any) -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "NULL"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@tasks_app.command("add")
def tasks_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Task name.")],
    path: Annotated[str, typer.Argument(help="Task directory, a jsonl/csv/parquet file, or hf:DATASET.")],
    kind: Annotated[
        str | None, typer.Option(help="'classification' or 'regression' (default: meta.json/inferred).")
    ] = None,
    text_column: Annotated[str | None, typer.Option(help="Text column (default: text, text_a, sentence...).")] = None,
    text_pair_column: Annotated[str | None, typer.Option(help="Second text column for pair tasks.")] = None,
    label_column: Annotated[str, typer.Option(help="Label column.")] = "label",
    split: Annotated[str, typer.Option(help="Split of a single file without a split column.")] = "train",
    split_column: Annotated[str | None, typer.Option(help="Column holding train/validation/test.")] = None,
    labels: Annotated[str | None, typer.Option(help="Declared class names, comma-separated, in index order.")] = None,
    license: Annotated[str | None, typer.Option(help="Licence to record with the task.")] = None,
) -> None:
    """Validate a task and store it in the workspace (nothing is written if validation fails)."""
    from store.catalog import put_task
    from store.tasks import TaskValidationError, load_hf_task, load_task_dir, load_task_file

    options: dict[str, Any] = {
        "kind": kind,
        "text_column": text_column,
        "text_pair_column": text_pair_column,
        "label_column": label_column,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the task's warnings are printed once, below
            if path.startswith("hf:"):
                task = load_hf_task(path[3:], name, **options)
            elif Path(path).is_dir():
                task = load_task_dir(
                    path, name, label_names=labels.split(",") if labels else None, license=license, **options
                )
            else:
                task = load_task_file(
                    path,
                    name,
                    split=split,
                    split_column=split_column,
                    label_names=labels.split(",") if labels else None,
                    license=license,
                    **options,
                )
    except (TaskValidationError, ImportError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    changed = put_task(Workspace(ctx.obj["workspace"]), task)
    state = "stored" if changed else "unchanged (same content already stored)"
    console.print(f"task [bold]{task.name}[/bold]: {task.kind}, {task.input}, {task.counts()} — {state}")
    for warning in task.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")


@tasks_app.command("list")
def tasks_list(ctx: typer.Context) -> None:
    """List the stored tasks."""
    from store.catalog import list_tasks

    frame = list_tasks(Workspace(ctx.obj["workspace"]))
    frame["content_hash"] = frame["content_hash"].str[:12]
    print_frame(frame.drop(columns=["source_uri", "license"]), title="tasks")


@app.command()
def embed(
    ctx: typer.Context,
    tasks: Annotated[list[str] | None, typer.Argument(help="Tasks to embed (default: all stored tasks).")] = None,
    split: Annotated[
        list[str] | None,
        typer.Option(
            help="Split(s) to embed, or 'all' (default: train, what rank and select read; they embed "
            "anything else they need themselves)."
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="Hugging Face encoder name or local path.")] = "all-MiniLM-L6-v2",
    pooling: Annotated[str, typer.Option(help="mean, cls or pooler.")] = "mean",
    max_length: Annotated[int, typer.Option(help="Tokens per input.")] = 128,
    precision: Annotated[
        str, typer.Option(help="exact (fp32) or fast (int8 ONNX on CPU, bf16/fp16 on GPU).")
    ] = "exact",
    batch_size: Annotated[int, typer.Option(help="Inputs per forward pass.")] = 64,
    normalize: Annotated[bool, typer.Option(help="L2-normalise embeddings.")] = True,
) -> None:
    """Embed stored tasks (cached by content: unchanged inputs are not recomputed)."""
    from flows.embed import embed_tasks

    results = with_runner(ctx, embed_tasks)(
        tasks=tasks or None,
        splits=None if split == ["all"] else (split or ["train"]),
        model=model,
        pooling=pooling,
        max_length=max_length,
        normalize=normalize,
        precision=precision,
        device=ctx.obj["device"],
        batch_size=batch_size,
        workspace=ctx.obj["workspace"],
    )
    print_frame(pd.DataFrame(results).drop(columns=["run_id"]), title="embeddings")


esm_app = typer.Typer(help="Build, export and import Embedding Space Maps.", no_args_is_help=True)
app.add_typer(esm_app, name="esm")
BUDGET_HELP = "small (500 examples, 1 epoch, max_length 64: CPU demos) or paper (<= 10,000 examples, 3 epochs)."


@app.command()
def rank(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Target task.")],
    top: Annotated[int, typer.Option(help="Sources to show.")] = 5,
    method: Annotated[
        str,
        typer.Option(
            help="Comma-separated methods: advisor (the learned recommendation; the other methods listed become its "
            "inputs), esm-logme, direct-logme, leep, maxsim and the divergence measures (centroid-cosine, mmd, "
            "frechet, knn-kl, ...; see the README)."
        ),
    ] = "esm-logme",
    sources: Annotated[str | None, typer.Option(help="Comma-separated sources (default: every other task).")] = None,
    budget: Annotated[str, typer.Option(help=BUDGET_HELP)] = "small",
    fuse: Annotated[str | None, typer.Option(help="Also fuse the methods' rankings: rrf or borda.")] = None,
    prefilter: Annotated[
        str | None, typer.Option(help="MEASURE:M keeps the M best sources by a cheap measure first.")
    ] = None,
    verify: Annotated[
        int,
        typer.Option(
            help="With --method advisor: fine-tune the top K sources and the no-transfer baseline on TARGET (one "
            "seed) and re-rank them by the measured gains.",
            min=0,
        ),
    ] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be computed.")] = False,
) -> None:
    """Rank source tasks for TARGET and print the top ones per method (building missing ESMs first)."""
    from flows.rank import METHODS, RankRequest, plan_rank
    from store.catalog import list_tasks

    ws = Workspace(ctx.obj["workspace"])
    methods = tuple(method.split(","))
    unknown = [m for m in methods if m not in (*METHODS, "advisor")]
    if unknown:
        raise ExpectedError(f"unknown method(s) {unknown}; choose from {['advisor', *METHODS]}")
    if verify and "advisor" not in methods:
        raise ExpectedError("--verify re-ranks the advisor's top sources: add --method advisor")
    names = sources.split(",") if sources else [n for n in list_tasks(ws)["name"] if n != target]
    advised = "advisor" in methods
    recipe_budget: str | dict = budget
    if advised:
        from store.advice import measured_knowledge
        from transfer.advisor import DEFAULT_INPUTS

        knowledge = measured_knowledge(ws, exclude=target)
        methods = tuple(m for m in methods if m != "advisor") or DEFAULT_INPUTS
        recipe_budget = knowledge.input_budget
    plan = plan_rank(
        RankRequest(
            target,
            tuple(names),
            methods,
            recipe_budget,
            prefilter=prefilter,
            fuse=fuse,
            device=ctx.obj["device"],
            workspace=str(ws.root),
        )
    )
    if plan.esms:
        title = f"plan: ESMs for {len(names)} sources, about {plan.estimated_s:.0f} s ({plan.rate})"
        print_frame(plan.esm_frame(), title=title)
    else:
        console.print(f"plan: {len(methods)} method(s) over {len(names)} sources")
    if verify:
        console.print(verification_plan(knowledge.seconds_per_run, verify, target))
    if dry_run:
        return
    if advised:
        advise(ctx, plan, verify, top)
        return
    from flows.rank import higher_is_better, rank_sources
    from transfer.metrics import NEAR_TIE, near_ties

    result = with_runner(ctx, rank_sources)(plan)
    warn_failures(result)
    rankings = pd.DataFrame(result)
    for name in [*methods, *sorted(set(rankings.method) - set(methods))]:  # the user's order, then the fused
        ranking = rankings[rankings.method == name]
        if len(ranking):
            direction = "higher" if higher_is_better(name) else "lower"
            title = f"{name} ranking for {target} (score: {direction} is better)"
            print_frame(ranking.head(top).drop(columns=["run_id", "method", "higher_is_better"]), title=title)
            for group in near_ties(dict(zip(ranking.source, ranking.score, strict=True))):
                console.print(
                    f"near-tie: {', '.join(group)} are indistinguishable by {name} (scores within "
                    f"{NEAR_TIE:.1%} of their size)",
                    soft_wrap=True,
                )


def warn_failures(result: object) -> None:
    """One warning line per method a ranking run could not compute (it stored the others)."""
    for name, error in getattr(result, "attrs", {}).get("failures", {}).items():
        console.print(f"[yellow]warning:[/yellow] {name} failed and was not stored: {escape(error)}", soft_wrap=True)


def verification_plan(seconds_per_run: float | None, k: int, target: str) -> str:
    """The cost of ``--verify K`` in words: K + 1 fine-tunes on the target (plus a source fine-tune for each of the
    K not yet cached), from the atlas's measured wall time per run."""
    runs = f"plan: verification fine-tunes the top {k} sources and the no-transfer baseline on {target} ({k + 1} runs"
    if seconds_per_run is None:
        return runs + "; no measured rate: no atlas is shipped) plus a source fine-tune per uncached source"
    return (
        f"{runs}, about {(k + 1) * seconds_per_run / 60:.1f} min at the atlas's median of {seconds_per_run:.0f} s "
        "per run measured on 2 cores) plus a source fine-tune per uncached source"
    )


def advise(ctx: typer.Context, plan: RankPlan, verify: int, top: int) -> None:
    """Run the advisor on its planned input rankings and print its advice: expected gains with intervals, the
    "don't transfer" call, the basis."""
    from flows.advisor import advise_sources

    r = plan.request
    advice: pd.DataFrame = cast(
        pd.DataFrame,
        with_runner(ctx, advise_sources)(
            target=r.target, sources=list(plan.sources), inputs=r.methods, verify=verify, device=r.device,
            workspace=r.workspace, input_plan=plan,
        ),
    )  # fmt: skip
    warn_failures(advice)
    shown = advice.head(top).copy()
    shown["top_features"] = [", ".join(f"{k} {v:+.2f}" for k, v in f.items()) for f in shown.top_features]
    learned = advice.attrs["basis"] == "learned"
    title = (
        f"{advice.attrs['method']} for {r.target}: expected gain over no transfer, points (higher is better)"
        if learned
        else f"advisor for {r.target}: fused rank of its inputs (no gain estimates)"
    )
    print_frame(shown if learned else shown[["source", "rank"]], title=title)
    console.print(escape(advice.attrs["message"]), soft_wrap=True)


@app.command()
def measure(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Target task.")],
    sources: Annotated[str | None, typer.Option(help="Comma-separated sources (default: every other task).")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    budget: Annotated[str, typer.Option(help=BUDGET_HELP)] = "small",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be computed.")] = False,
) -> None:
    """Measure real transfer to TARGET: fine-tune on it alone and after each source, per seed (resumable)."""
    from flows.measure import MeasureRequest, measure_transfer, plan_measure

    plan = plan_measure(
        MeasureRequest(
            target,
            tuple(sources.split(",")) if sources else None,
            tuple(int(s) for s in seeds.split(",")),
            budget,
            device=ctx.obj["device"],
            workspace=ctx.obj["workspace"],
        )
    )
    n_seeds, epochs = len(plan.request.seeds), plan.request.target_recipe.epochs
    console.print(
        f"plan: {len(plan.todo)} target fine-tunes ({n_seeds} seeds x {len(plan.sources)} sources + baseline, "
        f"{n_seeds * (len(plan.sources) + 1) - len(plan.todo)} already stored), {plan.target_examples} examples x "
        f"{epochs} epochs each, about {plan.estimated_s / 60:.0f} min at {plan.rate}, plus one source fine-tune per "
        "(source, seed) not yet cached",
        soft_wrap=True,
    )
    if dry_run:
        return
    summary = pd.DataFrame(with_runner(ctx, measure_transfer)(plan))
    print_frame(summary, title=f"measured gains for {target}")


@app.command()
def evaluate(ctx: typer.Context, target: Annotated[str, typer.Argument(help="Target task.")]) -> None:
    """Score every stored ranking of TARGET against its measured transfer."""
    from flows.evaluate import evaluate_rankings

    table = pd.DataFrame(evaluate_rankings(target=target, workspace=ctx.obj["workspace"]))
    keep = [c for c in ("regret@1", "regret@3", "ndcg@5", "spearman", "kendall", "top1_hit") if c in table.columns]
    print_frame(table[keep].reset_index(), title=f"ranking quality for {target}")


SELECT_BUDGET_HELP = (
    "A fraction in (0, 1] of the pool (1.0 = the whole pool), a count >= 1 (1 = one example), or 'auto' for GIO's "
    "own stopping rule."
)


def parse_budget(text: str) -> int | float | None:
    """CLI budget: '0.2' → 0.2 (a fraction), '500' → 500 (a count), 'auto' → None."""
    if text == "auto":
        return None
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        raise typer.BadParameter(
            f"expected a fraction, a count or 'auto'; got {text!r}", param_hint="--budget"
        ) from None


def parse_pairs(text: str, option: str) -> dict[str, str]:
    """'a=b,c=d' → {'a': 'b', 'c': 'd'}."""
    pairs = [item.partition("=") for item in text.split(",") if item]
    if any(not key or not sep for key, sep, _ in pairs):
        raise typer.BadParameter(f"expected NAME=VALUE pairs, got {text!r}", param_hint=option)
    return {key: value for key, _, value in pairs}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@app.command()
def select(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="Task holding the candidate training pool.")],
    target: Annotated[list[str], typer.Option(help="Target task(s) whose distribution the subset should match.")],
    method: Annotated[str, typer.Option(help="gio, icons, vog or random.")] = "gio",
    budget: Annotated[str, typer.Option(help=SELECT_BUDGET_HELP)] = "0.2",
    pool_split: Annotated[str, typer.Option(help="Split of the pool to select from.")] = "train",
    target_split: Annotated[str, typer.Option(help="Split of the targets to match.")] = "train",
    quantize: Annotated[
        bool | None, typer.Option(help="GIO on k-means clusters (default: when the pool exceeds 50,000 rows).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling, start sets and k-means.")] = 0,
    label_map: Annotated[
        str | None, typer.Option(help="icons/vog: TARGET_LABEL=POOL_LABEL pairs, comma-separated.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="Method parameter NAME=VALUE (repeatable; VALUE read as JSON when it parses), e.g. "
            "strategy=keep_hardest (vog), dim=4096 (icons), steps=30 (gio)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also export the subset here (.jsonl, .csv or .parquet) with a .meta.json.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be computed.")] = False,
) -> None:
    """Select a training subset of POOL for the --target task(s), store it, and optionally export it."""
    from flows.select import SelectionRequest, plan_selection, select_training_subset
    from store.selections import export_selection, find_selection, selection_frame

    try:
        plan = plan_selection(
            SelectionRequest(
                pool,
                tuple(target),
                method,
                parse_budget(budget),
                pool_split=pool_split,
                target_split=target_split,
                quantize=quantize,
                method_params={k: _json_or_text(v) for k, v in parse_pairs(",".join(param or []), "--param").items()},
                label_map=parse_pairs(label_map, "--label-map") if label_map else None,
                seed=seed,
                device=ctx.obj["device"],
                workspace=ctx.obj["workspace"],
            )
        )
    except (ValueError, KeyError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    embeds = ", ".join(f"{e.task}/{e.split} ({e.n} texts)" for e in plan.to_embed) or "nothing"
    console.print(
        f"plan: {method} on {plan.n_pool} pool examples ({len(plan.leaked_ids)} dropped as leaked into a target's "
        f"evaluation data), {plan.n_target} target examples, budget "
        f"{plan.n_budget if plan.n_budget is not None else 'GIO stopping rule'}"
        f"{', quantised' if plan.quantize else ''}; embed {embeds}; about {plan.estimated_s:.0f} s"
        + (" (already stored)" if plan.stored else f" (fine-tuning at {plan.rate})")
    )
    if dry_run:
        return
    summary = with_runner(ctx, select_training_subset)(plan)
    ws = Workspace(ctx.obj["workspace"])
    selection = find_selection(ws, summary["subset_id"])  # this request's subset, by id (never a looser lookup)
    frame = selection_frame(ws, selection)
    console.print(f"subset {summary['subset_id']}: {len(frame)} of {plan.n_pool} examples")
    print_frame(frame.head(10)[["rank", "example_id", "text", "label", "score"]], title="first picks")
    if out is not None:
        written = export_selection(ws, selection, out)
        console.print(f"exported to {written[0]} (metadata: {written[1]})")


@app.command("measure-selection")
def measure_selection_cmd(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="Task holding the candidate training pool.")],
    target: Annotated[list[str], typer.Option(help="Target task(s); each is evaluated on its held-out splits.")],
    method: Annotated[
        list[str] | None,
        typer.Option(
            help="Methods to compare (repeatable; default: gio, icons, VoG with each of its three strategies, "
            "random, as flows.measure_selection.DEFAULT_ARMS)."
        ),
    ] = None,
    budget: Annotated[list[float] | None, typer.Option(help="Fractions of the pool (default 0.1 0.2 0.5).")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="Seeds (default 0 1 2).")] = None,
    label_map: Annotated[str | None, typer.Option(help="TARGET_LABEL=POOL_LABEL pairs, comma-separated.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be computed.")] = False,
) -> None:
    """Fine-tune on each method's subsets of POOL (per budget and seed) and on the whole pool, and report the share
    of the full-pool score each reaches on the --target task(s), paired against random."""
    from flows.measure_selection import MeasureSelectionRequest, measure_selection, plan_measure_selection
    from store.results import Results

    try:
        plan = plan_measure_selection(
            MeasureSelectionRequest(
                pool,
                tuple(target),
                arms={m: {"method": m} for m in method} if method else None,  # None: DEFAULT_ARMS
                budgets=tuple(budget or (0.1, 0.2, 0.5)),
                seeds=tuple(seed or (0, 1, 2)),
                label_map=parse_pairs(label_map, "--label-map") if label_map else None,
                device=ctx.obj["device"],
                workspace=ctx.obj["workspace"],
            )
        )
    except (ValueError, KeyError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    selections = sum(not t.selection.stored for t in plan.todo)
    console.print(
        f"plan: {len(plan.todo)} fine-tunes to do ({len(plan.runs) * len(plan.request.seeds) - len(plan.todo)} "
        f"already stored), {selections} selections to make; {plan.examples} examples x epochs, about "
        f"{plan.estimated_s:.0f} s of fine-tuning at {plan.rate}, plus the selections",
        soft_wrap=True,
    )
    if dry_run:
        return
    with_runner(ctx, measure_selection)(plan)
    summary = Results(ctx.obj["workspace"]).selection_quality(pool)
    print_frame(
        summary[summary.target == "all"][["arm", "budget", "n_train", "share_mean", "share_std", "vs_random_mean"]],
        title=f"share of the full-pool score ({pool}, mean over targets)",
    )


@app.command("export")
def export_cmd(ctx: typer.Context, directory: Annotated[Path, typer.Argument(help="New or empty folder.")]) -> None:
    """Copy the workspace (catalog and every referenced artefact) to DIRECTORY, to move it to another machine."""
    from store.archive import export_workspace

    manifest = export_workspace(Workspace(ctx.obj["workspace"]), directory)
    console.print(f"exported to {directory} (manifest {manifest.name})")


@app.command("import")
def import_cmd(ctx: typer.Context, directory: Annotated[Path, typer.Argument(help="A folder from `export`.")]) -> None:
    """Create the workspace (--workspace, new or empty) from an exported folder, verifying every artefact."""
    from store.archive import import_workspace
    from store.workspace import resolve_root

    try:
        ws = import_workspace(directory, resolve_root(ctx.obj["workspace"]))
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    console.print(f"imported into {ws.root}; every artefact matches its checksum")


@esm_app.command("build")
def esm_build(
    ctx: typer.Context,
    sources: Annotated[list[str], typer.Argument(help="Source tasks.")],
    budget: Annotated[str, typer.Option(help=BUDGET_HELP)] = "small",
) -> None:
    """Fine-tune each source (or reuse its checkpoint) and fit its ESM."""
    from flows.rank import build_esms

    keys = with_runner(ctx, build_esms)(
        sources=sources, budget=budget, device=ctx.obj["device"], workspace=ctx.obj["workspace"]
    )
    console.print(f"{len(keys)} ESMs ready: {', '.join(keys)}")


@esm_app.command("list")
def esm_list(ctx: typer.Context) -> None:
    """List stored ESMs."""
    from store.esms import list_esms

    frame = list_esms(Workspace(ctx.obj["workspace"]))
    print_frame(frame[["source", "base_model", "fit", "dim", "heldout_mse", "identity_mse", "created_at"]], "ESMs")


@esm_app.command("export")
def esm_export(
    ctx: typer.Context,
    directory: Annotated[str, typer.Argument(help="Folder to write.")],
    layout: Annotated[
        str, typer.Option(help="transferscope, or hfselect (hf-dataset-selector's layout).")
    ] = "transferscope",
) -> None:
    """Export every stored ESM to DIRECTORY."""
    from store.esms import export_esms

    sources = export_esms(Workspace(ctx.obj["workspace"]), directory, layout=layout)  # type: ignore[arg-type]
    console.print(f"exported {len(sources)} ESMs to {directory}")


@esm_app.command("import")
def esm_import(
    ctx: typer.Context,
    directory: Annotated[str, typer.Argument(help="Folder written by `esm export` or by hf-dataset-selector.")],
    base_model: Annotated[
        str, typer.Option(help="Encoder the hf-dataset-selector ESMs belong to.")
    ] = "all-MiniLM-L6-v2",
) -> None:
    """Import ESMs into the workspace."""
    from store.esms import import_esms
    from transfer.encoder import model_fingerprint, resolve_model_path

    fingerprint = model_fingerprint(resolve_model_path(base_model))
    sources = import_esms(Workspace(ctx.obj["workspace"]), directory, base_fp=fingerprint)
    console.print(f"imported {len(sources)} ESMs: {', '.join(sources)}")


@app.command()
def sql(
    ctx: typer.Context,
    statement: Annotated[str, typer.Argument(help="A SQL query over the workspace views.")],
    output: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Query the workspace with SQL (read-only views over the last committed state; never blocks a writer).

    Views: every catalog table (tasks, runs, embeddings, ...), task_examples and embedding_vectors. Outside tools
    (DBeaver, a notebook) open <workspace>/views.duckdb for the same views."""
    try:
        frame = Workspace(ctx.obj["workspace"]).sql(statement)
    except SQLError as err:
        console.print(f"[red]SQL error:[/red] {err}")
        raise typer.Exit(2) from None
    if output == "csv":
        typer.echo(frame.to_csv(index=False), nl=False)
    elif output == "json":
        typer.echo(json.dumps(json.loads(frame.to_json(orient="records")), indent=1))
    else:
        print_frame(frame)


@app.command()
def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    min_age: Annotated[float, typer.Option(help="Keep files younger than this many seconds.")] = 3600.0,
) -> None:
    """Remove artefacts that no catalog row references (old task versions, stale caches, temporary files)."""
    from store.gc import collect_garbage

    ws = Workspace(ctx.obj["workspace"])
    removed = collect_garbage(ws, dry_run=dry_run, min_age_s=min_age)
    for path in removed:
        console.print(str(path.relative_to(ws.root)))
    console.print(f"{len(removed)} artefacts {'would be ' if dry_run else ''}removed")


@app.command()
def report(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Option(help="Only this target in the per-target sections.")] = None,
    out: Annotated[str | None, typer.Option(help="Output folder (default: <workspace>/report).")] = None,
) -> None:
    """Build a static HTML report (gains, rankings, quality, task map, runs) from the store; opens offline."""
    from reports.html import build_report

    try:
        index = build_report(Workspace(ctx.obj["workspace"]), out, target=target)
    except LookupError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    console.print(f"report written to {index}  (open {index.as_uri()} in a browser)")


@app.command()
def serve(
    ctx: typer.Context,
    targets: Annotated[
        list[str] | None,
        typer.Option(help="Target task(s) to re-rank nightly and measure weekly (repeatable or comma-separated)."),
    ] = None,
    cron: Annotated[
        list[str] | None,
        typer.Option(help="Override a schedule: NAME=CRON with NAME refresh or measure_grid (repeatable)."),
    ] = None,
    schedules: Annotated[
        bool, typer.Option("--schedules/--no-schedules", help="Register the schedules active (or inactive).")
    ] = True,
) -> None:
    """Serve the deployments (nightly refresh, weekly transfer grid, selection and its measurement on demand).

    Needs a Prefect server: `prefect server start` and PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)."""
    from dataclasses import replace

    from prefect.settings import PREFECT_API_URL

    from flows.deploy import SCHEDULES, serve_deployments
    from store.catalog import list_tasks
    from store.workspace import resolve_root

    if not PREFECT_API_URL.value():
        console.print(
            "[red]error:[/red] PREFECT_API_URL is not set; start a server (`prefect server start`) and point "
            "PREFECT_API_URL at it (e.g. http://127.0.0.1:4200/api): schedules and triggered runs need one."
        )
        raise typer.Exit(2)
    pairs = [item.partition("=") for item in cron or []]
    if any(not sep or name not in ("refresh", "measure_grid") for name, sep, _ in pairs):
        raise typer.BadParameter(
            f"expected NAME=CRON with NAME refresh or measure_grid; got {cron}", param_hint="--cron"
        )
    crons = {name: expression or None for name, _, expression in pairs}
    try:
        plan = replace(
            SCHEDULES,
            refresh=crons.get("refresh", SCHEDULES.refresh),
            measure_grid=crons.get("measure_grid", SCHEDULES.measure_grid),
        )
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--cron") from None
    names = [name for item in targets or [] for name in item.split(",") if name]
    missing = sorted(set(names) - set(list_tasks(Workspace(ctx.obj["workspace"]))["name"]))
    if missing:
        console.print(
            f"[red]error:[/red] targets {missing} are not stored tasks; add them with `transferscope tasks add`."
        )
        raise typer.Exit(2)
    console.print(
        f"serving workspace {resolve_root(ctx.obj['workspace'])} for targets {names or 'none (refresh only embeds)'}: "
        f"refresh {plan.refresh!r}, measure_grid {plan.measure_grid if names else None!r} ({plan.timezone}"
        + (")" if schedules else ", registered inactive)")
    )
    serve_deployments(ctx.obj["workspace"], names, device=ctx.obj["device"], schedules=plan, active=schedules)


@app.command()
def demo(
    ctx: typer.Context,
    data: Annotated[
        str | None, typer.Option(help="Folder of task directories (default: ../shared/data/tasks).")
    ] = None,
) -> None:
    """Run the pipeline end to end on real tasks and print what was stored."""
    from flows.demo import run_demo

    workspace = ctx.obj["workspace"] or os.environ.get(WORKSPACE_ENV) or "transferscope-workspace"
    run_demo(workspace=workspace, data=data, device=ctx.obj["device"], console=console, show=print_frame)


# Failures a user can act on (bad input, a missing or corrupt artefact, missing measurements). A bare KeyError is
# a bug, not one of these: only store.errors' KeyError subclasses (an unknown task, a missing split) are expected.
EXPECTED_ERRORS = (ExpectedError, ValueError, LookupError, FileNotFoundError)


def is_expected(err: BaseException | None) -> bool:
    return isinstance(err, EXPECTED_ERRORS) and type(err) is not KeyError


class HideExpectedTracebacks(logging.Filter):
    """Drops Prefect's log record of a flow or task run that raised an expected error (its traceback); the CLI
    prints the error itself as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and is_expected(record.exc_info[1]))


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """``command`` with its expected failures printed as one line (exit code 2); ``--debug`` keeps the traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx: Any = next((v for v in (*args, *kwargs.values()) if hasattr(v, "find_root")), None)  # click's context
        debug = bool(ctx is not None and (ctx.find_root().obj or {}).get("debug"))
        hide = HideExpectedTracebacks()
        loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
        for logger in loggers if not debug else []:
            logger.addFilter(hide)
        try:
            return command(*args, **kwargs)
        except EXPECTED_ERRORS as err:
            if debug or not is_expected(err):
                raise
            console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None
        finally:
            for logger in loggers:
                logger.removeFilter(hide)

    return run


for group in (app, tasks_app, esm_app):
    for command in group.registered_commands:
        command.callback = one_line_errors(command.callback)  # type: ignore[arg-type]


if __name__ == "__main__":
    app()
