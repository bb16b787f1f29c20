"""Datasets: catalog, readers, specs, few-shot splits, synthetic data (no torch here).

The torch side (transforms to tensors, loaders, samplers) lives in ``data.build`` and
``data.mapper`` and is imported only by training and inference code.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

from .builtin import register_builtin
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .records import DataError
from .specs import is_spec, spec_loader, spec_paths

register_builtin()


def get_dataset(name: str, *, check_images: bool = True, box_policy: str = "clip"
                ) -> Tuple[List[dict], Metadata]:
    """Records and metadata of a registered dataset name or a spec (``voc:PATH:SPLIT``...).

    A spec is registered under its own text on first use, so the catalog caches it.
    """
    if name not in DatasetCatalog and is_spec(name):
        DatasetCatalog.register(name, spec_loader(name))
    records, fields = DatasetCatalog.load(name, check_images=check_images,
                                          box_policy=box_policy)
    metadata = MetadataCatalog.get(name).set(**fields)
    return records, metadata


def check_dataset_names(names: Sequence[str], key: str) -> None:
    """Each name is registered, or a spec whose files exist; nothing is loaded.

    Lets a run refuse a mistyped ``DATASETS.TEST`` at start rather than after training.

    Args:
        names: dataset names or specs.
        key: the config key they come from, for the message.
    Raises:
        DataError: naming the key, the dataset and the missing path or registered names.
    """
    for name in names:
        if is_spec(name):
            try:
                paths = spec_paths(name)
            except ValueError as e:
                raise DataError(f"{key}: {e}") from e
            missing = [p for p in paths if not os.path.exists(p)]
            if missing:
                raise DataError(f"{key}: dataset spec {name!r}: {missing[0]} does not exist")
        elif name not in DatasetCatalog:
            raise DataError(
                f"{key}: dataset {name!r} is not registered (registered: "
                f"{', '.join(DatasetCatalog.names())}); a folder can be used directly as "
                "'voc:PATH:SPLIT', 'coco:JSON[:IMAGE_ROOT]' or 'yolo:PATH:SPLIT'")


__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata", "DataError", "check_dataset_names",
           "get_dataset"]
