"""``load_weights(model, path)``: initialise a model from MODEL.WEIGHTS, reporting clearly;
``load_state(model, state, source=...)`` does the same for a state dict in memory.

What is reported (and logged at INFO):
- the detected format and how many of the model's tensors were loaded;
- model tensors missing from the file (left as initialised), grouped by module;
- file tensors the model does not use, grouped, under their names in the file;
- a class layer (R-CNN box predictor, YOLO-grid class layer) skipped because its class
  count differs (fine-tuning on new classes).
A shape mismatch anywhere else is a configuration error (e.g. ResNet-50 weights in a
ResNet-18 model) and raises ``ValueError`` listing the tensors.

Training loads leniently: a pretrained backbone legitimately lacks the heads, and a base
model's class layer is replaced when fine-tuning on other classes. Inference (``Predictor``,
and through it the demo and the export) loads with ``strict=True``: a class layer of
another class count, or any model tensor missing from the file, would leave that part
random, so it is an error naming both class counts or the missing tensors, raised before
the model is touched. Non-persistent buffers (pixel mean/std) are not in a state dict and
BatchNorm's ``num_batches_tracked`` is never required.
"""
from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List

import torch
from torch import nn

from .convert import PREDICTOR, convert
from .efficientnet_lite import check_fit as check_efficientnet_lite_fit
from .io import read_weights

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What ``load_weights`` / ``load_state`` did. ``str(report)`` is the grouped,
    human-readable summary; ``path`` names the source (a file, or ``load_state``'s
    ``source``)."""

    path: str
    format: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)  # our name -> reason
    hint: str = ""  # a likely input-normalisation mismatch, when one is detected

    def __str__(self) -> str:
        total = len(self.loaded) + len(self.missing) + len(self.skipped)
        lines = [f"Loaded {len(self.loaded)}/{total} model tensors from "
                 f"{os.path.basename(self.path)} (format: {self.format})"]
        for reason in sorted(set(self.skipped.values())):
            lines.append(f"Skipped: {reason}")
        if self.missing:
            lines.append("Not in the checkpoint (left as initialised):")
            lines += ["  " + g for g in group_keys(self.missing)]
        if self.unexpected:
            lines.append("In the checkpoint but unused by the model:")
            lines += ["  " + g for g in group_keys(self.unexpected)]
        if self.hint:
            lines.append("Warning: " + self.hint)
        return "\n".join(lines)


def load_weights(model: nn.Module, path: str, *, strict: bool = False) -> LoadReport:
    """Load the weights at ``path`` into ``model`` (any supported format, see ``convert``).

    Args:
        model: the model (a DistributedDataParallel wrapper is unwrapped).
        path: local file: our checkpoint ({"model": state_dict, ...}), a torchvision ResNet
            or Faster R-CNN state dict, or detectron2 ResNet weights (.pkl / .pth); or
            ``imagenet:NAME``, an installed package's weights (``pretrained.py``).
        strict: every model tensor must come from the file, the class layers included
            (inference; module doc). False: training's lenient loading.
    Returns:
        a LoadReport (also logged).
    Raises:
        FileNotFoundError, or ValueError for unreadable files, unknown formats, shape
        mismatches outside the class layers, or a file sharing no tensor with the model;
        with ``strict``, also for a class layer of another class count or missing model
        tensors (nothing is loaded then).
    """
    fmt, converted = convert(read_weights(path))
    return _load_converted(model, converted, source=f"MODEL.WEIGHTS {path}", fmt=fmt,
                           strict=strict, name=path)


def load_state(model: nn.Module, state: Dict[str, torch.Tensor], *, source: str,
               format: str = "fewshot_det", strict: bool = False) -> LoadReport:
    """Load a state dict already under our parameter names (e.g. after class surgery) into
    ``model``, with the checks and the report of ``load_weights``; nothing is written.

    Args:
        model: the model (a DistributedDataParallel wrapper is unwrapped).
        state: {our name: tensor}.
        source: what ``state`` is, for the report and the errors (e.g. the file it came
            from and what was done to it).
        format: the format of the weights ``state`` was converted from (``convert``'s
            name; it decides the input channel-order warning).
        strict: as ``load_weights``'s.
    Returns:
        a LoadReport (also logged); its ``path`` is ``source``.
    Raises:
        ValueError: shape mismatches outside the class layers, or no tensor shared with
            the model.
    """
    converted = [(name, name, tensor) for name, tensor in state.items()]
    return _load_converted(model, converted, source=source, fmt=format, strict=strict,
                           name=source)


def _load_converted(model: nn.Module, converted, *, source: str, fmt: str, strict: bool,
                    name: str) -> LoadReport:
    """Load [(name in the source, our name, tensor)] into ``model``; see ``load_weights``.
    ``source`` starts the error messages, ``name`` is the report's path."""
    model = getattr(model, "module", model)
    own = dict(model.state_dict())
    if fmt == "efficientnet_lite":  # another variant's blocks would half-load silently
        check_efficientnet_lite_fit(converted, own, source)
    report = LoadReport(path=name, format=fmt)
    to_load, mismatched = _match(converted, own, report)
    class_layers = _skip_predictor(mismatched, report, to_load)
    if mismatched:
        details = "; ".join(f"{n}: checkpoint {a} vs model {b}" for n, a, b in mismatched[:10])
        raise ValueError(f"{source}: shapes do not match the model (check MODEL.RESNETS.DEPTH, "
                         f"MODEL.FPN.OUT_CHANNELS, ...): {details}")
    if not to_load:
        raise ValueError(f"{source} ({fmt}) shares no tensor with the model; nothing loaded")
    report.loaded = sorted(to_load)
    report.unexpected.sort()
    report.missing = sorted(n for n in own if n not in to_load and n not in report.skipped
                            and not n.endswith("num_batches_tracked"))
    if strict:
        _check_complete(model, report, class_layers, source)
    model.load_state_dict(to_load, strict=False)
    report.hint = _input_order_hint(model, fmt)
    logger.log(logging.WARNING if report.hint else logging.INFO, "%s", report)
    return report


# Channel order the pretrained weights of a format were trained with, and the config for it.
_INPUT_ORDER = {
    "torchvision_resnet": ("RGB", "INPUT.FORMAT RGB, MODEL.PIXEL_MEAN [123.675, 116.28, 103.53], "
                                  "MODEL.PIXEL_STD [58.395, 57.12, 57.375]"),
    "torchvision_detection": ("RGB", "configs/torchvision/faster_rcnn_R_50_FPN.yaml"),
    "torchvision_mobilenet": ("RGB", "INPUT.FORMAT RGB, MODEL.PIXEL_MEAN [123.675, 116.28, "
                                     "103.53], MODEL.PIXEL_STD [58.395, 57.12, 57.375]"),
    "torchvision_mobilenet_detection": (
        "RGB", "configs/torchvision/faster_rcnn_mobilenet_v3_large_FPN.yaml"),
    "detectron2_c2": ("BGR", "INPUT.FORMAT BGR, MODEL.PIXEL_STD [1.0, 1.0, 1.0], "
                             "MODEL.RESNETS.STRIDE_IN_1X1 True"),
}


def _input_order_hint(model: nn.Module, fmt: str) -> str:
    """A warning when PIXEL_MEAN's order (ImageNet's R > B) contradicts the weights'."""
    mean = getattr(model, "pixel_mean", None)
    if fmt not in _INPUT_ORDER or mean is None or mean.numel() != 3:
        return ""
    order = "RGB" if float(mean[0]) > float(mean[2]) else "BGR"
    expected, settings = _INPUT_ORDER[fmt]
    if order == expected:
        return ""
    return (f"{fmt} weights expect {expected} input but MODEL.PIXEL_MEAN "
            f"{[round(float(v), 3) for v in mean.flatten()]} looks {order}; use {settings}")


def _match(converted, own: Dict[str, torch.Tensor], report: LoadReport):
    """Split converted tensors into loadable ones and shape mismatches; note unused ones.

    Returns:
        ({our name: tensor}, [(our name, file shape, model shape)])
    """
    to_load, mismatched = {}, []
    for src, name, tensor in converted:
        if name not in own:
            if src is not None and not src.endswith("num_batches_tracked"):
                report.unexpected.append(src)
        elif tuple(tensor.shape) != tuple(own[name].shape):
            mismatched.append((name, tuple(tensor.shape), tuple(own[name].shape)))
        else:
            to_load[name] = tensor
    return to_load, mismatched


# Class-count-shaped layers: prefix -> (its class-score weight, rows that are not classes).
# A checkpoint with another class count loads everything but these (fine-tuning).
CLASS_LAYERS = {PREDICTOR: (PREDICTOR + "cls_score.weight", 1),  # R-CNN: + background row
                "head.cls_pred.": ("head.cls_pred.weight", 0),   # YOLO-grid class layer
                "calibration.": ("calibration.prototypes", 1)}  # R-CNN's class prototypes
# The config key of each class layer's class count, for strict loading's message.
CLASS_COUNT_KEYS = {PREDICTOR: "MODEL.ROI_HEADS.NUM_CLASSES",
                    "head.cls_pred.": "MODEL.YOLO.NUM_CLASSES",
                    "calibration.": "MODEL.ROI_HEADS.NUM_CLASSES"}
# Tensors strict loading does not require: a checkpoint without calibration prototypes
# (saved before FEWSHOT.CALIBRATION was set) leaves every class uncalibrated, as it was.
OPTIONAL = ("calibration.prototypes",)


def _skip_predictor(mismatched: list, report: LoadReport, to_load: dict) -> Dict[str, dict]:
    """Move class-layer shape mismatches (another class count) out of ``mismatched``.

    The whole predictor is then skipped: a half-loaded predictor would be meaningless.

    Returns:
        {prefix of a skipped class layer: {our name: (file shape, model shape)}}
    """
    skipped_layers = {}
    for prefix, (score, extra_rows) in CLASS_LAYERS.items():
        predictor = [m for m in mismatched if m[0].startswith(prefix)]
        if not predictor:
            continue
        mismatched[:] = [m for m in mismatched if not m[0].startswith(prefix)]
        shapes = {name: (a, b) for name, a, b in predictor}
        if score in shapes:
            ckpt, own = shapes[score]
            reason = (f"class layer ({prefix}*): the checkpoint has {ckpt[0] - extra_rows} "
                      f"classes, the model {own[0] - extra_rows}; it keeps its initial "
                      f"weights (fine-tuning)")
        else:
            reason = (f"class layer ({prefix}*): shapes differ "
                      f"({', '.join(f'{n}: {a} vs {b}' for n, (a, b) in shapes.items())}); "
                      f"it keeps its initial weights")
        for name in list(shapes) + [n for n in to_load if n.startswith(prefix)]:
            report.skipped[name] = reason
            to_load.pop(name, None)
        skipped_layers[prefix] = shapes
    return skipped_layers


# Tensor groups listed in a strict-loading error before "... and N more".
_LISTED_GROUPS = 6


def _listing(keys) -> str:
    groups = group_keys(keys)
    more = len(groups) - _LISTED_GROUPS
    return ", ".join(groups[:_LISTED_GROUPS]) + (f" and {more} more" if more > 0 else "")


def _check_complete(model: nn.Module, report: LoadReport, class_layers: Dict[str, dict],
                    source: str) -> None:
    """Strict loading: raise unless every model tensor comes from the file, as it is."""
    problems = []
    for prefix, shapes in class_layers.items():
        score, extra_rows = CLASS_LAYERS[prefix]
        key = CLASS_COUNT_KEYS[prefix]
        if score in shapes:
            (rows, *_), (own_rows, *_) = shapes[score]
            k, own_k = rows - extra_rows, own_rows - extra_rows
            problems.append(f"its classifier has {rows} rows ({k} classes) but the config "
                            f"builds {own_k} classes ({key} {own_k}); set {key} {k}, or use "
                            f"the config the checkpoint was trained with (mismatched: "
                            f"{_listing(shapes)})")
        else:
            problems.append("its class layer does not fit the config's ("
                            + "; ".join(f"{n}: checkpoint {a} vs model {b}"
                                        for n, (a, b) in shapes.items()) + f"; check {key})")
    required = [n for n in report.missing if n not in OPTIONAL]
    if required:
        total = len(report.loaded) + len(report.missing) + len(report.skipped)
        unused = (f"; {len(report.unexpected)} of the file's tensors have no place in "
                  f"the model" if report.unexpected else "")
        problems.append(f"it fits {len(report.loaded)} of {total} model tensors; missing: "
                        f"{_listing(required)}{unused}: it is not a checkpoint of this "
                        f"config's model (MODEL.META_ARCHITECTURE {type(model).__name__})")
    if problems:
        raise ValueError(f"{source}: " + "; and ".join(problems))


def group_keys(keys: Iterable[str]) -> List[str]:
    """Compact listing of parameter names, e.g. ``fpn.inner_blocks.{0,1,2}.0.{bias,weight}``.

    Keys sharing a module are merged (``{bias,weight}``), then modules differing only in
    one index; modules differing in several indices are summarised with ``*`` and a count.

    Returns:
        sorted lines.
    """
    groups = defaultdict(list)
    for key in keys:
        prefix, _, leaf = key.rpartition(".")
        groups[prefix].append(leaf)
    lines = []
    for prefix, leaves in groups.items():
        leaf = leaves[0] if len(leaves) == 1 else "{" + ",".join(sorted(leaves)) + "}"
        lines.append(f"{prefix}.{leaf}" if prefix else leaf)
    by_template = defaultdict(list)
    for line in lines:
        by_template[re.sub(r"(?<=\.)\d+(?=\.)", "*", line)].append(line.split("."))
    merged = []
    for template, members in by_template.items():
        varying = [i for i in range(len(members[0])) if len({m[i] for m in members}) > 1]
        if len(members) == 1:
            merged.append(".".join(members[0]))
        elif len(varying) == 1:
            i = varying[0]
            parts = list(members[0])
            parts[i] = "{" + ",".join(sorted({m[i] for m in members}, key=int)) + "}"
            merged.append(".".join(parts))
        else:
            merged.append(f"{template} ({len(members)} modules)")
    return sorted(merged)
