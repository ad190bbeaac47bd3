"""Commands for tasks, embeddings and ESMs: ``tasks add/list``, ``embed``, ``esm build/list/export/import``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from flows.cli.common import (
    OLD_RECIPE_HELP,
    RECIPE_HELP,
    app,
    console,
    esm_app,
    parse_recipe,
    print_frame,
    tasks_app,
    with_runner,
)
from store.errors import InputError
from store.workspace import Workspace


@tasks_app.command("add")
def tasks_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Task name.")],
    path: Annotated[
        str,
        typer.Argument(
            help="Task directory, a jsonl/csv/parquet file, or hf:DATASET (a hub name, a local dataset repository "
            "or a save_to_disk folder)."
        ),
    ],
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
    config: Annotated[str | None, typer.Option(help="Configuration of an hf: dataset (e.g. emotion).")] = None,
) -> None:
    """Validate a task and store it in the workspace (nothing is written if validation fails)."""
    from store.catalog import put_task
    from store.hf_tasks import load_hf_task
    from store.task_files import load_task_dir, load_task_file

    options: dict[str, Any] = {
        "kind": kind,
        "text_column": text_column,
        "text_pair_column": text_pair_column,
        "label_column": label_column,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the task's warnings are printed once, below
        if path.startswith("hf:"):
            task = load_hf_task(path[3:], name, config=config, **options)
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


@esm_app.command("build")
def esm_build(
    ctx: typer.Context,
    sources: Annotated[list[str], typer.Argument(help="Source tasks.")],
    recipe: Annotated[str | None, typer.Option(help=RECIPE_HELP)] = None,
    budget: Annotated[str | None, typer.Option(help=OLD_RECIPE_HELP)] = None,
) -> None:
    """Fine-tune each source (or reuse its checkpoint) and fit its ESM."""
    from flows.rank import build_esms

    keys = with_runner(ctx, build_esms)(
        sources=sources,
        recipe=parse_recipe(recipe, budget, scope="esm build"),
        device=ctx.obj["device"],
        workspace=ctx.obj["workspace"],
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

    if not Path(directory).is_dir():
        raise InputError(f"The DIRECTORY of `esm import` must be an existing folder. Got '{directory}' instead.")
    fingerprint = model_fingerprint(resolve_model_path(base_model))
    sources = import_esms(Workspace(ctx.obj["workspace"]), directory, base_fp=fingerprint)
    console.print(f"imported {len(sources)} ESMs: {', '.join(sources)}")
