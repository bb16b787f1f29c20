"""EfficientNet-Lite0/1/2 bodies (Tan & Le, 2019; TensorFlow's "lite" variants) as a Backbone.

Shape glossary: N images, C channels, H/W height/width, K ImageNet classes (1000).

Lite differs from EfficientNet-B0..B2: ReLU6 instead of swish, no squeeze-excitation, and
neither the stem (32 channels), the head (1280) nor the first and last stages' repeats
are scaled with the variant. The seven MBConv stages are ``stage1`` .. ``stage7``; the
detection outputs take detectron2's names by stride, so FPN, RPN and YOLO-grid configs
read as for a ResNet:

    output  holds                         stride  channels lite0 / lite1 / lite2
    (stem)  stem conv + stage1            2       16 / 16 / 16   (not an output)
    res2    stage2                        4       24 / 24 / 24
    res3    stage3                        8       40 / 40 / 48
    res4    stage4 + stage5               16      112 / 112 / 120
    res5    stage6 + stage7               32      320 / 320 / 352

``freeze_at`` follows detectron2: 1 freezes the stem group (stem conv + stage1, everything
before stride 4), 2 also res2, 3 also res3, 4 also res4, 5 everything.

Padding is TensorFlow's "SAME" (the weights were trained with it): a stride-1 conv pads
(k - 1) / 2 on every side; a stride-2 conv pads so that the output is ceil(H / 2), the odd
pixel of padding going bottom/right. The reference PyTorch port fixes these pads for its
ImageNet input size (static padding); here they follow each input's size, which gives the
reference's pads at that size and TF's at any other. The stride-2 pads are computed from
the feature size in Python, so a traced model keeps the pads of the traced size: the same
for every input whose sides are multiples of 32 (the FPN's ``size_divisibility``).

Stochastic depth (drop-connect) of the ImageNet training is not used: detection trains
with frozen statistics and small batches, where it only adds noise.
"""
from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops.misc import FrozenBatchNorm2d

from ..registry import BACKBONE_REGISTRY
from .base import Backbone, ShapeSpec
from .fpn import FPN
from .norm import conv_norm, freeze_batchnorm

OUTPUTS = ("res2", "res3", "res4", "res5")
NORMS = ("FrozenBN", "BN")
BN_EPS = 1e-3       # TensorFlow's; the weights' statistics assume it
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class Variant(NamedTuple):
    width: float     # channel multiplier
    depth: float     # repeat multiplier
    input_size: int  # ImageNet training / evaluation side


VARIANTS = {"lite0": Variant(1.0, 1.0, 224), "lite1": Variant(1.0, 1.1, 240),
            "lite2": Variant(1.1, 1.2, 260)}


class StageSpec(NamedTuple):
    expand_ratio: int
    kernel_size: int
    stride: int
    channels: int
    repeats: int


# EfficientNet-B0's MBConv stages 1..7, before scaling.
BASE_STAGES = (StageSpec(1, 3, 1, 16, 1), StageSpec(6, 3, 2, 24, 2), StageSpec(6, 5, 2, 40, 2),
               StageSpec(6, 3, 2, 80, 3), StageSpec(6, 5, 1, 112, 3), StageSpec(6, 5, 2, 192, 4),
               StageSpec(6, 3, 1, 320, 1))
# The stage each output ends with, and its stride.
OUTPUT_STAGE = {"res2": 2, "res3": 3, "res4": 5, "res5": 7}
OUTPUT_STRIDE = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
# FREEZE_AT group g (1 = stem) -> the stages it holds besides the stem conv.
FREEZE_GROUPS = ((1,), (2,), (3,), (4, 5), (6, 7))


def scale_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's ``round_filters``: ``channels * width`` to the nearest multiple of
    ``divisor``, but never more than 10% below the product."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def stage_specs(variant: str) -> List[StageSpec]:
    """The seven MBConv stages of ``variant``, widths and repeats scaled (first and last
    stages keep one block: the "lite" rule)."""
    width, depth, _ = VARIANTS[variant]
    specs = []
    for i, s in enumerate(BASE_STAGES):
        fixed = i in (0, len(BASE_STAGES) - 1)
        repeats = s.repeats if fixed else int(math.ceil(depth * s.repeats))
        specs.append(s._replace(channels=scale_channels(s.channels, width), repeats=repeats))
    return specs


def same_pad(x: Tensor, kernel_size: int, stride: int) -> Tensor:
    """Zero-pad ``x`` [N, C, H, W] as TensorFlow's "SAME" for a strided conv: the output
    will be ceil(H / stride) x ceil(W / stride), extra padding at the bottom/right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dimension first
        total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def make_norm(norm: str, channels: int) -> nn.Module:
    """Batch norm with TensorFlow's epsilon: "FrozenBN" (fixed) or "BN" (trained)."""
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels, eps=BN_EPS)
    if norm == "BN":
        return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    raise ValueError(f"MODEL.EFFICIENTNET.NORM must be one of {NORMS}, got {norm!r}")


class ConvBN(nn.Module):
    """Conv (TF "SAME" padding, no bias) + batch norm + optional ReLU6.

    Args:
        kernel_size, stride, groups: of the convolution (``groups=C`` is depthwise).
        norm: "FrozenBN" (folded into the conv, see ``norm.conv_norm``) or "BN".
        activation: apply ReLU6.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, groups: int = 1, norm: str = "FrozenBN",
                 activation: bool = True):
        super().__init__()
        # Stride 1: TF's symmetric pad equals PyTorch's; stride 2: padded in forward.
        padding = (kernel_size - 1) // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              groups=groups, bias=False)
        self.bn = make_norm(norm, out_channels)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        """[N, C_in, H, W] -> [N, C_out, ceil(H / stride), ceil(W / stride)]."""
        stride = self.conv.stride[0]
        if stride > 1:
            x = same_pad(x, self.conv.kernel_size[0], stride)
        x = conv_norm(x, self.conv, self.bn)
        return F.relu6(x, inplace=True) if self.activation else x


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion (absent for ratio 1) -> k x k depthwise
    (carries the stride) -> linear 1x1 projection, plus the input when shapes agree."""

    def __init__(self, in_channels: int, out_channels: int, *, expand_ratio: int,
                 kernel_size: int, stride: int, norm: str):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = (ConvBN(in_channels, hidden, 1, norm=norm)
                       if expand_ratio != 1 else None)
        self.depthwise = ConvBN(hidden, hidden, kernel_size, stride=stride, groups=hidden,
                                norm=norm)
        self.project = ConvBN(hidden, out_channels, 1, norm=norm, activation=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """[N, C_in, H, W] -> [N, C_out, ceil(H / stride), ceil(W / stride)]."""
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


def make_stage(in_channels: int, spec: StageSpec, norm: str) -> nn.Sequential:
    """``spec.repeats`` MBConv blocks; the first one strides and changes the width."""
    blocks = []
    for i in range(spec.repeats):
        blocks.append(MBConv(in_channels if i == 0 else spec.channels, spec.channels,
                             expand_ratio=spec.expand_ratio, kernel_size=spec.kernel_size,
                             stride=spec.stride if i == 0 else 1, norm=norm))
    return nn.Sequential(*blocks)


class EfficientNetLite(Backbone):
    """The EfficientNet-Lite body without its classifier, returning res2..res5.

    Args:
        variant: "lite0", "lite1" or "lite2".
        norm: "FrozenBN" (for pretrained weights) or "BN".
        out_features: outputs to return, any of res2..res5; later stages are not built.
        freeze_at: 0 nothing frozen, 1 the stem group, 2 + res2, ..., 5 everything (module
            doc). Frozen stages get ``requires_grad=False`` and frozen batch norms.
        channels_last: run on channels-last (NHWC) feature maps (same results; faster
            depthwise and 1x1 convolutions on CPU with oneDNN).
    """

    def __init__(self, *, variant: str = "lite0", norm: str = "FrozenBN",
                 out_features: Sequence[str] = OUTPUTS, freeze_at: int = 0,
                 channels_last: bool = False):
        super().__init__()
        _check_args(variant, norm, out_features, freeze_at)
        self.variant = variant
        self.out_features = [f for f in OUTPUTS if f in out_features]
        specs = stage_specs(variant)[: OUTPUT_STAGE[self.out_features[-1]]]
        self.stem = ConvBN(3, STEM_CHANNELS, 3, stride=2, norm=norm)
        in_channels = STEM_CHANNELS
        for i, spec in enumerate(specs, start=1):
            self.add_module(f"stage{i}", make_stage(in_channels, spec, norm))
            in_channels = spec.channels
        self._out_shapes = {f: ShapeSpec(specs[OUTPUT_STAGE[f] - 1].channels, OUTPUT_STRIDE[f])
                            for f in self.out_features}
        self.channels_last = channels_last
        self.freeze(freeze_at)

    def stages(self) -> List[nn.Sequential]:
        """The built MBConv stages, stage1 first."""
        return [m for name, m in self.named_children() if name.startswith("stage")]

    def freeze(self, freeze_at: int) -> None:
        """Freeze the stem group (freeze_at >= 1) and the next ``freeze_at - 1`` outputs'
        stages: no gradients, batch norms frozen."""
        stages = self.stages()
        for group in FREEZE_GROUPS[:freeze_at]:
            modules = [stages[i - 1] for i in group if i <= len(stages)]
            if group == FREEZE_GROUPS[0]:
                modules.append(self.stem)
            for module in modules:
                module.requires_grad_(False)
                freeze_batchnorm(module)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """
        Args:
            x: float [N, 3, H, W], normalised (RGB for the ImageNet weights).
        Returns:
            {"res2": [N, C2, ceil(H/4), ceil(W/4)], ...} for the requested outputs.
        """
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        ends = {stage: name for name, stage in OUTPUT_STAGE.items()}
        outputs = {}
        for i, stage in enumerate(self.stages(), start=1):
            x = stage(x)
            if ends.get(i) in self.out_features:
                outputs[ends[i]] = x
        return outputs


def _check_args(variant: str, norm: str, out_features: Sequence[str], freeze_at: int) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"MODEL.EFFICIENTNET.VARIANT must be one of {sorted(VARIANTS)}, "
                         f"got {variant!r}")
    if norm not in NORMS:
        raise ValueError(f"MODEL.EFFICIENTNET.NORM must be one of {NORMS}, got {norm!r}")
    bad = [f for f in out_features if f not in OUTPUTS]
    if bad or not out_features:
        raise ValueError(f"MODEL.EFFICIENTNET.OUT_FEATURES must be a non-empty subset of "
                         f"{OUTPUTS}, got {list(out_features)}")
    if not 0 <= freeze_at <= 5:
        raise ValueError(f"MODEL.BACKBONE.FREEZE_AT must be in 0..5, got {freeze_at}")


class EfficientNetLiteClassifier(nn.Module):
    """The ImageNet classifier: body -> 1x1 conv to 1280 + BN + ReLU6 -> global average
    pool -> linear. Detectors use the body only; this checks the ported weights.

    Args:
        variant: "lite0", "lite1" or "lite2"; ``input_size`` is its ImageNet side.
        num_classes: K.
        norm: as the body's.
    """

    def __init__(self, *, variant: str = "lite0", num_classes: int = 1000,
                 norm: str = "FrozenBN"):
        super().__init__()
        self.body = EfficientNetLite(variant=variant, norm=norm, out_features=["res5"])
        self.head = ConvBN(self.body.output_shape()["res5"].channels, HEAD_CHANNELS, 1,
                           norm=norm)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.input_size = VARIANTS[variant].input_size

    def forward(self, x: Tensor) -> Tensor:
        """
        Args:
            x: float [N, 3, H, W], normalised RGB.
        Returns:
            float [N, K] class logits.
        """
        features = self.head(self.body(x)["res5"])
        return self.fc(features.mean(dim=(2, 3)))


def build_efficientnet_lite(cfg) -> EfficientNetLite:
    """EfficientNetLite from ``MODEL.EFFICIENTNET.*``, ``MODEL.BACKBONE.FREEZE_AT`` and
    ``.CHANNELS_LAST``."""
    e = cfg.MODEL.EFFICIENTNET
    return EfficientNetLite(variant=e.VARIANT, norm=e.NORM, out_features=list(e.OUT_FEATURES),
                            freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
                            channels_last=cfg.MODEL.BACKBONE.CHANNELS_LAST)


@BACKBONE_REGISTRY.register()
def build_efficientnet_lite_fpn_backbone(cfg) -> FPN:
    """EfficientNet-Lite (``MODEL.EFFICIENTNET.*``) + FPN (``MODEL.FPN.*``)."""
    return FPN.from_config(cfg, build_efficientnet_lite(cfg))


@BACKBONE_REGISTRY.register()
def build_efficientnet_lite_backbone(cfg) -> EfficientNetLite:
    """The EfficientNet-Lite body alone (``MODEL.EFFICIENTNET.*``), e.g. for YOLO-grid."""
    return build_efficientnet_lite(cfg)
