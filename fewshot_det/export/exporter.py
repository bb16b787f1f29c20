"""Write a built model as an ONNX or TorchScript file that carries what a runner needs.

The file holds the graph of ``export.graph`` and a JSON description (ONNX metadata key /
TorchScript extra file ``fewshot_det.json``): the config (its INPUT.* says how to resize),
the class names, the inputs' layout. ``export.runner.ExportedPredictor`` reads both; a
program in another language reads the JSON to prepare the inputs:

* resize as INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST (or INPUT.FIXED_SIZE for YOLO-grid) say,
  channels in INPUT.FORMAT order, 0-255 floats, layout [1, 3, H, W];
* two-stage models: pad bottom/right to a multiple of ``size_divisibility`` (any values:
  the graph masks the padding) and pass ``image_size`` = [h, w] before padding;
* boxes come back in the resized image's pixels: scale them to the original.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .graph import graph_for

FORMATS = ("onnx", "torchscript")
METADATA_KEY = "fewshot_det"  # ONNX metadata key; TorchScript extra file fewshot_det.json
FORMAT_VERSION = 1
ONNX_OPSET = 17  # RoiAlign with half-pixel alignment needs >= 16
OUTPUTS = ["boxes", "scores", "labels"]


def example_inputs(model: nn.Module, cfg) -> Tuple[Tensor, ...]:
    """A random image of the test size to trace with: noise, so that no score ties make
    the traced branches special (the graph's sizes follow the input anyway)."""
    g = torch.Generator().manual_seed(0)
    side = model.fixed_input_size()
    if side:
        return (torch.rand(1, 3, side, side, generator=g) * 255,)
    h = cfg.INPUT.MIN_SIZE_TEST
    w = min(int(h * 4 / 3), cfg.INPUT.MAX_SIZE_TEST or int(h * 4 / 3))
    d = max(model.backbone.size_divisibility, 1)
    image = torch.rand(1, 3, math.ceil(h / d) * d, math.ceil(w / d) * d, generator=g) * 255
    return image, torch.tensor([h, w], dtype=torch.float32)


def describe(model: nn.Module, graph: nn.Module, cfg, class_names: Optional[List[str]]
             ) -> Dict:
    """The JSON description saved with the graph (module doc)."""
    two_stage = not model.fixed_input_size()
    return {
        "format_version": FORMAT_VERSION,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "inputs": ["image", "image_size"] if two_stage else ["image"],
        "outputs": OUTPUTS,
        "size_divisibility": int(model.backbone.size_divisibility) if two_stage else 0,
        "class_ids": list(graph.class_ids),
        "class_names": list(class_names) if class_names else None,
        "config": cfg.dump(),
    }


def export_model(model: nn.Module, cfg, path: str, fmt: str,
                 class_names: Optional[List[str]] = None) -> Dict:
    """Export ``model`` (built from ``cfg``, weights and supports set) to ``path``.

    Args:
        fmt: "onnx" or "torchscript".
        class_names: names of class ids 1..K (saved for the runner).
    Returns:
        the saved description.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    graph = graph_for(model.cpu())
    inputs = example_inputs(model, cfg)
    if fmt == "onnx" and model.fixed_input_size():
        _check_grid_pooling(model, inputs[0])
    meta = describe(model, graph, cfg, class_names)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns at every shape it reads (modeling.traceable makes those safe; the
        # export tests check the graph on other sizes); PyTorch marks TorchScript deprecated.
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            _export_onnx(graph, inputs, meta, path)
        else:
            traced = torch.jit.trace(graph, inputs, check_trace=False)
            traced.save(path, _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})
    return meta


def _check_grid_pooling(model: nn.Module, image: Tensor) -> None:
    """ONNX pools a YOLO feature map to the grid only when the grid divides its side."""
    with torch.no_grad():
        side = model.backbone(image).shape[-1]
    grid = model.head.grid_size
    if side % grid:
        raise ValueError(f"ONNX export: MODEL.YOLO.GRID_SIZE {grid} does not divide the "
                         f"{side}-cell feature map of INPUT.FIXED_SIZE {image.shape[-1]} "
                         f"(ONNX pools only by whole factors); choose sizes where it does, "
                         f"or export to torchscript")


def _export_onnx(graph: nn.Module, inputs: Tuple[Tensor, ...], meta: Dict, path: str) -> None:
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install "
                          "'fewshot_det[export]'") from None
    names = meta["inputs"]
    dynamic = {"image": {2: "height", 3: "width"}} if len(names) == 2 else {}
    dynamic.update({name: {0: "detections"} for name in OUTPUTS})
    torch.onnx.export(graph, inputs, path, dynamo=False, opset_version=ONNX_OPSET,
                      input_names=names, output_names=OUTPUTS, dynamic_axes=dynamic)
    proto = onnx.load(path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(proto, path)
