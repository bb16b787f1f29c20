"""Review: a split with ground truth detected once, then looked at from every side.

The run (``run_review``) is the only model work; everything after it is numpy on its
results, so moving the score threshold re-counts without re-running the model:

* the metrics: the project's evaluator (``evaluation.evaluate``) on the results;
* per detection TP / FP (or ignored: a difficult or crowd box) and per GT box matched or
  missed, by the evaluator's own VOC matching at IoU 0.5 (``VocOverlaps.outcome``),
  so the counts on the page are the evaluator's per-class ``tp`` / ``fp`` / ``fn``;
* per class the PR curve (``voc_protocol.class_curves``), each point a detection;
* per class the images with false positives, with misses, and the hardest (most of both).

Results name their class (``category_name``): the model's class names are matched to the
dataset's by name, and detections of other classes are left out (and counted).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from ..evaluation import evaluate
from ..evaluation.matching import IOU, Matching
from .images import ImageStore, read_bgr

KINDS = ("fp", "fn", "hard", "tp", "all")


@dataclass
class ReviewRun:
    """One split detected: what the review pages are computed from.

    Attributes:
        spec: the dataset (its --data spec).
        records, metadata: the split's records (those detected) and metadata.
        results: COCO results with ``category_name``, every score.
        store_ids: the image store's id of each record.
        left_out: {model class name: detections} of classes the dataset does not have.
    """

    spec: str
    records: List[dict]
    metadata: Any
    results: List[dict]
    store_ids: List[str]
    left_out: Dict[str, int] = field(default_factory=dict)
    _matching: Optional["Matching"] = None

    @property
    def matching(self) -> "Matching":
        if self._matching is None:
            self._matching = Matching(self.records, self.metadata, self.results)
        return self._matching


def run_review(session, store: ImageStore, spec: str, records: List[dict], metadata,
               job, sliced: Optional[bool] = None) -> ReviewRun:
    """Detect every record's image (``job`` gets the progress and may cancel)."""
    classes = set(metadata.thing_classes)
    shared = classes & set(session.class_names)
    if not shared:
        raise ValueError(f"the model's classes {session.class_names[:10]} share no name with "
                         f"the dataset's {sorted(classes)[:10]}: nothing to evaluate")
    results: List[dict] = []
    left_out: Dict[str, int] = {}
    store_ids = []
    job.progress(0, len(records))
    for i, record in enumerate(records):
        job.check_cancelled()
        stored = store.add_file(record["file_name"], image_id=record["image_id"],
                                size=(record["width"], record["height"]))
        store_ids.append(stored.id)
        out = session.detect(read_bgr(record["file_name"]), sliced=sliced)
        for box, score, name in zip(out["boxes"], out["scores"], out["names"]):
            if name not in classes:
                left_out[name] = left_out.get(name, 0) + 1
                continue
            x1, y1, x2, y2 = box
            results.append({"image_id": record["image_id"], "category_name": name,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
        job.progress(i + 1)
    return ReviewRun(spec=spec, records=records, metadata=metadata, results=results,
                     store_ids=store_ids, left_out=left_out)


def _ranked(counts: np.ndarray, store_ids: List[str], limit: int = 200) -> List[dict]:
    order = np.argsort(-counts, kind="stable")
    return [{"image": store_ids[i], "count": int(counts[i])}
            for i in order[:limit] if counts[i] > 0]


def summary(run: ReviewRun, score_thresh: float) -> dict:
    """The metrics, the per-class table with its image lists, and the PR curves."""
    if not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], got {score_thresh}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty results list: the page says so itself
        metrics = evaluate(run.records, run.metadata, run.results, score_thresh=score_thresh,
                           iou_thresh=IOU)
    m = run.matching
    classes = []
    for k, name in enumerate(run.metadata.thing_classes):
        row = metrics["per_class"][name]
        counts = m.per_record(score_thresh, k)
        curve = m.curve(k)
        curve["image"] = [run.store_ids[m.record_of_det[d]] for d in curve["detection"]]
        classes.append({
            "name": name, "num_gt": row["num_gt"], "tp": row["tp"], "fp": row["fp"],
            "fn": row["fn"], "precision": row["precision"], "recall": row["recall"],
            "AP50": row["VOC_AP50"], "AP": row["AP"],
            "images": {"fp": _ranked(counts["fp"], run.store_ids),
                       "fn": _ranked(counts["fn"], run.store_ids),
                       "hard": _ranked(counts["fp"] + counts["fn"], run.store_ids),
                       "tp": _ranked(counts["tp"], run.store_ids)},
            "curve": curve})
    overall = m.per_record(score_thresh, None)
    return {"spec": run.spec, "num_images": len(run.records),
            "num_detections": len(run.results), "score_thresh": score_thresh, "iou": IOU,
            "left_out": run.left_out,
            "metrics": {key: metrics[key] for key in ("AP", "AP50", "AP75", "VOC_AP50",
                                                      "VOC07_AP50", "precision", "recall")},
            "classes": classes,
            "hardest": _ranked(overall["fp"] + overall["fn"], run.store_ids)}


def image_boxes(run: ReviewRun, store: ImageStore, image: str, score_thresh: float,
                class_name: Optional[str] = None) -> dict:
    """One image's boxes for drawing: detections (TP / FP / ignored) above the threshold
    and the missed GT boxes (FN), of one class or all."""
    try:
        r = run.store_ids.index(image)
    except ValueError:
        raise KeyError(f"image {image!r} is not part of this review") from None
    m = run.matching
    names = list(run.metadata.thing_classes)
    k = names.index(class_name) if class_name else None
    boxes = []
    dets = np.flatnonzero((m.record_of_det == r) & (m.det.score >= score_thresh)
                          & ((m.det.cat == k) if k is not None else True))
    for d in dets:
        x, y, w, h = m.det.xywh[d].tolist()
        boxes.append({"box": [x, y, x + w, y + h], "kind": m.kind[d], "detection": int(d),
                      "name": names[m.det.cat[d]], "score": float(m.det.score[d])})
    missed = m.missed(score_thresh) & (m.record_of_gt == r)
    if k is not None:
        missed &= m.gt.cat == k
    for g in np.flatnonzero(missed):
        boxes.append({"box": m.gt.boxes[g].tolist(), "kind": "fn",
                      "name": names[m.gt.cat[g]], "score": None})
    counts = {kind: sum(b["kind"] == kind for b in boxes) for kind in ("tp", "fp", "fn")}
    return {"image": store.get(image).to_json(), "boxes": boxes, "counts": counts}
