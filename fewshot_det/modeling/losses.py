"""Losses of the two-stage detector, apart from the modules that produce the predictions.

Shape glossary: N images, R anchors (RPN) or sampled RoIs (box head), K foreground classes.

Both losses are sums normalised by the number of sampled elements (anchors or RoIs) of the
whole batch, torchvision's and detectron2's convention, so an image without objects
contributes classification terms and box terms that are exactly zero.
"""
from __future__ import annotations

import warnings
from typing import Dict

import torch
from torch import Tensor
from torch.nn import functional as F

with warnings.catch_warnings():
    # fvcore.nn scripts its focal loss at import, which recent torch flags as deprecated.
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import smooth_l1_loss


def rpn_losses(pred_objectness_logits: Tensor, pred_anchor_deltas: Tensor, gt_labels: Tensor,
               gt_anchor_deltas: Tensor, *, smooth_l1_beta: float) -> Dict[str, Tensor]:
    """Objectness (binary cross-entropy) and box (smooth-L1) losses of the RPN.

    Args:
        pred_objectness_logits: float [N, R].
        pred_anchor_deltas: float [N, R, 4].
        gt_labels: [N, R]; 1 = sampled positive, 0 = sampled negative, -1 = not sampled.
        gt_anchor_deltas: float [N, R, 4]; only rows with label 1 are read.
        smooth_l1_beta: transition point of the smooth-L1 loss (0 = L1).
    Returns:
        {"loss_rpn_cls": scalar, "loss_rpn_loc": scalar}
    """
    valid = gt_labels >= 0
    positive = gt_labels == 1
    normalizer = valid.sum().clamp(min=1)
    loss_cls = F.binary_cross_entropy_with_logits(
        pred_objectness_logits[valid], gt_labels[valid].to(pred_objectness_logits.dtype),
        reduction="sum")
    loss_loc = smooth_l1_loss(pred_anchor_deltas[positive], gt_anchor_deltas[positive],
                              smooth_l1_beta, reduction="sum")
    return {"loss_rpn_cls": loss_cls / normalizer, "loss_rpn_loc": loss_loc / normalizer}


def fast_rcnn_losses(pred_class_logits: Tensor, pred_proposal_deltas: Tensor, gt_labels: Tensor,
                     gt_proposal_deltas: Tensor, *, smooth_l1_beta: float) -> Dict[str, Tensor]:
    """(K+1)-way softmax cross-entropy, and smooth-L1 on the deltas of foreground RoIs only.

    The box term reads, for each RoI with label u >= 1, the deltas predicted for class u;
    background RoIs (u = 0) contribute nothing to it, whatever their predictions or targets.

    Args:
        pred_class_logits: float [R, K + 1]; column 0 is background.
        pred_proposal_deltas: float [R, K * 4] (class k at columns 4(k-1)..4k-1) or [R, 4]
            (class-agnostic).
        gt_labels: int64 [R] in 0..K.
        gt_proposal_deltas: float [R, 4]; rows of background RoIs are ignored.
        smooth_l1_beta: transition point of the smooth-L1 loss (0 = L1).
    Returns:
        {"loss_cls": scalar, "loss_box_reg": scalar}
    """
    num_rois = gt_labels.numel()
    normalizer = max(num_rois, 1)
    loss_cls = F.cross_entropy(pred_class_logits, gt_labels, reduction="sum") / normalizer
    fg = torch.nonzero(gt_labels > 0).squeeze(1)
    if pred_proposal_deltas.shape[1] == 4:
        pred = pred_proposal_deltas[fg]
    else:
        per_class = pred_proposal_deltas.view(num_rois, pred_proposal_deltas.shape[1] // 4, 4)
        pred = per_class[fg, gt_labels[fg] - 1]
    loss_box = smooth_l1_loss(pred, gt_proposal_deltas[fg], smooth_l1_beta, reduction="sum")
    return {"loss_cls": loss_cls, "loss_box_reg": loss_box / normalizer}
