"""COCO json: sparse category ids, ``iscrowd``, ``area``; boxes XYWH in the file.

Category ids are mapped to contiguous labels 1..K in the order of ``classes.txt`` beside
the json when present, else in increasing category id (detectron2's order), and mapped
back through ``thing_dataset_id_to_contiguous_id`` when results are written.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from ..records import DataError, check_image_files, find_class_list, image_size, sanitize_boxes

logger = logging.getLogger(__name__)


def read_coco_json(json_file: str) -> Dict[str, Any]:
    """The parsed json, with a clear error for a missing or malformed file."""
    if not os.path.isfile(json_file):
        raise DataError(f"COCO annotation file not found: {json_file}")
    try:
        with open(json_file) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse COCO json {json_file}: {e}") from e
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{json_file}: missing the list {key!r}")
    return data


def _default_image_root(json_file: str, first_file: Optional[str]) -> str:
    """Guess where images live: beside the json, or COCO's ``<root>/<split>/`` layout."""
    ann_dir = os.path.dirname(os.path.abspath(json_file))
    stem = os.path.splitext(os.path.basename(json_file))[0]
    split = stem.split("_", 1)[1] if stem.startswith("instances_") else stem
    candidates = [ann_dir, os.path.join(ann_dir, "..", split), os.path.join(ann_dir, "images"),
                  os.path.join(ann_dir, "..", "JPEGImages"),
                  os.path.join(ann_dir, "..", "images", split),
                  os.path.join(ann_dir, "..", "images")]
    if first_file is None:
        return ann_dir
    for c in candidates:
        if os.path.isfile(os.path.join(c, first_file)):
            return os.path.normpath(c)
    raise DataError(
        f"{json_file}: cannot find image {first_file!r} in any of "
        f"{[os.path.normpath(c) for c in candidates]}; give the image folder as "
        f"'coco:{json_file}:IMAGE_ROOT'")


def _category_map(data: dict, json_file: str) -> Tuple[List[str], Dict[int, int]]:
    cats = sorted(data["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    order = find_class_list(os.path.dirname(os.path.abspath(json_file)))
    if order:
        unknown = sorted(set(names) - set(order))
        if unknown:
            raise DataError(f"{json_file}: categories {unknown} are not in classes.txt {order}")
        id_by_name = {c["name"]: c["id"] for c in cats}
        return order, {id_by_name[n]: i + 1 for i, n in enumerate(order) if n in id_by_name}
    return names, {c["id"]: i + 1 for i, c in enumerate(cats)}


def load_coco_json(json_file: str, image_root: Optional[str] = None, *,
                   check_images: bool = True, box_policy: str = "clip"
                   ) -> Tuple[List[dict], Dict[str, Any]]:
    """Read a COCO instances json.

    Args:
        json_file: path of the json.
        image_root: folder the images' ``file_name`` is relative to (default: guessed).
        check_images, box_policy: see ``readers.voc.load_voc``.
    Returns:
        (records, metadata fields: thing_classes, thing_dataset_id_to_contiguous_id,
        json_file, image_root). Annotations keep COCO's ``area`` and ``id``.
    """
    data = read_coco_json(json_file)
    thing_classes, id_map = _category_map(data, json_file)
    images = data["images"]
    if image_root is None:
        image_root = _default_image_root(json_file, images[0]["file_name"] if images else None)
    anns_by_image: Dict[Any, List[dict]] = {img["id"]: [] for img in images}
    for ann in data.get("annotations", []):
        where = f"{json_file}: annotation id {ann.get('id')}"
        if ann.get("image_id") not in anns_by_image:
            raise DataError(f"{where} refers to unknown image_id {ann.get('image_id')!r}")
        if ann.get("category_id") not in id_map:
            raise DataError(f"{where} has category_id {ann.get('category_id')!r}, not among "
                            f"the categories {sorted(id_map)}")
        anns_by_image[ann["image_id"]].append(_convert_annotation(ann, id_map, where))
    records = []
    for img in images:
        path = os.path.join(image_root, img["file_name"])
        w, h = img.get("width"), img.get("height")
        if not w or not h:
            w, h = image_size(path)
        records.append({"file_name": path, "image_id": img["id"], "width": int(w),
                        "height": int(h), "annotations": anns_by_image[img["id"]]})
    if check_images:
        check_image_files(records)
    sanitize_boxes(records, box_policy, json_file)
    fields = {"thing_classes": thing_classes, "thing_dataset_id_to_contiguous_id": id_map,
              "json_file": os.path.abspath(json_file), "image_root": image_root,
              "evaluator_type": "coco"}
    return records, fields


def _convert_annotation(ann: dict, id_map: Dict[int, int], where: str) -> dict:
    try:
        x, y, w, h = (float(v) for v in ann["bbox"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}: 'bbox' must be [x, y, w, h]") from e
    out = {"bbox": [x, y, x + w, y + h], "category_id": id_map[ann["category_id"]],
           "iscrowd": int(ann.get("iscrowd", 0)), "difficult": 0,
           "area": float(ann["area"]) if "area" in ann else w * h}
    if "id" in ann:
        out["id"] = ann["id"]
    return out
