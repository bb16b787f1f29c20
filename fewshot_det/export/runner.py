"""Run an exported model (ONNX on onnxruntime, or TorchScript) behind ``Predictor``'s interface.

    from fewshot_det.export import ExportedPredictor
    predictor = ExportedPredictor("model.onnx")      # or "model.ts"
    out = predictor(image)   # as Predictor: {"boxes", "scores", "labels", "class_names"}

The resize, the optional sliced inference (``TEST.SLICE``) and the mapping back to the
original pixels are ``Predictor``'s own code, run on the config saved in the file; only
the network runs in the exported graph.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from typing import Dict, List, Optional

import torch
from torch import Tensor

from ..config import get_cfg, validate_cfg
from ..engine.predictor import Predictor
from ..engine.slicing import image_detector
from ..modeling.preprocess import rescale_detections
from ..utils.files import KIND_NAMES, file_kind
from .exporter import FORMAT_VERSION, METADATA_KEY, OUTPUTS


def exported_kind(path: str) -> str:
    """"onnx" or "torchscript" by the file's content; ValueError naming what else it is
    (a checkpoint is told to go through tools/export_model.py)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"exported model not found: {path}")
    kind = file_kind(path)
    if kind in ("torch_checkpoint", "pickle"):
        raise ValueError(f"{path} is {KIND_NAMES[kind]}, not an exported model: export it "
                         f"with tools/export_model.py --weights {path} (or run it with "
                         f"fewshot_det.Predictor)")
    if kind not in ("onnx", "torchscript"):
        raise ValueError(f"{path} is {KIND_NAMES[kind]}, not an ONNX or TorchScript model "
                         f"written by tools/export_model.py")
    return kind


def read_description(path: str):
    """(description dict, backend): "onnx" (an onnxruntime session) or "torchscript"."""
    if exported_kind(path) == "torchscript":
        extra = {f"{METADATA_KEY}.json": ""}
        try:
            with warnings.catch_warnings():  # PyTorch marks TorchScript deprecated
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
        except RuntimeError as e:
            raise ValueError(f"cannot load the TorchScript model {path}: {e}") from e
        raw, backend = extra[f"{METADATA_KEY}.json"], ("torchscript", module)
    else:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("running an ONNX model needs onnxruntime: pip install "
                              "'fewshot_det[export]'") from None
        try:
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types (Fail, InvalidGraph, ...)
            raise ValueError(f"cannot load the ONNX model {path}: {e}") from e
        raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "")
        backend = ("onnx", session)
    if not raw:
        raise ValueError(f"{path}: no {METADATA_KEY} description; export it with "
                         f"tools/export_model.py")
    meta = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: export format {meta.get('format_version')}, this version "
                         f"reads {FORMAT_VERSION}; export it again")
    return meta, backend


class ExportedModel:
    """``model(batch)`` on an exported file: the batch dicts of ``GeneralizedRCNN.forward``
    at inference ({"image" [3, h, w] resized, "height", "width"}) -> per image
    {"boxes" [N, 4] original pixels, "scores", "labels"}."""

    def __init__(self, path: str):
        self.meta, (self.backend, self.engine) = read_description(path)
        self.divisibility = self.meta["size_divisibility"]
        self.two_stage = len(self.meta["inputs"]) == 2

    def __call__(self, batch: List[dict]) -> List[Dict[str, Tensor]]:
        detections, sizes = [], []
        for item in batch:
            image = item["image"].float()
            sizes.append(tuple(image.shape[-2:]))
            detections.append(self.run(image))
        return rescale_detections(detections, batch, sizes)

    def run(self, image: Tensor) -> Dict[str, Tensor]:
        """Detections of one resized image float [3, h, w], in its pixels."""
        inputs = self.inputs(image)
        if self.backend == "onnx":
            feed = {name: t.numpy() for name, t in zip(self.meta["inputs"], inputs)}
            outputs = [torch.from_numpy(x) for x in self.engine.run(OUTPUTS, feed)]
        else:
            with torch.no_grad():
                outputs = list(self.engine(*inputs))
        return dict(zip(OUTPUTS, outputs))

    def inputs(self, image: Tensor) -> List[Tensor]:
        if not self.two_stage:
            return [image[None].contiguous()]
        h, w = image.shape[-2:]
        d = max(self.divisibility, 1)
        padded = image.new_zeros((1, 3, math.ceil(h / d) * d, math.ceil(w / d) * d))
        padded[0, :, :h, :w] = image
        return [padded, torch.tensor([h, w], dtype=torch.float32)]


class ExportedPredictor(Predictor):
    """``Predictor`` on an exported model (module doc).

    Args:
        path: a file written by ``tools/export_model.py``.
        class_names: override the names saved in the file.
    Raises:
        FileNotFoundError, or ValueError: not an export of ours (a checkpoint is named as
            one), or its saved config fails ``validate_cfg``.
    """

    def __init__(self, path: str, class_names: Optional[List[str]] = None):
        self.model = ExportedModel(path)
        cfg = get_cfg()
        cfg.merge_from_other_cfg(cfg.load_cfg(self.model.meta["config"]))
        self.cfg = validate_cfg(cfg)  # the checks Predictor and the tools run
        self.class_names = class_names or self.model.meta["class_names"]
        self.device = torch.device("cpu")
        self.detect = image_detector(cfg, self.model)

    def set_supports(self, supports) -> None:
        raise ValueError("an exported model has its class prototypes built in: export it "
                         "again with tools/export_model.py --supports to change them")

