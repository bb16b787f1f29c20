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

The file is written whole or not at all (a temp file renamed over ``path``): a failed
export never leaves half a file, nor destroys the one it was to replace.
``check_export_output`` is the command line's guard, run before any export work: the
output may not be one of the inputs, must be a writable file path, and an existing file
is replaced only when asked (``--overwrite``).
"""
from __future__ import annotations

import io
import json
import math
import mmap
import os
import warnings
import zipfile
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from ..utils.files import KIND_NAMES, atomic_write_bytes, check_output_file, file_kind
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
    calibration = getattr(model, "calibration", None)
    if calibration is not None and calibration.calibrated_ids():
        # crops through a second network per detection: the exported graph would score
        # the calibrated classes differently from the model it came from
        raise ValueError("export: the model calibrates the scores of classes "
                         f"{calibration.calibrated_ids()} (FEWSHOT.CALIBRATION), which the "
                         "exported graph cannot; export with FEWSHOT.CALIBRATION.WEIGHTS ''")
    graph = graph_for(model.cpu())
    inputs = example_inputs(model, cfg)
    if fmt == "onnx" and model.fixed_input_size():
        _check_grid_pooling(model, inputs[0])
    meta = describe(model, graph, cfg, class_names)
    check_output_file(path, "export")
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns at every shape it reads (modeling.traceable makes those safe; the
        # export tests check the graph on other sizes); PyTorch marks TorchScript deprecated.
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            data = _export_onnx(graph, inputs, meta)
        else:
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.trace(graph, inputs, check_trace=False), buffer,
                           _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})
            data = buffer.getvalue()
    atomic_write_bytes(path, lambda f: f.write(data))
    return meta


def is_export(path: str) -> bool:
    """The file at ``path`` is an ONNX / TorchScript file holding our description."""
    kind = file_kind(path)
    if kind == "torchscript":
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(f"/extra/{METADATA_KEY}.json") for n in z.namelist())
    if kind != "onnx":
        return False
    # A metadata_props entry whose key is ours: field 1 (tag 0x0a), its length, the key.
    key = b"\x0a" + bytes([len(METADATA_KEY)]) + METADATA_KEY.encode()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(key) >= 0


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_export_output(path: str, inputs: Mapping[str, List[str]], overwrite: bool) -> None:
    """Refuse an export output that would destroy data or fail after the export work.

    Args:
        path: ``--output``.
        inputs: {argument: the files it names}, e.g. {"--weights": ["model.pth"]}; the
            output may be none of them, even with ``overwrite``.
        overwrite: an existing file at ``path`` may be replaced.
    Raises:
        ValueError: naming the path: one of the inputs, a folder, under a file, not
            writable, or an existing file without ``overwrite`` (an earlier export is
            said to be one).
    """
    for arg, files in inputs.items():
        for f in files:
            if f and os.path.exists(path) and _same_file(path, f):
                raise ValueError(f"--output {path} is the {arg} file {f}: writing the export "
                                 f"would destroy it; choose another --output")
    check_output_file(path, "--output")
    if not os.path.exists(path) or overwrite:
        return
    if is_export(path):
        raise ValueError(f"--output {path} exists (an earlier export): give --overwrite to "
                         f"replace it, or choose another --output")
    raise ValueError(f"--output {path} exists and is {KIND_NAMES[file_kind(path)]}, not an "
                     f"export: choose another --output (or give --overwrite to replace it)")


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


def _export_onnx(graph: nn.Module, inputs: Tuple[Tensor, ...], meta: Dict) -> bytes:
    """The ONNX file's bytes, our description in its metadata."""
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install "
                          "'fewshot_det[export]'") from None
    names = meta["inputs"]
    dynamic = {"image": {2: "height", 3: "width"}} if len(names) == 2 else {}
    dynamic.update({name: {0: "detections"} for name in OUTPUTS})
    buffer = io.BytesIO()
    torch.onnx.export(graph, inputs, buffer, dynamo=False, opset_version=ONNX_OPSET,
                      input_names=names, output_names=OUTPUTS, dynamic_axes=dynamic)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    return proto.SerializeToString()
