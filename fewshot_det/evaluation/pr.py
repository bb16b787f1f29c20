"""Precision and recall at one operating point (IoU threshold, score threshold).

A detection is a TP/FP by the devkit matching of ``voc_protocol`` at ``iou_thresh`` (best
overlap > threshold, each GT matched once; a detection on a ``difficult`` box, or inside a
crowd region, is neither TP nor FP).
Matching is greedy by decreasing score, so the detections above a score threshold are
matched exactly as in the full curve: the operating point is a point of the PR curve.

    precision = TP / (TP + FP)      0 when nothing is detected, -1 when also no GT
    recall    = TP / (TP + FN)      -1 when there is no GT (difficult and crowd
                                    boxes do not count)

"Overall" pools the counts of all classes (micro average).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from .voc_protocol import VocOverlaps


def count_outcomes(ov: VocOverlaps, tp: np.ndarray, fp: np.ndarray, score_thresh: float
                   ) -> Dict[str, np.ndarray]:
    """Per-class TP, FP, FN among detections with ``score >= score_thresh``.

    Args:
        ov: the devkit overlaps; tp, fp: float [D] flags from ``ov.outcome(iou_thresh)``.
    Returns:
        {"tp", "fp", "fn", "num_gt"}: int64 [K] each.
    """
    K = len(ov.num_pos)
    keep = ov.score >= score_thresh
    tp_k = np.bincount(ov.cat[keep], weights=tp[keep], minlength=K).astype(np.int64)
    fp_k = np.bincount(ov.cat[keep], weights=fp[keep], minlength=K).astype(np.int64)
    return {"tp": tp_k, "fp": fp_k, "fn": ov.num_pos - tp_k, "num_gt": ov.num_pos.copy()}


def precision_recall(tp: int, fp: int, fn: int) -> Dict[str, float]:
    """{"precision", "recall"} of one set of counts (see the module docstring for -1 / 0)."""
    if tp + fp > 0:
        precision = tp / (tp + fp)
    else:
        precision = 0.0 if tp + fn > 0 else -1.0
    recall = tp / (tp + fn) if tp + fn > 0 else -1.0
    return {"precision": float(precision), "recall": float(recall)}


def pooled_precision_recall(counts: Dict[str, np.ndarray], classes: Sequence[int]
                            ) -> Dict[str, float]:
    """Micro-averaged precision/recall over ``classes`` (indices)."""
    idx = list(classes)
    return precision_recall(*(int(counts[k][idx].sum()) for k in ("tp", "fp", "fn")))
