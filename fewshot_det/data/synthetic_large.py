"""Large synthetic scenes with small objects: the shapes of ``data.synthetic`` at 12-48 px
on 2048 x 1536 clutter, like defects in a UAV inspection photo (for sliced inference).

Layout written (Pascal VOC; no torch)::

    ROOT/JPEGImages/large_{i:06d}.jpg   ROOT/Annotations/large_{i:06d}.xml
    ROOT/ImageSets/Main/test.txt        ROOT/classes.txt (all SYNTHETIC_CLASSES, or the
                                        class list of the model to be evaluated)

Scene ``i`` is drawn from a generator seeded with ``(seed, i)``. Objects never overlap
(each box keeps a 4-px gap), so every box is a whole, visible shape.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .fewshot.class_splits import SYNTHETIC_CLASSES
from .synthetic import _background, _paint, _shape_mask

__all__ = ["render_large_scene", "generate_large_scenes"]

_GAP = 4


def render_large_scene(rng: np.random.Generator, width: int = 2048, height: int = 1536, *,
                       classes: Sequence[str] = SYNTHETIC_CLASSES,
                       object_px: Tuple[int, int] = (12, 48), num_objects: Tuple[int, int] =
                       (20, 40)) -> Tuple[np.ndarray, List[dict]]:
    """One scene: (uint8 [height, width, 3] BGR, [{"name", "box": [x1, y1, x2, y2]}])
    with 0-based inclusive pixel boxes; sides drawn log-uniformly in ``object_px``."""
    img = _background(rng, max(width, height))[:height, :width].copy()
    taken = np.zeros((height, width), bool)
    objects = []
    lo, hi = object_px
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        name = classes[int(rng.integers(len(classes)))]
        side = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
        coverage = _shape_mask(name, rng, side)
        spot = _free_spot(rng, taken, coverage.shape[0])
        if spot is None or not (coverage > 0.5).any():
            continue
        x0, y0 = spot
        _paint(img, coverage, x0, y0, rng)
        s = coverage.shape[0]
        taken[max(0, y0 - _GAP):y0 + s + _GAP, max(0, x0 - _GAP):x0 + s + _GAP] = True
        rows, cols = np.nonzero((coverage > 0.5).any(axis=1))[0], \
            np.nonzero((coverage > 0.5).any(axis=0))[0]
        objects.append({"name": name, "box": [x0 + int(cols[0]), y0 + int(rows[0]),
                                              x0 + int(cols[-1]), y0 + int(rows[-1])]})
    img += rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


def _free_spot(rng, taken: np.ndarray, side: int) -> Optional[Tuple[int, int]]:
    h, w = taken.shape
    for _ in range(50):
        x0, y0 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        if not taken[y0:y0 + side, x0:x0 + side].any():
            return x0, y0
    return None


def _voc_xml(filename: str, width: int, height: int, objects: List[dict]) -> str:
    objs = "".join(
        f"<object><name>{o['name']}</name><difficult>0</difficult><bndbox>"
        f"<xmin>{o['box'][0] + 1}</xmin><ymin>{o['box'][1] + 1}</ymin>"
        f"<xmax>{o['box'][2] + 1}</xmax><ymax>{o['box'][3] + 1}</ymax></bndbox></object>"
        for o in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objs}</annotation>\n")


def generate_large_scenes(root: str, num: int = 20, *, width: int = 2048, height: int = 1536,
                          seed: int = 0, classes: Sequence[str] = SYNTHETIC_CLASSES,
                          class_list: Sequence[str] = SYNTHETIC_CLASSES,
                          object_px: Tuple[int, int] = (12, 48)) -> str:
    """Write ``num`` scenes as a VOC test split under ``root``; returns its spec
    ``voc:ROOT:test``. ``classes``: the shapes drawn (e.g. the base classes);
    ``class_list``: classes.txt, label k = its line k (e.g. a model's own class list)."""
    unknown = sorted(set(classes) - set(SYNTHETIC_CLASSES))
    if unknown:
        raise ValueError(f"large scenes: unknown classes {unknown} (known: {SYNTHETIC_CLASSES})")
    unlisted = sorted(set(classes) - set(class_list))
    if unlisted:
        raise ValueError(f"large scenes: drawn classes {unlisted} are not in class_list")
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    stems = []
    for i in range(num):
        stem = f"large_{i:06d}"
        img, objects = render_large_scene(np.random.default_rng([int(seed), i]), width,
                                          height, classes=classes, object_px=object_px)
        if not cv2.imwrite(os.path.join(root, "JPEGImages", stem + ".jpg"), img,
                           [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"cannot write {os.path.join(root, 'JPEGImages', stem + '.jpg')}")
        with open(os.path.join(root, "Annotations", stem + ".xml"), "w") as f:
            f.write(_voc_xml(stem + ".jpg", width, height, objects))
        stems.append(stem)
    with open(os.path.join(root, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("".join(s + "\n" for s in stems))
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("".join(c + "\n" for c in class_list))
    return f"voc:{root}:test"
