"""Task reader for Hugging Face datasets (the ``hf`` extra): splits and class names mapped onto the task model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from store.errors import MissingDependencyError
from store.task_records import task_from_table
from store.tasks import SPLITS, Kind, Task, TaskValidationError, check_name


def load_hf_task(
    dataset: str,
    name: str | None = None,
    *,
    config: str | None = None,
    kind: Kind | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str = "label",
) -> Task:
    """Load a Hugging Face dataset (needs the ``hf`` extra): a hub name (a reachable hub, or the local datasets
    cache), a local dataset repository (``datasets.load_dataset``: data files such as
    ``data/train-00000-of-00001.parquet``, configs from its README's YAML header) or a folder written by
    ``save_to_disk`` (``datasets.load_from_disk``; a saved single dataset is its recorded split, else ``train``).

    Split names ``validation``/``dev``/``val`` map to ``validation``; class names come from the ``ClassLabel``
    feature when the dataset declares one."""
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError(
            "Loading Hugging Face datasets needs the 'datasets' package: pip install 'transferscope[hf]'."
        ) from None
    saved_files = (datasets.config.DATASETDICT_JSON_FILENAME, datasets.config.DATASET_STATE_JSON_FILENAME)
    if any((Path(dataset) / file).is_file() for file in saved_files):  # a folder written by save_to_disk
        if config is not None:
            raise TaskValidationError(
                f"The 'config' parameter must be None for a folder written by save_to_disk ({dataset!r}). "
                f"Got {config!r} instead."
            )
        loaded = datasets.load_from_disk(dataset)
        if isinstance(loaded, datasets.Dataset):
            loaded = {str(loaded.split or "train"): loaded}
    else:
        try:
            loaded = datasets.load_dataset(dataset, config)
        except (FileNotFoundError, ConnectionError, ValueError) as err:  # no such dataset or config; hub unreachable
            raise TaskValidationError(f"Dataset {dataset!r} (config {config!r}) could not be loaded: {err}") from None
    aliases = {"dev": "validation", "val": "validation"}
    frames = []
    label_names = None
    for split_name, part in loaded.items():
        split = aliases.get(split_name, split_name)
        if split not in SPLITS:
            continue
        feature = part.features.get(label_column)
        if getattr(feature, "names", None):
            label_names = list(feature.names)
        frame = part.to_pandas()
        frame["split"] = split
        frames.append(frame)
    if not frames:
        raise TaskValidationError(f"Dataset {dataset!r}: no split among {list(SPLITS)}; found {list(loaded)}.")
    return task_from_table(
        pd.concat(frames, ignore_index=True),
        check_name(name or dataset.replace("/", "__")),
        kind=kind,
        label_names=label_names,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        source_uri=f"hf://{dataset}" + (f"/{config}" if config else ""),
    )
