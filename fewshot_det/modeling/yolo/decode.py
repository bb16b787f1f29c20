"""Grid predictions -> detections: score, threshold, per-class NMS, top-k.

Shape glossary: N images, G grid size, B boxes per cell, K classes, D detections.
"""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import Tensor

from ..traceable import batched_nms
from .grid import cell_boxes_to_xyxy
from .loss import GridPredictions


def decode_detections(preds: GridPredictions, *, image_size: int, score_thresh: float = 0.01,
                      nms_thresh: float = 0.5, max_detections: int = 100
                      ) -> List[Dict[str, Tensor]]:
    """Detections of every image, in the pixels of the ``image_size`` square input.

    Steps per image:
      1. every (box, class) pair scores confidence x class probability (YOLOv1's
         class-specific confidence), so one box may yield several classes;
      2. pairs scoring <= ``score_thresh`` are dropped;
      3. per-class NMS at IoU ``nms_thresh``;
      4. the ``max_detections`` best are kept, highest score first.

    Args:
        preds: GridPredictions (sigmoid outputs).
        image_size: side of the square network input, pixels.
    Returns:
        per image {"boxes": float [D, 4] XYXY clipped to the input, "scores": float [D],
        "labels": int64 [D] in 1..K}.
    """
    n, _, _, _, _ = preds.boxes.shape
    num_classes = preds.class_probs.shape[-1]
    boxes = cell_boxes_to_xyxy(preds.boxes).clamp(0, 1) * image_size  # N, G, G, B, 4
    scores = preds.conf[..., None] * preds.class_probs[..., None, :]  # N, G, G, B, K
    results = []
    for i in range(n):
        img_boxes = boxes[i].reshape(-1, 4)  # G*G*B, 4
        img_scores = scores[i].reshape(-1, num_classes)  # G*G*B, K
        box_idx, cls_idx = torch.nonzero(img_scores > score_thresh, as_tuple=True)
        kept_boxes, kept_scores = img_boxes[box_idx], img_scores[box_idx, cls_idx]
        keep = batched_nms(kept_boxes, kept_scores, cls_idx, num_classes,
                           nms_thresh)[:max_detections]
        results.append({"boxes": kept_boxes[keep], "scores": kept_scores[keep],
                        "labels": cls_idx[keep] + 1})
    return results
