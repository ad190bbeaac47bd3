"""Deployments: the flows a workspace runs on a schedule or on demand, served by one long-running process.

Prefect 3's convention for a pip-installed tool: `Flow.to_deployment` + `prefect.serve` (no work pool, no image,
no ``prefect.yaml``): the serving process registers the deployments with the Prefect API and runs every flow run
of them in a subprocess of its own, in the environment it was started in. Four deployments, each named
``transferscope``:

- ``refresh/transferscope`` (nightly by default): `refresh` re-embeds every stored task (`embed_tasks`) and
  re-ranks the sources of the configured targets (`rank_sources`). Embeddings, checkpoints and ESMs are cached by
  content, and a target whose ranking inputs are unchanged since its last refresh is skipped, so a night without
  new or changed tasks computes nothing.
- ``measure_grid/transferscope`` (weekly by default): `measure_grid` measures real transfer to each target
  (`measure_transfer`, resumable: stored fine-tunes are skipped) and scores the stored rankings against it
  (`evaluate_rankings`).
- ``select_training_subset/transferscope``: subset selection on demand (no schedule); its one parameter is a
  `flows.select.SelectionRequest`, e.g.
  ``prefect deployment run select_training_subset/transferscope --params '{"plan": {"pool": ..., "targets": [...]}}'``.
- ``measure_selection/transferscope``: on demand, what each method's subsets are worth (`measure_selection`:
  fine-tune on them and on the whole pool; resumable); its parameter is a `MeasureSelectionRequest`.

Schedules live in one place, `SCHEDULES` (override with ``dataclasses.replace``, or ``transferscope serve --cron``).
The workspace (an absolute path resolved when serving) is the scheduled deployments' ``workspace`` parameter and,
for the on-demand requests that name none, ``$TRANSFERSCOPE_WORKSPACE`` of the serving process, which every flow
run inherits; so runs write to the workspace the server was started for, whatever their working directory. An
on-demand request names its own ``device`` (default ``"auto"``: CUDA when present); ``serve --device`` sets the
scheduled deployments'.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from prefect import Flow, flow, get_run_logger, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.embed import embed_tasks
from flows.evaluate import evaluate_rankings
from flows.measure import MeasureRequest, measure_transfer
from flows.measure_selection import measure_selection
from flows.rank import RankRequest, rank_sources
from flows.select import select_training_subset
from store.catalog import list_tasks
from store.errors import InputError
from store.runs import config_hash, recorded_run
from store.workspace import WORKSPACE_ENV, Workspace, resolve_root
from transfer.advisor import BEST_RANKING_METHOD
from transfer.encoder import DEFAULT_MODEL

DEPLOYMENT = "transferscope"  # every deployment's name; full names are "<flow>/transferscope"


@dataclass(frozen=True)
class Schedules:
    """Cron expressions (in ``timezone``) of the scheduled deployments; ``None`` serves one on demand only."""

    refresh: str | None = "0 2 * * *"  # nightly at 02:00
    measure_grid: str | None = "0 3 * * 6"  # weekly, Saturdays at 03:00
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InputError(f"The 'timezone' of Schedules must be an IANA time zone. Got {self.timezone!r}.") from None
        for name in ("refresh", "measure_grid"):
            expression = getattr(self, name)
            if expression is None:
                continue
            try:
                Cron(expression)
            except ValueError as err:
                raise InputError(
                    f"{err}; the {name!r} parameter of Schedules must be a cron string such as '0 2 * * *', or None."
                ) from None


SCHEDULES = Schedules()


@flow(name="refresh")
def refresh(
    targets: list[str] | None = None,
    methods: tuple[str, ...] = (BEST_RANKING_METHOD,),
    recipe: str | dict[str, Any] = "small",
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    workspace: str | None = None,
) -> dict[str, str]:
    """Embed every stored task (cached by content), then rank the sources (every other stored task) of each of
    ``targets`` with ``methods``, the sources fine-tuned under ``recipe`` (as in `rank_sources`).

    A target is ranked again only when its ranking inputs changed since its last completed refresh: the content of
    any stored task (a new, changed or removed task changes the sources and the leakage guard), or the options.
    Each refresh of a target is recorded as a ``refresh`` run whose config hash covers those inputs. Returns
    ``{target: "ranked" | "unchanged"}``."""
    logger = get_run_logger()
    ws = Workspace(workspace)
    stored = list_tasks(ws)
    unknown = [t for t in targets or [] if t not in set(stored["name"])]
    if unknown:
        raise InputError(f"The 'targets' parameter of refresh names tasks that are not stored: {unknown}.")
    embed_tasks(model=model, device=device, workspace=str(ws.root))
    contents = dict(zip(stored["name"], stored["content_hash"], strict=True))
    outcome: dict[str, str] = {}
    for target in targets or []:
        # "budget" is the recipe's name before it was renamed: the key stays, so stored refresh hashes still match
        params = {"target": target, "methods": list(methods), "budget": recipe, "model": model, "tasks": contents}
        if _refreshed(ws, config_hash(params)):
            logger.info("%s: tasks and options unchanged since the last refresh; not ranked again", target)
            outcome[target] = "unchanged"
            continue
        with recorded_run(ws, "refresh", params, device=device):
            rank_sources(RankRequest(target, None, methods, recipe, model, device=device, workspace=str(ws.root)))
        outcome[target] = "ranked"
    return outcome


def _refreshed(ws: Workspace, digest: str) -> bool:
    """Whether a ``refresh`` run with this config hash completed."""
    found = ws.sql(
        "SELECT count(*) AS n FROM runs WHERE flow = 'refresh' AND status = 'completed' AND config_hash = $digest",
        {"digest": digest},
    )
    return bool(found["n"].iloc[0])


@flow(name="measure_grid")
def measure_grid(
    targets: list[str],
    sources: list[str] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    recipe: str | dict[str, Any] = "small",
    target_recipe: str | dict[str, Any] = "small",
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    workspace: str | None = None,
) -> dict[str, pd.DataFrame]:
    """The measured-transfer grid: for each of ``targets``, `measure_transfer` from ``sources`` (default: every
    other stored task; a target is never its own source) over ``seeds`` (encoder ``model`` fine-tuned with recipes
    ``recipe`` for the sources and ``target_recipe`` for the targets, as in `MeasureRequest`), then
    `evaluate_rankings` of its stored rankings against the measurement. Finished fine-tunes are stored and skipped,
    so an interrupted or extended grid resumes. Returns ``{target: ranking-quality table}`` (method × metric)."""
    root = str(Workspace(workspace).root)
    others = {t: None if sources is None else [s for s in sources if s != t] for t in targets}
    empty = [t for t, names in others.items() if names == []]
    if empty:
        raise InputError(
            f"The 'sources' parameter of measure_grid leaves no source for targets {empty}; got {sources}."
        )
    quality: dict[str, pd.DataFrame] = {}
    for target in targets:
        names = others[target]
        names_of = None if names is None else tuple(names)
        measure_transfer(
            MeasureRequest(target, names_of, seeds, recipe, target_recipe, model=model, device=device, workspace=root)
        )
        quality[target] = evaluate_rankings(target=target, workspace=root)
    return quality


def build_deployments(
    workspace: str | None = None,
    targets: list[str] | None = None,
    *,
    device: str = "auto",
    schedules: Schedules = SCHEDULES,
    active: bool = True,
) -> list[RunnerDeployment]:
    """The four deployments for ``workspace`` (resolved to an absolute path: default ``$TRANSFERSCOPE_WORKSPACE``
    or ``./transferscope-workspace``), with ``targets`` and ``device`` as the scheduled ones' default parameters
    (the on-demand ones take one request each, see the module docstring).

    Without ``targets`` the refresh only embeds, and the grid (whose ``targets`` parameter is required) gets its
    schedule inactive, to be run with explicit targets. ``active=False`` registers every schedule inactive (the
    Prefect UI or ``prefect deployment schedule resume`` can activate them). Schedules are registered even when
    inactive because re-serving a deployment without schedules would leave its old, possibly active, ones."""
    root = str(resolve_root(workspace))
    common: dict[str, Any] = {"device": device, "workspace": root}
    targeted = {**common, "targets": targets} if targets else common

    def deploy(flow_: Flow[..., Any], parameters: dict[str, Any], cron: str | None, on: bool) -> RunnerDeployment:
        deployment = flow_.to_deployment(
            DEPLOYMENT,
            schedules=None if cron is None else [Cron(cron, timezone=schedules.timezone, active=on)],
            parameters=parameters,
            entrypoint_type=EntrypointType.MODULE_PATH,
            tags=["transferscope"],
        )
        return cast(RunnerDeployment, deployment)  # a deployment, not a coroutine: this is synchronous code

    return [
        deploy(refresh, targeted, schedules.refresh, active),
        deploy(measure_grid, targeted, schedules.measure_grid, active and bool(targets)),
        deploy(select_training_subset, {}, None, False),
        deploy(measure_selection, {}, None, False),
    ]


def serve_deployments(
    workspace: str | None = None,
    targets: list[str] | None = None,
    *,
    device: str = "auto",
    schedules: Schedules = SCHEDULES,
    active: bool = True,
) -> None:
    """Register the deployments of `build_deployments` with the Prefect API (``PREFECT_API_URL``) and run their
    flow runs until the process is stopped (Ctrl-C or SIGTERM; schedules are paused on shutdown and resumed by the
    next start). On-demand requests that name no workspace run in ``workspace``."""
    os.environ[WORKSPACE_ENV] = str(resolve_root(workspace))
    serve(*build_deployments(workspace, targets, device=device, schedules=schedules, active=active))
