"""Datasets: catalog, readers, specs, few-shot splits, synthetic data (no torch here).

The torch side (transforms to tensors, loaders, samplers) lives in ``data.build`` and
``data.mapper`` and is imported only by training and inference code.
"""
from __future__ import annotations

from typing import List, Tuple

from .builtin import register_builtin
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .records import DataError
from .specs import is_spec, spec_loader

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


__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata", "DataError", "get_dataset"]
