"""Commands for source ranking and measured transfer: ``recommend``, ``rank`` (and the advisor), ``measure``,
``evaluate``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

import pandas as pd
import typer
from rich.markup import escape

from flows.cli.common import (
    OLD_RECIPE_HELP,
    RECIPE_HELP,
    app,
    console,
    parse_duration,
    parse_ints,
    parse_recipe,
    print_frame,
    with_runner,
)
from store.errors import ExpectedError
from store.workspace import Workspace

if TYPE_CHECKING:
    from flows.rank import RankPlan


@app.command()
def recommend(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Target task.")],
    sources: Annotated[str | None, typer.Option(help="Comma-separated sources (default: every other task).")] = None,
    budget: Annotated[
        str | None,
        typer.Option(help="Time for all of it, e.g. 15m, 1h or 600s (at this workspace's measured rates)."),
    ] = None,
    runs: Annotated[
        int | None,
        typer.Option(help="Target fine-tunes to spend on measuring (default 6 when no --budget is given).", min=0),
    ] = None,
    confidence: Annotated[
        float, typer.Option(help="Stop measuring once the answer is the best with this probability.", min=0, max=1)
    ] = 0.9,
    shortlist: Annotated[int, typer.Option(help="Sources the checkpoint methods and measuring consider.", min=1)] = 5,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print the plan and its cost.")] = False,
) -> None:
    """Which source to fine-tune on first, or none: screen every source, shortlist the best, then fine-tune on
    TARGET a few times (the baseline and the shortlist, one seed at a time) until the answer is sure enough or the
    budget is spent. Prints the answer with its expected gain, an interval and P(best)."""
    from flows.recommend import RecommendRequest, plan_recommend, recommend_source

    request = RecommendRequest(
        target, tuple(sources.split(",")) if sources else None, runs=runs,
        seconds=None if budget is None else parse_duration(budget, "--budget"), confidence=confidence,
        shortlist=shortlist, device=ctx.obj["device"], workspace=ctx.obj["workspace"],
    )  # fmt: skip
    plan = plan_recommend(request)
    stages = plan.stages()
    stages["estimated"] = [f"{s / 60:.1f} min" for s in stages.pop("estimated_s")]
    print_frame(stages, title=f"recommend plan for {target}: about {plan.estimated_s / 60:.0f} min at most")
    console.print(f"rate: {plan.rate}", soft_wrap=True)
    if dry_run:
        return
    answer = pd.DataFrame(with_runner(ctx, recommend_source)(plan))
    shown = answer.assign(source=answer.source.replace("", "(no transfer)")).round(3)
    print_frame(shown, title=f"recommend for {target}: gains over no transfer, points")
    console.print(escape(answer.attrs["message"]), soft_wrap=True)


@app.command()
def rank(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Target task.")],
    top: Annotated[int, typer.Option(help="Sources to show.")] = 5,
    method: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated methods: advisor (the learned recommendation; the other methods listed become its "
            "inputs), esm-logme, direct-logme, leep, maxsim and the divergence measures (centroid-cosine, mmd, "
            "frechet, knn-kl, ...; see the README). Default direct-logme: the best single ranking on the committed "
            "atlas without measuring transfer (mean regret@1 3.8 points over 12 targets, ESM-LogME 5.5; one cached "
            "fine-tune per source). To decide, measure: `transferscope recommend`."
        ),
    ] = None,
    sources: Annotated[str | None, typer.Option(help="Comma-separated sources (default: every other task).")] = None,
    recipe: Annotated[
        str | None, typer.Option(help=RECIPE_HELP + " The advisor's inputs always use the atlas's recipe.")
    ] = None,
    budget: Annotated[str | None, typer.Option(help=OLD_RECIPE_HELP)] = None,
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
    """Rank source tasks for TARGET and print the top ones per method (fine-tuning missing source checkpoints
    first)."""
    from flows.rank import METHODS, RankRequest, plan_rank
    from store.catalog import list_tasks
    from transfer.advisor import BEST_RANKING_METHOD

    ws = Workspace(ctx.obj["workspace"])
    methods = tuple(method.split(",")) if method else (BEST_RANKING_METHOD,)
    source_recipe = parse_recipe(recipe, budget, scope="rank/measure")
    unknown = [m for m in methods if m not in (*METHODS, "advisor")]
    if unknown:
        raise ExpectedError(f"unknown method(s) {unknown}; choose from {['advisor', *METHODS]}")
    if verify and "advisor" not in methods:
        raise ExpectedError("--verify re-ranks the advisor's top sources: add --method advisor")
    if "advisor" in methods and (fuse or prefilter):
        raise ExpectedError("--fuse and --prefilter do not apply to --method advisor: it weighs its inputs itself")
    names = sources.split(",") if sources else [n for n in list_tasks(ws)["name"] if n != target]
    advised = "advisor" in methods
    if advised:
        from flows.advisor import default_recipe
        from store.advice import measured_knowledge
        from transfer.advisor import DEFAULT_INPUTS
        from transfer.encoder import DEFAULT_MODEL

        knowledge = measured_knowledge(ws, default_recipe(DEFAULT_MODEL), exclude=target)
        methods = tuple(m for m in methods if m != "advisor") or DEFAULT_INPUTS
        source_recipe = knowledge.recipe.source_recipe
    plan = plan_rank(
        RankRequest(
            target,
            tuple(names),
            methods,
            source_recipe,
            prefilter=prefilter,
            fuse=fuse,
            device=ctx.obj["device"],
            workspace=str(ws.root),
        )
    )
    print_plan(plan)
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


def print_plan(plan: RankPlan) -> None:
    """What a ranking will compute: its methods and sources and, when a method reads the sources' fine-tuned
    checkpoints, the source fine-tunes (each once, however many methods read it) and the time, per source."""
    methods, n = plan.request.methods, len(plan.sources)
    line = f"plan: {len(methods)} method(s) ({', '.join(methods)}) over {n} sources"
    if not plan.work:
        console.print(line, soft_wrap=True)
        return
    bound = "at most " if plan.request.prefilter else ""
    line += (
        f"; {bound}{plan.fine_tunes} source fine-tune(s) of {plan.recipe.epochs} epoch(s), about "
        f"{plan.estimated_s:.0f} s{' at most' if bound else ''} with the forward passes ({plan.rate})"
    )
    print_frame(plan.work_frame(), title=line)


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
    recipe: Annotated[str | None, typer.Option(help=RECIPE_HELP)] = None,
    target_recipe: Annotated[
        str | None,
        typer.Option(
            help="The target's fine-tuning recipe: small (<= 1,000 examples, 3 epochs, batch 16, lr 5e-5; the "
            "default) or a JSON object of Recipe fields."
        ),
    ] = None,
    budget: Annotated[str | None, typer.Option(help=OLD_RECIPE_HELP)] = None,
    advisor_recipe: Annotated[
        bool,
        typer.Option(
            "--advisor-recipe",
            help="Measure under the advisor's recipe (the shipped atlas's source and target recipes and held-out cap, "
            "instead of --recipe's and --target-recipe's), so the runs join what the advisor learns from.",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be computed.")] = False,
) -> None:
    """Measure real transfer to TARGET: fine-tune on it alone and after each source, per seed (resumable)."""
    from flows.measure import MeasureRequest, measure_transfer, plan_measure

    names = tuple(sources.split(",")) if sources else None
    common = {"device": ctx.obj["device"], "workspace": ctx.obj["workspace"]}
    source_recipe = parse_recipe(recipe, budget, scope="rank/measure")
    target_fields = parse_recipe(target_recipe, None, option="--target-recipe", scope="measure")
    if advisor_recipe:
        from flows.advisor import default_recipe
        from store.advice import measured_knowledge
        from transfer.encoder import DEFAULT_MODEL

        advised = measured_knowledge(Workspace(ctx.obj["workspace"]), default_recipe(DEFAULT_MODEL)).recipe
        request = MeasureRequest(
            target, names, parse_ints(seeds, "--seeds"), advised.source_recipe, advised.target_recipe,
            max_test=advised.max_test, model=advised.model, **common,
        )  # fmt: skip
    else:
        request = MeasureRequest(target, names, parse_ints(seeds, "--seeds"), source_recipe, target_fields, **common)
    plan = plan_measure(request)
    n_seeds, epochs = len(plan.request.seeds), plan.setup["target_recipe"]["epochs"]
    console.print(
        f"plan: {len(plan.todo)} target fine-tunes ({n_seeds} seeds x {len(plan.sources)} sources + baseline, "
        f"{n_seeds * (len(plan.sources) + 1) - len(plan.todo)} already stored), {plan.target_examples} examples x "
        f"{epochs} epochs each, and {plan.source_fine_tunes} source fine-tunes (checkpoints not yet cached, "
        f"{plan.source_example_epochs} example-epochs); about {plan.estimated_s / 60:.0f} min in all at {plan.rate}",
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
    shown = ("regret@1", "regret@3", "points_lost@1", "points_lost@3", "ndcg@5", "spearman", "kendall", "top1_hit")
    print_frame(table[[c for c in shown if c in table.columns]].reset_index(), title=f"ranking quality for {target}")
    console.print(
        "regret@k: % of the best performance (no transfer included) lost by taking the best of the top k; "
        "points_lost@k: the same loss in points of the target's primary metric (accuracy points for "
        "classification), what following the ranking costs; both lower is better, the rest higher.",
        soft_wrap=True,
    )
