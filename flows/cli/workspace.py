"""Commands for the workspace as a whole: ``export``/``import``, ``sql``, ``gc``, ``report``, ``serve``, ``demo``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import app, console, print_frame
from store.errors import InputError
from store.workspace import WORKSPACE_ENV, SQLError, Workspace


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

    ws = import_workspace(directory, resolve_root(ctx.obj["workspace"]))
    console.print(f"imported into {ws.root}; every artefact matches its checksum")


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

    index = build_report(Workspace(ctx.obj["workspace"]), out, target=target)
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
    except InputError as err:
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
