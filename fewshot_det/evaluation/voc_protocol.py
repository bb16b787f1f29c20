"""The Pascal VOC protocol, as the devkit computes it (py-faster-rcnn's ``voc_eval``).

Per class, detections are visited by decreasing score (stable: the earlier entry of the
results list wins a tie, as MATLAB's ``sort`` in the devkit). Each one is compared with
*every* GT box of its image and class with the devkit's +1-pixel IoU on boxes as written in
the XML; with ``ovmax`` / ``jmax`` its best overlap and the first box reaching it:

* ``ovmax > thresh`` (strict) and box ``jmax`` is ``difficult``: neither TP nor FP;
* ``ovmax > thresh`` and ``jmax`` not yet taken: TP, ``jmax`` is taken;
* otherwise (already taken, or no overlap above the threshold): FP.

The sequential walk vectorises: ``ovmax``/``jmax`` do not depend on earlier detections, and
the TP among the claimants of a box is the first one in score order.

AP: VOC2007's 11-point interpolation and VOC2010+'s area under the monotone envelope.
A crowd GT (COCO data only) can absorb detections, see ``VocOverlaps``. A class without
non-difficult GT has no AP (-1, left out of the mean; the devkit would divide by zero).
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from .ground_truth import GroundTruth
from .results_io import Detections
from .segments import same_key_pairs, segment_starts


def voc_iou(det_xyxy: np.ndarray, gt_xyxy: np.ndarray) -> np.ndarray:
    """Devkit overlap of paired rows (float64 [P, 4] each, +1-pixel convention) -> [P]."""
    bx1, by1, bx2, by2 = det_xyxy.T
    gx1, gy1, gx2, gy2 = gt_xyxy.T
    iw = np.maximum(np.minimum(gx2, bx2) - np.maximum(gx1, bx1) + 1., 0.)
    ih = np.maximum(np.minimum(gy2, by2) - np.maximum(gy1, by1) + 1., 0.)
    inters = iw * ih
    uni = ((bx2 - bx1 + 1.) * (by2 - by1 + 1.) + (gx2 - gx1 + 1.) * (gy2 - gy1 + 1.) - inters)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inters / uni


def voc_ioa(det_xyxy: np.ndarray, gt_xyxy: np.ndarray) -> np.ndarray:
    """Intersection over detection area of paired rows, +1-pixel convention -> [P]."""
    bx1, by1, bx2, by2 = det_xyxy.T
    gx1, gy1, gx2, gy2 = gt_xyxy.T
    iw = np.maximum(np.minimum(gx2, bx2) - np.maximum(gx1, bx1) + 1., 0.)
    ih = np.maximum(np.minimum(gy2, by2) - np.maximum(gy1, by1) + 1., 0.)
    with np.errstate(divide="ignore", invalid="ignore"):
        return iw * ih / ((bx2 - bx1 + 1.) * (by2 - by1 + 1.))


class VocOverlaps:
    """Best overlap of every detection, in the devkit's visiting order.

    Crowd regions (COCO data; VOC has none) take no part in the devkit's ``ovmax``: as in
    the COCO protocol, a detection that would be a FP but lies inside a crowd region
    (intersection / own area > threshold) counts neither as TP nor as FP.

    Attributes:
        order: int64 [D] detection indices sorted by (class, -score), stable.
        cat, score: class index and score of ``order``'s detections.
        ovmax: float64 [D] best devkit IoU with a non-crowd GT box of the same image and
            class (-inf when there is none).  jmax: int64 [D] that GT box (-1 when none).
        crowd_ioa: float64 [D] best intersection / detection area with a crowd region.
        num_pos: int64 [K] GT boxes per class that are neither difficult nor crowd.
        difficult: bool [G].
    """

    def __init__(self, gt: GroundTruth, det: Detections):
        K = gt.num_classes
        self.order = np.lexsort((-det.score, det.cat))
        self.cat, self.score = det.cat[self.order], det.score[self.order]
        self.difficult = gt.difficult
        self.num_pos = np.bincount(gt.cat[~gt.difficult & ~gt.crowd], minlength=K)
        det_key = (det.img * K + det.cat)[self.order]
        pair_det, pair_gt = same_key_pairs(det_key, gt.img * K + gt.cat)
        det_boxes, gt_boxes = det.xyxy()[self.order[pair_det]], gt.boxes[pair_gt]
        crowd = gt.crowd[pair_gt]
        ov = np.where(crowd, -np.inf, voc_iou(det_boxes, gt_boxes))
        ioa = np.where(crowd, voc_ioa(det_boxes, gt_boxes), -np.inf)
        self.ovmax = np.full(len(self.order), -np.inf)
        self.jmax = np.full(len(self.order), -1, dtype=np.int64)
        self.crowd_ioa = np.full(len(self.order), -np.inf)
        if len(pair_det):
            starts = segment_starts(pair_det)
            owner = pair_det[starts]
            best = np.maximum.reduceat(ov, starts)
            # np.argmax: the first box reaching the maximum, in the image's GT order.
            hit = np.where(ov == np.repeat(best, np.diff(np.append(starts, len(ov)))),
                           np.arange(len(ov)), len(ov))
            self.ovmax[owner] = best
            self.jmax[owner] = pair_gt[np.minimum.reduceat(hit, starts)]
            self.crowd_ioa[owner] = np.maximum.reduceat(ioa, starts)

    def outcome(self, iou_thresh: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
        """(tp, fp): float64 [D] 0/1 flags in visiting order, at ``ovmax > iou_thresh``."""
        above = self.ovmax > iou_thresh
        claim = above.copy()
        claim[above] = ~self.difficult[self.jmax[above]]
        tp = np.zeros(len(self.order))
        claimants = np.flatnonzero(claim)
        # The first claimant of each GT box in visiting order is the TP.
        _, first = np.unique(self.jmax[claimants], return_index=True)
        tp[claimants[first]] = 1.0
        fp = (~above | (claim & (tp == 0))) & ~(self.crowd_ioa > iou_thresh)
        return tp, fp.astype(np.float64)


def class_curves(ov: VocOverlaps, tp: np.ndarray, fp: np.ndarray, k: int
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(recall, precision, score) arrays of class ``k``, as voc_eval builds them."""
    lo, hi = np.searchsorted(ov.cat, [k, k + 1])
    tp_c, fp_c = np.cumsum(tp[lo:hi]), np.cumsum(fp[lo:hi])
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp_c / float(ov.num_pos[k])
    prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
    return rec, prec, ov.score[lo:hi]


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = False) -> float:
    """AP from a recall/precision curve: VOC07 11-point, or VOC2010+ area under the
    envelope. Same arithmetic as the devkit (so the same float)."""
    if use_07_metric:
        envelope = np.maximum.accumulate(prec[::-1])[::-1] if len(prec) else prec
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            i = int(np.searchsorted(rec, t, side="left"))  # first index with rec >= t
            p = envelope[i] if i < len(rec) else 0
            ap = ap + p / 11.
        return float(ap)
    mrec = np.concatenate(([0.], rec, [1.]))
    mpre = np.concatenate(([0.], prec, [0.]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_class_aps(ov: VocOverlaps, tp: np.ndarray, fp: np.ndarray
                  ) -> Tuple[List[float], List[float]]:
    """Per-class (VOC07 11-point AP, VOC2010+ AP) from ``ov.outcome(thresh)``'s flags;
    -1 for classes without positives."""
    ap07, ap10 = [], []
    for k in range(len(ov.num_pos)):
        if ov.num_pos[k] == 0:
            ap07.append(-1.0)
            ap10.append(-1.0)
            continue
        rec, prec, _ = class_curves(ov, tp, fp, k)
        ap07.append(voc_ap(rec, prec, use_07_metric=True))
        ap10.append(voc_ap(rec, prec, use_07_metric=False))
    return ap07, ap10
