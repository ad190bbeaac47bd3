"""What work costs on this machine, measured from past runs: the cost estimates of every ``--dry-run`` and plan.

`fine_tune_rate` is the median seconds per example-epoch of the newest fine-tunes the workspace stored (every
checkpoint records its wall time); with none stored yet it is the idle 2-core figure from ``MEASURED.md``, and the
rate says which it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.workspace import Workspace

DEFAULT_SECONDS_PER_EXAMPLE_EPOCH = 0.05  # MiniLM full fine-tuning on 2 idle CPU cores (MEASURED.md)
RECENT_FINE_TUNES = 20


@dataclass(frozen=True)
class Rate:
    """Seconds per example-epoch of fine-tuning and how that figure was derived (``basis``, in words)."""

    seconds_per_example_epoch: float
    basis: str

    def seconds(self, example_epochs: float) -> float:
        return example_epochs * self.seconds_per_example_epoch


def fine_tune_rate(ws: Workspace) -> Rate:
    """The median rate of the workspace's `RECENT_FINE_TUNES` newest stored fine-tunes, or the default."""
    rates = ws.read("fine_tune_rates", {"limit": RECENT_FINE_TUNES}).seconds_per_example_epoch
    if rates.empty:
        return Rate(
            DEFAULT_SECONDS_PER_EXAMPLE_EPOCH,
            f"{DEFAULT_SECONDS_PER_EXAMPLE_EPOCH} s per example-epoch, MiniLM on 2 idle cores; no fine-tune stored in "
            "this workspace yet",
        )
    median = float(rates.median())
    return Rate(median, f"{median:.3f} s per example-epoch, the median of the {len(rates)} newest fine-tunes here")
