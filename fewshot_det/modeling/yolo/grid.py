"""Grid geometry of the YOLO-grid detector: cell-relative boxes <-> image boxes, IoU.

Shape glossary: N images, G grid size (S in the config), B boxes per cell, K classes.

A box of cell (row i, column j) is ``(x, y, w, h)``: ``x, y`` the offset of its centre
inside the cell (0..1, in cell units), ``w, h`` its size as a fraction of the image
(0..1). Grid tensors are indexed ``[n, i, j, ...]`` (row first, as images are).
"""
from __future__ import annotations

import torch
from torch import Tensor


def cell_boxes_to_xyxy(boxes: Tensor) -> Tensor:
    """Cell-relative ``(x, y, w, h)`` -> XYXY as fractions of the image.

    Args:
        boxes: float [N, G, G, ..., 4]; dims 1 and 2 are the grid row and column.
    Returns:
        float, same shape: (x1, y1, x2, y2) in 0..1 image units (may leave 0..1).
    """
    g = boxes.shape[1]
    if boxes.shape[2] != g:
        raise ValueError(f"expected a square grid in dims 1 and 2, got shape {tuple(boxes.shape)}")
    extra = boxes.dim() - 4  # e.g. the B dimension between the grid and the coordinates
    ar = torch.arange(g, device=boxes.device, dtype=boxes.dtype)
    cols = ar.view(1, 1, g, *([1] * extra))
    rows = ar.view(1, g, 1, *([1] * extra))
    cx = (boxes[..., 0] + cols) / g
    cy = (boxes[..., 1] + rows) / g
    half_w, half_h = boxes[..., 2] / 2, boxes[..., 3] / 2
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def elementwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of corresponding XYXY boxes (broadcasting), 0 where the union is empty.

    Args:
        a, b: float [..., 4], broadcastable.
    Returns:
        float [...] in 0..1.
    """
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    # A zero union only happens for two empty boxes; their IoU is defined as 0, not NaN.
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
