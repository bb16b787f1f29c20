"""The dataset root: ``$FEWSHOT_DATASETS`` when set, else ``./datasets`` (read at each call,
so a change of the variable applies to datasets loaded afterwards). No torch here."""
from __future__ import annotations

import os

__all__ = ["dataset_root"]


def dataset_root() -> str:
    """The folder the built-in dataset names are read from (``~`` expanded)."""
    return os.path.expanduser(os.environ.get("FEWSHOT_DATASETS", "datasets"))
