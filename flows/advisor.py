"""Flow ``advise_sources``: one learned, calibrated answer to "which source should I fine-tune on first, how much
will it help, and is it worth it at all" (`transfer.advisor`).

The input methods rank the sources first (`flows.rank.rank_sources`, stored as usual). The advisor then learns from
the measured transfer the workspace knows (`store.advice.measured_knowledge`: the shipped transfer atlas plus the
workspace's own measured and ranked targets, never the advised target itself) and predicts each source's gain in
points with a split-conformal interval. With fewer than `MIN_TRAINING_TARGETS` measured targets it falls back to the
reciprocal-rank fusion of the input methods and says so. When even the best source's upper bound is below zero,
the advice is "don't transfer". ``verify=K`` fine-tunes the top K sources and the no-transfer baseline on the
target (`flows.measure.measure_transfer`) and re-ranks them by the measured gains (`transfer.advisor.verified_ranking`).
Both rankings are stored in ``pair_scores`` (methods ``advisor`` and ``advisor+verify``) and, with intervals and
contributions, in ``advice``.
"""

from __future__ import annotations

import pandas as pd
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.measure import MeasureRequest, measure_transfer
from flows.rank import RankPlan, RankRequest, fusion_inputs, rank_sources, recipe_for_name
from store.advice import SCORE_COLUMNS, Knowledge, measured_knowledge, put_advice
from store.errors import InputError
from store.measured import MeasurementRecipe
from store.rankings import put_ranking
from store.runs import recorded_run
from store.workspace import Workspace
from transfer.advisor import DEFAULT_INPUTS, advise_target, describe_tasks, mean_gains, verified_ranking
from transfer.encoder import DEFAULT_MODEL
from transfer.finetune import TARGET_RECIPE
from transfer.fusion import fuse_rankings

MIN_TRAINING_TARGETS = 3  # the learner is chosen by leave-one-target-out error among its training targets
ALPHA = 0.2  # 80% intervals
ORIGINS = {
    "atlas": "the atlas",
    "workspace": "this workspace",
    "atlas+workspace": "the atlas with this workspace's seeds",
}
# Without an atlas the advisor learns from measurements under `transferscope measure`'s default recipes.
DEFAULT_MAX_TEST = 2000


def default_recipe(model: str) -> MeasurementRecipe:
    """The recipe the advisor learns under when there is no atlas: `measure`'s defaults with ``model``."""
    return MeasurementRecipe(model, recipe_for_name("small").as_dict(), TARGET_RECIPE.as_dict(), DEFAULT_MAX_TEST)


def knowledge_summary(knowledge: Knowledge) -> str:
    """Where the advisor's training targets come from, and which workspace measurements it left out, in words."""
    counts = pd.Series(knowledge.origin, dtype=object).value_counts()
    parts = [f"{counts[o]} from {ORIGINS[o]}" for o in counts.index]
    summary = f"{len(knowledge.origin)} measured targets ({', '.join(parts) or 'none'})"
    if knowledge.ignored:
        summary += "; not learned from: " + "; ".join(f"{t} ({why})" for t, why in sorted(knowledge.ignored.items()))
    return summary


def fused_advice(rankings: pd.DataFrame, sources: list[str]) -> pd.DataFrame:
    """The fallback: reciprocal-rank fusion of the input methods' ranks, no gain estimates (index source)."""
    by_method = {m: r for m, r in rankings.groupby("method")}
    fused = pd.Series(fuse_rankings(fusion_inputs(by_method, sources)), name="score")
    table = pd.DataFrame({"score": fused}).sort_values("score", ascending=False)
    table["rank"] = range(1, len(table) + 1)
    table["top_features"] = [{} for _ in range(len(table))]
    return table


@flow(name="advise_sources", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def advise_sources(
    target: str,
    sources: list[str] | None = None,
    inputs: tuple[str, ...] = DEFAULT_INPUTS,
    verify: int = 0,
    verify_seeds: tuple[int, ...] = (0,),
    alpha: float = ALPHA,
    atlas: str | None = None,
    model: str = DEFAULT_MODEL,
    seed: int = 0,
    device: str = "auto",
    workspace: str | None = None,
    input_plan: RankPlan | None = None,
) -> pd.DataFrame:
    """Advise which of ``sources`` (default: every other stored task) to fine-tune on before ``target``.

    ``inputs``: the ranking methods the advisor reads (computed by `rank_sources` under the atlas's source recipe;
    default: `transfer.advisor.DEFAULT_INPUTS`, every method the atlas scores, including the three that read each
    source's fine-tuned checkpoint; `transfer.advisor.CHEAP_INPUTS` costs seconds per source). ``verify``:
    fine-tune the top ``verify`` sources and the baseline on the target with ``verify_seeds`` and re-rank.
    ``atlas``: the atlas folder to learn from (None: ``$TRANSFERSCOPE_ATLAS`` or the shipped atlas; ``"none"``: the
    workspace alone; `store.advice.atlas_folder`).
    Returns per source (best first): rank, expected_gain, lower, upper (points; NaN on the fallback),
    top_features, and measured_gain when verified; ``attrs`` hold ``basis`` ('learned' or 'fused'),
    ``dont_transfer``, ``learner``, ``level``, ``shared_error`` (`SourceAdvisor.shared_error`; 0 on the
    fallback), ``message`` and the run id. ``input_plan``: the plan of the input rankings when
    the caller already made it (`flows.rank.plan_rank` of ``inputs`` under the atlas's recipe), so nothing re-plans."""
    if not isinstance(verify, int) or isinstance(verify, bool) or verify < 0:
        raise InputError(f"The 'verify' parameter of advise_sources must be an int >= 0. Got {verify!r} instead.")
    ws = Workspace(workspace)
    knowledge = measured_knowledge(ws, default_recipe(model), exclude=target, atlas=atlas)
    recipe = knowledge.recipe
    source_recipe = recipe.source_recipe
    asked = None if sources is None else tuple(sources)
    request = RankRequest(
        target, asked, tuple(inputs), source_recipe, model=model, seed=seed, device=device, workspace=str(ws.root)
    )
    if input_plan is not None and input_plan.request != request:
        raise InputError(f"The 'input_plan' parameter of advise_sources plans {input_plan.request}, not {request}.")
    ranked = rank_sources(input_plan or request)
    rankings = pd.DataFrame(ranked)
    names = sorted(rankings.source.unique())
    params = {
        "target": target,
        "sources": names,
        "inputs": list(inputs),
        "alpha": alpha,
        "verify": verify,
        "verify_seeds": list(verify_seeds),
        "knowledge": knowledge.origin,
        "ignored": knowledge.ignored,
        "recipe": source_recipe,
        "model": model,
        "seed": seed,
    }
    with recorded_run(ws, "advise_sources", params, device=device) as run:
        run_id, config = run.run_id, run.config
        training = len(knowledge.origin)
        if training >= MIN_TRAINING_TARGETS:
            known = knowledge.scores[knowledge.scores.method.isin(inputs)]  # learn only from what the target has
            scores = pd.concat([known, rankings.assign(target=target)[SCORE_COLUMNS]], ignore_index=True)
            advice = advise_target(
                scores, mean_gains(knowledge.runs), describe_tasks(knowledge.tasks), target, alpha=alpha, seed=seed
            )
            table, basis, learner, dont = advice.gains, "learned", advice.learner, advice.dont_transfer
            level: float | None = advice.level
            shared_error = advice.shared_error
            order = table.expected_gain
            message = (
                f"advisor: learned from {knowledge_summary(knowledge)} with {learner}; {100 * advice.level:g}% "
                "intervals (CV+ over targets) in points over no transfer, calibrated on mean gains over the atlas's "
                "seeds: a single verification run varies more"
            )
        else:
            table, basis, learner, dont, level = fused_advice(rankings, names), "fused", None, False, None
            shared_error = 0.0
            order = table.score
            message = (
                f"advisor: no model, only {knowledge_summary(knowledge)} (it needs {MIN_TRAINING_TARGETS} measured and "
                f"ranked targets); fused ranks of {', '.join(inputs)} (reciprocal-rank fusion), no gain estimates"
            )
        put_ranking(ws, run_id, config, target, "advisor", order.to_dict(), higher_is_better=True)
        put_advice(
            ws, run_id, config, target, "advisor", table, basis=basis, learner=learner, dont_transfer=dont,
            training_targets=training, level=level,
        )  # fmt: skip
        method = "advisor"
        if verify:
            summary = measure_transfer(
                MeasureRequest(
                    target,
                    tuple(table.index[:verify]),
                    tuple(verify_seeds),
                    source_recipe,
                    recipe.target_recipe,
                    max_test=recipe.max_test,  # the advisor's own recipe, so the runs can join what it learns from
                    model=model,
                    device=device,
                    workspace=str(ws.root),
                )
            )
            measured = 100 * pd.DataFrame(summary).set_index("source").mean_gain
            reranked = verified_ranking(order, measured, verify).sort_values(ascending=False)
            table = table.loc[reranked.index].assign(measured_gain=measured.reindex(reranked.index))
            table["rank"] = range(1, len(table) + 1)
            # After verification, "don't transfer" needs every verified gain <= 0 and every other upper bound < 0.
            dont = (
                basis == "learned" and measured.max() <= 0 and bool((table.upper.drop(index=measured.index) < 0).all())
            )
            put_ranking(ws, run_id, config, target, "advisor+verify", reranked.to_dict(), higher_is_better=True)
            put_advice(
                ws, run_id, config, target, "advisor+verify", table, basis=basis, learner=learner, dont_transfer=dont,
                training_targets=training, level=level,
            )  # fmt: skip
            method = "advisor+verify"
            message += f"; verified the top {verify} by fine-tuning on {target} (seeds {list(verify_seeds)})"
        if dont:
            evidence = f"the best source's upper bound is {table.upper.max():+.1f} points"
            if verify:
                evidence = (
                    f"the verified sources measured at most {measured.max():+.1f} points and no other source's "
                    "upper bound reaches 0"
                )
            message += (
                f"\nDon't transfer: no source is expected to help {target} ({evidence}); fine-tune on {target} alone."
            )
    out = table.drop(columns=["score"], errors="ignore").rename_axis("source").reset_index()
    out.attrs.update(
        basis=basis, dont_transfer=dont, learner=learner, message=message, run_id=run_id, method=method, level=level,
        shared_error=shared_error, failures=getattr(ranked, "attrs", {}).get("failures", {}),
    )  # fmt: skip
    return out
