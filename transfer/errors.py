"""Failures a caller can act on, typed so that nothing else is mistaken for one.

The CLI prints an `ExpectedError`'s message as one line and exits 2; every other exception (a numpy or pandas
error inside a method included) is a bug and keeps its traceback. `transfer/` and `selection/` raise these where
they detect bad input; `store.errors` adds the storage failures.
"""

from __future__ import annotations


class ExpectedError(Exception):
    """A failure the user can act on; its message says what to do."""

    def __str__(self) -> str:  # KeyError's own str() would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class InputError(ExpectedError, ValueError):
    """A parameter, file or value that is not what was expected; the message names it, its value and what was
    expected ("The 'k' parameter of gio_select must be a positive int. Got -1 instead.")."""


class MissingResultError(ExpectedError, LookupError):
    """A stored result that was asked for does not exist yet; the message says which command computes it."""


class MissingDependencyError(ExpectedError, ImportError):
    """An optional package that the requested feature needs is not installed; the message names the package and
    the pip command that installs it."""
