"""Read a weight file into a flat ``{name: tensor}`` dict, whatever wraps it.

Accepted files:
- ``.pth`` / ``.pt`` (and anything not ``.pkl``): read with ``torch.load(weights_only=True)``
  (no code from the file runs). A ``{"model": ...}`` or ``{"state_dict": ...}`` wrapper
  (our checkpoints, detectron2 ``.pth``) is unwrapped.
- ``.pkl``: detectron2 / Detectron model-zoo pickles of numpy arrays (``{"model": ...}``,
  ``{"blobs": ...}`` or a bare dict), read by an unpickler that only accepts numpy arrays.

An exported model (ONNX / TorchScript, ``tools/export_model.py``) given as weights is
recognised by its content (``utils.files.file_kind``) and refused with a message saying
what it is and what runs it.
"""
from __future__ import annotations

import os
import pickle
import warnings
from typing import Dict

import numpy as np
import torch
from torch import Tensor

from ..utils.files import KIND_NAMES, file_kind
from .pretrained import resolve_weights

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
}
_WRAPPERS = ("model", "state_dict", "blobs")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: weight .pkl files may only hold numpy "
                f"arrays")
        with warnings.catch_warnings():  # numpy 2 warns on the numpy.core alias
            warnings.simplefilter("ignore")
            return super().find_class(module, name)


def check_weight_file(path: str) -> None:
    """``path`` exists and is not an exported model or an empty file (read nothing else).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an ONNX / TorchScript model, or an empty file (message names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL.WEIGHTS: no such file: {path}")
    kind = file_kind(path)
    if kind in ("onnx", "torchscript"):
        raise ValueError(f"MODEL.WEIGHTS {path} is {KIND_NAMES[kind]}, not a checkpoint: run "
                         f"it with fewshot_det.export.ExportedPredictor, or give the .pth "
                         f"checkpoint it was exported from")
    if kind == "empty":
        raise ValueError(f"MODEL.WEIGHTS {path} is empty (0 bytes): an interrupted copy or "
                         f"download?")


def read_weights(path: str) -> Dict[str, Tensor]:
    """All tensors of the weight file at ``path``, by name (on the CPU). ``path`` may also
    be ``imagenet:NAME``, an installed package's ImageNet weights (``pretrained.py``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be read as weights, or is an exported model (message
            names the file).
        WeightPackageMissing (a FileNotFoundError): ``imagenet:NAME`` whose package is
            not installed.
    """
    path = resolve_weights(path)
    check_weight_file(path)
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                raw = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "not a weight file"
        raise ValueError(f"cannot read weights from {path}: {type(e).__name__}: {e}") from e
    return _flatten(_unwrap(raw), path)


def _unwrap(raw):
    while isinstance(raw, dict):
        inner = next((raw[k] for k in _WRAPPERS if isinstance(raw.get(k), dict)), None)
        if inner is None:
            return raw
        raw = inner
    return raw


def _flatten(raw, path: str) -> Dict[str, Tensor]:
    if not isinstance(raw, dict):
        raise ValueError(f"{path} does not hold a dict of weights (got {type(raw).__name__})")
    weights = {}
    for name, value in raw.items():
        if name.endswith("_momentum"):  # Detectron (caffe2) optimizer state
            continue
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if isinstance(value, Tensor):
            weights[name] = value
    if not weights:
        raise ValueError(f"{path} holds no tensors (keys: {list(raw)[:10]})")
    return weights
