"""YOLO txt layout (ultralytics / Roboflow exports).

``data.yaml`` names the class list (``names``, a list or {index: name}) and the image folder
of each split (``train: images/train`` or ``train: ../train/images``, relative to ``path`` or
to the yaml). Each image ``.../images/x.jpg`` has ``.../labels/x.txt`` with one line per
object: ``class cx cy w h`` normalised to [0, 1] (segmentation lines ``class x1 y1 x2 y2 ...``
are turned into their bounding box). Without data.yaml, ``images/<split>`` + ``classes.txt``.
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Tuple

import yaml

from ..records import (DataError, IMAGE_EXTENSIONS, check_image_files, find_class_list,
                       image_size, sanitize_boxes)

logger = logging.getLogger(__name__)

_SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "valid": ("valid", "val"),
                  "test": ("test",), "train": ("train",)}


def _read_data_yaml(root: str) -> Optional[dict]:
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path) as f:
                data = yaml.safe_load(f) or {}
            data["__file__"] = path
            return data
    return None


def _names_from_yaml(data: dict) -> List[str]:
    names = data.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise DataError(f"{data['__file__']}: 'names' must be a list or a mapping")


def _split_image_dir(root: str, split: str, data: Optional[dict]) -> str:
    if data is not None:
        base = data.get("path") or "."
        base = base if os.path.isabs(base) else os.path.join(os.path.dirname(data["__file__"]), base)
        for key in _SPLIT_ALIASES.get(split, (split,)):
            if isinstance(data.get(key), str):
                rel = data[key]
                for cand in (os.path.join(base, rel), os.path.join(root, rel),
                             os.path.join(root, rel.lstrip("./").lstrip("../"))):
                    if os.path.isdir(cand):
                        return os.path.normpath(cand)
                raise DataError(f"{data['__file__']}: {key}: {rel!r} is not a folder")
    for cand in (os.path.join(root, "images", split), os.path.join(root, split, "images")):
        if os.path.isdir(cand):
            return cand
    raise DataError(f"YOLO dataset {root}: no image folder for split {split!r} "
                    "(looked for data.yaml, images/<split>, <split>/images)")


def _label_path(image_path: str) -> str:
    # ultralytics' rule: the last "/images/" of the path becomes "/labels/".
    head, sep, tail = image_path.rpartition(os.sep + "images" + os.sep)
    base = head + os.sep + "labels" + os.sep + tail if sep else image_path
    return os.path.splitext(base)[0] + ".txt"


# Normalised coordinates this close outside 0..1 are float rounding of a box on the border
# (cx + w / 2 written as 1.0000001), not a box outside the image.
_BORDER_TOLERANCE = 1e-6


def _snap_to_unit(v: float) -> float:
    if -_BORDER_TOLERANCE <= v < 0.0:
        return 0.0
    if 1.0 < v <= 1.0 + _BORDER_TOLERANCE:
        return 1.0
    return v


def _read_labels(path: str, width: int, height: int, num_classes: int,
                 pixel_like: Optional[List[str]] = None) -> List[dict]:
    """Annotations of one label file; ``pixel_like`` collects lines with coordinates > 1."""
    if not os.path.isfile(path):
        return []  # an image without a label file is a negative sample
    annotations = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            where = f"{path}:{lineno}"
            try:
                cls, coords = int(float(parts[0])), [float(v) for v in parts[1:]]
            except ValueError as e:
                raise DataError(f"{where}: not numbers: {line.strip()!r}") from e
            if not 0 <= cls < num_classes:
                raise DataError(f"{where}: class index {cls} is not in the class list "
                                f"(0..{num_classes - 1})")
            if len(coords) == 4:
                cx, cy, w, h = coords
                box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            elif len(coords) >= 6 and len(coords) % 2 == 0:
                xs, ys = coords[0::2], coords[1::2]
                box = [min(xs), min(ys), max(xs), max(ys)]
            else:
                raise DataError(f"{where}: expected 'class cx cy w h', got {line.strip()!r}")
            if pixel_like is not None and max(coords) > 1.0 + _BORDER_TOLERANCE:
                pixel_like.append(where)
            box = [_snap_to_unit(v) for v in box]
            box = [box[0] * width, box[1] * height, box[2] * width, box[3] * height]
            annotations.append({"bbox": box, "category_id": cls + 1, "iscrowd": 0,
                                "difficult": 0})
    return annotations


def load_yolo(root: str, split: str, *, check_images: bool = True,
              box_policy: str = "clip") -> Tuple[List[dict], List[str]]:
    """Read one split of a YOLO-layout dataset. Returns (records, class_names);
    ``image_id`` is the image's path relative to the split's image folder, without suffix.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DataError(f"YOLO dataset folder not found: {root}")
    data = _read_data_yaml(root)
    class_names = find_class_list(root) or (_names_from_yaml(data) if data else [])
    if not class_names:
        raise DataError(f"YOLO dataset {root}: no class names (add classes.txt or data.yaml)")
    image_dir = _split_image_dir(root, split, data)
    records, pixel_like = [], []
    for dirpath, _, files in sorted(os.walk(image_dir)):
        for f in sorted(files):
            if os.path.splitext(f)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            path = os.path.join(dirpath, f)
            width, height = image_size(path)  # the labels are relative to the image size
            records.append({
                "file_name": path,
                "image_id": os.path.splitext(os.path.relpath(path, image_dir))[0],
                "width": width, "height": height,
                "annotations": _read_labels(_label_path(path), width, height, len(class_names),
                                            pixel_like),
            })
    if not records:
        raise DataError(f"YOLO dataset {root}: no images in {image_dir}")
    if check_images:
        check_image_files(records)
    if pixel_like:
        logger.warning("%s [%s]: %d label line(s) have coordinates > 1 (pixel coordinates? YOLO "
                       "labels are normalised to 0..1): %s%s", root, split, len(pixel_like),
                       ", ".join(pixel_like[:5]), " ..." if len(pixel_like) > 5 else "")
    sanitize_boxes(records, box_policy, f"{root} [{split}]")
    return records, class_names
