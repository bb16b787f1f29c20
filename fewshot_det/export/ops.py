"""Trace-friendly pieces of the inference path, for the exported graphs (``export.graph``).

Shape glossary: H/W padded input height/width, h/w feature height/width, A anchors per
cell, R boxes, K classes.

Why these exist beside the model's own code: ``torch.onnx.export`` and ``torch.jit.trace``
record tensor operations only. A Python int taken from a shape (``len(x)``, ``min(k, n)``,
``range(n)``, ``int(h)``) or a branch on data (``if len(idx):``) is frozen at the value it
had on the example input, so a graph traced on one image size would silently compute the
anchors, top-k sizes and pooled shapes of that size on every other one. Each function here
computes what its counterpart in ``modeling`` does, with every size taken from tensors; the
export tests check that the graphs give the model's detections on images of other sizes.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor
from torchvision.ops import nms, roi_align

from ..modeling.roi_heads.poolers import assign_levels


def grid_indices(plane: Tensor) -> Tuple[Tensor, Tensor]:
    """Row and column index of every cell of a 2-D tensor: (float [h, w], float [h, w]).

    Cumulative sums of ones instead of ``arange(h)``: the size then follows the input.
    """
    ones = torch.ones_like(plane, dtype=torch.float32)
    return ones.cumsum(0) - 1, ones.cumsum(1) - 1


def inside_mask(image: Tensor, image_size: Tensor) -> Tensor:
    """float [H, W]: 1 inside the unpadded ``image_size`` (float [2]: h, w), 0 in the
    bottom/right padding (where the model pads with 0 after normalisation)."""
    rows, cols = grid_indices(image[0, 0])
    return ((rows < image_size[0]) & (cols < image_size[1])).to(image.dtype)


def level_anchors(cell: Tensor, feature: Tensor, image: Tensor, stride: int,
                  stride_from_shape: bool) -> Tensor:
    """``AnchorGenerator`` for one level: float32 [h * w * A, 4], cell-major.

    Args:
        cell: float [A, 4] zero-centred anchors of the level.
        feature: [1, C, h, w]; image: [1, 3, H, W] (the padded input).
        stride_from_shape: torchvision's convention, stride = H // h per axis.
    """
    rows, cols = grid_indices(feature[0, 0])
    if stride_from_shape:
        image_hw = torch._shape_as_tensor(image)[2:]
        feature_hw = torch._shape_as_tensor(feature)[2:]
        stride_yx = torch.div(image_hw, feature_hw, rounding_mode="floor").to(torch.float32)
        shift_y, shift_x = rows * stride_yx[0], cols * stride_yx[1]
    else:
        shift_y, shift_x = rows * stride, cols * stride
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
    return (shifts + cell.view(1, -1, 4)).reshape(-1, 4)


def clip_boxes(boxes: Tensor, image_size: Tensor) -> Tensor:
    """``clip_boxes_to_image`` with the size as a tensor (float [2]: h, w); boxes [..., 4]."""
    x = torch.min(boxes[..., 0::2].clamp(min=0), image_size[1])
    y = torch.min(boxes[..., 1::2].clamp(min=0), image_size[0])
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def large_enough(boxes: Tensor, min_size: float) -> Tensor:
    """int64 [R'] indices of the boxes whose sides are >= ``min_size`` (remove_small_boxes)."""
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.nonzero((ws >= min_size) & (hs >= min_size)).squeeze(1)


def top_k_padded(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """(values, int64 indices), each [k]: the best ``min(k, R)`` of float [R] scores,
    then padding.

    The graph cannot ask for ``min(k, R)`` (R follows the image), so ``k`` entries of -inf
    are appended and always ``k`` are taken; a value of -inf marks padding (``scores``
    holds no -inf: logits are finite).
    """
    padding = torch.full((k,), float("-inf"), dtype=scores.dtype, device=scores.device)
    top = torch.cat([scores, padding]).topk(k)
    return top.values, top.indices


def nms_by_group(boxes: Tensor, scores: Tensor, groups: Tensor, num_groups: int,
                 thresh: float) -> Tensor:
    """``batched_nms`` as its exact form: NMS within each of the ``num_groups`` groups
    (labels 0..num_groups-1), all survivors by decreasing score. int64 [R'] indices."""
    kept = []
    for g in range(num_groups):
        idx = torch.nonzero(groups == g).squeeze(1)
        kept.append(idx[nms(boxes[idx], scores[idx], thresh)])
    kept = torch.cat(kept)
    return kept[scores[kept].sort(descending=True).indices]


def pool_levels(features: Sequence[Tensor], boxes: Tensor, *, output_size: Tuple[int, int],
                scales: List[float], sampling_ratio: int, aligned: bool, min_level: int,
                max_level: int, canonical_box_size: float) -> Tensor:
    """``ROIPooler`` for one image: float [R, C, S, S] from boxes [R, 4].

    Each level pools its boxes; the pieces are put back in box order by the inverse of
    the concatenated level indices (the model writes into a zero tensor of R rows, a
    size the graph cannot state).
    """
    rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
    if len(features) == 1:
        return roi_align(features[0], rois, output_size, spatial_scale=scales[0],
                         sampling_ratio=sampling_ratio, aligned=aligned)
    levels = assign_levels(boxes, min_level, max_level, canonical_box_size=canonical_box_size)
    pooled, order = [], []
    for level, (feature, scale) in enumerate(zip(features, scales)):
        idx = torch.nonzero(levels == level).squeeze(1)
        pooled.append(roi_align(feature, rois[idx], output_size, spatial_scale=scale,
                                sampling_ratio=sampling_ratio, aligned=aligned))
        order.append(idx)
    return torch.cat(pooled)[torch.cat(order).argsort()]

