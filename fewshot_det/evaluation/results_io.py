"""COCO results lists -> flat numpy columns, with errors naming the bad entries.

A results list is ``[{"image_id", "category_id" (the DATASET's id), "bbox": [x, y, w, h],
"score"}]``; ``"category_name"`` may replace ``"category_id"``. Shape letter: ``D``
detections, in the order of the list (that order breaks ties between equal scores, as in
pycocotools and the VOC devkit).
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
from typing import Any, Dict, Iterator, List, Sequence

import numpy as np

from .ground_truth import meta_get


class Detections:
    """Detections as columns.

    Attributes:
        img: int64 [D] image position (``GroundTruth.image_index``).
        cat: int64 [D] class index 0..K-1.
        xywh: float64 [D, 4] boxes as in the results file.
        score: float64 [D].
    """

    def __init__(self, img: np.ndarray, cat: np.ndarray, xywh: np.ndarray, score: np.ndarray):
        self.img, self.cat, self.xywh, self.score = img, cat, xywh, score

    def __len__(self) -> int:
        return len(self.score)

    def xyxy(self) -> np.ndarray:
        """float64 [D, 4]: ``[x, y, x + w, y + h]`` (a detection equal to a VOC box has
        ``bbox = [xmin, ymin, xmax - xmin, ymax - ymin]``)."""
        x, y, w, h = self.xywh.T
        return np.stack([x, y, x + w, y + h], axis=1)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (restored on exit).

    Reading a COCO-sized results file creates ~10^6 dicts and lists; each allocation burst
    triggers full collections that walk all of them again, which costs about a third of the
    evaluation time. Nothing here creates reference cycles, so pausing is safe.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_results_file(path: str) -> List[dict]:
    """The list in a COCO results json, with clear errors for a missing or malformed file."""
    if not os.path.isfile(path):
        raise ValueError(f"results file not found: {path}")
    try:
        with open(path) as f:
            results = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot parse results json {path}: {e}") from e
    if not isinstance(results, list):
        raise ValueError(f"{path}: a COCO results file holds a list of detections, "
                         f"got {type(results).__name__}")
    return results


def instances_to_results(image_id: Any, boxes: Any, scores: Any, labels: Any, metadata: Any
                         ) -> List[dict]:
    """One image's model output -> COCO results entries (the inverse of ``parse_results``).

    Args:
        image_id: the record's ``image_id``.
        boxes: [N, 4] XYXY in original-image pixels; scores: [N]; labels: [N] in 1..K.
            numpy arrays, lists or CPU tensors (read with ``np.asarray``; no torch import).
        metadata: ``thing_dataset_id_to_contiguous_id`` (identity when absent) maps labels
            back to the dataset's category ids.
    Returns:
        [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}], python floats.
    """
    id_map = meta_get(metadata, "thing_dataset_id_to_contiguous_id") or {}
    dataset_id = {v: k for k, v in id_map.items()}
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
    labels = np.asarray(labels).reshape(-1).tolist()
    unknown = sorted({int(lb) for lb in labels if id_map and int(lb) not in dataset_id})
    if unknown:
        raise ValueError(f"image {image_id!r}: labels {unknown} have no dataset category id "
                         f"(known labels: {sorted(dataset_id)})")
    return [{"image_id": image_id, "category_id": dataset_id.get(int(lb), int(lb)),
             "bbox": box, "score": float(sc)}
            for box, sc, lb in zip(xywh, np.asarray(scores).reshape(-1).tolist(), labels)]


def parse_results(results: Sequence[dict], image_index: Dict[Any, int], metadata: Any
                  ) -> Detections:
    """Validate a results list and turn it into ``Detections``.

    Args:
        results: COCO results list (see module docstring).
        image_index: GT image id -> image position.
        metadata: ``thing_classes`` and ``thing_dataset_id_to_contiguous_id`` (identity
            when absent).
    Raises:
        ValueError: an entry lacks a key or has a malformed bbox/score, or names an image
            id, category id or category name the ground truth does not have.
    """
    if not isinstance(results, (list, tuple)):
        raise ValueError(f"results must be a list of dicts, got {type(results).__name__}")
    if len(results) == 0:
        return Detections.empty()
    try:
        image_ids = [r["image_id"] for r in results]
        xywh = np.array([r["bbox"] for r in results], dtype=np.float64)
        score = np.array([r["score"] for r in results], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        _raise_first_malformed(results)
        raise
    if xywh.ndim != 2 or xywh.shape[1] != 4:
        _raise_first_malformed(results)
        raise ValueError(f"results: every bbox must be [x, y, w, h]; got shape {xywh.shape}")
    bad = np.flatnonzero(~np.isfinite(xywh).all(axis=1) | ~np.isfinite(score))
    if len(bad):
        raise ValueError(f"results entry {int(bad[0])} has a non-finite bbox or score: "
                         f"{results[int(bad[0])]}")
    # A negative size is an XYXY box written where [x, y, w, h] is expected; evaluating it
    # would silently score it as a miss.
    bad = np.flatnonzero((xywh[:, 2] < 0) | (xywh[:, 3] < 0))
    if len(bad):
        raise ValueError(f"results entry {int(bad[0])} has a negative width or height "
                         f"(bbox is [x, y, w, h], not [x1, y1, x2, y2]?): "
                         f"{results[int(bad[0])]}")
    img = _map_images(image_ids, image_index)
    cat = _map_categories(results, metadata)
    return Detections(img, cat, xywh, score)


def _raise_first_malformed(results: Sequence[dict]) -> None:
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise ValueError(f"results entry {i} is not a dict: {r!r}")
        for key in ("image_id", "bbox", "score"):
            if key not in r:
                raise ValueError(f"results entry {i} has no {key!r}: {r}")
        box = r["bbox"]
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise ValueError(f"results entry {i}: bbox must be [x, y, w, h], got {box!r}")
        try:
            [float(v) for v in box] + [float(r["score"])]
        except (TypeError, ValueError):
            raise ValueError(f"results entry {i}: bbox and score must be numbers: {r}")


def _map_images(image_ids: List[Any], image_index: Dict[Any, int]) -> np.ndarray:
    img = np.fromiter((image_index.get(i, -1) for i in image_ids), dtype=np.int64,
                      count=len(image_ids))
    unknown = np.flatnonzero(img < 0)
    if len(unknown):
        names = sorted({repr(image_ids[i]) for i in unknown[:1000]})
        known = list(image_index)[:5]
        raise ValueError(f"results refer to {len(unknown)} detection(s) on image id(s) not in "
                         f"the ground truth: {', '.join(names[:10])}"
                         f"{' ...' if len(names) > 10 else ''} (ground-truth ids look like "
                         f"{known}; a VOC image id is the file stem, a string)")
    return img


def _map_categories(results: Sequence[dict], metadata: Any) -> np.ndarray:
    classes = list(meta_get(metadata, "thing_classes"))
    id_map = meta_get(metadata, "thing_dataset_id_to_contiguous_id") or \
        {i: i for i in range(1, len(classes) + 1)}
    name_map = {name: i + 1 for i, name in enumerate(classes)}
    keys = [r["category_id"] if "category_id" in r else ("name", r.get("category_name"))
            for r in results]
    uniq = {k: None for k in keys}  # distinct values, in order of appearance
    unknown = []
    for k in uniq:
        label = name_map.get(k[1]) if isinstance(k, tuple) else id_map.get(k)
        if label is None:
            unknown.append(f"category_name {k[1]!r}" if isinstance(k, tuple)
                           else f"category_id {k!r}")
        uniq[k] = label
    if unknown:
        raise ValueError(f"results use {', '.join(unknown[:10])}, unknown to the ground truth "
                         f"(dataset category ids: {sorted(id_map)[:20]}; names: "
                         f"{classes[:20]})")
    return np.fromiter((uniq[k] - 1 for k in keys), dtype=np.int64, count=len(keys))
