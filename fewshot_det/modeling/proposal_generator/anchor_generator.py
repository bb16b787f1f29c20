"""Anchors: A boxes of given sizes and aspect ratios centred at every feature cell.

Shape glossary: L levels, A anchors per cell, H/W feature height/width.

Conventions (torchvision's, which detectron2 shares up to rounding): the anchor of cell
(y, x) at stride s is centred at (x * s, y * s); cell anchors are rounded to integers;
aspect ratio = height / width. Anchors of one level are ordered cell-major, anchor-minor
(index = (y * W + x) * A + a), the order in which ``RPNHead`` outputs are flattened.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..traceable import grid_indices, is_tracing


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> Tensor:
    """Zero-centred anchors of one level, ratio-major as torchvision orders them.

    Returns:
        float32 [len(aspect_ratios) * len(sizes), 4] XYXY.
    """
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    """Anchors for every level of a feature pyramid.

    Args:
        sizes: per level, the anchor sizes (sqrt of area, input pixels). One list is
            repeated for every level.
        aspect_ratios: per level, the height/width ratios; one list is repeated.
        strides: the declared stride of each level.
        stride_from_shape: torchvision's convention: a level's stride is
            ``padded image size // feature size`` (per axis) instead of the declared one.
            They differ only for the maxpool level P6 when the padded size / 32 is odd.
    """

    def __init__(self, *, sizes: Sequence[Sequence[float]],
                 aspect_ratios: Sequence[Sequence[float]], strides: Sequence[int],
                 stride_from_shape: bool = False):
        super().__init__()
        num_levels = len(strides)
        sizes = _broadcast(sizes, num_levels, "MODEL.ANCHOR_GENERATOR.SIZES")
        aspect_ratios = _broadcast(aspect_ratios, num_levels,
                                   "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS")
        self.strides = list(strides)
        self.sizes = [list(map(float, s)) for s in sizes]
        self.stride_from_shape = stride_from_shape
        self.cell_anchors = [cell_anchors(s, r) for s, r in zip(sizes, aspect_ratios)]
        counts = {len(c) for c in self.cell_anchors}
        if len(counts) != 1:
            raise ValueError("MODEL.ANCHOR_GENERATOR: every level needs the same number of "
                             f"anchors per cell, got {[len(c) for c in self.cell_anchors]}")
        self._cache: Dict[tuple, Tensor] = {}

    @property
    def num_anchors(self) -> int:
        """A, anchors per feature cell."""
        return len(self.cell_anchors[0])

    def forward(self, features: List[Tensor], image: Tensor) -> List[Tensor]:
        """
        Args:
            features: per level float [N, C, H, W].
            image: float [N, 3, H_in, W_in], the padded image batch.
        Returns:
            per level, float32 [H * W * A, 4] XYXY anchors in input pixels.
        """
        if is_tracing():
            return [self._traced_level(level, f, image) for level, f in enumerate(features)]
        return self.for_sizes([tuple(f.shape[-2:]) for f in features],
                              tuple(image.shape[-2:]), image.device)

    def for_sizes(self, grid_sizes: List[Tuple[int, int]], image_size: Tuple[int, int],
                  device: torch.device) -> List[Tensor]:
        """``forward`` from sizes: (H, W) of every level and of the padded batch."""
        anchors = []
        for level, (h, w) in enumerate(grid_sizes):
            if self.stride_from_shape:
                stride = (image_size[0] // h, image_size[1] // w)
            else:
                stride = (self.strides[level], self.strides[level])
            key = (level, h, w, stride, str(device))
            if key not in self._cache:
                self._cache[key] = self._grid(self.cell_anchors[level], h, w, stride, device)
            anchors.append(self._cache[key])
        if len(self._cache) > 64:  # many input sizes (multi-scale training): stay small
            self._cache.clear()
        return anchors

    def _traced_level(self, level: int, feature: Tensor, image: Tensor) -> Tensor:
        """``_grid`` of one level with every size taken from tensors (``traceable``)."""
        rows, cols = grid_indices(feature[0, 0])
        if self.stride_from_shape:
            image_hw = torch._shape_as_tensor(image)[2:]
            feature_hw = torch._shape_as_tensor(feature)[2:]
            stride_yx = torch.div(image_hw, feature_hw, rounding_mode="floor").to(torch.float32)
            shift_y, shift_x = rows * stride_yx[0], cols * stride_yx[1]
        else:
            shift_y, shift_x = rows * self.strides[level], cols * self.strides[level]
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
        return (shifts + self.cell_anchors[level].view(1, -1, 4)).reshape(-1, 4)

    @staticmethod
    def _grid(base: Tensor, h: int, w: int, stride: Tuple[int, int],
              device: torch.device) -> Tensor:
        shifts_x = torch.arange(w, dtype=torch.float32, device=device) * stride[1]
        shifts_y = torch.arange(h, dtype=torch.float32, device=device) * stride[0]
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
        return (shifts + base.to(device).view(1, -1, 4)).reshape(-1, 4)  # H*W*A, 4


def _broadcast(values: Sequence[Sequence[float]], num_levels: int, key: str):
    values = [list(v) for v in values]
    if any(not v or any(not math.isfinite(x) or x <= 0 for x in v) for v in values):
        raise ValueError(f"{key} must hold non-empty lists of positive numbers, got {values}")
    if len(values) == 1:
        return values * num_levels
    if len(values) != num_levels:
        raise ValueError(f"{key} has {len(values)} lists but the RPN uses {num_levels} "
                         f"feature levels; give one list per level or a single list")
    return values
