"""The one evaluator: COCO and VOC protocols, precision/recall, base/novel breakdown.

``evaluate(records, metadata, results)`` works for any detector's output: it reads dataset
records (the package's record contract) and a COCO results list, nothing from modeling,
and never imports torch.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .coco_protocol import STAT_KEYS, coco_evaluate, summarize
from .ground_truth import GroundTruth, meta_get
from .plots import save_pr_curves
from .pr import count_outcomes, pooled_precision_recall
from .results_io import Detections, gc_paused, parse_results
from .voc_protocol import VocOverlaps, class_curves, voc_class_aps

#: The top-level metric keys, fractions in [0, 1], -1 where undefined.
SUMMARY_KEYS = STAT_KEYS + ("VOC07_AP50", "VOC_AP50", "precision", "recall")


class EmptyPredictionsWarning(UserWarning):
    """Evaluated a results list without a single detection."""


def evaluate(records: Sequence[dict], metadata: Any, results: Sequence[dict], *,
             score_thresh: float = 0.5, iou_thresh: float = 0.5,
             plots_dir: Optional[str] = None) -> Dict[str, Any]:
    """Evaluate COCO-format detections against dataset records.

    Args:
        records: dataset records (``annotations`` with XYXY ``bbox``, ``category_id`` 1..K,
            ``iscrowd``, ``difficult``, optional ``area`` and ``id``).
        metadata: ``Metadata`` or dict with ``thing_classes``, optionally
            ``thing_dataset_id_to_contiguous_id`` (identity when absent), ``base_classes``
            and ``novel_classes`` (names).
        results: COCO results list; ``category_id`` is the dataset's id, or
            ``category_name`` a class name.
        score_thresh: detections with ``score >= score_thresh`` count for precision/recall.
        iou_thresh: IoU (devkit overlap, strict ``>``) for precision/recall and the curves.
        plots_dir: if given, write one PR-curve PNG per class with GT there.
    Returns:
        {AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl, VOC07_AP50,
        VOC_AP50, precision, recall, per_class: {name: those 16 + num_gt, tp, fp, fn}} plus
        ``b<key>`` / ``n<key>`` for the base / novel classes when the metadata lists them.
    Raises:
        ValueError: malformed results, or ids/names the ground truth does not know.
    """
    if not 0.0 <= iou_thresh < 1.0:
        raise ValueError(f"iou_thresh must be in [0, 1), got {iou_thresh}")
    classes = [str(c) for c in meta_get(metadata, "thing_classes")]
    with gc_paused():
        gt = GroundTruth(records, len(classes))
        det = parse_results(results, gt.image_index, metadata)
    if len(det) == 0:
        warnings.warn("evaluating an empty results list: every metric is 0 (or -1 for "
                      "classes without ground truth)", EmptyPredictionsWarning, stacklevel=2)
    scores = _ClassScores(gt, det, score_thresh, iou_thresh)
    metrics: Dict[str, Any] = scores.group(list(range(len(classes))))
    metrics["per_class"] = {name: scores.one_class(k) for k, name in enumerate(classes)}
    for prefix, names in (("b", meta_get(metadata, "base_classes")),
                          ("n", meta_get(metadata, "novel_classes"))):
        if names:
            sub = scores.group(_class_indices(names, classes, prefix))
            metrics.update({prefix + key: sub[key] for key in SUMMARY_KEYS})
    if plots_dir:
        save_pr_curves(scores.curves(classes), plots_dir, score_thresh=score_thresh,
                       iou_thresh=iou_thresh)
    return metrics


class _ClassScores:
    """Both protocols and the operating point computed once; averaged over any class set."""

    def __init__(self, gt: GroundTruth, det: Detections, score_thresh: float,
                 iou_thresh: float):
        self.precision, self.recall = coco_evaluate(gt, det)
        self.ov = VocOverlaps(gt, det)
        tp50, fp50 = self.ov.outcome(0.5)
        self.voc07, self.voc10 = voc_class_aps(self.ov, tp50, fp50)
        # The operating point's matching (same as AP50's unless iou_thresh differs).
        self.tp, self.fp = (tp50, fp50) if iou_thresh == 0.5 else self.ov.outcome(iou_thresh)
        self.counts = count_outcomes(self.ov, self.tp, self.fp, score_thresh)

    def group(self, ks: List[int]) -> Dict[str, float]:
        """The SUMMARY_KEYS metrics averaged over classes ``ks`` (indices)."""
        out = summarize(self.precision, self.recall, ks)
        out["VOC07_AP50"] = _mean_defined([self.voc07[k] for k in ks])
        out["VOC_AP50"] = _mean_defined([self.voc10[k] for k in ks])
        out.update(pooled_precision_recall(self.counts, ks))
        return out

    def one_class(self, k: int) -> Dict[str, float]:
        """``group([k])`` plus the class's counts at the operating point."""
        row: Dict[str, Any] = self.group([k])
        row.update({key: int(self.counts[key][k]) for key in ("num_gt", "tp", "fp", "fn")})
        return row

    def curves(self, classes: List[str]):
        """{name: (recall, precision, score)} of the classes with GT."""
        return {name: class_curves(self.ov, self.tp, self.fp, k)
                for k, name in enumerate(classes) if self.ov.num_pos[k] > 0}


def _mean_defined(values: Sequence[float]) -> float:
    valid = [v for v in values if v > -1]
    return float(np.mean(valid)) if valid else -1.0


def _class_indices(names: Sequence[str], classes: List[str], prefix: str) -> List[int]:
    what = "base_classes" if prefix == "b" else "novel_classes"
    unknown = [n for n in names if str(n) not in classes]
    if unknown:
        raise ValueError(f"metadata.{what}: {unknown} are not dataset classes {classes}")
    # Sorted: pycocotools averages classes in category order.
    return sorted(classes.index(str(n)) for n in names)


__all__ = ["evaluate", "SUMMARY_KEYS", "EmptyPredictionsWarning"]
