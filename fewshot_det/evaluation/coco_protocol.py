"""The COCO box protocol, computing exactly what pycocotools' ``COCOeval`` computes.

Shape letters: ``T`` IoU thresholds (10), ``R`` recall thresholds (101), ``K`` classes,
``A`` area ranges (4), ``M`` max-detection settings (3), ``D`` detections kept (at most
``max(MAX_DETS)`` per image and class), ``G`` GT boxes, ``P`` (detection, GT) pairs.

pycocotools loops in Python over images x classes x area ranges x thresholds x detections x
GT boxes. Here the same greedy matching runs as a loop over a detection's *rank* inside its
(image, class) group (at most 100 steps): at one rank no two detections share a GT box, so
every group, area range and threshold advances at once on flat arrays. Only the pairs with
IoU >= the lowest threshold can ever match, so only those are kept. Accumulation then needs
just the true-positive entries of each precision/recall curve (precision can only rise at a
true positive), which again is a handful of sorts and cumulative sums.

Details kept from pycocotools, each one able to change a number:
* IoU of ``[x, y, w, h]`` boxes as its C code computes it; a crowd GT's "IoU" is
  intersection / detection area, and a crowd box can absorb any number of detections.
* GT ``area`` (the annotation's, not w*h) decides the area range; a detection's is w*h.
* On equal scores the earlier detection wins (stable sorts), in the image order of the
  sorted image ids; among equally good GT boxes the later one wins.
* A detection prefers any non-ignored GT over an ignored one (crowd or out of range).
* A match to a GT whose annotation ``id`` is 0 counts as no match (pycocotools stores the
  matched id and tests it for non-zero).
* Classes with no non-ignored GT are -1 and left out of the means.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .ground_truth import GroundTruth
from .results_io import Detections
from .segments import rank_in_segment, same_key_pairs, segment_ids, segment_starts, \
    segmented_suffix_max

# pycocotools' Params.setDetParams (linspace, not arange: see its comment).
IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RNGS = np.array([[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2],
                      [96 ** 2, 1e5 ** 2]], dtype=np.float64)
AREA_LABELS = ("all", "small", "medium", "large")
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
             "ARl")
_EPS = np.spacing(1)


def coco_iou(det_xywh: np.ndarray, gt_xyxy: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU of paired rows, as pycocotools' ``bbIou`` computes it.

    Args:
        det_xywh: float64 [P, 4]; gt_xyxy: float64 [P, 4]; gt_crowd: bool [P].
    Returns:
        float64 [P]; for a crowd GT: intersection / detection area.
    """
    dx, dy, dw, dh = det_xywh.T
    gx1, gy1, gx2, gy2 = gt_xyxy.T
    # x2 = x + w is what the C code computes for both boxes; the readers store x + w too.
    w = np.minimum(dw + dx, gx2) - np.maximum(dx, gx1)
    h = np.minimum(dh + dy, gy2) - np.maximum(dy, gy1)
    inter = w * h
    det_area = dw * dh
    union = np.where(gt_crowd, det_area, det_area + (gx2 - gx1) * (gy2 - gy1) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


class CocoMatches:
    """Per-detection outcome of the matching, for detections kept (sorted by group, rank).

    Attributes:
        det_index: int64 [D] index into the input ``Detections``.
        rank: int64 [D] position by score inside its (image, class) group.
        tp, ignored: bool [A, T, D] true positive / ignored (neither TP nor FP).
        in_range: bool [A, D] detection area inside the area range.
        num_gt: int64 [A, K] non-ignored GT boxes per area range and class.
    """

    def __init__(self, det_index, rank, tp, ignored, in_range, num_gt):
        self.det_index, self.rank, self.tp, self.ignored = det_index, rank, tp, ignored
        self.in_range, self.num_gt = in_range, num_gt


def coco_match(gt: GroundTruth, det: Detections, *, iou_thrs: np.ndarray = IOU_THRS,
               area_rngs: np.ndarray = AREA_RNGS, max_det: int = MAX_DETS[-1]) -> CocoMatches:
    """pycocotools' ``evaluateImg`` for every image, class and area range at once."""
    K = gt.num_classes
    # 1. Each (image, class) group's detections by score (stable), capped at max_det.
    det_key = det.img * K + det.cat
    order = np.lexsort((-det.score, det_key))
    rank = rank_in_segment(det_key[order])
    kept = order[rank < max_det]
    rank = rank[rank < max_det]
    # 2. (detection, GT) pairs of the same group that clear the lowest threshold.
    thrs = np.minimum(np.asarray(iou_thrs, dtype=np.float64), 1 - 1e-10)
    pair_det, pair_gt = same_key_pairs(det_key[kept], gt.img * K + gt.cat)
    iou = coco_iou(det.xywh[kept[pair_det]], gt.boxes[pair_gt], gt.crowd[pair_gt])
    close = iou >= thrs.min()
    pair_det, pair_gt, iou = pair_det[close], pair_gt[close], iou[close]
    # 3. Greedy matching, rank by rank.
    gt_ignored = gt.crowd[None] | (gt.area[None] < area_rngs[:, :1]) | \
        (gt.area[None] > area_rngs[:, 1:])  # A, G
    a, t, d, g = _greedy_match(pair_det, pair_gt, iou, rank, gt_ignored, gt.crowd, thrs)
    # 4. Outcome per detection, as accumulate() reads dtMatches / dtIgnore.
    A, T, D = len(area_rngs), len(thrs), len(kept)
    matched = np.zeros((A, T, D), dtype=bool)
    ignored = np.zeros((A, T, D), dtype=bool)
    matched[a, t, d] = ~gt.id_zero[g]
    ignored[a, t, d] = gt_ignored[a, g]
    det_area = det.xywh[kept, 2] * det.xywh[kept, 3]
    out_of_range = (det_area[None] < area_rngs[:, :1]) | (det_area[None] > area_rngs[:, 1:])
    ignored |= ~matched & out_of_range[:, None, :]
    num_gt = np.stack([np.bincount(gt.cat[~ig], minlength=K) for ig in gt_ignored]) \
        if len(gt) else np.zeros((A, K), dtype=np.int64)
    return CocoMatches(kept, rank, matched & ~ignored, ignored, ~out_of_range, num_gt)


def _greedy_match(pair_det, pair_gt, iou, rank, gt_ignored, gt_crowd, thrs
                  ) -> Tuple[np.ndarray, ...]:
    """The matching loop of ``evaluateImg``, vectorised over groups, area ranges, thresholds.

    For one detection pycocotools picks, among GT boxes still free (or crowd) with
    IoU >= threshold, a non-ignored one if any, the highest IoU, the last one on ties.

    Args:
        pair_det, pair_gt, iou: [P] pairs, ordered by detection then GT order.
        rank: int64 [D] rank of each detection in its group.
        gt_ignored: bool [A, G]; gt_crowd: bool [G]; thrs: float64 [T].
    Returns:
        (area index, threshold index, detection, GT) int arrays of every match made.
    """
    A, T = gt_ignored.shape[0], len(thrs)
    taken = np.zeros((A, T, gt_ignored.shape[1]), dtype=bool)
    order = np.argsort(rank[pair_det], kind="stable")
    pair_det, pair_gt, iou = pair_det[order], pair_gt[order], iou[order]
    bounds = list(segment_starts(rank[pair_det])) + [len(pair_det)]
    found = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        d, g, v = pair_det[s:e], pair_gt[s:e], iou[s:e]
        starts = segment_starts(d)
        seg = segment_ids(starts, len(d))
        cand = (v >= thrs[:, None])[None] & (~taken[:, :, g] | gt_crowd[g])  # A, T, P
        regular = ~gt_ignored[:, g][:, None, :]  # A, 1, P
        has_regular = np.logical_or.reduceat(cand & regular, starts, axis=2)
        cand &= regular | ~has_regular[:, :, seg]
        val = np.where(cand, v, -1.0)
        best = np.maximum.reduceat(val, starts, axis=2)
        pos = np.where(cand & (val == best[:, :, seg]), np.arange(len(d)), -1)
        choice = np.maximum.reduceat(pos, starts, axis=2)  # A, T, detections at this rank
        ai, ti, _ = np.nonzero(choice >= 0)
        p = choice[choice >= 0]
        taken[ai, ti, g[p]] = True
        found.append((ai, ti, d[p], g[p]))
    if not found:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(4))
    return tuple(np.concatenate(x) for x in zip(*found))


def coco_accumulate(gt: GroundTruth, det: Detections, m: CocoMatches, *,
                    rec_thrs: np.ndarray = REC_THRS, max_dets: Sequence[int] = MAX_DETS
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``accumulate``.

    Returns:
        precision: float64 [T, R, K, A, M] (-1 for classes without GT);
        recall: float64 [T, K, A, M].
    """
    A, T, _ = m.tp.shape
    K, R, M = gt.num_classes, len(rec_thrs), len(max_dets)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    idx = m.det_index
    # accumulate() concatenates images in sorted-id order, each image's detections by rank,
    # then stable-sorts by score: so the order is (class, -score, image, rank).
    acc = np.lexsort((m.rank, det.img[idx], -det.score[idx], det.cat[idx]))
    cat, rank = det.cat[idx][acc], m.rank[acc]
    tp, ignored, in_range = m.tp[:, :, acc], m.ignored[:, :, acc], m.in_range[:, acc]
    v_min = _min_true_positives(m.num_gt, rec_thrs)  # A, K, R
    has_gt = m.num_gt > 0  # A, K
    for mi, max_det in enumerate(max_dets):
        sel = np.flatnonzero(rank < max_det)
        q, tp_total = _curve_points(tp[:, :, sel], ignored[:, :, sel], in_range[:, sel],
                                    cat[sel], K, v_min)
        with np.errstate(divide="ignore", invalid="ignore"):
            rc = tp_total / m.num_gt[:, None, :]  # A, T, K
        prec = np.where(has_gt[:, None, :, None], q, -1.0)  # A, T, K, R
        precision[:, :, :, :, mi] = prec.transpose(1, 3, 2, 0)
        recall[:, :, :, mi] = np.where(has_gt[:, None, :], rc, -1.0).transpose(1, 2, 0)
    return precision, recall


def _min_true_positives(num_gt: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """int64 [A, K, R]: fewest TPs with ``tp / num_gt >= thr`` in float64, as ``searchsorted``
    of pycocotools' recall array finds them (num_gt + 1 if never)."""
    out = np.zeros(num_gt.shape + (len(rec_thrs),), dtype=np.int64)
    for n in np.unique(num_gt[num_gt > 0]):
        out[num_gt == n] = np.searchsorted(np.arange(n + 1) / n, rec_thrs, side="left")
    return out


def _curve_points(tp: np.ndarray, ignored: np.ndarray, in_range: np.ndarray, cat: np.ndarray,
                  K: int, v_min: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Interpolated precision at each recall threshold from the true positives only.

    pycocotools' precision at recall threshold r is max(pr[i:]) with i the first index
    reaching ``v_min`` TPs; pr only rises at TPs, so the maximum is taken at a TP, and a
    TP's precision needs just the number of FPs before it. A false positive is always an
    unmatched detection inside the area range, so that number is (in-range detections
    before it) - (in-range TPs and ignored detections before it): the latter are few.

    Args:
        tp, ignored: bool [A, T, N] detections of one max-dets setting, sorted by
            (class, -score, image, rank).
        in_range: bool [A, N] detection area inside the area range.
        cat: int64 [N] class of each (nondecreasing).
        v_min: int64 [A, K, R] from ``_min_true_positives``.
    Returns:
        q: float64 [A, T, K, R] interpolated precision; tp_total: int64 [A, T, K].
    """
    A, T, N = tp.shape
    # In-range detections of the same class before each detection, per area range.
    cum = np.cumsum(in_range, axis=1) - in_range
    in_range_before = cum - cum[:, _first_of_segment(cat)]
    # Entries that matter: TPs, and ignored detections inside the range.
    row, j = np.nonzero((tp | (ignored & in_range[:, None, :])).reshape(A * T, N))
    group = row * K + cat[j]
    a = row // T
    counted = in_range[a, j]
    counted_before = np.cumsum(counted) - counted
    counted_before -= counted_before[_first_of_segment(group)]
    fp_before = in_range_before[a, j] - counted_before
    is_tp = tp.reshape(A * T, N)[row, j]
    group, fp_before = group[is_tp], fp_before[is_tp]
    tp_count = (rank_in_segment(group) + 1).astype(np.float64)
    # Same expression as pycocotools: tp / (fp + tp + np.spacing(1)).
    pr = tp_count / (fp_before.astype(np.float64) + tp_count + _EPS)
    envelope = segmented_suffix_max(pr, segment_ids(segment_starts(group), len(group)))
    tp_total = np.bincount(group, minlength=A * T * K).reshape(A, T, K)
    first = (np.cumsum(tp_total.reshape(-1)) - tp_total.reshape(-1)).reshape(A, T, K)
    need = np.maximum(v_min, 1)[:, None]  # A, 1, K, R
    valid = need <= tp_total[..., None]
    at = np.where(valid, first[..., None] + need - 1, 0)
    q = np.where(valid, envelope[at] if len(envelope) else 0.0, 0.0)
    return q, tp_total


def _first_of_segment(sorted_keys: np.ndarray) -> np.ndarray:
    """int64 [N]: index of the first element of each element's run of equal keys."""
    starts = segment_starts(sorted_keys)
    return starts[segment_ids(starts, len(sorted_keys))]


def summarize(precision: np.ndarray, recall: np.ndarray,
              classes: Optional[Sequence[int]] = None, *, iou_thrs: np.ndarray = IOU_THRS,
              max_dets: Sequence[int] = MAX_DETS) -> Dict[str, float]:
    """The 12 numbers of ``COCOeval.summarize`` (-1 where no class has GT).

    Args:
        precision, recall: from ``coco_accumulate``.
        classes: class indices to average over (default all), as if pycocotools had been
            run with ``params.catIds`` = those classes.
    """
    if classes is not None:
        precision = precision[:, :, list(classes)]
        recall = recall[:, list(classes)]

    def _stat(ap: bool, iou: Optional[float] = None, area: str = "all", md: int = 100):
        aind, mind = [AREA_LABELS.index(area)], [list(max_dets).index(md)]
        s = precision if ap else recall
        if iou is not None:
            s = s[np.where(iou == iou_thrs)[0]]
        s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
        valid = s[s > -1]
        return float(np.mean(valid)) if len(valid) else -1.0

    md = max_dets[-1]
    values = [_stat(True, None, "all", md), _stat(True, .5, "all", md),
              _stat(True, .75, "all", md), _stat(True, None, "small", md),
              _stat(True, None, "medium", md), _stat(True, None, "large", md),
              _stat(False, None, "all", max_dets[0]), _stat(False, None, "all", max_dets[1]),
              _stat(False, None, "all", md), _stat(False, None, "small", md),
              _stat(False, None, "medium", md), _stat(False, None, "large", md)]
    return dict(zip(STAT_KEYS, values))


def coco_evaluate(gt: GroundTruth, det: Detections) -> Tuple[np.ndarray, np.ndarray]:
    """precision [T, R, K, A, M] and recall [T, K, A, M] of the COCO box protocol."""
    return coco_accumulate(gt, det, coco_match(gt, det))


__all__: List[str] = ["coco_iou", "coco_match", "coco_accumulate", "coco_evaluate",
                      "summarize", "STAT_KEYS", "IOU_THRS", "REC_THRS", "MAX_DETS",
                      "AREA_RNGS", "AREA_LABELS"]
