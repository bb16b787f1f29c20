"""Multi-level RoIAlign: each RoI is pooled from the pyramid level matching its size.

Shape glossary: N images, R RoIs (all images), C channels, S output size.

Training on a CPU pools through ``roi_align_cpu`` (a fast backward pass); inference through
torchvision's ``roi_align``.

Level mapping (FPN paper eq. 1, torchvision's ``LevelMapper``):
``k = floor(4 + log2(sqrt(area) / 224) + 1e-6)`` clamped to the available levels.
"""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align
from torchvision.ops.boxes import box_area

from ..traceable import is_tracing
from .roi_align_cpu import roi_align as cpu_roi_align
from .roi_align_cpu import use_fast_path

POOLER_TYPES = {"ROIAlign": False, "ROIAlignV2": True}  # name -> aligned (half-pixel shift)


def assign_levels(boxes: Tensor, min_level: int, max_level: int,
                  canonical_box_size: float = 224, canonical_level: int = 4) -> Tensor:
    """Pyramid level (0-based from ``min_level``) of every box.

    Args:
        boxes: float [R, 4] XYXY in input pixels.
    Returns:
        int64 [R] in 0..max_level-min_level.
    """
    sizes = torch.sqrt(box_area(boxes))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size)
                         + torch.tensor(1e-6, dtype=sizes.dtype))
    return torch.clamp(levels, min=min_level, max=max_level).to(torch.int64) - min_level


class ROIPooler(nn.Module):
    """RoIAlign over several feature levels of known strides.

    Args:
        output_size: S, the pooled height and width.
        strides: stride of each level, finest first, consecutive powers of two.
        sampling_ratio: sampling points per bin side (0 = adaptive).
        aligned: half-pixel offset (True: detectron2's ROIAlignV2; False: torchvision).
        canonical_box_size: a box of this side (input pixels) is pooled from level 4 (P4);
            224 (FPN paper) suits ~800-px inputs; scale it with the input size.
    """

    def __init__(self, *, output_size: int, strides: Sequence[int], sampling_ratio: int = 0,
                 aligned: bool = True, canonical_box_size: float = 224):
        super().__init__()
        levels = [math.log2(s) for s in strides]
        first = int(levels[0])
        if levels != list(range(first, first + len(levels))):
            raise ValueError(f"MODEL.ROI_HEADS.IN_FEATURES must have strides that are consecutive "
                             f"powers of two, got {list(strides)}")
        self.output_size = (output_size, output_size)
        self.scales = [1.0 / s for s in strides]
        self.min_level, self.max_level = first, first + len(levels) - 1
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        if canonical_box_size <= 0:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.POOLER_CANONICAL_BOX_SIZE must be > 0, got "
                             f"{canonical_box_size}")
        self.canonical_box_size = canonical_box_size

    def forward(self, features: List[Tensor], boxes: List[Tensor]) -> Tensor:
        """
        Args:
            features: per level float [N, C, H, W], finest first.
            boxes: per image float [R_i, 4] XYXY in input pixels.
        Returns:
            float [R, C, S, S], RoIs of all images concatenated in order.
        """
        rois = _rois_with_batch_index(boxes)
        if len(features) == 1:
            return self._align(features[0], rois, self.scales[0])
        levels = assign_levels(rois[:, 1:], self.min_level, self.max_level,
                               canonical_box_size=self.canonical_box_size)
        if is_tracing():
            return self._traced_levels(features, rois, levels)
        out = features[0].new_zeros((len(rois), features[0].shape[1]) + self.output_size)
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = torch.nonzero(levels == level).squeeze(1)
            if len(idx):
                out[idx] = self._align(feature, rois[idx], scale).to(out.dtype)
        return out

    def _traced_levels(self, features: List[Tensor], rois: Tensor, levels: Tensor) -> Tensor:
        """``forward``'s level loop with no size taken as a number (``modeling.traceable``):
        every level pools its RoIs, and the pieces go back into RoI order through the
        inverse of the concatenated indices. Eagerly the loop above stays: the same values,
        but another autograd graph would sum the FPN's gradients in another order and so
        change training results in the last bits."""
        pooled, order = [], []
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = torch.nonzero(levels == level).squeeze(1)
            pooled.append(self._align(feature, rois[idx], scale))
            order.append(idx)
        return torch.cat(pooled)[torch.cat(order).argsort()].to(features[0].dtype)

    def _align(self, feature: Tensor, rois: Tensor, scale: float) -> Tensor:
        if self.training and use_fast_path(feature, self.sampling_ratio) and not is_tracing():
            return cpu_roi_align(feature, rois, self.output_size, scale, self.sampling_ratio,
                                 self.aligned)
        return roi_align(feature, rois, self.output_size, spatial_scale=scale,
                         sampling_ratio=self.sampling_ratio, aligned=self.aligned)


def _rois_with_batch_index(boxes: List[Tensor]) -> Tensor:
    """[R, 5] rows (image index, x1, y1, x2, y2), torchvision's RoI format."""
    ids = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]
    return torch.cat([torch.cat(ids), torch.cat(boxes)], dim=1)
