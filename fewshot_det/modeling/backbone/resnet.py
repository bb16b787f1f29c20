"""ResNet-18/34/50/101 bodies (torchvision's modules and parameter names) as a Backbone.

Shape glossary: N images, C channels, H/W height/width.

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1`` ...), so a
torchvision ImageNet state dict loads without renaming. Stages are named as in detectron2:
``stem`` (conv1 + bn1 + maxpool, stride 4), ``res2`` (layer1) ... ``res5`` (layer4).
"""
from __future__ import annotations

from functools import partial
from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models import resnet as tv_resnet

from .base import Backbone, ShapeSpec
from .norm import conv_norm, freeze_batchnorm, get_norm

STAGES = ("res2", "res3", "res4", "res5")


class BasicBlock(tv_resnet.BasicBlock):
    """torchvision's BasicBlock, with frozen batch norms folded into the convolutions."""

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(conv_norm(x, self.conv1, self.bn1))
        out = conv_norm(out, self.conv2, self.bn2)
        identity = x if self.downsample is None else conv_norm(x, *self.downsample)
        return F.relu_(out.add_(identity))  # in place, as torchvision: saves a feature map


class Bottleneck(tv_resnet.Bottleneck):
    """torchvision's Bottleneck, with frozen batch norms folded into the convolutions."""

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(conv_norm(x, self.conv1, self.bn1))
        out = F.relu_(conv_norm(out, self.conv2, self.bn2))
        out = conv_norm(out, self.conv3, self.bn3)
        identity = x if self.downsample is None else conv_norm(x, *self.downsample)
        return F.relu_(out.add_(identity))


_SPECS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}


class ResNet(Backbone):
    """A torchvision ResNet without its classifier, returning the requested stages.

    Args:
        depth: 18, 34, 50 or 101.
        norm: "FrozenBN", "BN" or "GN" (see ``norm.get_norm``).
        out_features: stages to return, any of "res2".."res5"; later stages are not built.
        freeze_at: detectron2 meaning: 0 nothing frozen, 1 the stem, 2 stem + res2, ...,
            5 everything. Frozen stages get ``requires_grad=False`` and BN becomes frozen BN.
        stride_in_1x1: put a bottleneck's stride in its 1x1 conv (MSRA / detectron2 weights)
            instead of the 3x3 conv (torchvision). Ignored for depth 18/34.
        channels_last: run on channels-last (NHWC) feature maps. Same results; on CPU
            (oneDNN) the FPN and RPN convolutions that follow are 1.2-2x faster.
    """

    def __init__(self, *, depth: int, norm: str = "FrozenBN",
                 out_features: Sequence[str] = STAGES, freeze_at: int = 0,
                 stride_in_1x1: bool = False, channels_last: bool = False):
        super().__init__()
        if depth not in _SPECS:
            raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {sorted(_SPECS)}, got {depth}")
        bad = [f for f in out_features if f not in STAGES]
        if bad or not out_features:
            raise ValueError(f"MODEL.RESNETS.OUT_FEATURES must be a non-empty subset of "
                             f"{STAGES}, got {list(out_features)}")
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT must be in 0..5, got {freeze_at}")
        get_norm(norm, 64)  # validates the name before the (slow) construction
        block, layers = _SPECS[depth]
        net = tv_resnet.ResNet(block, layers, norm_layer=partial(get_norm, norm))
        self.out_features = [s for s in STAGES if s in out_features]
        num_stages = STAGES.index(self.out_features[-1]) + 1
        self.conv1, self.bn1, self.maxpool = net.conv1, net.bn1, net.maxpool
        for i in range(1, num_stages + 1):
            self.add_module(f"layer{i}", getattr(net, f"layer{i}"))
        if stride_in_1x1 and block is Bottleneck:
            _move_stride_to_1x1(self.stages())
        self._out_shapes = _stage_shapes(block.expansion, self.out_features)
        self.channels_last = channels_last
        self.freeze(freeze_at)

    def stages(self) -> List[nn.Module]:
        """The built stages res2, res3, ... (torchvision's layer1, layer2, ...)."""
        return [m for name, m in self.named_children() if name.startswith("layer")]

    def freeze(self, freeze_at: int) -> None:
        """Freeze the stem (freeze_at >= 1) and the first ``freeze_at - 1`` stages."""
        groups = [[self.conv1, self.bn1]] + [[s] for s in self.stages()]
        for group in groups[:freeze_at]:
            for module in group:
                for p in module.parameters():
                    p.requires_grad_(False)
        if freeze_at >= 1:
            self.bn1 = freeze_batchnorm(self.bn1)
        for stage in self.stages()[: max(freeze_at - 1, 0)]:
            freeze_batchnorm(stage)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """
        Args:
            x: float [N, 3, H, W], normalised.
        Returns:
            {"res2": [N, C2, H/4, W/4], ...} for the requested stages.
        """
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.maxpool(F.relu_(conv_norm(x, self.conv1, self.bn1)))
        outputs = {}
        for name, stage in zip(STAGES, self.stages()):
            x = stage(x)
            if name in self.out_features:
                outputs[name] = x
        return outputs


def _stage_shapes(expansion: int, out_features: List[str]) -> Dict[str, ShapeSpec]:
    shapes = {}
    for i, name in enumerate(STAGES):
        if name in out_features:
            shapes[name] = ShapeSpec(channels=64 * 2 ** i * expansion, stride=4 * 2 ** i)
    return shapes


def _move_stride_to_1x1(stages: List[nn.Module]) -> None:
    # MSRA's original ResNet (and detectron2's R-50.pkl) strides in the first 1x1 conv.
    for stage in stages:
        first = stage[0]
        stride = first.conv2.stride
        first.conv1.stride, first.conv2.stride = stride, (1, 1)


def build_resnet(cfg) -> ResNet:
    """ResNet from ``MODEL.RESNETS.*``, ``MODEL.BACKBONE.FREEZE_AT`` and ``.CHANNELS_LAST``."""
    r = cfg.MODEL.RESNETS
    return ResNet(depth=r.DEPTH, norm=r.NORM, out_features=list(r.OUT_FEATURES),
                  freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT, stride_in_1x1=r.STRIDE_IN_1X1,
                  channels_last=cfg.MODEL.BACKBONE.CHANNELS_LAST)
