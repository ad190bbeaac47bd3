"""Selection quality: what a training subset is worth when trained on, as a share of the whole pool and paired
against random selection. The arithmetic, `summarise_selection`, lives in `transfer.arms` so that the read side
(`store.results`, which may import transfer/ but not selection/) shares it; it is re-exported here for the
selection side (``measure_selection``, ``bench selection_quality``)."""

from __future__ import annotations

from transfer.arms import ALL_TARGETS, COLUMNS, FULL, RANDOM, summarise_selection

__all__ = ["ALL_TARGETS", "COLUMNS", "FULL", "RANDOM", "summarise_selection"]
