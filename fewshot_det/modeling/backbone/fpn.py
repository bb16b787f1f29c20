"""Feature Pyramid Network on a ResNet: P2-P5 from res2-res5, P6 by subsampling P5.

Shape glossary: N images, C channels, H/W height/width, L levels.

The lateral and output convolutions are torchvision's ``FeaturePyramidNetwork`` (same
parameter names, so torchvision Faster R-CNN weights load as they are); P6 is
``max_pool2d(P5, kernel_size=1, stride=2)`` as in torchvision and detectron2.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Dict, Sequence

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import FeaturePyramidNetwork

from ..registry import BACKBONE_REGISTRY
from .base import Backbone, ShapeSpec
from .norm import GN_GROUPS
from .resnet import ResNet, build_resnet

TOP_BLOCKS = ("maxpool", "none")
FPN_NORMS = ("", "BN", "GN")


class FPN(Backbone):
    """Bottom-up backbone + top-down pathway; outputs ``p{k}`` for each input ``res{k}``
    (any name ending in its level number k: ``stage{k}`` gives ``p{k}`` too).

    Args:
        bottom_up: a Backbone returning at least ``in_features``.
        in_features: bottom-up features used, finest first (e.g. res2..res5).
        out_channels: channels of every pyramid level.
        norm: "" (no normalisation, convs have biases) or "GN".
        top_block: "maxpool" adds one coarser level p{k+1} = subsampled p{k}; "none".
    """

    def __init__(self, *, bottom_up: Backbone, in_features: Sequence[str], out_channels: int,
                 norm: str = "", top_block: str = "maxpool"):
        super().__init__()
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing or not in_features:
            raise ValueError(f"MODEL.FPN.IN_FEATURES {list(in_features)}: {missing} not produced "
                             f"by the bottom-up backbone (it gives {list(shapes)})")
        if norm not in FPN_NORMS:
            raise ValueError(f"MODEL.FPN.NORM must be one of {FPN_NORMS}, got {norm!r}")
        if top_block not in TOP_BLOCKS:
            raise ValueError(f"MODEL.FPN.TOP_BLOCK must be one of {TOP_BLOCKS}, got {top_block!r}")
        self.in_features = sorted(in_features, key=lambda f: shapes[f].stride)
        self.body = bottom_up
        norm_layer = {"": None, "BN": nn.BatchNorm2d,
                      "GN": lambda c: nn.GroupNorm(GN_GROUPS, c)}[norm]
        self.fpn = FeaturePyramidNetwork([shapes[f].channels for f in self.in_features],
                                         out_channels, norm_layer=norm_layer)
        self.top_block = top_block
        self._out_shapes = {}
        for f in self.in_features:
            self._out_shapes[f"p{_level(f)}"] = ShapeSpec(out_channels, shapes[f].stride)
        if top_block == "maxpool":
            last = shapes[self.in_features[-1]]
            self._out_shapes[f"p{_level(self.in_features[-1]) + 1}"] = ShapeSpec(
                out_channels, last.stride * 2)
        if len(self._out_shapes) != len(self.in_features) + (top_block == "maxpool"):
            raise ValueError(f"MODEL.FPN.IN_FEATURES {list(in_features)} give clashing "
                             f"output names {list(self._out_shapes)}")

    @classmethod
    def from_config(cls, cfg, bottom_up: Backbone) -> "FPN":
        """An FPN of ``MODEL.FPN.*`` on any bottom-up backbone."""
        f = cfg.MODEL.FPN
        return cls(bottom_up=bottom_up, in_features=list(f.IN_FEATURES),
                   out_channels=f.OUT_CHANNELS, norm=f.NORM, top_block=f.TOP_BLOCK)

    @property
    def size_divisibility(self) -> int:
        return 32

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """
        Args:
            x: float [N, 3, H, W], normalised, H and W multiples of ``size_divisibility``.
        Returns:
            {"p2": [N, C, H/4, W/4], ..., "p6": [N, C, H/64 (rounded up), W/64]}.
        """
        return self.from_bottom_up(self.body(x))

    def from_bottom_up(self, bottom_up: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """The pyramid from already computed bottom-up features (``self.body``'s output)."""
        pyramid = self.fpn(OrderedDict((f, bottom_up[f]) for f in self.in_features))
        outputs = list(pyramid.values())
        if self.top_block == "maxpool":
            outputs.append(F.max_pool2d(outputs[-1], kernel_size=1, stride=2))
        return dict(zip(self._out_shapes, outputs))


def _level(feature: str) -> int:
    """The level number a bottom-up feature name ends with (``res4`` -> 4)."""
    digits = re.search(r"\d+$", feature)
    if digits is None:
        raise ValueError(f"MODEL.FPN.IN_FEATURES: {feature!r} does not end in a level number")
    return int(digits.group())


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_backbone(cfg) -> FPN:
    """ResNet (``MODEL.RESNETS.*``) + FPN (``MODEL.FPN.*``)."""
    return FPN.from_config(cfg, build_resnet(cfg))


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg) -> ResNet:
    """The ResNet alone (``MODEL.RESNETS.*``), e.g. to encode support crops."""
    return build_resnet(cfg)
