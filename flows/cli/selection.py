"""Commands for training-data selection: ``select`` and ``measure-selection``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from flows.cli.common import app, console, print_frame, with_runner
from store.workspace import Workspace

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
    method: Annotated[
        str,
        typer.Option(
            help="gio, icons, vog or random. No method beat random on a pool of mixed review domains (20%: random "
            "98.1% of the full pool's score, GIO 98.2%, stratified ICONS 89.9%, ICONS 81.0%); on a binary task ICONS "
            "picks one class (stratify=true: the rows a warm-up model already gets right), which helped only at "
            "10% of one benchmark pool (96% vs random's 83%). The plan says what measured data (this pool's "
            "measure-selection, else the held-out pools of bench selection_generalisation) shows against random, "
            "and when nothing shows the method beating it, that random is as good and cheap."
        ),
    ] = "gio",
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

    if out is not None and not out.parent.is_dir():
        raise typer.BadParameter(f"expected a file in an existing folder; got '{out}'", param_hint="--out")
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
    embeds = ", ".join(f"{e.task}/{e.split} ({e.n} texts)" for e in plan.to_embed) or "nothing"
    console.print(
        f"plan: {method} on {plan.n_pool} pool examples ({len(plan.leaked_ids)} dropped as leaked into a target's "
        f"evaluation data), {plan.n_target} target examples, budget "
        f"{plan.n_budget if plan.n_budget is not None else 'GIO stopping rule'}"
        f"{', quantised' if plan.quantize else ''}; embed {embeds}; about {plan.estimated_s:.0f} s"
        + (" (already stored)" if plan.stored else f" (fine-tuning at {plan.rate})")
    )
    evidence = plan.evidence()
    if evidence is not None:
        console.print(f"evidence: {escape(evidence.message)}", soft_wrap=True)
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
