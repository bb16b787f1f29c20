"""From scored, decoded anchors to proposals (torchvision's ``filter_proposals`` recipe).

Shape glossary: N images, R anchors, L levels, k top anchors of a level, P proposals kept
for one image.
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor
from torchvision.ops import boxes as box_ops

from ..traceable import ImageSize, batched_nms, clip_boxes, top_k


def find_top_proposals(proposals: Tensor, logits: Tensor, num_anchors_per_level: List[int],
                       image_sizes: List[ImageSize], *, pre_nms_topk: int,
                       post_nms_topk: int, nms_thresh: float, min_size: float,
                       score_thresh: float = 0.0) -> List[Tensor]:
    """Select the proposals of each image.

    1. keep the ``pre_nms_topk`` highest-scoring anchors of every level;
    2. clip them to the (unpadded) image;
    3. remove those with a side shorter than ``min_size``;
    4. remove those whose objectness probability is below ``score_thresh`` (if > 0);
    5. NMS at ``nms_thresh``, separately per level;
    6. keep the ``post_nms_topk`` highest-scoring survivors of the image.

    Args:
        proposals: float [N, R, 4] decoded boxes.
        logits: float [N, R] objectness logits (not back-propagated).
        num_anchors_per_level: R split by level (sizes read from tensor shapes, so that
            they follow the input while tracing).
        image_sizes: (h, w) of every image.
    Returns:
        per image float [P, 4] XYXY, by decreasing objectness.
    """
    n = proposals.shape[0]
    top_idx, levels = [], []
    offset = 0
    for level, level_logits in enumerate(logits.split(num_anchors_per_level, dim=1)):
        _, idx = top_k(level_logits, pre_nms_topk)  # N, k
        top_idx.append(idx + offset)
        levels.append(torch.full_like(idx[0], level))
        offset += level_logits.shape[1]
    top_idx = torch.cat(top_idx, dim=1)
    levels = torch.cat(levels)
    batch = torch.arange(n, device=proposals.device)[:, None]
    # Sigmoid before NMS (torchvision): saturated logits then tie exactly as they do there.
    scores = torch.sigmoid(logits[batch, top_idx])
    boxes = proposals[batch, top_idx]
    results = []
    for boxes_i, scores_i, size in zip(boxes, scores, image_sizes):
        boxes_i = clip_boxes(boxes_i, size)
        keep = box_ops.remove_small_boxes(boxes_i, min_size)
        boxes_i, scores_i, levels_i = boxes_i[keep], scores_i[keep], levels[keep]
        if score_thresh > 0:  # torchvision's test (>=); its indices follow the data traced
            keep = torch.where(scores_i >= score_thresh)[0]
            boxes_i, scores_i, levels_i = boxes_i[keep], scores_i[keep], levels_i[keep]
        keep = batched_nms(boxes_i, scores_i, levels_i, len(num_anchors_per_level), nms_thresh)
        results.append(boxes_i[keep[:post_nms_topk]])
    return results
