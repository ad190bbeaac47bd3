"""The ``transferscope`` command line. One module per group of commands (`flows.cli.tasks`, `flows.cli.ranking`,
`flows.cli.selection`, `flows.cli.workspace`) over what they share (`flows.cli.common`: the Typer apps, global
options, tables and one-line errors). Commands import flows (and with them Prefect and torch) only when they run."""

from __future__ import annotations

import importlib

from flows.cli.common import app, wrap_errors

__all__ = ["app"]

for module in ("tasks", "ranking", "selection", "workspace"):  # each registers its commands on `app`, in help order
    importlib.import_module(f"flows.cli.{module}")
wrap_errors()
