"""What every ``transferscope`` command shares: the Typer apps and global options, the console and its tables,
the task runner the global options choose, and one-line errors."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from store.errors import ExpectedError, InputError
from store.workspace import WORKSPACE_ENV

if TYPE_CHECKING:
    from prefect import Flow

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
        except InputError as err:
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


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """'0,1,2' → (0, 1, 2); anything else is a bad value of ``option``."""
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated ints; got {text!r}", param_hint=option) from None


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str, option: str) -> float:
    """'15m' → 900.0, '1.5h' → 5400.0, '90s' or '90' → 90.0 (seconds); anything else (or <= 0) is a bad value of
    ``option``."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in DURATION_UNITS else (text, "s")
    try:
        seconds = float(number) * DURATION_UNITS[unit]
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise typer.BadParameter(
            f"expected a duration such as 15m, 1h or 90s; got {text!r}", param_hint=option
        ) from None
    return seconds


RECIPE_HELP = (
    "The sources' fine-tuning recipe: small (500 examples, 1 epoch, max_length 64: CPU demos; the default), medium "
    "(1,000 examples, 2 epochs: the transfer atlas's), paper (<= 10,000 examples, 3 epochs) or a JSON object of "
    'Recipe fields, e.g. \'{"epochs": 2, "max_examples": 1000}\'.'
)
OLD_RECIPE_HELP = "Deprecated name of --recipe (until the next release)."


def parse_recipe(
    recipe: str | None, old: str | None, *, option: str = "--recipe", old_option: str = "--budget", scope: str
) -> str | dict[str, Any]:
    """The fine-tuning recipe an option names: a recipe name as it is, a JSON object as a dict of Recipe fields
    (checked where it is used, `flows.rank.recipe_for_name`); None: ``small``. ``old`` is the value of the option's
    deprecated spelling ``old_option`` (a warning on stderr names ``scope``, the commands it is deprecated for);
    giving both is an error naming both."""
    if old is not None:
        if recipe is not None:
            raise ExpectedError(
                f"{old_option} and {option} both given: {old_option} is the deprecated name of {option}; give "
                f"{option} only"
            )
        typer.echo(f"warning: {old_option} is deprecated for {scope}; use {option}", err=True)
        recipe = old
    if recipe is None or not recipe.lstrip().startswith("{"):
        return "small" if recipe is None else recipe
    try:
        fields = json.loads(recipe)
    except json.JSONDecodeError as err:
        raise typer.BadParameter(
            f"expected a recipe name or a JSON object of Recipe fields; got {recipe!r} ({err})", param_hint=option
        ) from None
    if not isinstance(fields, dict):
        raise typer.BadParameter(f"expected a JSON object of Recipe fields; got {recipe!r}", param_hint=option)
    return fields


esm_app = typer.Typer(help="Build, export and import Embedding Space Maps.", no_args_is_help=True)
app.add_typer(esm_app, name="esm")


def is_expected(err: BaseException | None) -> bool:
    """Whether ``err`` is a failure the user can act on (bad input, a missing or corrupt artefact, missing
    measurements): only the typed `ExpectedError`s. A bare ValueError, KeyError or FileNotFoundError, from our code
    or numpy's, is a bug and keeps its traceback."""
    return isinstance(err, ExpectedError)


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
        except ExpectedError as err:
            if debug:
                raise
            console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None
        finally:
            for logger in loggers:
                logger.removeFilter(hide)

    return run


def wrap_errors() -> None:
    """Give every registered command one-line errors (call once, after every command module is imported)."""
    for group in (app, tasks_app, esm_app):
        for command in group.registered_commands:
            command.callback = one_line_errors(command.callback)  # type: ignore[arg-type]
