"""From scored, decoded anchors to proposals (torchvision's ``filter_proposals`` recipe).

Shape glossary: N images, R anchors, L levels, P proposals kept for one image.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import boxes as box_ops


def find_top_proposals(proposals: Tensor, logits: Tensor, num_anchors_per_level: List[int],
                       image_sizes: List[Tuple[int, int]], *, pre_nms_topk: int,
                       post_nms_topk: int, nms_thresh: float, min_size: float,
                       quality: Optional[Tensor] = None) -> List[Tensor]:
    """Select the proposals of each image.

    1. keep the ``pre_nms_topk`` highest-scoring anchors of every level;
    2. clip them to the (unpadded) image;
    3. remove those with a side shorter than ``min_size``;
    4. NMS at ``nms_thresh``, separately per level;
    5. keep the ``post_nms_topk`` highest-scoring survivors of the image.

    With ``quality`` (the box-quality-guided NMS of IoU-Net, Jiang et al. 2018), step 4
    keeps the box of best ``quality`` in every cluster of overlapping boxes and gives the
    cluster the best ``logits`` of its members: which object to propose is decided by
    ``logits``, where its box lies by ``quality``. The attention RPN uses it with its
    class-agnostic objectness as quality, as that score was trained on box overlap alone.

    Args:
        proposals: float [N, R, 4] decoded boxes.
        logits: float [N, R] objectness logits (not back-propagated).
        num_anchors_per_level: R split by level.
        image_sizes: (h, w) of every image.
        quality: optional float [N, R] logits that rank boxes inside an NMS cluster.
    Returns:
        per image float [P, 4] XYXY, by decreasing objectness.
    """
    n = proposals.shape[0]
    device = proposals.device
    top_idx, levels = [], []
    offset = 0
    for level, level_logits in enumerate(logits.split(num_anchors_per_level, dim=1)):
        k = min(pre_nms_topk, level_logits.shape[1])
        _, idx = level_logits.topk(k, dim=1)  # N, k
        top_idx.append(idx + offset)
        levels.append(torch.full((k,), level, dtype=torch.int64, device=device))
        offset += level_logits.shape[1]
    top_idx = torch.cat(top_idx, dim=1)
    levels = torch.cat(levels)
    batch = torch.arange(n, device=device)[:, None]
    # Sigmoid before NMS (torchvision): saturated logits then tie exactly as they do there.
    scores = torch.sigmoid(logits[batch, top_idx])
    qualities = scores if quality is None else torch.sigmoid(quality[batch, top_idx])
    boxes = proposals[batch, top_idx]
    results = []
    for boxes_i, scores_i, quality_i, size in zip(boxes, scores, qualities, image_sizes):
        boxes_i = box_ops.clip_boxes_to_image(boxes_i, size)
        keep = box_ops.remove_small_boxes(boxes_i, min_size)
        boxes_i, scores_i, levels_i = boxes_i[keep], scores_i[keep], levels[keep]
        if quality is None:
            keep = box_ops.batched_nms(boxes_i, scores_i, levels_i, nms_thresh)
        else:
            keep = quality_guided_nms(boxes_i, scores_i, quality_i[keep], levels_i, nms_thresh)
        results.append(boxes_i[keep[:post_nms_topk]])
    return results


def quality_guided_nms(boxes: Tensor, scores: Tensor, quality: Tensor, groups: Tensor,
                       iou_thresh: float) -> Tensor:
    """NMS ordered by ``quality``; survivors ranked by the best ``scores`` of the boxes they
    suppress (themselves included).

    Args:
        boxes: float [P, 4]; scores, quality: float [P]; groups: int64 [P] (NMS within a
            group only, e.g. the FPN level).
    Returns:
        int64 indices of the kept boxes, by decreasing cluster score.
    """
    keep = box_ops.batched_nms(boxes, quality, groups, iou_thresh)  # by decreasing quality
    if not len(keep):
        return keep
    overlap = box_ops.box_iou(boxes[keep], boxes) > iou_thresh  # kept x all
    overlap &= groups[keep][:, None] == groups[None, :]
    # Greedy NMS removes a box with the first kept box (in quality order) that overlaps it.
    first = torch.arange(len(keep), 0, -1, device=boxes.device)[:, None] * overlap
    owner = first.argmax(dim=0)  # P; every box overlaps at least itself or its suppressor
    best = scores.new_full((len(keep),), float("-inf")).scatter_reduce(
        0, owner, scores, reduce="amax")
    return keep[best.argsort(descending=True)]
