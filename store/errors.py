"""Expected failures: bad input, a missing or corrupt stored artefact, missing measurements. The CLI prints their
message as one line and exits 2 (a traceback only with ``--debug``); anything else is a bug and keeps its
traceback."""

from __future__ import annotations

from transfer.errors import ExpectedError, InputError, MissingDependencyError, MissingResultError

__all__ = [
    "CorruptArtifactError", "ExpectedError", "InputError", "MissingDependencyError", "MissingResultError",
    "MissingSplitError", "UnknownTaskError",
]  # fmt: skip


class UnknownTaskError(ExpectedError, KeyError):
    """No task of that name is stored."""


class MissingSplitError(ExpectedError, KeyError):
    """A task lacks the split that was asked for."""


class CorruptArtifactError(ExpectedError, RuntimeError):
    """A stored file is missing, fails its checksum or no longer matches the catalog."""
