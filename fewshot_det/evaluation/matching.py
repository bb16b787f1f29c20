"""Per detection and per GT box: matched or not, by the evaluator's own VOC matching.

The evaluator counts TP / FP / FN per class; ``Matching`` keeps them per detection and per
GT box (``VocOverlaps.outcome`` at IoU 0.5, the matching of AP50), so a picture or a page
can show which box is which, and the counts it shows are the evaluator's. Moving the score
threshold re-counts without matching again.

Shape glossary: D detections (results-list order), G GT boxes, R records.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from .ground_truth import GroundTruth, meta_get
from .results_io import parse_results
from .voc_protocol import VocOverlaps, class_curves

IOU = 0.5  # the matching of AP50 and of the evaluator's per-class counts
CURVE_POINTS = 300  # most points of a PR curve kept by ``curve``


class Matching:
    """TP / FP of every detection and the GT box each TP found, at IoU 0.5.

    Args:
        records, metadata, results: as ``evaluation.evaluate`` takes them.
    Attributes:
        kind: object [D] "tp" | "fp" | "ignored" per result (results-list order).
        found: int64 [D] the GT row a TP matched (-1 otherwise).
        record_of_gt: int64 [G] the record index of each GT row.
    """

    def __init__(self, records: List[dict], metadata, results: List[dict]):
        classes = list(meta_get(metadata, "thing_classes"))
        self.gt = GroundTruth(records, len(classes))
        self.det = parse_results(results, self.gt.image_index, metadata)
        self.ov = VocOverlaps(self.gt, self.det)
        tp, fp = self.ov.outcome(IOU)
        self.tp_flags, self.fp_flags = tp, fp
        self.kind = np.full(len(self.det), "ignored", dtype=object)
        self.kind[self.ov.order[tp == 1]] = "tp"
        self.kind[self.ov.order[fp == 1]] = "fp"
        self.found = np.full(len(self.det), -1, dtype=np.int64)
        self.found[self.ov.order[tp == 1]] = self.ov.jmax[tp == 1]
        self.num_records = len(records)
        position = {r["image_id"]: i for i, r in enumerate(records)}
        self.record_of_det = np.array([position[self.gt.image_ids[i]] for i in self.det.img],
                                      dtype=np.int64)
        self.record_of_gt = np.array([position[self.gt.image_ids[i]] for i in self.gt.img],
                                     dtype=np.int64)

    def missed(self, score_thresh: float) -> np.ndarray:
        """bool [G]: GT boxes that count (not difficult, not crowd) and no detection
        scoring >= ``score_thresh`` found."""
        keep = (self.det.score >= score_thresh) & (self.kind == "tp")
        found = np.zeros(len(self.gt), dtype=bool)
        found[self.found[keep]] = True
        return ~found & ~self.gt.difficult & ~self.gt.crowd

    def per_record(self, score_thresh: float, k: Optional[int]) -> Dict[str, np.ndarray]:
        """{"tp", "fp", "fn"}: int64 [len(records)] counts of class index ``k`` (None:
        all classes) at ``score_thresh``."""
        n = self.num_records
        det_ok = self.det.score >= score_thresh
        gt_ok = np.ones(len(self.gt), dtype=bool)
        if k is not None:
            det_ok &= self.det.cat == k
            gt_ok &= self.gt.cat == k
        missed = self.missed(score_thresh) & gt_ok
        out = {kind: np.bincount(self.record_of_det[det_ok & (self.kind == kind)], minlength=n)
               for kind in ("tp", "fp")}
        out["fn"] = np.bincount(self.record_of_gt[missed], minlength=n)
        return out

    def curve(self, k: int) -> dict:
        """Class ``k``'s PR curve (at most ``CURVE_POINTS`` points, each a detection)."""
        rec, prec, score = class_curves(self.ov, self.tp_flags, self.fp_flags, k)
        lo = int(np.searchsorted(self.ov.cat, k))
        if not len(rec):
            return {"recall": [], "precision": [], "score": [], "detection": []}
        idx = np.unique(np.linspace(0, len(rec) - 1, min(len(rec), CURVE_POINTS)).round()
                        .astype(int))
        return {"recall": np.round(rec[idx], 4).tolist(),
                "precision": np.round(prec[idx], 4).tolist(),
                "score": np.round(score[idx], 4).tolist(),
                "detection": self.ov.order[lo + idx].tolist()}
