"""Rename (and, where layouts differ, reorder) foreign weights to fewshot_det's names.

Formats recognised from the names alone:

==========================  ============================================  =====================
format                      example names                                  maps to
==========================  ============================================  =====================
``fewshot_det``             backbone.body.layer1.0.conv1.weight,           itself
                            proposal_generator.head.conv.weight
``torchvision_detection``   rpn.head.conv.0.0.weight,                      whole detector
                            roi_heads.box_head.fc6.weight
``torchvision_resnet``      layer1.0.conv1.weight, fc.weight               backbone.body.*
``torchvision_mobilenet``   features.0.0.weight, classifier.0.weight       backbone.body.
                            (ImageNet MobileNetV3)                         features.*
``detectron2``              res2.0.conv1.norm.weight, stem.conv1.weight,   backbone (+ FPN,
                            backbone.bottom_up.res2..., backbone.fpn_...   RPN, box head)
``detectron2_c2``           res2_0_branch2a_w, res_conv1_bn_s (Detectron   backbone.body.*
                            / MSRA model zoo ``R-50.pkl``)
``efficientnet_lite``       _conv_stem.weight, _blocks.3._depthwise_conv.  backbone.body.*
                            weight (``imagenet:efficientnet-lite0``; see   (EfficientNet-Lite)
                            ``efficientnet_lite.py``)
==========================  ============================================  =====================

``torchvision_mobilenet_detection`` is ``torchvision_detection`` with torchvision's
MobileNetV3 body (``fasterrcnn_mobilenet_v3_large_fpn`` and ``..._320_fpn``), told apart by
the body's numbered blocks (``backbone.body.13.block.0.0.weight``, where a ResNet body has
named layers): they become our MobileNetV3's ``backbone.body.features.13.block.0.0.weight``.

Layout differences handled here:
- torchvision's box predictor has (K+1)*4 deltas, the first 4 for background (never used);
  ours has K*4, so the background rows are dropped.
- detectron2's classifier puts background LAST (column K); ours FIRST (column 0).
- Detectron's caffe2 ResNets have affine batch norms (scale ``_s``, bias ``_b``) and no
  running statistics; mean 0 and var 1 - eps are supplied so the affine map is exact.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor

from .efficientnet_lite import detector_names, is_efficientnet_lite

BODY = "backbone.body."
PREDICTOR = "roi_heads.box_predictor."
FROZEN_BN_EPS = 1e-5

# (source name, our name, tensor); source name is None for synthesised tensors.
Converted = List[Tuple[str, str, Tensor]]


def detect_format(names) -> str:
    """Name of the format of a state dict with these keys (see the module table)."""
    names = list(names)

    def has(pattern: str) -> bool:
        return any(re.search(pattern, n) for n in names)

    if has(r"^proposal_generator\.head\.") or has(r"^backbone\.body\."):
        if has(r"^rpn\.") or has(r"\.fc6\."):
            # torchvision's MobileNet body is a numbered sequence of blocks, its ResNet's
            # has named layers (conv1, layer1, ...)
            if has(r"^backbone\.body\.\d+\."):
                return "torchvision_mobilenet_detection"
            return "torchvision_detection"
        return "fewshot_det"
    if has(r"^rpn\.head\.") or has(r"^roi_heads\.box_head\.fc6\."):
        return "torchvision_detection"
    if has(r"(^|\.)(stem|res[2-5])\.") or has(r"^backbone\.fpn_(lateral|output)"):
        return "detectron2"
    if has(r"^res[2-5]_\d+_branch") or has(r"^res_conv1_bn_"):
        return "detectron2_c2"
    if has(r"^layer[1-4]\.\d+\.conv") or has(r"^conv1\.weight$"):
        return "torchvision_resnet"
    if has(r"^features\.\d+\.\d+\.weight$"):
        return "torchvision_mobilenet"
    if is_efficientnet_lite(names):
        return "efficientnet_lite"
    raise ValueError(f"unrecognised weight names (e.g. {names[:5]}); expected fewshot_det, "
                     f"torchvision ResNet / MobileNetV3 / Faster R-CNN, detectron2 ResNet, or "
                     f"EfficientNet-Lite weights")


def convert(weights: Dict[str, Tensor]) -> Tuple[str, Converted]:
    """Detect the format of ``weights`` and rename them to our parameter names.

    Returns:
        (format name, list of (source name, our name, tensor))
    """
    fmt = detect_format(weights)
    return fmt, _CONVERTERS[fmt](weights)


def _identity(weights: Dict[str, Tensor]) -> Converted:
    return [(k, k, v) for k, v in weights.items()]


def _torchvision_resnet(weights: Dict[str, Tensor]) -> Converted:
    return [(k, BODY + k, v) for k, v in weights.items()]


def _torchvision_mobilenet(weights: Dict[str, Tensor]) -> Converted:
    # the classifier (classifier.*) has no place in a detector: reported as unused
    return [(k, BODY + k if k.startswith("features.") else k, v) for k, v in weights.items()]


_TV_DETECTION_RULES = [
    (r"^rpn\.head\.conv\.0\.0\.", "proposal_generator.head.conv."),
    (r"^rpn\.head\.conv\.", "proposal_generator.head.conv."),  # torchvision < 0.13
    (r"^rpn\.head\.", "proposal_generator.head."),
    (r"^roi_heads\.box_head\.fc6\.", "roi_heads.box_head.fc1."),
    (r"^roi_heads\.box_head\.fc7\.", "roi_heads.box_head.fc2."),
    (r"^(backbone\.fpn\.(inner|layer)_blocks\.\d+)\.(weight|bias)$", r"\1.0.\3"),  # old FPN
]


# The MobileNet body's blocks 0..16 are our MobileNetV3's ``features.0`` .. ``features.16``.
_TV_MOBILENET_DETECTION_RULES = ([(r"^backbone\.body\.(\d+)\.", r"backbone.body.features.\1.")]
                                 + _TV_DETECTION_RULES)


def _torchvision_detection(weights: Dict[str, Tensor],
                           rules: List[Tuple[str, object]] = _TV_DETECTION_RULES) -> Converted:
    out = []
    for k, v in weights.items():
        new = _apply_rules(k, rules)
        if new == PREDICTOR + "bbox_pred.weight" or new == PREDICTOR + "bbox_pred.bias":
            v = v[4:]  # drop the background class's deltas
        out.append((k, new, v))
    return out


def _torchvision_mobilenet_detection(weights: Dict[str, Tensor]) -> Converted:
    return _torchvision_detection(weights, _TV_MOBILENET_DETECTION_RULES)


_D2_BODY_RULES = [
    (r"^stem\.conv1\.norm\.", "bn1."),
    (r"^stem\.conv1\.", "conv1."),
    (r"^res(\d)\.(\d+)\.shortcut\.norm\.", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.1."),
    (r"^res(\d)\.(\d+)\.shortcut\.", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.0."),
    (r"^res(\d)\.(\d+)\.conv(\d)\.norm\.", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}."),
    (r"^res(\d)\.(\d+)\.conv(\d)\.", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}."),
]
_D2_HEAD_RULES = [
    (r"^proposal_generator\.rpn_head\.objectness_logits\.", "proposal_generator.head.cls_logits."),
    (r"^proposal_generator\.rpn_head\.anchor_deltas\.", "proposal_generator.head.bbox_pred."),
    (r"^proposal_generator\.rpn_head\.", "proposal_generator.head."),
]


def _detectron2(weights: Dict[str, Tensor]) -> Converted:
    laterals = [int(m[1]) for k in weights if (m := re.match(r"^backbone\.fpn_lateral(\d)", k))]
    first = min(laterals, default=2)
    out = []
    for k, v in weights.items():
        name = k[len("backbone.bottom_up."):] if k.startswith("backbone.bottom_up.") else k
        if re.match(r"^(stem|res\d)\.", name):
            new = BODY + _apply_rules(name, _D2_BODY_RULES)
        elif m := re.match(r"^backbone\.fpn_(lateral|output)(\d)\.(.*)$", k):
            block = "inner_blocks" if m[1] == "lateral" else "layer_blocks"
            new = f"backbone.fpn.{block}.{int(m[2]) - first}.0.{m[3]}"
        else:
            new = _apply_rules(k, _D2_HEAD_RULES)
        if new.startswith(PREDICTOR + "cls_score."):
            v = torch.cat([v[-1:], v[:-1]])  # background from last to first
        out.append((k, new, v))
    return out


_C2_RULES = [
    (r"^conv1_w$", "conv1.weight"),
    (r"^res_conv1_bn_s$", "bn1.weight"),
    (r"^res_conv1_bn_b$", "bn1.bias"),
    (r"^res(\d)_(\d+)_branch1_w$", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.0.weight"),
    (r"^res(\d)_(\d+)_branch1_bn_s$", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.1.weight"),
    (r"^res(\d)_(\d+)_branch1_bn_b$", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.1.bias"),
    (r"^res(\d)_(\d+)_branch2([a-c])_w$",
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.conv{'abc'.index(m[3]) + 1}.weight"),
    (r"^res(\d)_(\d+)_branch2([a-c])_bn_s$",
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.bn{'abc'.index(m[3]) + 1}.weight"),
    (r"^res(\d)_(\d+)_branch2([a-c])_bn_b$",
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.bn{'abc'.index(m[3]) + 1}.bias"),
]


def _detectron2_c2(weights: Dict[str, Tensor]) -> Converted:
    out = []
    for k, v in weights.items():
        new = _apply_rules(k, _C2_RULES)
        out.append((k, new if new == k else BODY + new, v))
        if new != k and re.search(r"(bn\d|downsample\.1)\.bias$", new):
            stats = new[: -len("bias")]
            out.append((None, BODY + stats + "running_mean", torch.zeros_like(v)))
            out.append((None, BODY + stats + "running_var", torch.full_like(v, 1 - FROZEN_BN_EPS)))
    return out


def _apply_rules(name: str, rules: List[Tuple[str, object]]) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, name, count=1)
        if n:
            return new
    return name


_CONVERTERS: Dict[str, Callable[[Dict[str, Tensor]], Converted]] = {
    "fewshot_det": _identity,
    "torchvision_resnet": _torchvision_resnet,
    "torchvision_detection": _torchvision_detection,
    "torchvision_mobilenet": _torchvision_mobilenet,
    "torchvision_mobilenet_detection": _torchvision_mobilenet_detection,
    "detectron2": _detectron2,
    "detectron2_c2": _detectron2_c2,
    "efficientnet_lite": detector_names,
}
