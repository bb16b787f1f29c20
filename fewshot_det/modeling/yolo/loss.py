"""The YOLOv1 sum-squared-error loss, as four named terms.

Shape glossary: N images, G grid size, B boxes per cell, K classes.

Every term is a sum over the whole grid divided by the batch size N. Predictions are the
head's sigmoid outputs (``GridPredictions``), targets come from ``encode_targets``. In a
cell that owns an object, the *responsible* box is the one of its B boxes with the highest
IoU with the GT box (``find_responsible_boxes``); it alone is regressed and pushed towards
the object confidence target; every other box (all boxes of empty cells, and the other
B - 1 boxes of object cells) is pushed towards confidence 0, weighted by ``l_noobj``.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Tuple

import torch
from torch import Tensor

from .grid import cell_boxes_to_xyxy, elementwise_iou
from .targets import GridTargets

CONF_TARGETS = ("iou", "one")


class GridPredictions(NamedTuple):
    """The head's output split by meaning (all sigmoid outputs in 0..1).

    boxes: float [N, G, G, B, 4] cell-relative (x, y, w, h).
    conf: float [N, G, G, B] object confidence of each box.
    class_probs: float [N, G, G, K] class probabilities of each cell.
    """

    boxes: Tensor
    conf: Tensor
    class_probs: Tensor


def split_predictions(pred: Tensor, num_boxes: int) -> GridPredictions:
    """[N, G, G, B*5 + K] (per box x, y, w, h, conf; then K class probs) -> named parts."""
    n, g, g2, d = pred.shape
    if d <= num_boxes * 5:
        raise ValueError(f"prediction depth {d} leaves no class channels for B={num_boxes}")
    per_box = pred[..., : num_boxes * 5].reshape(n, g, g2, num_boxes, 5)
    return GridPredictions(per_box[..., :4], per_box[..., 4], pred[..., num_boxes * 5:])


def find_responsible_boxes(pred_boxes: Tensor, targets: GridTargets) -> Tuple[Tensor, Tensor]:
    """Pick, in each object cell, the predicted box with the highest IoU with the GT box.

    Args:
        pred_boxes: float [N, G, G, B, 4] cell-relative (x, y, w, h).
        targets: GridTargets of the batch.
    Returns:
        (responsible bool [N, G, G, B]: exactly one True per object cell, none elsewhere;
         ious float [N, G, G, B]: IoU of every predicted box with its cell's GT box,
         detached: it is a target, not something to optimise through).
    """
    pred_xyxy = cell_boxes_to_xyxy(pred_boxes.detach())
    gt_xyxy = cell_boxes_to_xyxy(targets.boxes)[..., None, :]  # N, G, G, 1, 4
    ious = elementwise_iou(pred_xyxy, gt_xyxy)
    best = ious.argmax(dim=-1)  # ties (e.g. all IoUs 0) go to box 0
    responsible = torch.nn.functional.one_hot(best, pred_boxes.shape[3]).bool()
    return responsible & targets.obj_mask[..., None], ious


def get_class_prediction_loss(class_probs: Tensor, gt_classes: Tensor, obj_mask: Tensor) -> Tensor:
    """Squared error of the class probabilities, in cells that own an object.

    Args:
        class_probs: float [N, G, G, K]; gt_classes: one-hot float [N, G, G, K];
        obj_mask: bool [N, G, G].
    Returns:
        scalar: sum over object cells and classes, / N.
    """
    err = ((class_probs - gt_classes) ** 2).sum(-1)
    return (err * obj_mask).sum() / class_probs.shape[0]


def get_no_object_loss(conf: Tensor, responsible: Tensor, l_noobj: float = 0.5) -> Tensor:
    """Squared error towards 0 of the confidence of every non-responsible box.

    Args:
        conf: float [N, G, G, B]; responsible: bool [N, G, G, B].
        l_noobj: weight (YOLOv1 lambda_noobj).
    Returns:
        scalar: l_noobj * sum of conf^2 over boxes of empty cells and the non-responsible
        boxes of object cells, / N.
    """
    return l_noobj * (conf ** 2 * ~responsible).sum() / conf.shape[0]


def get_contain_conf_loss(conf: Tensor, responsible: Tensor, ious: Tensor,
                          target: str = "iou") -> Tensor:
    """Squared error of the responsible boxes' confidence towards the object target.

    Args:
        conf: float [N, G, G, B]; responsible: bool [N, G, G, B];
        ious: float [N, G, G, B], IoU of each box with its cell's GT (detached).
        target: "iou" (the responsible box's IoU, YOLOv1) or "one".
    Returns:
        scalar: sum over responsible boxes, / N.
    """
    if target not in CONF_TARGETS:
        raise ValueError(f"MODEL.YOLO.CONF_TARGET must be one of {CONF_TARGETS}, got {target!r}")
    goal = ious.detach() if target == "iou" else torch.ones_like(conf)
    return ((conf - goal) ** 2 * responsible).sum() / conf.shape[0]


def get_regression_loss(pred_boxes: Tensor, gt_boxes: Tensor, responsible: Tensor,
                        l_coord: float = 5.0) -> Tensor:
    """Squared error of the responsible boxes' centre offsets and sqrt(w), sqrt(h).

    The square roots make an error of a few pixels count more on a small box than on a
    large one (YOLOv1).

    Args:
        pred_boxes: float [N, G, G, B, 4] (x, y, w, h); gt_boxes: float [N, G, G, 4];
        responsible: bool [N, G, G, B].
        l_coord: weight (YOLOv1 lambda_coord).
    Returns:
        scalar: l_coord * sum over responsible boxes, / N.
    """
    gt = gt_boxes[..., None, :].expand_as(pred_boxes)
    centre = ((pred_boxes[..., :2] - gt[..., :2]) ** 2).sum(-1)
    # sqrt has an infinite slope at 0; sigmoid outputs are > 0 but may underflow to 0.
    size = ((pred_boxes[..., 2:].clamp(min=1e-8).sqrt() - gt[..., 2:].sqrt()) ** 2).sum(-1)
    return l_coord * ((centre + size) * responsible).sum() / pred_boxes.shape[0]


def yolo_loss(preds: GridPredictions, targets: GridTargets, *, l_coord: float = 5.0,
              l_noobj: float = 0.5, conf_target: str = "iou", l_class: float = 1.0
              ) -> Dict[str, Tensor]:
    """The four terms of the YOLOv1 loss (their sum is the training loss).

    ``l_class`` scales the class term (1 in YOLOv1); the other arguments are those of the
    term functions.

    Returns:
        {"loss_class", "loss_no_object", "loss_contain_conf", "loss_regression"} scalars.
    """
    responsible, ious = find_responsible_boxes(preds.boxes, targets)
    return {
        "loss_class": l_class * get_class_prediction_loss(preds.class_probs, targets.classes,
                                                          targets.obj_mask),
        "loss_no_object": get_no_object_loss(preds.conf, responsible, l_noobj),
        "loss_contain_conf": get_contain_conf_loss(preds.conf, responsible, ious, conf_target),
        "loss_regression": get_regression_loss(preds.boxes, targets.boxes, responsible, l_coord),
    }
