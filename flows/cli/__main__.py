"""``python -m flows.cli``: the ``transferscope`` command line."""

from flows.cli import app

app()
