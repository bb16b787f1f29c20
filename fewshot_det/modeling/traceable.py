"""Size-following tensor operations of the inference path, one implementation for eager
runs and for export.

Shape glossary: N images, R boxes (or scores), k kept, h/w feature height/width.

Why these exist: ``torch.jit.trace`` and ``torch.onnx.export`` record tensor operations
only. A Python int taken from a shape (``len(x)``, ``min(k, n)``, ``int(h)``) or a cache
keyed on sizes is frozen at the value it had on the example input, so a graph traced on
one image size would compute the top-k sizes and anchors of that size on every other one.
The detectors call these functions at the few places where a size follows the data;
eagerly each one runs exactly the operation it replaces (so results stay bit-identical
to the plain torchvision calls), and while tracing the form whose sizes come from
tensors. Exporting traces the model's own stages through them (``fewshot_det.export``);
nothing else in the model knows about tracing.
"""
from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import Tensor
from torchvision.ops import boxes as box_ops

ImageSize = Union[Tuple[int, int], Tensor]  # (h, w) ints, or float [2] while tracing


def is_tracing() -> bool:
    """True inside ``torch.jit.trace`` or ``torch.onnx.export``."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def top_k(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """The best ``min(k, R)`` of each row of float [N, R] scores: (values, int64 indices),
    each [N, min(k, R)], best first.

    While tracing (one image) ``min(k, R)`` cannot be asked for, so ``k`` entries of -inf
    are appended, ``k`` are taken and the padding (-inf: logits are finite) is dropped.
    """
    if not is_tracing():
        return scores.topk(min(k, scores.shape[1]), dim=1)
    padding = torch.full((1, k), float("-inf"), dtype=scores.dtype, device=scores.device)
    values, idx = torch.cat([scores, padding], dim=1).topk(k, dim=1)
    real = torch.nonzero(torch.isfinite(values[0])).squeeze(1)
    return values[:, real], idx[:, real]


def grid_indices(plane: Tensor) -> Tuple[Tensor, Tensor]:
    """Row and column index of every cell of a 2-D tensor: (float [h, w], float [h, w]).

    Cumulative sums of ones instead of ``arange(h)``: the size then follows the input
    (and the values are the same small integers).
    """
    ones = torch.ones_like(plane, dtype=torch.float32)
    return ones.cumsum(0) - 1, ones.cumsum(1) - 1


def clip_boxes(boxes: Tensor, size: ImageSize) -> Tensor:
    """``clip_boxes_to_image`` for boxes [..., 4]; ``size`` may be a float [2] tensor."""
    if not isinstance(size, Tensor):
        return box_ops.clip_boxes_to_image(boxes, size)
    x = torch.min(boxes[..., 0::2].clamp(min=0), size[1])
    y = torch.min(boxes[..., 1::2].clamp(min=0), size[0])
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, num_groups: int,
                thresh: float) -> Tensor:
    """NMS within each group (labels 0..num_groups-1), survivors by decreasing score:
    int64 [R'] indices.

    Eagerly torchvision's ``batched_nms``; while tracing its exact per-group form (the
    coordinate-offset form that torchvision traces to can differ at IoUs on the
    threshold).
    """
    if not is_tracing():
        return box_ops.batched_nms(boxes, scores, groups, thresh)
    kept = []
    for g in range(num_groups):
        idx = torch.nonzero(groups == g).squeeze(1)
        kept.append(idx[box_ops.nms(boxes[idx], scores[idx], thresh)])
    kept = torch.cat(kept)
    return kept[scores[kept].sort(descending=True).indices]


def descending_order(scores: Tensor) -> Tensor:
    """int64 indices sorting float [R] ``scores`` high to low, ties in index order.

    ONNX has no stable sort flag, but its TopK, which a sort becomes, breaks ties by the
    lower index.
    """
    if torch.onnx.is_in_onnx_export():
        return scores.sort(descending=True).indices
    return scores.sort(descending=True, stable=True).indices


def split_per_image(x: Tensor, counts) -> Tuple[Tensor, ...]:
    """``x.split(counts)``; one image keeps ``x`` whole (its count may follow the data)."""
    return (x,) if len(counts) == 1 else x.split(list(counts))
