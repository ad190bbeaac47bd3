"""Flow ``recommend_source``: the source to fine-tune on first (or none), within a compute budget, verified by
measurement, with how sure it is.

1. **Screen**: the advisor (`flows.advisor.advise_sources`) on the checkpoint-free methods
   (`transfer.advisor.CHEAP_INPUTS`) over every source: seconds per source.
2. **Shortlist**: the advisor again on the screen's top M sources with every method
   (`transfer.advisor.DEFAULT_INPUTS`: also ESM-LogME, direct LogME and LEEP, one source fine-tune each at seed 0, the
   checkpoint the first pull of that source starts from). M is `SHORTLIST`, or fewer when a time budget cannot pay
   for them and still leave half of itself to measuring.
3. **Measure**: best-arm identification over the no-transfer baseline and the M sources
   (`transfer.advisor.best_arm.identify_best`: top-two Thompson sampling, Russo 2016), with the advisor's gains and
   intervals as priors and the seed noise pooled from what it learned from (`transfer.advisor.priors`). A pull of an
   arm is one target fine-tune at the arm's next seed k = 0, 1, ..., after the source's checkpoint of seed k (like
   the atlas, and like the simulation in `transfer.advisor.simulation`, a pull resamples both fine-tunes' seeds:
   a source pull at a new seed pays for a source fine-tune too). Every pull is an ordinary measured-transfer run
   (`flows.measure.measure_run`, under the advisor's recipe, so it feeds the advisor and the atlas like ``measure``);
   one already stored is read, not repeated. It stops when the answer's posterior probability of being the best
   reaches ``confidence``, or when ``runs`` pulls are made or the time budget cannot pay for another.
4. **Answer**: the arm of highest expected gain (the baseline: "don't transfer"), its gain with an interval, P(best),
   the runs it rests on and their cost; stored per arm in ``recommendations`` (`store.recommendations`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from scipy import stats

from flows.advisor import advise_sources, default_recipe
from flows.measure import BASELINE, MeasureRequest, measure_run, pending, plan_measure
from flows.rank import RankRequest, plan_rank
from flows.runners import gather
from store.advice import measured_knowledge
from store.catalog import get_task, list_tasks
from store.checkpoints import stored_checkpoints
from store.errors import InputError
from store.measured import done_transfer_runs
from store.rates import fine_tune_rate
from store.recommendations import ARM_COLUMNS, put_recommendation
from store.runs import recorded_run
from store.workspace import Workspace
from transfer.advisor import CHEAP_INPUTS, DEFAULT_INPUTS, GainPosterior, identify_best, mean_gains
from transfer.advisor.priors import pooled_noise, prior_sd, target_noise
from transfer.encoder import DEFAULT_MODEL
from transfer.finetune import Recipe

SHORTLIST = 5  # the simulation's (transfer.advisor.simulation.SHORTLIST)
DEFAULT_RUNS = 6  # issue #30's goal: the one-seed oracle's regret within 6 target fine-tunes
MAX_SEEDS = 16  # pulls per arm at most
PRIOR_LEVEL = 0.8  # the level of the interval shown with the answer
FALLBACK_PRIOR_SD = 5.0  # points: a prior's scale when nothing measured backs one (no learned advice, no atlas)
FALLBACK_NOISE_SD = 3.0  # points: the seed noise when nothing measured backs one (the atlas's median is about 3)


@dataclass(frozen=True)
class RecommendRequest:
    """What `recommend_source` is asked (checked on construction). ``sources``: default every other stored task.
    ``runs``: the target fine-tunes measuring may spend (default `DEFAULT_RUNS` when no ``seconds`` is given);
    ``seconds``: a time budget for all of it (screen, shortlist and measuring, at the workspace's measured rates);
    both: whichever ends first. ``confidence``: stop measuring once P(answer is best) reaches it. ``shortlist``: M.
    ``screen_inputs`` and ``inputs``: the advisor's inputs at the screen and on the shortlist; ``atlas``: what it
    learns from (`flows.advisor.advise_sources`)."""

    target: str
    sources: tuple[str, ...] | None = None
    runs: int | None = None
    seconds: float | None = None
    confidence: float = 0.9
    shortlist: int = SHORTLIST
    screen_inputs: tuple[str, ...] = CHEAP_INPUTS
    inputs: tuple[str, ...] = DEFAULT_INPUTS
    atlas: str | None = None
    model: str = DEFAULT_MODEL
    seed: int = 0
    device: str = "auto"
    workspace: str | None = None

    def __post_init__(self) -> None:
        if self.sources is not None:
            object.__setattr__(self, "sources", tuple(self.sources))
        if self.target in (self.sources or ()):
            raise InputError(f"The target {self.target!r} is also among the sources; a task cannot be its own source.")
        object.__setattr__(self, "screen_inputs", tuple(self.screen_inputs))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.runs is None and self.seconds is None:
            object.__setattr__(self, "runs", DEFAULT_RUNS)
        if self.runs is not None and (not isinstance(self.runs, int) or isinstance(self.runs, bool) or self.runs < 0):
            raise InputError(f"The 'runs' parameter of recommend_source must be an int >= 0. Got {self.runs!r}.")
        if self.seconds is not None and not (isinstance(self.seconds, int | float) and self.seconds > 0):
            raise InputError(
                f"The 'seconds' parameter of recommend_source must be a number of seconds > 0. Got {self.seconds!r}."
            )
        if not (isinstance(self.confidence, float | int) and 0 < self.confidence < 1):
            raise InputError(
                f"The 'confidence' parameter of recommend_source must be in (0, 1). Got {self.confidence!r} instead."
            )
        if not isinstance(self.shortlist, int) or isinstance(self.shortlist, bool) or self.shortlist < 1:
            raise InputError(
                f"The 'shortlist' parameter of recommend_source must be an int >= 1. Got {self.shortlist!r} instead."
            )


@dataclass(frozen=True)
class RecommendPlan:
    """A validated, costed `RecommendRequest`: the ``sources`` screened, the shortlist size ``shortlist`` (M), the
    most pulls ``runs`` (the request's, or what the time left after the shortlist pays for at the mean pull's cost),
    and the estimated seconds of each stage at the workspace's ``rate``: ``screen_s`` (its source fine-tunes: none),
    ``shortlist_s`` (the M costliest sources' fine-tunes and forward passes: an upper bound), ``target_run_s`` (one
    target fine-tune) and ``source_run_s`` (one source fine-tune at a new seed, the mean over the sources)."""

    request: RecommendRequest
    sources: tuple[str, ...]
    shortlist: int
    runs: int
    screen_s: float
    shortlist_s: float
    target_run_s: float
    source_run_s: float
    rate: str

    @property
    def measure_s(self) -> float:
        """The measuring stage at most: every pull a source pull at a new seed."""
        return self.runs * (self.target_run_s + self.source_run_s)

    @property
    def estimated_s(self) -> float:
        return self.screen_s + self.shortlist_s + self.measure_s

    def stages(self) -> pd.DataFrame:
        """The plan as a table: stage, what it computes, estimated seconds."""
        return pd.DataFrame(
            {
                "stage": ["screen", "shortlist", "measure"],
                "work": [
                    f"{len(self.sources)} sources: {', '.join(self.request.screen_inputs)}; the advisor",
                    f"top {self.shortlist}: {', '.join(self.request.inputs)} (a source fine-tune each where a method "
                    "reads the checkpoint); the advisor",
                    f"up to {self.runs} target fine-tunes (one at a time, until P(best) >= "
                    f"{self.request.confidence:g}); a source pull at a new seed also fine-tunes the source",
                ],
                "estimated_s": [self.screen_s, self.shortlist_s, self.measure_s],
            }
        )


def plan_recommend(request: RecommendRequest) -> RecommendPlan:
    """Check ``request`` against the workspace and cost it (`flows.rank.plan_rank` of every method over every
    source, under the advisor's recipe)."""
    r = request
    ws = Workspace(r.workspace)
    goal = get_task(ws, r.target)
    recipe = measured_knowledge(ws, default_recipe(r.model), exclude=r.target, atlas=r.atlas).recipe
    names = r.sources or tuple(n for n in list_tasks(ws)["name"] if n != r.target)
    common: dict[str, Any] = {"model": r.model, "seed": r.seed, "device": r.device, "workspace": str(ws.root)}
    every = plan_rank(RankRequest(r.target, tuple(names), r.inputs, recipe.source_recipe, **common))
    screen = plan_rank(RankRequest(r.target, tuple(names), r.screen_inputs, recipe.source_recipe, **common))
    rate = fine_tune_rate(ws)
    costs = sorted((w.estimated_s for w in every.work), reverse=True)
    target_recipe = Recipe(**recipe.target_recipe)
    examples = min(goal.counts().get("train", 0), target_recipe.max_examples)
    target_run_s = rate.seconds(examples * target_recipe.epochs)
    source_run_s = float(np.mean([rate.seconds(w.examples * w.epochs) for w in every.work])) if every.work else 0.0
    shortlist = min(r.shortlist, len(names))
    if r.seconds is not None:
        while shortlist > 1 and screen.estimated_s + sum(costs[:shortlist]) > r.seconds / 2:
            shortlist -= 1
    runs = r.runs if r.runs is not None else MAX_SEEDS * (shortlist + 1)
    if r.seconds is not None:
        left = r.seconds - screen.estimated_s - sum(costs[:shortlist])
        runs = min(runs, max(0, int(left // (target_run_s + source_run_s / 2))))  # half the pulls new checkpoints
    return RecommendPlan(
        r, tuple(names), shortlist, runs, screen.estimated_s, float(sum(costs[:shortlist])), target_run_s,
        source_run_s, rate.basis,
    )  # fmt: skip


def arm_priors(advice: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(prior gain, prior sd) per shortlisted source (points) from the advisor's ``advice`` (`advise_sources`'
    output): its expected gains and intervals (`transfer.advisor.priors.prior_sd`); without learned gains 0 and the
    spread of the measured ``runs``' mean gains (`FALLBACK_PRIOR_SD` without any)."""
    table = advice.set_index("source")
    spread = mean_gains(runs).gain.std(ddof=1) if runs.target.nunique() > 1 else np.nan
    fallback = float(spread) if np.isfinite(spread) and spread > 0 else FALLBACK_PRIOR_SD
    level = advice.attrs.get("level") or PRIOR_LEVEL
    return table.expected_gain.fillna(0.0).astype(float), prior_sd(table.lower, table.upper, level, fallback)


@flow(name="recommend_source", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def recommend_source(plan: RecommendPlan | RecommendRequest) -> pd.DataFrame:
    """Run a recommendation plan (a `RecommendRequest` is planned here, once, by `plan_recommend`): the module
    docstring's four stages. Returns one row per arm (`store.recommendations.ARM_COLUMNS`; source '' is no transfer;
    gains over it in points, the answer first) with ``attrs``: ``answer`` (a source, or '' for don't transfer),
    ``dont_transfer``, ``p_best``, ``lower``/``upper`` (the answer's gain interval at `PRIOR_LEVEL`), ``runs`` (pulls
    it rests on), ``new_runs`` (fine-tuned now), ``seconds``, ``stopped`` (``confident`` or ``budget``),
    ``shortlist``, ``message`` and ``run_id``."""
    if isinstance(plan, RecommendRequest):
        plan = plan_recommend(plan)
    r = plan.request
    ws = Workspace(r.workspace)
    started = time.perf_counter()
    common: dict[str, Any] = {
        "atlas": r.atlas, "model": r.model, "seed": r.seed, "device": r.device, "workspace": str(ws.root)
    }  # fmt: skip
    screen = advise_sources(r.target, list(plan.sources), inputs=r.screen_inputs, **common)
    shortlist = screen.source[: plan.shortlist].tolist()
    advice = advise_sources(r.target, shortlist, inputs=r.inputs, **common)
    knowledge = measured_knowledge(ws, default_recipe(r.model), exclude=r.target, atlas=r.atlas)
    gain, sd = arm_priors(advice, knowledge.runs)
    sources = gain.index.tolist()
    noise = (
        pooled_noise(target_noise(knowledge.runs), knowledge.tasks.kind, get_task(ws, r.target).kind)
        if len(knowledge.runs)
        else FALLBACK_NOISE_SD
    )
    correlation = float(advice.attrs.get("shared_error") or 0.0)
    posterior = GainPosterior(gain.to_numpy(), sd.reindex(sources).to_numpy(), noise, correlation)
    recipe = knowledge.recipe
    seeds = tuple(range(min(MAX_SEEDS, max(plan.runs, 1))))
    measuring = plan_measure(
        MeasureRequest(
            r.target, tuple(sources), seeds, recipe.source_recipe, recipe.target_recipe, max_test=recipe.max_test,
            model=recipe.model, device=r.device, workspace=str(ws.root),
        )
    )  # fmt: skip
    arms = [BASELINE, *sources]
    keys = {(source, seed): key for source, seed, key in measuring.start_keys}
    params = {
        "target": r.target,
        "shortlist": sources,
        "runs": plan.runs,
        "seconds": r.seconds,
        "confidence": r.confidence,
        "config": measuring.config,
        "seed": r.seed,
    }
    with recorded_run(ws, "recommend_source", params, device=r.device) as run:
        setup_json = json.dumps({**measuring.setup, "device": r.device})
        counts = dict.fromkeys(arms, 0)
        fresh: list[tuple[str, int]] = []

        def available() -> np.ndarray:
            """[K+1] the arms whose next pull the budget still pays for: a stored run costs nothing, else a target
            fine-tune (and the source's fine-tune at that seed when its checkpoint is not cached)."""
            left = np.inf if r.seconds is None else r.seconds - (time.perf_counter() - started)
            done, cached = done_transfer_runs(ws, measuring.config, r.target), stored_checkpoints(ws)
            allowed = []
            for source in arms:
                if counts[source] >= len(seeds):
                    allowed.append(False)
                    continue
                key = keys[source, counts[source]]
                if not pending(((source, counts[source], key),), done):
                    cost = 0.0
                else:
                    tune = source != BASELINE and key not in cached
                    cost = plan.target_run_s + (plan.source_run_s if tune else 0.0)
                allowed.append(cost <= left)
            return np.array(allowed, dtype=bool)

        def pull(arm: int) -> float:
            source = arms[arm]
            seed = counts[source]
            counts[source] += 1
            if pending(((source, seed, keys[source, seed]),), done_transfer_runs(ws, measuring.config, r.target)):
                future = measure_run.submit(
                    str(ws.root), r.target, source, seed, setup_json, measuring.config, run.run_id
                )
                gather(ws, [future], f"recommend {r.target}", "fine-tune")
                fresh.append((source, seed))
            values = ws.read("primary_transfer_results", {"config_hash": measuring.config, "target": r.target})
            mine = values[(values.source == source) & (values.seed == seed)]
            return 100 * float(mine.value.iloc[0])

        identified = identify_best(
            posterior,
            pull,
            plan.runs,
            confidence=r.confidence,
            rng=np.random.default_rng(r.seed),
            available=available,
        )
        p_best = posterior.p_best(np.random.default_rng(r.seed + 1))
        table = pd.DataFrame(
            {
                "source": arms,
                "prior_gain": [np.nan, *gain.to_numpy()],
                "prior_sd": [np.nan, *sd.reindex(sources).to_numpy()],
                "pulls": posterior.pulls(),
                "gain": identified.gain_mean,
                "gain_sd": identified.gain_sd,
                "p_best": p_best,
                "chosen": [i == identified.best for i in range(len(arms))],
            }
        )[ARM_COLUMNS]
        table = table.sort_values(["chosen", "gain"], ascending=False).reset_index(drop=True)
        seconds = time.perf_counter() - started
        put_recommendation(
            ws, run.run_id, run.config, r.target, table, confidence=r.confidence, stopped=identified.stopped,
            noise_sd=posterior.noise_sd(), correlation=correlation, seconds=seconds,
        )  # fmt: skip
    answer = arms[identified.best]
    best = table.iloc[0]
    chance = float(best.p_best)
    half = stats.norm.ppf(0.5 + PRIOR_LEVEL / 2) * best.gain_sd
    runs_used = len(identified.pulls)
    if answer == BASELINE:
        runner_up = table.iloc[1]
        headline = (
            f"Don't transfer: fine-tune on {r.target} alone. No source is likely to beat it "
            f"(P(no transfer is best) {chance:.2f}; the best source, {runner_up.source}, "
            f"{runner_up.gain:+.1f} points)"
        )
    else:
        headline = (
            f"Fine-tune on {answer} first: expected gain {best.gain:+.1f} points over {r.target} alone "
            f"({100 * PRIOR_LEVEL:g}% interval {best.gain - half:+.1f} to {best.gain + half:+.1f}), "
            f"P(best) {chance:.2f}"
        )
    why = "sure enough" if identified.stopped == "confident" else "budget spent"
    message = (
        f"{headline}. Measured: {runs_used} target fine-tunes ({len(fresh)} new) on the baseline and "
        f"{len(sources)} shortlisted sources of {len(plan.sources)}, in {seconds:.0f} s; stopped: {why} "
        f"(confidence {r.confidence:g})."
    )
    table.attrs.update(
        answer=answer, dont_transfer=answer == BASELINE, p_best=chance, lower=best.gain - half,
        upper=best.gain + half, runs=runs_used, new_runs=len(fresh), seconds=seconds, stopped=identified.stopped,
        shortlist=sources, message=message, run_id=run.run_id,
    )  # fmt: skip
    return table
