"""Datasets by name: a loader function per name, and metadata per name.

Loading is lazy (registering costs nothing) and cached per (name, options), because a
dataset is read by the trainer, the evaluator and the few-shot sampler in one run.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Tuple


class Metadata:
    """Attributes of a dataset: ``thing_classes`` (label i+1 <-> thing_classes[i]),
    ``base_classes``, ``novel_classes``, ``thing_dataset_id_to_contiguous_id``,
    ``evaluator_type`` ("coco" | "voc") and any reader-specific fields.
    """

    def __init__(self, name: str, **kwargs: Any):
        self.name = name
        self.base_classes: List[str] = []
        self.novel_classes: List[str] = []
        self.set(**kwargs)

    def set(self, **kwargs: Any) -> "Metadata":
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def as_dict(self) -> Dict[str, Any]:
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"Metadata({self.as_dict()})"


class _DatasetCatalog:
    def __init__(self) -> None:
        self._loaders: Dict[str, Callable[..., Tuple[list, dict]]] = {}
        self._cache: Dict[Tuple[str, Tuple], Tuple[list, dict]] = {}

    def register(self, name: str, loader: Callable[..., Tuple[list, dict]]) -> None:
        """``loader(**options) -> (records, metadata_fields)``; options are the keyword
        arguments of the readers (``check_images``, ``box_policy``)."""
        if name in self._loaders:
            raise ValueError(f"dataset {name!r} is already registered")
        self._loaders[name] = loader

    def __contains__(self, name: str) -> bool:
        return name in self._loaders

    def names(self) -> List[str]:
        return sorted(self._loaders)

    def load(self, name: str, **options: Any) -> Tuple[List[dict], Dict[str, Any]]:
        if name not in self._loaders:
            raise KeyError(
                f"dataset {name!r} is not registered. Registered: {self.names()}. "
                "A folder can be used directly as 'voc:PATH:SPLIT', "
                "'coco:JSON[:IMAGE_ROOT]' or 'yolo:PATH:SPLIT'."
            )
        key = (name, tuple(sorted(options.items())))
        if key not in self._cache:
            self._cache[key] = self._loaders[name](**options)
        records, fields = self._cache[key]
        # Callers may edit records (e.g. transforms); hand out copies, keep the cache clean.
        return copy.deepcopy(records), dict(fields)

    def get(self, name: str, **options: Any) -> List[dict]:
        return self.load(name, **options)[0]

    def remove(self, name: str) -> None:
        self._loaders.pop(name, None)
        self._cache = {k: v for k, v in self._cache.items() if k[0] != name}


class _MetadataCatalog:
    def __init__(self) -> None:
        self._metadata: Dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        if name not in self._metadata:
            self._metadata[name] = Metadata(name)
        return self._metadata[name]

    def remove(self, name: str) -> None:
        self._metadata.pop(name, None)


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
