"""Ground truth as flat numpy columns, and loading it from a COCO json or a VOC root.

Shape letters: ``G`` ground-truth boxes, ``I`` images, ``K`` classes.

Images are numbered by their position in the *sorted* list of image ids, because
pycocotools visits images in that order (``np.unique(imgIds)``) and the order decides
which detection comes first on tied scores.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np


def meta_get(metadata: Any, key: str, default: Any = None) -> Any:
    """``metadata.key`` for a ``Metadata`` object, ``metadata[key]`` for a dict."""
    if isinstance(metadata, dict):
        return metadata.get(key, default)
    return getattr(metadata, key, default)


class GroundTruth:
    """The annotations of a dataset as columns (one row per GT box, in record order).

    Attributes:
        image_ids: list[I] of image ids, sorted; ``image_index[id]`` is the position.
        num_classes: K.
        img: int64 [G] image position.  cat: int64 [G] class index 0..K-1.
        boxes: float64 [G, 4] XYXY as in the records.  area: float64 [G] (the annotation's
            ``area`` when present, else box width * height).
        crowd, difficult: bool [G].  id_zero: bool [G], annotation ``id`` == 0 (see
            ``coco_protocol``: pycocotools never counts a match to such a box).
    """

    def __init__(self, records: Sequence[dict], num_classes: int):
        self.num_classes = int(num_classes)
        self.image_ids = _sorted_image_ids(records)
        self.image_index = {image_id: i for i, image_id in enumerate(self.image_ids)}
        rows: List[Tuple] = []
        for r in records:
            img = self.image_index[r["image_id"]]
            for ann in r.get("annotations", []):
                rows.append(self._row(r, img, ann))
        self._set_columns(rows)

    def _row(self, record: dict, img: int, ann: dict) -> Tuple:
        where = f"ground truth of image {record['image_id']!r}"
        label = ann.get("category_id")
        if not isinstance(label, (int, np.integer)) or not 1 <= label <= self.num_classes:
            raise ValueError(f"{where}: category_id {label!r} is not a label in "
                             f"1..{self.num_classes}")
        box = ann.get("bbox")
        if box is None or len(box) != 4:
            raise ValueError(f"{where}: bbox {box!r} is not [x1, y1, x2, y2]")
        x1, y1, x2, y2 = (float(v) for v in box)
        area = float(ann["area"]) if "area" in ann else (x2 - x1) * (y2 - y1)
        return (img, label - 1, x1, y1, x2, y2, area, bool(ann.get("iscrowd", 0)),
                bool(ann.get("difficult", 0)), ann.get("id", -1) == 0)

    def _set_columns(self, rows: List[Tuple]) -> None:
        cols = list(zip(*rows)) if rows else [()] * 10
        self.img = np.asarray(cols[0], dtype=np.int64)
        self.cat = np.asarray(cols[1], dtype=np.int64)
        self.boxes = np.asarray(cols[2:6], dtype=np.float64).T.reshape(-1, 4).copy()
        self.area = np.asarray(cols[6], dtype=np.float64)
        self.crowd = np.asarray(cols[7], dtype=bool)
        self.difficult = np.asarray(cols[8], dtype=bool)
        self.id_zero = np.asarray(cols[9], dtype=bool)

    def __len__(self) -> int:
        return len(self.img)

    @property
    def num_images(self) -> int:
        return len(self.image_ids)


def _sorted_image_ids(records: Sequence[dict]) -> list:
    ids = [r["image_id"] for r in records]
    if len(set(ids)) != len(ids):
        seen, dupes = set(), []
        for i in ids:
            if i in seen:
                dupes.append(i)
            seen.add(i)
        raise ValueError(f"ground truth: image_id(s) {dupes[:5]} appear in more than one record")
    try:
        return sorted(ids)
    except TypeError as e:
        raise ValueError("ground truth: image ids mix types (e.g. int and str); "
                         f"first ids: {ids[:5]}") from e


# ---------------------------------------------------------------------------------------
# Loading ground truth from files (the readers of fewshot_det.data; no torch).


def load_ground_truth(gt: str, split: str = "test") -> Tuple[List[dict], Dict[str, Any]]:
    """Records and metadata fields of a COCO json (``split`` unused) or a VOC root.

    Boxes are read as written (``box_policy="keep"``) and images are not opened: evaluation
    needs neither. A VOC root's class list is its ``classes.txt`` when present, else the
    sorted class names found in ``Annotations/``; VOC image ids are file stems.

    Returns:
        (records, metadata dict with thing_classes, thing_dataset_id_to_contiguous_id,
        evaluator_type)
    Raises:
        ValueError: ``gt`` is neither a ``.json`` file nor a folder with ``Annotations/``.
    """
    from fewshot_det.data.readers import load_coco_json, load_voc

    if os.path.isfile(gt) and gt.endswith(".json"):
        image_root = os.path.dirname(os.path.abspath(gt))
        records, fields = load_coco_json(gt, image_root, check_images=False, box_policy="keep")
        return records, fields
    if os.path.isdir(gt):
        if not os.path.isdir(os.path.join(gt, "Annotations")):
            raise ValueError(f"--gt {gt}: a folder must be a VOC root holding Annotations/ "
                             "and ImageSets/Main/")
        records, classes = load_voc(gt, split, check_images=False, box_policy="keep")
        return records, {"thing_classes": classes, "evaluator_type": "voc",
                         "thing_dataset_id_to_contiguous_id":
                             {i: i for i in range(1, len(classes) + 1)},
                         "dataset_root": os.path.abspath(gt), "split": split}
    raise ValueError(f"--gt {gt}: expected a COCO json file or a VOC root folder; "
                     "no such file or folder" if not os.path.exists(gt) else
                     f"--gt {gt}: expected a COCO json file (.json) or a VOC root folder")
