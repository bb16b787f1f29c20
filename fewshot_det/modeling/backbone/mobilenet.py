"""MobileNetV3-Large body (torchvision's modules and parameter names) as a Backbone, and
the FPN on it that torchvision's ``fasterrcnn_mobilenet_v3_large(_320)_fpn`` uses.

Shape glossary: N images, C channels, H/W height/width.

The body is torchvision's ``mobilenet_v3_large(...).features``, a sequence of 17 blocks,
kept under the name ``features`` (a torchvision ImageNet state dict's names). Stages are
torchvision's (``backbone_utils._mobilenet_extractor``): stage ``k`` starts at the k-th of
the blocks 0 (the stem), each strided inverted residual and the last 1x1 conv, and its
output ``stage{k}`` is *that block's* output, as torchvision returns it:

=========  =====  ========  ======
output     block  channels  stride
=========  =====  ========  ======
``stage0``     0        16       2
``stage1``     2        24       4
``stage2``     4        40       8
``stage3``     7        80      16
``stage4``    13       160      32
``stage5``    16       960      32
=========  =====  ========  ======

torchvision's detectors feed ``stage4`` and ``stage5`` (its ``returned_layers`` [4, 5]) to
the FPN: both have stride 32, so the pyramid has two stride-32 levels plus a stride-64
max-pool level, and its RoI pooler, whose two levels share one scale, pools every box from
the first (``configs/torchvision/faster_rcnn_mobilenet_v3_large_FPN.yaml``).
"""
from __future__ import annotations

from functools import partial
from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large

from ..registry import BACKBONE_REGISTRY
from .base import Backbone, ShapeSpec
from .fpn import FPN
from .norm import freeze_batchnorm, get_norm

STAGES = tuple(f"stage{k}" for k in range(6))
MOBILENET_NORMS = ("FrozenBN", "BN")


class MobileNetV3(Backbone):
    """torchvision's MobileNetV3-Large without its classifier, returning the requested stages.

    Args:
        norm: "FrozenBN" (statistics and affine fixed, torchvision's detection backbone;
            eps 1e-5 as there) or "BN" (``nn.BatchNorm2d``, trained).
        out_features: stages to return, any of "stage0".."stage5"; later blocks are not
            built.
        freeze_at: 0 nothing frozen, k: the blocks before stage k (torchvision's
            ``trainable_backbone_layers`` = 6 - k; its detectors' default 3 is
            ``freeze_at`` 3), 6: everything. Frozen blocks get ``requires_grad=False`` and
            their batch norms become frozen batch norms.
        channels_last: run on channels-last (NHWC) feature maps (same results).
    """

    def __init__(self, *, norm: str = "FrozenBN", out_features: Sequence[str] = STAGES[4:],
                 freeze_at: int = 0, channels_last: bool = False):
        super().__init__()
        if norm not in MOBILENET_NORMS:
            raise ValueError(f"MODEL.MOBILENET_V3.NORM must be one of {MOBILENET_NORMS}, "
                             f"got {norm!r}")
        bad = [f for f in out_features if f not in STAGES]
        if bad or not out_features:
            raise ValueError(f"MODEL.MOBILENET_V3.OUT_FEATURES must be a non-empty subset of "
                             f"{STAGES}, got {list(out_features)}")
        if not 0 <= freeze_at <= len(STAGES):
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT must be in 0..{len(STAGES)} for "
                             f"MobileNetV3, got {freeze_at}")
        self.out_features = [s for s in STAGES if s in out_features]
        features = mobilenet_v3_large(weights=None, norm_layer=partial(get_norm, norm)).features
        self.stage_blocks = stage_blocks(features)
        self._out_blocks = {self.stage_blocks[STAGES.index(s)]: s for s in self.out_features}
        self.features = features[: max(self._out_blocks) + 1]  # keeps the block names 0, 1, ..
        self._out_shapes = _stage_shapes(self.features, self._out_blocks)
        self.channels_last = channels_last
        self.freeze(freeze_at)

    @property
    def size_divisibility(self) -> int:
        return 32

    def freeze(self, freeze_at: int) -> None:
        """Freeze the blocks before stage ``freeze_at`` (every block for 6)."""
        end = self.stage_blocks[freeze_at] if freeze_at < len(STAGES) else len(self.features)
        for block in self.features[:end]:
            for p in block.parameters():
                p.requires_grad_(False)
            freeze_batchnorm(block)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """
        Args:
            x: float [N, 3, H, W], normalised.
        Returns:
            {"stage4": [N, 160, H/32, W/32], ...} for the requested stages (sides rounded
            up).
        """
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outputs = {}
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self._out_blocks:
                outputs[self._out_blocks[i]] = x
        return outputs


def stage_blocks(features: nn.Sequential) -> List[int]:
    """The first block of every stage: torchvision's ``stage_indices`` (the stem, the
    blocks it marks as strided, ``_is_cn``, and the last block): [0, 2, 4, 7, 13, 16]."""
    blocks = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    blocks.append(len(features) - 1)
    if len(blocks) != len(STAGES):
        raise ValueError(f"this torchvision's MobileNetV3-Large has {len(blocks)} stages "
                         f"(blocks {blocks}), expected {len(STAGES)}")
    return blocks


def _stage_shapes(features: nn.Sequential, out_blocks: Dict[int, str]) -> Dict[str, ShapeSpec]:
    # The stem and every strided block halve the size.
    shapes, stride = {}, 1
    for i, block in enumerate(features):
        if i == 0 or getattr(block, "_is_cn", False):
            stride *= 2
        if i in out_blocks:
            shapes[out_blocks[i]] = ShapeSpec(block.out_channels, stride)
    return shapes


def build_mobilenet_v3(cfg) -> MobileNetV3:
    """MobileNetV3-Large from ``MODEL.MOBILENET_V3.*``, ``MODEL.BACKBONE.FREEZE_AT`` and
    ``.CHANNELS_LAST``."""
    m = cfg.MODEL.MOBILENET_V3
    return MobileNetV3(norm=m.NORM, out_features=list(m.OUT_FEATURES),
                       freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
                       channels_last=cfg.MODEL.BACKBONE.CHANNELS_LAST)


@BACKBONE_REGISTRY.register()
def build_mobilenet_v3_fpn_backbone(cfg) -> FPN:
    """MobileNetV3-Large (``MODEL.MOBILENET_V3.*``) + FPN (``MODEL.FPN.*``)."""
    return FPN.from_config(cfg, build_mobilenet_v3(cfg))
