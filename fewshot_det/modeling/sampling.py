"""Matching predictions to ground truth and sampling them for the losses.

Wraps torchvision's ``Matcher`` and ``BalancedPositiveNegativeSampler`` (the same
algorithms as detectron2's) behind two functions used by the RPN and the box head.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, Matcher
from torchvision.ops import box_iou

IGNORE = -1  # label of elements that do not enter the loss


def match_boxes(gt_boxes: Tensor, boxes: Tensor, matcher: Matcher) -> Tensor:
    """Index of the matched ground-truth box for every box, or a negative code.

    Args:
        gt_boxes: float [M, 4] XYXY, M >= 1, every box with positive width and height.
        boxes: float [R, 4] XYXY (anchors or proposals).
        matcher: decides the thresholds (``Matcher.BELOW_LOW_THRESHOLD`` = -1 for
            background, ``Matcher.BETWEEN_THRESHOLDS`` = -2 for ignored).
    Returns:
        int64 [R]: index in 0..M-1, -1 (background) or -2 (ignore).
    """
    return matcher(box_iou(gt_boxes, boxes))


def subsample_labels(labels: Tensor, num_samples: int, positive_fraction: float) -> Tensor:
    """Keep at most ``num_samples`` labels, ``positive_fraction`` of them >= 1 if possible.

    Args:
        labels: int or float [R]; >= 1 foreground, 0 background, -1 ignored.
    Returns:
        ``labels`` with every element that was not sampled set to -1 (a new tensor).
    """
    sampler = BalancedPositiveNegativeSampler(num_samples, positive_fraction)
    pos_mask, neg_mask = sampler([labels])
    keep = (pos_mask[0] | neg_mask[0]).bool()
    return torch.where(keep, labels, torch.full_like(labels, IGNORE))


def sampled_indices(labels: Tensor, num_samples: int, positive_fraction: float
                    ) -> Tuple[Tensor, Tensor]:
    """Indices of the sampled elements, and their labels (see ``subsample_labels``).

    Returns:
        (int64 [S] indices in increasing order, [S] labels).
    """
    sampled = subsample_labels(labels, num_samples, positive_fraction)
    idx = torch.nonzero(sampled != IGNORE).squeeze(1)
    return idx, labels[idx]
