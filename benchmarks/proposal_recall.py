"""Proposal recall of given classes (AR@k): how well a proposal stage covers the objects.

Shape glossary: P proposals of one image, G ground-truth boxes of one image, T IoU
thresholds.

``AR@k`` is COCO's average recall: the fraction of GT boxes covered by one of an image's
top-k proposals, averaged over IoU thresholds 0.50:0.05:0.95 (``R50@k`` at IoU 0.5 only).
Recall is pooled over every GT instance of the chosen classes (not difficult, not crowd).
Torch-free: proposals come in as arrays, from any model. Used by
``benchmarks/fewshot_synthetic.py`` for the siamese detector's proposal stage.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Sequence

import numpy as np

IOU_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of XYXY boxes (continuous coordinates, no +1): float [len(a), len(b)]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def recall_at(max_ious: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS) -> float:
    """Mean over ``thresholds`` of the fraction of ``max_ious`` (float [G]) >= threshold;
    -1 when there is no GT box."""
    max_ious = np.asarray(max_ious)
    if not len(max_ious):
        return -1.0
    return float(np.mean([(max_ious >= t).mean() for t in thresholds]))


def gt_boxes_of(record: dict, class_ids: Iterable[int]) -> np.ndarray:
    """float [G, 4] XYXY of the record's boxes of ``class_ids`` (not difficult / crowd)."""
    ids = {int(c) for c in class_ids}
    boxes = [a["bbox"] for a in record["annotations"] if a["category_id"] in ids
             and not a.get("difficult", 0) and not a.get("iscrowd", 0)]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def proposal_recall(proposals: Mapping[str, np.ndarray], records: Sequence[dict],
                    class_ids: Iterable[int], *, topks: Sequence[int] = (10, 100)
                    ) -> Dict[str, float]:
    """Recall of the ``class_ids`` GT boxes by every image's top-k proposals.

    Args:
        proposals: str(image_id) -> float [P, 4] XYXY in original pixels, best first.
        records: the dataset records (ground truth); an image without proposals counts as
            recalling nothing.
        class_ids: classes whose instances count (e.g. the novel classes).
        topks: values of k.
    Returns:
        {"AR@k", "R50@k" for every k (-1 without GT instances), "num_gt", "num_images"}.
    """
    class_ids = list(class_ids)
    max_iou = {k: [] for k in topks}
    num_gt = 0
    for record in records:
        gt = gt_boxes_of(record, class_ids)
        num_gt += len(gt)
        boxes = np.asarray(proposals.get(str(record["image_id"]), np.zeros((0, 4))))
        for k in topks:
            top = boxes[:k]
            max_iou[k].append(box_iou(gt, top).max(axis=1) if len(top) else np.zeros(len(gt)))
    out: Dict[str, float] = {}
    for k in topks:
        ious = np.concatenate(max_iou[k]) if max_iou[k] else np.zeros(0)
        out[f"AR@{k}"] = recall_at(ious)
        out[f"R50@{k}"] = recall_at(ious, (0.5,))
    out["num_gt"] = num_gt
    out["num_images"] = len(records)
    return out
