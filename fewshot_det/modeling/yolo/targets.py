"""Ground truth -> the S x S grid targets of the YOLO-grid loss.

Shape glossary: N images, M GT boxes of one image, G grid size, K classes.

Each GT box is assigned to the cell holding its centre. A cell can describe one object
only, so when several GT centres fall into one cell **the largest box (by area) owns the
cell** (equal areas: the one listed last); the others get no target at all. Largest-wins
keeps the object that covers most of the cell's receptive field, and the rule does not
depend on the order of the annotations except for exact ties.
"""
from __future__ import annotations

from typing import List, NamedTuple

import torch
from torch import Tensor


class GridTargets(NamedTuple):
    """Targets of a batch on the G x G grid.

    obj_mask: bool [N, G, G], True for cells that own an object.
    boxes: float [N, G, G, 4], cell-relative (x, y, w, h) of the owned object (0 elsewhere).
    classes: float [N, G, G, K], one-hot class of the owned object (0 elsewhere).
    """

    obj_mask: Tensor
    boxes: Tensor
    classes: Tensor


def encode_targets(gt_boxes: List[Tensor], gt_labels: List[Tensor], *, image_size: int,
                   grid_size: int, num_classes: int) -> GridTargets:
    """Encode each image's GT boxes on the grid (see the module docstring for conflicts).

    Args:
        gt_boxes: per image float [M, 4] XYXY pixels of the ``image_size`` square input;
            boxes must have positive width and height.
        gt_labels: per image int64 [M] in 1..K.
        image_size: side of the square network input, pixels.
        grid_size: G.
        num_classes: K.
    Returns:
        GridTargets on the device of ``gt_boxes``.
    """
    g, n = grid_size, len(gt_boxes)
    device = gt_boxes[0].device if n else torch.device("cpu")
    obj = torch.zeros(n, g * g, dtype=torch.bool, device=device)
    boxes = torch.zeros(n, g * g, 4, device=device)
    classes = torch.zeros(n, g * g, num_classes, device=device)
    for k, (b, labels) in enumerate(zip(gt_boxes, gt_labels)):
        if len(b) == 0:
            continue
        b = b.float() / image_size
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        col = (cx * g).floor().long().clamp(0, g - 1)
        row = (cy * g).floor().long().clamp(0, g - 1)
        cell = row * g + col  # M
        win = _largest_per_cell(cell, w * h, g * g)
        cell, labels = cell[win], labels[win]
        obj[k, cell] = True
        boxes[k, cell] = torch.stack([cx[win] * g - col[win], cy[win] * g - row[win],
                                      w[win], h[win]], dim=1)
        classes[k, cell] = torch.nn.functional.one_hot(labels - 1, num_classes).float()
    return GridTargets(obj.view(n, g, g), boxes.view(n, g, g, 4),
                       classes.view(n, g, g, num_classes))


def _largest_per_cell(cell: Tensor, area: Tensor, num_cells: int) -> Tensor:
    """bool [M]: True for the box that owns its cell (largest area; ties: the last one).

    Deterministic without a Python loop: boxes are ranked by (area, index) and each cell
    keeps its highest rank (``scatter_reduce`` with ``amax`` is order-independent).
    """
    order = torch.argsort(area, stable=True)  # ascending; equal areas keep input order
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    best = torch.full((num_cells,), -1, dtype=rank.dtype, device=rank.device)
    best = best.scatter_reduce(0, cell, rank, reduce="amax")
    return best[cell] == rank
