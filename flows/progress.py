"""One progress style for every step that can take more than a few seconds (embedding, fine-tuning, a measurement
grid, ESM builds, GIO iterations, gradient scoring): a tqdm bar (done/total, rate, ETA) on an interactive terminal,
and one log line per finished step otherwise. ``$TRANSFERSCOPE_PROGRESS`` = ``always`` or ``never`` overrides the
terminal check (``always`` for a terminal that is not detected as one)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

PROGRESS_ENV = "TRANSFERSCOPE_PROGRESS"


def interactive() -> bool:
    """Whether progress is drawn as a bar: ``$TRANSFERSCOPE_PROGRESS`` if set, else whether stderr is a terminal."""
    forced = os.environ.get(PROGRESS_ENV, "").lower()
    if forced in ("always", "never"):
        return forced == "always"
    return sys.stderr.isatty()


def step_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow or task run (so the line lands with the run), else this module's."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@contextmanager
def progress(step: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``: call it with the units finished since the last call. Draws a bar when `interactive`;
    otherwise logs one line when the step ends: "<step>: <done>/<total> <unit>s in <s> s (<rate>/s)"."""
    started = time.perf_counter()
    if interactive():
        with tqdm(total=total, desc=step, unit=unit, file=sys.stderr, dynamic_ncols=True) as bar:
            yield bar.update
        return
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n

    yield advance
    seconds = time.perf_counter() - started
    rate = f", {done / seconds:.1f} {unit}s/s" if seconds > 0 and done else ""
    step_logger().info("%s: %d/%d %ss in %.1f s%s", step, done, total, unit, seconds, rate)
